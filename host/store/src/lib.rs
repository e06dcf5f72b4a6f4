//! # dohost-store
//!
//! What is durable in dohost: every object's state in one backend (a redb
//! file, or a PostgreSQL database shared by a cluster), written by one group
//! committer, and each object's view of it while it runs. This
//! crate knows nothing of WebAssembly, of the WIT contract, or of the
//! runtime above it.
//!
//! ```no_run
//! # async fn run() -> dohost_store::Result<()> {
//! use std::sync::Arc;
//! use dohost_store::{CacheBudget, ObjectKey, ObjectRecord, ObjectStorage, Store, WriteOptions};
//!
//! let (store, _stopped) = Store::open("dohost.redb".as_ref(), None, Arc::new(|_: &[_]| {}))?;
//! let budget = CacheBudget::new(8 << 20, 512 << 20);
//! let mut storage = ObjectStorage::new(ObjectKey::new(0, &[7; 32]), Arc::new(store), budget, 1 << 30, 64 << 20);
//! storage.writes.write("count".into(), Some("1".into()), WriteOptions::default());
//! storage.flush(|| ObjectRecord { class: "Counter".into(), name: None });
//! dohost_store::pass_gate(storage.response_gate()).await?; // durable now
//! # Ok(()) }
//! ```
//!
//! ## Backends
//!
//! Committed state lives in a [`Backend`]: [`RedbBackend`], one file on one
//! machine (the default; its layout is in [`backends::redb`]), or
//! [`PostgresBackend`], shared by the nodes of a cluster. Objects are
//! keyed by the 36-byte [`ObjectKey`] (namespace number, big-endian, then
//! the object id); their keys compare bytewise.
//!
//! ## Writing
//!
//! An event's writes collect in its write layers ([`EventWrites`]); when it
//! ends they go, as one [`WriteSet`], to the cache as pending and to the
//! committer ([`ObjectStorage::flush`]), which commits the write sets of
//! every object waiting in one backend transaction and only then tells each
//! one's waiter. A response waits for its [`Gate`] (the output gate).

#![deny(missing_docs)]

mod alarm;
mod backend;
pub mod backends;
mod browse;
mod cache;
mod committer;
mod directory;
mod dump;
mod error;
pub mod history;
mod keys;
mod migrations;
mod object;
mod pages;
mod registry;
mod store;
pub mod vfs;
mod writes;

pub use alarm::{AlarmChange, AlarmListener, AlarmRecord, AlarmWrite};
pub use backend::{Backend, KeyScan, ObjectWrites, Refused, RegistryTxn};
pub use backends::postgres::{
    Cluster, NodeConfig, NodeStatus, Owner, PostgresBackend, ShardListener, ShardStatus,
    cluster_status, shard_of,
};
pub use backends::redb::{CheckReport, RedbBackend, check_file};
pub use browse::{KvEntry, MAX_KV_PAGE, MAX_ROWS, MAX_ROWS_BYTES, QUERY_TIME_LIMIT, Rows};
pub use cache::CacheBudget;
pub use committer::{
    COMMIT_DURATION, COMMIT_FAILURES, COMMIT_SYNC_DURATION, COMMIT_WRITE_SETS, CommitHook,
    CommitResult, CommitStage, Health,
};
pub use directory::{Contents, KeyInfo, MAX_KEYS_SHOWN, ObjectRecord, TableInfo};
pub use dump::{BackupReport, ObjectDump};
pub use error::{Error, ErrorKind, Result};
pub use history::{Bookmark, HistorySettings, HistoryStats};
pub use keys::ObjectKey;
pub use migrations::{Binding, Migration, sqlite_classes};
pub use object::{Gate, ObjectStorage, pass_gate};
pub use pages::{MemoryPages, PAGE_SIZE, PageFile, PageSource, WriteError};
pub use registry::{NamespaceRecord, Registry, prepare, read_registry};
pub use store::Store;

/// How the reason of a write set refused by fencing begins (see
/// [`Backend::commit`]): [`pass_gate`] turns it into
/// [`ErrorKind::NotOwner`].
pub const NOT_OWNER: &str = "this node no longer owns shard";

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), or 8 GiB
/// where that cannot be read.
pub fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(8 << 30)
}
pub use writes::{
    EventWrites, ListRange, MAX_TRANSACTION_DEPTH, PageWrites, TransactionError, Write,
    WriteOptions, WriteSet,
};
