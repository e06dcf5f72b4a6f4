//! One object's storage as its events see it: the running event's write
//! layers, the object cache, the object's SQL page file, and the commits
//! sent to the committer with the gates that responses wait on.
//!
//! **Reads** go from the event's layers ([`EventWrites`]) to the cache
//! ([`crate::cache`]: writes not yet durable, then an LRU of values known
//! to be in redb) to redb.
//!
//! **Commits.** When an event ends (or at `sync`), [`ObjectStorage::flush`]
//! hands its write set, with the SQL pages the event changed, to the cache
//! as pending and to the committer. The object may start its next event at
//! once; it keeps seeing its own writes through the cache.
//!
//! **Output gate.** Every commit sent is a [`Gate`] that resolves once it is
//! durable. Commits finish in the order they were sent, so the gate of the
//! latest commit with a confirmed write (one not written with
//! `allow-unconfirmed`) covers every confirmed write before it: that is the
//! gate a response must pass ([`ObjectStorage::response_gate`]), even the
//! response of an event that wrote nothing but read uncommitted data.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::oneshot;

use crate::alarm::AlarmRecord;
use crate::cache::{CacheBudget, ObjectCache};
use crate::committer::CommitResult;
use crate::directory::ObjectRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ObjectKey;
use crate::pages::PageFile;
use crate::store::Store;
use crate::writes::{EventWrites, ListRange};

/// Resolves when an object's writes up to some commit are durable.
pub type Gate = Shared<oneshot::Receiver<CommitResult>>;

/// Waits for a gate.
///
/// # Errors
///
/// [`ErrorKind::Storage`] if the commit failed or the committer stopped
/// before it was durable.
pub async fn pass_gate(gate: Option<Gate>) -> Result<()> {
    let Some(gate) = gate else { return Ok(()) };
    match gate.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.starts_with(crate::NOT_OWNER) => Err(Error::new(ErrorKind::NotOwner, e)),
        Ok(Err(e)) => Err(Error::new(ErrorKind::Storage, e)),
        Err(_) => Err(Error::new(
            ErrorKind::Storage,
            "the committer stopped before the write was durable",
        )),
    }
}

/// One object's storage (see the module docs).
pub struct ObjectStorage {
    key: ObjectKey,
    store: Arc<Store>,
    /// The running event's writes.
    pub writes: EventWrites,
    /// What the object knows of its keys beyond the running event,
    /// including writes handed to the committer but not yet durable.
    cache: ObjectCache,
    /// The object's SQL database file.
    pages: Arc<Mutex<PageFile>>,
    /// Commits sent and not yet known durable, oldest first, with the
    /// sequence numbers the cache gave them.
    in_flight: VecDeque<(u64, Gate)>,
    /// The latest commit a response must wait for.
    confirmed: Option<(u64, Gate)>,
    /// The object's directory record was committed.
    registered: bool,
    /// The object's alarm as of every write set sent to the committer
    /// (`None`: not read yet).
    alarm: Option<Option<AlarmRecord>>,
}

impl ObjectStorage {
    /// The storage of object `key` in `store`: its cache counts against
    /// `budget`, its SQL database may grow to `max_sql_bytes`, one event
    /// may change `max_event_bytes` of its pages. Reads
    /// nothing yet.
    pub fn new(
        key: ObjectKey,
        store: Arc<Store>,
        budget: Arc<CacheBudget>,
        max_sql_bytes: u64,
        max_event_bytes: usize,
    ) -> ObjectStorage {
        let pages =
            PageFile::new(key, store.clone(), max_sql_bytes).with_event_limit(max_event_bytes);
        ObjectStorage {
            key,
            store,
            writes: EventWrites::default(),
            cache: ObjectCache::new(budget),
            pages: Arc::new(Mutex::new(pages)),
            in_flight: VecDeque::new(),
            confirmed: None,
            registered: false,
            alarm: None,
        }
    }

    /// The object's SQL database file, for its SQLite connection.
    pub fn pages(&self) -> Arc<Mutex<PageFile>> {
        self.pages.clone()
    }

    fn page_file(&self) -> std::sync::MutexGuard<'_, PageFile> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current value of each key, sorted by key (`None`: absent),
    /// reading what neither the event nor the cache knows from redb in one
    /// read transaction; what redb gives is cached unless `no_cache`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if redb cannot be read.
    pub fn get_many(
        &mut self,
        keys: impl IntoIterator<Item = String>,
        no_cache: bool,
    ) -> Result<Vec<(String, Option<Bytes>)>> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for key in keys {
            let known = self.writes.lookup(&key).or_else(|| self.cache.lookup(&key));
            match known {
                Some(value) => found.push((key, value)),
                None => missing.push(key),
            }
        }
        self.store.count_memory_reads(found.len());
        if !missing.is_empty() {
            let values = self.store.get_many(&self.key, &missing)?;
            for (key, value) in missing.into_iter().zip(values) {
                let value = value.map(Bytes::from);
                if !no_cache {
                    self.cache.fill(&key, value.clone());
                }
                found.push((key, value));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// The entries in `range` as the running event sees them: redb's,
    /// under the pending commits, under the event's layers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if redb cannot be read.
    /// [`ErrorKind::TooLarge`] if the result would hold more than
    /// `max_bytes` of keys and values.
    pub fn list(&self, range: &ListRange, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let (lower, upper) = range.key_bounds();
        let mut overlay = BTreeMap::new();
        let mut cleared = self
            .cache
            .pending_in(&lower, upper.as_deref(), &mut overlay);
        cleared |= self
            .writes
            .overlay_in(&lower, upper.as_deref(), &mut overlay);
        self.store
            .list(&self.key, range, &overlay, cleared, max_bytes)
    }

    /// Hands what the event has committed so far, with the SQL pages it
    /// changed, to the committer. `record` is the object's directory
    /// record, asked for until one has been sent.
    pub fn flush(&mut self, record: impl FnOnce() -> ObjectRecord) {
        let (mut writes, mut confirmed) = self.writes.take_committed();
        // The cache numbers the commit; the SQL pages are staged under the
        // same number (an empty write set does not use its number).
        let seq = self.cache.next_seq();
        writes.pages = self.page_file().stage(seq);
        confirmed |= !writes.pages.is_empty();
        if writes.is_empty() {
            return;
        }
        if let Some(write) = writes.alarm {
            self.alarm = Some(write.record());
        }
        let record = (!self.registered).then(record);
        let staged = self.cache.stage(&writes);
        debug_assert_eq!(seq, staged);
        let gate = self.store.commit(self.key, writes, record).shared();
        self.registered = true;
        if confirmed {
            self.confirmed = Some((seq, gate.clone()));
        }
        self.in_flight.push_back((seq, gate));
    }

    /// The object's alarm as of every write set sent to the committer
    /// (the running event's own writes not counted).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if redb cannot be read.
    pub fn alarm(&mut self) -> Result<Option<AlarmRecord>> {
        if let Some(known) = self.alarm {
            return Ok(known);
        }
        let stored = self.store.read_alarm(&self.key)?;
        self.alarm = Some(stored);
        Ok(stored)
    }

    /// The last commit sent, done or not.
    pub fn latest_commit(&self) -> Option<Gate> {
        self.in_flight.back().map(|(_, gate)| gate.clone())
    }

    /// The gate an event's response, and a call the object makes, must
    /// pass.
    pub fn response_gate(&self) -> Option<Gate> {
        self.confirmed.as_ref().map(|(_, gate)| gate.clone())
    }

    /// Takes note of the commits that have finished.
    ///
    /// # Errors
    ///
    /// Why a commit failed: the object must then [`ObjectStorage::forget`]
    /// what it holds.
    pub fn settle(&mut self) -> std::result::Result<(), String> {
        while let Some((seq, gate)) = self.in_flight.front() {
            // Polls the gate once: nobody else may be waiting on it (an
            // allow-unconfirmed commit holds no response).
            match gate.clone().now_or_never() {
                None => break,
                Some(Ok(Ok(()))) => {
                    let seq = *seq;
                    self.in_flight.pop_front();
                    self.cache.durable(seq);
                    self.page_file().durable(seq);
                    if self.confirmed.as_ref().is_some_and(|(s, _)| *s <= seq) {
                        self.confirmed = None;
                    }
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(_)) => return Err("the committer stopped".into()),
            }
        }
        Ok(())
    }

    /// Drops the running event's writes, KV and SQL (it trapped).
    pub fn discard_event(&mut self) {
        self.writes.reset();
        self.page_file().discard_event();
    }

    /// Goes back to what redb holds, once nothing sent is still in flight.
    pub async fn forget(&mut self) {
        let _ = pass_gate(self.latest_commit()).await;
        self.cache.clear();
        self.page_file().forget();
        self.in_flight.clear();
        self.confirmed = None;
        self.registered = false;
        self.alarm = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writes::WriteOptions;

    const CONFIRMED: WriteOptions = WriteOptions {
        allow_unconfirmed: false,
        no_cache: false,
    };

    fn record() -> ObjectRecord {
        ObjectRecord {
            class: "C".into(),
            name: None,
        }
    }

    fn open(dir: &tempfile::TempDir) -> Arc<Store> {
        let (store, _stopped) =
            Store::open(&dir.path().join("db.redb"), None, Arc::new(|_: &[_]| {})).unwrap();
        Arc::new(store)
    }

    fn storage(store: &Arc<Store>) -> ObjectStorage {
        let budget = CacheBudget::new(usize::MAX, usize::MAX);
        ObjectStorage::new(
            ObjectKey::new(0, &[1; 32]),
            store.clone(),
            budget,
            1 << 20,
            usize::MAX,
        )
    }

    fn get(storage: &mut ObjectStorage, key: &str) -> Option<Bytes> {
        storage.get_many([key.to_owned()], false).unwrap()[0]
            .1
            .clone()
    }

    fn wait(gate: Option<Gate>) -> Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(pass_gate(gate))
    }

    #[test]
    fn writes_read_back_from_the_event_then_the_pending_commit_then_redb() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut object = storage(&store);
        object.writes.write("a".into(), Some("1".into()), CONFIRMED);
        assert_eq!(get(&mut object, "a"), Some("1".into()));
        object.flush(record);
        // Sent, maybe not durable yet: the cache still answers.
        assert_eq!(get(&mut object, "a"), Some("1".into()));
        let gate = object.response_gate();
        assert!(gate.is_some(), "a confirmed write holds the response");
        wait(gate).unwrap();
        object.settle().unwrap();
        assert!(object.response_gate().is_none());
        object.writes.write("b".into(), Some("2".into()), CONFIRMED);
        let listed = object.list(&ListRange::default(), usize::MAX).unwrap();
        assert_eq!(
            listed,
            [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
        );
        // Another view of the same object reads what is durable from redb.
        let reads = store.disk_reads();
        let mut fresh = storage(&store);
        assert_eq!(get(&mut fresh, "a"), Some("1".into()));
        assert_eq!(get(&mut fresh, "b"), None);
        assert_eq!(store.disk_reads(), reads + 2);
        store.close();
    }

    #[test]
    fn unconfirmed_writes_commit_without_holding_the_response() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut object = storage(&store);
        let unconfirmed = WriteOptions {
            allow_unconfirmed: true,
            no_cache: false,
        };
        object
            .writes
            .write("a".into(), Some("1".into()), unconfirmed);
        object.flush(record);
        assert!(object.response_gate().is_none());
        wait(object.latest_commit()).unwrap();
        assert_eq!(get(&mut storage(&store), "a"), Some("1".into()));
        store.close();
    }

    #[test]
    fn a_discarded_event_leaves_what_was_sent_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut object = storage(&store);
        object
            .writes
            .write("kept".into(), Some("1".into()), CONFIRMED);
        object.flush(record);
        object
            .writes
            .write("dropped".into(), Some("2".into()), CONFIRMED);
        object.pages().lock().unwrap().write(0, &[7; 10]).unwrap();
        object.discard_event();
        assert_eq!(get(&mut object, "kept"), Some("1".into()));
        assert_eq!(get(&mut object, "dropped"), None);
        assert_eq!(object.pages().lock().unwrap().size().unwrap(), 0);
        wait(object.latest_commit()).unwrap();
        store.close();
    }

    #[test]
    fn a_failed_commit_is_reported_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut object = storage(&store);
        object.writes.write("a".into(), Some("1".into()), CONFIRMED);
        object.flush(record);
        wait(object.latest_commit()).unwrap();
        // The committer has stopped: the next commit fails.
        store.close();
        object.writes.write("a".into(), Some("2".into()), CONFIRMED);
        object.flush(record);
        assert!(wait(object.response_gate()).is_err());
        assert!(object.settle().is_err());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(object.forget());
        assert!(object.response_gate().is_none() && object.latest_commit().is_none());
    }
}
