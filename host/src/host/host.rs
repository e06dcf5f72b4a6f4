//! The host: a set of namespaces over one engine and one database, shut
//! down as one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::assets::Assets;
use super::builder::HostBuilder;
use super::config::Config;
use super::reload::Sources;
use crate::error::Result;
use crate::runtime::{AcceptedWebSocket, HostShared, Namespace, WorkerPool, alarm, find};
use dohost_store::Health;

#[cfg(doc)]
use crate::error::ErrorKind;
#[cfg(doc)]
use crate::settings::Settings;

/// Counters of a host's storage ([`Host::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes of storage values the objects' caches hold now (within
    /// [`Settings::cache_total`]; writes not yet durable are not counted).
    pub cache_bytes: usize,
    /// Storage reads that had to go to redb since the host started: one per
    /// key a `get` did not find in the event's writes or the cache, one per
    /// `list`.
    pub disk_reads: u64,
    /// Key reads answered from memory so far: the event's own writes or
    /// the object's cache.
    pub memory_reads: u64,
    /// Alarms the scheduler holds in memory now (at most
    /// [`Settings::alarm_window`]; the rest wait in redb).
    pub alarms_in_memory: usize,
    /// Alarm handlers that ran to an end (returned or trapped) since the
    /// host started.
    pub alarms_run: u64,
    /// Objects in memory (holding an instance) now, at most
    /// [`Settings::max_live_objects`].
    pub objects_in_memory: usize,
    /// Objects activated (instantiated and constructed) since the host
    /// started.
    pub activations: u64,
    /// Entry-worker instances now, idle or running (at most
    /// [`Settings::max_worker_instances`]).
    pub worker_instances: usize,
    /// The time those activations took, in all: creating the instance and
    /// running the class's constructor (`init`), not the wait for a slot
    /// under [`Settings::max_live_objects`].
    pub activation_time: Duration,
    /// WebSockets the objects hold now (open, or accepted and waiting for
    /// their upgrade), whether their objects are in memory or not.
    pub websockets: usize,
}

/// A running set of Durable Object namespaces with their storage.
///
/// ```no_run
/// # async fn run() -> dohost::Result<()> {
/// let host = dohost::Host::builder()
///     .data_dir("./.dohost")
///     .binding("COUNTER", "Counter", "counter.wasm")
///     .build()?;
/// let request = http::Request::get("/").body(bytes::Bytes::new()).unwrap();
/// let response = host.namespace("COUNTER")?.id_from_name("x").get().fetch(request).await?;
/// println!("{}", String::from_utf8_lossy(response.body()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) shared: Arc<HostShared>,
    pub(crate) namespaces: Arc<BTreeMap<String, Namespace>>,
    pub(crate) worker: Option<WorkerPool>,
    pub(crate) committer_stopped: Mutex<Option<oneshot::Receiver<()>>>,
    /// The alarm scheduler task was started.
    pub(crate) scheduler_started: AtomicBool,
    /// The bearer token of the admin HTTP API, if it is on.
    pub(crate) admin_token: Option<String>,
    /// `[assets]`: static files served before the worker.
    pub(crate) assets: Option<Assets>,
    /// Where the components come from, for [`Host::reload`].
    pub(crate) sources: Sources,
    /// The handles of the per-request metrics.
    pub(crate) http_counts: crate::metrics::HttpCounts,
    /// The task answering the other nodes of the cluster, if this host is
    /// a node of one.
    pub(crate) cluster_listener: Mutex<Option<super::cluster::Listening>>,
}

impl HostInner {
    /// Starts the alarm scheduler on the current tokio runtime, once. A host
    /// built outside a runtime starts it when first used inside one.
    pub(crate) fn start_scheduler(&self) {
        if self.scheduler_started.load(Ordering::Relaxed)
            || self.shared.closed.load(Ordering::SeqCst)
            || tokio::runtime::Handle::try_current().is_err()
            || self.scheduler_started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let by_number = self
            .namespaces
            .values()
            .map(|n| (n.number(), n.clone()))
            .collect();
        self.shared.actors.spawn(alarm::run(
            self.shared.schedule.clone(),
            self.shared.clone(),
            by_number,
        ));
    }

    /// Refuses new events and closes every live object's mailbox; returns
    /// a future that, once the objects have finished what they accepted,
    /// commits the rest, stops the committer and releases the database.
    fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.schedule.stop();
        for namespace in self.namespaces.values() {
            namespace.close_live();
        }
        self.shared.actors.close();
        let shared = self.shared.clone();
        let stopped = self
            .committer_stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let listener = self
            .cluster_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        async move {
            shared
                .sockets
                .close_all(1001, "the server is shutting down")
                .await;
            shared.actors.wait().await;
            shared.store.close();
            if let Some(stopped) = stopped {
                let _ = stopped.await;
            }
            // Everything is committed: hand the shards over at once.
            if let Some(node) = &shared.cluster {
                if let Err(e) = node.membership.leave_async().await {
                    tracing::warn!(
                        "cluster: could not release the leases ({e}); they expire by themselves"
                    );
                }
                // Keep answering the other nodes ("not here") until each
                // has beaten and knows the new owners: a connection closed
                // while one sends on it would leave that event in doubt.
                node.linger().await;
            }
            if let Some(listener) = listener {
                listener.stop().await;
            }
        }
    }
}

impl Drop for HostInner {
    /// The last handle is gone: shut down in the background (or at once
    /// when there is no runtime, so no object can be running).
    fn drop(&mut self) {
        let closing = self.close();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(closing);
            }
            Err(_) => self.shared.store.close(),
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field(
                "namespaces",
                &self.inner.namespaces.keys().collect::<Vec<_>>(),
            )
            .field("worker", &self.inner.worker.is_some())
            .finish()
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Builds a host from a validated configuration, keeping its data in
    /// `data_dir`. Rust crate components must be built first
    /// ([`crate::build::build_config`]).
    ///
    /// # Errors
    ///
    /// As [`HostBuilder::build`].
    pub fn from_config(config: &Config, data_dir: impl Into<PathBuf>) -> Result<Host> {
        HostBuilder::default()
            .config(config)
            .data_dir(data_dir)
            .build()
    }

    /// The namespace bound as `binding`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when no binding has that name.
    pub fn namespace(&self, binding: &str) -> Result<Namespace> {
        self.inner.start_scheduler();
        find(&self.inner.namespaces, binding)
    }

    /// Shuts the host down: new events are refused
    /// ([`ErrorKind::ShutDown`]), live objects finish the events they
    /// accepted, every write made is committed, and when this returns the
    /// database is closed, so the data directory can be opened again.
    /// Clones of this `Host`, namespaces and stubs stop working too.
    /// Dropping the last `Host` handle does the same in the background.
    pub async fn shutdown(self) {
        self.inner.close().await;
    }

    /// Whether the storage layer can write: after a failed commit (a full
    /// disk) it fails writes fast and retries, and reads go on;
    /// [`Health::Failed`] means it cannot go on and the process should be
    /// restarted (`dohost serve` exits).
    pub fn health(&self) -> Health {
        self.inner.shared.store.health()
    }

    /// Whether [`Host::shutdown`] has begun: new events are refused.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shared.closed.load(Ordering::SeqCst)
    }

    /// Runs the WebSocket a 101 response handed over ([`AcceptedWebSocket`]
    /// in its extensions) on `io`, the client's connection once upgraded
    /// (the server has sent the 101): its messages become events of the
    /// object that accepted it, and what the object sends goes out on it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] if the socket is no longer waiting for its
    /// upgrade (its object was reset), [`ErrorKind::BadRequest`] if it runs
    /// already.
    pub fn accept_websocket<S>(&self, accepted: AcceptedWebSocket, io: S) -> Result<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = &self.inner.shared;
        shared.sockets.open(shared.clone(), accepted.0, io)
    }

    /// Forgets the WebSocket a 101 response handed over when the upgrade
    /// failed (the client went away), so its object no longer lists it.
    pub fn abandon_websocket(&self, accepted: AcceptedWebSocket) {
        self.inner.shared.sockets.forget(accepted.0);
    }

    /// Counters describing the host's storage right now.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        Stats {
            cache_bytes: shared.cache_budget.used(),
            worker_instances: self.inner.worker.as_ref().map_or(0, WorkerPool::instances),
            disk_reads: shared.store.disk_reads(),
            memory_reads: shared.store.memory_reads(),
            alarms_in_memory: shared.schedule.in_memory(),
            alarms_run: shared.alarms_run.load(Ordering::Relaxed),
            objects_in_memory: shared.residency.count(),
            websockets: shared.sockets.count(),
            activations: shared.activations.load(Ordering::Relaxed),
            activation_time: Duration::from_nanos(shared.activation_nanos.load(Ordering::Relaxed)),
        }
    }
}
