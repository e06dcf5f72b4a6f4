//! Objects that talk to the world (issue 25): `fetch` from Rust and
//! JavaScript objects to a real HTTP server on loopback, the egress policy
//! and limits of `[outbound]`, and Cloudflare's input gate: while an event
//! awaits a fetch, a timer or a call, the object takes other events;
//! `blockConcurrencyWhile` keeps them out; `waitUntil` work runs after the
//! response; a `kill -9` meanwhile loses no acknowledged write.
//!
//! One server runs the JavaScript SDK tour (examples/js/api, binding API)
//! beside the Rust probe (binding PROBE); both have a `POST /fetch` route.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::outside::Outside;
use crate::support::{
    HttpClient, Server, client, example_config, get, get_json, guests, js_examples_built, send,
    write_config,
};

/// The JavaScript tour and the Rust probe, with `outbound` (the body of an
/// `[outbound]` table) in the configuration.
fn serve(dir: &std::path::Path, data: &std::path::Path, outbound: &str) -> Server {
    js_examples_built();
    let config = format!(
        "{}\n[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\n[outbound]\n{outbound}\n",
        example_config("examples/js/api"),
        guests().probe
    );
    Server::start(&write_config(dir, &config), data)
}

/// `[outbound]` allowing the outside server.
fn allowing(outside: &Outside) -> String {
    format!("allow = [{:?}]", outside.addr)
}

/// POSTs `spec` to the `/fetch` route of object `object` (`API/<name>` or
/// `PROBE/<name>`); one answer per request sent.
async fn fetch_via(client: &HttpClient, server: &Server, object: &str, spec: Value) -> Vec<Value> {
    let url = server.url(&format!("/{object}/fetch"));
    let (status, body) = send(client, "POST", &url, &spec.to_string()).await;
    assert_eq!(status, 200, "POST {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

const OBJECTS: [&str; 2] = ["API/a", "PROBE/a"];
const TEN_MB: usize = 10 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_javascript_objects_fetch_from_a_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let server = serve(dir.path(), &dir.path().join("data"), &allowing(&outside));
    let client = client();
    for object in OBJECTS {
        let hello = fetch_via(
            &client,
            &server,
            object,
            json!({"url": outside.url("/hello")}),
        )
        .await;
        assert_eq!(hello[0]["status"], 200, "{object}: {hello:?}");
        assert_eq!(hello[0]["text"], "hello", "{object}");

        // 10 MB there and back.
        let spec = json!({"url": outside.url("/echo"), "method": "POST", "body_bytes": TEN_MB, "bodyBytes": TEN_MB});
        let echo = fetch_via(&client, &server, object, spec).await;
        assert_eq!(echo[0]["status"], 200, "{object}: {echo:?}");
        assert_eq!(echo[0]["length"], TEN_MB, "{object}");

        // Redirects as fetch does them.
        let url = outside.url("/redirect");
        let follow = fetch_via(&client, &server, object, json!({"url": url})).await;
        assert_eq!(follow[0]["text"], "hello", "{object}: {follow:?}");
        let manual = fetch_via(
            &client,
            &server,
            object,
            json!({"url": url, "redirect": "manual"}),
        )
        .await;
        assert_eq!(manual[0]["status"], 302, "{object}: {manual:?}");
        let error = fetch_via(
            &client,
            &server,
            object,
            json!({"url": url, "redirect": "error"}),
        )
        .await;
        let message = error[0]["error"].as_str().unwrap_or_default();
        assert!(message.contains("redirect"), "{object}: {error:?}");
    }
    let posted: Vec<_> = outside
        .seen_path("/echo")
        .iter()
        .map(|s| (s.method.clone(), s.body_len))
        .collect();
    assert_eq!(posted, vec![("POST".to_owned(), TEN_MB); 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_policy_refuses_loopback_unless_a_rule_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let client = client();
    let refusing = serve(dir.path(), &dir.path().join("data"), "");
    let rule = format!("[outbound] allow = [\"{}\"]", outside.addr);
    for object in OBJECTS {
        let answer = fetch_via(
            &client,
            &refusing,
            object,
            json!({"url": outside.url("/hello")}),
        )
        .await;
        let message = answer[0]["error"].as_str().unwrap_or_default();
        assert!(message.contains("loopback"), "{object}: {answer:?}");
        assert!(
            message.contains(&rule),
            "{object}: names the rule: {message}"
        );
    }
    assert!(outside.seen().is_empty(), "a refused fetch never connects");
    refusing.stop();

    let allowing = serve(dir.path(), &dir.path().join("data"), &allowing(&outside));
    for object in OBJECTS {
        let answer = fetch_via(
            &client,
            &allowing,
            object,
            json!({"url": outside.url("/hello")}),
        )
        .await;
        assert_eq!(answer[0]["text"], "hello", "{object}: {answer:?}");
    }
    // Deny rules and their precedence: host/src/runtime/outbound.rs.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subrequest_and_time_limits_fail_with_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let limits = format!(
        "{}\nmax_subrequests = 3\ntimeout_ms = 300",
        allowing(&outside)
    );
    let server = serve(dir.path(), &dir.path().join("data"), &limits);
    let client = client();
    for object in OBJECTS {
        let answers = fetch_via(
            &client,
            &server,
            object,
            json!({"url": outside.url("/hello"), "times": 5}),
        )
        .await;
        let ok = answers.iter().filter(|a| a["text"] == "hello").count();
        let limited: Vec<_> = answers.iter().filter_map(|a| a["error"].as_str()).collect();
        assert_eq!((ok, limited.len()), (3, 2), "{object}: {answers:?}");
        assert!(
            limited
                .iter()
                .all(|m| m.contains("[outbound] max_subrequests")),
            "{object}: {limited:?}"
        );
        // The limit is per event: the next event may send again.
        let again = fetch_via(
            &client,
            &server,
            object,
            json!({"url": outside.url("/hello")}),
        )
        .await;
        assert_eq!(again[0]["text"], "hello", "{object}: {again:?}");

        let slow = fetch_via(
            &client,
            &server,
            object,
            json!({"url": outside.url("/slow?ms=3000")}),
        )
        .await;
        let message = slow[0]["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("timed out after 300 ms ([outbound] timeout_ms)"),
            "{object}: {slow:?}"
        );
    }
}

/// Waits until the outside server has received `n` requests for `path`.
async fn wait_seen(outside: &Outside, path: &str, n: usize) {
    for _ in 0..500 {
        if outside.seen_path(path).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the outside server never saw {n} requests for {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_awaiting_a_slow_fetch_answers_a_hundred_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let server = serve(dir.path(), &dir.path().join("data"), &allowing(&outside));
    let client = client();
    for (object, count) in [("API/a", "count"), ("PROBE/a", "count")] {
        let path = format!("/slow?ms=2000&{}", object.replace('/', "-"));
        let slow = tokio::spawn({
            let (client, url) = (client.clone(), server.url(&format!("/{object}/fetch")));
            let spec = json!({"url": outside.url(&path)}).to_string();
            async move { send(&client, "POST", &url, &spec).await }
        });
        wait_seen(&outside, &path, 1).await;
        let start = Instant::now();
        for _ in 0..100 {
            let (status, body) = get(&client, &server.url(&format!("/{object}/{count}"))).await;
            assert_eq!(status, 200, "{object}: {body}");
        }
        assert!(
            !slow.is_finished(),
            "{object}: 100 requests answered in {:?}, all while the fetch waited",
            start.elapsed()
        );
        let (status, body) = slow.await.unwrap();
        assert_eq!(status, 200, "{object}: {body}");
        assert!(body.contains("\"text\":\"slow\""), "{object}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaits_run_together_and_calls_come_back_but_not_into_a_blocked_object() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &dir.path().join("data"), "");
    let client = client();
    // Ten calls of 400 ms each under Promise.all: about one call's time.
    let all = get_json(&client, &server.url("/API/a/all?n=10&ms=400")).await;
    assert_eq!(all["naps"], json!(vec![400; 10]));
    let elapsed = all["elapsed"].as_u64().unwrap();
    assert!(
        (400..2000).contains(&elapsed),
        "ten 400 ms calls at once took {elapsed} ms, not about 400 (the sum is 4000)"
    );

    // setInterval, clearInterval and clearTimeout on host timers.
    let timers = get_json(&client, &server.url("/API/a/timers")).await;
    assert_eq!(timers, json!({"ticks": 3, "clearedTimeoutFired": false}));

    // A → B → A.
    let relay = get_json(&client, &server.url("/API/a/relay?path=b,a")).await;
    assert_eq!(relay, json!(["a", "b", "a"]));

    // blockConcurrencyWhile keeps the next event out until it is done.
    let start = Instant::now();
    let blocking = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/API/c/block?ms=1000"));
        async move {
            let answer = get(&client, &url).await;
            (answer, start.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = get(&client, &server.url("/API/c/count")).await;
    let counted = start.elapsed();
    let ((block_status, _), unblocked) = blocking.await.unwrap();
    assert_eq!((status, block_status), (200, 200));
    assert!(
        counted >= Duration::from_millis(1000)
            && counted >= unblocked.saturating_sub(Duration::from_millis(50)),
        "the count answered at {counted:?}, inside blockConcurrencyWhile (over at {unblocked:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_work_runs_after_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::start().await;
    let server = serve(dir.path(), &dir.path().join("data"), &allowing(&outside));
    let client = client();
    let later = outside.url("/hello?later");
    let url = server.url(&format!("/API/w/later?url={later}"));
    let answered_at = get_json(&client, &url).await.as_i64().unwrap();
    assert!(
        outside.seen_path("/hello?later").is_empty(),
        "the waitUntil work ran before the response"
    );
    wait_seen(&outside, "/hello?later", 1).await;
    let written = get_json(&client, &server.url("/API/w/get?key=later")).await;
    let written = written.as_i64().expect("waitUntil wrote `later`");
    assert!(written >= answered_at + 250, "{written} vs {answered_at}");

    // The same in Rust, with dohost_sdk::wait_until and sleep.
    let (status, answered_at) = get(&client, &server.url("/PROBE/w/later/300")).await;
    assert_eq!(status, 200, "{answered_at}");
    let answered_at: i64 = answered_at.parse().unwrap();
    let (status, _) = get(&client, &server.url("/PROBE/w/kv/later")).await;
    assert_eq!(status, 404, "the wait_until work ran before the response");
    let mut written = None;
    for _ in 0..300 {
        let (status, body) = get(&client, &server.url("/PROBE/w/kv/later")).await;
        if status == 200 {
            written = Some(body.parse::<i64>().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = written.expect("wait_until wrote `later`");
    assert!(written >= answered_at + 250, "{written} vs {answered_at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_events_await_io_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let outside = Outside::start().await;
    let server = serve(dir.path(), &data, &allowing(&outside));
    let client = client();
    // Events that write, then wait on a fetch that will not answer in time.
    let mut waiting = Vec::new();
    for object in OBJECTS {
        for i in 0..3 {
            let spec = json!({"url": outside.url(&format!("/slow?ms=60000&{object}-{i}")), "put": format!("before-{i}")});
            let (client, url) = (client.clone(), server.url(&format!("/{object}/fetch")));
            waiting.push(tokio::spawn(async move {
                send(&client, "POST", &url, &spec.to_string()).await
            }));
        }
    }
    // Acknowledged writes while they wait.
    for _ in 0..20 {
        for object in OBJECTS {
            let (status, body) = get(&client, &server.url(&format!("/{object}/count"))).await;
            assert_eq!(status, 200, "{object}: {body}");
        }
    }
    for object in OBJECTS {
        for i in 0..3 {
            wait_seen(&outside, &format!("/slow?ms=60000&{object}-{i}"), 1).await;
        }
    }
    server.kill9();
    for task in waiting {
        task.abort();
    }

    let server = serve(dir.path(), &data, &allowing(&outside));
    let count = get_json(&client, &server.url("/API/a/count")).await;
    assert_eq!(count, 21, "every acknowledged count survived");
    let (_, probe_count) = get(&client, &server.url("/PROBE/a/count")).await;
    assert_eq!(probe_count, "1 21", "in memory anew, stored 21");
    // Each fetch left only once the write before it was durable: all of
    // them reached the outside server, so all the writes are there.
    for i in 0..3 {
        let before = get_json(&client, &server.url(&format!("/API/a/get?key=before-{i}"))).await;
        assert_eq!(before, 1, "before-{i}");
    }
}

/// The quotes example's upstream process, killed when dropped.
struct Upstream(std::process::Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The quotes example's upstream (`node upstream.mjs`) on a free port, with
/// `delay_ms`; its address.
fn start_upstream(delay_ms: u64) -> (Upstream, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("node")
        .arg(crate::support::workspace().join("examples/js/quotes/upstream.mjs"))
        .env("PORT", "0")
        .env("QUOTE_DELAY_MS", delay_ms.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs upstream.mjs");
    let stdout = child.stdout.take().unwrap();
    let child = Upstream(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("upstream.mjs says where it listens");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quotes_example_answers_while_a_refresh_waits_on_its_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, addr) = start_upstream(2000);
    js_examples_built();
    let config = example_config("examples/js/quotes").replace("127.0.0.1:8788", &addr);
    let server = Server::start(&write_config(dir.path(), &config), &dir.path().join("data"));
    let client = client();
    let refresh = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/QUOTES/main/refresh"));
        async move { get_json(&client, &url).await }
    });
    // While the refresh waits, the object answers at once.
    let mut refreshing = json!(0);
    for _ in 0..100 {
        let latest = get_json(&client, &server.url("/QUOTES/main/latest")).await;
        refreshing = latest["refreshing"].clone();
        if refreshing == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(refreshing, 1, "a request saw the refresh in flight");
    assert!(!refresh.is_finished());
    let quote = refresh.await.unwrap();
    assert_eq!(quote["number"], 1, "{quote}");
    let latest = get_json(&client, &server.url("/QUOTES/main/latest")).await;
    assert_eq!(latest["latest"], quote);
    assert_eq!(latest["refreshing"], 0);
}
