//! examples/batch-processor through `dohost serve`: items added within one
//! delay become one batch written by the alarm, the alarm is set once per
//! batch and cleared after it, and bad input gets a 4xx.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{client, get, send, serve_example_with_vars};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_one_delay_are_written_as_one_batch_by_the_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_example_with_vars(
        "examples/batch-processor",
        dir.path(),
        &dir.path().join("data"),
        &[("BATCH_DELAY_MS", "300")],
    );
    let http = client();
    let url = |path: &str| server.url(&format!("/BATCHER/orders{path}"));

    let (status, body) = send(&http, "POST", &url("/items"), "apple").await;
    assert_eq!(status, 200, "{body}");
    let first = parse(&body);
    assert_eq!(first["pending"], 1);
    let alarm = first["alarm"].as_i64().expect("an alarm is set");
    let (_, body) = send(&http, "POST", &url("/items"), "pear").await;
    assert_eq!(
        parse(&body),
        json!({"pending": 2, "alarm": alarm}),
        "the alarm already set is kept"
    );
    let (_, body) = get(&http, &url("/items")).await;
    assert_eq!(
        parse(&body),
        json!([]),
        "nothing is written before the alarm"
    );

    // Polls until the batch is written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let items = loop {
        let (status, body) = get(&http, &url("/items")).await;
        assert_eq!(status, 200, "{body}");
        let items = parse(&body);
        if items != json!([]) || tokio::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        items,
        json!([
            {"id": 1, "item": "apple", "batch": 1},
            {"id": 2, "item": "pear", "batch": 1},
        ])
    );
    let (_, body) = get(&http, &url("/status")).await;
    assert_eq!(
        parse(&body),
        json!({"pending": 0, "alarm": null, "batches": 1})
    );

    // The next item starts the next batch with a new alarm.
    let (_, body) = send(&http, "POST", &url("/items"), "plum").await;
    let next = parse(&body);
    assert!(next["alarm"].as_i64().unwrap() > alarm, "{next}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, body) = get(&http, &url("/items")).await;
    assert_eq!(
        parse(&body)[2],
        json!({"id": 3, "item": "plum", "batch": 2})
    );

    // Another name is another batcher.
    let (_, body) = get(&http, &server.url("/BATCHER/other/status")).await;
    assert_eq!(
        parse(&body),
        json!({"pending": 0, "alarm": null, "batches": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_client_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_example_with_vars(
        "examples/batch-processor",
        dir.path(),
        &dir.path().join("data"),
        &[],
    );
    let http = client();
    let url = |path: &str| server.url(&format!("/BATCHER/bad{path}"));
    let (status, body) = send(&http, "POST", &url("/items"), "").await;
    assert_eq!(status, 400);
    assert!(body.contains("1 to 65536 bytes"), "{body}");
    let big = "x".repeat(65537);
    let (status, _) = send(&http, "POST", &url("/items"), &big).await;
    assert_eq!(status, 400);
    let (status, body) = get(&http, &url("/nowhere")).await;
    assert_eq!(status, 404);
    assert!(body.contains("POST /items"), "{body}");
    // Nothing was added, so no alarm was set.
    let (_, body) = get(&http, &url("/status")).await;
    assert_eq!(
        parse(&body),
        json!({"pending": 0, "alarm": null, "batches": 0})
    );
}
