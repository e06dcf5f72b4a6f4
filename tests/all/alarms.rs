//! Alarms: delivered at their time (not before), at least once, retried
//! with backoff, durable across restarts and `kill -9`, and never beside
//! another event of the object. The probe's alarm handler logs each
//! delivery under `alarm-log` and follows the steps under `alarm-plan` (see
//! tests/guests/probe/src/lib.rs).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Server, client, get, library_host, probe_stub, request, router_config, run_ops, send,
};

/// A host whose failed alarms are retried after `retry_ms`, 2×, 4×, ...
/// up to `max_retries` times.
fn alarm_host(dir: &std::path::Path, retry_ms: u64, max_retries: u32) -> dohost::Host {
    library_host(dir)
        .settings(alarm_settings(retry_ms, max_retries))
        .build()
        .expect("host builds")
}

fn alarm_settings(retry_ms: u64, max_retries: u32) -> dohost::Settings {
    dohost::Settings {
        max_live_objects: 2048,
        alarm_retry_delay: Duration::from_millis(retry_ms),
        alarm_max_retries: max_retries,
        ..dohost::Settings::default()
    }
}

fn ms_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Sets the probe's alarm plan and its alarm `in_ms` from now (one event);
/// returns the alarm's time.
async fn arm(stub: &dohost::Stub, plan: &[&str], in_ms: i64) -> i64 {
    let results = run_ops(
        stub,
        &json!([
            {"op": "put", "key": "alarm-plan", "value": json!(plan).to_string()},
            {"op": "set_alarm", "in_ms": in_ms},
        ]),
    )
    .await
    .unwrap();
    results[1]["ok"]
        .as_i64()
        .expect("set_alarm answers its time")
}

/// The probe's alarm log and what `get_alarm` says now.
async fn alarm_state(stub: &dohost::Stub) -> (Vec<Value>, Option<i64>) {
    let results = run_ops(
        stub,
        &json!([{"op": "get", "key": "alarm-log"}, {"op": "get_alarm"}]),
    )
    .await
    .unwrap();
    let log = match results[0]["ok"].as_str() {
        Some(text) => serde_json::from_str(text).unwrap(),
        None => Vec::new(),
    };
    (log, results[1]["ok"].as_i64())
}

/// Polls until the probe has logged `count` deliveries (or `limit` passes)
/// and returns the log.
async fn wait_for_log(stub: &dohost::Stub, count: usize, limit: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (log, _) = alarm_state(stub).await;
        if log.len() >= count || tokio::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn field(entry: &Value, name: &str) -> i64 {
    entry[name]
        .as_i64()
        .unwrap_or_else(|| panic!("no {name} in {entry}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fire_at_their_time_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 2000, 6);
    // Each round: 10 alarms 60 ms apart. The median lateness decides, so
    // one delivery slowed by a busy test machine does not; and a round
    // slowed whole (the other tests share the cores) is run again, up to
    // three rounds. A scheduler that is late by design is late in all.
    let mut medians = Vec::new();
    for round in 0..3 {
        let mut armed = Vec::new();
        for n in 0..10i64 {
            let stub = probe_stub(&host, &format!("accurate-{round}-{n}"));
            let time = arm(&stub, &["ok"], 200 + 60 * n).await;
            armed.push((stub, time));
        }
        let mut lateness = Vec::new();
        for (stub, time) in &armed {
            let log = wait_for_log(stub, 1, Duration::from_secs(10)).await;
            assert_eq!(log.len(), 1, "one delivery: {log:?}");
            let at = field(&log[0], "at");
            assert!(at >= *time, "fired {} ms early", time - at);
            assert_eq!(
                log[0]["alarm"],
                Value::Null,
                "the running alarm is not reported"
            );
            assert_eq!(log[0]["retry_count"], 0);
            assert_eq!(log[0]["is_retry"], false);
            lateness.push(at - time);
            // Cleared once the handler succeeded.
            assert_eq!(alarm_state(stub).await.1, None);
        }
        lateness.sort_unstable();
        let median = lateness[lateness.len() / 2];
        medians.push((median, lateness));
        if median < 50 {
            break;
        }
    }
    assert!(
        medians.iter().any(|(median, _)| *median < 50),
        "median lateness of 50 ms or more in every round: {medians:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_alarms_retry_with_backoff_then_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 40, 3);
    let stub = probe_stub(&host, "failing");
    let time = arm(&stub, &["error", "error", "error", "error", "ok"], 0).await;
    let log = wait_for_log(&stub, 4, Duration::from_secs(10)).await;
    assert_eq!(log.len(), 4, "a first delivery and 3 retries: {log:?}");
    for (n, entry) in log.iter().enumerate() {
        assert_eq!(entry["retry_count"], n, "{log:?}");
        assert_eq!(entry["is_retry"], n > 0, "{log:?}");
    }
    assert!(field(&log[0], "at") >= time);
    for n in 1..log.len() {
        let gap = field(&log[n], "at") - field(&log[n - 1], "at");
        let backoff = 40 << (n - 1);
        assert!(
            gap >= backoff,
            "retry {n} came {gap} ms after, before its {backoff} ms backoff"
        );
    }
    // Dropped after the last retry: no fifth delivery, no alarm left.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (log, alarm) = alarm_state(&stub).await;
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(alarm, None);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_handler_is_retried_and_its_writes_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 30, 6);
    let stub = probe_stub(&host, "trapping");
    arm(&stub, &["panic", "panic", "ok"], 0).await;
    let log = wait_for_log(&stub, 1, Duration::from_secs(10)).await;
    // The two trapped deliveries logged nothing that survived.
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["retry_count"], 2);
    assert_eq!(log[0]["is_retry"], true);
    assert_eq!(alarm_state(&stub).await.1, None);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_decides_with_set_alarm_or_delete_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 30, 6);

    // delete_alarm, then an error: no retry.
    let stub = probe_stub(&host, "deleting");
    arm(&stub, &["delete", "ok"], 0).await;
    let log = wait_for_log(&stub, 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (log_after, alarm) = alarm_state(&stub).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log_after.len(),
        1,
        "delete_alarm stops the retries: {log_after:?}"
    );
    assert_eq!(alarm, None);

    // A new alarm set by a successful handler is kept and fires.
    let stub = probe_stub(&host, "rearming");
    let first = arm(&stub, &["again:100"], 0).await;
    let log = wait_for_log(&stub, 3, Duration::from_secs(10)).await;
    assert!(log.len() >= 3, "{log:?}");
    assert!(field(&log[0], "at") >= first);
    for n in 1..3 {
        assert!(
            field(&log[n], "at") - field(&log[n - 1], "at") >= 100,
            "{log:?}"
        );
        assert_eq!(log[n]["retry_count"], 0);
    }
    let results = run_ops(&stub, &json!([{"op": "delete_alarm"}]))
        .await
        .unwrap();
    assert_eq!(results[0], json!({"ok": null}));
    let settled = alarm_state(&stub).await.0.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        alarm_state(&stub).await.0.len(),
        settled,
        "deleted: no more deliveries"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_writes_follow_transactions_and_delete_all() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 30, 6);
    let stub = probe_stub(&host, "txn");
    let results = run_ops(
        &stub,
        &json!([
            {"op": "txn", "ops": [{"op": "set_alarm", "in_ms": 200}], "rollback": true},
            {"op": "get_alarm"},
            {"op": "txn", "ops": [{"op": "set_alarm", "at": 4_000_000_000_000i64}]},
            {"op": "get_alarm"},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(results[1], json!({"ok": null}), "rolled back: {results:?}");
    assert_eq!(results[3], json!({"ok": 4_000_000_000_000i64}));
    assert_eq!(alarm_state(&stub).await.1, Some(4_000_000_000_000));

    // delete-all takes the alarm with it.
    arm(&stub, &["ok"], 150).await;
    let results = run_ops(&stub, &json!([{"op": "delete_all"}, {"op": "get_alarm"}]))
        .await
        .unwrap();
    assert_eq!(results[1], json!({"ok": null}));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(alarm_state(&stub).await, (Vec::new(), None));

    // A trapping event's set_alarm is discarded with its other writes.
    let results = run_ops(
        &stub,
        &json!([{"op": "txn", "ops": [{"op": "set_alarm", "in_ms": 100}], "fail": true}, {"op": "get_alarm"}]),
    )
    .await
    .unwrap();
    assert_eq!(results[1], json!({"ok": null}));
    let trapped = stub
        .fetch(request(
            "POST",
            "/ops",
            &json!([{"op": "set_alarm", "in_ms": 100}, {"op": "panic"}]).to_string(),
        ))
        .await;
    assert!(trapped.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alarm_state(&stub).await, (Vec::new(), None));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_objects_each_fire_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 2000, 6);
    let stubs: Vec<_> = (0..1000)
        .map(|n| probe_stub(&host, &format!("many-{n}")))
        .collect();
    // Due over about half a second, from shortly after the last is set.
    let start = ms_now() + 1500;
    let mut tasks = tokio::task::JoinSet::new();
    for (n, stub) in stubs.iter().enumerate() {
        let stub = stub.clone();
        let at = start + (n as i64 % 500);
        tasks.spawn(async move {
            run_ops(&stub, &json!([{"op": "set_alarm", "at": at}]))
                .await
                .unwrap()
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap()[0]["ok"].as_i64().map(|_| ()), Some(()));
    }
    let mut missing = stubs.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut still = Vec::new();
        for stub in missing {
            if alarm_state(&stub).await.0.is_empty() {
                still.push(stub);
            }
        }
        missing = still;
    }
    assert!(missing.is_empty(), "{} alarms never fired", missing.len());
    // Once each, and no more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for stub in &stubs {
        let (log, alarm) = alarm_state(stub).await;
        assert_eq!(log.len(), 1, "{stub:?}: {log:?}");
        assert_eq!(log[0]["retry_count"], 0);
        assert_eq!(alarm, None);
    }
    assert_eq!(host.stats().alarms_run, 1000, "one handler run per alarm");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_beyond_the_in_memory_window_wait_in_redb_and_fire_in_turn() {
    const WINDOW: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let small = |dir: &std::path::Path| {
        library_host(dir)
            .settings(dohost::Settings {
                alarm_window: WINDOW,
                ..alarm_settings(2000, 6)
            })
            .build()
            .expect("host builds")
    };
    let start = ms_now() + 1500;
    // 60 alarms 20 ms apart, set latest first, half before a restart.
    let times: Vec<i64> = (0..60).rev().map(|n| start + 20 * n).collect();
    let mut host = small(dir.path());
    for (n, time) in times.iter().enumerate() {
        if n == 30 {
            host.shutdown().await;
            host = small(dir.path());
        }
        let stub = probe_stub(&host, &format!("window-{time}"));
        run_ops(&stub, &json!([{"op": "set_alarm", "at": time}]))
            .await
            .unwrap();
        let held = host.stats().alarms_in_memory;
        assert!(held <= WINDOW, "{held} alarms in memory");
    }
    for time in &times {
        let stub = probe_stub(&host, &format!("window-{time}"));
        let log = wait_for_log(&stub, 1, Duration::from_secs(20)).await;
        assert_eq!(log.len(), 1, "the alarm at {time}: {log:?}");
        assert!(field(&log[0], "at") >= *time, "fired before its time");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for time in &times {
        let stub = probe_stub(&host, &format!("window-{time}"));
        let (log, alarm) = alarm_state(&stub).await;
        assert_eq!(
            (log.len(), alarm),
            (1, None),
            "the alarm at {time}: {log:?}"
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_survive_a_restart_and_overdue_ones_fire_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let host = alarm_host(dir.path(), 2000, 6);
    let overdue = arm(&probe_stub(&host, "overdue"), &["ok"], 300).await;
    let later = arm(&probe_stub(&host, "later"), &["ok"], 2500).await;
    host.shutdown().await;
    // Down while the first one is due.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = ms_now();
    let host = alarm_host(dir.path(), 2000, 6);
    // The scheduler starts with the host: nothing but the alarm wakes it.
    let stub = probe_stub(&host, "overdue");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let log = wait_for_log(&stub, 1, Duration::from_secs(10)).await;
    assert_eq!(log.len(), 1, "{log:?}");
    let at = field(&log[0], "at");
    assert!(at >= overdue);
    assert!(at - started < 2000, "fired {} ms after start", at - started);

    let stub = probe_stub(&host, "later");
    let log = wait_for_log(&stub, 1, Duration::from_secs(10)).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(field(&log[0], "at") >= later, "fired before its time");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_handler_runs_it_again_as_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let config = router_config(dir.path());
    let data = dir.path().join("data");
    let http = client();
    let server = Server::start(&config, &data);
    let ops = json!([
        {"op": "put", "key": "alarm-plan", "value": json!(["spin:5000", "ok"]).to_string()},
        {"op": "set_alarm", "in_ms": 0},
    ]);
    let (status, body) = send(
        &http,
        "POST",
        &server.url("/PROBE/crashing/ops"),
        &ops.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The handler is spinning now (its start is durable before it runs).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();

    let server = Server::start(&config, &data);
    let restarted = ms_now();
    // No request before the alarm is due again: the scheduler starts with
    // the server.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let url = server.url("/PROBE/crashing/ops");
    let read = json!([{"op": "get", "key": "alarm-log"}, {"op": "get_alarm"}]).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let log: Vec<Value> = loop {
        let (status, body) = send(&http, "POST", &url, &read).await;
        assert_eq!(status, 200, "{body}");
        let results: Vec<Value> = serde_json::from_str(&body).unwrap();
        if let Some(text) = results[0]["ok"].as_str() {
            break serde_json::from_str(text).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alarm never ran again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["retry_count"], 1, "{log:?}");
    assert_eq!(log[0]["is_retry"], true, "{log:?}");
    let at = field(&log[0], "at");
    assert!(
        at < restarted + 3000,
        "ran {} ms after the restart, not before the first request",
        at - restarted
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_never_overlaps_fetches_of_its_object() {
    let dir = tempfile::tempdir().unwrap();
    let config = router_config(dir.path());
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();
    let ops = json!([
        {"op": "put", "key": "alarm-plan", "value": json!(["spin:300"]).to_string()},
        {"op": "set_alarm", "in_ms": 600},
    ]);
    let (status, body) = send(
        &http,
        "POST",
        &server.url("/PROBE/busy/ops"),
        &ops.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Two clients keep fetching through the alarm's run.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (http.clone(), server.url("/PROBE/busy/spin/15"));
            tokio::spawn(async move {
                let mut spans = Vec::new();
                for _ in 0..60 {
                    let (status, body) = get(&http, &url).await;
                    assert_eq!(status, 200, "{body}");
                    let span: Value = serde_json::from_str(&body).unwrap();
                    spans.push((field(&span, "start"), field(&span, "end")));
                }
                spans
            })
        })
        .collect();
    let mut spans = Vec::new();
    for c in clients {
        spans.extend(c.await.unwrap());
    }
    let read = json!([{"op": "get", "key": "alarm-log"}]).to_string();
    let (_, body) = send(&http, "POST", &server.url("/PROBE/busy/ops"), &read).await;
    let results: Vec<Value> = serde_json::from_str(&body).unwrap();
    let log: Vec<Value> =
        serde_json::from_str(results[0]["ok"].as_str().expect("the alarm ran")).unwrap();
    let (start, end) = (field(&log[0], "at"), field(&log[0], "end"));
    assert!(end - start >= 300);
    let before = spans.iter().filter(|(_, e)| *e <= start).count();
    let after = spans.iter().filter(|(s, _)| *s >= end).count();
    assert!(
        before > 0 && after > 0,
        "fetches ran before ({before}) and after ({after})"
    );
    for (s, e) in &spans {
        assert!(
            e <= &start || s >= &end,
            "fetch {s}..{e} overlapped the alarm {start}..{end}"
        );
    }
    drop(server);
}
