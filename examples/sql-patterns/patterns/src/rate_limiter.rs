//! A sliding-window rate limiter: each accepted hit is a row with its time;
//! a hit first deletes the rows older than the window, then counts the
//! rest. One object per client key (the object name), so the limit is per
//! client and needs no locking: the input gate runs one hit at a time.
//!
//! - `POST /hit`: `{"allowed": true, "count": n, "limit": 10}` (200) with
//!   `n` the hits in the window including this one, or, once 10 hits are in
//!   the window, `{"allowed": false, "count": 10, "limit": 10,
//!   "retry_after_ms": ..}` (429) without recording the hit.
//!
//! The window is `RATE_WINDOW_MS` from `[vars]` (by default 60,000 ms).

use std::cell::RefCell;

use std::time::{SystemTime, UNIX_EPOCH};

use dohost_sdk::{DurableObject, Env, Error, Request, Response, Result, Sql, State, params};
use serde::Serialize;

use crate::{Handled, finish, no_route, number_var, route};

/// The most hits a client may make within one window.
const LIMIT: i64 = 10;

/// The default window, in milliseconds.
const DEFAULT_WINDOW_MS: u64 = 60_000;

/// The longest window `RATE_WINDOW_MS` may set: a day.
const MAX_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// What a hit answers.
#[derive(Serialize)]
struct Verdict {
    allowed: bool,
    count: i64,
    limit: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<i64>,
}

/// Cloudflare's rate limiter on SQLite storage: a table of request times,
/// pruned and counted on each request.
pub struct RateLimiter {
    sql: Sql,
    env: Env,
    /// The window in milliseconds, or why `RATE_WINDOW_MS` is unusable; and
    /// whether the table is there (created again on the next request if
    /// creating it failed).
    setup: RefCell<Result<i64>>,
}

fn now_ms() -> Result<i64> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new(format!("the clock is before 1970: {e}")))?;
    i64::try_from(since_epoch.as_millis())
        .map_err(|_| Error::new("the clock is past the year 292 million"))
}

fn setup(sql: Sql, env: &Env) -> Result<i64> {
    let window = number_var(env, "RATE_WINDOW_MS", 1..=MAX_WINDOW_MS, DEFAULT_WINDOW_MS)?;
    sql.exec(
        "CREATE TABLE IF NOT EXISTS requests (ts INTEGER NOT NULL)",
        &[],
    )?;
    i64::try_from(window).map_err(|_| Error::new("RATE_WINDOW_MS is too large"))
}

impl RateLimiter {
    fn handle(&self, req: &Request) -> Handled {
        let window = {
            let mut window = self.setup.borrow_mut();
            if window.is_err() {
                *window = setup(self.sql, &self.env);
            }
            window.clone()?
        };
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("POST", ["hit"]) => self.hit(window),
            _ => Err(no_route(req, "POST /hit")),
        }
    }

    fn hit(&self, window: i64) -> Handled {
        let sql = self.sql;
        let now = now_ms()?;
        let start = now - window;
        sql.exec("DELETE FROM requests WHERE ts <= ?", params![start])?;
        let row = sql
            .exec(
                "SELECT count(*) AS count, min(ts) AS oldest FROM requests",
                &[],
            )?
            .one()?;
        let count: i64 = row.get("count")?;
        if count >= LIMIT {
            let oldest: Option<i64> = row.get("oldest")?;
            let retry_after_ms = oldest.map_or(0, |oldest| (oldest + window - now).max(0));
            let verdict = Verdict {
                allowed: false,
                count,
                limit: LIMIT,
                retry_after_ms: Some(retry_after_ms),
            };
            let seconds = (retry_after_ms + 999) / 1000;
            let mut response = Response::json(&verdict)?.with_status(429);
            response
                .headers
                .push(("retry-after".into(), seconds.to_string()));
            return Ok(response);
        }
        sql.exec("INSERT INTO requests (ts) VALUES (?)", params![now])?;
        Ok(Response::json(&Verdict {
            allowed: true,
            count: count + 1,
            limit: LIMIT,
            retry_after_ms: None,
        })?)
    }
}

impl DurableObject for RateLimiter {
    fn new(state: State, env: Env) -> Self {
        let sql = state.sql();
        RateLimiter {
            sql,
            setup: RefCell::new(setup(sql, &env)),
            env,
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
