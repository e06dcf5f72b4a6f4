//! Point-in-time recovery (`[storage] history`): an object's KV keys, SQL
//! rows and alarm brought back to a bookmark or a time, by the object
//! itself (`onNextSessionRestoreBookmark` then `abort`), by the admin API
//! and by `dohost objects restore`; undoing a restore; restores after a
//! restart and after `kill -9`; pruning by retention.

use serde_json::{Value, json};

use crate::support::{
    HttpClient, Server, client, router_config, run_dohost, send, send_with_headers,
};

const TOKEN: &str = "a token for the history tests, long enough";

/// The counter and the probe with history kept for `history`.
fn config(dir: &std::path::Path, history: &str) -> std::path::PathBuf {
    let config = router_config(dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[storage]\nhistory = {history:?}\n[admin]\ntoken = {TOKEN:?}\n"
    ));
    std::fs::write(&config, text).unwrap();
    config
}

/// Runs storage operations in one event of probe `p` (`POST /ops`); the
/// `ok` value of each, or a panic naming the error.
async fn ops(http: &HttpClient, server: &Server, ops: Value) -> Vec<Value> {
    let results = crate::support::server_ops(http, server, "p", &ops).await;
    results
        .as_array()
        .expect("one result per operation")
        .iter()
        .map(|r| match r.get("ok") {
            Some(ok) => ok.clone(),
            None => panic!("{ops}: {r}"),
        })
        .collect()
}

/// Writes a state numbered `n`: key `v`, one more SQL row, the alarm at
/// `n` seconds past a far future time; the bookmark after it.
async fn write_state(http: &HttpClient, server: &Server, n: i64) -> String {
    let results = ops(
        http,
        server,
        json!([
            {"op": "put", "key": "v", "value": n.to_string()},
            {"op": "sql", "query": "CREATE TABLE IF NOT EXISTS rows(n INTEGER)", "params": []},
            {"op": "sql", "query": "INSERT INTO rows VALUES (?)", "params": [{"i": n}]},
            {"op": "set_alarm", "at": 4_000_000_000_000i64 + n * 1000},
            {"op": "bookmark"},
        ]),
    )
    .await;
    results[4].as_str().unwrap().to_owned()
}

/// The probe's key `v`, SQL rows and alarm.
async fn read_state(http: &HttpClient, server: &Server) -> Value {
    let results = ops(
        http,
        server,
        json!([
            {"op": "get", "key": "v"},
            {"op": "sql", "query": "SELECT name FROM sqlite_master WHERE name = 'rows'", "params": []},
            {"op": "get_alarm"},
        ]),
    )
    .await;
    let rows = if results[1]["rows"].as_array().is_some_and(|t| !t.is_empty()) {
        ops(
            http,
            server,
            json!([{"op": "sql", "query": "SELECT n FROM rows ORDER BY n", "params": []}]),
        )
        .await
        .remove(0)["rows"]
            .clone()
    } else {
        json!([])
    };
    json!({ "v": results[0], "rows": rows, "alarm": results[2] })
}

/// The state [`write_state`] leaves after states `1..=n`.
fn state(n: i64) -> Value {
    let rows: Vec<Value> = (1..=n).map(|i| json!([{"i": i.to_string()}])).collect();
    json!({ "v": n.to_string(), "rows": rows, "alarm": 4_000_000_000_000i64 + n * 1000 })
}

/// `POST /_dohost/objects/PROBE/p/restore` with `at`: status and body.
async fn admin_restore(http: &HttpClient, server: &Server, at: Value) -> (u16, Value) {
    let (status, body) = send_with_headers(
        http,
        "POST",
        &server.url("/_dohost/objects/PROBE/p/restore"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        &json!({ "at": at }).to_string(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_restores_to_a_bookmark_or_a_time_and_the_restore_undoes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = (config(dir.path(), "1h"), dir.path().join("data"));
    let http = client();
    let server = Server::start(&config, &data);

    let first = write_state(&http, &server, 1).await;
    let second = write_state(&http, &server, 2).await;
    assert!(
        second > first,
        "bookmarks compare as their commits: {first} {second}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let after_second = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    write_state(&http, &server, 3).await;
    ops(&http, &server, json!([{"op": "delete_all"}])).await;
    assert_eq!(
        read_state(&http, &server).await,
        json!({"v": null, "rows": [], "alarm": null})
    );

    // The object asks for its first state, then aborts: its next event
    // finds it restored (and the abort's own write is gone).
    let undo = ops(
        &http,
        &server,
        json!([{"op": "restore_next", "bookmark": first}]),
    )
    .await;
    let undo = undo[0].as_str().unwrap().to_owned();
    let (status, _) = send(&http, "PUT", &server.url("/PROBE/p/put-then-abort/x"), "x").await;
    assert_eq!(status, 500);
    assert_eq!(read_state(&http, &server).await, state(1));

    // The admin restores to a time: the last commit at or before it.
    let (status, restored) = admin_restore(&http, &server, json!(after_second)).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["bookmark"], json!(second));
    assert_eq!(read_state(&http, &server).await, state(2));
    let then = ops(
        &http,
        &server,
        json!([{"op": "bookmark_for_time", "time": after_second}]),
    )
    .await;
    assert_eq!(then[0], json!(second));

    // The guest's restore undone: the object is as deleted again.
    let (status, body) = admin_restore(&http, &server, json!(undo)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read_state(&http, &server).await,
        json!({"v": null, "rows": [], "alarm": null})
    );

    // After kill -9 the history is all there.
    server.kill9();
    let server = Server::start(&config, &data);
    let (status, body) = admin_restore(&http, &server, json!(second)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_state(&http, &server).await, state(2));

    // Bad points are refused with what is wrong.
    let (status, body) = admin_restore(&http, &server, json!("not a bookmark")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("neither a bookmark"),
        "{body}"
    );
    let (status, body) = admin_restore(&http, &server, json!("ffffffffffffffff")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("newest bookmark"),
        "{body}"
    );

    // A stopped server's data directory, with `dohost objects restore`.
    server.stop();
    let (ok, out) = run_dohost(
        &[
            "objects",
            "restore",
            "PROBE",
            "p",
            "--at",
            &first,
            "--data",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        std::time::Duration::from_secs(60),
    );
    assert!(ok, "{out}");
    assert!(out.contains("to undo it"), "{out}");
    let server = Server::start(&config, &data);
    assert_eq!(read_state(&http, &server).await, state(1));
    server.stop();
}

/// The same calls on a node of a cluster whose state is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_on_postgres_restores_as_on_redb() {
    let postgres = dohost_test_postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "1h");
    crate::support::add_cluster(&config, &postgres.database());
    let data = dir.path().join("data");
    let http = client();
    let server = Server::start(&config, &data);
    let first = write_state(&http, &server, 1).await;
    write_state(&http, &server, 2).await;
    let second_time = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ops(&http, &server, json!([{"op": "delete_all"}])).await;

    let undo = ops(
        &http,
        &server,
        json!([{"op": "restore_next", "bookmark": first}]),
    )
    .await;
    let (status, _) = send(&http, "PUT", &server.url("/PROBE/p/put-then-abort/x"), "x").await;
    assert_eq!(status, 500);
    assert_eq!(read_state(&http, &server).await, state(1));
    let (status, body) = admin_restore(&http, &server, json!(second_time)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_state(&http, &server).await, state(2));
    server.kill9();
    let server = Server::start(&config, &data);
    let (status, body) = admin_restore(&http, &server, undo[0].clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read_state(&http, &server).await,
        json!({"v": null, "rows": [], "alarm": null})
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_its_retention_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = (config(dir.path(), "1s"), dir.path().join("data"));
    let http = client();
    let server = Server::start(&config, &data);
    let old = write_state(&http, &server, 1).await;
    write_state(&http, &server, 2).await;
    // Restoring to `old` needs the undo of state 2's commit: once that is
    // older than the second kept and a newer commit exists, it goes.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    write_state(&http, &server, 3).await;
    let mut history = Value::Null;
    for _ in 0..50 {
        let text = crate::support::admin_get(&server, TOKEN, "/_dohost/history").await;
        history = serde_json::from_str(&text).unwrap();
        if history["floor"].as_str().unwrap() > old.as_str() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(history["on"], json!(true), "{history}");
    assert!(
        history["floor"].as_str().unwrap() > old.as_str(),
        "{history}"
    );
    assert_eq!(
        history["commits"],
        json!(1),
        "only the newest commit's undo is left: {history}"
    );
    let (status, body) = admin_restore(&http, &server, json!(old)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("older than the history"),
        "{body}"
    );
    let (_, body) = send(
        &http,
        "POST",
        &server.url("/PROBE/p/ops"),
        &json!([{"op": "bookmark_for_time", "time": 0}]).to_string(),
    )
    .await;
    assert!(body.contains("older than the history"), "{body}");
    server.stop();
}

/// Without `[storage] history` the bookmark calls fail, saying how to turn
/// it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_need_history_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();
    let (status, body) = send(
        &http,
        "POST",
        &server.url("/PROBE/p/ops"),
        &json!([{"op": "bookmark"}]).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[storage]"), "{body}");
    server.stop();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The JavaScript SDK's bookmarks, through the SDK tour's `pitr` route, as
/// Cloudflare's documentation uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_object_restores_itself_with_cloudflares_calls() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::js_examples_built();
    let config =
        crate::support::example_config("examples/js/api") + "[storage]\nhistory = \"1d\"\n";
    let config = crate::support::write_config(dir.path(), &config);
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();
    let url = |query: &str| server.url(&format!("/API/pitr/pitr?{query}"));
    let post = |query: &str| {
        let (http, url) = (http.clone(), url(query));
        async move {
            let (status, body) = send(&http, "POST", &url, "").await;
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
            )
        }
    };

    let (_, first) = post("write=1").await;
    let bookmark = first["bookmark"].as_str().unwrap().to_owned();
    assert_eq!(first["forNow"], first["bookmark"], "{first}");
    post("write=2").await;
    let (_, undo) = post(&format!("restore={bookmark}")).await;
    let undo = undo["undo"].as_str().unwrap().to_owned();
    assert!(undo > bookmark, "{undo} {bookmark}");
    let (status, _) = post("abort").await;
    assert_eq!(status, 500);
    let (_, now) = send(&http, "GET", &url(""), "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&now).unwrap(),
        json!({"value": 1, "rows": [1], "alarm": 4_000_000_000_001i64})
    );

    // Undone the same way.
    post(&format!("restore={undo}")).await;
    post("abort").await;
    let (_, now) = send(&http, "GET", &url(""), "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&now).unwrap(),
        json!({"value": 2, "rows": [1, 2], "alarm": 4_000_000_000_002i64})
    );
    let (status, refused) = post("restore=nonsense").await;
    assert_eq!(status, 500, "{refused}");
    assert!(refused.to_string().contains("not a bookmark"), "{refused}");
    server.stop();
}
