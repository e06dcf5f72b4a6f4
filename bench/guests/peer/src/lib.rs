//! The RPC benchmark's object, the same as `bench/js/rpc.js`'s `Peer`:
//! `ping()` counts calls in memory (no storage, so the benchmark measures
//! the calls), `GET /pingpong?peer=<name>&n=<n>` calls `ping` on the Peer
//! called `<name>` `n` times, one after another, answering the last count,
//! and `GET /upstream/...` fetches the local HTTP service on
//! 127.0.0.1:8790 and answers its body and a count.

use std::cell::Cell;

use dohost_sdk::{DurableObject, Env, Error, Request, Response, Result, State};

/// The local HTTP service of the outbound run.
const UPSTREAM: &str = "http://127.0.0.1:8790/";

/// One side of a ping-pong.
pub struct Peer {
    env: Env,
    pings: Cell<u64>,
}

impl DurableObject for Peer {
    fn new(_state: State, env: Env) -> Self {
        Peer {
            env,
            pings: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if req.path().starts_with("/upstream/") {
            let body = dohost_sdk::fetch(Request::get(UPSTREAM)).await?.text_body();
            return Ok(Response::text(format!("{body} {}", self.ping())));
        }
        let (mut peer, mut n) = ("b".to_owned(), 100u32);
        for (key, value) in req
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
        {
            match key {
                "peer" => peer = value.to_owned(),
                "n" => n = value.parse().map_err(|_| Error::new("n is a number"))?,
                _ => {}
            }
        }
        let peer = self.env.namespace("PEER")?.get_by_name(&peer);
        let mut last = 0;
        for _ in 0..n {
            last = peer.call::<u64>("ping", &()).await?;
        }
        Ok(Response::text(last.to_string()))
    }

    dohost_sdk::methods!(ping);
}

impl Peer {
    fn ping(&self) -> u64 {
        self.pings.set(self.pings.get() + 1);
        self.pings.get()
    }
}

dohost_sdk::export_objects!(Peer);
