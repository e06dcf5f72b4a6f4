//! # Storage patterns
//!
//! The storage patterns of Cloudflare's Durable Objects documentation, one
//! class each, exported from one component: [`UserCache`] (in-memory
//! caching), [`InitCounter`] (initialisation in the constructor),
//! [`SafeCounter`] (read-modify-write made safe by the input gate),
//! [`Coalescer`] (write coalescing) and [`Cleanup`] (`deleteAll`). The
//! routes of each are in its module and in `../README.md`.
//!
//! Run: `cargo run --release -p dohost -- serve --config examples/storage-patterns/dohost.toml`
//! (it builds this crate).

mod cleanup;
mod coalescer;
mod init_counter;
mod safe_counter;
mod user_cache;

use std::fmt::Display;

use dohost_sdk::{Error, ListOptions, MAX_VALUE_BYTES, Request, Response, Result};

pub use cleanup::Cleanup;
pub use coalescer::Coalescer;
pub use init_counter::InitCounter;
pub use safe_counter::SafeCounter;
pub use user_cache::UserCache;

dohost_sdk::export_objects!(UserCache, InitCounter, SafeCounter, Coalescer, Cleanup);

/// The longest id or key a client may choose, in bytes: dohost's storage
/// keys are at most 2,048 bytes, and this leaves room for the prefix a
/// class puts before it.
const MAX_NAME_BYTES: usize = 1024;

/// How many entries one `list` call reads when a class walks its keys, so
/// that a large object is read a page at a time, never all at once.
const LIST_PAGE: u32 = 1000;

/// Why a request got no answer of its own: the client's mistake, answered
/// with a 4xx [`Response`], or the host's, which becomes a 500.
enum Failure {
    Client(Response),
    Host(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Host(e)
    }
}

/// What a class's request handler returns; [`finish`] turns it into what
/// `fetch` returns.
type Handled = std::result::Result<Response, Failure>;

fn finish(handled: Handled) -> Result<Response> {
    match handled {
        Ok(response) | Err(Failure::Client(response)) => Ok(response),
        Err(Failure::Host(e)) => Err(e),
    }
}

fn client_error(status: u16, message: impl Display) -> Failure {
    Failure::Client(Response::text(message.to_string()).with_status(status))
}

fn bad_request(message: impl Display) -> Failure {
    client_error(400, message)
}

/// The request's method and path segments, for matching on both:
/// `POST /write/500` is `("POST", ["write", "500"])`, `GET /` is
/// `("GET", [""])`.
fn route(req: &Request) -> (&str, Vec<&str>) {
    (req.method.as_str(), req.path().split('/').skip(1).collect())
}

/// A 404 naming what the object does serve.
fn no_route(req: &Request, routes: &str) -> Failure {
    client_error(
        404,
        format!(
            "no route for {} {}; this object serves {routes}",
            req.method,
            req.path()
        ),
    )
}

/// `name` (an id or key from the path) if it is usable as part of a key.
fn checked_name(name: &str) -> std::result::Result<&str, Failure> {
    if name.is_empty() {
        return Err(bad_request("the name in the path is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(bad_request(format!(
            "the name in the path is {} bytes, over the limit of {MAX_NAME_BYTES} bytes",
            name.len()
        )));
    }
    Ok(name)
}

/// `body` if it fits in one storage value.
fn checked_body(body: &[u8]) -> std::result::Result<&[u8], Failure> {
    if body.len() > MAX_VALUE_BYTES {
        return Err(client_error(
            413,
            format!(
                "the body is {} bytes, over the limit of {MAX_VALUE_BYTES} bytes for one value",
                body.len()
            ),
        ));
    }
    Ok(body)
}

/// Calls `visit` with every entry under `prefix` in key order, reading
/// [`LIST_PAGE`] entries per call of `list` (a `Storage::list` or
/// `Storage::list_bytes`).
fn scan<T>(
    list: impl Fn(ListOptions) -> Result<Vec<(String, T)>>,
    prefix: Option<&str>,
    mut visit: impl FnMut(&str, T),
) -> Result<()> {
    let mut start_after = None;
    loop {
        let page = list(ListOptions {
            prefix: prefix.map(str::to_owned),
            start_after: start_after.take(),
            limit: Some(LIST_PAGE),
            ..ListOptions::default()
        })?;
        let full = page.len() == LIST_PAGE as usize;
        let mut last_key = None;
        for (key, value) in page {
            visit(&key, value);
            last_key = Some(key);
        }
        match last_key {
            Some(key) if full => start_after = Some(key),
            _ => return Ok(()),
        }
    }
}
