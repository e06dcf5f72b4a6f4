//! The RPC benchmark's entry worker, the same as `bench/js/rpc.js`'s
//! default export: `GET /fanout/<prefix>?n=<n>` calls `ping` on the Peers
//! `<prefix>0` .. `<prefix><n-1>`, one after another, and answers the sum;
//! `GET /fanout-parallel/<prefix>?n=<n>` does the same with all the calls at
//! once; `GET /pingpong/<name>?...` and `GET /upstream/<name>` forward to the
//! Peer called `<name>`.

use dohost_sdk::{Env, Error, Request, Response, Result, Worker, future};

/// Fans out to Peers.
pub struct FanOut;

impl Worker for FanOut {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let peers = env.namespace("PEER")?;
        let path = req.path().to_owned();
        let mut parts = path.trim_start_matches('/').split('/');
        let n = || -> Result<u32> {
            req.query()
                .and_then(|q| q.strip_prefix("n="))
                .unwrap_or("100")
                .parse()
                .map_err(|_| Error::new("n is a number"))
        };
        match (parts.next(), parts.next()) {
            (Some("fanout"), Some(prefix)) => {
                let mut sum = 0;
                for i in 0..n()? {
                    sum += peers
                        .get_by_name(&format!("{prefix}{i}"))
                        .call::<u64>("ping", &())
                        .await?;
                }
                Ok(Response::text(sum.to_string()))
            }
            (Some("fanout-parallel"), Some(prefix)) => {
                let stubs: Vec<_> = (0..n()?)
                    .map(|i| peers.get_by_name(&format!("{prefix}{i}")))
                    .collect();
                let pings =
                    future::try_join_all(stubs.iter().map(|s| s.call::<u64>("ping", &()))).await?;
                Ok(Response::text(pings.iter().sum::<u64>().to_string()))
            }
            (Some("pingpong" | "upstream"), Some(name)) => {
                peers.get_by_name(name).fetch(req).await
            }
            _ => Ok(Response::text(
                "GET /fanout/<prefix>?n=<n>, /fanout-parallel/<prefix>?n=<n>, /pingpong/<name>?peer=<name>&n=<n> or /upstream/<name>\n",
            )
            .with_status(404)),
        }
    }
}

dohost_sdk::export_worker!(FanOut);
