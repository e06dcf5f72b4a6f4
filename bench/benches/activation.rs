//! Activation: the time to create a new object's instance and run its
//! class's constructor, for the Rust counter (examples/counter) and the
//! JavaScript counter (bench/js, workerd's reference Counter), with each
//! component's size. Each of OBJECTS objects (default 1,000) gets one request,
//! so each is activated once; the host's own counters (`Host::stats`) give
//! the time spent activating, apart from the request's work and its commit.
//!
//! `cargo bench -p dohost-bench --bench activation` (OBJECTS=N). The
//! JavaScript counter is built first, installing its build tools into
//! bench/js with npm on the first run.

use std::path::{Path, PathBuf};
use std::time::Instant;

fn components(root: &Path) -> [(&'static str, PathBuf); 2] {
    let mut progress = |line: &str| eprintln!("{line}");
    dohost::build::ensure_guest_target(&mut progress).expect("guest target");
    let rust = dohost::build::build_rust_guest(&root.join("examples/counter/counter"))
        .expect("the Rust counter builds");
    let js = dohost::build::build_js_guest(
        &root.join("bench/js/counter.js"),
        dohost::build::JsRole::Objects,
        &root.join("bench/js"),
        &mut progress,
    )
    .expect("the JavaScript counter builds")
    .wasm;
    [("rust counter", rust), ("javascript counter", js)]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let objects: usize = std::env::var("OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!("| component | size | activations | mean activation | mean request to a new object |");
    println!("|---|---:|---:|---:|---:|");
    for (label, component) in components(&root) {
        let data = tempfile::tempdir().expect("temp dir");
        let host = dohost::Host::builder()
            .data_dir(data.path())
            .binding("COUNTER", "Counter", &component)
            .build()
            .expect("host builds");
        let namespace = host.namespace("COUNTER").expect("binding");
        let request = |ns: &dohost::Namespace, name: String| {
            let stub = ns.id_from_name(&name).get();
            async move {
                let response = stub
                    .fetch(
                        http::Request::get("/")
                            .body(Vec::new().into())
                            .expect("request"),
                    )
                    .await
                    .expect("the counter answers");
                assert_eq!(response.status(), 200);
            }
        };
        // One object first, so the component's compile and the first
        // instance's page faults are not counted.
        rt.block_on(request(&namespace, "warm-up".to_owned()));
        let before = host.stats();
        let started = Instant::now();
        for i in 0..objects {
            rt.block_on(request(&namespace, format!("object-{i}")));
        }
        let elapsed = started.elapsed();
        let after = host.stats();
        let activations = after.activations - before.activations;
        let time = after.activation_time - before.activation_time;
        println!(
            "| {label} | {:.2} MB | {activations} | {:.0} µs | {:.0} µs |",
            std::fs::metadata(&component).map_or(0, |m| m.len()) as f64 / 1e6,
            time.as_secs_f64() * 1e6 / activations.max(1) as f64,
            elapsed.as_secs_f64() * 1e6 / objects as f64,
        );
        rt.block_on(host.shutdown());
    }
}
