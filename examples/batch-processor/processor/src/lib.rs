//! # Batch processing with an alarm
//!
//! Cloudflare's pattern: `add_item` keeps the item in memory and, when no
//! alarm is set, sets one `BATCH_DELAY_MS` ahead (5 s by default); the
//! alarm writes every pending item to SQL in one statement. Many requests
//! become one write.
//!
//! As on Cloudflare, the pending items live only in memory: if the object
//! is reset before its alarm (a trap, a restart), they are gone, and the
//! alarm finds nothing to write. Put them in storage when they must not be
//! lost.
//!
//! Routes (each object name is its own batcher):
//! - `POST /items` with the item as the body: `{"pending", "alarm"}`.
//! - `GET /items`: the written items, `[{"id", "item", "batch"}]`.
//! - `GET /status`: `{"pending", "alarm", "batches"}`.
//!
//! Run: `cargo run --release -p dohost -- serve --config examples/batch-processor/dohost.toml`.

use std::cell::RefCell;

use dohost_sdk::{
    AlarmInfo, DurableObject, Env, Error, Request, Response, Result, State, now_ms, params,
};
use serde::{Deserialize, Serialize};

/// The longest item, in bytes: the whole batch goes into one SQL value.
const MAX_ITEM_BYTES: usize = 64 * 1024;

/// The batch delay when `BATCH_DELAY_MS` is not set.
const DEFAULT_BATCH_DELAY_MS: i64 = 5000;

/// Collects items and writes them in batches.
pub struct BatchProcessor {
    state: State,
    env: Env,
    pending: RefCell<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    id: i64,
    item: String,
    batch: i64,
}

impl BatchProcessor {
    fn add_item(&self, item: String) -> Result<Response> {
        self.pending.borrow_mut().push(item);
        let storage = self.state.storage();
        let alarm = match storage.get_alarm()? {
            Some(alarm) => alarm,
            None => {
                let alarm = now_ms() + self.delay_ms()?;
                storage.set_alarm(alarm)?;
                alarm
            }
        };
        Response::json(&serde_json::json!({"pending": self.pending.borrow().len(), "alarm": alarm}))
    }

    fn delay_ms(&self) -> Result<i64> {
        match self.env.var("BATCH_DELAY_MS") {
            None => Ok(DEFAULT_BATCH_DELAY_MS),
            Some(text) => text.parse().ok().filter(|ms| *ms >= 0).ok_or_else(|| {
                Error::new(format!(
                    "[vars] BATCH_DELAY_MS = {text:?} is not a number of milliseconds"
                ))
            }),
        }
    }

    fn batches(&self) -> Result<i64> {
        self.state
            .sql()
            .exec(
                "SELECT coalesce(max(batch), 0) FROM processed_items",
                params![],
            )?
            .one()?
            .get_index(0)
    }
}

impl DurableObject for BatchProcessor {
    fn new(state: State, env: Env) -> Self {
        BatchProcessor {
            state,
            env,
            pending: RefCell::new(Vec::new()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // Created here rather than in the constructor, so a failure is
        // answered rather than failing the activation.
        self.state.sql().exec(
            "CREATE TABLE IF NOT EXISTS processed_items (
                id INTEGER PRIMARY KEY, item TEXT NOT NULL, batch INTEGER NOT NULL)",
            params![],
        )?;
        match (req.method.as_str(), req.path()) {
            ("POST", "/items") => {
                let Ok(item) = req.text() else {
                    return Ok(Response::text("the item must be UTF-8 text").with_status(400));
                };
                if item.is_empty() || item.len() > MAX_ITEM_BYTES {
                    return Ok(Response::text(format!(
                        "the item must be 1 to {MAX_ITEM_BYTES} bytes of text"
                    ))
                    .with_status(400));
                }
                self.add_item(item.to_owned())
            }
            ("GET", "/items") => {
                let items: Vec<Item> = self
                    .state
                    .sql()
                    .exec(
                        "SELECT id, item, batch FROM processed_items ORDER BY id",
                        params![],
                    )?
                    .to_array_as()?;
                Response::json(&items)
            }
            ("GET", "/status") => Response::json(&serde_json::json!({
                "pending": self.pending.borrow().len(),
                "alarm": self.state.storage().get_alarm()?,
                "batches": self.batches()?,
            })),
            (method, path) => Ok(Response::text(format!(
                "no route {method} {path}: use POST /items, GET /items or GET /status"
            ))
            .with_status(404)),
        }
    }

    async fn alarm(&self, _info: AlarmInfo) -> Result<()> {
        if self.pending.borrow().is_empty() {
            return Ok(());
        }
        let batch = self.batches()? + 1;
        let items = serde_json::to_string(&*self.pending.borrow())
            .map_err(|e| Error::new(format!("cannot encode the batch: {e}")))?;
        // One statement for the whole batch, however many items it has.
        self.state.sql().exec(
            "INSERT INTO processed_items (item, batch) SELECT value, ? FROM json_each(?)",
            params![batch, items],
        )?;
        self.pending.borrow_mut().clear();
        Ok(())
    }
}

dohost_sdk::export_objects!(BatchProcessor);
