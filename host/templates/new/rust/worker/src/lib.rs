//! The entry worker: every request goes to the Counter named "counter".

use dohost_sdk::{Env, Request, Response, Result, Worker};

/// Sends every request to one counter.
pub struct Forwarder;

impl Worker for Forwarder {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let counter = env.namespace("COUNTER")?;
        let id = counter.id_from_name("counter");
        counter.get(&id)?.fetch(req).await
    }
}

dohost_sdk::export_worker!(Forwarder);
