//! The output gate: no response leaves before the writes it may reflect are
//! durable, including a read-only response that saw an uncommitted write.
//! Writes with `allow-unconfirmed` do not hold their response; `sync` makes
//! writes durable before the event ends; a WebSocket message waits like a
//! response. The committer is held back through
//! the host's commit hook.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dohost::CommitStage;

use serde_json::json;

use crate::outside::Outside;
use crate::support::{library_host, probe_stub, request, run_ops, text};

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

/// A library host whose commits pass through `Valve`.
fn gated_host(dir: &std::path::Path) -> (dohost::Host, Valve) {
    gated_host_with(dir, dohost::Settings::default())
}

/// As [`gated_host`], with `settings`.
fn gated_host_with(dir: &std::path::Path, settings: dohost::Settings) -> (dohost::Host, Valve) {
    let valve = Valve {
        events: Arc::default(),
        hold: Arc::default(),
    };
    let (events, hold) = (valve.events.clone(), valve.hold.clone());
    let host = library_host(dir)
        .settings(settings)
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
    (host, valve)
}

/// Makes the valve hold the next commit; send on the result to release it.
fn hold_next_commit(valve: &Valve) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel();
    *valve.hold.lock().unwrap() = Some(released);
    release
}

/// Waits until the valve holds a commit.
async fn wait_until_held(valve: &Valve) {
    for _ in 0..200 {
        if commit_held(valve) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no write reached the committer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_wait_for_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (host, valve) = gated_host(dir.path());
    let probe = probe_stub(&host, "gated");
    // Activate the object with nothing held.
    probe.fetch(request("PUT", "/kv/a", "0")).await.unwrap();

    let release = hold_next_commit(&valve);
    let write = tokio::spawn({
        let probe = probe.clone();
        async move { probe.fetch(request("PUT", "/kv/a", "1")).await }
    });
    // Wait until the write's event is over and its commit is held.
    wait_until_held(&valve).await;
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
async fn a_fetch_leaves_only_once_the_write_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let settings = dohost::Settings {
        outbound: dohost::OutboundSettings {
            allow: vec![outside.addr.clone()],
            ..dohost::OutboundSettings::default()
        },
        ..dohost::Settings::default()
    };
    let (host, valve) = gated_host_with(dir.path(), settings);
    let probe = probe_stub(&host, "webhook");
    probe.fetch(request("PUT", "/kv/a", "0")).await.unwrap();

    // The event writes `sent`, then fetches: the request must not leave
    // while the write's commit is held.
    let release = hold_next_commit(&valve);
    let spec = json!({"url": outside.url("/hello?webhook"), "put": "sent"});
    let event = tokio::spawn({
        let probe = probe.clone();
        async move {
            probe
                .fetch(request("POST", "/fetch", &spec.to_string()))
                .await
        }
    });
    wait_until_held(&valve).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        outside.seen_path("/hello?webhook").is_empty(),
        "the request left before the write it follows was durable"
    );
    release.send(()).unwrap();
    let answer = event.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200, "{}", text(&answer));
    assert!(
        text(&answer).contains("\"text\":\"hello\""),
        "{}",
        text(&answer)
    );
    let seen = outside.seen_path("/hello?webhook");
    assert_eq!(seen.len(), 1);
    let events = valve.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .skip_while(|e| *e != "commit held")
            .any(|e| e == "After"),
        "{events:?}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_unconfirmed_writes_do_not_hold_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let (host, valve) = gated_host(dir.path());
    let probe = probe_stub(&host, "eager");
    let unconfirmed = json!([{"op": "put", "key": "seen", "value": "1", "unconfirmed": true}]);

    // The commit of the unconfirmed write is held, yet its response comes.
    let release = hold_next_commit(&valve);
    let answered = tokio::time::timeout(Duration::from_secs(30), run_ops(&probe, &unconfirmed))
        .await
        .expect("an allow-unconfirmed write's response waited for its commit");
    assert_eq!(answered.unwrap(), [json!({"ok": null})]);
    wait_until_held(&valve).await;

    // A confirmed write queues behind it and its response waits.
    let confirmed = tokio::spawn({
        let probe = probe.clone();
        async move { run_ops(&probe, &json!([{"op": "put", "key": "seen", "value": "2"}])).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !confirmed.is_finished(),
        "a confirmed write's response left before its commit"
    );
    release.send(()).unwrap();
    confirmed.await.unwrap().unwrap();
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_makes_writes_durable_before_the_event_ends() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let probe = probe_stub(&host, "synced");
    // Written, synced, then the event traps: what was synced stays, the
    // write after the sync is discarded with the event.
    let trapped = run_ops(
        &probe,
        &json!([
            {"op": "put", "key": "before", "value": "1"},
            {"op": "sync"},
            {"op": "put", "key": "after", "value": "2"},
            {"op": "panic"},
        ]),
    )
    .await;
    assert!(trapped.is_err());
    host.shutdown().await;

    let host = library_host(dir.path()).build().unwrap();
    let probe = probe_stub(&host, "synced");
    let read = run_ops(
        &probe,
        &json!([{"op": "get", "key": "before"}, {"op": "get", "key": "after"}, {"op": "txn", "ops": [{"op": "sync"}]}]),
    )
    .await
    .unwrap();
    assert_eq!(read[0], json!({"ok": "1"}));
    assert_eq!(read[1], json!({"ok": null}));
    assert_eq!(
        read[2]["ok"][0]["err"],
        "sync cannot run inside a transaction; call it after the transaction"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_leaves_only_once_the_write_before_it_is_durable() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let (host, valve) = gated_host(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dohost::server::serve(
        host,
        listener,
        dohost::ServerSettings::default(),
        std::future::pending(),
    ));
    let url = format!("ws://{addr}/PROBE/gated-socket/websocket?name=w");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text("echo:ready")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ready"));

    let release = hold_next_commit(&valve);
    ws.send(Message::text("write:k")).await.unwrap();
    wait_until_held(&valve).await;
    let early = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(
        early.is_err(),
        "a message left before the write it follows was durable: {early:?}"
    );
    release.send(()).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the message once the write is durable")
        .unwrap()
        .unwrap();
    valve.events.lock().unwrap().push("message received".into());
    assert_eq!(message, Message::text("written:k"));
    let events = valve.events.lock().unwrap().clone();
    let held = events.iter().position(|e| e == "commit held").unwrap();
    let after = held + events[held..].iter().position(|e| e == "After").unwrap();
    let received = events.iter().position(|e| e == "message received").unwrap();
    assert!(after < received, "durable before sent: {events:?}");
}
