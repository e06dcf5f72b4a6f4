//! The store: the committed state of every object in one [`Backend`], read
//! directly and written only through the committer
//! ([`crate::committer`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::alarm::{AlarmListener, AlarmRecord};
use crate::backend::{Backend, KeyScan, ObjectWrites};
use crate::backends::redb::RedbBackend;
use crate::committer::{CommitHook, CommitRequest, CommitResult, Health, Message};
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::history::{Bookmark, HistorySettings, HistoryStats};
use crate::keys::ObjectKey;
use crate::pages::{PageSource, PageView};
use crate::writes::{ListRange, WriteSet};

/// The committed state of every object and the sending side of the
/// committer.
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Whether commits go through, as the committer last found.
    health: Arc<Mutex<Health>>,
    commits: mpsc::Sender<Message>,
    /// Keys and SQL pages read and lists run against the backend
    /// ([`Store::disk_reads`]).
    disk_reads: Arc<AtomicU64>,
    memory_reads: AtomicU64,
    /// Stops the history's pruner, when it runs.
    pruner: Mutex<Option<mpsc::Sender<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("disk_reads", &self.disk_reads())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the redb database at `path` and starts its
    /// committer. The receiver fires once the committer has committed
    /// everything it was sent and stopped (after [`Store::close`]) and its
    /// database handle is gone. `hook` is called around each group commit;
    /// `alarms` hears of every committed alarm change.
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
        Store::start(Arc::new(RedbBackend::open(path)?), hook, alarms)
    }

    /// Starts the committer over `backend`, as [`Store::open`] does.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Io`] if the committer thread cannot start.
    pub fn start(
        backend: Arc<dyn Backend>,
        hook: Option<CommitHook>,
        alarms: AlarmListener,
    ) -> Result<(Store, oneshot::Receiver<()>)> {
        let health = Arc::new(Mutex::new(Health::Writable));
        let (commits, stopped) =
            crate::committer::start(backend.clone(), health.clone(), hook, alarms)?;
        Ok((
            Store {
                backend,
                health,
                commits,
                disk_reads: Arc::default(),
                memory_reads: AtomicU64::new(0),
                pruner: Mutex::new(None),
            },
            stopped,
        ))
    }

    /// The backend the store reads and commits to.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
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

    /// Tells the committer to commit what it has and stop, and stops
    /// reads; the backend is released once the committer is done.
    pub fn close(&self) {
        self.pruner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self.commits.send(Message::Stop);
        self.backend.close();
    }

    /// Turns history on (and starts its pruner thread) or off
    /// ([`crate::history`]); call it before the first commit.
    ///
    /// # Errors
    ///
    /// As [`Backend::set_history`]; [`crate::ErrorKind::Io`] if the pruner
    /// thread cannot start.
    pub fn enable_history(&self, settings: Option<HistorySettings>) -> Result<()> {
        self.backend.set_history(settings)?;
        let Some(settings) = settings else {
            return Ok(());
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let backend = self.backend.clone();
        std::thread::Builder::new()
            .name("dohost-history".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(settings.prune_interval())
                {
                    match backend.prune_history() {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!("pruned the history of {n} commit(s)"),
                        Err(e) => tracing::warn!("cannot prune the history: {e}"),
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    crate::ErrorKind::Io,
                    format!("cannot start the history pruner: {e}"),
                )
            })?;
        *self.pruner.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
        Ok(())
    }

    /// What the history holds; `None` when it is off.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    pub fn history_stats(&self) -> Result<Option<HistoryStats>> {
        self.backend.history_stats()
    }

    /// The bookmark of the newest durable commit.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when history is off.
    pub fn current_bookmark(&self) -> Result<Bookmark> {
        self.backend
            .history_stats()?
            .map(|s| s.latest)
            .ok_or_else(crate::history::history_off)
    }

    /// The bookmark of the last commit at or before `time` (ms since the
    /// epoch).
    ///
    /// # Errors
    ///
    /// As [`Backend::bookmark_for_time`].
    pub fn bookmark_for_time(&self, time: i64) -> Result<Bookmark> {
        self.backend.bookmark_for_time(time)
    }

    /// Whether `bookmark` can be restored now: history is on, and it is
    /// neither older than the history kept nor newer than the last commit.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] saying why not.
    pub fn check_bookmark(&self, bookmark: Bookmark) -> Result<()> {
        let stats = self
            .backend
            .history_stats()?
            .ok_or_else(crate::history::history_off)?;
        if bookmark < stats.floor {
            return Err(crate::history::before_floor(
                &format!("bookmark {bookmark}"),
                stats.floor,
                stats.floor_time,
            ));
        }
        if bookmark > stats.latest {
            return Err(crate::history::after_latest(bookmark, stats.latest));
        }
        Ok(())
    }

    /// The write set that brings `object` back to what it held at
    /// `bookmark`: commit it (nothing else of the object may be in flight).
    ///
    /// # Errors
    ///
    /// As [`Backend::undo_since`].
    pub fn restore_writes(&self, object: &ObjectKey, bookmark: Bookmark) -> Result<WriteSet> {
        let since = self.backend.undo_since(object, bookmark)?;
        let pages = self.page_count(object)?;
        Ok(crate::history::restore_writes(&since, pages))
    }

    /// Storage reads that went to the backend so far: one per key a read
    /// did not find in memory, one per list.
    pub fn disk_reads(&self) -> u64 {
        self.disk_reads.load(Ordering::Relaxed)
    }

    /// Key reads answered from memory so far (the event's writes or the
    /// object's cache), without the backend.
    pub fn memory_reads(&self) -> u64 {
        self.memory_reads.load(Ordering::Relaxed)
    }

    /// Counts `n` key reads answered from memory.
    pub(crate) fn count_memory_reads(&self, n: usize) {
        self.memory_reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads committed values, one per key.
    pub(crate) fn get_many(
        &self,
        object: &ObjectKey,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.disk_reads
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.backend.get(object, keys)
    }

    /// The committed alarm of `object`, if it has one.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    pub fn read_alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>> {
        self.disk_reads.fetch_add(1, Ordering::Relaxed);
        self.backend.alarm(object)
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
        self.backend.alarms_after(after, limit)
    }

    /// The committed length of `object`'s SQL database file, in pages.
    pub(crate) fn page_count(&self, object: &ObjectKey) -> Result<u32> {
        self.committed_pages(object)?
            .page_count()
            .map_err(|e| Error::storage("read pages", e))
    }

    /// The committed SQL pages of `object` as one read transaction sees
    /// them now.
    pub(crate) fn committed_pages(&self, object: &ObjectKey) -> Result<Box<dyn PageView>> {
        self.backend.pages(object)
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
        let (lower, upper) = range.key_bounds();
        self.disk_reads.fetch_add(1, Ordering::Relaxed);
        let limit = range.limit.unwrap_or(usize::MAX);
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        if upper
            .as_ref()
            .is_some_and(|u| lower.as_bytes() >= u.as_slice())
            || limit == 0
        {
            return Ok(out);
        }
        // Each overlay key hides at most one committed entry: this many
        // committed entries make `limit` results, unless the bytes run out.
        let scan = KeyScan {
            start: lower.into_bytes(),
            end: upper,
            reverse: range.reverse,
            limit: limit.saturating_add(overlay.len()),
            max_bytes,
        };
        let mut committed = Committed {
            backend: &*self.backend,
            object,
            scan: (!committed_cleared).then_some(scan),
            buffer: Vec::new().into_iter(),
        };
        let mut ov: Box<dyn Iterator<Item = (&&str, &Option<&[u8]>)>> = if range.reverse {
            Box::new(overlay.iter().rev())
        } else {
            Box::new(overlay.iter())
        };
        let mut d = committed.next()?;
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
                            d = committed.next()?;
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
                d = committed.next()?;
            }
        }
        Ok(out)
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
            writes: ObjectWrites {
                object,
                writes,
                record,
            },
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

/// An object's committed entries in a scan, read from the backend in
/// chunks as the merge of [`Store::list`] needs them.
struct Committed<'a> {
    backend: &'a dyn Backend,
    object: &'a ObjectKey,
    /// What is left to read; `None` once it is all read.
    scan: Option<KeyScan>,
    buffer: std::vec::IntoIter<(String, Vec<u8>)>,
}

impl Committed<'_> {
    fn next(&mut self) -> Result<Option<(String, Vec<u8>)>> {
        if let Some(entry) = self.buffer.next() {
            return Ok(Some(entry));
        }
        let Some(scan) = self.scan.take() else {
            return Ok(None);
        };
        let chunk = self.backend.scan(self.object, &scan)?;
        let bytes: usize = chunk.iter().map(|(k, v)| k.len() + v.len()).sum();
        if chunk.len() < scan.limit && bytes <= scan.max_bytes {
            // The range is exhausted.
        } else if let Some((last, _)) = chunk.last() {
            // Cut by its limit or its bytes: the rest follows the last key.
            let mut rest = scan.clone();
            rest.limit -= chunk.len();
            if scan.reverse {
                rest.end = Some(last.as_bytes().to_vec());
            } else {
                rest.start = [last.as_bytes(), &[0]].concat();
            }
            self.scan = Some(rest);
        }
        self.buffer = chunk.into_iter();
        Ok(self.buffer.next())
    }
}

/// A page view whose reads count as the store's disk reads.
struct CountedPages {
    view: Box<dyn PageView>,
    reads: Arc<AtomicU64>,
}

impl PageView for CountedPages {
    fn read_page(&self, page: u32) -> std::result::Result<Option<Vec<u8>>, String> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.view.read_page(page)
    }

    fn page_count(&self) -> std::result::Result<u32, String> {
        self.view.page_count()
    }
}

impl PageSource for Store {
    fn view(&self, object: &ObjectKey) -> std::result::Result<Box<dyn PageView>, String> {
        match self.backend.pages(object) {
            Ok(view) => Ok(Box::new(CountedPages {
                view,
                reads: self.disk_reads.clone(),
            })),
            Err(e) => Err(e.to_string()),
        }
    }
}
