//! The probe's routes that wait on the world outside the object:
//!
//! - `POST /fetch` with `{"url", "method"?, "body_bytes"?, "redirect"?,
//!   "put"?, "times"?}`: writes `put` (a key, value "1") first if given, then
//!   sends `times` (default 1) requests to `url` at once (`body_bytes` of
//!   `x` as the body; `redirect` "follow", "manual" or "error") and answers
//!   one `{"status", "length", "text"}` (the first 100 bytes) or
//!   `{"error"}` per request, in order.
//! - `GET /sleep/<ms>`: answers `slept` after `<ms>` ms of [`sleep`].
//! - `GET /later/<ms>`: answers the time at once; `<ms>` ms later (work
//!   left to [`wait_until`]) writes the time then under the key `later`.

use std::time::Duration;

use dohost_sdk::{
    Redirect, Request, Response, Result, Storage, fetch_with, future, now_ms, sleep, wait_until,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Fetch {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body_bytes: usize,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    put: Option<String>,
    #[serde(default = "one")]
    times: usize,
}

fn get() -> String {
    "GET".to_owned()
}

fn one() -> usize {
    1
}

pub(crate) async fn fetch(storage: &Storage, req: &Request) -> Result<Response> {
    let spec: Fetch = req.json()?;
    if let Some(key) = &spec.put {
        storage.put(key, &1)?;
    }
    let redirect = match spec.redirect.as_deref() {
        Some("manual") => Redirect::Manual,
        Some("error") => Redirect::Error,
        _ => Redirect::Follow,
    };
    let send = || {
        let mut outgoing = Request::new(&spec.method, &spec.url);
        outgoing.body = vec![b'x'; spec.body_bytes];
        fetch_with(outgoing, redirect)
    };
    let results = future::join_all((0..spec.times).map(|_| send())).await;
    let answers: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Ok(response) => json!({
                "status": response.status,
                "length": response.body.len(),
                "text": String::from_utf8_lossy(&response.body[..response.body.len().min(100)]),
            }),
            Err(e) => json!({"error": e.message()}),
        })
        .collect();
    Response::json(&answers)
}

pub(crate) async fn sleep_route(arg: &str) -> Result<Response> {
    let ms: u64 = arg
        .parse()
        .map_err(|_| dohost_sdk::Error::new("sleep/<ms>"))?;
    sleep(Duration::from_millis(ms)).await;
    Ok(Response::text("slept"))
}

pub(crate) fn later(storage: Storage, arg: &str) -> Result<Response> {
    let ms: u64 = arg
        .parse()
        .map_err(|_| dohost_sdk::Error::new("later/<ms>"))?;
    wait_until(async move {
        sleep(Duration::from_millis(ms)).await;
        // Nothing awaits this task's result: a failure shows as a missing key.
        let _ = storage.put("later", &now_ms());
    });
    Ok(Response::text(now_ms().to_string()))
}
