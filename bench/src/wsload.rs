//! The WebSocket load client, used for dohost and workerd alike.
//!
//! `wsload broadcast --label L --url ws://HOST/rooms/r/websocket --receivers 100`:
//! one sender and `--receivers` sockets in one room; the sender keeps
//! `--window` messages in flight (the room sends each message to every
//! socket, the sender's own copy is its ack). Prints `RESULT label
//! delivered/s p50_ms p99_ms errors`, where delivered counts every copy a
//! receiver got and the latencies are the sender's round trips.
//!
//! `wsload idle --label L --url ... --sockets 10000 --pid PID`: opens
//! `--warm` sockets first (so the server has grown what does not grow per
//! socket), then that many, lets them sit `--seconds`, and prints `MEMORY
//! label bytes-per-socket sockets` from the growth of process PID's
//! resident memory over the second batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    run: Run,
}

#[derive(Subcommand)]
enum Run {
    /// Messages delivered per second, one sender to many receivers.
    Broadcast {
        #[arg(long)]
        label: String,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 100)]
        receivers: usize,
        #[arg(long, default_value_t = 16)]
        window: usize,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
    },
    /// The resident memory of idle sockets.
    Idle {
        #[arg(long)]
        label: String,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        /// The server's process id, whose memory is read.
        #[arg(long)]
        pid: u32,
        /// How long the sockets sit before the memory is read.
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        /// Sockets opened before the memory is first read.
        #[arg(long, default_value_t = 1000)]
        warm: usize,
    },
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the server (pid {pid}) is gone: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::main]
async fn main() {
    match Args::parse().run {
        Run::Broadcast {
            label,
            url,
            receivers,
            window,
            warmup,
            seconds,
        } => broadcast(&label, &url, receivers, window, warmup, seconds).await,
        Run::Idle {
            label,
            url,
            sockets,
            pid,
            seconds,
            warm,
        } => idle(&label, &url, sockets, warm, pid, seconds).await,
    }
}

async fn broadcast(
    label: &str,
    url: &str,
    receivers: usize,
    window: usize,
    warmup: f64,
    seconds: f64,
) {
    let delivered = Arc::new(AtomicU64::new(0));
    for _ in 0..receivers {
        let (mut ws, _) = connect_async(url).await.expect("a receiver connects");
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let (sender, _) = connect_async(url).await.expect("the sender connects");
    let (mut sink, mut acks) = sender.split();
    let started = Instant::now();
    let warm = started + Duration::from_secs_f64(warmup);
    let end = warm + Duration::from_secs_f64(seconds);
    let mut sent_at = std::collections::VecDeque::new();
    let mut latencies = Vec::new();
    let mut counted_from = None;
    let mut errors = 0u64;
    while Instant::now() < end {
        while sent_at.len() < window {
            if sink.send(Message::text("m")).await.is_err() {
                errors += 1;
                break;
            }
            sent_at.push_back(Instant::now());
        }
        match tokio::time::timeout(Duration::from_secs(5), acks.next()).await {
            Ok(Some(Ok(message))) if message.is_text() => {
                let sent = sent_at.pop_front().expect("an ack follows a send");
                let now = Instant::now();
                if now >= warm {
                    if counted_from.is_none() {
                        counted_from = Some((now, delivered.load(Ordering::Relaxed)));
                    }
                    latencies.push(now - sent);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                errors += 1;
                break;
            }
        }
    }
    let (from, base) = counted_from.expect("messages after the warm-up");
    let elapsed = from.elapsed().as_secs_f64();
    let rate = (delivered.load(Ordering::Relaxed) - base) as f64 / elapsed;
    latencies.sort();
    let ms = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "{label}: {rate:.0} messages delivered/s to {receivers} receivers, round trip p50 {:.2} ms p99 {:.2} ms, {errors} errors",
        ms(0.5),
        ms(0.99)
    );
    println!(
        "RESULT {label} {rate:.0} {:.2} {:.2} {errors}",
        ms(0.5),
        ms(0.99)
    );
}

async fn idle(label: &str, url: &str, sockets: usize, warm: usize, pid: u32, seconds: f64) {
    let open_many = |n: usize| {
        futures_util::stream::iter(0..n)
            .map(|_| async { connect_async(url).await.map(|(ws, _)| ws) })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
    };
    let warmed = open_many(warm).await;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let before = rss(pid);
    let open = open_many(sockets).await;
    let failed = open.iter().filter(|r| r.is_err()).count();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = rss(pid);
    let per_socket = after.saturating_sub(before) / (sockets - failed).max(1) as u64;
    eprintln!(
        "{label}: {} idle sockets ({failed} failed), server RSS {} MiB -> {} MiB, {per_socket} bytes per socket",
        sockets - failed,
        before >> 20,
        after >> 20
    );
    println!("MEMORY {label} {per_socket} {}", sockets - failed);
    drop(open);
    drop(warmed);
}
