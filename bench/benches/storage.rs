//! µs per storage call, through the real host: a probe object (built from
//! tests/guests/probe) runs each call many times in one event, and
//! criterion's linear sampling reports the cost per call (the event's fixed
//! cost, request and commit, falls into the intercept). `put + commit`
//! instead sends one event per write, each durable before it answers.
//!
//! Run: `cargo bench -p dohost-bench --bench storage`

mod support;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::json;
use support::{host, ops, probe_component, repeated};

fn storage(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let probe = probe_component();
    let dir = tempfile::tempdir().expect("temp dir");
    let value = "v".repeat(100);
    let hundred: Vec<(String, &String)> = (0..100).map(|i| (format!("l{i:03}"), &value)).collect();
    let fill = json!([
        {"op": "put", "key": "k", "value": value},
        {"op": "put_many", "entries": hundred},
    ]);

    let mut group = c.benchmark_group("storage");
    group.sampling_mode(SamplingMode::Linear);
    {
        let _guard = rt.enter();
        let (cached, stub) = host(
            &dir.path().join("cached"),
            &probe,
            dohost::DEFAULT_CACHE_PER_OBJECT,
        );
        rt.block_on(ops(&stub, &fill));

        let get = json!({"op": "get", "key": "k"});
        group.bench_function("get (cached)", |b| {
            b.iter_custom(|iters| repeated(&rt, &stub, &get, iters));
        });
        let put = json!({"op": "put", "key": "p", "value": value});
        group.bench_function("put (in an event)", |b| {
            b.iter_custom(|iters| repeated(&rt, &stub, &put, iters));
        });
        let list = json!({"op": "count", "prefix": "l"});
        group.bench_function("list 100 keys", |b| {
            b.iter_custom(|iters| repeated(&rt, &stub, &list, iters));
        });
        rt.block_on(cached.shutdown());

        // No cache: every get reads redb.
        let (uncached, stub) = host(&dir.path().join("cached"), &probe, 0);
        group.bench_function("get (uncached)", |b| {
            b.iter_custom(|iters| repeated(&rt, &stub, &get, iters));
        });
        rt.block_on(uncached.shutdown());
    }
    group.finish();

    let mut group = c.benchmark_group("storage");
    {
        let _guard = rt.enter();
        let (durable, stub) = host(
            &dir.path().join("durable"),
            &probe,
            dohost::DEFAULT_CACHE_PER_OBJECT,
        );
        let put = json!([{"op": "put", "key": "p", "value": value}]);
        group.bench_function("put + commit (one event, durable)", |b| {
            b.iter(|| rt.block_on(ops(&stub, &put)));
        });
        rt.block_on(durable.shutdown());
    }
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
