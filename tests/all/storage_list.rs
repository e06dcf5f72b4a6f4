//! `list` semantics: start (inclusive), end (exclusive), prefix, reverse
//! (same range, other order) and limit, over committed data merged with the
//! object's newer writes; and the whole matrix of options (start,
//! start-after, end, prefix, reverse, limit) against a model, over the
//! event's own writes, pending commits and redb.

use serde_json::{Value, json};

use crate::storage_model::{ListArgs, Model, list_model};
use crate::support::{library_host, probe_stub, request, run_ops, text};

async fn list(stub: &dohost::Stub, query: &str) -> String {
    text(
        &stub
            .fetch(request("GET", &format!("/list?{query}"), ""))
            .await
            .unwrap(),
    )
}

/// A host on `dir` and a stub for the object "lister".
fn lister(dir: &std::path::Path) -> (dohost::Host, dohost::Stub) {
    let host = library_host(dir).build().unwrap();
    let stub = probe_stub(&host, "lister");
    (host, stub)
}

fn keys(json: &str) -> Vec<String> {
    let entries: Vec<(String, String)> = serde_json::from_str(json).unwrap();
    entries.into_iter().map(|(k, _)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_options_over_committed_and_newer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (host, stub) = lister(dir.path());
    for key in ["a", "ab", "abc", "b", "c", "é"] {
        stub.fetch(request("PUT", &format!("/kv/{key}"), key))
            .await
            .unwrap();
    }
    host.shutdown().await;

    // A new host: everything above is only in redb now.
    let (host, stub) = lister(dir.path());
    assert_eq!(
        keys(&list(&stub, "").await),
        ["a", "ab", "abc", "b", "c", "é"]
    );
    // Newer state in the object's cache: one delete, one insert, one overwrite.
    stub.fetch(request("DELETE", "/kv/ab", "")).await.unwrap();
    stub.fetch(request("PUT", "/kv/aa", "aa")).await.unwrap();
    stub.fetch(request("PUT", "/kv/b", "B!")).await.unwrap();

    let cases = [
        ("", vec!["a", "aa", "abc", "b", "c", "é"]),
        ("prefix=a", vec!["a", "aa", "abc"]),
        ("prefix=ab", vec!["abc"]),
        ("start=aa&end=c", vec!["aa", "abc", "b"]),
        ("start=b", vec!["b", "c", "é"]),
        ("end=b", vec!["a", "aa", "abc"]),
        ("reverse=1", vec!["é", "c", "b", "abc", "aa", "a"]),
        ("reverse=1&limit=2", vec!["é", "c"]),
        ("start=aa&end=c&reverse=1", vec!["b", "abc", "aa"]),
        ("prefix=a&reverse=1&limit=2", vec!["abc", "aa"]),
        ("limit=3", vec!["a", "aa", "abc"]),
        ("start=zz", vec!["é"]),
        ("start=c&end=b", vec![]),
        ("prefix=a&start=b", vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(keys(&list(&stub, query).await), expected, "list?{query}");
    }
    let all: Vec<(String, String)> = serde_json::from_str(&list(&stub, "prefix=b").await).unwrap();
    assert_eq!(all, [("b".to_owned(), "B!".to_owned())], "newer values win");

    // The same view after another restart, with everything committed.
    host.shutdown().await;
    let (_host, stub) = lister(dir.path());
    assert_eq!(
        keys(&list(&stub, "").await),
        ["a", "aa", "abc", "b", "c", "é"]
    );
}

fn option(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

/// Every combination of list options over a small key space.
fn matrix() -> Vec<ListArgs> {
    let mut all = Vec::new();
    for start in ["-", "", "a", "ab", "b", "zz"] {
        for start_after in ["-", "a", "ab", "é"] {
            for end in ["-", "ab", "b", "c"] {
                for prefix in ["-", "a", "b", "x"] {
                    for reverse in [false, true] {
                        for limit in [None, Some(1), Some(3)] {
                            all.push(ListArgs {
                                start: option(start),
                                start_after: option(start_after),
                                end: option(end),
                                prefix: option(prefix),
                                reverse,
                                limit,
                            });
                        }
                    }
                }
            }
        }
    }
    all
}

/// Runs every list of the matrix in one event, after `writes` in the same
/// event, and compares each result with the model.
async fn check_matrix(stub: &dohost::Stub, model: &Model, writes: &[Value], when: &str) {
    let cases = matrix();
    let mut ops = writes.to_vec();
    ops.extend(cases.iter().map(ListArgs::to_json));
    let results = run_ops(stub, &json!(ops)).await.unwrap();
    for (args, result) in cases.iter().zip(&results[writes.len()..]) {
        let expected = list_model(model, args);
        if expected.get("err").is_some() {
            assert!(
                result.get("err").is_some(),
                "{when}: {args:?} gave {result}"
            );
        } else {
            assert_eq!(result, &expected, "{when}: {args:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_option_matrix_matches_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let (host, stub) = lister(dir.path());
    let mut model: Model = ["", "a", "ab", "abc", "b", "ba", "c", "é"]
        .into_iter()
        .map(|k| (k.to_owned(), format!("v{k}")))
        .collect();
    let entries: Vec<(&String, &String)> = model.iter().collect();
    run_ops(&stub, &json!([{"op": "put_many", "entries": entries}]))
        .await
        .unwrap();

    // Lists in the event that writes: newer state from the event itself,
    // over a commit that may still be pending.
    let writes = [
        json!({"op": "put", "key": "aa", "value": "new"}),
        json!({"op": "delete", "key": "b"}),
        json!({"op": "put", "key": "ab", "value": "changed"}),
    ];
    model.insert("aa".into(), "new".into());
    model.remove("b");
    model.insert("ab".into(), "changed".into());
    check_matrix(&stub, &model, &writes, "with the event's writes").await;

    // From redb alone, after a restart.
    host.shutdown().await;
    let (host, stub) = lister(dir.path());
    check_matrix(&stub, &model, &[], "after restart").await;
    host.shutdown().await;
}
