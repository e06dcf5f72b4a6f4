//! Metrics: what the host counts, through the [`metrics`] facade, and their
//! Prometheus text. [docs/metrics.md] lists each one.
//!
//! The host records into whatever recorder the process installed, like any
//! library on the facade (with none, a record costs a load and a branch).
//! `dohost serve` installs the Prometheus recorder ([`install`]), and the
//! host serves its text at `GET /_dohost/metrics`, behind the admin token.
//! Gauges of what the host holds (objects in memory, sockets, cache bytes)
//! are read from the host's stats when the text is rendered. Labels name bindings, classes, kinds and statuses, never an
//! object: their number stays small.
//!
//! [docs/metrics.md]: https://github.com/dohost/dohost/blob/main/docs/metrics.md

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::{Error, ErrorKind, Result};
use dohost_store::{COMMIT_DURATION, COMMIT_FAILURES, COMMIT_SYNC_DURATION, COMMIT_WRITE_SETS};

/// HTTP requests answered, by `route` (object, worker, asset, admin,
/// health), `binding` and `status`.
pub(crate) const HTTP_REQUESTS: &str = "dohost_http_requests_total";
/// The time to a response's head, by `route` and `binding`.
pub(crate) const HTTP_DURATION: &str = "dohost_http_request_duration_seconds";
/// Requests the edge refused before placing them, by `reason`.
const HTTP_REFUSED: &str = "dohost_http_refused_total";
/// Events delivered to objects, by `binding` and `kind`.
pub(crate) const EVENTS: &str = "dohost_events_total";
/// Objects activated, by `binding`.
pub(crate) const ACTIVATIONS: &str = "dohost_object_activations_total";
/// The time an activation took (instance and constructor), by `binding`.
pub(crate) const ACTIVATION_DURATION: &str = "dohost_object_activation_duration_seconds";
/// Objects that left memory, by `binding` and `reason`.
pub(crate) const EVICTIONS: &str = "dohost_object_evictions_total";
/// Objects reset (their instance dropped), by `binding` and `cause`.
pub(crate) const RESETS: &str = "dohost_object_resets_total";
/// Requests refused because an object's mailbox was full, by `binding`.
pub(crate) const OVERLOADS: &str = "dohost_mailbox_overloads_total";
/// Alarm handlers that ran, by `binding` and `outcome` (ok, retried,
/// dropped, error).
pub(crate) const ALARMS: &str = "dohost_alarms_total";
/// Alarms that came due and went to their object, by `binding`.
pub(crate) const ALARMS_DUE: &str = "dohost_alarms_due_total";
/// Outbound `fetch` requests, by `outcome` (ok, or the error's kind).
pub(crate) const OUTBOUND: &str = "dohost_outbound_requests_total";

/// Objects in memory now.
const OBJECTS_IN_MEMORY: &str = "dohost_objects_in_memory";
/// Entry-worker instances now.
const WORKER_INSTANCES: &str = "dohost_worker_instances";
/// WebSockets the objects hold now.
const WEBSOCKETS: &str = "dohost_websockets";
/// Bytes the objects' caches hold now.
const CACHE_BYTES: &str = "dohost_cache_bytes";
/// Alarms the scheduler holds in memory now.
const ALARMS_IN_MEMORY: &str = "dohost_alarms_in_memory";
/// Storage reads that went to disk (cache misses).
const DISK_READS: &str = "dohost_storage_disk_reads_total";
/// Key reads answered from memory (cache hits).
const MEMORY_READS: &str = "dohost_storage_cache_hits_total";

/// Bucket bounds of the duration histograms, in seconds: 50 µs to 10 s.
const SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Bucket bounds of the write sets per commit.
const WRITE_SETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus recorder this process installed, if it did.
static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder
/// (once; later calls return at once) and describes every metric, so
/// `GET /_dohost/metrics` serves them. Call it before building a host: the
/// host registers its metrics' handles as it starts, so that recording
/// one is an atomic add.
///
/// # Errors
///
/// [`ErrorKind::Config`] if the process installed another recorder first.
pub fn install() -> Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(COMMIT_WRITE_SETS.to_owned()), &WRITE_SETS)
        })
        .map_err(|e| Error::new(ErrorKind::Config, format!("metrics: {e}")))?;
    let handle = builder.install_recorder().map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot install the Prometheus metrics recorder: {e}"),
        )
    })?;
    let _ = INSTALLED.set(handle);
    describe();
    Ok(())
}

/// The handles of the per-request metrics ([`HTTP_REQUESTS`],
/// [`HTTP_DURATION`]), registered once per route kind, binding and status:
/// a request then costs a map lookup under a read lock and atomic adds,
/// not a registration (labels built, hashed and looked up in the
/// recorder's registry).
#[derive(Default)]
pub(crate) struct HttpCounts {
    /// binding → its route kinds' handles.
    bindings: std::sync::RwLock<HashMap<String, Vec<RouteCounts>>>,
}

/// The handles of one route kind and binding.
struct RouteCounts {
    kind: &'static str,
    duration: Histogram,
    statuses: Vec<(u16, Counter)>,
}

impl HttpCounts {
    /// Counts a request of route `kind` to `binding` answered with `status`
    /// after `seconds`.
    pub(crate) fn record(&self, kind: &'static str, binding: &str, status: u16, seconds: f64) {
        {
            let bindings = self.bindings.read().unwrap_or_else(|p| p.into_inner());
            let known = bindings
                .get(binding)
                .and_then(|kinds| kinds.iter().find(|k| k.kind == kind))
                .and_then(|k| {
                    let counter = k.statuses.iter().find(|(s, _)| *s == status)?;
                    Some((&k.duration, &counter.1))
                });
            if let Some((duration, counter)) = known {
                counter.increment(1);
                duration.record(seconds);
                return;
            }
        }
        let mut bindings = self.bindings.write().unwrap_or_else(|p| p.into_inner());
        let kinds = bindings.entry(binding.to_owned()).or_default();
        let position = match kinds.iter().position(|k| k.kind == kind) {
            Some(i) => i,
            None => {
                kinds.push(RouteCounts {
                    kind,
                    duration: metrics::histogram!(HTTP_DURATION, "route" => kind, "binding" => binding.to_owned()),
                    statuses: Vec::new(),
                });
                kinds.len() - 1
            }
        };
        let route = &mut kinds[position];
        if !route.statuses.iter().any(|(s, _)| *s == status) {
            let counter = metrics::counter!(HTTP_REQUESTS, "route" => kind, "binding" => binding.to_owned(), "status" => status.to_string());
            route.statuses.push((status, counter));
        }
        let counter = &route
            .statuses
            .iter()
            .find(|(s, _)| *s == status)
            .expect("added")
            .1;
        counter.increment(1);
        route.duration.record(seconds);
    }
}

/// What the host holds at the moment of a scrape.
pub(crate) struct Held {
    pub(crate) objects_in_memory: usize,
    pub(crate) worker_instances: usize,
    pub(crate) websockets: usize,
    pub(crate) cache_bytes: usize,
    pub(crate) alarms_in_memory: usize,
    pub(crate) disk_reads: u64,
    pub(crate) memory_reads: u64,
}

/// Why the edge refused a request before placing it, for
/// [`count_refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The server was at its connection cap with no idle connection (503).
    Connections,
    /// The request's head or body came too slowly (408).
    Slow,
    /// The body was over the request-body limit (413).
    TooLarge,
    /// All bodies together were at their memory limit (503).
    BodyMemory,
    /// The request was malformed (400).
    Malformed,
    /// No route takes the request: an unknown binding, a bad object name
    /// (4xx).
    NoRoute,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::Slow => "slow",
            Refusal::TooLarge => "too_large",
            Refusal::BodyMemory => "body_memory",
            Refusal::Malformed => "malformed",
            Refusal::NoRoute => "no_route",
        }
    }
}

/// Counts a request an HTTP edge refused before placing it
/// (`dohost_http_refused_total`); `dohost serve`'s edge does.
pub fn count_refusal(why: Refusal) {
    metrics::counter!(HTTP_REFUSED, "reason" => why.label()).increment(1);
}

/// The Prometheus text of every metric, with the gauges of `held`; `None`
/// when the recorder is not installed.
pub(crate) fn render(held: &Held) -> Option<String> {
    let handle = INSTALLED.get()?;
    let gauges = [
        (OBJECTS_IN_MEMORY, held.objects_in_memory),
        (WORKER_INSTANCES, held.worker_instances),
        (WEBSOCKETS, held.websockets),
        (CACHE_BYTES, held.cache_bytes),
        (ALARMS_IN_MEMORY, held.alarms_in_memory),
    ];
    for (name, value) in gauges {
        metrics::gauge!(name).set(value as f64);
    }
    metrics::counter!(DISK_READS).absolute(held.disk_reads);
    metrics::counter!(MEMORY_READS).absolute(held.memory_reads);
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route (object, worker, asset, admin, health), binding and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request's head to its response's head, by route and binding"
    );
    describe_counter!(
        HTTP_REFUSED,
        "Requests the edge refused before placing them, by reason (connections, slow, too_large, body_memory, malformed, no_route)"
    );
    describe_counter!(
        EVENTS,
        "Events delivered to objects, by binding and kind (fetch, call, target, alarm, websocket)"
    );
    describe_counter!(ACTIVATIONS, "Objects activated, by binding");
    describe_histogram!(
        ACTIVATION_DURATION,
        Unit::Seconds,
        "Time an activation took (instance and constructor), by binding"
    );
    describe_counter!(
        EVICTIONS,
        "Objects that left memory, by binding and reason (idle, room)"
    );
    describe_counter!(
        RESETS,
        "Objects reset, their instance dropped, by binding and cause (trap, limit, abort, error, ...)"
    );
    describe_counter!(
        OVERLOADS,
        "Requests refused because an object's mailbox was full, by binding"
    );
    describe_histogram!(
        COMMIT_WRITE_SETS,
        "Write sets (one per object turn) in each group commit; its count is the commits"
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time a group commit took, its fsync included"
    );
    describe_histogram!(
        COMMIT_SYNC_DURATION,
        Unit::Seconds,
        "Time of a group commit spent in redb's commit: writing its pages and the fsync"
    );
    describe_counter!(COMMIT_FAILURES, "Group commits that failed");
    describe_counter!(
        ALARMS_DUE,
        "Alarms that came due and went to their object, by binding"
    );
    describe_counter!(
        ALARMS,
        "Alarm handlers that ran to an end, by binding and outcome: ok, retried (failed, set again), dropped (failed, no retry left), error (failed after setting or deleting the alarm itself)"
    );
    describe_counter!(
        OUTBOUND,
        "Outbound fetch requests, by outcome (ok, refused, limit, timeout, network, invalid)"
    );
    describe_gauge!(OBJECTS_IN_MEMORY, "Objects in memory now");
    describe_gauge!(
        WORKER_INSTANCES,
        "Entry-worker instances now, idle or running"
    );
    describe_gauge!(WEBSOCKETS, "WebSockets the objects hold now");
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes the objects' caches hold now"
    );
    describe_gauge!(ALARMS_IN_MEMORY, "Alarms the scheduler holds in memory now");
    describe_counter!(
        MEMORY_READS,
        "Key reads answered from memory: the event's own writes or the object's cache"
    );
    describe_counter!(
        DISK_READS,
        "Storage reads that went to disk: keys the event's writes and the cache did not hold, and lists"
    );
}
