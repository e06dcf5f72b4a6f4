//! µs per SQL point query (`SELECT v FROM t WHERE id = ?` on 10,000 rows of
//! ~100-byte text), through the real host beside plain rusqlite on a file.
//!
//! Through the host, a probe object (built from tests/guests/probe) runs the
//! query many times in one event, and criterion's linear sampling reports the
//! cost per query (the event's fixed cost falls into the intercept). The
//! `sql_point` op binds an integer and reads the row with `one()`, as an
//! object would; the `sql` op also decodes JSON parameters and encodes the
//! rows as JSON, which is the probe's cost, not the host's. rusqlite runs the
//! same query on a database file in a temp dir, with a cached prepared
//! statement (the fastest way) and with `query_row` on the connection (which
//! prepares it each time); by default SQLite takes and releases the file's
//! lock around every statement (a few system calls), so it also runs with
//! `locking_mode = EXCLUSIVE`, holding the lock as an object holds its
//! database. `insert + commit` sends one event per inserted
//! row, each durable before it answers.
//!
//! Run: `cargo bench -p dohost-bench --bench sql`

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::json;
use support::{host, ops, probe_component, repeated, timed, times};

/// Rows in the queried table; ids run from 1.
const ROWS: u32 = 10_000;

const CREATE: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)";

/// `ROWS` rows whose `v` is the id, zero-padded to 100 characters.
const FILL: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
                    INSERT INTO t (id, v) SELECT i, printf('%0100d', i) FROM n";

const POINT: &str = "SELECT v FROM t WHERE id = ?";

/// The id of the `i`-th query: every row in turn.
fn id(i: u64) -> i64 {
    1 + i64::try_from(i % u64::from(ROWS)).expect("below ROWS")
}

/// A database file at `path` holding the table, locked for good by its
/// first statement if `exclusive` (as an object holds its own database), or
/// locked and unlocked around every statement, SQLite's default.
fn rusqlite_filled(path: &std::path::Path, exclusive: bool) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    if exclusive {
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .expect("locking mode");
    }
    conn.execute_batch(&format!("{CREATE}; {FILL};"))
        .expect("fill");
    conn
}

fn rusqlite_point(conn: &rusqlite::Connection, cached: bool, iters: u64) -> Duration {
    let started = Instant::now();
    for i in 0..iters {
        let read = |row: &rusqlite::Row| row.get::<_, String>(0);
        let v = if cached {
            conn.prepare_cached(POINT)
                .and_then(|mut stmt| stmt.query_row([id(i)], read))
        } else {
            conn.query_row(POINT, [id(i)], read)
        };
        black_box(v.expect("row"));
    }
    started.elapsed()
}

fn sql(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let probe = probe_component();
    let dir = tempfile::tempdir().expect("temp dir");

    let mut group = c.benchmark_group("sql");
    group.sampling_mode(SamplingMode::Linear);
    {
        let _guard = rt.enter();
        let (dohost, stub) = host(
            &dir.path().join("dohost"),
            &probe,
            dohost::DEFAULT_CACHE_PER_OBJECT,
        );
        let fill = json!([
            {"op": "sql", "query": CREATE},
            {"op": "sql", "query": FILL},
            {"op": "sql", "query": "SELECT count(*), sum(length(v)) FROM t"},
        ]);
        let filled = rt.block_on(ops(&stub, &fill));
        assert_eq!(
            filled[2]["ok"]["rows"],
            json!([[{"i": ROWS.to_string()}, {"i": (ROWS * 100).to_string()}]])
        );

        group.bench_function("point query, dohost (sql_point: exec + one)", |b| {
            b.iter_custom(|iters| {
                let point = json!([{
                    "op": "sql_point",
                    "query": POINT,
                    "id_from": 1,
                    "id_count": ROWS,
                    "times": times(iters),
                }]);
                timed(&rt, &stub, &point)
            });
        });
        let json_point = json!({"op": "sql", "query": POINT, "params": [{"i": "4242"}]});
        group.bench_function("point query, dohost (sql op: JSON in and out)", |b| {
            b.iter_custom(|iters| repeated(&rt, &stub, &json_point, iters));
        });
        rt.block_on(dohost.shutdown());
    }

    let conn = rusqlite_filled(&dir.path().join("rusqlite.db"), false);
    group.bench_function("point query, rusqlite (prepare_cached + query_row)", |b| {
        b.iter_custom(|iters| rusqlite_point(&conn, true, iters));
    });
    group.bench_function(
        "point query, rusqlite (query_row, prepared each time)",
        |b| {
            b.iter_custom(|iters| rusqlite_point(&conn, false, iters));
        },
    );
    drop(conn);
    let conn = rusqlite_filled(&dir.path().join("rusqlite-exclusive.db"), true);
    group.bench_function(
        "point query, rusqlite (prepare_cached + query_row, locking_mode exclusive)",
        |b| b.iter_custom(|iters| rusqlite_point(&conn, true, iters)),
    );
    drop(conn);
    group.finish();

    let mut group = c.benchmark_group("sql");
    {
        let _guard = rt.enter();
        let (durable, stub) = host(
            &dir.path().join("durable"),
            &probe,
            dohost::DEFAULT_CACHE_PER_OBJECT,
        );
        rt.block_on(ops(&stub, &json!([{"op": "sql", "query": CREATE}])));
        let insert = json!([{
            "op": "sql",
            "query": "INSERT INTO t (v) VALUES (?)",
            "params": [{"t": "v".repeat(100)}],
        }]);
        group.bench_function("insert + commit (one event, durable)", |b| {
            b.iter(|| rt.block_on(ops(&stub, &insert)));
        });
        rt.block_on(durable.shutdown());
    }
    group.finish();
}

criterion_group!(benches, sql);
criterion_main!(benches);
