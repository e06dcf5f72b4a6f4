//! Batch writes: thousands of rows written by one request in one
//! transaction, so they commit (and survive a crash) all together or not
//! at all, and cost one commit rather than one per row.
//!
//! - `POST /items?count=N` (N from 1 to 10,000): writes the items 1 to N,
//!   item `i` with value `i`, with `INSERT OR REPLACE` (so repeating a
//!   request changes nothing); `{"items": N, "rows_written": ..}`.
//! - `GET /items/count`: `{"count": ..}`.
//! - `GET /items/sum`: `{"sum": ..}`, the sum of the values.

use std::cell::Cell;

use dohost_sdk::{DurableObject, Env, Request, Response, Result, Sql, State, Storage, params};
use serde::Serialize;

use crate::{Failure, Handled, bad_request, finish, no_route, query_param, route};

/// The most items one request may write: the transaction's writes are held
/// in memory until the event commits, so a client must not be able to make
/// that set unbounded.
const MAX_ITEMS: u32 = 10_000;

#[derive(Serialize)]
struct Written {
    items: u32,
    rows_written: u64,
}

/// Cloudflare's bulk insert: one prepared-statement `exec` per row inside
/// `transactionSync`.
pub struct BatchWriter {
    storage: Storage,
    /// Whether the table exists (`CREATE TABLE IF NOT EXISTS` runs until it
    /// succeeds once).
    ready: Cell<bool>,
}

fn parse_count(count: Option<&str>) -> std::result::Result<u32, Failure> {
    let Some(count) = count else {
        return Err(bad_request(format!(
            "the query has no count; ask for ?count=<n> with n from 1 to {MAX_ITEMS}"
        )));
    };
    match count.parse::<u32>() {
        Ok(n) if (1..=MAX_ITEMS).contains(&n) => Ok(n),
        _ => Err(bad_request(format!(
            "the count {count:?} is not a number from 1 to {MAX_ITEMS}"
        ))),
    }
}

fn create_table(sql: Sql) -> Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)",
        &[],
    )?;
    Ok(())
}

impl BatchWriter {
    fn handle(&self, req: &Request) -> Handled {
        let sql = self.storage.sql();
        if !self.ready.get() {
            create_table(sql)?;
            self.ready.set(true);
        }
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("POST", ["items"]) => self.write(parse_count(query_param(req, "count"))?),
            ("GET", ["items", "count"]) => {
                let count: i64 = sql
                    .exec("SELECT count(*) FROM items", &[])?
                    .one()?
                    .get_index(0)?;
                Ok(Response::json(&serde_json::json!({ "count": count }))?)
            }
            ("GET", ["items", "sum"]) => {
                let sum: i64 = sql
                    .exec("SELECT coalesce(sum(value), 0) AS sum FROM items", &[])?
                    .one()?
                    .get("sum")?;
                Ok(Response::json(&serde_json::json!({ "sum": sum }))?)
            }
            _ => Err(no_route(
                req,
                "POST /items?count=<n>, GET /items/count and GET /items/sum",
            )),
        }
    }

    fn write(&self, n: u32) -> Handled {
        let sql = self.storage.sql();
        let rows_written = self.storage.transaction_sync(|| {
            let mut written = 0;
            for i in 1..=n {
                let cursor = sql.exec(
                    "INSERT OR REPLACE INTO items (id, value) VALUES (?, ?)",
                    params![i, i],
                )?;
                written += cursor.rows_written();
            }
            Ok(written)
        })?;
        Ok(Response::json(&Written {
            items: n,
            rows_written,
        })?)
    }
}

impl DurableObject for BatchWriter {
    fn new(state: State, _env: Env) -> Self {
        let storage = state.storage();
        BatchWriter {
            storage,
            ready: Cell::new(create_table(storage.sql()).is_ok()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
