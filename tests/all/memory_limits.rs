//! What a guest can make the host hold is bounded: one event's writes (KV
//! and SQL), a `list` result, and the memory of all instances together,
//! where idle objects leave memory to make room.

use serde_json::{Value, json};

use crate::support::{Server, client, get, router_config, server_ops, write_config};

const MIB: usize = 1 << 20;

fn server_with(dir: &std::path::Path, limits: &str) -> Server {
    let base = std::fs::read_to_string(router_config(dir)).unwrap();
    let config = write_config(dir, &format!("{base}[limits]\n{limits}"));
    Server::start(&config, &dir.join("data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_events_writes_and_a_list_result_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        "write_set_bytes = 4194304\nmemory_bytes = 16777216\n",
    );
    let http = client();
    let value = "v".repeat(120_000);
    let puts = |from: usize, n: usize| {
        Value::Array(
            (from..from + n)
                .map(|i| json!({"op": "put", "key": format!("k{i:03}"), "value": value}))
                .collect(),
        )
    };
    // 40 values of 120 KB in one event: past 4 MiB, refused by name.
    let results = server_ops(&http, &server, "w", &puts(0, 40)).await;
    let refused = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r.get("err").is_some())
        .unwrap_or_else(|| panic!("no write was refused: {results}"));
    assert!(refused.to_string().contains("write_set_bytes"), "{refused}");
    // The same in eight events is fine.
    for round in 0..8 {
        let results = server_ops(&http, &server, "w", &puts(round * 10, 10)).await;
        assert!(!results.to_string().contains("err"), "{results}");
    }
    // Listing all 9.6 MB at once is past half the object's memory: an error
    // that says how to page; a page is fine.
    let (status, body) = get(&http, &server.url("/PROBE/w/list")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("list in pages"), "{body}");
    let (status, body) = get(&http, &server.url("/PROBE/w/list?limit=10")).await;
    assert_eq!(status, 200, "{body}");

    // SQL pages: one event inserting 5 MB is refused by name, and nothing
    // of it lands.
    let results = server_ops(
        &http,
        &server,
        "s",
        &json!([
            {"op": "sql", "query": "CREATE TABLE t (b BLOB)", "params": []},
            {"op": "sql", "params": [], "query": "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 50) INSERT INTO t SELECT randomblob(100000) FROM c"},
        ]),
    )
    .await;
    assert!(
        results[1].to_string().contains("write_set_bytes"),
        "{results}"
    );
    let results = server_ops(
        &http,
        &server,
        "s",
        &json!([{"op": "sql", "query": "SELECT count(*) AS n FROM t", "params": []}]),
    )
    .await;
    assert!(
        results.to_string().contains(r#"[[{"i":"0"}]]"#),
        "{results}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_objects_leave_memory_to_keep_all_instances_within_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(dir.path(), &format!("total_memory_bytes = {}\n", 200 * MIB));
    let http = client();
    assert_eq!(
        get(&http, &server.url("/PROBE/first/count")).await,
        (200, "1 1".to_owned())
    );
    // Six objects of 60 MiB each would hold 360 MiB: idle ones leave.
    for i in 0..6 {
        assert_eq!(
            get(&http, &server.url(&format!("/PROBE/big{i}/alloc/60"))).await,
            (200, "allocated 60 MiB".to_owned()),
            "object {i}"
        );
    }
    // The first object left memory (its in-memory count starts again);
    // its storage stayed.
    assert_eq!(
        get(&http, &server.url("/PROBE/first/count")).await,
        (200, "1 2".to_owned())
    );
}
