//! The counter example's entry worker: forwards every request to the Counter object
//! named "my-counter", as in
//! `env.COUNTER.get(env.COUNTER.idFromName("my-counter")).fetch(request)`.

use dohost_sdk::{Env, Request, Response, Result, Worker};

/// Sends every request to one counter.
pub struct Forwarder;

impl Worker for Forwarder {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let counter = env.namespace("COUNTER")?;
        let id = counter.id_from_name("my-counter");
        counter.get(&id)?.fetch(req).await
    }
}

dohost_sdk::export_worker!(Forwarder);
