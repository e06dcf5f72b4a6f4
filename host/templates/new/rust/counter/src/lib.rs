//! The Counter Durable Object: each request adds 1 to a count kept in the
//! object's storage and answers with the new count.

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State};

/// Counts requests, durably.
pub struct Counter {
    state: State,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        Counter { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let value = storage.get::<u64>("value")?.unwrap_or(0) + 1;
        // The response leaves only once this write is durable.
        storage.put("value", &value)?;
        Ok(Response::text(value.to_string()))
    }
}

dohost_sdk::export_objects!(Counter);
