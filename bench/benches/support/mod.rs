//! What every benchmark through the real host shares: the probe object
//! (built from tests/guests/probe), a host serving it, and one event of
//! probe operations.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The probe component, built from source.
pub fn probe_component() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dohost::build::ensure_guest_target(&mut |line| eprintln!("{line}")).expect("guest target");
    dohost::build::build_rust_guest(&root.join("tests/guests/probe")).expect("probe builds")
}

/// A host over the probe with `cache_per_object` bytes of cache per object,
/// and the probe object the benchmarks use.
pub fn host(data: &Path, probe: &Path, cache_per_object: usize) -> (dohost::Host, dohost::Stub) {
    let host = dohost::Host::builder()
        .data_dir(data)
        .binding("PROBE", "Probe", probe)
        .settings(dohost::Settings {
            cache_per_object,
            ..dohost::Settings::default()
        })
        .build()
        .expect("host builds");
    let stub = host
        .namespace("PROBE")
        .expect("binding")
        .id_from_name("bench")
        .get();
    (host, stub)
}

/// Runs `ops` in one event of `stub`; the result of each, all of them `ok`.
pub async fn ops(stub: &dohost::Stub, ops: &Value) -> Vec<Value> {
    let request = http::Request::post("/ops")
        .body(ops.to_string().into())
        .expect("request");
    let response = stub.fetch(request).await.expect("event runs");
    assert_eq!(response.status(), 200);
    let results: Vec<Value> = serde_json::from_slice(response.body()).expect("JSON");
    assert!(results.iter().all(|r| r.get("ok").is_some()), "{results:?}");
    results
}

/// The time of one event of `ops`.
pub fn timed(rt: &tokio::runtime::Runtime, stub: &dohost::Stub, ops: &Value) -> Duration {
    let started = Instant::now();
    rt.block_on(self::ops(stub, ops));
    started.elapsed()
}

/// The time of one event repeating `op` `iters` times.
pub fn repeated(
    rt: &tokio::runtime::Runtime,
    stub: &dohost::Stub,
    op: &Value,
    iters: u64,
) -> Duration {
    let repeat = json!([{"op": "repeat", "times": times(iters), "what": op}]);
    timed(rt, stub, &repeat)
}

/// Criterion's iteration count as a probe's `times`.
pub fn times(iters: u64) -> u32 {
    u32::try_from(iters).expect("criterion asks for few iterations")
}
