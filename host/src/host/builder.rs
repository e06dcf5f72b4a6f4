//! Building a host: from a configuration or piece by piece, wiring the
//! store, the runtime and the imports together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::assets::{Assets, AssetsConfig};
use super::config::{BindingConfig, Config};
use super::host::{Host, HostInner};
use super::link;
use super::reload::{Components, Sources};
use crate::error::{Error, Result};
use crate::runtime::alarm::Schedule;
use crate::runtime::{
    ComponentSource, EngineLimits, HostShared, Namespace, Runtime, Vars, WorkerPool, block_on,
    load_binding, load_worker, outbound::Outbound,
};
use crate::settings::{ClusterSettings, DEFAULT_DATA_DIR, Settings};
use dohost_store::{
    AlarmChange, Backend, Binding, CommitHook, Migration, PostgresBackend, RedbBackend, Store,
};

#[cfg(doc)]
use crate::error::ErrorKind;

/// Builds a [`Host`] from a configuration or piece by piece.
#[derive(Default)]
pub struct HostBuilder {
    data_dir: Option<PathBuf>,
    bindings: Vec<BindingConfig>,
    main: Option<ComponentSource>,
    vars: BTreeMap<String, String>,
    json_vars: std::collections::BTreeSet<String>,
    settings: Settings,
    commit_hook: Option<CommitHook>,
    migrations: Vec<Migration>,
    /// The configuration file, to name it in errors.
    source: Option<PathBuf>,
    admin_token: Option<String>,
    assets: Option<AssetsConfig>,
    unsupported_bindings: BTreeMap<String, String>,
    /// A PostgreSQL database to keep state in instead of the data
    /// directory's redb file.
    postgres: Option<String>,
    /// The cluster this host is a node of.
    cluster: Option<ClusterSettings>,
}

/// Instance slots beyond the live objects and the workers, for loading
/// components (each is instantiated once to list its classes).
const LOADING_SLOTS: u32 = 8;

impl HostBuilder {
    /// Takes bindings, the entry worker, vars and `[limits]` from `config`
    /// (replacing any set before; a later [`HostBuilder::settings`] replaces
    /// the limits again).
    pub fn config(mut self, config: &Config) -> Self {
        self.bindings = config.bindings.clone();
        self.main = config.main.clone();
        self.vars = config.vars.clone();
        self.json_vars = config.json_vars.clone();
        self.migrations = config.migrations.clone();
        self.source = config.path.clone();
        self.admin_token = config.admin_token.clone();
        self.assets = config.assets.clone();
        self.unsupported_bindings = config.unsupported_bindings.clone();
        self.cluster = config.cluster.clone();
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
        if let Some(bytes) = config.write_set_bytes {
            settings.write_set_bytes = bytes;
        }
        if let Some(total) = config.total_memory_bytes {
            settings.total_memory_bytes = total;
        }
        if let Some(wall) = config.wall_time_per_event {
            settings.wall_time_per_event = wall;
        }
        if let Some(workers) = config.max_worker_instances {
            settings.max_worker_instances = workers;
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
        self.settings.outbound = config.outbound.clone();
        self.settings.websockets = config.websockets.clone();
        if let Some(retries) = config.alarm_max_retries {
            self.settings.alarm_max_retries = retries;
        }
        self.settings.history = config.history;
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

    /// Serves the files of a folder before the worker (`[assets]`).
    pub fn assets(mut self, assets: AssetsConfig) -> Self {
        self.assets = Some(assets);
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

    /// Keeps every object's state in the PostgreSQL database at `url`
    /// (`postgres://USER@HOST:PORT/DATABASE`) instead of the data
    /// directory's redb file, which still holds the compiled-component
    /// cache. dohost creates its schema there (`dohost`) on first use.
    pub fn postgres(mut self, url: &str) -> Self {
        self.postgres = Some(url.to_owned());
        self
    }

    /// Runs the host as one node of a cluster (see docs/cluster.md): its
    /// state is in the cluster's PostgreSQL database, it owns the shards
    /// its leases give it, forwards events for other objects to their
    /// owners, and listens on `settings.advertise` for the events other
    /// nodes forward. [`HostBuilder::build`] must then run inside a tokio
    /// runtime.
    pub fn cluster(mut self, settings: ClusterSettings) -> Self {
        self.cluster = Some(settings);
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
        crate::runtime::private_dir(&data_dir).map_err(|e| {
            Error::io(
                format!("cannot create data directory {}", data_dir.display()),
                e,
            )
        })?;
        let runtime = Runtime::new(
            &EngineLimits {
                total_memory: self.settings.total_memory_bytes,
                max_live_objects: self.settings.max_live_objects,
                // A few slots besides, for the instances that tell which
                // classes a component exports when it is loaded and for
                // instances made ahead of the objects that will take them.
                worker_slots: LOADING_SLOTS
                    + crate::runtime::READY_SLOTS
                    + if self.main.is_some() {
                        self.settings.max_worker_instances
                    } else {
                        0
                    },
                memory_per_instance: self.settings.memory_per_object,
            },
            data_dir.join("cache"),
        )?;
        let object_linker = link::object_linker(&runtime)?;
        let worker_linker = link::worker_linker(&runtime)?;
        let outbound = Outbound::new(self.settings.outbound.clone()).map_err(Error::config)?;
        let mut settings = self.settings;
        settings.sqlite_classes = dohost_store::sqlite_classes(&self.migrations);

        let schedule = Schedule::new(settings.alarm_window);
        // The committer tells the scheduler of every committed alarm change.
        let listener = {
            let schedule = schedule.clone();
            Arc::new(move |changes: &[AlarmChange]| schedule.apply(changes))
        };
        let mut cluster_listener = None;
        let (backend, cluster): (Arc<dyn Backend>, _) = match (&self.cluster, &self.postgres) {
            (Some(settings), _) => {
                cluster_listener = Some(super::cluster::bind(settings.advertise)?);
                let backend = PostgresBackend::connect(&settings.database)?;
                let node = super::cluster::join(&backend, settings)?;
                (Arc::new(backend), Some(node))
            }
            (None, Some(url)) => (Arc::new(PostgresBackend::connect(url)?), None),
            (None, None) => (
                Arc::new(RedbBackend::open(&data_dir.join("dohost.redb"))?),
                None,
            ),
        };
        let (store, committer_stopped) = Store::start(backend, self.commit_hook, listener)?;
        store.enable_history(settings.history)?;
        let memory = runtime.memory.clone();
        let shared = Arc::new(HostShared::new(
            runtime,
            Arc::new(store),
            Vars::new(
                self.vars,
                self.json_vars,
                self.unsupported_bindings,
                first_binding_of_each_class(&self.bindings),
            ),
            settings,
            schedule,
            outbound,
            cluster,
        ));
        // A memory growth past the instances' budget asks idle objects to
        // leave first.
        let weak = Arc::downgrade(&shared);
        memory.set_evictor(move || weak.upgrade().is_some_and(|s| s.residency.evict_one()));
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
                let (pre, exports) = load_binding(&shared, &object_linker, &b.name, &b.component)?;
                pres.push((b.name.clone(), b.class_name.clone(), pre, exports));
            }
            let source = self.source.as_ref().map_or_else(
                || "the host's bindings".to_owned(),
                |p| p.display().to_string(),
            );
            let registered: Vec<Binding<'_>> = pres
                .iter()
                .map(|(name, class, _, exports)| Binding {
                    name,
                    class,
                    exports,
                })
                .collect();
            let classes =
                dohost_store::prepare(&shared.store, &self.migrations, &registered, &source)?;
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
                Some(source) => Some(load_worker(&shared, &worker_linker, source)?),
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
        super::cluster::follow_moves(&shared, &namespaces);
        let worker = worker_pre.map(|pre| WorkerPool::new(pre, shared.clone()));
        let sources = Sources {
            components: std::sync::Mutex::new(Components {
                bindings: self.bindings,
                main: self.main,
            }),
            object_linker,
            worker_linker,
        };
        let host = Host {
            inner: Arc::new(HostInner {
                shared,
                namespaces,
                worker,
                committer_stopped: Mutex::new(Some(committer_stopped)),
                scheduler_started: AtomicBool::new(false),
                admin_token: self.admin_token,
                assets: self.assets.map(Assets::new),
                sources,
                http_counts: crate::metrics::HttpCounts::default(),
                cluster_listener: Mutex::new(None),
            }),
        };
        if let Some(listener) = cluster_listener {
            let task = super::cluster::listen(listener, Arc::downgrade(&host.inner));
            *host
                .inner
                .cluster_listener
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        host.inner.start_scheduler();
        Ok(host)
    }
}

/// Each class bound, with the first of its bindings (`ctx.exports`).
fn first_binding_of_each_class(bindings: &[BindingConfig]) -> BTreeMap<String, String> {
    let mut classes = BTreeMap::new();
    for binding in bindings {
        classes
            .entry(binding.class_name.clone())
            .or_insert_with(|| binding.name.clone());
    }
    classes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::DEFAULT_MAX_SQL_DATABASE_BYTES;

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
