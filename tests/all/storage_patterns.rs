//! Cloudflare's storage patterns, as `examples/storage-patterns` serves them
//! through `dohost serve`: each does what the pattern promises, over HTTP,
//! across restarts, and (write coalescing) across `kill -9`.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{HttpClient, Server, client, get, send, workspace};

/// Serves the example's own dohost.toml (which builds its crate).
fn start(data: &Path) -> Server {
    Server::start(
        &workspace().join("examples/storage-patterns/dohost.toml"),
        data,
    )
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

/// Sends a request that may never be answered (the server is killed):
/// `None` when it is not; else the status and body.
async fn try_post(http: &HttpClient, url: &str) -> Option<(u16, String)> {
    let req = http::Request::post(url)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let resp = http.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cache_answers_from_memory_and_storage_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();
    let alice = json!({"name": "Alice", "email": "alice@example.com"});

    let server = start(&data);
    let user = |id: &str| server.url(&format!("/USER_CACHE/directory/user/{id}"));
    let (status, body) = get(&http, &user("alice")).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = send(&http, "PUT", &user("alice"), &alice.to_string()).await;
    assert_eq!((status, parse(&body)), (200, alice.clone()), "{body}");
    // updateUser filled the map: the read costs no storage call.
    let (status, body) = get(&http, &user("alice")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"user": alice, "from": "memory"}));
    drop(server);

    // A new instance has an empty map: the first read goes to storage and
    // fills the map, the second is answered from it.
    let server = start(&data);
    let user = |id: &str| server.url(&format!("/USER_CACHE/directory/user/{id}"));
    let (status, body) = get(&http, &user("alice")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"user": alice, "from": "storage"}));
    let (_, body) = get(&http, &user("alice")).await;
    assert_eq!(parse(&body)["from"], "memory");

    // An update replaces both copies.
    let alice2 = json!({"name": "Alice", "email": "alice@example.org"});
    let (status, _) = send(&http, "PUT", &user("alice"), &alice2.to_string()).await;
    assert_eq!(status, 200);
    let (_, body) = get(&http, &user("alice")).await;
    assert_eq!(parse(&body), json!({"user": alice2, "from": "memory"}));
    drop(server);
    let server = start(&data);
    let (_, body) = get(&http, &server.url("/USER_CACHE/directory/user/alice")).await;
    assert_eq!(parse(&body), json!({"user": alice2, "from": "storage"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_counter_reads_storage_once_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();

    let server = start(&data);
    let increment = server.url("/INIT_COUNTER/c/increment");
    for value in 1..=3 {
        let (status, body) = send(&http, "POST", &increment, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(parse(&body), json!({"value": value, "loaded": 0}));
    }
    drop(server);

    // The new instance's constructor read 3; requests go on from there.
    let server = start(&data);
    let (status, body) = get(&http, &server.url("/INIT_COUNTER/c/")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"value": 3, "loaded": 3}));
    let (_, body) = send(&http, "POST", &server.url("/INIT_COUNTER/c/increment"), "").await;
    assert_eq!(parse(&body), json!({"value": 4, "loaded": 3}));
    // Another name is another object with its own count.
    let (_, body) = get(&http, &server.url("/INIT_COUNTER/other/")).await;
    assert_eq!(parse(&body), json!({"value": 0, "loaded": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_counter_hands_out_each_value_once_under_concurrency() {
    const REQUESTS: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();

    let server = start(&data);
    let increment = server.url("/SAFE_COUNTER/c/increment");
    let mut requests = JoinSet::new();
    for _ in 0..REQUESTS {
        let (http, url) = (http.clone(), increment.clone());
        requests.spawn(async move { send(&http, "POST", &url, "").await });
    }
    let mut values = Vec::new();
    while let Some(answer) = requests.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        values.push(body.parse::<u64>().unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, (1..=REQUESTS).collect::<Vec<_>>());
    assert_eq!(
        get(&http, &server.url("/SAFE_COUNTER/c/")).await,
        (200, REQUESTS.to_string())
    );
    drop(server);

    let server = start(&data);
    assert_eq!(
        get(&http, &server.url("/SAFE_COUNTER/c/")).await,
        (200, REQUESTS.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_land_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();
    let server = start(&data);
    let url = |path: &str| server.url(&format!("/COALESCER/c{path}"));

    let (_, body) = get(&http, &url("/check")).await;
    assert_eq!(
        parse(&body),
        json!({"count": 0, "batches": [], "same_batch": true, "last_batch": null})
    );
    let (status, body) = send(&http, "POST", &url("/write/300"), "").await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({"batch": 1, "items": 300}))
    );
    let (_, body) = get(&http, &url("/check")).await;
    assert_eq!(
        parse(&body),
        json!({"count": 300, "batches": [1], "same_batch": true, "last_batch": 1})
    );
    let (status, body) = send(&http, "POST", &url("/write-many/300"), "").await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({"batch": 2, "items": 300}))
    );
    let (_, body) = get(&http, &url("/check")).await;
    assert_eq!(
        parse(&body),
        json!({"count": 300, "batches": [2], "same_batch": true, "last_batch": 2})
    );

    // The largest batch, both ways; /check lists it a page at a time.
    for (route, batch) in [("write-many", 1), ("write", 2)] {
        let (status, body) = send(
            &http,
            "POST",
            &server.url(&format!("/COALESCER/big/{route}/10000")),
            "",
        )
        .await;
        assert_eq!(
            (status, parse(&body)),
            (200, json!({"batch": batch, "items": 10_000}))
        );
    }
    drop(server);
    let server = start(&data);
    let (_, body) = get(&http, &server.url("/COALESCER/big/check")).await;
    assert_eq!(
        parse(&body),
        json!({"count": 10_000, "batches": [2], "same_batch": true, "last_batch": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_are_never_recovered_in_part_after_kill_9() {
    const ITEMS: u64 = 500;
    const WRITES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();
    let mut acknowledged = 0_u64;

    for round in 0..3 {
        let server = start(&data);
        let mut writes = JoinSet::new();
        for i in 0..WRITES {
            let route = if i % 2 == 0 { "write" } else { "write-many" };
            let (http, url) = (
                http.clone(),
                server.url(&format!("/COALESCER/crash/{route}/{ITEMS}")),
            );
            writes.spawn(async move { try_post(&http, &url).await });
        }
        // Kill once the first write is acknowledged, with the rest in flight.
        let mut answers = vec![writes.join_next().await.unwrap().unwrap()];
        server.kill9();
        while let Some(answer) = writes.join_next().await {
            answers.push(answer.unwrap());
        }
        for (status, body) in answers.into_iter().flatten() {
            assert_eq!(status, 200, "round {round}: {body}");
            acknowledged = acknowledged.max(parse(&body)["batch"].as_u64().unwrap());
        }

        let server = start(&data);
        let (status, body) = get(&http, &server.url("/COALESCER/crash/check")).await;
        assert_eq!(status, 200, "{body}");
        let check = parse(&body);
        let last = check["last_batch"].as_u64().unwrap();
        assert!(
            last >= acknowledged,
            "round {round}: batch {acknowledged} was acknowledged but the last durable batch is {last}"
        );
        assert_eq!(
            (&check["count"], &check["batches"]),
            (&json!(ITEMS), &json!([last])),
            "round {round}: every item carries the last durable batch: {check}"
        );
        server.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_delete_all_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();

    let server = start(&data);
    let url = |path: &str| server.url(&format!("/CLEANUP/c{path}"));
    for key in ["a", "b", "c"] {
        assert_eq!(
            send(&http, "PUT", &url(&format!("/kv/{key}")), key).await,
            (200, "stored".to_owned())
        );
    }
    assert_eq!(get(&http, &url("/count")).await, (200, "3".to_owned()));
    assert_eq!(get(&http, &url("/kv/b")).await, (200, "b".to_owned()));
    assert_eq!(
        send(&http, "POST", &url("/delete-all"), "").await,
        (200, "deleted".to_owned())
    );
    assert_eq!(get(&http, &url("/count")).await, (200, "0".to_owned()));
    assert_eq!(get(&http, &url("/kv/b")).await.0, 404);
    drop(server);

    let server = start(&data);
    let url = |path: &str| server.url(&format!("/CLEANUP/c{path}"));
    assert_eq!(get(&http, &url("/count")).await, (200, "0".to_owned()));
    assert_eq!(get(&http, &url("/kv/a")).await.0, 404);
    // The object goes on as if new.
    send(&http, "PUT", &url("/kv/d"), "d").await;
    assert_eq!(get(&http, &url("/count")).await, (200, "1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_client_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let http = client();
    let long_id = format!("/USER_CACHE/u/user/{}", "x".repeat(2000));
    let big_value = "v".repeat(128 * 1024 + 1);
    let number = "from 1 to 10000";
    #[rustfmt::skip]
    let cases = [
        ("PUT", "/USER_CACHE/u/user/a", "not json", 400, "not a user"),
        ("PUT", "/USER_CACHE/u/user/a", r#"{"name": 1, "email": "e"}"#, 400, "not a user"),
        ("PUT", "/USER_CACHE/u/user/a", r#"{"name": "n"}"#, 400, "missing field `email`"),
        ("PUT", &long_id, "{}", 400, "over the limit of 1024 bytes"),
        ("PUT", "/USER_CACHE/u/user/", "{}", 400, "empty"),
        ("DELETE", "/USER_CACHE/u/user/a", "", 404, "serves GET and PUT /user/<id>"),
        ("GET", "/INIT_COUNTER/u/increment", "", 404, "POST /increment"),
        ("GET", "/SAFE_COUNTER/u/nope", "", 404, "GET / and POST /increment"),
        ("POST", "/COALESCER/u/write/0", "", 400, number),
        ("POST", "/COALESCER/u/write/10001", "", 400, number),
        ("POST", "/COALESCER/u/write-many/-5", "", 400, number),
        ("POST", "/COALESCER/u/write/lots", "", 400, number),
        ("POST", "/COALESCER/u/write/99999999999999999999", "", 400, number),
        ("PUT", "/CLEANUP/u/kv/", "v", 400, "empty"),
        ("PUT", "/CLEANUP/u/kv/big", &big_value, 413, "over the limit of 131072 bytes"),
    ];
    for (method, path, body, status, says) in cases {
        let (got, text) = send(&http, method, &server.url(path), body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(
            text.contains(says),
            "{method} {path}: {text:?} should say {says:?}"
        );
    }
    // None of it was stored.
    let (status, body) = get(&http, &server.url("/COALESCER/u/check")).await;
    assert_eq!((status, &parse(&body)["count"]), (200, &json!(0)));
    assert_eq!(
        get(&http, &server.url("/CLEANUP/u/count")).await,
        (200, "0".to_owned())
    );
    assert_eq!(get(&http, &server.url("/USER_CACHE/u/user/a")).await.0, 404);
}
