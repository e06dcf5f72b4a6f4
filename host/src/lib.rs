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

#![deny(missing_docs)]

mod admin;
mod alarm;
mod bindings;
pub mod build;
mod cache;
mod calls;
mod code;
pub mod config;
mod engine;
mod error;
mod host;
mod kv;
mod migrations;
mod namespace;
mod object;
mod pages;

mod residency;
pub mod server;
mod sql;
mod storage;
mod stub;
mod vfs;
mod worker;

pub use admin::{DataDir, KeyInfo, MAX_KEYS_SHOWN, ObjectDetails, ObjectSummary, TableInfo};
pub use alarm::{
    DEFAULT_ALARM_MAX_RETRIES, DEFAULT_ALARM_RETRY_DELAY, MAX_DELIVERIES, SCHEDULE_WINDOW,
};
pub use config::{BindingConfig, ComponentSource, Config, Migration};
pub use error::{Error, ErrorKind, Result};
pub use host::{
    DEFAULT_CACHE_PER_OBJECT, DEFAULT_CACHE_TOTAL, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CPU_TIME_PER_EVENT, DEFAULT_DATA_DIR, DEFAULT_MAILBOX_CAPACITY,
    DEFAULT_MAX_LIVE_OBJECTS, DEFAULT_MEMORY_PER_OBJECT, Host, HostBuilder, Settings, Stats,
};
pub use kv::{MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_TRANSACTION_DEPTH, MAX_VALUE_BYTES};
pub use namespace::{Namespace, ObjectId};
pub use object::DEFAULT_IDLE_TIMEOUT;
pub use sql::{
    DEFAULT_MAX_SQL_DATABASE_BYTES, MAX_SQL_PARAMS, MAX_SQL_STATEMENT_BYTES, MAX_SQL_VALUE_BYTES,
};
pub use storage::{CommitHook, CommitStage};
pub use stub::Stub;
