//! Alarms through the real host: how fast a burst of alarms that are all
//! due at once is delivered, and how little memory the scheduler needs for
//! many scheduled alarms.
//!
//! `cargo bench -p dohost-bench --bench alarms` (`ALARMS=N` alarms due at
//! once, default 100,000; `SCHEDULED=N` alarms an hour ahead, default
//! 1,000,000). Each alarm is on its own probe object, set by one event; the
//! probe's handler appends to a KV key, so every delivery is an activation,
//! a guest call and two commits.

// Shared with the other benchmarks, which use the parts this one does not.
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

/// Events in flight while alarms are being set.
const CONCURRENCY: usize = 512;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit i64")
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// A host over the probe that lets many objects come and go quickly.
fn host(data: &Path, probe: &Path) -> dohost::Host {
    dohost::Host::builder()
        .data_dir(data)
        .binding("PROBE", "Probe", probe)
        .settings(dohost::Settings {
            max_live_objects: 20_000,
            idle_timeout: Duration::from_millis(200),
            memory_per_object: 32 << 20,
            ..dohost::Settings::default()
        })
        .build()
        .expect("host builds")
}

/// Sets the alarm of objects `prefix-0..n` to `time(n)`, `CONCURRENCY`
/// events at a time; returns how long it took.
async fn set_alarms(
    host: &dohost::Host,
    prefix: &str,
    n: usize,
    time: impl Fn(usize) -> i64,
) -> Duration {
    let namespace = host.namespace("PROBE").expect("binding");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= CONCURRENCY {
            tasks.join_next().await.expect("a task").expect("task runs");
        }
        let stub = namespace.id_from_name(&format!("{prefix}-{i}")).get();
        let ops = json!([{"op": "set_alarm", "at": time(i)}]);
        tasks.spawn(async move { support::ops(&stub, &ops).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task runs");
    }
    started.elapsed()
}

fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

/// `count` alarms due at the same moment: alarms delivered per second.
fn due_at_once(rt: &tokio::runtime::Runtime, probe: &Path, count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let host = host(dir.path(), probe);
        // Due a moment after the last is set: estimated from a first
        // thousand, set far ahead so none fires early.
        let sample = count.min(1000);
        let far = now_ms() + 3_600_000;
        let took = set_alarms(&host, "warm", sample, |_| far).await;
        let estimate = took.mul_f64(count as f64 / sample as f64 * 1.5);
        let due = now_ms() + i64::try_from(estimate.as_millis()).unwrap_or(0) + 2000;
        let took = set_alarms(&host, "due", count, |_| due).await;
        println!(
            "alarms/due-at-once: set {count} alarms in {:.2} s ({:.0} events/s)",
            took.as_secs_f64(),
            per_second(count, took)
        );
        let late_by = now_ms() - due;
        if late_by > 0 {
            println!("  (setting ended {late_by} ms after they were due)");
        }
        let before = host.stats().alarms_run;
        while now_ms() < due {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let mut first = None;
        loop {
            let run = host.stats().alarms_run - before;
            if run > 0 && first.is_none() {
                first = Some(started.elapsed());
            }
            if run >= count as u64 || started.elapsed() > Duration::from_secs(600) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = started.elapsed();
        let run = host.stats().alarms_run - before;
        println!(
            "alarms/due-at-once: {run} of {count} handlers ran in {:.2} s: {:.0} alarms/s (first after {:.1} ms)",
            took.as_secs_f64(),
            per_second(usize::try_from(run).unwrap_or(0), took),
            first.unwrap_or_default().as_secs_f64() * 1000.0
        );
        // No duplicates: a sample of the objects each ran exactly once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let namespace = host.namespace("PROBE").expect("binding");
        let mut wrong = 0;
        for i in (0..count).step_by((count / 1000).max(1)) {
            let stub = namespace.id_from_name(&format!("due-{i}")).get();
            let results = support::ops(&stub, &json!([{"op": "get", "key": "alarm-log"}])).await;
            let log: Vec<serde_json::Value> = results[0]["ok"]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            wrong += usize::from(log.len() != 1);
        }
        println!(
            "alarms/due-at-once: {} handler runs in total for {count} alarms; {wrong} sampled objects did not run exactly once",
            host.stats().alarms_run - before
        );
        host.shutdown().await;
    });
}

/// `count` alarms an hour ahead: what the scheduler holds in memory, before
/// and after a restart.
fn scheduled(rt: &tokio::runtime::Runtime, probe: &Path, count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let host = host(dir.path(), probe);
        let rss_before = rss_mib();
        let base = now_ms() + 3_600_000;
        let took = set_alarms(&host, "later", count, |i| {
            base + i64::try_from(i).unwrap_or(0)
        })
        .await;
        println!(
            "alarms/scheduled: set {count} alarms in {:.2} s ({:.0} events/s)",
            took.as_secs_f64(),
            per_second(count, took)
        );
        // Let the objects leave memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "alarms/scheduled: scheduler holds {} of {count} alarms in memory; RSS {:.0} MiB (before setting: {rss_before:.0} MiB)",
            host.stats().alarms_in_memory,
            rss_mib()
        );
        host.shutdown().await;

        let rss_restart = rss_mib();
        let started = Instant::now();
        let host = self::host(dir.path(), probe);
        while host.stats().alarms_in_memory == 0 && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        println!(
            "alarms/scheduled: after a restart, {} alarms loaded in {:.1} ms; RSS {:.0} MiB ({rss_restart:.0} MiB before the restart)",
            host.stats().alarms_in_memory,
            started.elapsed().as_secs_f64() * 1000.0,
            rss_mib()
        );
        host.shutdown().await;
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick check.
    let quick = !std::env::args().any(|a| a == "--bench");
    let probe = support::probe_component();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (due, later) = if quick {
        (100, 100)
    } else {
        (
            env_count("ALARMS", 100_000),
            env_count("SCHEDULED", 1_000_000),
        )
    };
    due_at_once(&rt, &probe, due);
    scheduled(&rt, &probe, later);
}
