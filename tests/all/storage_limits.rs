//! Storage limits: a call at a limit works, a call over it fails with an
//! error naming the limit and the value, and writes nothing at all.

use serde_json::{Value, json};

use crate::support::{library_host, probe_stub, run_ops};

fn error_of(result: &Value) -> &str {
    result["err"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_limit_fails_clearly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "limits");

    let key_at_limit = "k".repeat(dohost::MAX_KEY_BYTES);
    let key_over = "k".repeat(dohost::MAX_KEY_BYTES + 1);
    let value_at_limit = "v".repeat(dohost::MAX_VALUE_BYTES);
    let value_over = "v".repeat(dohost::MAX_VALUE_BYTES + 1);
    let keys_at_limit: Vec<String> = (0..dohost::MAX_KEYS_PER_CALL)
        .map(|i| format!("many{i:03}"))
        .collect();
    let keys_over: Vec<String> = (0..=dohost::MAX_KEYS_PER_CALL)
        .map(|i| format!("over{i:03}"))
        .collect();
    let entries_over: Vec<(String, String)> =
        keys_over.iter().map(|k| (k.clone(), "1".into())).collect();
    let entries_at_limit: Vec<(String, String)> = keys_at_limit
        .iter()
        .map(|k| (k.clone(), "1".into()))
        .collect();
    // One bad value among good entries: none of them may be written.
    let mixed = vec![
        ("mixed-a".to_owned(), "1".to_owned()),
        ("mixed-b".to_owned(), value_over.clone()),
    ];

    let results = run_ops(
        &stub,
        &json!([
            {"op": "put", "key": key_at_limit, "value": value_at_limit},
            {"op": "put", "key": key_over, "value": "x"},
            {"op": "put", "key": "big", "value": value_over},
            {"op": "get", "key": key_over},
            {"op": "delete", "key": key_over},
            {"op": "put_many", "entries": entries_at_limit},
            {"op": "put_many", "entries": entries_over},
            {"op": "put_many", "entries": mixed},
            {"op": "get_many", "keys": keys_at_limit},
            {"op": "get_many", "keys": keys_over},
            {"op": "delete_many", "keys": keys_over},
            {"op": "list", "start": "a", "start_after": "a"},
            {"op": "list", "limit": 0},
            {"op": "nest", "depth": dohost::MAX_TRANSACTION_DEPTH},
            {"op": "nest", "depth": dohost::MAX_TRANSACTION_DEPTH + 1},
        ]),
    )
    .await
    .unwrap();

    assert_eq!(
        results[0],
        json!({"ok": null}),
        "a key and value at the limits"
    );
    assert_eq!(
        error_of(&results[1]),
        "storage key of 2049 bytes is over the limit of 2048 bytes"
    );
    assert_eq!(
        error_of(&results[2]),
        "storage value of 131073 bytes is over the limit of 131072 bytes"
    );
    assert_eq!(error_of(&results[3]), error_of(&results[1]));
    assert_eq!(error_of(&results[4]), error_of(&results[1]));
    assert_eq!(results[5], json!({"ok": null}), "128 entries at once");
    let too_many = "a storage call of 129 keys is over the limit of 128 keys";
    assert_eq!(error_of(&results[6]), too_many);
    assert_eq!(
        error_of(&results[7]),
        "storage value of 131073 bytes is over the limit of 131072 bytes"
    );
    assert_eq!(
        results[8]["ok"].as_array().map(Vec::len),
        Some(dohost::MAX_KEYS_PER_CALL),
        "get-many of 128 keys"
    );
    assert_eq!(error_of(&results[9]), too_many);
    assert_eq!(error_of(&results[10]), too_many);
    assert!(error_of(&results[11]).contains("start and start-after cannot both be set"));
    assert!(error_of(&results[12]).contains("limit must be at least 1"));
    // 64 nested transactions open; a 65th is refused.
    assert_eq!(results[13], json!({"ok": null}));
    assert_eq!(
        error_of(&results[14]),
        "transaction nesting of 65 levels is over the limit of 64 levels"
    );

    // Nothing of a failed call was written.
    let after = run_ops(
        &stub,
        &json!([
            {"op": "list", "prefix": "over"},
            {"op": "list", "prefix": "mixed"},
            {"op": "get", "key": "big"},
            {"op": "get_many", "keys": [key_at_limit]},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(after[0], json!({"ok": []}));
    assert_eq!(after[1], json!({"ok": []}));
    assert_eq!(after[2], json!({"ok": null}));
    assert_eq!(
        after[3]["ok"][0][1].as_str().map(str::len),
        Some(dohost::MAX_VALUE_BYTES)
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backed_class_takes_entries_of_two_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .migration(dohost::Migration {
            tag: "v1".into(),
            new_classes: vec!["Counter".into()],
            new_sqlite_classes: vec!["Probe".into()],
            ..dohost::Migration::default()
        })
        .build()
        .unwrap();
    let stub = probe_stub(&host, "sqlite-backed");
    // Key and value together, as Cloudflare counts them.
    let at_limit = "v".repeat(dohost::MAX_SQLITE_ENTRY_BYTES - 1);
    let over = "v".repeat(dohost::MAX_SQLITE_ENTRY_BYTES);
    let results = run_ops(
        &stub,
        &json!([
            {"op": "put", "key": "k", "value": at_limit},
            {"op": "put", "key": "k2", "value": over},
            {"op": "get", "key": "k"},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(results[0], json!({"ok": null}));
    assert_eq!(
        error_of(&results[1]),
        "storage value of 2097154 bytes is over the limit of 2097152 bytes"
    );
    assert_eq!(
        results[2]["ok"].as_str().map(str::len),
        Some(dohost::MAX_SQLITE_ENTRY_BYTES - 1)
    );
}
