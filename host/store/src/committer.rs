//! The committer: one thread that is the backend's only writer.
//!
//! Writes never go to the backend from an event directly. When an event
//! ends, its write set is sent here ([`crate::Store::commit`]). The
//! committer takes every write set waiting, from every object, commits them
//! in one backend transaction (group commit: one fsync for all of them),
//! and only then
//! tells each one's waiter. A failed commit fails every waiter of its batch
//! and writes none of the batch; what was acknowledged before stays.
//! Callers hold an event's response until its write set is durable (the
//! output gate, [`crate::Gate`]).

/// Write sets (one per object turn) in each group commit (a histogram; its
/// count is the commits). The metrics are the host's (`dohost::metrics`).
pub const COMMIT_WRITE_SETS: &str = "dohost_commit_write_sets";
/// The time a group commit took, its fsync included (a histogram).
pub const COMMIT_DURATION: &str = "dohost_commit_duration_seconds";
/// The part of a group commit's time in the backend's commit: redb writing
/// its pages and the fsync that makes them durable, PostgreSQL's `COMMIT`
/// (a histogram).
pub const COMMIT_SYNC_DURATION: &str = "dohost_commit_sync_duration_seconds";
/// Group commits that failed (a counter).
pub const COMMIT_FAILURES: &str = "dohost_commit_failures_total";

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::alarm::AlarmListener;
use crate::backend::{Backend, ObjectWrites};
use crate::error::{Error, Result};

/// The largest number of write sets one transaction commits. Bounds the
/// memory and latency of one group commit under a flood of writes.
const MAX_WRITE_SETS_PER_COMMIT: usize = 4096;

/// The outcome the committer reports for a write set: `Err` names why its
/// commit failed.
pub type CommitResult = std::result::Result<(), String>;

/// Called by the committer around each group commit; lets tests hold a
/// commit back to observe the output gate.
pub type CommitHook = Arc<dyn Fn(CommitStage) + Send + Sync>;

/// Where the committer is in a group commit, for a [`CommitHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStage {
    /// About to begin the backend's transaction.
    Before,
    /// The transaction is durable; waiters are about to be told.
    After,
}

pub(crate) enum Message {
    Commit(CommitRequest),
    /// Commit everything received so far, then stop.
    Stop,
}

pub(crate) struct CommitRequest {
    pub(crate) writes: ObjectWrites,
    pub(crate) done: oneshot::Sender<CommitResult>,
}

/// Whether the store can write ([`crate::Store::health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Commits go through.
    Writable,
    /// A commit failed (a full or failing disk); writes fail fast with
    /// this reason until a retry commits again.
    Unwritable(String),
    /// The committer cannot go on (it panicked, or the file cannot be
    /// opened again): the process should exit and be restarted.
    Failed(String),
}

/// How long writes fail fast after a failed commit before the committer
/// tries the disk again; doubled after each failed retry up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Starts the committer thread over `backend`. The receiver fires once it
/// has stopped and the backend has let go of what it holds.
pub(crate) fn start(
    backend: Arc<dyn Backend>,
    health: Arc<Mutex<Health>>,
    hook: Option<CommitHook>,
    alarms: AlarmListener,
) -> Result<(mpsc::Sender<Message>, oneshot::Receiver<()>)> {
    let (tx, rx) = mpsc::channel();
    let (stopped_tx, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("dohost-committer".into())
        .spawn(move || {
            let mut committer = Committer {
                backend,
                health,
                hook,
                alarms,
                retry_at: None,
                retry_delay: FIRST_RETRY_DELAY,
                counts: CommitCounts::new(),
            };
            committer.run(&rx);
            // No commit may be sent to a stopped committer: later ones fail
            // at once (see Store::commit).
            drop(rx);
            drop(committer);
            let _ = stopped_tx.send(());
        })
        .map_err(|e| {
            Error::new(
                crate::ErrorKind::Io,
                format!("cannot start the committer thread: {e}"),
            )
        })?;
    Ok((tx, stopped))
}

struct Committer {
    backend: Arc<dyn Backend>,
    health: Arc<Mutex<Health>>,
    hook: Option<CommitHook>,
    alarms: AlarmListener,
    /// While unwritable: when to try the disk again.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    counts: CommitCounts,
}

/// The committer's metrics, registered once when it starts.
struct CommitCounts {
    write_sets: metrics::Histogram,
    duration: metrics::Histogram,
    failures: metrics::Counter,
}

impl CommitCounts {
    fn new() -> CommitCounts {
        CommitCounts {
            write_sets: metrics::histogram!(COMMIT_WRITE_SETS),
            duration: metrics::histogram!(COMMIT_DURATION),
            failures: metrics::counter!(COMMIT_FAILURES),
        }
    }
}

impl Committer {
    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn run(&mut self, rx: &mpsc::Receiver<Message>) {
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
            let result = self.commit(&batch);
            for (i, request) in batch.into_iter().enumerate() {
                let outcome = match &result {
                    Ok(refused) => match refused.iter().find(|(at, _)| *at == i) {
                        Some((_, reason)) => Err(reason.clone()),
                        None => Ok(()),
                    },
                    Err(e) => Err(e.clone()),
                };
                let _ = request.done.send(outcome);
            }
        }
        // Let go of the database: redb's file is released once the store's
        // readers have too.
        self.backend.release();
    }

    /// Commits one batch, or fails it fast while the disk cannot be
    /// written.
    fn commit(
        &mut self,
        batch: &[CommitRequest],
    ) -> std::result::Result<crate::backend::Refused, String> {
        match self.health() {
            Health::Failed(reason) => {
                return Err(format!("storage commit failed: {reason}"));
            }
            Health::Unwritable(reason) if self.retry_at.is_some_and(|at| Instant::now() < at) => {
                return Err(format!(
                    "storage commit failed: the database cannot be written now ({reason}); retrying shortly"
                ));
            }
            _ => {}
        }
        if let Some(hook) = &self.hook {
            hook(CommitStage::Before);
        }
        let started = Instant::now();
        let mut changes = Vec::new();
        let writes: Vec<&ObjectWrites> = batch.iter().map(|r| &r.writes).collect();
        let result = self.backend.commit(&writes, &mut changes);
        let elapsed = started.elapsed();
        tracing::debug!(
            write_sets = batch.len(),
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "group commit"
        );
        self.counts.write_sets.record(batch.len() as f64);
        self.counts.duration.record(elapsed.as_secs_f64());
        if result.is_err() {
            self.counts.failures.increment(1);
        }
        match &result {
            Ok(_) => {
                if !changes.is_empty() {
                    (self.alarms)(&changes);
                }
                if let Some(hook) = &self.hook {
                    hook(CommitStage::After);
                }
                if self.retry_at.take().is_some() {
                    tracing::warn!("the database can be written again");
                    self.retry_delay = FIRST_RETRY_DELAY;
                    self.set_health(Health::Writable);
                }
            }
            Err(e) => {
                tracing::error!(write_sets = batch.len(), "group commit failed: {e}");
                self.recover(e);
            }
        }
        result
    }

    /// After a failed commit: lets the backend get ready again (redb opens
    /// its file again; what was acknowledged is there) and fails writes
    /// fast until a retry commits.
    fn recover(&mut self, cause: &str) {
        let reason = cause
            .strip_prefix("storage commit failed: ")
            .unwrap_or(cause)
            .to_owned();
        match self.backend.recover() {
            Ok(()) => {
                tracing::warn!(
                    "writes fail for {} ms, then are tried again",
                    self.retry_delay.as_millis()
                );
                self.retry_at = Some(Instant::now() + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_DELAY);
                self.set_health(Health::Unwritable(reason));
            }
            Err(e) => self.set_health(Health::Failed(format!("{reason}; {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    use bytes::Bytes;
    use redb::StorageBackend;
    use redb::backends::FileBackend;

    use redb::Database;

    use super::*;
    use crate::alarm::{AlarmChange, AlarmRecord, AlarmWrite};
    use crate::writes::{Write, WriteSet};
    use crate::{ObjectKey, RedbBackend, Store};

    /// A disk that fails every write and sync while `failing` is set, as a
    /// full or broken disk would.
    #[derive(Debug)]
    struct FailingDisk {
        inner: FileBackend,
        failing: Arc<AtomicBool>,
    }

    impl FailingDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the disk failed"));
            }
            Ok(())
        }
    }

    impl StorageBackend for FailingDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    /// Holds the committer at the start of a group commit while `held`,
    /// counts group commits, and from commit number `fail_from` on makes
    /// the disk fail.
    struct Gatekeeper {
        held: Mutex<bool>,
        released: Condvar,
        commits: AtomicUsize,
        fail_from: AtomicUsize,
        failing: Arc<AtomicBool>,
    }

    impl Gatekeeper {
        fn new() -> Arc<Gatekeeper> {
            Arc::new(Gatekeeper {
                held: Mutex::new(false),
                released: Condvar::new(),
                commits: AtomicUsize::new(0),
                fail_from: AtomicUsize::new(usize::MAX),
                failing: Arc::new(AtomicBool::new(false)),
            })
        }

        fn hook(self: &Arc<Self>) -> CommitHook {
            let me = self.clone();
            Arc::new(move |stage| {
                if stage == CommitStage::Before {
                    let n = me.commits.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut held = me.held.lock().unwrap();
                    while *held {
                        held = me.released.wait(held).unwrap();
                    }
                    if n >= me.fail_from.load(Ordering::SeqCst) {
                        me.failing.store(true, Ordering::SeqCst);
                    }
                }
            })
        }

        fn hold(&self) {
            *self.held.lock().unwrap() = true;
        }

        /// Waits until the committer has begun its `n`th group commit.
        fn wait_for_commit(&self, n: usize) {
            while self.commits.load(Ordering::SeqCst) < n {
                std::thread::yield_now();
            }
        }

        fn release(&self) {
            *self.held.lock().unwrap() = false;
            self.released.notify_all();
        }
    }

    fn object(n: u8) -> ObjectKey {
        ObjectKey::new(1, &[n; 32])
    }

    fn put(key: &str, value: &str) -> WriteSet {
        let mut writes = WriteSet::default();
        writes.entries.insert(
            key.to_owned(),
            Write {
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                no_cache: false,
            },
        );
        writes
    }

    fn read(store: &Store, n: u8, key: &str) -> Option<Vec<u8>> {
        store.get_many(&object(n), &[key.to_owned()]).unwrap()[0].clone()
    }

    fn no_alarms() -> AlarmListener {
        Arc::new(|_: &[AlarmChange]| {})
    }

    /// Opens a store on `path` whose disk fails once `gate` says so.
    fn open_failing(
        path: &std::path::Path,
        gate: &Arc<Gatekeeper>,
    ) -> (Store, oneshot::Receiver<()>) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        let disk = FailingDisk {
            inner: FileBackend::new(file).unwrap(),
            failing: gate.failing.clone(),
        };
        let db = Database::builder().create_with_backend(disk).unwrap();
        let backend = RedbBackend::start(db, None).unwrap();
        Store::start(Arc::new(backend), Some(gate.hook()), no_alarms()).unwrap()
    }

    fn close(store: Store, stopped: oneshot::Receiver<()>) {
        store.close();
        let _ = stopped.blocking_recv();
    }

    /// Opens a store of one backend with a commit hook and an alarm
    /// listener.
    type Open<'a> = &'a dyn Fn(Option<CommitHook>, AlarmListener) -> (Store, oneshot::Receiver<()>);

    /// A redb store in `dir`.
    fn redb(
        dir: &tempfile::TempDir,
    ) -> impl Fn(Option<CommitHook>, AlarmListener) -> (Store, oneshot::Receiver<()>) {
        let path = dir.path().join("db.redb");
        move |hook, alarms| Store::open(&path, hook, alarms).unwrap()
    }

    /// A PostgreSQL store on a fresh database of `server`.
    fn postgres(
        server: &dohost_test_postgres::Postgres,
    ) -> impl Fn(Option<CommitHook>, AlarmListener) -> (Store, oneshot::Receiver<()>) {
        let url = server.database();
        move |hook, alarms| {
            let backend = crate::PostgresBackend::connect(&url).unwrap();
            Store::start(Arc::new(backend), hook, alarms).unwrap()
        }
    }

    #[test]
    fn a_batch_from_several_objects_commits_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        several_objects_in_one_transaction(&redb(&dir));
    }

    #[test]
    fn postgres_commits_a_batch_from_several_objects_in_one_transaction() {
        let server = dohost_test_postgres::Postgres::start();
        several_objects_in_one_transaction(&postgres(&server));
    }

    fn several_objects_in_one_transaction(open: Open<'_>) {
        let gate = Gatekeeper::new();
        let (store, stopped) = open(Some(gate.hook()), no_alarms());
        // The first commit holds the committer while three more objects'
        // write sets queue up behind it.
        gate.hold();
        let first = store.commit(object(0), put("k", "0"), None);
        gate.wait_for_commit(1);
        let queued: Vec<_> = (1..=3)
            .map(|n| store.commit(object(n), put("k", &n.to_string()), None))
            .collect();
        gate.release();
        assert_eq!(first.blocking_recv().unwrap(), Ok(()));
        for done in queued {
            assert_eq!(done.blocking_recv().unwrap(), Ok(()));
        }
        assert_eq!(
            gate.commits.load(Ordering::SeqCst),
            2,
            "one group commit for the three"
        );
        for n in 0..=3 {
            assert_eq!(read(&store, n, "k"), Some(n.to_string().into_bytes()));
        }
        close(store, stopped);
    }

    #[test]
    fn one_objects_write_sets_in_one_batch_end_as_if_committed_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        write_sets_in_one_batch_end_as_if_in_turn(&redb(&dir));
    }

    #[test]
    fn postgres_ends_one_objects_write_sets_in_one_batch_as_if_committed_in_turn() {
        let server = dohost_test_postgres::Postgres::start();
        write_sets_in_one_batch_end_as_if_in_turn(&postgres(&server));
    }

    fn write_sets_in_one_batch_end_as_if_in_turn(open: Open<'_>) {
        let gate = Gatekeeper::new();
        let (store, stopped) = open(Some(gate.hook()), no_alarms());
        let page = |n: u8| Bytes::from(vec![n; crate::PAGE_SIZE]);
        let pages = |writes: &[(u32, u8)], truncate: Option<u32>| {
            let mut set = WriteSet::default();
            set.pages.truncate = truncate;
            for &(number, fill) in writes {
                set.pages.pages.insert(number, page(fill));
            }
            set
        };
        let mut deletes = put("b", "2");
        deletes.entries.insert(
            "a".into(),
            Write {
                value: None,
                no_cache: false,
            },
        );
        let mut clears = pages(&[(0, 7)], None);
        clears.clear = true;
        clears.entries = put("c", "3").entries;
        gate.hold();
        let first = store.commit(object(9), put("x", "0"), None);
        gate.wait_for_commit(1);
        let queued: Vec<_> = [
            // Object 1: a key written, overwritten, deleted; pages written
            // again, cut and written again after the cut.
            (1, put("a", "1")),
            (1, pages(&[(0, 1), (1, 1), (2, 1)], None)),
            (1, deletes),
            (1, pages(&[(1, 2)], None)),
            (1, pages(&[(3, 3)], Some(2))),
            // Object 2: written, then cleared and written again.
            (2, put("a", "1")),
            (2, pages(&[(0, 1), (1, 1)], None)),
            (2, clears),
        ]
        .into_iter()
        .map(|(n, writes)| store.commit(object(n), writes, None))
        .collect();
        gate.release();
        assert_eq!(first.blocking_recv().unwrap(), Ok(()));
        for done in queued {
            assert_eq!(done.blocking_recv().unwrap(), Ok(()));
        }
        assert_eq!(gate.commits.load(Ordering::SeqCst), 2, "one batch");
        let committed = |n: u8, number: u32| {
            let view = store.committed_pages(&object(n)).unwrap();
            view.read_page(number).unwrap().map(|p| p[0])
        };
        assert_eq!(read(&store, 1, "a"), None);
        assert_eq!(read(&store, 1, "b"), Some(b"2".to_vec()));
        let object_1: Vec<_> = (0..5).map(|p| committed(1, p)).collect();
        assert_eq!(object_1, [Some(1), Some(2), None, Some(3), None]);
        assert_eq!(read(&store, 2, "a"), None);
        assert_eq!(read(&store, 2, "c"), Some(b"3".to_vec()));
        let object_2: Vec<_> = (0..3).map(|p| committed(2, p)).collect();
        assert_eq!(object_2, [Some(7), None, None]);
        close(store, stopped);
    }

    #[test]
    fn a_failed_commit_fails_every_waiter_and_loses_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let gate = Gatekeeper::new();
        let (store, stopped) = open_failing(&path, &gate);
        let acknowledged = store.commit(object(0), put("kept", "yes"), None);
        assert_eq!(acknowledged.blocking_recv().unwrap(), Ok(()));

        // Commit 2 holds the committer while three objects' write sets
        // queue up for commit 3, which meets a failing disk.
        gate.hold();
        let second = store.commit(object(9), put("kept", "too"), None);
        gate.wait_for_commit(2);
        let failed: Vec<_> = (0..=2)
            .map(|n| store.commit(object(n), put("lost", &n.to_string()), None))
            .collect();
        gate.fail_from.store(3, Ordering::SeqCst);
        gate.release();
        assert_eq!(second.blocking_recv().unwrap(), Ok(()));
        for done in failed {
            let outcome = done.blocking_recv().unwrap();
            assert!(
                outcome
                    .as_ref()
                    .is_err_and(|e| e.starts_with("storage commit failed")),
                "{outcome:?}"
            );
        }
        assert_eq!(gate.commits.load(Ordering::SeqCst), 3);
        close(store, stopped);

        // Reopened on a working disk: every acknowledged write is there,
        // and nothing of the failed batch.
        let (store, stopped) = Store::open(&path, None, no_alarms()).unwrap();
        assert_eq!(read(&store, 0, "kept"), Some(b"yes".to_vec()));
        assert_eq!(read(&store, 9, "kept"), Some(b"too".to_vec()));
        for n in 0..=2 {
            assert_eq!(read(&store, n, "lost"), None, "object {n}");
        }
        close(store, stopped);
    }

    #[test]
    fn a_commit_after_close_fails_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (store, stopped) = Store::open(&dir.path().join("db.redb"), None, no_alarms()).unwrap();
        store.close();
        let _ = stopped.blocking_recv();
        let outcome = store.commit(object(0), put("k", "v"), None).blocking_recv();
        assert!(matches!(outcome, Ok(Err(_))), "{outcome:?}");
    }

    #[test]
    fn alarm_changes_reach_the_listener_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        alarm_changes_reach_the_listener(&redb(&dir));
    }

    #[test]
    fn postgres_alarm_changes_reach_the_listener_once_durable() {
        let server = dohost_test_postgres::Postgres::start();
        alarm_changes_reach_the_listener(&postgres(&server));
    }

    fn alarm_changes_reach_the_listener(open: Open<'_>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener: AlarmListener = {
            let heard = heard.clone();
            Arc::new(move |changes: &[AlarmChange]| {
                heard.lock().unwrap().extend_from_slice(changes)
            })
        };
        let (store, stopped) = open(None, listener);
        let record = AlarmRecord {
            time: 50,
            retries: 0,
        };
        let commit = |write| {
            let writes = WriteSet {
                alarm: Some(write),
                ..WriteSet::default()
            };
            store
                .commit(object(0), writes, None)
                .blocking_recv()
                .unwrap()
        };
        commit(AlarmWrite::Set(record)).unwrap();
        // A delivery that began keeps the time: the scheduler is not told.
        commit(AlarmWrite::Started(AlarmRecord {
            retries: 1,
            ..record
        }))
        .unwrap();
        commit(AlarmWrite::Delete).unwrap();
        assert_eq!(
            *heard.lock().unwrap(),
            [
                AlarmChange {
                    object: object(0),
                    old: None,
                    new: Some(50)
                },
                AlarmChange {
                    object: object(0),
                    old: Some(50),
                    new: None
                }
            ]
        );
        assert_eq!(store.alarms_after(None, 10).unwrap(), []);
        close(store, stopped);
    }
}
