//! The PostgreSQL backend: every object's state in one PostgreSQL
//! database, which the nodes of a cluster share (see docs/cluster.md).
//!
//! The tables are in [`schema`]. The store's interface is synchronous (an
//! object reads its keys inside a host call), so the backend runs its own
//! small tokio runtime for the driver (`tokio-postgres`, with a
//! `deadpool-postgres` pool for reads): a read hands its query to that
//! runtime and waits, as a redb read waits on the disk. The committer has
//! a connection of its own and commits each batch in one transaction
//! ([`commit`]); `COMMIT` returns once PostgreSQL has made it durable
//! (`synchronous_commit`, on by default), and only then is the output gate
//! opened. With history on, the same transaction keeps what the batch
//! changed ([`history`]).

mod cluster;
mod commit;
mod history;
mod registry;
mod schema;
mod snapshot;

pub use cluster::{
    Cluster, NodeConfig, NodeStatus, Owner, ShardListener, ShardStatus, cluster_status, shard_of,
};

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use crate::alarm::{AlarmChange, AlarmRecord};
use crate::backend::{Backend, KeyScan, ObjectWrites, Refused, RegistryTxn};
use crate::directory::{KeyInfo, ObjectRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::history::{Bookmark, HistorySettings, HistoryStats, Undo};
use crate::keys::{ObjectKey, namespace_after};
use crate::pages::PageView;

/// Connections the pool of reads may open.
const READ_CONNECTIONS: usize = 16;

/// Pages read ahead by one page read: SQLite's pages are four of the
/// store's pieces, and it reads neighbours next.
const READ_AHEAD: u32 = 16;

/// The PostgreSQL backend (see the module docs).
pub struct PostgresBackend {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    config: tokio_postgres::Config,
    reader: Reader,
    /// The committer's connection; `None` after it failed until
    /// [`Backend::recover`] connects again.
    writer: Mutex<Option<commit::Writer>>,
    closed: AtomicBool,
    sync: metrics::Histogram,
    /// The cluster this node is a member of: every commit is fenced on its
    /// leases.
    fence: OnceLock<Cluster>,
    /// How much history this node keeps, while it keeps it: its commits
    /// capture their history ([`history`]) and its pruner prunes.
    history: Mutex<Option<HistorySettings>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").finish_non_exhaustive()
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        // Dropped anywhere, also inside another runtime: do not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An error of the driver as a storage error naming `what`, with
/// PostgreSQL's own message.
pub(super) fn pg_error(what: &str, e: &tokio_postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("PostgreSQL: {e}: {source}"),
            None => format!("PostgreSQL: {e}"),
        },
    };
    Error::storage(what, detail)
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user@host:port/db`),
    /// and creates or migrates dohost's schema in it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if `url` is not a PostgreSQL URL,
    /// [`ErrorKind::Storage`] naming PostgreSQL's answer if it cannot be
    /// reached or the schema cannot be created.
    pub fn connect(url: &str) -> Result<PostgresBackend> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("database = {url:?} is not a PostgreSQL URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE"),
            )
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dohost-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start the PostgreSQL driver's threads: {e}"),
                )
            })?;
        let handle = runtime.handle().clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _entered = handle.enter();
            Pool::builder(manager)
                .max_size(READ_CONNECTIONS)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| Error::new(ErrorKind::Config, format!("PostgreSQL pool: {e}")))?
        };
        let backend = PostgresBackend {
            runtime: Some(runtime),
            handle: handle.clone(),
            config,
            reader: Reader { handle, pool },
            writer: Mutex::new(None),
            closed: AtomicBool::new(false),
            sync: metrics::histogram!(crate::COMMIT_SYNC_DURATION),
            fence: OnceLock::new(),
            history: Mutex::new(None),
        };
        let mut client = backend.connect_writer()?;
        let migrated = {
            let client = &mut client;
            backend.wait_local(async move { schema::migrate(client).await })
        };
        migrated?;
        let writer = backend.wait_local(commit::Writer::new(client))?;
        *backend.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        Ok(backend)
    }

    /// A new connection of its own (for the committer, the registry).
    fn connect_writer(&self) -> Result<Client> {
        let config = self.config.clone();
        self.wait(async move { connect(&config).await })
    }

    /// Runs `work` on the driver's runtime and waits for it (from any
    /// thread, also one of another runtime).
    fn wait<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        wait_on(&self.handle, work)
    }

    /// Fences every commit on `cluster`'s leases from now on.
    fn set_fence(&self, cluster: Cluster) {
        let _ = self.fence.set(cluster);
    }

    /// Runs `work`, which borrows from the caller, on the driver's runtime:
    /// on a thread of no runtime (the committer's, the builder's) it is
    /// blocked on directly, elsewhere on a scoped thread.
    fn wait_local<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.handle.block_on(work);
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.handle.block_on(work))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// A new connection of its own to `config`, driven on the current runtime.
async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_error("connecting to PostgreSQL", &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL: a connection ended: {e}");
        }
    });
    Ok(client)
}

/// Runs `work` on `handle`'s runtime and waits for it (from any thread,
/// also one of another runtime).
fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .unwrap_or_else(|_| panic!("the PostgreSQL driver's runtime stopped"))
}

/// Reads on pooled connections, on the driver's runtime (the backend's,
/// and each page view's).
#[derive(Clone)]
struct Reader {
    handle: tokio::runtime::Handle,
    pool: Pool,
}

impl Reader {
    /// Runs one query (`what` names it in errors) and waits for its rows.
    fn query(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Vec<Row>> {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let rows = async {
                let client = pool.get().await.map_err(|e| match e {
                    deadpool_postgres::PoolError::Backend(e) => pg_error(what, &e),
                    e => Error::storage(what, format!("PostgreSQL: {e}")),
                })?;
                let statement = client
                    .prepare_cached(sql)
                    .await
                    .map_err(|e| pg_error(what, &e))?;
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                client
                    .query(&statement, &params)
                    .await
                    .map_err(|e| pg_error(what, &e))
            }
            .await;
            let _ = tx.send(rows);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(Error::storage(
                what,
                "the PostgreSQL driver's runtime stopped",
            ))
        })
    }
}

/// A query parameter.
fn p<T: ToSql + Send + Sync + 'static>(value: T) -> Box<dyn ToSql + Send + Sync> {
    Box::new(value)
}

/// The record of a row of `dohost.objects` (class, name).
fn record(row: &Row, from: usize) -> ObjectRecord {
    ObjectRecord {
        class: row.get(from),
        name: row.get(from + 1),
    }
}

/// An object key read back from a `bytea` column.
fn object_key(bytes: &[u8]) -> Result<ObjectKey> {
    ObjectKey::from_bytes(bytes)
        .ok_or_else(|| Error::storage("read", "an object key in PostgreSQL is corrupt"))
}

/// The alarm of a row (time, retries).
fn alarm(row: &Row, from: usize) -> AlarmRecord {
    let retries: i32 = row.get(from + 1);
    AlarmRecord {
        time: row.get(from),
        retries: u32::try_from(retries).unwrap_or(0),
    }
}

impl Backend for PostgresBackend {
    fn get(&self, object: &ObjectKey, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let rows = self.query(
            "read",
            "SELECT key, value FROM dohost.kv WHERE object = $1 AND key = ANY($2)",
            vec![p(object.as_bytes().to_vec()), p(wanted)],
        )?;
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        Ok(keys.iter().map(|k| found.remove(k.as_bytes())).collect())
    }

    fn scan(&self, object: &ObjectKey, scan: &KeyScan) -> Result<Vec<(String, Vec<u8>)>> {
        const FORWARD: &str = "SELECT key, value FROM dohost.kv
            WHERE object = $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3)
            ORDER BY key LIMIT $4";
        const REVERSE: &str = "SELECT key, value FROM dohost.kv
            WHERE object = $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3)
            ORDER BY key DESC LIMIT $4";
        if scan.limit == 0 {
            return Ok(Vec::new());
        }
        // A chunk at a time: the store asks for the rest when the bytes
        // ran out before the limit.
        let limit = i64::try_from(scan.limit.min(1000)).unwrap_or(1000);
        let rows = self.query(
            "list",
            if scan.reverse { REVERSE } else { FORWARD },
            vec![
                p(object.as_bytes().to_vec()),
                p(scan.start.clone()),
                p(scan.end.clone()),
                p(limit),
            ],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for row in &rows {
            let key: Vec<u8> = row.get(0);
            let value: Vec<u8> = row.get(1);
            bytes += key.len() + value.len();
            out.push((String::from_utf8_lossy(&key).into_owned(), value));
            if bytes > scan.max_bytes {
                return Ok(out);
            }
        }
        if out.len() == usize::try_from(limit).unwrap_or(0) && out.len() < scan.limit {
            // More may follow: read on after the last key.
            let mut rest = scan.clone();
            rest.limit -= out.len();
            rest.max_bytes = scan.max_bytes.saturating_sub(bytes);
            let last = out
                .last()
                .map(|(k, _)| k.as_bytes().to_vec())
                .unwrap_or_default();
            if scan.reverse {
                rest.end = Some(last);
            } else {
                rest.start = [last.as_slice(), &[0]].concat();
            }
            out.extend(self.scan(object, &rest)?);
        }
        Ok(out)
    }

    fn key_sizes(&self, object: &ObjectKey, limit: usize) -> Result<(Vec<KeyInfo>, u64)> {
        let rows = self.query(
            "read an object's keys",
            "SELECT key, octet_length(value), count(*) OVER () FROM dohost.kv
             WHERE object = $1 ORDER BY key LIMIT $2",
            vec![
                p(object.as_bytes().to_vec()),
                p(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let total: i64 = rows.first().map_or(0, |row| row.get(2));
        let keys = rows
            .iter()
            .map(|row| {
                let key: Vec<u8> = row.get(0);
                let bytes: i32 = row.get(1);
                KeyInfo {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    bytes: usize::try_from(bytes).unwrap_or(0),
                }
            })
            .collect();
        Ok((keys, u64::try_from(total).unwrap_or(0)))
    }

    fn pages(&self, object: &ObjectKey) -> Result<Box<dyn PageView>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::shut_down());
        }
        Ok(Box::new(PostgresPages {
            reader: self.reader.clone(),
            object: *object,
            read: Mutex::new(std::collections::BTreeMap::new()),
        }))
    }

    fn alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>> {
        let rows = self.query(
            "read alarm",
            "SELECT time, retries FROM dohost.alarms WHERE object = $1",
            vec![p(object.as_bytes().to_vec())],
        )?;
        Ok(rows.first().map(|row| alarm(row, 0)))
    }

    fn alarms_after(
        &self,
        after: Option<(i64, ObjectKey)>,
        limit: usize,
    ) -> Result<Vec<(i64, ObjectKey)>> {
        let (time, object) = match after {
            Some((time, object)) => (Some(time), Some(object.as_bytes().to_vec())),
            None => (None, None),
        };
        let rows = self.query(
            "read alarm times",
            "SELECT time, object FROM dohost.alarms
             WHERE $1::bigint IS NULL OR (time, object) > ($1, $2::bytea)
             ORDER BY time, object LIMIT $3",
            vec![
                p(time),
                p(object),
                p(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter()
            .map(|row| Ok((row.get(0), object_key(row.get(1))?)))
            .collect()
    }

    fn dump(&self, object: &ObjectKey) -> Result<crate::ObjectDump> {
        self.dump_snapshot(object)
    }

    fn object(&self, object: &ObjectKey) -> Result<Option<ObjectRecord>> {
        let rows = self.query(
            "reading the directory of objects",
            "SELECT class, name FROM dohost.objects WHERE object = $1",
            vec![p(object.as_bytes().to_vec())],
        )?;
        Ok(rows.first().map(|row| record(row, 0)))
    }

    fn objects(
        &self,
        number: u32,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Option<ObjectRecord>)>> {
        let (lo, hi) = namespace_after(number, after);
        let rows = self.query(
            "reading the directory of objects",
            "SELECT object, class, name FROM dohost.objects
             WHERE object >= $1 AND object < $2 ORDER BY object LIMIT $3",
            vec![p(lo), p(hi), p(i64::try_from(limit).unwrap_or(i64::MAX))],
        )?;
        rows.iter()
            .map(|row| Ok((object_key(row.get(0))?, Some(record(row, 1)))))
            .collect()
    }

    fn commit(
        &self,
        batch: &[&ObjectWrites],
        changes: &mut Vec<AlarmChange>,
    ) -> std::result::Result<Refused, String> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(connection) = writer.as_ref() else {
            return Err("storage commit failed: not connected to PostgreSQL".into());
        };
        let (sync, fence) = (&self.sync, self.fence.get());
        let history = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let result = self.wait_local(async move {
            commit::commit(connection, batch, fence, history, changes, sync).await
        });
        if result.is_err() && writer.as_ref().is_some_and(|w| w.client.is_closed()) {
            *writer = None;
        }
        result.map_err(|e| format!("storage commit failed: {}", e.message()))
    }

    fn recover(&self) -> std::result::Result<(), String> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.as_ref().is_none_or(|w| w.client.is_closed()) {
            // Connecting may fail while PostgreSQL is away; the next retry
            // tries again.
            *writer = self
                .connect_writer()
                .and_then(|client| self.wait_local(commit::Writer::new(client)))
                .ok();
        }
        Ok(())
    }

    fn registry(&self, work: &mut dyn FnMut(&dyn RegistryTxn) -> Result<bool>) -> Result<()> {
        registry::run(self, work)
    }

    /// The history is the database's, shared by the nodes: every node
    /// should keep it, or commits go by unrecorded; one that turns it off
    /// turns it off for all.
    fn set_history(&self, settings: Option<HistorySettings>) -> Result<()> {
        history::enable(self, settings.is_some())?;
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = settings;
        Ok(())
    }

    fn history_stats(&self) -> Result<Option<HistoryStats>> {
        history::stats(self)
    }

    fn bookmark_for_time(&self, time: i64) -> Result<Bookmark> {
        history::bookmark_for_time(self, time)
    }

    fn undo_since(&self, object: &ObjectKey, after: Bookmark) -> Result<Vec<Undo>> {
        history::undo_since(self, object, after)
    }

    fn prune_history(&self) -> Result<u64> {
        let settings = *self.history.lock().unwrap_or_else(|p| p.into_inner());
        match settings {
            Some(settings) => history::prune(self, settings),
            None => Ok(0),
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn release(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.reader.pool.close();
    }
}

impl PostgresBackend {
    /// Runs one read query (`what` names it in errors), unless the store
    /// is closed.
    fn query(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Vec<Row>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::shut_down());
        }
        self.reader.query(what, sql, params)
    }
}

/// One object's committed SQL pages, read from PostgreSQL
/// [`READ_AHEAD`] at a time and kept for the reads of one host call.
struct PostgresPages {
    reader: Reader,
    object: ObjectKey,
    read: Mutex<std::collections::BTreeMap<u32, Option<Vec<u8>>>>,
}

impl PageView for PostgresPages {
    fn read_page(&self, page: u32) -> std::result::Result<Option<Vec<u8>>, String> {
        if let Some(found) = self
            .read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&page)
        {
            return Ok(found.clone());
        }
        let first = i32::try_from(page).map_err(|e| e.to_string())?;
        let rows = self
            .reader
            .query(
                "read pages",
                "SELECT page, bytes FROM dohost.pages
             WHERE object = $1 AND page >= $2 AND page < $3 ORDER BY page",
                vec![
                    p(self.object.as_bytes().to_vec()),
                    p(first),
                    p(first.saturating_add(READ_AHEAD as i32)),
                ],
            )
            .map_err(|e| e.to_string())?;
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        for n in page..page.saturating_add(READ_AHEAD) {
            read.insert(n, None);
        }
        for row in &rows {
            let n: i32 = row.get(0);
            read.insert(u32::try_from(n).unwrap_or(0), Some(row.get(1)));
        }
        Ok(read.get(&page).cloned().flatten())
    }

    fn page_count(&self) -> std::result::Result<u32, String> {
        let rows = self
            .reader
            .query(
                "read pages",
                "SELECT max(page) FROM dohost.pages WHERE object = $1",
                vec![p(self.object.as_bytes().to_vec())],
            )
            .map_err(|e| e.to_string())?;
        let last: Option<i32> = rows.first().and_then(|row| row.get(0));
        Ok(last.map_or(0, |n| u32::try_from(n).unwrap_or(0).saturating_add(1)))
    }
}
