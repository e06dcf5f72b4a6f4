//! The host: a set of namespaces over one engine and one database, and the
//! entry point every request goes through ([`Host::fetch`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::alarm::{
    AlarmChange, DEFAULT_ALARM_MAX_RETRIES, DEFAULT_ALARM_RETRY_DELAY, SCHEDULE_WINDOW, Schedule,
};
use crate::cache::CacheBudget;
use crate::config::{BindingConfig, ComponentSource, Config, Migration};
use crate::engine::{EngineLimits, Runtime};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::Namespace;
use crate::object::{DEFAULT_IDLE_TIMEOUT, ObjectState};
use crate::sql::DEFAULT_MAX_SQL_DATABASE_BYTES;
use crate::storage::{CommitHook, Store};
use crate::stub::{from_wit_response, to_wit_request};
use crate::worker::WorkerPool;

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".dohost";

/// How many objects may be live (in memory) at once by default. Sizes the
/// instance pool; idle objects leave after the idle timeout, and the least
/// recently used idle object leaves when another must activate at the cap.
pub const DEFAULT_MAX_LIVE_OBJECTS: u32 = 10_000;

/// The most events that may wait in one object's mailbox by default; more
/// are refused as overloaded (HTTP 503) instead of growing memory.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// How long a call to an object (a request, an RPC call) may take by
/// default, waiting in the mailbox included, before the caller gets a
/// timeout error. It also ends deadlocks between call chains: two objects
/// that call each other from different chains both time out.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The most CPU time one event may use by default (Cloudflare's default).
pub const DEFAULT_CPU_TIME_PER_EVENT: Duration = Duration::from_secs(30);

/// The most linear memory one instance may use by default.
pub const DEFAULT_MEMORY_PER_OBJECT: usize = 128 << 20;

/// How many bytes of cached values one object may keep by default.
pub const DEFAULT_CACHE_PER_OBJECT: usize = 8 << 20;

/// How many bytes of cached values all objects together may keep by
/// default.
pub const DEFAULT_CACHE_TOTAL: usize = 512 << 20;

/// Tunable limits of a host. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Objects in memory at once ([`DEFAULT_MAX_LIVE_OBJECTS`]); beyond it
    /// the least recently used idle object leaves.
    pub max_live_objects: u32,
    /// Time without events after which an object leaves memory
    /// ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Events waiting per object ([`DEFAULT_MAILBOX_CAPACITY`]).
    pub mailbox_capacity: usize,
    /// How long a call to an object may take ([`DEFAULT_CALL_TIMEOUT`]).
    pub call_timeout: Duration,
    /// CPU time per event ([`DEFAULT_CPU_TIME_PER_EVENT`]).
    pub cpu_time_per_event: Duration,
    /// Linear memory per instance ([`DEFAULT_MEMORY_PER_OBJECT`]).
    pub memory_per_object: usize,
    /// Bytes of cached storage values per object
    /// ([`DEFAULT_CACHE_PER_OBJECT`]); writes not yet durable are held
    /// beyond it until they are.
    pub cache_per_object: usize,
    /// Bytes of cached storage values of all objects together
    /// ([`DEFAULT_CACHE_TOTAL`]).
    pub cache_total: usize,
    /// The largest SQL database of one object, in bytes
    /// ([`DEFAULT_MAX_SQL_DATABASE_BYTES`]).
    pub max_sql_database_bytes: u64,
    /// The delay before the first retry of a failed alarm; each further
    /// retry waits twice as long ([`DEFAULT_ALARM_RETRY_DELAY`]).
    pub alarm_retry_delay: Duration,
    /// How many times a failed alarm is retried before it is dropped
    /// ([`DEFAULT_ALARM_MAX_RETRIES`]).
    pub alarm_max_retries: u32,
    /// How many of the earliest alarms the scheduler keeps in memory
    /// ([`crate::SCHEDULE_WINDOW`]); the rest wait in redb.
    pub alarm_window: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_live_objects: DEFAULT_MAX_LIVE_OBJECTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            cpu_time_per_event: DEFAULT_CPU_TIME_PER_EVENT,
            memory_per_object: DEFAULT_MEMORY_PER_OBJECT,
            cache_per_object: DEFAULT_CACHE_PER_OBJECT,
            cache_total: DEFAULT_CACHE_TOTAL,
            max_sql_database_bytes: DEFAULT_MAX_SQL_DATABASE_BYTES,
            alarm_retry_delay: DEFAULT_ALARM_RETRY_DELAY,
            alarm_max_retries: DEFAULT_ALARM_MAX_RETRIES,
            alarm_window: SCHEDULE_WINDOW,
        }
    }
}

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
    /// The time those activations took, in all: creating the instance and
    /// running the class's constructor (`init`), not the wait for a slot
    /// under [`Settings::max_live_objects`].
    pub activation_time: std::time::Duration,
}

/// What every namespace and worker of a host shares.
pub(crate) struct HostShared {
    pub(crate) runtime: Runtime,
    pub(crate) store: Store,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) settings: Settings,
    /// The bound on all objects' cached values.
    pub(crate) cache_budget: Arc<CacheBudget>,
    /// The objects in memory and the cap on them.
    pub(crate) residency: crate::residency::Residency,
    /// Set once the host shuts down: no new events are accepted.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// Every object actor and the alarm scheduler, so shutdown can wait
    /// for them.
    pub(crate) actors: tokio_util::task::TaskTracker,
    /// The earliest alarms ([`crate::alarm`]).
    pub(crate) schedule: Arc<Schedule>,
    /// Alarm handlers that ran to an end ([`Stats::alarms_run`]).
    pub(crate) alarms_run: std::sync::atomic::AtomicU64,
    /// Successful activations and their total time in nanoseconds
    /// ([`Stats::activations`], [`Stats::activation_time`]).
    pub(crate) activations: std::sync::atomic::AtomicU64,
    pub(crate) activation_nanos: std::sync::atomic::AtomicU64,
    /// Every namespace, for objects' calls. Weak: the namespaces hold this
    /// shared state, and the host owns them.
    pub(crate) namespaces: std::sync::OnceLock<std::sync::Weak<BTreeMap<String, Namespace>>>,
}

impl HostShared {
    /// The namespace bound as `binding`, while the host runs.
    pub(crate) fn namespace(&self, binding: &str) -> Result<Namespace> {
        let namespaces = self
            .namespaces
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| {
                Error::new(ErrorKind::ShutDown, "the host is shut down; no more calls")
            })?;
        crate::calls::lookup(&namespaces, binding)
    }

    pub(crate) fn vars_list(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
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
    committer_stopped: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// The alarm scheduler task was started.
    scheduler_started: std::sync::atomic::AtomicBool,
    /// The bearer token of the admin HTTP API, if it is on.
    admin_token: Option<String>,
    /// Where the components come from, for [`Host::reload`].
    pub(crate) sources: crate::code::Sources,
}

impl HostInner {
    /// Starts the alarm scheduler on the current tokio runtime, once. A host
    /// built outside a runtime starts it when first used inside one.
    fn start_scheduler(&self) {
        use std::sync::atomic::Ordering;
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
        self.shared.actors.spawn(crate::alarm::run(
            self.shared.schedule.clone(),
            self.shared.clone(),
            by_number,
        ));
    }

    /// Refuses new events and closes every live object's mailbox; returns
    /// a future that, once the objects have finished what they accepted,
    /// commits the rest, stops the committer and releases the database.
    fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
        async move {
            shared.actors.wait().await;
            shared.store.close();
            if let Some(stopped) = stopped {
                let _ = stopped.await;
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
        crate::calls::lookup(&self.inner.namespaces, binding)
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

    /// Counters describing the host's storage right now.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        Stats {
            cache_bytes: self.inner.shared.cache_budget.used(),
            disk_reads: self.inner.shared.store.disk_reads(),
            alarms_in_memory: self.inner.shared.schedule.in_memory(),
            alarms_run: self
                .inner
                .shared
                .alarms_run
                .load(std::sync::atomic::Ordering::Relaxed),
            objects_in_memory: self.inner.shared.residency.count(),
            activations: shared
                .activations
                .load(std::sync::atomic::Ordering::Relaxed),
            activation_time: std::time::Duration::from_nanos(
                shared
                    .activation_nanos
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }

    /// The names of all bindings, comma-separated.
    fn binding_names(&self) -> String {
        self.inner
            .namespaces
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Serves one HTTP request as `dohost serve` does: through the entry
    /// worker when one is configured, otherwise through the default router,
    /// which sends `/<BINDING>/<object-name>/<rest>` to the object named
    /// `<object-name>` (by `id_from_name`) with the path `/<rest>`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for a path the router cannot place, and every
    /// error of [`crate::Stub::fetch`].
    pub async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        self.inner.start_scheduler();
        if let Some(token) = &self.inner.admin_token
            && request.uri().path().starts_with(crate::admin::HTTP_PREFIX)
        {
            return Ok(crate::admin::serve_http(self, token, request).await);
        }
        if let Some(worker) = &self.inner.worker {
            let response = worker.fetch(to_wit_request(request)).await?;
            return from_wit_response(response);
        }
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let mut segments = path.trim_start_matches('/').splitn(3, '/');
        let binding = segments.next().unwrap_or_default();
        let name = segments.next().unwrap_or_default();
        let rest = segments.next().unwrap_or_default();
        if binding.is_empty() || name.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no route for {path:?}: request /<BINDING>/<object-name>/<path>, with BINDING one of: {}",
                    self.binding_names()
                ),
            ));
        }
        let namespace = self.namespace(binding)?;
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("object name {name:?} is not valid percent-encoded UTF-8"),
                )
            })?;
        let mut rewritten = format!("/{rest}");
        if let Some(query) = parts.uri.query() {
            rewritten.push('?');
            rewritten.push_str(query);
        }
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = Some(rewritten.parse().map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("invalid path {rewritten:?}: {e}"),
            )
        })?);
        parts.uri = http::Uri::from_parts(uri)
            .map_err(|e| Error::new(ErrorKind::BadRequest, format!("invalid URI: {e}")))?;
        let request = http::Request::from_parts(parts, body);
        namespace.id_from_name(&name).get().fetch(request).await
    }
}

/// Builds a [`Host`] from a configuration or piece by piece.
#[derive(Default)]
pub struct HostBuilder {
    data_dir: Option<PathBuf>,
    bindings: Vec<BindingConfig>,
    main: Option<ComponentSource>,
    vars: BTreeMap<String, String>,
    settings: Settings,
    commit_hook: Option<CommitHook>,
    migrations: Vec<Migration>,
    /// The configuration file, to name it in errors.
    source: Option<PathBuf>,
    admin_token: Option<String>,
}

impl HostBuilder {
    /// Takes bindings, the entry worker, vars and `[limits]` from `config`
    /// (replacing any set before; a later [`HostBuilder::settings`] replaces
    /// the limits again).
    pub fn config(mut self, config: &Config) -> Self {
        self.bindings = config.bindings.clone();
        self.main = config.main.clone();
        self.vars = config.vars.clone();
        self.migrations = config.migrations.clone();
        self.source = config.path.clone();
        self.admin_token = config.admin_token.clone();
        let settings = &mut self.settings;
        if let Some(budget) = config.cpu_time_per_event {
            settings.cpu_time_per_event = budget;
        }
        if let Some(bytes) = config.memory_per_object {
            settings.memory_per_object = bytes;
        }
        if let Some(idle) = config.idle_timeout {
            settings.idle_timeout = idle;
        }
        if let Some(live) = config.max_live_objects {
            settings.max_live_objects = live;
        }
        if let Some(bytes) = config.max_sql_database_bytes {
            self.settings.max_sql_database_bytes = bytes;
        }
        if let Some(capacity) = config.mailbox_capacity {
            self.settings.mailbox_capacity = capacity;
        }
        if let Some(timeout) = config.call_timeout {
            self.settings.call_timeout = timeout;
        }
        if let Some(delay) = config.alarm_retry_delay {
            self.settings.alarm_retry_delay = delay;
        }
        if let Some(retries) = config.alarm_max_retries {
            self.settings.alarm_max_retries = retries;
        }
        self
    }

    /// Where the database and the compiled-component cache live
    /// (default [`DEFAULT_DATA_DIR`]).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a namespace `binding` whose objects run `class` from the
    /// component file at `component`.
    pub fn binding(self, binding: &str, class: &str, component: impl AsRef<Path>) -> Self {
        self.binding_source(
            binding,
            class,
            ComponentSource::File(component.as_ref().to_path_buf()),
        )
    }

    /// Adds a namespace whose component comes from `source` (e.g. bytes).
    pub fn binding_source(mut self, binding: &str, class: &str, source: ComponentSource) -> Self {
        self.bindings.push(BindingConfig {
            name: binding.to_owned(),
            class_name: class.to_owned(),
            component: source,
        });
        self
    }

    /// Adds a migration, applied after those added before (see
    /// [`Migration`]); a [`HostBuilder::config`] replaces them.
    pub fn migration(mut self, migration: Migration) -> Self {
        self.migrations.push(migration);
        self
    }

    /// Turns on the admin HTTP API under `/_dohost/` of [`Host::fetch`]
    /// (and so of `dohost serve`), for requests with
    /// `Authorization: Bearer <token>`.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// Sets the stateless entry worker.
    pub fn worker(mut self, source: ComponentSource) -> Self {
        self.main = Some(source);
        self
    }

    /// Sets one `[vars]` variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Replaces the limits.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Calls `hook` from the committer thread before and after each group
    /// commit. For tests that observe the output gate; a slow hook slows
    /// every write.
    #[doc(hidden)]
    pub fn commit_hook(mut self, hook: CommitHook) -> Self {
        self.commit_hook = Some(hook);
        self
    }

    /// Opens the database, compiles (or loads from cache) every component and
    /// returns the host. Must be called inside a tokio runtime's context only
    /// for serving; building itself does not need one. Alarms are delivered
    /// from then on when built inside a runtime, otherwise from the first
    /// [`Host::namespace`] or [`Host::fetch`] inside one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for duplicate or missing bindings, a class its
    /// component does not export, or migrations and bindings that do not
    /// fit the data directory (see [`Migration`]),
    /// [`ErrorKind::Storage`] if the database cannot be opened (e.g. another
    /// process has it open), [`ErrorKind::Component`] if a component cannot
    /// be read, compiled or linked.
    pub fn build(self) -> Result<Host> {
        if self.bindings.is_empty() {
            return Err(Error::config(
                "the host has no Durable Object bindings; add at least one",
            ));
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            Error::io(
                format!("cannot create data directory {}", data_dir.display()),
                e,
            )
        })?;
        let runtime = Runtime::new(
            &EngineLimits {
                max_live_objects: self.settings.max_live_objects,
                memory_per_instance: self.settings.memory_per_object,
            },
            data_dir.join("cache"),
        )?;
        let mut object_linker = runtime.linker::<ObjectState>()?;
        crate::bindings::object::DurableObject::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut object_linker,
            |s| s,
        )
        .map_err(|e| Error::new(ErrorKind::Component, format!("linking the object contract: {e:#}")))?;

        let schedule = Schedule::new(self.settings.alarm_window);
        let listener = {
            let schedule = schedule.clone();
            Arc::new(move |changes: &[AlarmChange]| schedule.apply(changes))
        };
        let (store, committer_stopped) =
            Store::open(&data_dir.join("dohost.redb"), self.commit_hook, listener)?;
        let shared = Arc::new(HostShared {
            runtime,
            store,
            vars: self.vars,
            cache_budget: CacheBudget::new(
                self.settings.cache_per_object,
                self.settings.cache_total,
            ),
            residency: crate::residency::Residency::new(self.settings.max_live_objects),
            settings: self.settings,
            closed: std::sync::atomic::AtomicBool::new(false),
            actors: tokio_util::task::TaskTracker::new(),
            schedule,
            alarms_run: std::sync::atomic::AtomicU64::new(0),
            activations: std::sync::atomic::AtomicU64::new(0),
            activation_nanos: std::sync::atomic::AtomicU64::new(0),
            namespaces: std::sync::OnceLock::new(),
        });
        // From here on the database is open: a failure must release it.
        let assembled = (|| {
            let mut pres = Vec::new();
            for b in &self.bindings {
                if pres.iter().any(|(name, _, _, _)| name == &b.name) {
                    return Err(Error::config(format!(
                        "binding {} is defined twice",
                        b.name
                    )));
                }
                let (pre, exports) = crate::code::load_binding(&shared, &object_linker, b)?;
                pres.push((b.name.clone(), b.class_name.clone(), pre, exports));
            }
            let source = self.source.as_ref().map_or_else(
                || "the host's bindings".to_owned(),
                |p| p.display().to_string(),
            );
            let registered: Vec<crate::migrations::Binding<'_>> = pres
                .iter()
                .map(|(name, class, _, exports)| crate::migrations::Binding {
                    name,
                    class,
                    exports,
                })
                .collect();
            let classes =
                crate::migrations::prepare(&shared.store, &self.migrations, &registered, &source)?;
            let mut namespaces = BTreeMap::new();
            for (binding, class, pre, _) in pres {
                let ns = classes[&class];
                namespaces.insert(
                    binding.clone(),
                    Namespace::new(binding, class, (ns.number, ns.secret), pre, shared.clone()),
                );
            }
            let worker_pre = match &self.main {
                None => None,
                Some(source) => Some(crate::code::load_worker(&shared, source)?),
            };
            Ok((namespaces, worker_pre))
        })();
        let (namespaces, worker_pre) = match assembled {
            Ok(parts) => parts,
            Err(e) => {
                shared.store.close();
                let _ = block_on(async {
                    let _ = committer_stopped.await;
                    Ok(())
                });
                return Err(e);
            }
        };

        let namespaces = Arc::new(namespaces);
        let _ = shared.namespaces.set(Arc::downgrade(&namespaces));
        let worker = worker_pre.map(|pre| WorkerPool::new(pre, shared.clone(), namespaces.clone()));
        let sources = crate::code::Sources {
            bindings: self.bindings,
            main: self.main,
            object_linker,
        };
        let host = Host {
            inner: Arc::new(HostInner {
                shared,
                namespaces,
                worker,
                committer_stopped: std::sync::Mutex::new(Some(committer_stopped)),
                scheduler_started: std::sync::atomic::AtomicBool::new(false),
                admin_token: self.admin_token,
                sources,
            }),
        };
        host.inner.start_scheduler();
        Ok(host)
    }
}

/// Runs `future` to its end on a thread of its own, so building a host
/// works both inside and outside an async runtime.
pub(crate) fn block_on<T: Send>(
    future: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| Error::io("cannot start a runtime to load components", e))?
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Component,
                    "loading a component panicked",
                ))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits_reach_the_settings() {
        let mut config = Config {
            max_sql_database_bytes: Some(65536),
            mailbox_capacity: Some(3),
            call_timeout: Some(Duration::from_millis(7)),
            alarm_retry_delay: Some(Duration::from_millis(5)),
            alarm_max_retries: Some(1),
            cpu_time_per_event: Some(Duration::from_millis(9)),
            memory_per_object: Some(8 << 20),
            idle_timeout: Some(Duration::from_millis(11)),
            max_live_objects: Some(12),
            ..Config::default()
        };
        let builder = Host::builder().config(&config);
        assert_eq!(builder.settings.max_sql_database_bytes, 65536);
        assert_eq!(builder.settings.alarm_retry_delay, Duration::from_millis(5));
        assert_eq!(builder.settings.alarm_max_retries, 1);
        assert_eq!(builder.settings.mailbox_capacity, 3);
        assert_eq!(builder.settings.call_timeout, Duration::from_millis(7));
        assert_eq!(
            builder.settings.cpu_time_per_event,
            Duration::from_millis(9)
        );
        assert_eq!(builder.settings.memory_per_object, 8 << 20);
        assert_eq!(builder.settings.idle_timeout, Duration::from_millis(11));
        assert_eq!(builder.settings.max_live_objects, 12);
        config.max_sql_database_bytes = None;
        let builder = Host::builder().config(&config);
        assert_eq!(
            builder.settings.max_sql_database_bytes,
            DEFAULT_MAX_SQL_DATABASE_BYTES
        );
    }
}
