//! Initialisation in the constructor: the count is read from storage once,
//! when the object is constructed, and kept in a field; requests only write.
//!
//! - `GET /`: `{"value": .., "loaded": ..}`, the count and what the
//!   constructor read.
//! - `POST /increment`: adds one and answers as `GET /` does.

use std::cell::RefCell;

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, Storage};
use serde::Serialize;

use crate::{Handled, finish, no_route, route};

const KEY: &str = "value";

/// The count in memory.
#[derive(Debug, Clone, Copy, Serialize)]
struct Count {
    /// The count now.
    value: u64,
    /// What the constructor read from storage (0 when there was nothing).
    loaded: u64,
}

/// Cloudflare's initialisation pattern: the constructor loads the value
/// inside `blockConcurrencyWhile` (here, `new` runs before any event), and
/// each request increments the field and `put`s it without reading storage
/// again.
pub struct InitCounter {
    storage: Storage,
    /// The count, or why the constructor could not read it. A `RefCell`:
    /// handlers share `&self`.
    count: RefCell<Result<Count>>,
}

fn load(storage: Storage) -> Result<Count> {
    let value = storage.get::<u64>(KEY)?.unwrap_or(0);
    Ok(Count {
        value,
        loaded: value,
    })
}

impl InitCounter {
    fn handle(&self, req: &Request) -> Handled {
        // A failed load is tried again rather than counting from 0, which
        // would overwrite the stored count.
        let mut count = self.count.borrow_mut();
        if count.is_err() {
            *count = load(self.storage);
        }
        let count = count.as_mut().map_err(|e| e.clone())?;
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("GET", [""]) => Ok(Response::json(count)?),
            ("POST", ["increment"]) => {
                let value = count.value + 1;
                self.storage.put(KEY, &value)?;
                count.value = value;
                Ok(Response::json(count)?)
            }
            _ => Err(no_route(req, "GET / and POST /increment")),
        }
    }
}

impl DurableObject for InitCounter {
    fn new(state: State, _env: Env) -> Self {
        let storage = state.storage();
        InitCounter {
            storage,
            count: RefCell::new(load(storage)),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
