//! One event at a time per object: 64 concurrent requests to one counter see
//! each count from 1 to 64 exactly once.

use crate::support::{Server, client, get, router_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_one_object_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();
    let url = server.url("/COUNTER/hot/");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { get(&http, &url).await })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        counts.push(body.parse::<u64>().unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=64).collect::<Vec<u64>>());
}
