//! The Counter Durable Object of Cloudflare's docs, in Rust: each request
//! increments a count kept in storage and answers with the new value as
//! text. A request whose path ends with `/sql` instead inserts a row into
//! the object's SQL table `hits` and answers with the number of rows, as the
//! workerd reference worker in the benchmarks does.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p counter` (or `dohost build examples/counter`).

use std::time::{SystemTime, UNIX_EPOCH};

use dohost_sdk::{DurableObject, Env, Error, Request, Response, Result, State, params};

/// Counts requests, durably.
pub struct Counter {
    state: State,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        Counter { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if req.path().ends_with("/sql") {
            return self.hit();
        }
        let storage = self.state.storage();
        let value = storage.get::<u64>("value")?.unwrap_or(0) + 1;
        storage.put("value", &value)?;
        Ok(Response::text(value.to_string()))
    }
}

impl Counter {
    /// `/sql`: one row per request in `hits`, answered with the row count.
    fn hit(&self) -> Result<Response> {
        let sql = self.state.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS hits(id INTEGER PRIMARY KEY, t INTEGER)",
            params![],
        )?;
        sql.exec("INSERT INTO hits(t) VALUES (?)", params![now_ms()?])?;
        let n: i64 = sql
            .exec("SELECT COUNT(*) AS n FROM hits", params![])?
            .one()?
            .get("n")?;
        Ok(Response::text(n.to_string()))
    }
}

/// Milliseconds since the Unix epoch, like JavaScript's `Date.now()`.
fn now_ms() -> Result<i64> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new(format!("the clock is before 1970: {e}")))?;
    i64::try_from(since_epoch.as_millis())
        .map_err(|_| Error::new("the clock is past the year 292 million"))
}

dohost_sdk::export_objects!(Counter);
