//! Object lifecycle: idle objects leave memory, after the idle timeout or to
//! make room at the cap on objects in memory, and come back with their
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
    // Events more often than the timeout keep it in memory, well past the
    // timeout after its first event.
    for n in 3..=8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            text(&stub.fetch(request("GET", "/count", "")).await.unwrap()),
            format!("{n} {n}"),
            "an object with an event every 100 ms stays live under a 200 ms idle timeout"
        );
    }
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
        "1 9"
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
async fn at_the_cap_the_least_recently_used_idle_object_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 4,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let ns = host.namespace("COUNTER").unwrap();
    let fetch = |name: String| {
        let stub = ns.id_from_name(&name).get();
        async move { text(&stub.fetch(request("GET", "/", "")).await.unwrap()) }
    };
    // Far more objects than the cap, one after another: each activates.
    for i in 0..40 {
        assert_eq!(fetch(format!("o{i}")).await, "1");
        assert!(host.stats().objects_in_memory <= 4, "{:?}", host.stats());
    }
    assert_eq!(host.stats().objects_in_memory, 4);
    assert!(ns.live_objects() <= 4, "evicted objects left memory");
    // o39 was used last, so it stayed; o0 left long ago and comes back
    // with its storage.
    let before = host.stats();
    assert_eq!(fetch("o39".into()).await, "2");
    assert_eq!(fetch("o0".into()).await, "2");
    assert_eq!(host.stats().objects_in_memory, 4, "{before:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_object_in_memory_is_busy_another_is_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 2,
            cpu_time_per_event: Duration::from_millis(1500),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let ns = host.namespace("PROBE").unwrap();
    let spinners: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let stub = ns.id_from_name(name).get();
            tokio::spawn(async move { stub.fetch(request("GET", "/loop", "")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = ns
        .id_from_name("c")
        .get()
        .fetch(request("GET", "/count", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::Overloaded, "{err}");
    assert_eq!(err.http_status(), 503);
    assert!(err.message().contains("max_live_objects"), "{err}");
    for spinner in spinners {
        assert_eq!(
            spinner.await.unwrap().unwrap_err().kind(),
            dohost::ErrorKind::GuestTrap
        );
    }
    // The spinners were reset by their traps: room again.
    assert_eq!(
        text(
            &ns.id_from_name("c")
                .get()
                .fetch(request("GET", "/count", ""))
                .await
                .unwrap()
        ),
        "1 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_worker_requests_waits_for_worker_instances() {
    let dir = tempfile::tempdir().unwrap();
    let g = crate::support::guests();
    // The counter example's worker sends every request to one object,
    // here a probe that spins: each request holds its worker instance
    // while it waits.
    let host = dohost::Host::builder()
        .data_dir(dir.path())
        .binding("COUNTER", "Probe", &g.probe)
        .worker(dohost::ComponentSource::File(g.worker.clone()))
        .settings(dohost::Settings {
            max_live_objects: 8,
            max_worker_instances: 4,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.fetch(request("GET", "/spin/20", "")).await })
        })
        .collect();
    let mut most = 0;
    while !requests.iter().all(tokio::task::JoinHandle::is_finished) {
        most = most.max(host.stats().worker_instances);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for answer in requests {
        assert_eq!(answer.await.unwrap().unwrap().status(), 200);
    }
    assert!(most <= 4, "{most} worker instances at once");
    assert!(most >= 2, "the requests ran concurrently: {most}");
}
