//! A read-modify-write made safe by the input gate: `get`, add one, `put`,
//! with no lock, because no other event of the object runs in between.
//!
//! - `GET /`: the count as text.
//! - `POST /increment`: adds one and answers with the new count.

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, Storage};

use crate::{Handled, finish, no_route, route};

const KEY: &str = "value";

/// Cloudflare's safe counter (the "optimized" counter of the input and
/// output gates article): `get`, then `put` the value plus one. Concurrent
/// requests each see the previous one's write, and each response leaves
/// only once its write is durable.
pub struct SafeCounter {
    storage: Storage,
}

impl SafeCounter {
    fn handle(&self, req: &Request) -> Handled {
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("GET", [""]) => {
                let value = self.storage.get::<u64>(KEY)?.unwrap_or(0);
                Ok(Response::text(value.to_string()))
            }
            ("POST", ["increment"]) => {
                let value = self.storage.get::<u64>(KEY)?.unwrap_or(0) + 1;
                self.storage.put(KEY, &value)?;
                Ok(Response::text(value.to_string()))
            }
            _ => Err(no_route(req, "GET / and POST /increment")),
        }
    }
}

impl DurableObject for SafeCounter {
    fn new(state: State, _env: Env) -> Self {
        SafeCounter {
            storage: state.storage(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
