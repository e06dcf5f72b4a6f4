//! A broken guest gets a clear 500 and is reset; its event's writes vanish;
//! the server keeps serving it and every other object.

use crate::support::{Server, client, get, router_config, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_resets_only_that_object_and_discards_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();

    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "1 1".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "2 2".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/other/")).await,
        (200, "1".to_owned())
    );

    let (status, body) = get(&http, &server.url("/PROBE/p/panic")).await;
    assert_eq!(status, 500);
    assert!(body.contains("trapped"), "{body}");
    assert!(
        server
            .log_with("probe panic on request")
            .contains("probe panic on request")
    );

    // Fresh instance (in-memory count restarts), committed state kept.
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "1 3".to_owned())
    );

    let (status, body) = send(
        &http,
        "PUT",
        &server.url("/PROBE/p/put-then-panic/ghost"),
        "boo",
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        get(&http, &server.url("/PROBE/p/kv/ghost")).await.0,
        404,
        "a trapped event's write is discarded"
    );

    // That trap reset the object again: in-memory count restarts.
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "1 4".to_owned())
    );

    // abort resets it as a trap does, with the object's reason.
    let (status, body) = send(
        &http,
        "PUT",
        &server.url("/PROBE/p/put-then-abort/ghost"),
        "boo",
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("the object called abort and was reset: the probe gave up"),
        "{body}"
    );
    assert_eq!(get(&http, &server.url("/PROBE/p/kv/ghost")).await.0, 404);
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "1 5".to_owned())
    );

    // A returned error is a 500 too, but the object is not reset.
    let (status, body) = get(&http, &server.url("/PROBE/p/error")).await;
    assert_eq!(status, 500);
    assert_eq!(body.lines().next(), Some("probe error on request"));
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "2 6".to_owned())
    );

    // Other objects never noticed.
    assert_eq!(
        get(&http, &server.url("/COUNTER/other/")).await,
        (200, "2".to_owned())
    );
    assert!(server.log().contains("trapped"), "the trap is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_is_stopped_at_the_cpu_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = crate::support::library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 64,
            cpu_time_per_event: std::time::Duration::from_millis(300),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let ns = host.namespace("PROBE").unwrap();
    let looping = tokio::spawn({
        let stub = ns.id_from_name("spinner").get();
        async move {
            stub.fetch(crate::support::request("GET", "/loop", ""))
                .await
        }
    });
    // Another object answers while the first one spins.
    let other = ns.id_from_name("bystander").get();
    let r = other
        .fetch(crate::support::request("GET", "/count", ""))
        .await
        .unwrap();
    assert_eq!(crate::support::text(&r), "1 1");

    let err = looping.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::GuestTrap);
    assert!(err.message().contains("CPU time limit"), "{err}");
    // The spinner is reset and serves again.
    let stub = ns.id_from_name("spinner").get();
    let r = stub
        .fetch(crate::support::request("GET", "/count", ""))
        .await
        .unwrap();
    assert_eq!(crate::support::text(&r), "1 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_allocates_1_gib_traps_at_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = crate::support::library_host(dir.path()).build().unwrap();
    let stub = crate::support::probe_stub(&host, "hungry");
    let r = stub
        .fetch(crate::support::request("GET", "/count", ""))
        .await
        .unwrap();
    assert_eq!(crate::support::text(&r), "1 1");

    let err = stub
        .fetch(crate::support::request("GET", "/alloc/1024", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::GuestTrap, "{err}");
    assert!(
        err.message().contains("memory limit of 128 MiB"),
        "the trap names the limit: {err}"
    );

    // Reset: a fresh instance (the in-memory count starts again) that can
    // use memory within the limit, over the same storage.
    let r = stub
        .fetch(crate::support::request("GET", "/alloc/64", ""))
        .await
        .unwrap();
    assert_eq!(crate::support::text(&r), "allocated 64 MiB");
    let r = stub
        .fetch(crate::support::request("GET", "/count", ""))
        .await
        .unwrap();
    assert_eq!(crate::support::text(&r), "1 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slow_statements_do_not_stall_a_third_object() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();
    assert_eq!(get(&http, &server.url("/COUNTER/third/")).await.0, 200);
    // One statement per core, each busy for seconds inside SQLite.
    let slow = serde_json::json!([{"op": "sql", "params": [],
        "query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) SELECT count(*) FROM c"}])
    .to_string();
    let statements: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (http, url, slow) = (
                http.clone(),
                server.url(&format!("/PROBE/{name}/ops")),
                slow.clone(),
            );
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                let (status, body) = send(&http, "POST", &url, &slow).await;
                (status, body, start.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let start = std::time::Instant::now();
    assert_eq!(
        get(&http, &server.url("/COUNTER/third/")).await,
        (200, "2".to_owned())
    );
    let third = start.elapsed();
    for statement in statements {
        let (status, body, took) = statement.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("30000000"), "{body}");
        assert!(
            third * 4 < took,
            "the third object waited {third:?} while the statements took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_its_wall_clock_limit_fails_and_the_object_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let host = crate::support::library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 8,
            wall_time_per_event: std::time::Duration::from_millis(500),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let waiter = crate::support::probe_stub(&host, "waiter");
    assert_eq!(waiter.call::<u64>("memory", &()).await.unwrap(), 1);
    // It waits on another object for longer than its limit (little CPU).
    // The event fails at its limit, whatever the guest makes of the call's
    // cancellation (`forward` would answer it as a value).
    let start = std::time::Instant::now();
    let err = waiter
        .call::<serde_json::Value>("forward", &("PROBE", "sleeper", "spin", [3000]))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("wall-clock time limit of 500 ms"),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    // Only the event failed: it was waiting, not running, so the instance
    // goes on with its in-memory state.
    assert_eq!(waiter.call::<u64>("memory", &()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_deeper_than_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = crate::support::library_host(dir.path()).build().unwrap();
    let first = crate::support::probe_stub(&host, "n0");
    let path = |n: usize| (1..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
    let visited: Vec<String> = first
        .call("relay", &(path(dohost::MAX_CALL_DEPTH),))
        .await
        .unwrap();
    assert_eq!(visited.len(), dohost::MAX_CALL_DEPTH);
    let err = first
        .call::<Vec<String>>("relay", &(path(dohost::MAX_CALL_DEPTH + 1),))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("17 calls deep, past the limit of 16"),
        "{err}"
    );
}
