//! The seed's Counter Durable Object: each request increments a count kept in
//! storage and answers with the new value as text.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p counter` (or `dohost build examples/counter`).

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State};

/// Counts requests, durably.
pub struct Counter {
    state: State,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        Counter { state }
    }

    fn fetch(&mut self, _req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let value = storage.get::<u64>("value")?.unwrap_or(0) + 1;
        storage.put("value", &value)?;
        Ok(Response::text(value.to_string()))
    }
}

dohost_sdk::export_objects!(Counter);
