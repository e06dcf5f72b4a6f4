//! The redb backend: every object's state in one redb file on one machine
//! (the default).
//!
//! ## Layout
//!
//! All keys are bytes, compared bytewise; tables keyed by object start with
//! the 36-byte [`ObjectKey`] (namespace number, big-endian, then the
//! object id), so an object's rows are one contiguous range.
//!
//! - `kv`: object key + UTF-8 storage key -> value bytes.
//! - `pages`: object key + page number (u32 big-endian) -> page bytes
//!   ([`crate::PAGE_SIZE`]): the object's SQLite database file
//!   ([`crate::PageFile`]). The file's length is its last page's end.
//! - `alarms`: object key -> the object's alarm ([`AlarmRecord`]: time in
//!   ms since the epoch, i64 big-endian, and how many deliveries of it
//!   began, u32 big-endian).
//! - `alarm_times`: the alarm's time (i64 with its sign bit flipped, so
//!   bytewise order is numeric order) + object key -> nothing: the
//!   scheduler's index of alarms by time ([`crate::Store::alarms_after`]).
//! - `objects`: object key -> JSON [`ObjectRecord`] (class, name): the
//!   directory of objects that have written something.
//! - `classes`, `bound`, `migrations`: which class owns which namespace
//!   number ([`crate::Registry`]). (`namespaces`, binding name -> number
//!   and secret, is how older data directories recorded it; it is taken
//!   over on the first start.)
//!
//! Every KV value and SQL page is stored with a checksum ([`sealed`]).

mod check;
mod commit;
mod history;
mod registry;
pub(crate) mod sealed;
mod snapshot;

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadOnlyTable, ReadableDatabase, TableDefinition};

pub use check::{CheckReport, check_file};

use crate::alarm::{AlarmChange, AlarmRecord};
use crate::backend::{Backend, KeyScan, ObjectWrites, Refused, RegistryTxn};
use crate::directory::{KeyInfo, ObjectRecord};
use crate::error::{Error, Result};
use crate::history::{Bookmark, HistorySettings, HistoryStats, Undo};
use crate::keys::namespace_after;
use crate::keys::{OBJECT_KEY_LEN, ObjectKey, alarm_time_key, decode_alarm_time_key};
use crate::pages::PageView;
use sealed::{SEAL_BYTES, damaged, unseal};

pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
pub(crate) const PAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pages");
pub(crate) const ALARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarms");
pub(crate) const ALARM_TIMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm_times");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
pub(crate) const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");

/// Opens the database file again after a failed commit.
pub(crate) type Reopen = Box<dyn Fn() -> Result<Database> + Send + Sync>;

/// The redb backend (see the module docs).
pub struct RedbBackend {
    /// The handle readers use; `None` once the store is closed, and while
    /// the file is being opened again.
    readers: RwLock<Option<Arc<Database>>>,
    /// The committer's own handle: the store lets go of the readers' when
    /// it closes, and the committer still commits what it was sent.
    writer: Mutex<Option<Arc<Database>>>,
    reopen: Option<Reopen>,
    /// Why reads fail once the database cannot be read.
    failed: Mutex<Option<String>>,
    sync: metrics::Histogram,
    /// The history kept, while it is on ([`crate::history`]); locked
    /// through each commit and each step of pruning.
    history: Mutex<Option<history::HistoryState>>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Opens (or creates) the redb file at `path`, readable by its owner
    /// only. A file left by a crash is repaired first.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the file cannot be opened (another
    /// process has it open, or it is damaged), [`crate::ErrorKind::Config`]
    /// if a newer dohost wrote it.
    pub fn open(path: &Path) -> Result<RedbBackend> {
        let db = open_database(path)?;
        let path = path.to_path_buf();
        RedbBackend::start(db, Some(Box::new(move || open_database(&path))))
    }

    /// Creates the tables of `db`.
    pub(crate) fn start(db: Database, reopen: Option<Reopen>) -> Result<RedbBackend> {
        let txn = db.begin_write().map_err(|e| Error::storage("begin", e))?;
        for table in [KV, PAGES, ALARMS, ALARM_TIMES, OBJECTS] {
            txn.open_table(table)
                .map_err(|e| Error::storage("creating the tables", e))?;
        }
        txn.open_table(NAMESPACES)
            .map_err(|e| Error::storage("creating the tables", e))?;
        txn.commit()
            .map_err(|e| Error::storage("creating the tables", e))?;
        sealed::upgrade(&db)?;
        let history = history::HistoryState::load(&db)?;
        let db = Arc::new(db);
        Ok(RedbBackend {
            readers: RwLock::new(Some(db.clone())),
            writer: Mutex::new(Some(db)),
            reopen,
            failed: Mutex::new(None),
            sync: metrics::histogram!(crate::COMMIT_SYNC_DURATION),
            history: Mutex::new(history),
        })
    }

    /// The database, while the store is open.
    fn db(&self) -> Result<Arc<Database>> {
        let db = self
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        db.ok_or_else(|| {
            match self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                None => Error::shut_down(),
                Some(reason) => Error::new(
                    crate::ErrorKind::Storage,
                    format!("the database cannot be read: {reason}"),
                ),
            }
        })
    }

    /// The committer's handle, while the store is open.
    fn writer(&self) -> Result<Arc<Database>> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(Error::shut_down)
    }

    /// Reads one value of `table` (`what` names the read in errors).
    fn read_one(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        key: &[u8],
        what: &str,
    ) -> Result<Option<Vec<u8>>> {
        guarded(what, || {
            let txn = self
                .db()?
                .begin_read()
                .map_err(|e| Error::storage(what, e))?;
            let table = txn.open_table(table).map_err(|e| Error::storage(what, e))?;
            let value = table.get(key).map_err(|e| Error::storage(what, e))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// The rows of `table` in `[lo, hi)` (`what` names the read in
    /// errors); iterate them inside [`guarded`].
    fn range(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        (lo, hi): (&[u8], &[u8]),
        what: &str,
    ) -> Result<Rows> {
        let err = |e: &dyn std::fmt::Display| Error::storage(what, e);
        let txn = self.db()?.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(table).map_err(|e| err(&e))?;
        table
            .range::<&[u8]>((Bound::Included(lo), Bound::Excluded(hi)))
            .map_err(|e| err(&e))
    }
}

/// Rows of a table read by [`RedbBackend::range`].
type Rows = redb::Range<'static, &'static [u8], &'static [u8]>;

impl Backend for RedbBackend {
    fn get(&self, object: &ObjectKey, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        guarded("read", || {
            let txn = self
                .db()?
                .begin_read()
                .map_err(|e| Error::storage("read", e))?;
            let table = txn.open_table(KV).map_err(|e| Error::storage("read", e))?;
            keys.iter()
                .map(|key| {
                    let value = table
                        .get(object.kv_key(key).as_slice())
                        .map_err(|e| Error::storage("read", e))?;
                    value
                        .map(|v| {
                            unseal(v.value()).map(<[u8]>::to_vec).ok_or_else(|| {
                                damaged(&format!("the value of key {key:?} of object {object:?}"))
                            })
                        })
                        .transpose()
                })
                .collect()
        })
    }

    fn scan(&self, object: &ObjectKey, scan: &KeyScan) -> Result<Vec<(String, Vec<u8>)>> {
        let lo = object.kv_key_bytes(&scan.start);
        let hi = match &scan.end {
            Some(end) => object.kv_key_bytes(end),
            None => object.end(),
        };
        let mut out = Vec::new();
        if lo >= hi || scan.limit == 0 {
            return Ok(out);
        }
        guarded("list", || {
            let range = self.range(KV, (&lo, &hi), "list")?;
            let entries: Box<dyn Iterator<Item = _>> = if scan.reverse {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            let mut bytes = 0;
            for entry in entries {
                let (k, v) = entry.map_err(|e| Error::storage("list", e))?;
                let key = String::from_utf8_lossy(&k.value()[OBJECT_KEY_LEN..]).into_owned();
                let value = unseal(v.value()).ok_or_else(|| {
                    damaged(&format!("the value of key {key:?} of object {object:?}"))
                })?;
                bytes += key.len() + value.len();
                out.push((key, value.to_vec()));
                if out.len() >= scan.limit || bytes > scan.max_bytes {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn key_sizes(&self, object: &ObjectKey, limit: usize) -> Result<(Vec<KeyInfo>, u64)> {
        let (lo, hi) = (object.kv_key(""), object.end());
        guarded("read an object's keys", || {
            let range = self.range(KV, (&lo, &hi), "read an object's keys")?;
            let mut keys = Vec::new();
            let mut total = 0;
            for entry in range {
                let (k, v) = entry.map_err(|e| Error::storage("read an object's keys", e))?;
                total += 1;
                if keys.len() < limit {
                    keys.push(KeyInfo {
                        key: String::from_utf8_lossy(&k.value()[lo.len()..]).into_owned(),
                        bytes: v.value().len().saturating_sub(SEAL_BYTES),
                    });
                }
            }
            Ok((keys, total))
        })
    }

    fn pages(&self, object: &ObjectKey) -> Result<Box<dyn PageView>> {
        guarded("read pages", || {
            let err = |e: &dyn std::fmt::Display| Error::storage("read pages", e);
            let txn = self.db()?.begin_read().map_err(|e| err(&e))?;
            let table = txn.open_table(PAGES).map_err(|e| err(&e))?;
            Ok(Box::new(CommittedPages {
                table,
                object: *object,
            }) as Box<dyn PageView>)
        })
    }

    fn alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>> {
        match self.read_one(ALARMS, object.as_bytes(), "read alarm")? {
            None => Ok(None),
            Some(v) => AlarmRecord::decode(&v).map(Some).ok_or_else(|| {
                Error::storage("read alarm", format!("the alarm of {object:?} is corrupt"))
            }),
        }
    }

    fn alarms_after(
        &self,
        after: Option<(i64, ObjectKey)>,
        limit: usize,
    ) -> Result<Vec<(i64, ObjectKey)>> {
        guarded("read alarm times", || {
            let err = |e: &dyn std::fmt::Display| Error::storage("read alarm times", e);
            let txn = self.db()?.begin_read().map_err(|e| err(&e))?;
            let table = txn.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
            let lower = after.map(|(time, object)| alarm_time_key(time, &object));
            let bounds = match &lower {
                Some(k) => (Bound::Excluded(k.as_slice()), Bound::Unbounded),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            let mut out = Vec::new();
            for entry in table
                .range::<&[u8]>(bounds)
                .map_err(|e| err(&e))?
                .take(limit)
            {
                let (k, _) = entry.map_err(|e| err(&e))?;
                let found = decode_alarm_time_key(k.value()).ok_or_else(|| {
                    Error::storage("read alarm times", "an index entry is corrupt")
                })?;
                out.push(found);
            }
            Ok(out)
        })
    }

    fn object(&self, object: &ObjectKey) -> Result<Option<ObjectRecord>> {
        let what = "reading the directory of objects";
        Ok(self
            .read_one(OBJECTS, object.as_bytes(), what)?
            .map(|v| serde_json::from_slice(&v).unwrap_or_else(|_| unreadable_record())))
    }

    fn dump(&self, object: &ObjectKey) -> Result<crate::ObjectDump> {
        snapshot::dump(&*self.db()?, object)
    }

    fn backup(&self, to: &Path) -> Result<crate::BackupReport> {
        snapshot::backup(&*self.db()?, to)
    }

    fn objects(
        &self,
        number: u32,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Option<ObjectRecord>)>> {
        let what = "reading the directory of objects";
        let (lo, hi) = namespace_after(number, after);
        if lo >= hi {
            return Ok(Vec::new());
        }
        guarded(what, || {
            let range = self.range(OBJECTS, (&lo, &hi), what)?;
            let mut found = Vec::new();
            for entry in range.take(limit) {
                let (k, v) = entry.map_err(|e| Error::storage(what, e))?;
                let Some(key) = ObjectKey::from_bytes(k.value()) else {
                    continue;
                };
                found.push((key, serde_json::from_slice(v.value()).ok()));
            }
            Ok(found)
        })
    }

    fn commit(
        &self,
        batch: &[&ObjectWrites],
        changes: &mut Vec<AlarmChange>,
    ) -> std::result::Result<Refused, String> {
        let db = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(db) = db else {
            return Err("storage commit failed: the database is closed".into());
        };
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit::commit_batch(&db, batch, changes, &self.sync, history.as_mut())
        }))
        .unwrap_or_else(|panic| {
            Err(format!(
                "storage commit failed: redb panicked ({})",
                panic_message(panic.as_ref())
            ))
        })
        .map(|()| Refused::new())
    }

    /// After a failed commit redb refuses every later read and write of
    /// its handle: opens the file again (what was acknowledged is there),
    /// so reads go on.
    fn set_history(&self, settings: Option<HistorySettings>) -> Result<()> {
        let db = self.writer()?;
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        *history = history::HistoryState::enable(&db, history.take(), settings)?;
        Ok(())
    }

    fn history_stats(&self) -> Result<Option<HistoryStats>> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        Ok(history.as_ref().map(history::HistoryState::stats))
    }

    fn bookmark_for_time(&self, time: i64) -> Result<Bookmark> {
        // Locked, so pruning cannot move the floor under the read.
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let state = history.as_ref().ok_or_else(crate::history::history_off)?;
        guarded("read the history", || {
            state.bookmark_for_time(&*self.db()?, time)
        })
    }

    fn undo_since(&self, object: &ObjectKey, after: Bookmark) -> Result<Vec<Undo>> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let state = history.as_ref().ok_or_else(crate::history::history_off)?;
        guarded("read the history", || {
            state.undo_since(&*self.db()?, object, after)
        })
    }

    fn prune_history(&self) -> Result<u64> {
        let db = self.writer()?;
        let mut pruned = 0;
        loop {
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let Some(state) = history.as_mut() else {
                return Ok(pruned);
            };
            let (step, more) = guarded("prune the history", || state.prune_step(&db))?;
            pruned += step;
            if !more {
                return Ok(pruned);
            }
        }
    }

    fn recover(&self) -> std::result::Result<(), String> {
        let Some(reopen) = &self.reopen else {
            return Err("the database cannot be opened again".into());
        };
        let shared = self
            .readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let store_open = shared.is_some();
        drop(shared);
        let old = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            // Readers hold their handle only for one read.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        let reason = "the database is still in use and cannot be opened again";
                        self.fail(reason);
                        return Err(reason.into());
                    }
                }
            }
        }
        match reopen() {
            Ok(db) => {
                let db = Arc::new(db);
                *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(db.clone());
                if store_open {
                    *self.readers.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
                }
                tracing::warn!("the database was opened again after a failed commit");
                Ok(())
            }
            Err(e) => {
                let reason = format!("opening the database again failed: {e}");
                self.fail(&reason);
                Err(reason)
            }
        }
    }

    fn registry(&self, work: &mut dyn FnMut(&dyn RegistryTxn) -> Result<bool>) -> Result<()> {
        let db = self.db()?;
        let txn = db
            .begin_write()
            .map_err(|e| Error::storage("begin the class registry's transaction", e))?;
        if work(&registry::RedbRegistry(&txn))? {
            txn.commit()
                .map_err(|e| Error::storage("commit the class registry", e))?;
        }
        Ok(())
    }

    fn close(&self) {
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn release(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl RedbBackend {
    /// Records why reads fail from now on.
    fn fail(&self, reason: &str) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }
}

/// The record of an object whose directory entry cannot be read.
fn unreadable_record() -> ObjectRecord {
    ObjectRecord {
        class: String::new(),
        name: None,
    }
}

/// One object's committed SQL pages, as one redb read transaction sees
/// them. It pins what that transaction sees, so a page file keeps it only
/// for the reads of one host call.
struct CommittedPages {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    object: ObjectKey,
}

impl PageView for CommittedPages {
    fn read_page(&self, page: u32) -> std::result::Result<Option<Vec<u8>>, String> {
        guarded("read page", || {
            let stored = self
                .table
                .get(self.object.page_key(page).as_slice())
                .map_err(|e| Error::storage("read page", e))?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let bytes = unseal(stored.value())
                .ok_or_else(|| damaged(&format!("SQL page {page} of object {:?}", self.object)))?;
            Ok(Some(bytes.to_vec()))
        })
        .map_err(|e| e.to_string())
    }

    fn page_count(&self) -> std::result::Result<u32, String> {
        guarded("read pages", || {
            let err = |e: &dyn std::fmt::Display| Error::storage("read pages", e);
            let (lo, hi) = (self.object.page_key(0), self.object.end());
            let last = self
                .table
                .range::<&[u8]>(lo.as_slice()..hi.as_slice())
                .map_err(|e| err(&e))?
                .next_back()
                .transpose()
                .map_err(|e| err(&e))?;
            Ok(last.map_or(0, |(k, _)| {
                let mut n = [0u8; 4];
                n.copy_from_slice(&k.value()[OBJECT_KEY_LEN..]);
                u32::from_be_bytes(n).saturating_add(1)
            }))
        })
        .map_err(|e| e.to_string())
    }
}

/// Opens (or creates, readable by its owner only) the redb file at `path`.
/// A file left by a crash is repaired first, which takes time that grows
/// with its size: the log says when that starts and how long it took. A
/// file too damaged to open is an error, never a panic.
pub(crate) fn open_database(path: &Path) -> Result<Database> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created 0600 here if it is new; redb then opens it as it is.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::new(
                    crate::ErrorKind::Io,
                    format!("cannot create database {}: {e}", path.display()),
                )
            })?;
    }
    let repair_started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut builder = Database::builder();
    let started = repair_started.clone();
    let file = path.display().to_string();
    builder.set_repair_callback(move |_session| {
        let mut started = started.lock().unwrap_or_else(|p| p.into_inner());
        if started.is_none() {
            tracing::warn!(
                "{file} was not closed cleanly (the process was killed or crashed): recovering it"
            );
            *started = Some(Instant::now());
        }
    });
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(path)));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            return Err(Error::storage(
                &format!("cannot open database {}", path.display()),
                e,
            ));
        }
        Err(panic) => {
            let why = panic_message(panic.as_ref());
            return Err(Error::new(
                crate::ErrorKind::Storage,
                format!(
                    "cannot open database {}: the file is damaged ({why}); restore it from a backup, or run `dohost check` to see what is readable",
                    path.display()
                ),
            ));
        }
    };
    if let Some(started) = *repair_started.lock().unwrap_or_else(|p| p.into_inner()) {
        tracing::warn!(
            "{} recovered in {} ms",
            path.display(),
            started.elapsed().as_millis()
        );
    }
    Ok(db)
}

/// Runs a read of redb, turning a panic inside redb (a damaged file) into
/// an error naming the read: the reading object's event fails, the rest of
/// the host goes on.
pub(crate) fn guarded<T>(what: &str, read: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        Err(Error::storage(
            what,
            format!(
                "the database file is damaged ({}); run `dohost check` to see what is readable",
                panic_message(panic.as_ref())
            ),
        ))
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}
