//! The Prometheus metrics of `dohost serve` (`GET /_dohost/metrics`, behind
//! the admin token, and `GET /metrics` on `[server] metrics_listen`
//! without it), read with a Prometheus text parser: requests by binding and
//! status, refusals, events, activations, resets after a trap, group
//! commits and their fsync, cache hits, alarms due and run, evictions and
//! the gauges of what the host holds, each moving as those things happen.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use crate::support::{Server, admin_get, client, get, guests, send, write_config};

const TOKEN: &str = "metrics-test-token";

/// The metrics, parsed.
async fn scrape(server: &Server) -> Scrape {
    let text = admin_get(server, TOKEN, "/_dohost/metrics").await;
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// The value of the sample `name` whose labels include `labels`; 0 when
/// there is none (a counter not yet moved).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is a histogram or summary; read its _count"),
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_move_as_requests_traps_commits_alarms_and_evictions_happen() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [limits]\nidle_timeout_ms = 300\n[alarms]\nretry_delay_ms = 20\nmax_retries = 1\n\
             [admin]\ntoken = {TOKEN:?}\n[server]\nmetrics_listen = \"{metrics_addr}\"\n",
            g.counter, g.probe
        ),
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let client = client();

    // Behind the admin token.
    let (status, _) = get(&client, &server.url("/_dohost/metrics")).await;
    assert_eq!(status, 401);
    let before = scrape(&server).await;
    assert!(
        before.docs.contains_key("dohost_http_requests_total"),
        "each metric is described: {:?}",
        before.docs.keys()
    );
    let commits_before = value(&before, "dohost_commit_write_sets_count", &[]);

    for _ in 0..3 {
        let (status, _) = send(&client, "POST", &server.url("/COUNTER/a/increment"), "").await;
        assert_eq!(status, 200);
    }
    let (status, _) = get(&client, &server.url("/PROBE/p/panic")).await;
    assert_eq!(status, 500);
    // Refused before it is placed: no such binding.
    let (status, _) = get(&client, &server.url("/NOPE/x")).await;
    assert_eq!(status, 404);
    let alarm = r#"[{"op": "set_alarm", "in_ms": 10}]"#;
    let (status, body) = send(&client, "POST", &server.url("/PROBE/q/ops"), alarm).await;
    assert_eq!(status, 200, "{body}");
    // An alarm that fails twice: retried once, then dropped.
    let failing = r#"[{"op": "put", "key": "alarm-plan", "value": "[\"error\", \"error\"]"},
                      {"op": "set_alarm", "in_ms": 10}]"#;
    let (status, body) = send(&client, "POST", &server.url("/PROBE/f/ops"), failing).await;
    assert_eq!(status, 200, "{body}");

    // The alarm fires; then both objects leave memory after their idle
    // timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = scrape(&server).await;
        let alarm = |outcome| {
            value(
                &after,
                "dohost_alarms_total",
                &[("binding", "PROBE"), ("outcome", outcome)],
            )
        };
        let alarmed = alarm("ok") + alarm("dropped");
        let idle = value(
            &after,
            "dohost_object_evictions_total",
            &[("binding", "COUNTER"), ("reason", "idle")],
        );
        if alarmed >= 2.0 && idle >= 1.0 && value(&after, "dohost_objects_in_memory", &[]) == 0.0 {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "the alarm ran and the objects left: {alarmed} {idle}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let requests = |binding: &str, status: &str| {
        value(
            &after,
            "dohost_http_requests_total",
            &[
                ("route", "object"),
                ("binding", binding),
                ("status", status),
            ],
        )
    };
    assert_eq!(requests("COUNTER", "200"), 3.0);
    assert_eq!(requests("PROBE", "500"), 1.0);
    assert_eq!(
        value(
            &after,
            "dohost_http_request_duration_seconds_count",
            &[("binding", "COUNTER")]
        ),
        3.0
    );
    let events = |binding: &str, kind: &str| {
        value(
            &after,
            "dohost_events_total",
            &[("binding", binding), ("kind", kind)],
        )
    };
    assert_eq!(events("COUNTER", "fetch"), 3.0);
    assert_eq!(events("PROBE", "fetch"), 3.0);
    assert_eq!(events("PROBE", "alarm"), 3.0);
    let alarms = |outcome: &str| {
        value(
            &after,
            "dohost_alarms_total",
            &[("binding", "PROBE"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        [
            alarms("ok"),
            alarms("retried"),
            alarms("dropped"),
            alarms("error")
        ],
        [1.0, 1.0, 1.0, 0.0]
    );
    assert_eq!(
        value(
            &after,
            "dohost_object_activations_total",
            &[("binding", "COUNTER")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "dohost_object_activation_duration_seconds_count",
            &[("binding", "COUNTER")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "dohost_object_resets_total",
            &[("binding", "PROBE"), ("cause", "trap")]
        ),
        1.0
    );
    // Three counter writes, the alarm's write and its clearing, at least.
    assert!(
        value(&after, "dohost_commit_write_sets_count", &[]) >= commits_before + 4.0,
        "commits: {}",
        value(&after, "dohost_commit_write_sets_count", &[])
    );
    assert_eq!(value(&after, "dohost_commit_failures_total", &[]), 0.0);
    assert_eq!(
        value(&after, "dohost_commit_sync_duration_seconds_count", &[]),
        value(&after, "dohost_commit_write_sets_count", &[]),
        "each commit's fsync is timed"
    );
    // The second and third increments read the value from the cache.
    assert!(value(&after, "dohost_storage_cache_hits_total", &[]) >= 2.0);
    assert_eq!(
        value(&after, "dohost_alarms_due_total", &[("binding", "PROBE")]),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "dohost_http_refused_total",
            &[("reason", "no_route")]
        ),
        1.0
    );
    // The same text on the metrics address, without the token.
    let (status, text) = get(&client, &format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(status, 200);
    let open = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    assert_eq!(
        value(
            &open,
            "dohost_events_total",
            &[("binding", "COUNTER"), ("kind", "fetch")]
        ),
        3.0
    );
    let (status, _) = get(&client, &format!("http://{metrics_addr}/_dohost/stats")).await;
    assert_eq!(status, 404, "the metrics address serves the metrics only");
    assert_eq!(value(&after, "dohost_websockets", &[]), 0.0);
    // Labels never name an object.
    for sample in &after.samples {
        for (name, value) in sample.labels.iter() {
            assert!(
                !matches!(value.as_str(), "a" | "p" | "q" | "f") && value.len() < 64,
                "{} has label {name}={value}",
                sample.metric
            );
        }
    }
}
