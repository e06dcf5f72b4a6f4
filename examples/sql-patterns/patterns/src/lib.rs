//! # SQL patterns
//!
//! Durable Objects with SQLite storage (Cloudflare's `ctx.storage.sql`),
//! one pattern per class, exported from one component: [`Migrations`]
//! (schema migrations with `PRAGMA user_version`), [`RateLimiter`] (a
//! sliding-window limit kept in a table) and [`BatchWriter`] (thousands of
//! rows in one transaction). The routes of each are in its module and in
//! `../README.md`.
//!
//! Run: `cargo run --release -p dohost -- serve --config examples/sql-patterns/dohost.toml`
//! (it builds this crate).

mod batch_writer;
mod migrations;
mod rate_limiter;

use std::fmt::Display;

use dohost_sdk::{Env, Error, Request, Response, Result};

pub use batch_writer::BatchWriter;
pub use migrations::Migrations;
pub use rate_limiter::RateLimiter;

dohost_sdk::export_objects!(Migrations, RateLimiter, BatchWriter);

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

fn bad_request(message: impl Display) -> Failure {
    Failure::Client(Response::text(message.to_string()).with_status(400))
}

/// The request's method and path segments, for matching on both:
/// `GET /items/count` is `("GET", ["items", "count"])`.
fn route(req: &Request) -> (&str, Vec<&str>) {
    (req.method.as_str(), req.path().split('/').skip(1).collect())
}

/// A 404 naming what the object does serve.
fn no_route(req: &Request, routes: &str) -> Failure {
    Failure::Client(
        Response::text(format!(
            "no route for {} {}; this object serves {routes}",
            req.method,
            req.path()
        ))
        .with_status(404),
    )
}

/// The value of query parameter `name`, if present.
fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `[vars]` entry `name` as a number from `range`, or `default` when it
/// is not set.
fn number_var(
    env: &Env,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64> {
    let Some(text) = env.var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::new(format!(
            "the variable {name} = {text:?} is not a number from {} to {}; fix it in [vars]",
            range.start(),
            range.end()
        ))),
    }
}
