//! `kill -9` mid-load loses no acknowledged write: after each restart the
//! counter is above every count a client was told, and no count was ever
//! handed out twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Server, client, router_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_counts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = router_config(dir.path());
    let data = dir.path().join("data");
    let mut acknowledged: HashSet<u64> = HashSet::new();
    let mut highest = 0u64;

    for round in 0..5u64 {
        let server = Server::start(&config, &data);
        let url = server.url("/COUNTER/crash/");
        let acks = Arc::new(Mutex::new(Vec::new()));
        let http = client();
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, acks) = (http.clone(), url.clone(), acks.clone());
                tokio::spawn(async move {
                    // Stops by itself: at most 10,000 requests per client.
                    for _ in 0..10_000 {
                        let req = http::Request::get(&url)
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap();
                        let Ok(resp) = http.request(req).await else {
                            return;
                        };
                        if resp.status() != 200 {
                            return;
                        }
                        let Ok(body) = http_body_util::BodyExt::collect(resp.into_body()).await
                        else {
                            return;
                        };
                        let value: u64 = String::from_utf8_lossy(&body.to_bytes()).parse().unwrap();
                        acks.lock().unwrap().push(value);
                    }
                })
            })
            .collect();
        // Let load build up, then kill at a moment that varies per round.
        tokio::time::sleep(Duration::from_millis(300 + 137 * round)).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
        let acks = acks.lock().unwrap().clone();
        assert!(
            !acks.is_empty(),
            "round {round}: no request was acknowledged before the kill"
        );
        for value in &acks {
            assert!(
                acknowledged.insert(*value),
                "round {round}: count {value} was acknowledged twice"
            );
        }
        highest = highest.max(*acks.iter().max().unwrap());

        // After restart the next count is above everything acknowledged.
        let server = Server::start(&config, &data);
        let (status, body) = crate::support::get(&client(), &server.url("/COUNTER/crash/")).await;
        assert_eq!(status, 200, "{body}");
        let next: u64 = body.parse().unwrap();
        assert!(
            next > highest,
            "round {round}: count {next} after restart, but {highest} was acknowledged"
        );
        acknowledged.insert(next);
        highest = next;
        server.kill9();
    }
}
