//! The output gate: no response leaves before the writes it may reflect are
//! durable, including a read-only response that saw an uncommitted write.
//! The committer is held back through the host's commit hook.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dohost::CommitStage;

use crate::support::{library_host, request, text};

/// A commit hook that records stages and, when `hold` is set, blocks the next
/// commit until the test releases it.
struct Valve {
    events: Arc<Mutex<Vec<String>>>,
    hold: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

/// Whether the hook has held a commit back.
fn commit_held(valve: &Valve) -> bool {
    valve
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e == "commit held")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_wait_for_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let valve = Valve {
        events: Arc::default(),
        hold: Arc::default(),
    };
    let (events, hold) = (valve.events.clone(), valve.hold.clone());
    let host = library_host(dir.path())
        .commit_hook(Arc::new(move |stage| {
            let held = if stage == CommitStage::Before {
                hold.lock().unwrap().take()
            } else {
                None
            };
            if let Some(release) = held {
                events.lock().unwrap().push("commit held".into());
                release.recv().unwrap();
            }
            events.lock().unwrap().push(format!("{stage:?}"));
        }))
        .build()
        .unwrap();
    let probe = host.namespace("PROBE").unwrap().id_from_name("gated").get();
    // Activate the object with nothing held.
    probe.fetch(request("PUT", "/kv/a", "0")).await.unwrap();

    let (release, released) = mpsc::channel();
    *valve.hold.lock().unwrap() = Some(released);

    let write = tokio::spawn({
        let probe = probe.clone();
        async move { probe.fetch(request("PUT", "/kv/a", "1")).await }
    });
    // Wait until the write's event is over and its commit is held.
    for _ in 0..200 {
        if commit_held(&valve) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(commit_held(&valve), "the write never reached the committer");
    // The object moves on to the next event while the commit is held; this
    // read sees the uncommitted value, so its response is gated as well.
    let read = tokio::spawn({
        let probe = probe.clone();
        async move { probe.fetch(request("GET", "/kv/a", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !write.is_finished(),
        "the write's response left before its commit"
    );
    assert!(
        !read.is_finished(),
        "a response that read uncommitted data left before the commit"
    );
    assert!(commit_held(&valve));

    release.send(()).unwrap();
    let write = write.await.unwrap().unwrap();
    valve.events.lock().unwrap().push("write answered".into());
    let read = read.await.unwrap().unwrap();
    assert_eq!(text(&write), "ok");
    assert_eq!(text(&read), "1");

    let events = valve.events.lock().unwrap().clone();
    let held = events.iter().position(|e| e == "commit held").unwrap();
    let after = held + events[held..].iter().position(|e| e == "After").unwrap();
    let answered = events.iter().position(|e| e == "write answered").unwrap();
    assert!(after < answered, "durable before answered: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_serves_many_objects() {
    let dir = tempfile::tempdir().unwrap();
    let commits = Arc::new(Mutex::new(0usize));
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let counted = commits.clone();
    let host = library_host(dir.path())
        .commit_hook(Arc::new(move |stage| {
            if stage == CommitStage::Before {
                // Hold the first commit so the others pile up behind it.
                let first = *counted.lock().unwrap() == 0;
                if first {
                    released.lock().unwrap().recv().unwrap();
                }
                *counted.lock().unwrap() += 1;
            }
        }))
        .build()
        .unwrap();
    let ns = host.namespace("COUNTER").unwrap();
    let first = tokio::spawn({
        let stub = ns.id_from_name("first").get();
        async move { stub.fetch(request("GET", "/", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let stub = ns.id_from_name(&format!("o{i}")).get();
            tokio::spawn(async move { stub.fetch(request("GET", "/", "")).await })
        })
        .collect();
    // Give all 20 events time to end and queue their write sets.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    release.send(()).unwrap();
    assert_eq!(text(&first.await.unwrap().unwrap()), "1");
    for task in tasks {
        assert_eq!(text(&task.await.unwrap().unwrap()), "1");
    }
    // 21 write sets, committed in the held commit plus (at most) a few group commits.
    let commits = *commits.lock().unwrap();
    assert!(
        commits <= 3,
        "expected group commit, got {commits} commits for 21 write sets"
    );
}
