//! Live idle objects: touches objects `0..N` once each and reports what
//! the server holds for them, at each checkpoint (`--at`): its resident
//! memory (VmRSS) and memory mappings, in total and per object added
//! since the first checkpoint's baseline.
//!
//! Run: `objects --url 'http://127.0.0.1:8787/COUNTER/o{}/' --pid PID --at 10000,100000`
//!
//! `{}` in the URL is replaced by the object's number. Requests go out on
//! `--connections` keep-alive connections, one at a time each. Before the
//! first object the server's memory is read as a baseline, so "per object"
//! is what each object adds. Prints one human line and one
//! `RESULT label objects rss_kib maps kib_per_object maps_per_object errors
//! pss_kib_per_object` line per checkpoint.

use std::time::{Duration, Instant};

use clap::Parser;

mod client;

#[derive(Parser)]
struct Args {
    /// A name for the result lines.
    #[arg(long)]
    label: String,
    /// The URL; `{}` is replaced by the object's number.
    #[arg(long)]
    url: String,
    /// The server's process id, whose memory is read.
    #[arg(long)]
    pid: u32,
    /// Checkpoints: the object counts at which to report, ascending.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    at: Vec<u64>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 8)]
    connections: u64,
    /// Seconds to let the server settle before each reading.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
}

/// The server's resident memory (VmRSS) and proportional set size (Pss:
/// a page mapped in many places, such as a copy-on-write image, counted
/// once) in KiB, and its number of mappings.
fn memory(pid: u32) -> (u64, u64, u64) {
    let kib = |file: &str, field: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_or(0, |m| m.lines().count() as u64);
    (kib("status", "VmRSS:"), kib("smaps_rollup", "Pss:"), maps)
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settle = Duration::from_secs_f64(args.settle);
    let (base_rss, base_pss, base_maps) = memory(args.pid);
    println!(
        "{}: before: {} MiB resident, {base_maps} mappings",
        args.label,
        base_rss >> 10
    );
    let mut done = 0;
    let mut errors = 0;
    for &at in &args.at {
        let started = Instant::now();
        errors += runtime.block_on(async {
            let tasks: Vec<_> = (0..args.connections)
                .map(|c| {
                    let url = args.url.clone();
                    tokio::spawn(
                        async move { client::touch(&url, done, at, c, args.connections).await },
                    )
                })
                .collect();
            let mut errors = 0;
            for task in tasks {
                errors += task.await.expect("connection task");
            }
            errors
        });
        let took = started.elapsed();
        let batch = at.saturating_sub(done);
        done = at.max(done);
        std::thread::sleep(settle);
        let (rss, pss, maps) = memory(args.pid);
        let objects = done.max(1) as f64;
        let kib_per = rss.saturating_sub(base_rss) as f64 / objects;
        let pss_per = pss.saturating_sub(base_pss) as f64 / objects;
        let maps_per = maps.saturating_sub(base_maps) as f64 / objects;
        println!(
            "{}: {done} objects: {} MiB resident ({kib_per:.1} KiB per object; Pss {pss_per:.1} KiB), {maps} mappings ({maps_per:.2} per object), {errors} errors, {:.0} objects/s",
            args.label,
            rss >> 10,
            batch as f64 / took.as_secs_f64().max(1e-9),
        );
        println!(
            "RESULT {} {done} {rss} {maps} {kib_per:.1} {maps_per:.2} {errors} {pss_per:.1}",
            args.label
        );
    }
}
