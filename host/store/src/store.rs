//! The database: every object's state in one redb file, read directly and
//! written only through the committer ([`crate::committer`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use redb::{Database, ReadOnlyTable, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use crate::alarm::{AlarmListener, AlarmRecord};
use crate::committer::{CommitHook, CommitRequest, CommitResult, DbSlot, Health, Message, Reopen};
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::{OBJECT_KEY_LEN, ObjectKey, alarm_time_key, decode_alarm_time_key};
use crate::pages::{PageSource, PageView};
use crate::sealed::{damaged, unseal};
use crate::writes::{ListRange, WriteSet};

pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
pub(crate) const PAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pages");
pub(crate) const ALARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarms");
pub(crate) const ALARM_TIMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm_times");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
pub(crate) const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");

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
    let repair_started: Arc<std::sync::Mutex<Option<std::time::Instant>>> = Arc::default();
    let mut builder = Database::builder();
    let started = repair_started.clone();
    let file = path.display().to_string();
    builder.set_repair_callback(move |_session| {
        let mut started = started.lock().unwrap_or_else(|p| p.into_inner());
        if started.is_none() {
            tracing::warn!(
                "{file} was not closed cleanly (the process was killed or crashed): recovering it"
            );
            *started = Some(std::time::Instant::now());
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

/// The shared database and the sending side of the committer.
pub struct Store {
    /// None once the store is closed: the database file is released.
    db: DbSlot,
    /// Whether commits go through, as the committer last found.
    health: Arc<std::sync::Mutex<Health>>,
    commits: mpsc::Sender<Message>,
    /// Keys and SQL pages read and lists run against redb
    /// ([`Store::disk_reads`]).
    disk_reads: Arc<AtomicU64>,
    memory_reads: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("disk_reads", &self.disk_reads())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path` and starts its committer.
    /// The receiver fires once the committer has committed everything it
    /// was sent and stopped (after [`Store::close`]) and its database handle
    /// is gone. `hook` is called around each group commit; `alarms` hears
    /// of every committed alarm change.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the database cannot be opened
    /// (another process has it open, say), [`crate::ErrorKind::Io`] if the
    /// committer thread cannot start.
    pub fn open(
        path: &Path,
        hook: Option<CommitHook>,
        alarms: AlarmListener,
    ) -> Result<(Store, oneshot::Receiver<()>)> {
        let db = open_database(path)?;
        let path = path.to_path_buf();
        Self::start(
            db,
            Some(Box::new(move || open_database(&path))),
            hook,
            alarms,
        )
    }

    /// Creates the tables of `db` and starts its committer.
    pub(crate) fn start(
        db: Database,
        reopen: Option<Reopen>,
        hook: Option<CommitHook>,
        alarms: AlarmListener,
    ) -> Result<(Store, oneshot::Receiver<()>)> {
        let db = Arc::new(db);
        let txn = db.begin_write().map_err(|e| Error::storage("begin", e))?;
        for table in [KV, PAGES, ALARMS, ALARM_TIMES, OBJECTS] {
            txn.open_table(table)
                .map_err(|e| Error::storage("creating the tables", e))?;
        }
        txn.open_table(NAMESPACES)
            .map_err(|e| Error::storage("creating the tables", e))?;
        txn.commit()
            .map_err(|e| Error::storage("creating the tables", e))?;
        crate::sealed::upgrade(&db)?;
        let slot: DbSlot = Arc::new(RwLock::new(Some(db)));
        let health = Arc::new(std::sync::Mutex::new(Health::Writable));
        let (commits, stopped) =
            crate::committer::start(slot.clone(), reopen, health.clone(), hook, alarms)?;
        Ok((
            Store {
                db: slot,
                health,
                commits,
                disk_reads: Arc::default(),
                memory_reads: AtomicU64::new(0),
            },
            stopped,
        ))
    }

    /// The database, while the store is open.
    pub(crate) fn db(&self) -> Result<Arc<Database>> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| match self.health() {
            Health::Writable => Error::shut_down(),
            Health::Unwritable(reason) | Health::Failed(reason) => Error::new(
                crate::ErrorKind::Storage,
                format!("the database cannot be read: {reason}"),
            ),
        })
    }

    /// Whether commits go through: after a failed commit the store fails
    /// writes fast and retries; if the committer cannot go on at all the
    /// process should exit so it can be restarted.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the committer to commit what it has and stop, and lets go of
    /// the database; the file is released once the committer is done.
    pub fn close(&self) {
        let _ = self.commits.send(Message::Stop);
        self.db.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Storage reads that went to redb so far: one per key a read did not
    /// find in memory, one per list.
    pub fn disk_reads(&self) -> u64 {
        self.disk_reads.load(Ordering::Relaxed)
    }

    /// Key reads answered from memory so far (the event's writes or the
    /// object's cache), without redb.
    pub fn memory_reads(&self) -> u64 {
        self.memory_reads.load(Ordering::Relaxed)
    }

    /// Counts `n` key reads answered from memory.
    pub(crate) fn count_memory_reads(&self, n: usize) {
        self.memory_reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads committed values, one per key, in one read transaction.
    pub(crate) fn get_many(
        &self,
        object: &ObjectKey,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        guarded("read", || {
            self.disk_reads
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
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

    /// Reads one committed value of `table` (`what` names the read in
    /// errors).
    fn read_one(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        key: &[u8],
        what: &str,
    ) -> Result<Option<Vec<u8>>> {
        guarded("read", || {
            self.disk_reads.fetch_add(1, Ordering::Relaxed);
            let txn = self
                .db()?
                .begin_read()
                .map_err(|e| Error::storage(what, e))?;
            let table = txn.open_table(table).map_err(|e| Error::storage(what, e))?;
            let value = table.get(key).map_err(|e| Error::storage(what, e))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// The committed alarm of `object`, if it has one.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    pub fn read_alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>> {
        match self.read_one(ALARMS, object.as_bytes(), "read alarm")? {
            None => Ok(None),
            Some(v) => AlarmRecord::decode(&v).map(Some).ok_or_else(|| {
                Error::storage("read alarm", format!("the alarm of {object:?} is corrupt"))
            }),
        }
    }

    /// Up to `limit` committed alarms in (time, object) order, starting
    /// after `after` (from the first when `None`).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the index cannot be read,
    /// [`crate::ErrorKind::ShutDown`] once the store is closed.
    pub fn alarms_after(
        &self,
        after: Option<(i64, ObjectKey)>,
        limit: usize,
    ) -> Result<Vec<(i64, ObjectKey)>> {
        guarded("read alarm times", || {
            let txn = self
                .db()?
                .begin_read()
                .map_err(|e| Error::storage("read alarm times", e))?;
            let table = txn
                .open_table(ALARM_TIMES)
                .map_err(|e| Error::storage("read alarm times", e))?;
            let lower = after.map(|(time, object)| alarm_time_key(time, &object));
            let bounds = match &lower {
                Some(k) => (Bound::Excluded(k.as_slice()), Bound::Unbounded),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            let mut out = Vec::new();
            for entry in table
                .range::<&[u8]>(bounds)
                .map_err(|e| Error::storage("read alarm times", e))?
                .take(limit)
            {
                let (k, _) = entry.map_err(|e| Error::storage("read alarm times", e))?;
                let found = decode_alarm_time_key(k.value()).ok_or_else(|| {
                    Error::storage("read alarm times", "an index entry is corrupt")
                })?;
                out.push(found);
            }
            Ok(out)
        })
    }

    /// The committed length of `object`'s SQL database file, in pages.
    pub(crate) fn page_count(&self, object: &ObjectKey) -> Result<u32> {
        self.committed_pages(*object)?.count()
    }

    /// The committed SQL pages of `object` as one read transaction sees
    /// them now.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the transaction cannot begin.
    pub(crate) fn committed_pages(&self, object: ObjectKey) -> Result<CommittedPages> {
        guarded("read pages", || {
            let err = |e: &dyn std::fmt::Display| Error::storage("read pages", e);
            let txn = self.db()?.begin_read().map_err(|e| err(&e))?;
            let table = txn.open_table(PAGES).map_err(|e| err(&e))?;
            Ok(CommittedPages {
                table,
                object,
                reads: None,
            })
        })
    }

    /// Lists committed entries of `object` in `range` (none if
    /// `committed_cleared`: a pending `delete-all` hides them), merged with
    /// `overlay` (newer state of some keys, `None` = deleted), honouring
    /// order and limit.
    /// The result may hold at most `max_bytes` of keys and values.
    pub(crate) fn list(
        &self,
        object: &ObjectKey,
        range: &ListRange,
        overlay: &BTreeMap<&str, Option<&[u8]>>,
        committed_cleared: bool,
        max_bytes: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        guarded("list", || {
            let (lower, upper) = range.key_bounds();
            let lo = object.kv_key(&lower);
            let hi = match &upper {
                Some(u) => object.kv_key_bytes(u),
                None => object.end(),
            };
            self.disk_reads.fetch_add(1, Ordering::Relaxed);
            let limit = range.limit.unwrap_or(usize::MAX);
            let mut out: Vec<(String, Vec<u8>)> = Vec::new();
            if lo >= hi || limit == 0 {
                return Ok(out);
            }
            let txn = self
                .db()?
                .begin_read()
                .map_err(|e| Error::storage("list", e))?;
            let table = txn.open_table(KV).map_err(|e| Error::storage("list", e))?;
            let bounds = (
                Bound::Included(lo.as_slice()),
                Bound::Excluded(hi.as_slice()),
            );
            let iter = table
                .range::<&[u8]>(bounds)
                .map_err(|e| Error::storage("list", e))?;
            let mut db: Box<dyn Iterator<Item = _>> = if range.reverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            let mut ov: Box<dyn Iterator<Item = (&&str, &Option<&[u8]>)>> = if range.reverse {
                Box::new(overlay.iter().rev())
            } else {
                Box::new(overlay.iter())
            };
            if committed_cleared {
                db = Box::new(std::iter::empty());
            }
            let mut next_db = || -> Result<Option<(String, Vec<u8>)>> {
                match db.next() {
                    None => Ok(None),
                    Some(Err(e)) => Err(Error::storage("list", e)),
                    Some(Ok((k, v))) => {
                        let key =
                            String::from_utf8_lossy(&k.value()[OBJECT_KEY_LEN..]).into_owned();
                        let value = unseal(v.value()).ok_or_else(|| {
                            damaged(&format!("the value of key {key:?} of object {object:?}"))
                        })?;
                        Ok(Some((key, value.to_vec())))
                    }
                }
            };
            let mut d = next_db()?;
            let mut o = ov.next();
            let (mut bytes, mut counted) = (0usize, 0usize);
            while out.len() < limit {
                if let Some((k, v)) = out.last()
                    && out.len() > counted
                {
                    counted = out.len();
                    bytes += k.len() + v.len();
                    if bytes > max_bytes {
                        return Err(Error::new(
                            crate::ErrorKind::TooLarge,
                            format!(
                                "the list result is larger than {max_bytes} bytes, half the object's memory limit; list in pages with `limit` and `start_after`"
                            ),
                        ));
                    }
                }
                let take_overlay = match (&d, &o) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((dk, _)), Some((ok, _))) => {
                        let ord = dk.as_str().cmp(**ok);
                        let ord = if range.reverse { ord.reverse() } else { ord };
                        match ord {
                            std::cmp::Ordering::Less => false,
                            std::cmp::Ordering::Greater => true,
                            std::cmp::Ordering::Equal => {
                                // The overlay is newer: drop the committed entry.
                                d = next_db()?;
                                true
                            }
                        }
                    }
                };
                if take_overlay {
                    if let Some((k, Some(v))) = o {
                        out.push(((*k).to_owned(), v.to_vec()));
                    }
                    o = ov.next();
                } else if let Some(entry) = d.take() {
                    out.push(entry);
                    d = next_db()?;
                }
            }
            Ok(out)
        })
    }

    /// Hands a write set to the committer. The receiver fires once the write
    /// set is durable (or its commit failed). `record` enters the object in
    /// the directory of objects, if given.
    pub fn commit(
        &self,
        object: ObjectKey,
        writes: WriteSet,
        record: Option<ObjectRecord>,
    ) -> oneshot::Receiver<CommitResult> {
        let (done, rx) = oneshot::channel();
        let request = CommitRequest {
            object,
            writes,
            record,
            done,
        };
        if let Err(mpsc::SendError(Message::Commit(request))) =
            self.commits.send(Message::Commit(request))
        {
            let _ = request
                .done
                .send(Err("the host is shut down; the write is not durable".into()));
        }
        rx
    }
}

/// One object's committed SQL pages, as one redb read transaction sees
/// them: a [`PageView`] of the [`Store`]. It pins what that transaction
/// sees, so a page file keeps it only for the reads of one host call.
pub(crate) struct CommittedPages {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    object: ObjectKey,
    /// Where an object's page reads are counted ([`Store::disk_reads`]).
    reads: Option<Arc<AtomicU64>>,
}

impl CommittedPages {
    /// The committed bytes of `page`, if it was ever written.
    fn read(&self, page: u32) -> Result<Option<Vec<u8>>> {
        if let Some(reads) = &self.reads {
            reads.fetch_add(1, Ordering::Relaxed);
        }
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
    }

    /// The file's committed length, in pages.
    fn count(&self) -> Result<u32> {
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
    }
}

impl PageView for CommittedPages {
    fn read_page(&self, page: u32) -> std::result::Result<Option<Vec<u8>>, String> {
        self.read(page).map_err(|e| e.to_string())
    }

    fn page_count(&self) -> std::result::Result<u32, String> {
        self.count().map_err(|e| e.to_string())
    }
}

impl PageSource for Store {
    fn view(&self, object: &ObjectKey) -> std::result::Result<Box<dyn PageView>, String> {
        match self.committed_pages(*object) {
            Ok(pages) => Ok(Box::new(CommittedPages {
                reads: Some(self.disk_reads.clone()),
                ..pages
            })),
            Err(e) => Err(e.to_string()),
        }
    }
}
