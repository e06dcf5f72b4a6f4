//! The SQL API through the real host and the probe object: values
//! round-trip exactly, SQL and KV writes of an event (or a transaction)
//! land together or not at all, limits and refused statements fail with
//! clear errors, `delete-all` removes the database, and a large result
//! streams through a guest too small to hold it.
//!
//! Probe values are JSON: null, {"i": "<decimal>"}, {"f": <number>},
//! {"t": "<text>"}, {"b": "<hex>"} (see tests/guests/probe/src/ops.rs).

use serde_json::{Value, json};

use crate::support::{library_host, probe_stub, run_ops};

fn int(v: i64) -> Value {
    json!({"i": v.to_string()})
}

fn real(v: f64) -> Value {
    json!({ "f": v })
}

fn text(v: &str) -> Value {
    json!({ "t": v })
}

fn blob(v: &[u8]) -> Value {
    json!({ "b": hex::encode(v) })
}

fn sql(query: &str, params: &[Value]) -> Value {
    json!({"op": "sql", "query": query, "params": params})
}

/// The rows of a successful `sql` op.
fn rows(result: &Value) -> &Vec<Value> {
    result["ok"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("expected rows, got {result}"))
}

fn error_of(result: &Value) -> &str {
    result["err"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {result}"))
}

/// One op in its own event; its result.
async fn one(stub: &dohost::Stub, op: Value) -> Value {
    run_ops(stub, &json!([op])).await.unwrap().remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_exactly_through_sqlite_and_redb() {
    let dir = tempfile::tempdir().unwrap();
    let values = vec![
        int(i64::MIN),
        int(i64::MAX),
        int(0),
        int(-1),
        real(1.5),
        real(-2.25e-300),
        real(f64::MAX),
        text(""),
        text("a\0b"),
        text("héllo wörld — 🌍 日本"),
        blob(&[]),
        blob(&(0..=255).collect::<Vec<u8>>()),
        Value::Null,
    ];
    {
        let host = library_host(dir.path()).build().unwrap();
        let stub = probe_stub(&host, "types");
        let mut ops = vec![sql("CREATE TABLE v (n INTEGER PRIMARY KEY, x)", &[])];
        for (n, v) in values.iter().enumerate() {
            ops.push(sql(
                "INSERT INTO v (n, x) VALUES (?, ?)",
                &[int(n as i64), v.clone()],
            ));
        }
        let results = run_ops(&stub, &json!(ops)).await.unwrap();
        for r in &results {
            assert!(r.get("ok").is_some(), "{r}");
        }
        // Read back in the same object, from SQLite's cache.
        let back = one(&stub, sql("SELECT x FROM v ORDER BY n", &[])).await;
        let got: Vec<Value> = rows(&back).iter().map(|r| r[0].clone()).collect();
        assert_eq!(got, values);
        host.shutdown().await;
    }
    // And from redb's pages after a restart.
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "types");
    let back = one(&stub, sql("SELECT x, typeof(x) FROM v ORDER BY n", &[])).await;
    let got: Vec<Value> = rows(&back).iter().map(|r| r[0].clone()).collect();
    assert_eq!(got, values);
    let types: Vec<Value> = rows(&back).iter().map(|r| r[1].clone()).collect();
    assert_eq!(types[0], text("integer"));
    assert_eq!(types[4], text("real"));
    assert_eq!(types[8], text("text"));
    assert_eq!(types[11], text("blob"));
    assert_eq!(back["ok"]["columns"], json!(["x", "typeof(x)"]));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_sql_and_kv_writes_land_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "atomic");
    let results = run_ops(
        &stub,
        &json!([
            sql("CREATE TABLE t (a INTEGER)", &[]),
            sql("INSERT INTO t VALUES (1)", &[]),
            {"op": "put", "key": "k", "value": "1"},
        ]),
    )
    .await
    .unwrap();
    assert!(results.iter().all(|r| r.get("ok").is_some()), "{results:?}");

    // A trap after both kinds of write: neither lands.
    let trapped = stub
        .fetch(crate::support::request(
            "POST",
            "/ops",
            &json!([
                sql("INSERT INTO t VALUES (2)", &[]),
                {"op": "put", "key": "k", "value": "2"},
                {"op": "panic"},
            ])
            .to_string(),
        ))
        .await;
    assert!(trapped.is_err(), "the event should have trapped");

    // A rolled-back transaction: neither; a committed one: both; a nested
    // rollback inside a committed one drops only its own writes.
    let results = run_ops(
        &stub,
        &json!([
            {"op": "txn", "rollback": true, "ops": [
                sql("INSERT INTO t VALUES (3)", &[]),
                {"op": "put", "key": "k", "value": "3"},
            ]},
            {"op": "txn", "ops": [
                sql("INSERT INTO t VALUES (4)", &[]),
                {"op": "put", "key": "k4", "value": "4"},
                {"op": "txn", "rollback": true, "ops": [
                    sql("INSERT INTO t VALUES (5)", &[]),
                    {"op": "put", "key": "k5", "value": "5"},
                ]},
            ]},
            {"op": "txn", "fail": true, "ops": [
                sql("INSERT INTO t VALUES (6)", &[]),
            ]},
            sql("SELECT a FROM t ORDER BY a", &[]),
            {"op": "get_many", "keys": ["k", "k4", "k5"]},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(rows(&results[3]), &vec![json!([int(1)]), json!([int(4)])]);
    assert_eq!(results[4]["ok"], json!([["k", "1"], ["k4", "4"]]));
    host.shutdown().await;

    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "atomic");
    let results = run_ops(
        &stub,
        &json!([
            sql("SELECT a FROM t ORDER BY a", &[]),
            {"op": "get_many", "keys": ["k", "k4", "k5"]},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(rows(&results[0]), &vec![json!([int(1)]), json!([int(4)])]);
    assert_eq!(results[1]["ok"], json!([["k", "1"], ["k4", "4"]]));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_errors_and_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "errors");
    let results = run_ops(
        &stub,
        &json!([
            // Several statements run in order; the parameters bind to the
            // last one, whose rows come back.
            sql(
                "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
                 INSERT INTO u (email) VALUES ('a@x');
                 SELECT id, email FROM u WHERE email = ?",
                &[text("a@x")],
            ),
            sql("INSERT INTO u (email) VALUES ('a@x')", &[]),
            sql("SELEC 1", &[]),
            sql("SELECT * FROM missing", &[]),
            sql("BEGIN", &[]),
            sql("SAVEPOINT s", &[]),
            sql("ATTACH 'other.db' AS other", &[]),
            sql("PRAGMA journal_mode = WAL", &[]),
            sql("CREATE TEMP TABLE tmp (a)", &[]),
            sql("SELECT ?, ?", &[int(1)]),
            sql("INSERT INTO u (email) VALUES (?)", &[text("b@x")]),
            sql("UPDATE u SET email = email || '!'", &[]),
            sql("PRAGMA user_version = 7; PRAGMA user_version", &[]),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(rows(&results[0]), &vec![json!([int(1), text("a@x")])]);
    let unique = error_of(&results[1]);
    assert!(
        unique.contains("UNIQUE constraint failed: u.email") && unique.contains("2067"),
        "{unique}"
    );
    assert!(
        error_of(&results[2]).contains("syntax error"),
        "{}",
        results[2]
    );
    assert!(error_of(&results[3]).contains("no such table: missing"));
    for refused in &results[4..6] {
        assert!(error_of(refused).contains("transaction_sync"), "{refused}");
    }
    assert!(error_of(&results[6]).contains("ATTACH"), "{}", results[6]);
    assert!(
        error_of(&results[7]).contains("journal_mode"),
        "{}",
        results[7]
    );
    assert!(
        error_of(&results[8]).contains("temporary"),
        "{}",
        results[8]
    );
    assert!(
        error_of(&results[9]).contains("2 parameters but 1 values"),
        "{}",
        results[9]
    );
    assert_eq!(results[10]["ok"]["rows_written"], json!(1));
    assert_eq!(results[11]["ok"]["rows_written"], json!(2));
    assert_eq!(rows(&results[12]), &vec![json!([int(7)])]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_and_name_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 8,
            max_sql_database_bytes: 256 * 1024,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let stub = probe_stub(&host, "limits");
    let long = format!(
        "SELECT 1 /* {} */",
        "x".repeat(dohost::MAX_SQL_STATEMENT_BYTES)
    );
    let many: Vec<Value> = (0..=dohost::MAX_SQL_PARAMS as i64).map(int).collect();
    let marks = vec!["?"; many.len()].join(",");
    let at_limit: Vec<Value> = many[..dohost::MAX_SQL_PARAMS].to_vec();
    let marks_at_limit = vec!["?"; at_limit.len()].join(",");
    let results = run_ops(
        &stub,
        &json!([
            sql(&long, &[]),
            sql(&format!("SELECT {marks}"), &many),
            sql(&format!("SELECT {marks_at_limit}"), &at_limit),
            sql(
                "SELECT length(?)",
                &[text(&"v".repeat(dohost::MAX_SQL_VALUE_BYTES))]
            ),
            sql(
                "SELECT length(?)",
                &[text(&"v".repeat(dohost::MAX_SQL_VALUE_BYTES + 1))]
            ),
            sql(
                "SELECT length(zeroblob(?))",
                &[int(dohost::MAX_SQL_VALUE_BYTES as i64 + 1)]
            ),
            sql("CREATE TABLE big (b BLOB)", &[]),
        ]),
    )
    .await
    .unwrap();
    assert!(error_of(&results[0]).contains("100000"), "{}", results[0]);
    assert!(
        error_of(&results[1]).contains("limit is 100"),
        "{}",
        results[1]
    );
    assert_eq!(rows(&results[2])[0].as_array().unwrap().len(), 100);
    assert_eq!(rows(&results[3]), &vec![json!([int(2_000_000)])]);
    assert!(error_of(&results[4]).contains("2000000"), "{}", results[4]);
    assert!(error_of(&results[5]).contains("too big"), "{}", results[5]);

    // Fill the 256 KiB database: the insert that does not fit fails with
    // SQLITE_FULL naming the limit, and what fit is still there.
    let mut inserted = 0;
    let full = loop {
        let r = one(
            &stub,
            sql("INSERT INTO big VALUES (randomblob(16000))", &[]),
        )
        .await;
        if r.get("err").is_some() {
            break r;
        }
        inserted += 1;
        assert!(inserted < 100, "the size limit never applied");
    };
    let message = error_of(&full);
    assert!(
        message.contains("(13)") && message.contains("262144"),
        "{message}"
    );
    let count = one(&stub, sql("SELECT count(*) FROM big", &[])).await;
    assert_eq!(rows(&count), &vec![json!([int(inserted)])]);
    let size = one(&stub, json!({"op": "sql_size"})).await;
    assert!(size["ok"].as_u64().unwrap() <= 256 * 1024, "{size}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_removes_the_sql_database_too() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "wipe");
    let results = run_ops(
        &stub,
        &json!([
            sql("CREATE TABLE t (a); INSERT INTO t VALUES (1)", &[]),
            {"op": "put", "key": "k", "value": "v"},
            {"op": "sql_size"},
        ]),
    )
    .await
    .unwrap();
    assert!(results[2]["ok"].as_u64().unwrap() > 0, "{results:?}");
    // Inside a transaction, delete-all cannot drop a database it could not
    // bring back on rollback.
    let refused = run_ops(
        &stub,
        &json!([{"op": "txn", "ops": [{"op": "delete_all"}]}]),
    )
    .await
    .unwrap();
    assert!(
        refused[0].to_string().contains("transaction"),
        "{refused:?}"
    );
    let results = run_ops(
        &stub,
        &json!([
            {"op": "delete_all"},
            sql("SELECT * FROM t", &[]),
            {"op": "sql_size"},
            sql("CREATE TABLE fresh (b); INSERT INTO fresh VALUES (2)", &[]),
        ]),
    )
    .await
    .unwrap();
    assert!(
        error_of(&results[1]).contains("no such table: t"),
        "{results:?}"
    );
    assert_eq!(results[2]["ok"], json!(0));
    host.shutdown().await;

    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "wipe");
    let results = run_ops(
        &stub,
        &json!([
            sql("SELECT name FROM sqlite_schema", &[]),
            {"op": "get", "key": "k"},
            sql("SELECT b FROM fresh", &[]),
            sql("PRAGMA integrity_check", &[]),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(rows(&results[0]), &vec![json!([text("fresh")])]);
    assert_eq!(results[1]["ok"], Value::Null);
    assert_eq!(rows(&results[2]), &vec![json!([int(2)])]);
    assert_eq!(rows(&results[3]), &vec![json!([text("ok")])]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_streams_through_a_small_guest() {
    let dir = tempfile::tempdir().unwrap();
    // 100,000 rows of 300 bytes: 30 MB, twice the guest's whole memory.
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 8,
            memory_per_object: 16 << 20,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let stub = probe_stub(&host, "stream");
    let fill = run_ops(
        &stub,
        &json!([sql(
            "CREATE TABLE big (n INTEGER PRIMARY KEY, pad TEXT);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000)
             INSERT INTO big SELECT i, printf('%0300d', i) FROM c",
            &[],
        )]),
    )
    .await
    .unwrap();
    assert_eq!(fill[0]["ok"]["rows_written"], json!(100_000), "{fill:?}");

    let streamed = one(
        &stub,
        json!({"op": "sql_stream", "query": "SELECT n, pad FROM big", "params": []}),
    )
    .await;
    assert_eq!(streamed["ok"]["rows"], json!(100_000), "{streamed}");
    assert_eq!(streamed["ok"]["bytes"], json!(30_000_000));
    assert_eq!(streamed["ok"]["sum"], json!("5000050000"));

    // The same rows collected whole do not fit: streaming is what made the
    // difference (the object is reset and still answers afterwards).
    let collected = stub
        .fetch(crate::support::request(
            "POST",
            "/ops",
            &json!([sql("SELECT n, pad FROM big", &[])]).to_string(),
        ))
        .await;
    assert!(
        collected.is_err() || collected.as_ref().unwrap().status() != 200,
        "30 MB of rows fit in a 16 MiB guest?"
    );
    let count = one(&stub, sql("SELECT count(*) FROM big", &[])).await;
    assert_eq!(rows(&count), &vec![json!([int(100_000)])]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_sql_is_stopped_at_the_cpu_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(dohost::Settings {
            max_live_objects: 8,
            cpu_time_per_event: std::time::Duration::from_millis(300),
            ..dohost::Settings::default()
        })
        .build()
        .unwrap();
    let stub = probe_stub(&host, "runaway");
    let forever = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) \
                   SELECT count(*) FROM c";
    let results = run_ops(
        &stub,
        &json!([
            sql("CREATE TABLE t (a); INSERT INTO t VALUES (1)", &[]),
            sql(forever, &[]),
        ]),
    )
    .await
    .unwrap();
    let message = error_of(&results[1]);
    assert!(message.contains("CPU time limit of 300 ms"), "{message}");

    // Inside a transaction SQLite rolls the whole transaction back on an
    // interrupted write, so the event cannot go on: it traps and none of
    // its writes land.
    let trapped = stub
        .fetch(crate::support::request(
            "POST",
            "/ops",
            &json!([
                {"op": "put", "key": "k", "value": "v"},
                {"op": "txn", "ops": [
                    sql("INSERT INTO t VALUES (2)", &[]),
                    sql(&format!("INSERT INTO t {forever}"), &[]),
                ]},
            ])
            .to_string(),
        ))
        .await;
    let error = trapped.expect_err("the event should trap").to_string();
    assert!(
        error.contains("rolled back the open transaction"),
        "{error}"
    );
    let results = run_ops(
        &stub,
        &json!([sql("SELECT a FROM t", &[]), {"op": "get", "key": "k"}]),
    )
    .await
    .unwrap();
    assert_eq!(rows(&results[0]), &vec![json!([int(1)])]);
    assert_eq!(results[1]["ok"], Value::Null);
    host.shutdown().await;
}
