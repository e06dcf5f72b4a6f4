//! `kill -9` mid-load loses no acknowledged write: after each restart the
//! counter is above every count a client was told, and no count was ever
//! handed out twice. And an event's writes survive whole or not at all.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Server, add_cluster, client, router_config};

/// The counter and the probe, on redb, or on PostgreSQL as a one-node
/// cluster in `database`.
fn crash_config(dir: &std::path::Path, database: Option<&str>) -> std::path::PathBuf {
    let config = router_config(dir);
    if let Some(database) = database {
        add_cluster(&config, database);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_counts_survive_kill_9() {
    counts_survive_kill_9(None).await;
}

/// The same with the node's state in a real PostgreSQL (a one-node
/// cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_counts_survive_kill_9_on_postgres() {
    let postgres = dohost_test_postgres::Postgres::start();
    counts_survive_kill_9(Some(&postgres.database())).await;
}

async fn counts_survive_kill_9(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path(), database);
    let data = dir.path().join("data");
    let mut acknowledged: HashSet<u64> = HashSet::new();
    let mut highest = 0u64;

    for round in 0..5u64 {
        let server = Server::start(&config, &data);
        let url = server.url("/COUNTER/crash/");
        let acks = Arc::new(Mutex::new(Vec::new()));
        let http = client();
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, acks) = (http.clone(), url.clone(), acks.clone());
                tokio::spawn(async move {
                    // Stops by itself: at most 10,000 requests per client.
                    for _ in 0..10_000 {
                        let req = http::Request::get(&url)
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap();
                        let Ok(resp) = http.request(req).await else {
                            return;
                        };
                        if resp.status() != 200 {
                            return;
                        }
                        let Ok(body) = http_body_util::BodyExt::collect(resp.into_body()).await
                        else {
                            return;
                        };
                        let value: u64 = String::from_utf8_lossy(&body.to_bytes()).parse().unwrap();
                        acks.lock().unwrap().push(value);
                    }
                })
            })
            .collect();
        // Let load build up, then kill at a moment that varies per round.
        tokio::time::sleep(Duration::from_millis(300 + 137 * round)).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
        let acks = acks.lock().unwrap().clone();
        assert!(
            !acks.is_empty(),
            "round {round}: no request was acknowledged before the kill"
        );
        for value in &acks {
            assert!(
                acknowledged.insert(*value),
                "round {round}: count {value} was acknowledged twice"
            );
        }
        highest = highest.max(*acks.iter().max().unwrap());

        // After restart the next count is above everything acknowledged.
        let server = Server::start(&config, &data);
        let (status, body) = crate::support::get(&client(), &server.url("/COUNTER/crash/")).await;
        assert_eq!(status, 200, "{body}");
        let next: u64 = body.parse().unwrap();
        assert!(
            next > highest,
            "round {round}: count {next} after restart, but {highest} was acknowledged"
        );
        acknowledged.insert(next);
        highest = next;
        server.kill9();
    }
}

/// POSTs `body` to `url`; true if the server answered 200 (the write is
/// acknowledged), false once it fails (the server was killed).
async fn post_ok(http: &crate::support::HttpClient, url: &str, body: String) -> bool {
    let req = http::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    matches!(http.request(req).await, Ok(resp) if resp.status() == 200)
}

/// One event writes 100 keys (and a marker naming its batch); `kill -9`
/// lands at random moments. After each restart the 100 keys all carry one
/// batch whose marker is there (never a mix of two events), and every
/// acknowledged batch's marker survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_key_event_is_all_or_nothing_under_kill_9() {
    events_all_or_nothing_under_kill_9(None).await;
}

/// The same with the node's state in a real PostgreSQL (a one-node
/// cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_key_event_is_all_or_nothing_under_kill_9_on_postgres() {
    let postgres = dohost_test_postgres::Postgres::start();
    events_all_or_nothing_under_kill_9(Some(&postgres.database())).await;
}

async fn events_all_or_nothing_under_kill_9(database: Option<&str>) {
    use serde_json::{Value, json};
    use std::sync::atomic::{AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path(), database);
    let data = dir.path().join("data");
    let next_batch = Arc::new(AtomicU64::new(1));
    let mut acknowledged: Vec<u64> = Vec::new();

    for round in 0..5u64 {
        let server = Server::start(&config, &data);
        let url = server.url("/PROBE/batches/ops");
        let acks = Arc::new(Mutex::new(Vec::new()));
        let http = client();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (http, url, acks, next) =
                    (http.clone(), url.clone(), acks.clone(), next_batch.clone());
                tokio::spawn(async move {
                    for _ in 0..10_000 {
                        let batch = next.fetch_add(1, Ordering::SeqCst);
                        let mut ops: Vec<Value> = (0..100)
                            .map(|i| json!({"op": "put", "key": format!("k{i:03}"), "value": batch.to_string()}))
                            .collect();
                        ops.push(json!({"op": "put", "key": format!("done:{batch}"), "value": ""}));
                        if !post_ok(&http, &url, json!(ops).to_string()).await {
                            return;
                        }
                        acks.lock().unwrap().push(batch);
                    }
                })
            })
            .collect();
        let moment = rand::random_range(20..400) + 100 * round;
        tokio::time::sleep(Duration::from_millis(moment)).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
        acknowledged.extend(acks.lock().unwrap().iter());

        let server = Server::start(&config, &data);
        let http = client();
        let (status, body) = crate::support::send(
            &http,
            "POST",
            &server.url("/PROBE/batches/ops"),
            &json!([{"op": "list", "prefix": "k"}, {"op": "list", "prefix": "done:"}]).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let results: Vec<Value> = serde_json::from_str(&body).unwrap();
        let keys = results[0]["ok"].as_array().unwrap();
        let markers: std::collections::HashSet<u64> = results[1]["ok"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[0].as_str().unwrap()["done:".len()..].parse().unwrap())
            .collect();
        for batch in &acknowledged {
            assert!(
                markers.contains(batch),
                "round {round}: acknowledged batch {batch} is lost"
            );
        }
        if acknowledged.is_empty() && keys.is_empty() {
            continue;
        }
        assert_eq!(keys.len(), 100, "round {round}: a partial event survived");
        let batch: u64 = keys[0][1].as_str().unwrap().parse().unwrap();
        assert!(
            keys.iter().all(|e| e[1] == keys[0][1]),
            "round {round}: keys from different events: {keys:?}"
        );
        assert!(
            markers.contains(&batch),
            "round {round}: batch {batch} without its marker"
        );
        server.kill9();
    }
    assert!(!acknowledged.is_empty(), "no event was acknowledged at all");
}

/// SQL inserts under load into four objects (each event also writes a KV
/// key naming its row), `kill -9` at random moments. After each restart
/// every acknowledged row is there, the KV keys name exactly the rows there
/// (SQL and KV of one event land together), and `PRAGMA integrity_check`
/// is ok on every object: no torn database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sql_inserts_survive_kill_9_untorn() {
    sql_inserts_survive_kill_9_untorn(None).await;
}

/// The same with the node's state in a real PostgreSQL (a one-node
/// cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sql_inserts_survive_kill_9_untorn_on_postgres() {
    let postgres = dohost_test_postgres::Postgres::start();
    sql_inserts_survive_kill_9_untorn(Some(&postgres.database())).await;
}

async fn sql_inserts_survive_kill_9_untorn(database: Option<&str>) {
    use serde_json::{Value, json};
    use std::sync::atomic::{AtomicU64, Ordering};

    const OBJECTS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path(), database);
    let data = dir.path().join("data");
    let next_id = Arc::new(AtomicU64::new(1));
    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    let insert = |id: u64| {
        json!([
            {"op": "sql", "query": "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, pad BLOB)", "params": []},
            // Rows of ~1 KB, so the tree splits pages as it grows.
            {"op": "sql", "query": "INSERT INTO t VALUES (?, randomblob(1000))", "params": [{"i": id.to_string()}]},
            {"op": "put", "key": format!("row:{id:09}"), "value": ""},
        ])
    };

    for round in 0..4u64 {
        let server = Server::start(&config, &data);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let http = client();
        let clients: Vec<_> = (0..OBJECTS * 2)
            .map(|c| {
                let object = c % OBJECTS;
                let url = server.url(&format!("/PROBE/sql-{object}/ops"));
                let (http, acks, next) = (http.clone(), acks.clone(), next_id.clone());
                tokio::spawn(async move {
                    for _ in 0..10_000 {
                        let id = next.fetch_add(1, Ordering::SeqCst);
                        let body = insert(id).to_string();
                        if !post_ok(&http, &url, body).await {
                            return;
                        }
                        acks.lock().unwrap().push((object, id));
                    }
                })
            })
            .collect();
        let moment = rand::random_range(50..500) + 150 * round;
        tokio::time::sleep(Duration::from_millis(moment)).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
        acknowledged.extend(acks.lock().unwrap().iter());

        let server = Server::start(&config, &data);
        let http = client();
        for object in 0..OBJECTS {
            let (status, body) = crate::support::send(
                &http,
                "POST",
                &server.url(&format!("/PROBE/sql-{object}/ops")),
                &json!([
                    {"op": "sql", "query": "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, pad BLOB)", "params": []},
                    {"op": "sql", "query": "PRAGMA integrity_check", "params": []},
                    {"op": "sql", "query": "SELECT id FROM t", "params": []},
                    {"op": "list", "prefix": "row:"},
                ])
                .to_string(),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let results: Vec<Value> = serde_json::from_str(&body).unwrap();
            assert_eq!(
                results[1]["ok"]["rows"],
                json!([[{"t": "ok"}]]),
                "round {round}: object {object} is torn: {}",
                results[1]
            );
            let ids: std::collections::HashSet<u64> = results[2]["ok"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[0]["i"].as_str().unwrap().parse().unwrap())
                .collect();
            for (o, id) in &acknowledged {
                assert!(
                    *o != object || ids.contains(id),
                    "round {round}: acknowledged row {id} of object {object} is lost"
                );
            }
            let keys: std::collections::HashSet<u64> = results[3]["ok"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e[0].as_str().unwrap()["row:".len()..].parse().unwrap())
                .collect();
            assert_eq!(
                keys, ids,
                "round {round}: object {object}'s KV keys and SQL rows disagree"
            );
        }
        server.kill9();
    }
    assert!(
        !acknowledged.is_empty(),
        "no insert was acknowledged at all"
    );
}
