//! dohost embedded in a Rust program: build the counter guest, start a host
//! in-process, and talk to an object by name.
//!
//! Run: `cargo run -p embed` (prints three counts; run it again and they go on).

use std::path::Path;

use bytes::Bytes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Build the Counter guest from source (adds the wasm32-wasip2 target if missing).
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../counter/counter");
    dohost::build::ensure_guest_target(&mut |line| eprintln!("{line}"))?;
    let component = dohost::build::build_rust_guest(&crate_dir)?;

    let data = std::env::temp_dir().join("dohost-embed-example");
    let host = dohost::Host::builder()
        .data_dir(&data)
        .binding("COUNTER", "Counter", &component)
        .build()?;

    let counter = host.namespace("COUNTER")?;
    for _ in 0..3 {
        let request = http::Request::get("/").body(Bytes::new())?;
        let response = counter.id_from_name("x").get().fetch(request).await?;
        println!("count = {}", String::from_utf8_lossy(response.body()));
    }

    // Commits everything and closes the database before returning.
    host.shutdown().await;
    println!("state kept in {}", data.display());
    Ok(())
}
