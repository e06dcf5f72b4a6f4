//! Write coalescing: every write of one event commits together, in one
//! transaction, without the object asking for one; a crash loses a whole
//! event's writes or none of them.
//!
//! - `POST /write/<n>`: takes the next batch number and stores it under the
//!   keys `item:00000` to `item:<n-1>`, one `put` per key.
//! - `POST /write-many/<n>`: the same with `put_many`, 128 keys per call.
//! - `GET /check`: `{"count", "batches", "same_batch", "last_batch"}`: how
//!   many items there are, the distinct batch numbers they carry, whether
//!   that is at most one, and the last batch number taken.
//!
//! Writes of the same `n` replace each other's items, so after any of them,
//! crashed or not, the items carry one batch number: the last one taken.

use std::collections::BTreeSet;

use dohost_sdk::{
    DurableObject, Env, MAX_KEYS_PER_CALL, Request, Response, Result, State, Storage,
};
use serde::Serialize;

use crate::{Failure, Handled, bad_request, finish, no_route, route, scan};

/// The most items one write may ask for. An event's writes are held in
/// memory until they commit together, so a client must not be able to make
/// that set unbounded.
const MAX_ITEMS: u32 = 10_000;

const ITEM_PREFIX: &str = "item:";
const BATCH_KEY: &str = "batch";

/// Cloudflare's write coalescing: several `put`s without `await` in
/// between are committed atomically, as one implicit transaction. Here
/// every write of an event is, so a batch of thousands of keys is never
/// seen (or recovered) in part.
pub struct Coalescer {
    storage: Storage,
}

/// How a write stores its items.
#[derive(Clone, Copy)]
enum Via {
    /// One `put` per item.
    Put,
    /// `put_many`, as many items per call as dohost takes.
    PutMany,
}

/// What `GET /check` reports.
#[derive(Serialize)]
struct Check {
    count: u64,
    batches: BTreeSet<u64>,
    same_batch: bool,
    last_batch: Option<u64>,
}

/// What a write reports.
#[derive(Serialize)]
struct Written {
    batch: u64,
    items: u32,
}

fn item_key(i: u32) -> String {
    format!("{ITEM_PREFIX}{i:05}")
}

fn parse_items(n: &str) -> std::result::Result<u32, Failure> {
    match n.parse::<u32>() {
        Ok(n) if (1..=MAX_ITEMS).contains(&n) => Ok(n),
        _ => Err(bad_request(format!(
            "the item count {n:?} is not a number from 1 to {MAX_ITEMS}"
        ))),
    }
}

impl Coalescer {
    fn handle(&self, req: &Request) -> Handled {
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("POST", ["write", n]) => self.write(parse_items(n)?, Via::Put),
            ("POST", ["write-many", n]) => self.write(parse_items(n)?, Via::PutMany),
            ("GET", ["check"]) => self.check(),
            _ => Err(no_route(
                req,
                "POST /write/<n>, POST /write-many/<n> and GET /check",
            )),
        }
    }

    /// Writes `n` items with a new batch number. Nothing here asks for a
    /// transaction.
    fn write(&self, n: u32, via: Via) -> Handled {
        let storage = self.storage;
        let batch = storage.get::<u64>(BATCH_KEY)?.unwrap_or(0) + 1;
        storage.put(BATCH_KEY, &batch)?;
        match via {
            Via::Put => {
                for i in 0..n {
                    storage.put(&item_key(i), &batch)?;
                }
            }
            Via::PutMany => {
                let chunk = u32::try_from(MAX_KEYS_PER_CALL).unwrap_or(u32::MAX);
                for start in (0..n).step_by(MAX_KEYS_PER_CALL) {
                    let end = n.min(start.saturating_add(chunk));
                    storage.put_many((start..end).map(|i| (item_key(i), batch)))?;
                }
            }
        }
        Ok(Response::json(&Written { batch, items: n })?)
    }

    fn check(&self) -> Handled {
        let mut count = 0;
        let mut batches = BTreeSet::new();
        scan(
            |options| self.storage.list::<u64>(options),
            Some(ITEM_PREFIX),
            |_, batch| {
                count += 1;
                batches.insert(batch);
            },
        )?;
        Ok(Response::json(&Check {
            count,
            same_batch: batches.len() <= 1,
            batches,
            last_batch: self.storage.get(BATCH_KEY)?,
        })?)
    }
}

impl DurableObject for Coalescer {
    fn new(state: State, _env: Env) -> Self {
        Coalescer {
            storage: state.storage(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
