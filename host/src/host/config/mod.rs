//! `dohost.toml`: the application's configuration, read like wrangler.toml;
//! wrangler's own `wrangler.toml`, `wrangler.jsonc` and `wrangler.json` are
//! read too, with a warning for each key dohost does not use
//! ([`wrangler`]).
//!
//! ```toml
//! name = "counter"
//! main = "worker"                      # optional stateless entry worker
//! [[durable_objects.bindings]]
//! name = "COUNTER"                     # the binding, as in env.COUNTER
//! class_name = "Counter"               # the class the component exports
//! component = "counter"                # a .wasm component, a Rust guest crate dir or a
//!                                      # JavaScript/TypeScript module; by default `main`
//! [vars]
//! GREETING = "hello"
//! [assets]                             # static files, served before the worker
//! directory = "./dist"
//! not_found_handling = "single-page-application"  # or "404-page", "none"
//! html_handling = "auto-trailing-slash"            # or "force-trailing-slash", "drop-trailing-slash", "none"
//! run_worker_first = ["/api/*"]        # or true: these paths go to the worker first
//! [[migrations]]                       # applied once each, in order
//! tag = "v1"
//! new_sqlite_classes = ["Counter"]     # or new_classes
//! [[migrations]]
//! tag = "v2"
//! renamed_classes = [{ from = "Counter", to = "AdvancedCounter" }]
//! deleted_classes = ["OldThing"]       # its objects' storage and alarms go
//! [limits]
//! sql_database_bytes = 1_000_000_000  # per object (default 10 GB)
//! mailbox_capacity = 1024              # events waiting per object; more get 503
//! call_timeout_ms = 60000              # a call to an object gives up after this
//! cpu_ms = 30000                       # CPU time per event
//! wall_ms = 120000                     # wall-clock time per event
//! memory_bytes = 134217728             # linear memory per object (128 MiB)
//! total_memory_bytes = 12884901888     # of all objects (default: RAM / 2); idle ones leave first
//! write_set_bytes = 134217728          # one event's KV writes, and its SQL pages
//! idle_timeout_ms = 10000              # an object without events leaves memory
//! max_live_objects = 10000             # then the least recently used idle one leaves
//! max_worker_instances = 256           # entry-worker instances; more requests wait
//! [admin]
//! token = "a long random secret"       # enables /_dohost/ (Authorization: Bearer ...)
//! [storage]
//! history = "7d"                       # keep every commit's undo this long: restore any object
//!                                      # to any moment since (bookmarks, `dohost objects restore`); off by default
//! history_max_bytes = 10_000_000_000   # and prune the oldest past this size
//! [alarms]
//! retry_delay_ms = 2000                # first retry of a failed alarm
//! max_retries = 6                      # then it is dropped
//! [server]                             # how `dohost serve` treats its clients
//! header_timeout_ms = 10000            # to send a request's head
//! idle_timeout_ms = 60000              # a connection with nothing moving is closed
//! body_timeout_ms = 10000              # a body's grace time, then...
//! min_body_rate = 16384                # ...it must arrive at this many bytes/s
//! max_request_body_bytes = 104857600   # larger bodies get 413
//! body_memory_bytes = 3221225472       # all bodies in memory (default: RAM / 8); then 503
//! max_connections = 10000              # then the oldest idle connection is closed
//! worker_threads = 4                   # threads for connections and objects (default: 2 x cores, at least 4)
//! debug_errors = false                 # whole errors (backtraces) in responses
//! metrics_listen = "127.0.0.1:9090"    # also serve GET /metrics here, without the admin token
//! [observability]
//! otlp_endpoint = "http://127.0.0.1:4318"  # export the event spans over OTLP/HTTP (off by default)
//! [outbound]                           # fetch() from objects and workers
//! allow = ["127.0.0.1:8080", "*.internal.example"]  # beyond the default: public addresses only
//! deny = ["ads.example.com"]           # refused even if public; allow beats deny
//! timeout_ms = 30000                   # per request, its body included
//! max_response_bytes = 33554432        # per response body
//! max_subrequests = 1000               # fetches and object calls per event
//! max_connections = 6                  # fetches of one event in flight; more wait
//! [cluster]                            # run as one node of a cluster sharing PostgreSQL (docs/cluster.md)
//! database = "postgres://dohost@127.0.0.1:5432/dohost"
//! node = "n1"                          # unique in the cluster
//! advertise = "127.0.0.1:9101"         # where the other nodes reach this one (it listens there)
//! secret = "a long shared secret"      # the same on every node; authenticates the nodes' requests
//! shards = 256                         # chosen when the cluster is created
//! lease_ms = 10000                     # a dead node's objects move after this long
//! [websockets]                         # sockets objects accept (Cloudflare's limits)
//! max_per_object = 32768               # more accepts fail
//! max_message_bytes = 33554432         # larger incoming messages close with 1009
//! send_buffer_bytes = 67108864         # unsent bytes per socket; past it, 1011
//! max_tags = 10                        # per socket
//! max_tag_chars = 256
//! max_attachment_bytes = 2048          # serializeAttachment
//! max_auto_response_chars = 2048       # each side of the auto-response
//! ```
//!
//! Paths are relative to the file. Every error names the file, the field and
//! the fix; nothing starts with a configuration that did not validate.

mod wrangler;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::runtime::ComponentSource;
use crate::settings::{
    ClusterSettings, ObservabilitySettings, OutboundSettings, ServerSettings, WebSocketSettings,
};
pub use dohost_store::Migration;
pub use wrangler::{CONFIG_FILES, find_config};

use super::assets::{AssetsConfig, HtmlHandling, NotFoundHandling, RunWorkerFirst};

/// One Durable Object namespace binding (`[[durable_objects.bindings]]`).
#[derive(Debug, Clone)]
pub struct BindingConfig {
    /// The binding name, e.g. `COUNTER` (`env.COUNTER`, and the first path
    /// segment of the default router).
    pub name: String,
    /// The class the component exports for this namespace, e.g. `Counter`.
    pub class_name: String,
    /// The component implementing the class (by default, `main`'s).
    pub component: ComponentSource,
}

/// A validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The application name (informational).
    pub name: Option<String>,
    /// The stateless entry worker; without one the default router serves
    /// `/<BINDING>/<object-name>/<rest>`.
    pub main: Option<ComponentSource>,
    /// Durable Object namespace bindings.
    pub bindings: Vec<BindingConfig>,
    /// `[vars]`, visible to every guest through the `env` interface; a
    /// value that is not a string as its JSON text.
    pub vars: BTreeMap<String, String>,
    /// The `[vars]` whose values are not strings (numbers, booleans,
    /// tables): guests read them as the JSON values they are.
    pub json_vars: std::collections::BTreeSet<String>,
    /// `[limits] sql_database_bytes`: the largest SQL database of one object
    /// (default [`crate::DEFAULT_MAX_SQL_DATABASE_BYTES`]).
    pub max_sql_database_bytes: Option<u64>,
    /// `[limits] mailbox_capacity`: how many events may wait for one object
    /// (default [`crate::DEFAULT_MAILBOX_CAPACITY`]).
    pub mailbox_capacity: Option<usize>,
    /// `[limits] call_timeout_ms`: how long a call to an object may take
    /// (default [`crate::DEFAULT_CALL_TIMEOUT`]).
    pub call_timeout: Option<std::time::Duration>,
    /// `[limits] cpu_ms`: CPU time per event
    /// (default [`crate::DEFAULT_CPU_TIME_PER_EVENT`]).
    pub cpu_time_per_event: Option<std::time::Duration>,
    /// `[limits] wall_ms`: wall-clock time per event
    /// (default [`crate::DEFAULT_WALL_TIME_PER_EVENT`]).
    pub wall_time_per_event: Option<std::time::Duration>,
    /// `[limits] total_memory_bytes`: linear memory of all instances
    /// together (default [`crate::default_total_memory`]).
    pub total_memory_bytes: Option<usize>,
    /// `[limits] write_set_bytes`: what one event may write
    /// (default [`crate::DEFAULT_WRITE_SET_BYTES`]).
    pub write_set_bytes: Option<usize>,
    /// `[limits] memory_bytes`: linear memory per object
    /// (default [`crate::DEFAULT_MEMORY_PER_OBJECT`]).
    pub memory_per_object: Option<usize>,
    /// `[limits] idle_timeout_ms`: how long an object without events stays
    /// in memory (default [`crate::DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Option<std::time::Duration>,
    /// `[limits] max_live_objects`: objects in memory at once
    /// (default [`crate::DEFAULT_MAX_LIVE_OBJECTS`]).
    pub max_live_objects: Option<u32>,
    /// `[limits] max_worker_instances`: entry-worker instances at once
    /// (default [`crate::DEFAULT_MAX_WORKER_INSTANCES`]).
    pub max_worker_instances: Option<u32>,
    /// `[[migrations]]`, in file order.
    pub migrations: Vec<Migration>,
    /// `[admin] token`: the bearer token of the admin HTTP API
    /// (`/_dohost/...`); without one the API is off.
    pub admin_token: Option<String>,
    /// `[alarms] retry_delay_ms`: the delay before the first retry of a
    /// failed alarm (default [`crate::DEFAULT_ALARM_RETRY_DELAY`]).
    pub alarm_retry_delay: Option<std::time::Duration>,
    /// `[alarms] max_retries`: how many times a failed alarm is retried
    /// (default [`crate::DEFAULT_ALARM_MAX_RETRIES`]).
    pub alarm_max_retries: Option<u32>,
    /// `[storage] history`: how much of every commit's history to keep
    /// for point-in-time recovery; off when `None`.
    pub history: Option<dohost_store::HistorySettings>,
    /// `[server]`: how `dohost serve` treats its clients (timeouts, body
    /// limits, the connection cap, error detail).
    pub server: ServerSettings,
    /// `[observability]`: where the event spans go.
    pub observability: ObservabilitySettings,
    /// `[outbound]`: where objects and workers may send HTTP requests, and
    /// the limits on subrequests.
    pub outbound: OutboundSettings,
    /// `[websockets]`: the limits on the WebSockets objects accept.
    pub websockets: WebSocketSettings,
    /// `[cluster]`: run as one node of a cluster sharing a PostgreSQL
    /// database, instead of on the data directory's redb file.
    pub cluster: Option<ClusterSettings>,
    /// `[assets]`: static files served before the worker.
    pub assets: Option<AssetsConfig>,
    /// Bindings the file declares for products dohost does not have (KV,
    /// R2, D1, ...): name → what it is. A guest that uses one gets an error
    /// naming it.
    pub unsupported_bindings: BTreeMap<String, String>,
    /// One line for each key of the file that dohost does not use; `dohost
    /// serve` prints them.
    pub warnings: Vec<String>,
    /// The file this was read from, if any (for messages).
    pub path: Option<PathBuf>,
}

/// The configuration's keys, once [`wrangler::sift`] has taken out what
/// dohost does not read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    main: Option<String>,
    /// Accepted as in wrangler; the JavaScript SDK follows Cloudflare's
    /// current behaviour whatever the date.
    #[allow(dead_code)]
    compatibility_date: Option<Value>,
    /// Checked by [`wrangler::sift`], which names the flags dohost lacks.
    #[allow(dead_code)]
    compatibility_flags: Option<Vec<String>>,
    durable_objects: Option<RawDurableObjects>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    assets: Option<RawAssets>,
    limits: Option<RawLimits>,
    alarms: Option<RawAlarms>,
    storage: Option<RawStorage>,
    #[serde(default)]
    migrations: Vec<RawMigration>,
    admin: Option<RawAdmin>,
    server: Option<RawServer>,
    outbound: Option<RawOutbound>,
    websockets: Option<RawWebSockets>,
    observability: Option<RawObservability>,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    database: String,
    node: String,
    advertise: String,
    secret: String,
    shards: Option<u32>,
    lease_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawObservability {
    otlp_endpoint: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebSockets {
    max_per_object: Option<usize>,
    max_message_bytes: Option<usize>,
    send_buffer_bytes: Option<usize>,
    max_tags: Option<usize>,
    max_tag_chars: Option<usize>,
    max_attachment_bytes: Option<usize>,
    max_auto_response_chars: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
    max_subrequests: Option<u32>,
    max_connections: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    header_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    min_body_rate: Option<u64>,
    max_request_body_bytes: Option<u64>,
    body_memory_bytes: Option<u64>,
    max_connections: Option<usize>,
    worker_threads: Option<usize>,
    debug_errors: Option<bool>,
    metrics_listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigration {
    tag: String,
    #[serde(default)]
    new_classes: Vec<String>,
    #[serde(default)]
    new_sqlite_classes: Vec<String>,
    #[serde(default)]
    renamed_classes: Vec<RawRename>,
    #[serde(default)]
    transferred_classes: Vec<RawTransfer>,
    #[serde(default)]
    deleted_classes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRename {
    from: String,
    to: String,
}

/// A class moved from another application (`from_script`) that used the
/// same data directory: for dohost, a rename.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    from: String,
    #[allow(dead_code)]
    from_script: Option<String>,
    to: String,
}

/// The shortest admin token accepted: long enough not to be guessed.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The smallest memory limit of an object: a Rust or JS guest needs a few
/// MiB to start.
const MIN_MEMORY_PER_OBJECT: u64 = 4 << 20;

/// The largest memory limit of an object: a wasm32 memory cannot grow past
/// 4 GiB.
const MAX_MEMORY_PER_OBJECT: u64 = 4 << 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlarms {
    retry_delay_ms: Option<u64>,
    max_retries: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    history: Option<String>,
    history_max_bytes: Option<u64>,
}

/// Reads `[storage]`: history is on when `history` names how long to keep
/// it ("7d", "12h", "30m").
fn parse_storage(raw: RawStorage, file: &str) -> Result<Option<dohost_store::HistorySettings>> {
    let Some(text) = raw.history else {
        if raw.history_max_bytes.is_some() {
            return Err(Error::config(format!(
                "{file}: storage.history_max_bytes is set but storage.history is not: set how long to keep history too, e.g. history = \"7d\""
            )));
        }
        return Ok(None);
    };
    let retention = humantime::parse_duration(&text).map_err(|e| {
        Error::config(format!(
            "{file}: storage.history = {text:?} is not a duration ({e}); write e.g. \"7d\", \"12h\" or \"30m\""
        ))
    })?;
    if retention.is_zero() {
        return Err(Error::config(format!(
            "{file}: storage.history = {text:?} keeps nothing; remove it to turn history off"
        )));
    }
    Ok(Some(dohost_store::HistorySettings {
        retention,
        max_bytes: raw.history_max_bytes,
    }))
}

/// The most retries `[alarms] max_retries` may ask for: with doubling
/// delays, more would wait for years.
const MAX_ALARM_RETRIES: u32 = 30;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    sql_database_bytes: Option<u64>,
    mailbox_capacity: Option<usize>,
    call_timeout_ms: Option<u64>,
    cpu_ms: Option<u64>,
    wall_ms: Option<u64>,
    memory_bytes: Option<u64>,
    total_memory_bytes: Option<u64>,
    write_set_bytes: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_live_objects: Option<u32>,
    max_worker_instances: Option<u32>,
}

/// The smallest SQL database size limit that makes sense: a few pages.
const MIN_SQL_DATABASE_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDurableObjects {
    #[serde(default)]
    bindings: Vec<RawBinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    name: String,
    class_name: String,
    component: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssets {
    directory: String,
    binding: Option<String>,
    not_found_handling: Option<String>,
    html_handling: Option<String>,
    run_worker_first: Option<RawRunWorkerFirst>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRunWorkerFirst {
    All(bool),
    Patterns(Vec<String>),
}

impl Config {
    /// Reads and validates a `dohost.toml`, `wrangler.toml`,
    /// `wrangler.jsonc` or `wrangler.json` (JSON for `.json` and `.jsonc`,
    /// else TOML).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the file, the field and the fix
    /// when the file is missing, cannot be parsed, has an unknown (in
    /// `dohost.toml`) or missing field, or points at a component that does
    /// not exist.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "{}: cannot read the configuration: {e}; give the path of a dohost.toml (`dohost serve --config FILE`, `dohost build DIR`)",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text as if it were read from `path` (relative
    /// component paths resolve against `path`'s directory).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file = path.display();
        let mut value = wrangler::read_value(text, path)?;
        let mut sifted = wrangler::sift(
            &mut value,
            &file.to_string(),
            wrangler::is_wrangler_file(path),
        )?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(Value::Object(value)).map_err(|e| {
                let at = e.path().to_string();
                let at = if at == "." {
                    String::new()
                } else {
                    format!("{at}: ")
                };
                Error::config(format!("{file}: {at}{}", e.inner()))
            })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };

        let main = match raw.main {
            Some(m) => Some(resolve_component(dir, &m, &format!("{file}: main"))?),
            None => None,
        };
        let mut bindings = Vec::new();
        for (i, b) in raw
            .durable_objects
            .map(|d| d.bindings)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let field = format!("durable_objects.bindings[{i}]");
            if !is_identifier(&b.name) {
                return Err(Error::config(format!(
                    "{file}: {field}.name = {:?} is not a valid binding name; use letters, digits and _ (not starting with a digit), e.g. \"COUNTER\"",
                    b.name
                )));
            }
            if bindings.iter().any(|x: &BindingConfig| x.name == b.name) {
                return Err(Error::config(format!(
                    "{file}: {field}.name = {:?} is bound twice; give each binding its own name",
                    b.name
                )));
            }
            if !is_identifier(&b.class_name) {
                return Err(Error::config(format!(
                    "{file}: {field}.class_name = {:?} is not a class name; use the name the component exports, e.g. \"Counter\"",
                    b.class_name
                )));
            }
            let component = match (b.component, &main) {
                (Some(component), _) => {
                    resolve_component(dir, &component, &format!("{file}: {field}.component"))?
                }
                (None, Some(main)) => main.clone(),
                (None, None) => {
                    return Err(Error::config(format!(
                        "{file}: {field} ({}) has no component and there is no main to find class {} in; set main, or the binding's component",
                        b.name, b.class_name
                    )));
                }
            };
            bindings.push(BindingConfig {
                name: b.name,
                class_name: b.class_name,
                component,
            });
        }

        if bindings.is_empty() {
            return Err(Error::config(format!(
                "{file}: no Durable Object bindings; add a [[durable_objects.bindings]] table with name and class_name (and component, unless the class is in main)"
            )));
        }

        let mut vars = BTreeMap::new();
        let mut json_vars = std::collections::BTreeSet::new();
        for (k, v) in raw.vars {
            let value = match v {
                Value::String(s) => s,
                other => {
                    json_vars.insert(k.clone());
                    other.to_string()
                }
            };
            vars.insert(k, value);
        }

        let limits = raw.limits.unwrap_or_default();
        let max_sql_database_bytes = limits.sql_database_bytes;
        if let Some(bytes) = max_sql_database_bytes
            && bytes < MIN_SQL_DATABASE_BYTES
        {
            return Err(Error::config(format!(
                "{file}: limits.sql_database_bytes = {bytes} is too small; use at least {MIN_SQL_DATABASE_BYTES} (the default is {})",
                crate::DEFAULT_MAX_SQL_DATABASE_BYTES
            )));
        }

        if limits.mailbox_capacity == Some(0) {
            return Err(Error::config(format!(
                "{file}: limits.mailbox_capacity = 0 would refuse every event; use at least 1 (the default is {})",
                crate::DEFAULT_MAILBOX_CAPACITY
            )));
        }
        for (field, value, default) in [
            (
                "call_timeout_ms = 0 would fail every call",
                limits.call_timeout_ms,
                crate::DEFAULT_CALL_TIMEOUT,
            ),
            (
                "cpu_ms = 0 would stop every event",
                limits.cpu_ms,
                crate::DEFAULT_CPU_TIME_PER_EVENT,
            ),
            (
                "wall_ms = 0 would stop every event",
                limits.wall_ms,
                crate::DEFAULT_WALL_TIME_PER_EVENT,
            ),
            (
                "idle_timeout_ms = 0 would evict every object between events",
                limits.idle_timeout_ms,
                crate::DEFAULT_IDLE_TIMEOUT,
            ),
        ] {
            if value == Some(0) {
                return Err(Error::config(format!(
                    "{file}: limits.{field}; use at least 1 (the default is {})",
                    default.as_millis()
                )));
            }
        }
        if let Some(bytes) = limits.memory_bytes
            && !(MIN_MEMORY_PER_OBJECT..=MAX_MEMORY_PER_OBJECT).contains(&bytes)
        {
            return Err(Error::config(format!(
                "{file}: limits.memory_bytes = {bytes} is out of range; use {MIN_MEMORY_PER_OBJECT} to {MAX_MEMORY_PER_OBJECT} (the default is {})",
                crate::DEFAULT_MEMORY_PER_OBJECT
            )));
        }
        for (key, value) in [
            ("total_memory_bytes", limits.total_memory_bytes),
            ("write_set_bytes", limits.write_set_bytes),
        ] {
            if let Some(bytes) = value
                && bytes < MIN_MEMORY_PER_OBJECT
            {
                return Err(Error::config(format!(
                    "{file}: limits.{key} = {bytes} is too small; use at least {MIN_MEMORY_PER_OBJECT} or leave it out for the default"
                )));
            }
        }
        if limits.max_worker_instances == Some(0) {
            return Err(Error::config(format!(
                "{file}: limits.max_worker_instances = 0 would refuse every request to the worker; use at least 1 (the default is {})",
                crate::DEFAULT_MAX_WORKER_INSTANCES
            )));
        }
        if limits.max_live_objects == Some(0) {
            return Err(Error::config(format!(
                "{file}: limits.max_live_objects = 0 would refuse every object; use at least 1 (the default is {})",
                crate::DEFAULT_MAX_LIVE_OBJECTS
            )));
        }
        let migrations = parse_migrations(raw.migrations, &file.to_string())?;
        let admin_token = match raw.admin {
            Some(admin) if admin.token.chars().count() < MIN_ADMIN_TOKEN_CHARS => {
                return Err(Error::config(format!(
                    "{file}: admin.token is too short to be secret; use at least {MIN_ADMIN_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 32`)"
                )));
            }
            Some(admin) => Some(admin.token),
            None => None,
        };

        let alarms = raw.alarms.unwrap_or(RawAlarms {
            retry_delay_ms: None,
            max_retries: None,
        });
        if alarms.retry_delay_ms == Some(0) {
            return Err(Error::config(format!(
                "{file}: alarms.retry_delay_ms = 0: a failed alarm needs a delay before its retry; use at least 1 (the default is {})",
                crate::DEFAULT_ALARM_RETRY_DELAY.as_millis()
            )));
        }
        if let Some(retries) = alarms.max_retries
            && retries > MAX_ALARM_RETRIES
        {
            return Err(Error::config(format!(
                "{file}: alarms.max_retries = {retries} is too many; use at most {MAX_ALARM_RETRIES} (the default is {})",
                crate::DEFAULT_ALARM_MAX_RETRIES
            )));
        }

        let history = parse_storage(raw.storage.unwrap_or_default(), &file.to_string())?;
        let server = parse_server(raw.server.unwrap_or_default(), &file.to_string())?;
        let outbound = parse_outbound(raw.outbound.unwrap_or_default(), &file.to_string())?;
        let websockets = parse_websockets(raw.websockets.unwrap_or_default(), &file.to_string())?;
        let observability =
            parse_observability(raw.observability.unwrap_or_default(), &file.to_string())?;
        let cluster = match raw.cluster {
            Some(cluster) => Some(parse_cluster(cluster, &file.to_string())?),
            None => None,
        };
        let assets = match raw.assets {
            Some(assets) => Some(parse_assets(assets, dir, &file.to_string())?),
            None => None,
        };
        if let Some(binding) = assets.as_ref().and_then(|a| a.binding.clone()) {
            sifted.warnings.push(format!(
                "{file}: assets.binding = {binding:?}: a worker cannot fetch assets through env.{binding} yet; the assets are served before the worker, and code that uses env.{binding} fails with an error naming it"
            ));
            sifted
                .unsupported_bindings
                .insert(binding, "the assets binding (assets.binding)".to_owned());
        }

        Ok(Config {
            name: raw.name,
            main,
            bindings,
            vars,
            json_vars,
            max_sql_database_bytes,
            mailbox_capacity: limits.mailbox_capacity,
            call_timeout: limits.call_timeout_ms.map(std::time::Duration::from_millis),
            cpu_time_per_event: limits.cpu_ms.map(std::time::Duration::from_millis),
            wall_time_per_event: limits.wall_ms.map(std::time::Duration::from_millis),
            total_memory_bytes: limits
                .total_memory_bytes
                .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            write_set_bytes: limits
                .write_set_bytes
                .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            memory_per_object: limits
                .memory_bytes
                .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            idle_timeout: limits.idle_timeout_ms.map(std::time::Duration::from_millis),
            max_live_objects: limits.max_live_objects,
            max_worker_instances: limits.max_worker_instances,
            migrations,
            admin_token,
            alarm_retry_delay: alarms.retry_delay_ms.map(std::time::Duration::from_millis),
            alarm_max_retries: alarms.max_retries,
            history,
            server,
            observability,
            outbound,
            websockets,
            cluster,
            assets,
            unsupported_bindings: sifted.unsupported_bindings,
            warnings: sifted.warnings,
            path: Some(path.to_path_buf()),
        })
    }

    /// The binding called `name`, if configured.
    pub fn binding(&self, name: &str) -> Option<&BindingConfig> {
        self.bindings.iter().find(|b| b.name == name)
    }
}

/// Checks `[assets]`: a directory that exists, and wrangler's values for
/// each setting.
fn parse_assets(raw: RawAssets, dir: &Path, file: &str) -> Result<AssetsConfig> {
    let directory = dir.join(&raw.directory);
    if !directory.is_dir() {
        return Err(Error::config(format!(
            "{file}: assets.directory = {:?}: {} is not a directory; build the front end first (e.g. `npm run build`) or fix the path",
            raw.directory,
            directory.display()
        )));
    }
    let not_found_handling = match raw.not_found_handling.as_deref() {
        None | Some("none") => NotFoundHandling::None,
        Some("single-page-application") => NotFoundHandling::SinglePageApplication,
        Some("404-page") => NotFoundHandling::Page404,
        Some(other) => {
            return Err(Error::config(format!(
                "{file}: assets.not_found_handling = {other:?}; use \"single-page-application\", \"404-page\" or \"none\""
            )));
        }
    };
    let html_handling = match raw.html_handling.as_deref() {
        None | Some("auto-trailing-slash") => HtmlHandling::AutoTrailingSlash,
        Some("force-trailing-slash") => HtmlHandling::ForceTrailingSlash,
        Some("drop-trailing-slash") => HtmlHandling::DropTrailingSlash,
        Some("none") => HtmlHandling::None,
        Some(other) => {
            return Err(Error::config(format!(
                "{file}: assets.html_handling = {other:?}; use \"auto-trailing-slash\", \"force-trailing-slash\", \"drop-trailing-slash\" or \"none\""
            )));
        }
    };
    let run_worker_first = match raw.run_worker_first {
        None | Some(RawRunWorkerFirst::All(false)) => RunWorkerFirst::Never,
        Some(RawRunWorkerFirst::All(true)) => RunWorkerFirst::Always,
        Some(RawRunWorkerFirst::Patterns(patterns)) => {
            for pattern in &patterns {
                if !pattern.trim_start_matches('!').starts_with('/') {
                    return Err(Error::config(format!(
                        "{file}: assets.run_worker_first: {pattern:?} is not a path pattern; patterns start with / (or !/ to exclude), e.g. \"/api/*\""
                    )));
                }
            }
            RunWorkerFirst::Patterns(patterns)
        }
    };
    Ok(AssetsConfig {
        directory,
        binding: raw.binding,
        not_found_handling,
        html_handling,
        run_worker_first,
    })
}

/// Checks `[cluster]`: a PostgreSQL URL, a node name, an address to listen
/// on, a secret long enough to guess at no better than chance, and sane
/// shard and lease numbers.
fn parse_cluster(raw: RawCluster, file: &str) -> Result<ClusterSettings> {
    let refuse = |message: String| Err(Error::config(format!("{file}: {message}")));
    if !(raw.database.starts_with("postgres://") || raw.database.starts_with("postgresql://")) {
        return refuse(format!(
            "cluster.database = {:?} is not a PostgreSQL URL; write it as postgres://USER@HOST:PORT/DATABASE",
            raw.database
        ));
    }
    if raw.node.is_empty()
        || raw.node.len() > 64
        || !raw
            .node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return refuse(format!(
            "cluster.node = {:?}: name the node with 1 to 64 letters, digits, '-', '_' or '.'",
            raw.node
        ));
    }
    let advertise: std::net::SocketAddr = match raw.advertise.parse() {
        Ok(address) => address,
        Err(_) => {
            return refuse(format!(
                "cluster.advertise = {:?} is not an IP address and port, e.g. \"10.0.0.5:9101\"; the node listens there for the other nodes",
                raw.advertise
            ));
        }
    };
    if raw.secret.len() < 16 {
        return refuse(
            "cluster.secret is shorter than 16 characters; use a long random string, the same on every node".to_owned(),
        );
    }
    let shards = raw.shards.unwrap_or(crate::DEFAULT_CLUSTER_SHARDS);
    if shards == 0 || shards > 65_536 {
        return refuse(format!(
            "cluster.shards = {shards}: choose between 1 and 65536 (default {})",
            crate::DEFAULT_CLUSTER_SHARDS
        ));
    }
    let lease = std::time::Duration::from_millis(
        raw.lease_ms
            .unwrap_or(crate::DEFAULT_CLUSTER_LEASE.as_millis() as u64),
    );
    if lease < std::time::Duration::from_millis(300) {
        return refuse(format!(
            "cluster.lease_ms = {}: leases shorter than 300 ms expire between heartbeats; use at least 300",
            lease.as_millis()
        ));
    }
    Ok(ClusterSettings {
        database: raw.database,
        node: raw.node,
        advertise,
        secret: raw.secret,
        shards,
        lease,
    })
}

/// Checks `[observability]`: an OTLP endpoint is an http(s) URL.
fn parse_observability(raw: RawObservability, file: &str) -> Result<ObservabilitySettings> {
    let otlp_endpoint = match raw.otlp_endpoint {
        Some(url) => {
            let uri: http::Uri = url.parse().map_err(|e| {
                Error::config(format!(
                    "{file}: observability.otlp_endpoint = {url:?} is not a URL ({e}); write the OTLP/HTTP address of a collector, e.g. \"http://127.0.0.1:4318\""
                ))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(Error::config(format!(
                    "{file}: observability.otlp_endpoint = {url:?} is not an http:// or https:// URL with a host; write the OTLP/HTTP address of a collector, e.g. \"http://127.0.0.1:4318\""
                )));
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        None => None,
    };
    Ok(ObservabilitySettings { otlp_endpoint })
}

/// Checks `[outbound]`: every limit at least 1. The rules are checked when
/// the host is built, which names a bad one.
fn parse_outbound(raw: RawOutbound, file: &str) -> Result<OutboundSettings> {
    let mut outbound = OutboundSettings {
        allow: raw.allow,
        deny: raw.deny,
        ..OutboundSettings::default()
    };
    for (key, value) in [
        ("timeout_ms", raw.timeout_ms),
        ("max_response_bytes", raw.max_response_bytes),
        ("max_subrequests", raw.max_subrequests.map(u64::from)),
        ("max_connections", raw.max_connections.map(u64::from)),
    ] {
        if value == Some(0) {
            return Err(Error::config(format!(
                "{file}: outbound.{key} = 0 would refuse every request; use at least 1 or leave it out for the default"
            )));
        }
    }
    if let Some(ms) = raw.timeout_ms {
        outbound.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(bytes) = raw.max_response_bytes {
        outbound.max_response_bytes = bytes;
    }
    if let Some(n) = raw.max_subrequests {
        outbound.max_subrequests = n;
    }
    if let Some(n) = raw.max_connections {
        outbound.max_connections = n;
    }
    Ok(outbound)
}

/// Checks `[websockets]`: every limit at least 1, the send buffer at
/// least one largest message.
fn parse_websockets(raw: RawWebSockets, file: &str) -> Result<WebSocketSettings> {
    let mut settings = WebSocketSettings::default();
    for (key, value, field) in [
        (
            "max_per_object",
            raw.max_per_object,
            &mut settings.max_per_object,
        ),
        (
            "max_message_bytes",
            raw.max_message_bytes,
            &mut settings.max_message_bytes,
        ),
        (
            "send_buffer_bytes",
            raw.send_buffer_bytes,
            &mut settings.send_buffer_bytes,
        ),
        ("max_tags", raw.max_tags, &mut settings.max_tags),
        (
            "max_tag_chars",
            raw.max_tag_chars,
            &mut settings.max_tag_chars,
        ),
        (
            "max_attachment_bytes",
            raw.max_attachment_bytes,
            &mut settings.max_attachment_bytes,
        ),
        (
            "max_auto_response_chars",
            raw.max_auto_response_chars,
            &mut settings.max_auto_response_chars,
        ),
    ] {
        match value {
            Some(0) => {
                return Err(Error::config(format!(
                    "{file}: websockets.{key} = 0 would refuse every socket; use at least 1 or leave it out for the default"
                )));
            }
            Some(n) => *field = n,
            None => {}
        }
    }
    if settings.send_buffer_bytes < settings.max_message_bytes {
        return Err(Error::config(format!(
            "{file}: websockets.send_buffer_bytes ({}) must be at least websockets.max_message_bytes ({}), or a message of the largest size could never be sent",
            settings.send_buffer_bytes, settings.max_message_bytes
        )));
    }
    Ok(settings)
}

/// Checks `[server]`: every limit at least 1, the body memory at least one
/// largest body.
fn parse_server(raw: RawServer, file: &str) -> Result<ServerSettings> {
    let mut server = ServerSettings::default();
    let ms = std::time::Duration::from_millis;
    for (key, value) in [
        ("header_timeout_ms", raw.header_timeout_ms),
        ("idle_timeout_ms", raw.idle_timeout_ms),
        ("body_timeout_ms", raw.body_timeout_ms),
        ("min_body_rate", raw.min_body_rate),
        ("max_request_body_bytes", raw.max_request_body_bytes),
        ("body_memory_bytes", raw.body_memory_bytes),
        ("max_connections", raw.max_connections.map(|n| n as u64)),
    ] {
        if value == Some(0) {
            return Err(Error::config(format!(
                "{file}: server.{key} = 0 would refuse every client; use at least 1 or leave it out for the default"
            )));
        }
    }
    let bytes = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    server.header_timeout = raw.header_timeout_ms.map_or(server.header_timeout, ms);
    server.idle_timeout = raw.idle_timeout_ms.map_or(server.idle_timeout, ms);
    server.body_timeout = raw.body_timeout_ms.map_or(server.body_timeout, ms);
    server.min_body_rate = raw.min_body_rate.unwrap_or(server.min_body_rate);
    server.max_request_body = raw
        .max_request_body_bytes
        .map_or(server.max_request_body, bytes);
    server.body_memory = raw
        .body_memory_bytes
        .map_or(server.body_memory.max(server.max_request_body), bytes);
    if server.body_memory < server.max_request_body {
        return Err(Error::config(format!(
            "{file}: server.body_memory_bytes = {} is less than one largest body (max_request_body_bytes = {}); raise it or lower max_request_body_bytes",
            server.body_memory, server.max_request_body
        )));
    }
    server.max_connections = raw.max_connections.unwrap_or(server.max_connections);
    server.worker_threads = raw.worker_threads.unwrap_or(server.worker_threads);
    server.debug_errors = raw.debug_errors.unwrap_or(false);
    server.metrics_listen = match raw.metrics_listen {
        Some(addr) => Some(addr.parse().map_err(|e| {
            Error::config(format!(
                "{file}: server.metrics_listen = {addr:?} is not an address to listen on ({e}); write an IP and a port, e.g. \"127.0.0.1:9090\""
            ))
        })?),
        None => None,
    };
    Ok(server)
}

/// Checks `[[migrations]]`: tags present and unique, class names that
/// could be exported.
fn parse_migrations(raw: Vec<RawMigration>, file: &str) -> Result<Vec<Migration>> {
    let mut migrations: Vec<Migration> = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let field = format!("migrations[{i}]");
        if m.tag.trim().is_empty() {
            return Err(Error::config(format!(
                "{file}: {field}.tag is empty; give each migration a unique tag, e.g. \"v{}\"",
                i + 1
            )));
        }
        if migrations.iter().any(|x| x.tag == m.tag) {
            return Err(Error::config(format!(
                "{file}: {field}.tag = {:?} is used twice; give each migration its own tag",
                m.tag
            )));
        }
        let renamed: Vec<(String, String)> = m
            .renamed_classes
            .into_iter()
            .map(|r| (r.from, r.to))
            .chain(m.transferred_classes.into_iter().map(|t| (t.from, t.to)))
            .collect();
        let named = m
            .new_classes
            .iter()
            .chain(&m.new_sqlite_classes)
            .chain(&m.deleted_classes)
            .chain(renamed.iter().flat_map(|(from, to)| [from, to]));
        for class in named {
            if !is_identifier(class) {
                return Err(Error::config(format!(
                    "{file}: {field} (tag {:?}) names {class:?}, which is not a class name; use the name the component exports, e.g. \"Counter\"",
                    m.tag
                )));
            }
        }
        migrations.push(Migration {
            tag: m.tag,
            new_classes: m.new_classes,
            new_sqlite_classes: m.new_sqlite_classes,
            renamed_classes: renamed,
            deleted_classes: m.deleted_classes,
        });
    }
    Ok(migrations)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn resolve_component(dir: &Path, value: &str, field: &str) -> Result<ComponentSource> {
    const WHAT: &str = "a .wasm component, a Rust guest crate directory, a JavaScript or TypeScript module (.js, .ts, ..., or a folder with package.json), or a Python module (.py, or a folder with pyproject.toml)";
    if value.is_empty() {
        return Err(Error::config(format!("{field} is empty; set it to {WHAT}")));
    }
    let path = dir.join(value);
    if path.is_dir() && path.join("Cargo.toml").is_file() {
        return Ok(ComponentSource::RustCrate(path));
    }
    match crate::build::js_module(&path) {
        Ok(Some(module)) => return Ok(ComponentSource::JavaScript(module)),
        Ok(None) => {}
        Err(why) => return Err(Error::config(format!("{field} = {value:?}: {why}"))),
    }
    match crate::build::python_module(&path) {
        Ok(Some(module)) => return Ok(ComponentSource::Python(module)),
        Ok(None) => {}
        Err(why) => return Err(Error::config(format!("{field} = {value:?}: {why}"))),
    }
    if path.is_dir() {
        return Err(Error::config(format!(
            "{field} = {value:?}: {} is a directory without Cargo.toml, package.json or pyproject.toml; point it at {WHAT}",
            path.display()
        )));
    }
    if path.extension().is_some_and(|e| e == "wasm") {
        // A .wasm path need not exist yet: `dohost build` may produce it.
        return Ok(ComponentSource::File(path));
    }
    if path.exists() {
        return Err(Error::config(format!(
            "{field} = {value:?} is none of {WHAT}; point it at one of those"
        )));
    }
    Err(Error::config(format!(
        "{field} = {value:?}: {} does not exist; point it at {WHAT}",
        path.display()
    )))
}

#[cfg(test)]
mod tests;
