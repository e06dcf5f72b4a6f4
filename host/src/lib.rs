//! # dohost
//!
//! A host for Durable Objects: small stateful servers addressed by a stable
//! id, each running one event at a time, each owning transactional storage.
//! Every object is an isolated WebAssembly component instance (wasmtime);
//! every object's state lives in one redb database, written by group commit;
//! no response leaves before the writes behind it are durable.
//!
//! ```no_run
//! # async fn run() -> dohost::Result<()> {
//! use bytes::Bytes;
//!
//! let host = dohost::Host::builder()
//!     .data_dir("./.dohost")
//!     .binding("COUNTER", "Counter", "counter.wasm")
//!     .build()?;
//! let request = http::Request::get("/").body(Bytes::new()).unwrap();
//! let response = host.namespace("COUNTER")?.id_from_name("x").get().fetch(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! The same engine runs as a server: `dohost serve --config dohost.toml`
//! (see [`server::serve`]).
//!
//! ## Layers
//!
//! Each layer names only those below it:
//!
//! - the store (crate `dohost-store`): what is durable;
//! - `runtime`: what runs, the engine, object actors, namespaces, workers;
//! - `imports`: the host side of each WIT interface, found by the linker;
//! - `host`: this API ([`Host`], [`HostBuilder`], [`Config`], admin), the
//!   only place that wires the others together;
//! - [`server`] and the `dohost` binary, which use only this public API.
//!
//! `docs/design.md` in the repository draws them and a request's path
//! through them.

#![deny(missing_docs)]

mod error;
mod host;
mod imports;
pub mod metrics;
pub mod progress;
mod runtime;
pub mod server;
mod settings;
pub mod telemetry;

pub use dohost_store::BackupReport;
pub use dohost_store::{
    Bookmark, CheckReport, CommitHook, CommitStage, Health, HistorySettings, HistoryStats, KeyInfo,
    MAX_KEYS_SHOWN, MAX_KV_PAGE, MAX_ROWS, MAX_ROWS_BYTES, QUERY_TIME_LIMIT, Rows, TableInfo,
};
pub use error::{Error, ErrorKind, Result};
pub use host::config::{BindingConfig, ComponentSource, Config, Migration};
pub use host::{
    AlarmRun, AssetsConfig, BindingSummary, DataDir, HEALTH_PATH, Host, HostBuilder, HtmlHandling,
    KvItem, KvPage, MAX_HEX_SHOWN, MAX_OBJECTS_PAGE, MAX_QUERY_BYTES, NotFoundHandling,
    ObjectDetails, ObjectPage, ObjectQuery, ObjectSummary, READY_PATH, Route, RunWorkerFirst,
    ShownValue, Stats, build, check_data_dir, config,
};
pub use host::{
    BACKUP_REPORT_HEADER, EXPORT_FORMAT, EXPORT_VERSION, ExportHeader, ImportOptions,
    MAX_EXPORT_LINE, PAGES_PER_LINE, TransferReport,
};
pub use host::{ClusterStatus, RestorePoint, Restored, cluster_status};
pub use runtime::{AcceptedWebSocket, Body, Namespace, ObjectId, Stub};
pub use settings::{
    ClusterSettings, DEFAULT_ALARM_MAX_RETRIES, DEFAULT_ALARM_RETRY_DELAY, DEFAULT_BODY_TIMEOUT,
    DEFAULT_CACHE_PER_OBJECT, DEFAULT_CACHE_TOTAL, DEFAULT_CALL_TIMEOUT, DEFAULT_CLUSTER_LEASE,
    DEFAULT_CLUSTER_SHARDS, DEFAULT_CONNECTION_IDLE_TIMEOUT, DEFAULT_CPU_TIME_PER_EVENT,
    DEFAULT_DATA_DIR, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAILBOX_CAPACITY,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LIVE_OBJECTS, DEFAULT_MAX_OUTBOUND_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_SQL_DATABASE_BYTES, DEFAULT_MAX_SUBREQUESTS,
    DEFAULT_MAX_WORKER_INSTANCES, DEFAULT_MEMORY_PER_OBJECT, DEFAULT_MIN_BODY_RATE,
    DEFAULT_OUTBOUND_RESPONSE_BYTES, DEFAULT_OUTBOUND_TIMEOUT, DEFAULT_WALL_TIME_PER_EVENT,
    DEFAULT_WRITE_SET_BYTES, MAX_CALL_DEPTH, MAX_DELIVERIES, MAX_KEY_BYTES, MAX_KEYS_PER_CALL,
    MAX_OBJECT_NAME_BYTES, MAX_SQL_PARAMS, MAX_SQL_STATEMENT_BYTES, MAX_SQL_VALUE_BYTES,
    MAX_SQLITE_ENTRY_BYTES, MAX_TRANSACTION_DEPTH, MAX_VALUE_BYTES, ObservabilitySettings,
    OutboundSettings, RESERVED_DESCRIPTORS, SCHEDULE_WINDOW, ServerSettings, Settings,
    WebSocketSettings, default_body_memory, default_total_memory, default_worker_threads,
    machine_memory,
};
