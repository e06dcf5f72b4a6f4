//! A closed-loop HTTP/1.1 load generator, used for dohost and its peers alike
//! so that both sides of a comparison are measured by the same client.
//!
//! Run: `loadgen --label NAME --url 'http://127.0.0.1:8787/COUNTER/o{}/' --objects 10000`
//!
//! Each of `--connections` keep-alive connections sends one request at a
//! time for `--warmup` (not counted) and then `--seconds`. `{}` in the URL is
//! replaced per request by a random object number below `--objects`; with
//! `--touch-first`, every object gets one request before the warm-up, so
//! the run measures objects that are all live rather than their first
//! activations. Prints
//! one human line and one `RESULT label req/s p50_ms p99_ms errors` line.
//! With `--every S`, it also prints a `CURVE label seconds done req/s` line
//! every S seconds from the start (warm-up included): `done` counts the
//! successful requests so far, which for `/sql` is the table's row count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

mod client;
use client::{connect, get};

#[derive(Parser)]
struct Args {
    /// A name for the result line.
    #[arg(long)]
    label: String,
    /// The URL; `{}` is replaced by a random object number.
    #[arg(long)]
    url: String,
    /// How many distinct objects `{}` ranges over.
    #[arg(long, default_value_t = 1)]
    objects: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Print a `CURVE` line every this many seconds (0: none).
    #[arg(long, default_value_t = 0.0)]
    every: f64,
    /// Send each object one request before the warm-up, not counted.
    #[arg(long)]
    touch_first: bool,
}

/// Successful requests so far, warm-up included (for `--every`).
static DONE: AtomicU64 = AtomicU64::new(0);

struct Outcome {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn connection(args: &Args, seed: u64, warm_until: Instant, stop_at: Instant) -> Outcome {
    let authority = client::authority(&args.url);
    let mut outcome = Outcome {
        latencies_us: Vec::with_capacity(1 << 16),
        errors: 0,
    };
    let mut rng = seed | 1;
    'reconnect: while Instant::now() < stop_at {
        let Some(mut sender) = connect(&authority).await else {
            outcome.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < stop_at {
            // xorshift64: a cheap, per-connection random object.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let url = args.url.replace("{}", &(rng % args.objects).to_string());
            let started = Instant::now();
            let ok = get(&mut sender, url, &authority).await;
            if ok {
                DONE.fetch_add(1, Ordering::Relaxed);
            }
            if started < warm_until {
                continue;
            }
            if !ok {
                outcome.errors += 1;
                continue 'reconnect;
            }
            outcome
                .latencies_us
                .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
    outcome
}

/// Prints a `CURVE` line every `--every` seconds until `stop_at`.
async fn curve(args: &'static Args, start: Instant, stop_at: Instant) {
    let every = Duration::from_secs_f64(args.every);
    let mut tick = tokio::time::interval_at((start + every).into(), every);
    let mut last = 0;
    while Instant::now() < stop_at {
        tick.tick().await;
        let done = DONE.load(Ordering::Relaxed);
        println!(
            "CURVE {} {:.0} {} {:.0}",
            args.label,
            start.elapsed().as_secs_f64(),
            done,
            (done - last) as f64 / args.every
        );
        last = done;
    }
}

fn main() {
    let args: &'static Args = Box::leak(Box::new(Args::parse()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (latencies, errors, measured) = runtime.block_on(async {
        if args.touch_first {
            let step = args.connections as u64;
            let tasks: Vec<_> = (0..step)
                .map(|first| tokio::spawn(client::touch(&args.url, 0, args.objects, first, step)))
                .collect();
            let mut failed = 0;
            for task in tasks {
                failed += task.await.expect("touch task");
            }
            if failed > 0 {
                eprintln!(
                    "{}: {failed} objects failed their first request",
                    args.label
                );
            }
        }
        let start = Instant::now();
        let warm_until = start + Duration::from_secs_f64(args.warmup);
        let stop_at = warm_until + Duration::from_secs_f64(args.seconds);
        if args.every > 0.0 {
            tokio::spawn(curve(args, start, stop_at));
        }
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| {
                tokio::spawn(connection(
                    args,
                    0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                    warm_until,
                    stop_at,
                ))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let outcome = task.await.expect("connection task");
            latencies.extend(outcome.latencies_us);
            errors += outcome.errors;
        }
        (
            latencies,
            errors,
            stop_at.saturating_duration_since(warm_until),
        )
    });
    let mut latencies = latencies;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[i]) / 1000.0
    };
    let rps = latencies.len() as f64 / measured.as_secs_f64();
    println!(
        "{}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({} requests, {} connections, {} objects)",
        args.label,
        rps,
        pct(0.50),
        pct(0.99),
        errors,
        latencies.len(),
        args.connections,
        args.objects
    );
    println!(
        "RESULT {} {:.0} {:.2} {:.2} {}",
        args.label,
        rps,
        pct(0.50),
        pct(0.99),
        errors
    );
}
