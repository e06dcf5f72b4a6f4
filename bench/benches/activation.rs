//! Activation: the time to create a new object's instance and run its
//! class's constructor, for the Rust counter (examples/counter), the
//! JavaScript counter (bench/js, workerd's reference Counter) and the Python
//! counter (examples/python/counter), with each component's size. Each of
//! OBJECTS objects (default 1,000; PYTHON_OBJECTS for the Python counter,
//! default the same) gets one request, so each is activated once; the host's own counters (`Host::stats`) give
//! the time spent activating, apart from the request's work and its commit:
//! per round (the median round's mean is reported) and per activation (the
//! median of all of them, p50).
//!
//! Two cases per component: every object stays live, so each takes a slot
//! of the instance pool never used before; and at most 100 objects are live,
//! so older ones are evicted and new ones reuse their slots, as on a server
//! that has run for a while.
//!
//! `cargo bench -p dohost-bench --bench activation` (OBJECTS=N,
//! PYTHON_OBJECTS=N, ONLY=TEXT). The JavaScript and Python counters are
//! built first, installing their build tools on the first run: into bench/js
//! with npm, and into examples/python/.dohost with `python3 -m venv` and pip.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The objects are measured in rounds and the median round reported, so a
/// burst of noise on a shared machine moves one round rather than the result.
const ROUNDS: usize = 10;

fn components(root: &Path) -> [(&'static str, PathBuf); 3] {
    let mut progress = |line: &str| eprintln!("{line}");
    dohost::build::ensure_guest_target(&mut progress).expect("guest target");
    let rust = dohost::build::build_rust_guest(&root.join("examples/counter/counter"))
        .expect("the Rust counter builds");
    let js = dohost::build::build_js_guest(
        &root.join("bench/js/counter.js"),
        dohost::build::Role::Objects,
        &root.join("bench/js"),
        &mut progress,
    )
    .expect("the JavaScript counter builds")
    .wasm;
    // One component serves the module's objects and its worker; only the
    // Counter class is bound here.
    let python = dohost::build::build_python_guest(
        &root.join("examples/python/counter/counter.py"),
        &root.join("examples/python"),
    )
    .expect("the Python counter builds")
    .wasm;
    [
        ("rust counter", rust),
        ("javascript counter", js),
        ("python counter", python),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let count = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let objects = count("OBJECTS", 1000);
    // A Python instance starts a CPython interpreter: its activations may
    // be counted on fewer objects to keep the run short.
    let python_objects = count("PYTHON_OBJECTS", objects);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "| component | size | slots | activations | activation (median of {ROUNDS} rounds) | activation p50 | request to a new object |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    let cases = [
        ("new", dohost::DEFAULT_MAX_LIVE_OBJECTS),
        ("reused (100 live)", 100),
    ];
    // ONLY=TEXT: only the cases whose "component slots" contains TEXT
    // (e.g. "rust counter reused", for a profile).
    let only = std::env::var("ONLY").unwrap_or_default();
    for (label, component) in components(&root) {
        for (slots, max_live_objects) in cases {
            if format!("{label} {slots}").contains(&only) {
                let objects = if label.starts_with("python") {
                    python_objects
                } else {
                    objects
                };
                measure(&rt, label, &component, slots, max_live_objects, objects);
            }
        }
    }
}

fn measure(
    rt: &tokio::runtime::Runtime,
    label: &str,
    component: &Path,
    slots: &str,
    max_live_objects: u32,
    objects: usize,
) {
    let data = tempfile::tempdir().expect("temp dir");
    let host = dohost::Host::builder()
        .data_dir(data.path())
        .binding("COUNTER", "Counter", component)
        .settings(dohost::Settings {
            max_live_objects,
            ..dohost::Settings::default()
        })
        .build()
        .expect("host builds");
    let namespace = host.namespace("COUNTER").expect("binding");
    let request_to = |ns: &dohost::Namespace, name: String| {
        let stub = ns.id_from_name(&name).get();
        async move {
            let response = stub
                .fetch(
                    http::Request::get("/")
                        .body(Vec::new().into())
                        .expect("request"),
                )
                .await
                .map_err(|e| e.to_string())?;
            match response.status() {
                http::StatusCode::OK => Ok(()),
                status => Err(format!("status {status}")),
            }
        }
    };
    // One object first, so the component's compile and the first
    // instance's page faults are not counted.
    rt.block_on(request_to(&namespace, "warm-up".to_owned()))
        .expect("the counter answers");
    let count = objects / ROUNDS;
    let start = host.stats();
    let mut activation = Vec::new();
    let mut request = Vec::new();
    let mut activations = 0;
    // Each activation's own time, for the median of all of them.
    let mut each = Vec::new();
    for round in 0..ROUNDS {
        let before = host.stats();
        let started = Instant::now();
        for i in 0..count {
            let before = host.stats();
            // A refused activation (e.g. the instance pool's limits) ends
            // the case with a row that says so, and the other cases still run.
            if let Err(e) = rt.block_on(request_to(&namespace, format!("object-{round}-{i}"))) {
                println!(
                    "| {label} | {:.2} MB | {slots} | {} | failed: {e} | | |",
                    size(component),
                    host.stats().activations - start.activations,
                );
                rt.block_on(host.shutdown());
                return;
            }
            let after = host.stats();
            if after.activations - before.activations == 1 {
                each.push((after.activation_time - before.activation_time).as_secs_f64() * 1e6);
            }
        }
        let elapsed = started.elapsed();
        let after = host.stats();
        let n = after.activations - before.activations;
        activations += n;
        let time = after.activation_time - before.activation_time;
        activation.push(time.as_secs_f64() * 1e6 / n.max(1) as f64);
        request.push(elapsed.as_secs_f64() * 1e6 / count.max(1) as f64);
    }
    println!(
        "| {label} | {:.2} MB | {slots} | {activations} | {:.0} µs | {:.0} µs | {:.0} µs |",
        size(component),
        median(&mut activation),
        median(&mut each),
        median(&mut request),
    );
    rt.block_on(host.shutdown());
}

/// The component file's size in MB.
fn size(component: &Path) -> f64 {
    std::fs::metadata(component).map_or(0, |m| m.len()) as f64 / 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
