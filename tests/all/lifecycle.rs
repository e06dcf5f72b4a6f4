//! Object lifecycle: idle objects leave memory and come back with their
//! storage; a full mailbox refuses work as overloaded instead of growing.

use std::time::Duration;

use crate::support::{library_host, request, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_objects_are_evicted_and_reactivated() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 64,
            idle_timeout: Duration::from_millis(200),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let ns = host.namespace("PROBE").unwrap();
    let stub = ns.id_from_name("sleepy").get();
    assert_eq!(
        text(&stub.fetch(request("GET", "/count", "")).await.unwrap()),
        "1 1"
    );
    assert_eq!(
        text(&stub.fetch(request("GET", "/count", "")).await.unwrap()),
        "2 2"
    );
    assert_eq!(ns.live_objects(), 1);

    let mut waited = 0;
    while ns.live_objects() > 0 {
        assert!(waited < 100, "the idle object was never evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    // A new instance (in-memory count restarts) over the same storage.
    assert_eq!(
        text(&stub.fetch(request("GET", "/count", "")).await.unwrap()),
        "1 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_is_overloaded_not_unbounded() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 64,
            mailbox_capacity: 2,
            cpu_time_per_event: Duration::from_millis(1500),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let stub = host.namespace("PROBE").unwrap().id_from_name("busy").get();
    // Occupy the object, then fill its mailbox.
    let spinning = tokio::spawn({
        let stub = stub.clone();
        async move { stub.fetch(request("GET", "/loop", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued: Vec<_> = (0..2)
        .map(|_| {
            let stub = stub.clone();
            tokio::spawn(async move { stub.fetch(request("GET", "/count", "")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = stub.fetch(request("GET", "/count", "")).await.unwrap_err();
    assert_eq!(refused.kind(), dohost::ErrorKind::Overloaded, "{refused}");
    assert_eq!(refused.http_status(), 503);
    assert!(refused.message().contains("overloaded"), "{refused}");

    assert_eq!(
        spinning.await.unwrap().unwrap_err().kind(),
        dohost::ErrorKind::GuestTrap
    );
    let mut answers = Vec::new();
    for q in queued {
        answers.push(text(&q.await.unwrap().unwrap()));
    }
    answers.sort();
    assert_eq!(
        answers,
        ["1 1", "2 2"],
        "queued events run after the trap, on a fresh instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_is_overloaded_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 4,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let ns = host.namespace("COUNTER").unwrap();
    let mut activated = 0;
    let err = loop {
        assert!(activated < 1000, "the pool never filled up");
        match ns
            .id_from_name(&format!("o{activated}"))
            .get()
            .fetch(request("GET", "/", ""))
            .await
        {
            Ok(r) => assert_eq!(text(&r), "1"),
            Err(e) => break e,
        }
        activated += 1;
    };
    // The pool holds the live-object cap plus the slots kept for workers.
    assert_eq!(activated, 4 + 256);
    assert_eq!(err.kind(), dohost::ErrorKind::Overloaded, "{err}");
    assert!(err.message().contains("instance slot"), "{err}");
    // Objects already live keep working.
    let again = ns
        .id_from_name("o0")
        .get()
        .fetch(request("GET", "/", ""))
        .await
        .unwrap();
    assert_eq!(text(&again), "2");
}
