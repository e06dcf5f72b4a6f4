//! Upgrades for dohost's tests.
//!
//! - A class rename: examples/counter's `Counter`, renamed
//!   `AdvancedCounter`, which counts by `?by=N` as well. It keeps the count
//!   under the same key, so a renamed namespace goes on counting.
//! - A new version of the probe's `Greeter`, for code reloads: the same
//!   stored count, another greeting.

use dohost_sdk::{DurableObject, Env, Error, Request, Response, Result, State};

/// Counts requests, durably, by one or by `?by=N`.
pub struct AdvancedCounter {
    state: State,
}

impl DurableObject for AdvancedCounter {
    fn new(state: State, _env: Env) -> Self {
        AdvancedCounter { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let by = match req.query().and_then(|q| q.strip_prefix("by=")) {
            Some(n) => n
                .parse::<u64>()
                .map_err(|_| Error::new(format!("by={n} is not a count")))?,
            None => 1,
        };
        let storage = self.state.storage();
        let value = storage.get::<u64>("value")?.unwrap_or(0) + by;
        storage.put("value", &value)?;
        Ok(Response::text(format!("{value} (advanced)")))
    }
}

/// The probe's `Greeter`, version 2.
pub struct Greeter {
    state: State,
}

impl DurableObject for Greeter {
    fn new(state: State, _env: Env) -> Self {
        Greeter { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let times = storage.get::<u64>("greeted")?.unwrap_or(0) + 1;
        storage.put("greeted", &times)?;
        Ok(Response::text(format!("greetings, v2 #{times}")))
    }
}

dohost_sdk::export_objects!(AdvancedCounter, Greeter);
