//! The object cache: a hot object's reads stay off redb, the cache is
//! bounded in bytes per object and across all objects, and `no-cache` keeps
//! values out of it. Observed through `Host::stats`.

use serde_json::json;

use crate::support::{library_host, probe_stub, run_ops};

fn host_with_cache(dir: &std::path::Path, per_object: usize, total: usize) -> dohost::Host {
    library_host(dir)
        .settings(dohost::Settings {
            max_live_objects: 64,
            cache_per_object: per_object,
            cache_total: total,
            ..dohost::Settings::default()
        })
        .build()
        .unwrap()
}

fn get(key: &str) -> serde_json::Value {
    json!([{"op": "get", "key": key}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_objects_reads_never_reach_redb() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_cache(dir.path(), 1 << 20, 1 << 20);
    let stub = probe_stub(&host, "hot");
    run_ops(&stub, &json!([{"op": "put", "key": "k", "value": "v"}]))
        .await
        .unwrap();
    let before = host.stats().disk_reads;
    for _ in 0..100 {
        assert_eq!(
            run_ops(&stub, &get("k")).await.unwrap()[0],
            json!({"ok": "v"})
        );
        assert_eq!(
            run_ops(&stub, &get("absent")).await.unwrap()[0],
            json!({"ok": null})
        );
    }
    // The written key is known from its write; the absent one after one read.
    assert_eq!(host.stats().disk_reads - before, 1);
    host.shutdown().await;

    // A fresh host reads each key from redb once, then from the cache.
    let host = host_with_cache(dir.path(), 1 << 20, 1 << 20);
    let stub = probe_stub(&host, "hot");
    for _ in 0..100 {
        assert_eq!(
            run_ops(&stub, &get("k")).await.unwrap()[0],
            json!({"ok": "v"})
        );
    }
    assert_eq!(host.stats().disk_reads, 1);

    // `no-cache` reads go to redb every time and leave the cache alone.
    let bytes = host.stats().cache_bytes;
    for _ in 0..10 {
        let read = json!([{"op": "get", "key": "other", "no_cache": true}]);
        assert_eq!(run_ops(&stub, &read).await.unwrap()[0], json!({"ok": null}));
    }
    assert_eq!(host.stats().disk_reads, 11);
    assert_eq!(host.stats().cache_bytes, bytes);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_bounded_per_object_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let per_object = 8 * 1024;
    let total = 20 * 1024;
    let host = host_with_cache(dir.path(), per_object, total);
    let value = "x".repeat(1000);
    let ns = host.namespace("PROBE").unwrap();

    // One object writes and reads 50 KB: it keeps at most 8 KiB of it.
    let one = ns.id_from_name("one").get();
    for chunk in 0..5 {
        let entries: Vec<(String, &String)> =
            (0..10).map(|i| (format!("k{chunk}{i}"), &value)).collect();
        run_ops(&one, &json!([{"op": "put_many", "entries": entries}]))
            .await
            .unwrap();
    }
    for chunk in 0..5 {
        for i in 0..10 {
            let read = run_ops(&one, &get(&format!("k{chunk}{i}"))).await.unwrap();
            assert_eq!(read[0]["ok"].as_str().map(str::len), Some(1000));
        }
    }
    let used = host.stats().cache_bytes;
    assert!(
        used > 0 && used <= per_object,
        "one object caches {used} bytes"
    );

    // Ten objects each read 8 KB: together they keep at most 20 KiB.
    for n in 0..10 {
        let stub = ns.id_from_name(&format!("many-{n}")).get();
        let entries: Vec<(String, &String)> = (0..8).map(|i| (format!("k{i}"), &value)).collect();
        run_ops(&stub, &json!([{"op": "put_many", "entries": entries}]))
            .await
            .unwrap();
        for i in 0..8 {
            run_ops(&stub, &get(&format!("k{i}"))).await.unwrap();
        }
        let used = host.stats().cache_bytes;
        assert!(used <= total, "all objects cache {used} bytes");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_writes_settle_into_the_cache_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_cache(dir.path(), 1 << 20, 1 << 20);
    let stub = probe_stub(&host, "eager");
    // No response waits for these commits; the object must still learn
    // that they are durable, or its pending writes would pile up.
    for i in 0..20 {
        let put = json!([{"op": "put", "key": format!("k{i}"), "value": "v", "unconfirmed": true}]);
        run_ops(&stub, &put).await.unwrap();
    }
    let mut settled = false;
    for _ in 0..200 {
        run_ops(&stub, &get("k0")).await.unwrap();
        if host.stats().cache_bytes >= 20 * 3 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(settled, "durable writes never became cache entries");
    assert_eq!(host.stats().disk_reads, 0);
    host.shutdown().await;
}
