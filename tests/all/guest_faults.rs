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
    assert!(server.log().contains("probe panic on request"));

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

    // A returned error is a 500 too, but the object is not reset.
    let (status, body) = get(&http, &server.url("/PROBE/p/error")).await;
    assert_eq!(status, 500);
    assert_eq!(body.lines().next(), Some("probe error on request"));
    assert_eq!(
        get(&http, &server.url("/PROBE/p/count")).await,
        (200, "2 5".to_owned())
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
