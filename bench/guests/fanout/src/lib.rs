//! The RPC benchmark's entry worker, the same as `bench/workerd/rpc.js`'s
//! default export: `GET /fanout/<prefix>?n=<n>` calls `ping` on the Peers
//! `<prefix>0` .. `<prefix><n-1>`, one after another, and answers the sum;
//! `GET /pingpong/<name>?...` forwards to the Peer called `<name>`.

use dohost_sdk::{Env, Error, Request, Response, Result, Worker};

/// Fans out to Peers.
pub struct FanOut;

impl Worker for FanOut {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let peers = env.namespace("PEER")?;
        let path = req.path().to_owned();
        let mut parts = path.trim_start_matches('/').split('/');
        match (parts.next(), parts.next()) {
            (Some("fanout"), Some(prefix)) => {
                let n: u32 = req
                    .query()
                    .and_then(|q| q.strip_prefix("n="))
                    .unwrap_or("100")
                    .parse()
                    .map_err(|_| Error::new("n is a number"))?;
                let mut sum = 0;
                for i in 0..n {
                    sum += peers
                        .get_by_name(&format!("{prefix}{i}"))
                        .call::<u64>("ping", &())
                        .await?;
                }
                Ok(Response::text(sum.to_string()))
            }
            (Some("pingpong"), Some(name)) => peers.get_by_name(name).fetch(req).await,
            _ => Ok(Response::text(
                "GET /fanout/<prefix>?n=<n> or /pingpong/<name>?peer=<name>&n=<n>\n",
            )
            .with_status(404)),
        }
    }
}

dohost_sdk::export_worker!(FanOut);
