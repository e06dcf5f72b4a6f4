//! Storage: every object's state in one redb file, written by one committer.
//!
//! Layout (all keys are bytes, compared bytewise):
//! - `kv`: object key (36 bytes: namespace number u32 big-endian, then the
//!   32-byte object id) followed by the UTF-8 storage key -> value bytes.
//!   An object's keys are one contiguous range, in UTF-8 byte order.
//! - `pages`: object key followed by the page number (u32 big-endian) ->
//!   page bytes ([`PAGE_SIZE`]): the object's SQLite database file
//!   ([`crate::pages`]). The file's length is its last page's end.
//! - `alarms`: object key -> the object's alarm: its time (ms since the
//!   epoch, i64 big-endian) and how many deliveries of it began (u32
//!   big-endian) ([`AlarmRecord`]).
//! - `alarm_times`: the alarm's time (i64 with its sign bit flipped, so
//!   bytewise order is numeric order) followed by the object key -> nothing:
//!   the scheduler's index of alarms by time ([`crate::alarm`]).
//! - `objects`: object key -> JSON record (class, name): the directory of
//!   objects that have written something.
//! - `classes`, `bound`, `migrations`: which class owns which namespace
//!   number ([`crate::migrations`]). (`namespaces`, binding name -> number
//!   and secret, is how data directories before classes recorded it; it is
//!   taken over on the first start.)
//!
//! Writes never go to redb from an event directly. An event's writes collect
//! in its write set; when the event ends the write set goes to the
//! *committer*, one thread that owns redb's single writer. It takes every
//! write set waiting, from every object, commits them in one transaction
//! (group commit: one fsync for all of them), and only then tells each one's
//! waiter. Callers hold the event's response until then (the output gate,
//! see [`crate::object`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::alarm::{AlarmChange, AlarmListener, AlarmRecord, AlarmWrite};
use crate::error::{Error, ErrorKind, Result};

pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const PAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pages");
const ALARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarms");
const ALARM_TIMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm_times");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");

/// The largest number of write sets one redb transaction commits. Bounds the
/// memory and latency of one group commit under a flood of writes.
const MAX_WRITE_SETS_PER_COMMIT: usize = 4096;

/// Length of an object key: namespace number (4) + object id (32).
pub(crate) const OBJECT_KEY_LEN: usize = 36;

/// The storage identity of one object: namespace number and object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey([u8; OBJECT_KEY_LEN]);

impl ObjectKey {
    pub(crate) fn new(namespace: u32, id: &[u8; 32]) -> Self {
        let mut k = [0u8; OBJECT_KEY_LEN];
        k[..4].copy_from_slice(&namespace.to_be_bytes());
        k[4..].copy_from_slice(id);
        ObjectKey(k)
    }

    /// The key as stored in redb.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<ObjectKey> {
        Some(ObjectKey(bytes.try_into().ok()?))
    }

    /// The key's 36 bytes, as the tables keyed by object store it.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The namespace number.
    pub(crate) fn namespace(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// The 32-byte object id.
    pub(crate) fn id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.0[4..]);
        id
    }

    pub(crate) fn kv_key(&self, key: &str) -> Vec<u8> {
        self.kv_key_bytes(key.as_bytes())
    }

    fn kv_key_bytes(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(OBJECT_KEY_LEN + key.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(key);
        k
    }

    /// The first kv key after every key of this object.
    pub(crate) fn kv_end(&self) -> Vec<u8> {
        let mut k = self.0.to_vec();
        increment(&mut k);
        k
    }

    fn page_key(&self, page: u32) -> [u8; OBJECT_KEY_LEN + 4] {
        let mut k = [0u8; OBJECT_KEY_LEN + 4];
        k[..OBJECT_KEY_LEN].copy_from_slice(&self.0);
        k[OBJECT_KEY_LEN..].copy_from_slice(&page.to_be_bytes());
        k
    }
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.namespace(), hex::encode(self.id()))
    }
}

/// A key of the `alarm_times` index: the time, ordered bytewise like the
/// number, then the object.
fn alarm_time_key(time: i64, object: &ObjectKey) -> [u8; 8 + OBJECT_KEY_LEN] {
    let mut k = [0u8; 8 + OBJECT_KEY_LEN];
    k[..8].copy_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(&object.0);
    k
}

fn decode_alarm_time_key(k: &[u8]) -> Option<(i64, ObjectKey)> {
    let time = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some((time as i64, ObjectKey::from_bytes(k.get(8..)?)?))
}

/// The size of a page of an object's SQL database file, in bytes (SQLite's
/// default page size, which objects cannot change).
pub(crate) const PAGE_SIZE: usize = 4096;

/// Turns `bytes` into the smallest byte string greater than every string it
/// prefixes. An all-0xFF input becomes empty (meaning: no upper bound).
fn increment(bytes: &mut Vec<u8>) {
    while let Some(last) = bytes.pop() {
        if last != 0xFF {
            bytes.push(last + 1);
            return;
        }
    }
}

/// The directory record of an object.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub(crate) struct ObjectRecord {
    pub(crate) class: String,
    pub(crate) name: Option<String>,
}

/// One write of a key: its new value (None = deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) value: Option<Bytes>,
    /// The guest hinted it will not read the value again soon.
    pub(crate) no_cache: bool,
}

/// Changes to an object's SQL database file.
#[derive(Default, Clone, Debug)]
pub(crate) struct PageWrites {
    /// Cut the file to this many pages first.
    pub(crate) truncate: Option<u32>,
    /// Then write these pages (each [`PAGE_SIZE`] bytes).
    pub(crate) pages: BTreeMap<u32, Bytes>,
}

impl PageWrites {
    pub(crate) fn is_empty(&self) -> bool {
        self.truncate.is_none() && self.pages.is_empty()
    }
}

/// One object's writes that commit together (an event's, or a part of one
/// flushed by `sync`).
#[derive(Default, Clone, Debug)]
pub(crate) struct WriteSet {
    /// Remove every key, SQL page and the alarm of the object first
    /// (`delete-all`).
    pub(crate) clear: bool,
    /// Then write these.
    pub(crate) entries: BTreeMap<String, Write>,
    /// And these SQL database changes.
    pub(crate) pages: PageWrites,
    /// And this change of the alarm (after `clear`, which removes it).
    pub(crate) alarm: Option<AlarmWrite>,
    /// Remove the object from the directory too (deleting the object).
    pub(crate) unregister: bool,
}

impl WriteSet {
    pub(crate) fn is_empty(&self) -> bool {
        !self.clear
            && !self.unregister
            && self.entries.is_empty()
            && self.pages.is_empty()
            && self.alarm.is_none()
    }
}

/// The outcome the committer reports for a write set.
pub(crate) type CommitResult = std::result::Result<(), String>;

enum Message {
    Commit(CommitRequest),
    /// Commit everything received so far, then stop.
    Stop,
}

struct CommitRequest {
    object: ObjectKey,
    writes: WriteSet,
    record: Option<ObjectRecord>,
    done: oneshot::Sender<CommitResult>,
}

/// Called by the committer around each group commit; lets tests hold a
/// commit back to observe the output gate.
pub type CommitHook = Arc<dyn Fn(CommitStage) + Send + Sync>;

/// Where the committer is in a group commit, for a [`CommitHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStage {
    /// About to open the redb write transaction.
    Before,
    /// The transaction is durable; waiters are about to be told.
    After,
}

/// The shared database and the sending side of the committer.
pub(crate) struct Store {
    /// None once the store is closed: the database file is released.
    db: RwLock<Option<Arc<Database>>>,
    commits: mpsc::Sender<Message>,
    /// Keys read and lists run against redb (see [`crate::Stats`]).
    disk_reads: AtomicU64,
}

/// Options for [`Store::list`], validated.
#[derive(Default, Clone, Debug)]
pub(crate) struct ListRange {
    pub(crate) start: Option<String>,
    /// Exclusive start; never set together with `start`.
    pub(crate) start_after: Option<String>,
    pub(crate) end: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<usize>,
}

impl ListRange {
    /// The bounds of the storage keys this range covers: keys `>= lower`
    /// and, when there is an upper bound, `< upper` (bytewise).
    pub(crate) fn key_bounds(&self) -> (String, Option<Vec<u8>>) {
        // The smallest key after `s` is `s` followed by a NUL byte.
        let after = self.start_after.as_ref().map(|s| format!("{s}\0"));
        let mut lower = after.or_else(|| self.start.clone()).unwrap_or_default();
        let mut upper = self.end.clone().map(String::into_bytes);
        if let Some(prefix) = &self.prefix {
            if prefix.as_str() > lower.as_str() {
                lower = prefix.clone();
            }
            let mut p_end = prefix.as_bytes().to_vec();
            increment(&mut p_end);
            if !p_end.is_empty() && upper.as_ref().is_none_or(|u| p_end < *u) {
                upper = Some(p_end);
            }
        }
        (lower, upper)
    }
}

/// The entries of `map` with keys in `[lower, upper)` (bytewise), in
/// order: the part of a write set or pending map a list must merge.
pub(crate) fn entries_in<'a, 'u, V>(
    map: &'a BTreeMap<String, V>,
    lower: &str,
    upper: Option<&'u [u8]>,
) -> impl Iterator<Item = (&'a String, &'a V)> + use<'a, 'u, V> {
    map.range::<str, _>((Bound::Included(lower), Bound::Unbounded))
        .take_while(move |(k, _)| upper.is_none_or(|u| k.as_bytes() < u))
}

impl Store {
    /// Opens (or creates) the database at `path` and starts its committer.
    /// The receiver fires once the committer has committed everything it
    /// was sent and stopped (after [`Store::close`]) and its database handle
    /// is gone.
    /// `alarms` hears of every committed alarm change.
    pub(crate) fn open(
        path: &Path,
        hook: Option<CommitHook>,
        alarms: AlarmListener,
    ) -> Result<(Store, oneshot::Receiver<()>)> {
        let db = Database::create(path)
            .map_err(|e| Error::storage(&format!("cannot open database {}", path.display()), e))?;
        let db = Arc::new(db);
        let txn = db.begin_write().map_err(|e| Error::storage("begin", e))?;
        {
            txn.open_table(KV)
                .map_err(|e| Error::storage("open kv", e))?;
            txn.open_table(PAGES)
                .map_err(|e| Error::storage("open pages", e))?;
            txn.open_table(ALARMS)
                .map_err(|e| Error::storage("open alarms", e))?;
            txn.open_table(ALARM_TIMES)
                .map_err(|e| Error::storage("open alarm_times", e))?;
            txn.open_table(OBJECTS)
                .map_err(|e| Error::storage("open objects", e))?;
            txn.open_table(NAMESPACES)
                .map_err(|e| Error::storage("open namespaces", e))?;
        }
        txn.commit()
            .map_err(|e| Error::storage("create tables", e))?;

        let (tx, rx) = mpsc::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let committer_db = db.clone();
        std::thread::Builder::new()
            .name("dohost-committer".into())
            .spawn(move || {
                run_committer(&committer_db, &rx, hook.as_ref(), &alarms);
                drop(committer_db);
                let _ = stopped_tx.send(());
            })
            .map_err(|e| Error::io("cannot start the committer thread", e))?;
        Ok((
            Store {
                db: RwLock::new(Some(db)),
                commits: tx,
                disk_reads: AtomicU64::new(0),
            },
            stopped,
        ))
    }

    fn db(&self) -> Result<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ShutDown,
                    "the host is shut down; its database is closed",
                )
            })
    }

    /// Tells the committer to commit what it has and stop, and lets go of
    /// the database; the file is released once the committer is done.
    pub(crate) fn close(&self) {
        let _ = self.commits.send(Message::Stop);
        self.db.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The database, for the registry of classes ([`crate::migrations`]).
    pub(crate) fn database(&self) -> Result<Arc<Database>> {
        self.db()
    }

    /// Reads and lists that went to redb so far.
    pub(crate) fn disk_reads(&self) -> u64 {
        self.disk_reads.load(Ordering::Relaxed)
    }

    /// Reads committed values, one per key, in one read transaction.
    pub(crate) fn get_many(
        &self,
        object: &ObjectKey,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
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
                Ok(value.map(|v| v.value().to_vec()))
            })
            .collect()
    }

    /// Reads one committed value of `table` (`what` names the read in
    /// errors).
    fn read_one(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        key: &[u8],
        what: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.disk_reads.fetch_add(1, Ordering::Relaxed);
        let txn = self
            .db()?
            .begin_read()
            .map_err(|e| Error::storage(what, e))?;
        let table = txn.open_table(table).map_err(|e| Error::storage(what, e))?;
        let value = table.get(key).map_err(|e| Error::storage(what, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Reads a committed page of `object`'s SQL database.
    pub(crate) fn read_page(&self, object: &ObjectKey, page: u32) -> Result<Option<Vec<u8>>> {
        self.read_one(PAGES, &object.page_key(page), "read page")
    }

    /// The committed alarm of `object`, if it has one.
    pub(crate) fn read_alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>> {
        match self.read_one(ALARMS, &object.0, "read alarm")? {
            None => Ok(None),
            Some(v) => AlarmRecord::decode(&v).map(Some).ok_or_else(|| {
                Error::storage("read alarm", format!("the alarm of {object:?} is corrupt"))
            }),
        }
    }

    /// Up to `limit` committed alarms in (time, object) order, starting
    /// after `after` (from the first when `None`).
    pub(crate) fn alarms_after(
        &self,
        after: Option<(i64, ObjectKey)>,
        limit: usize,
    ) -> Result<Vec<(i64, ObjectKey)>> {
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
            let found = decode_alarm_time_key(k.value())
                .ok_or_else(|| Error::storage("read alarm times", "an index entry is corrupt"))?;
            out.push(found);
        }
        Ok(out)
    }

    /// The committed length of `object`'s SQL database file, in pages.
    pub(crate) fn page_count(&self, object: &ObjectKey) -> Result<u32> {
        let txn = self
            .db()?
            .begin_read()
            .map_err(|e| Error::storage("read pages", e))?;
        let table = txn
            .open_table(PAGES)
            .map_err(|e| Error::storage("read pages", e))?;
        let lo = object.page_key(0);
        let hi = object.kv_end();
        let last = table
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())
            .map_err(|e| Error::storage("read pages", e))?
            .next_back()
            .transpose()
            .map_err(|e| Error::storage("read pages", e))?;
        Ok(last.map_or(0, |(k, _)| {
            let mut n = [0u8; 4];
            n.copy_from_slice(&k.value()[OBJECT_KEY_LEN..]);
            u32::from_be_bytes(n) + 1
        }))
    }

    /// Lists committed entries of `object` in `range` (none if
    /// `committed_cleared`: a pending `delete-all` hides them), merged with
    /// `overlay` (newer state of some keys, `None` = deleted), honouring
    /// order and limit.
    pub(crate) fn list(
        &self,
        object: &ObjectKey,
        range: &ListRange,
        overlay: &BTreeMap<&str, Option<&[u8]>>,
        committed_cleared: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let (lower, upper) = range.key_bounds();
        let lo = object.kv_key(&lower);
        let hi = match &upper {
            Some(u) => object.kv_key_bytes(u),
            None => object.kv_end(),
        };
        self.disk_reads.fetch_add(1, Ordering::Relaxed);
        let limit = range.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
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
                    let key = String::from_utf8_lossy(&k.value()[OBJECT_KEY_LEN..]).into_owned();
                    Ok(Some((key, v.value().to_vec())))
                }
            }
        };
        let mut d = next_db()?;
        let mut o = ov.next();
        while out.len() < limit {
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
    }

    /// Hands a write set to the committer. The receiver fires once the write
    /// set is durable (or its commit failed).
    pub(crate) fn commit(
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

/// Removes and returns the namespaces recorded by binding name, as data
/// directories did before classes had namespaces of their own: (binding,
/// record), the record encoded as the registry encodes it
/// ([`crate::migrations`]).
pub(crate) fn take_legacy_namespaces(
    txn: &redb::WriteTransaction,
) -> Result<Vec<(String, Vec<u8>)>> {
    let err = |e: &dyn std::fmt::Display| Error::storage("reading old namespaces", e);
    let mut table = txn.open_table(NAMESPACES).map_err(|e| err(&e))?;
    let mut found = Vec::new();
    for entry in table.iter().map_err(|e| err(&e))? {
        let (binding, v) = entry.map_err(|e| err(&e))?;
        found.push((binding.value().to_owned(), v.value().to_vec()));
    }
    table.retain(|_, _| false).map_err(|e| err(&e))?;
    Ok(found)
}

/// The bounds of namespace `number`'s rows in every table keyed by object.
pub(crate) fn namespace_range(number: u32) -> (Vec<u8>, Vec<u8>) {
    let lo = number.to_be_bytes().to_vec();
    let mut hi = lo.clone();
    increment(&mut hi);
    (lo, hi)
}

/// The class an object of namespace `number` recorded, if any.
pub(crate) fn recorded_class(txn: &redb::WriteTransaction, number: u32) -> Result<Option<String>> {
    let table = txn
        .open_table(OBJECTS)
        .map_err(|e| Error::storage("objects", e))?;
    let (lo, _) = namespace_range(number);
    let first = table
        .range::<&[u8]>(lo.as_slice()..)
        .map_err(|e| Error::storage("objects", e))?
        .next()
        .transpose()
        .map_err(|e| Error::storage("objects", e))?;
    Ok(first
        .filter(|(k, _)| k.value().starts_with(&lo))
        .and_then(|(_, v)| serde_json::from_slice::<ObjectRecord>(v.value()).ok())
        .map(|r| r.class))
}

/// How many objects of namespace `number` the directory holds.
pub(crate) fn count_objects(txn: &redb::WriteTransaction, number: u32) -> Result<u64> {
    let table = txn
        .open_table(OBJECTS)
        .map_err(|e| Error::storage("objects", e))?;
    let (lo, hi) = namespace_range(number);
    let mut count = 0;
    for entry in table
        .range::<&[u8]>(lo.as_slice()..hi.as_slice())
        .map_err(|e| Error::storage("objects", e))?
    {
        entry.map_err(|e| Error::storage("objects", e))?;
        count += 1;
    }
    Ok(count)
}

/// Removes every row of namespace `number`: keys, SQL pages, alarms with
/// their index entries, and the directory.
pub(crate) fn delete_namespace(txn: &redb::WriteTransaction, number: u32) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::storage("deleting a namespace", e);
    let (lo, hi) = namespace_range(number);
    for table in [KV, PAGES, ALARMS, OBJECTS] {
        let mut table = txn.open_table(table).map_err(|e| err(&e))?;
        table
            .retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)
            .map_err(|e| err(&e))?;
    }
    let mut times = txn.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
    times
        .retain(|k, _| decode_alarm_time_key(k).is_none_or(|(_, o)| o.namespace() != number))
        .map_err(|e| err(&e))?;
    Ok(())
}

fn run_committer(
    db: &Database,
    rx: &mpsc::Receiver<Message>,
    hook: Option<&CommitHook>,
    alarms: &AlarmListener,
) {
    let mut stopping = false;
    while !stopping {
        let mut batch = Vec::new();
        match rx.recv() {
            Ok(Message::Commit(first)) => batch.push(first),
            Ok(Message::Stop) | Err(_) => break,
        }
        while batch.len() < MAX_WRITE_SETS_PER_COMMIT {
            match rx.try_recv() {
                Ok(Message::Commit(more)) => batch.push(more),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(hook) = hook {
            hook(CommitStage::Before);
        }
        let started = std::time::Instant::now();
        let mut changes = Vec::new();
        let result = commit_batch(db, &batch, &mut changes);
        tracing::debug!(
            write_sets = batch.len(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "group commit"
        );
        if let Err(e) = &result {
            tracing::error!(write_sets = batch.len(), "group commit failed: {e}");
        } else {
            if !changes.is_empty() {
                alarms(&changes);
            }
            if let Some(hook) = hook {
                hook(CommitStage::After);
            }
        }
        for request in batch {
            let _ = request.done.send(result.clone());
        }
    }
}

/// Applies the alarm part of `writes` (its alarm write, or the removal
/// that `clear` implies) to the `alarms` table and its time index; the
/// change the scheduler must hear of, if any.
fn write_alarm(
    alarms: &mut redb::Table<&[u8], &[u8]>,
    alarm_times: &mut redb::Table<&[u8], &[u8]>,
    object: &ObjectKey,
    writes: &WriteSet,
) -> std::result::Result<Option<AlarmChange>, redb::StorageError> {
    let write = match (writes.clear, writes.alarm) {
        (_, Some(write)) => write,
        (true, None) => AlarmWrite::Delete,
        (false, None) => return Ok(None),
    };
    let old = alarms
        .get(object.0.as_slice())?
        .and_then(|v| AlarmRecord::decode(v.value()));
    let new = write.record();
    match new {
        Some(record) => {
            alarms.insert(object.0.as_slice(), record.encode().as_slice())?;
        }
        None => {
            alarms.remove(object.0.as_slice())?;
        }
    }
    let (old_time, new_time) = (old.map(|r| r.time), new.map(|r| r.time));
    if old_time != new_time {
        if let Some(time) = old_time {
            alarm_times.remove(alarm_time_key(time, object).as_slice())?;
        }
        if let Some(time) = new_time {
            alarm_times.insert(alarm_time_key(time, object).as_slice(), [].as_slice())?;
        }
    }
    // The start of a delivery keeps the time: nothing to schedule.
    let quiet =
        matches!(write, AlarmWrite::Started(_)) || (old_time.is_none() && new_time.is_none());
    Ok((!quiet).then_some(AlarmChange {
        object: *object,
        old: old_time,
        new: new_time,
    }))
}

/// Commits `batch` in one transaction; adds the alarm changes it made to
/// `changes`.
fn commit_batch(
    db: &Database,
    batch: &[CommitRequest],
    changes: &mut Vec<AlarmChange>,
) -> CommitResult {
    let err = |e: &dyn std::fmt::Display| format!("storage commit failed: {e}");
    let txn = db.begin_write().map_err(|e| err(&e))?;
    {
        let mut kv = txn.open_table(KV).map_err(|e| err(&e))?;
        let mut pages = txn.open_table(PAGES).map_err(|e| err(&e))?;
        let mut alarms = txn.open_table(ALARMS).map_err(|e| err(&e))?;
        let mut alarm_times = txn.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
        let mut objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
        for request in batch {
            if let Some(change) = write_alarm(
                &mut alarms,
                &mut alarm_times,
                &request.object,
                &request.writes,
            )
            .map_err(|e| err(&e))?
            {
                changes.push(change);
            }
            let object = &request.object;
            let end = object.kv_end();
            if request.writes.clear {
                let lo = object.kv_key("");
                kv.retain_in::<&[u8], _>(lo.as_slice()..end.as_slice(), |_, _| false)
                    .map_err(|e| err(&e))?;
            }
            let page_writes = &request.writes.pages;
            let cut = match (request.writes.clear, page_writes.truncate) {
                (true, _) => Some(0),
                (false, cut) => cut,
            };
            if let Some(cut) = cut {
                let lo = object.page_key(cut);
                pages
                    .retain_in::<&[u8], _>(lo.as_slice()..end.as_slice(), |_, _| false)
                    .map_err(|e| err(&e))?;
            }
            for (page, bytes) in &page_writes.pages {
                pages
                    .insert(object.page_key(*page).as_slice(), bytes.as_ref())
                    .map_err(|e| err(&e))?;
            }
            for (key, Write { value, .. }) in &request.writes.entries {
                let k = request.object.kv_key(key);
                match value {
                    Some(v) => {
                        kv.insert(k.as_slice(), v.as_ref()).map_err(|e| err(&e))?;
                    }
                    None => {
                        kv.remove(k.as_slice()).map_err(|e| err(&e))?;
                    }
                }
            }
            if request.writes.unregister {
                objects
                    .remove(request.object.0.as_slice())
                    .map_err(|e| err(&e))?;
            }
            if let Some(record) = &request.record {
                let mut record = record.clone();
                if record.name.is_none() {
                    // Activated without its name (e.g. by its alarm): keep
                    // the name an earlier activation recorded.
                    let known = objects
                        .get(request.object.0.as_slice())
                        .map_err(|e| err(&e))?
                        .and_then(|v| serde_json::from_slice::<ObjectRecord>(v.value()).ok());
                    record.name = known.and_then(|k| k.name);
                }
                let json = serde_json::to_vec(&record).map_err(|e| err(&e))?;
                objects
                    .insert(request.object.0.as_slice(), json.as_slice())
                    .map_err(|e| err(&e))?;
            }
        }
    }
    txn.commit().map_err(|e| err(&e))
}
