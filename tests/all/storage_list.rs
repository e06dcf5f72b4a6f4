//! `list` semantics: start (inclusive), end (exclusive), prefix, reverse
//! (same range, other order) and limit, over committed data merged with the
//! object's newer writes.

use crate::support::{library_host, request, text};

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
    let stub = host
        .namespace("PROBE")
        .unwrap()
        .id_from_name("lister")
        .get();
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
