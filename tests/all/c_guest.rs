//! A guest written without a dohost SDK: examples/c/counter, the Counter
//! object in C, built from source through the steps of its build.sh (C
//! bindings from `wit/` by wit-bindgen's C generator, a core module from
//! clang for wasm32-wasi, the component made by wit-component: the
//! libraries behind the `wit-bindgen` and `wasm-tools` commands) and served
//! by `dohost serve`. It counts 1, 2, keeps its count across a restart,
//! and stores it as JSON text that a Rust object reads as a number.
//!
//! clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 are Debian packages
//! (`.ci/run` installs them); without them the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    Server, client, example_config, get, guests, send_with_headers, with_component, workspace,
    write_config,
};

const EXAMPLE: &str = "examples/c/counter";
const TOKEN: &str = "c-guest-test-admin-token-0123456789";

/// What the C build needs from the system, named in the test's failure.
const C_TOOLCHAIN: &str = "the C guest needs clang for wasm32-wasi: on Debian, \
     `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32` (.ci/run installs them)";

/// Builds examples/c/counter into `out` as its build.sh does; the
/// component's path.
fn build_c_counter(out: &Path) -> PathBuf {
    let example = workspace().join(EXAMPLE);

    // 1. `wit-bindgen c --world durable-object --out-dir gen wit`
    let gen_dir = out.join("gen");
    std::fs::create_dir_all(&gen_dir).expect("create gen/");
    let mut resolve = wit_bindgen_core::wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(workspace().join("wit"))
        .unwrap_or_else(|e| panic!("wit/ parses: {e:#}"));
    let world = resolve
        .select_world(&[package], Some("durable-object"))
        .unwrap_or_else(|e| panic!("wit/ has the world durable-object: {e:#}"));
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .unwrap_or_else(|e| panic!("the C bindings generate: {e:#}"));
    for (name, contents) in files.iter() {
        std::fs::write(gen_dir.join(name), contents).expect("write a generated file");
    }

    // 2. clang, with build.sh's flags.
    let core = out.join("counter.core.wasm");
    let clang = Command::new("clang")
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
        ])
        .arg(&gen_dir)
        .arg("-o")
        .arg(&core)
        .arg(example.join("counter.c"))
        .arg(gen_dir.join("durable_object.c"))
        .arg(gen_dir.join("durable_object_component_type.o"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run clang ({e}); {C_TOOLCHAIN}"));
    assert!(
        clang.status.success(),
        "clang failed; {C_TOOLCHAIN}. Its output:\n{}",
        String::from_utf8_lossy(&clang.stderr)
    );

    // 3. `wasm-tools component new counter.core.wasm -o counter.wasm`
    let module = std::fs::read(&core).expect("read the core module");
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|encoder| encoder.encode())
        .unwrap_or_else(|e| panic!("the core module becomes a component: {e:#}"));
    let path = out.join("counter.wasm");
    std::fs::write(&path, component).expect("write counter.wasm");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_object_counts_durably_and_its_json_reads_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let component = build_c_counter(dir.path());
    // The example's dohost.toml with the component just built, the Rust
    // probe beside it, and the admin API to move the count between them.
    let config = format!(
        "{}\n[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
         [admin]\ntoken = {TOKEN:?}\n",
        with_component(&example_config(EXAMPLE), "COUNTER", &component),
        guests().probe
    );
    let config = write_config(dir.path(), &config);
    let data = dir.path().join("data");
    let http = client();

    let server = Server::start(&config, &data);
    for expected in ["1", "2"] {
        assert_eq!(
            get(&http, &server.url("/COUNTER/c/")).await,
            (200, expected.to_owned())
        );
    }
    drop(server);

    let server = Server::start(&config, &data);
    assert_eq!(
        get(&http, &server.url("/COUNTER/c/")).await,
        (200, "3".to_owned())
    );

    // The C object's storage, imported as a Rust probe's: the probe's
    // `count` route reads "count" as a u64 through the SDK (serde_json)
    // and adds one.
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let (status, export) = send_with_headers(
        &http,
        "GET",
        &server.url("/_dohost/objects/COUNTER/c/export"),
        &headers,
        "",
    )
    .await;
    assert_eq!(status, 200, "{export}");
    let as_probe = export.replacen(
        "\"binding\":\"COUNTER\",\"class\":\"Counter\"",
        "\"binding\":\"PROBE\",\"class\":\"Probe\"",
        1,
    );
    assert_ne!(as_probe, export, "the export's header names its binding");
    let (status, body) = send_with_headers(
        &http,
        "POST",
        &server.url("/_dohost/objects/PROBE/c/import"),
        &headers,
        &as_probe,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The probe answers its in-memory count, then the stored one.
    assert_eq!(
        get(&http, &server.url("/PROBE/c/count")).await,
        (200, "1 4".to_owned())
    );
}
