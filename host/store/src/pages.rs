//! An object's SQL database file, as SQLite sees it through the VFS
//! ([`crate::vfs`]): a byte array cut into pages of [`PAGE_SIZE`] bytes,
//! kept in redb's `pages` table.
//!
//! A page's current bytes come from, newest first:
//!
//! - the running event's **dirty** pages (what SQLite wrote during the event;
//!   they go to the committer with the event's KV writes when it ends, or
//!   are dropped if it traps);
//! - **pending** pages: handed to the committer and not yet durable, each
//!   with the sequence number of its commit (the same numbers the KV cache
//!   uses, see [`crate::cache`]);
//! - redb's `pages` table.
//!
//! A **cut** (SQLite truncating the file, or `delete-all` cutting it to
//! nothing) hides every older page at or after it: the event's own cut until
//! the event is staged, then a pending cut until its commit is durable. Pages
//! SQLite writes after a cut are newer than it, so they show.
//!
//! SQLite keeps its own cache of pages in the connection, so this layer
//! caches nothing clean: a read that reaches redb is one SQLite missed. The
//! misses of one host call (a `COUNT(*)` past the cache may miss hundreds)
//! are read in one redb read transaction, a [`PageView`], ended by
//! [`PageFile::end_reads`] or when a commit becomes durable.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::keys::ObjectKey;
use crate::writes::PageWrites;

/// The size of a page of an object's SQL database file, in bytes (SQLite's
/// default page size, which objects cannot change).
pub const PAGE_SIZE: usize = 4096;

/// Why a write to the file failed.
#[derive(Debug)]
pub enum WriteError {
    /// The file would outgrow the object's database size limit.
    Full,
    /// Reading the page to change part of it failed (see
    /// [`PageFile::last_error`]).
    Read,
    /// The running event changed more pages than one event may (see
    /// [`PageFile::last_error`]).
    EventTooLarge,
}

/// One object's database file (see the module docs).
pub struct PageFile {
    object: ObjectKey,
    store: Arc<dyn PageSource>,
    max_bytes: u64,
    /// The most bytes of pages one event may change.
    max_event_bytes: usize,
    /// The file's length as the running event sees it; `None` until first
    /// needed (then read from redb: nothing else is pending).
    len: Option<u64>,
    /// The length once the event's writes are dropped: what was staged.
    staged_len: Option<u64>,
    dirty: BTreeMap<u32, Bytes>,
    /// The lowest cut of the running event, in pages.
    event_cut: Option<u32>,
    pending: BTreeMap<u32, (u64, Bytes)>,
    /// Cuts handed to the committer: (commit, pages).
    pending_cuts: Vec<(u64, u32)>,
    /// The committed pages this host call reads (see
    /// [`PageFile::end_reads`]).
    view: Option<Box<dyn PageView>>,
    /// The last error reading redb, to explain SQLite's "disk I/O error".
    pub last_error: Option<String>,
}

/// Where committed pages come from: the [`crate::Store`], or [`MemoryPages`] in
/// tests of what reads pages.
pub trait PageSource: Send + Sync {
    /// The committed pages of `object` as of now, all read in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// Why the transaction could not begin.
    fn view(&self, object: &ObjectKey) -> Result<Box<dyn PageView>, String>;
}

/// One object's committed pages at one moment (one read transaction).
pub trait PageView: Send + Sync {
    /// The committed bytes of `page`, if it was ever written.
    ///
    /// # Errors
    ///
    /// Why the page could not be read (a damaged page, say).
    fn read_page(&self, page: u32) -> Result<Option<Vec<u8>>, String>;
    /// The committed length of the file, in pages.
    ///
    /// # Errors
    ///
    /// Why it could not be read.
    fn page_count(&self) -> Result<u32, String>;
}

impl<T: PageView + ?Sized> PageView for Arc<T> {
    fn read_page(&self, page: u32) -> Result<Option<Vec<u8>>, String> {
        T::read_page(self, page)
    }

    fn page_count(&self) -> Result<u32, String> {
        T::page_count(self)
    }
}

fn page_of(offset: u64) -> u32 {
    u32::try_from(offset / PAGE_SIZE as u64).unwrap_or(u32::MAX)
}

fn pages_for(len: u64) -> u32 {
    u32::try_from(len.div_ceil(PAGE_SIZE as u64)).unwrap_or(u32::MAX)
}

impl PageFile {
    /// The file of `object`, read from `store`, that may grow to
    /// `max_bytes`.
    pub fn new(object: ObjectKey, store: Arc<dyn PageSource>, max_bytes: u64) -> PageFile {
        PageFile {
            object,
            store,
            max_bytes,
            max_event_bytes: usize::MAX,
            len: None,
            staged_len: None,
            dirty: BTreeMap::new(),
            event_cut: None,
            pending: BTreeMap::new(),
            pending_cuts: Vec::new(),
            view: None,
            last_error: None,
        }
    }

    /// This file, whose events may change at most `bytes` of pages each.
    #[must_use]
    pub fn with_event_limit(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The committed pages, read in one transaction from the first read of
    /// a host call to [`PageFile::end_reads`]. A statement that misses
    /// hundreds of pages in SQLite's cache then begins one transaction, not
    /// one per page.
    fn committed(&mut self) -> Result<&dyn PageView, String> {
        if self.view.is_none() {
            self.view = Some(self.store.view(&self.object)?);
        }
        Ok(self.view.as_deref().expect("set above"))
    }

    /// Ends the reads of a host call: the next read sees redb anew. Until
    /// then the view pins what its transaction saw, which is right only
    /// while every commit since it began is still pending here; so
    /// [`PageFile::durable`] ends it too.
    pub fn end_reads(&mut self) {
        self.view = None;
    }

    fn fail(&mut self, e: String) -> String {
        self.last_error = Some(e.clone());
        e
    }

    /// The file's size in bytes.
    ///
    /// # Errors
    ///
    /// Why the committed length could not be read.
    pub fn size(&mut self) -> Result<u64, String> {
        if let Some(len) = self.len {
            return Ok(len);
        }
        let pages = self
            .committed()
            .and_then(|view| view.page_count())
            .map_err(|e| self.fail(e))?;
        let len = u64::from(pages) * PAGE_SIZE as u64;
        self.len = Some(len);
        self.staged_len = Some(len);
        Ok(len)
    }

    /// The current bytes of `page` (zeros if it was never written).
    fn page(&mut self, page: u32) -> Result<Bytes, String> {
        if let Some(bytes) = self.dirty.get(&page) {
            return Ok(bytes.clone());
        }
        let zeros = || Bytes::from(vec![0u8; PAGE_SIZE]);
        if self.event_cut.is_some_and(|cut| page >= cut) {
            return Ok(zeros());
        }
        if let Some((_, bytes)) = self.pending.get(&page) {
            return Ok(bytes.clone());
        }
        if self.pending_cuts.iter().any(|&(_, cut)| page >= cut) {
            return Ok(zeros());
        }
        match self.committed().and_then(|view| view.read_page(page)) {
            Ok(Some(mut bytes)) => {
                bytes.resize(PAGE_SIZE, 0);
                Ok(Bytes::from(bytes))
            }
            Ok(None) => Ok(zeros()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; `Ok(false)` if the file ended
    /// first (the rest of `buf` is zeroed, as SQLite requires).
    ///
    /// # Errors
    ///
    /// Why a committed page could not be read.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<bool, String> {
        let len = self.size()?;
        let end = offset.saturating_add(buf.len() as u64);
        let available = usize::try_from(len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        buf[available..].fill(0);
        let mut done = 0;
        while done < available {
            let at = offset + done as u64;
            let page = self.page(page_of(at))?;
            let within = (at % PAGE_SIZE as u64) as usize;
            let n = (PAGE_SIZE - within).min(available - done);
            buf[done..done + n].copy_from_slice(&page[within..within + n]);
            done += n;
        }
        Ok(end <= len)
    }

    /// Writes `data` at `offset`, growing the file as needed.
    ///
    /// # Errors
    ///
    /// [`WriteError::Full`] past the size limit, [`WriteError::Read`] if
    /// a page to change in part could not be read.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let len = self.size().map_err(|_| WriteError::Read)?;
        let end = offset.saturating_add(data.len() as u64);
        if end > self.max_bytes {
            return Err(WriteError::Full);
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let number = page_of(at);
            let within = (at % PAGE_SIZE as u64) as usize;
            let n = (PAGE_SIZE - within).min(data.len() - done);
            let chunk = &data[done..done + n];
            if n == PAGE_SIZE
                && u64::from(number) < len / PAGE_SIZE as u64
                && !self.dirty.contains_key(&number)
                && self.page(number).map_err(|_| WriteError::Read)? == chunk
            {
                // A page SQLite writes back unchanged (a large SQLite page
                // is several of these, of which a small change touches one
                // or two): nothing to commit.
                done += n;
                continue;
            }
            if !self.dirty.contains_key(&number)
                && (self.dirty.len() + 1) * PAGE_SIZE > self.max_event_bytes
            {
                self.last_error = Some(format!(
                    "the event changed {} bytes of SQL pages, the limit for one event ([limits] write_set_bytes); split the work over several events",
                    self.max_event_bytes
                ));
                return Err(WriteError::EventTooLarge);
            }
            let bytes = if n == PAGE_SIZE {
                Bytes::copy_from_slice(chunk)
            } else {
                let mut page = self.page(number).map_err(|_| WriteError::Read)?.to_vec();
                page[within..within + n].copy_from_slice(chunk);
                Bytes::from(page)
            };
            self.dirty.insert(number, bytes);
            done += n;
        }
        self.len = Some(len.max(end));
        Ok(())
    }

    /// Sets the file's length to `size` bytes.
    ///
    /// # Errors
    ///
    /// As [`PageFile::write`].
    pub fn truncate(&mut self, size: u64) -> Result<(), WriteError> {
        let len = self.size().map_err(|_| WriteError::Read)?;
        if size > self.max_bytes {
            return Err(WriteError::Full);
        }
        if size >= len {
            if size > len {
                // Growing: the last page must exist for the length to last
                // (the bytes past the old end are zeros already).
                self.write(size - 1, &[0])?;
            }
            return Ok(());
        }
        let keep = pages_for(size);
        self.dirty.split_off(&keep);
        self.event_cut = Some(self.event_cut.map_or(keep, |c| c.min(keep)));
        let partial = size % PAGE_SIZE as u64;
        if partial != 0 {
            // Zero the cut-off part of the last page, so growing again reads
            // zeros there.
            let last = page_of(size);
            let mut page = self.page(last).map_err(|_| WriteError::Read)?.to_vec();
            page[partial as usize..].fill(0);
            self.dirty.insert(last, Bytes::from(page));
        }
        self.len = Some(size);
        Ok(())
    }

    /// `delete-all`: the file is empty from now on.
    pub fn wipe(&mut self) {
        self.dirty.clear();
        self.event_cut = Some(0);
        self.len = Some(0);
    }

    /// Hands the event's changes to the commit numbered `seq`; they stay
    /// visible as pending until [`PageFile::durable`] says so.
    pub fn stage(&mut self, seq: u64) -> PageWrites {
        let writes = PageWrites {
            truncate: self.event_cut.take(),
            pages: std::mem::take(&mut self.dirty),
        };
        if let Some(cut) = writes.truncate {
            self.pending.split_off(&cut);
            self.pending_cuts.push((seq, cut));
        }
        for (number, bytes) in &writes.pages {
            self.pending.insert(*number, (seq, bytes.clone()));
        }
        self.staged_len = self.len;
        writes
    }

    /// Commits up to `seq` are durable: their pages are in redb.
    pub fn durable(&mut self, seq: u64) {
        // The view may predate these commits: its transaction would not
        // see the pages they no longer hold pending.
        self.view = None;
        self.pending.retain(|_, (s, _)| *s > seq);
        self.pending_cuts.retain(|(s, _)| *s > seq);
    }

    /// Drops the running event's changes (it trapped).
    pub fn discard_event(&mut self) {
        self.dirty.clear();
        self.event_cut = None;
        self.len = self.staged_len;
    }

    /// Forgets everything but redb (after a failed commit, once nothing is
    /// in flight).
    pub fn forget(&mut self) {
        self.discard_event();
        self.pending.clear();
        self.pending_cuts.clear();
        self.view = None;
        self.len = None;
        self.staged_len = None;
    }
}

/// Committed pages of one file in memory: a [`PageSource`] for testing what
/// reads pages (the SQL engine) without a database.
#[derive(Default, Debug)]
pub struct MemoryPages(std::sync::Mutex<BTreeMap<u32, Vec<u8>>>);

/// A copy of [`MemoryPages`] at one moment.
struct MemoryView(BTreeMap<u32, Vec<u8>>);

impl PageView for MemoryView {
    fn read_page(&self, page: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(&page).cloned())
    }

    fn page_count(&self) -> Result<u32, String> {
        Ok(self.0.keys().next_back().map_or(0, |p| p + 1))
    }
}

impl PageSource for MemoryPages {
    fn view(&self, _: &ObjectKey) -> Result<Box<dyn PageView>, String> {
        let pages = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Box::new(MemoryView(pages)))
    }
}

impl MemoryPages {
    /// Commits `w`, as the committer commits a write set's pages.
    pub fn apply(&self, w: &PageWrites) {
        let mut pages = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cut) = w.truncate {
            pages.split_off(&cut);
        }
        for (n, b) in &w.pages {
            pages.insert(*n, b.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (Arc<MemoryPages>, PageFile) {
        let committed = Arc::new(MemoryPages::default());
        let f = PageFile::new(ObjectKey::new(0, &[0; 32]), committed.clone(), 1 << 20);
        (committed, f)
    }

    fn read(f: &mut PageFile, offset: u64, n: usize) -> (Vec<u8>, bool) {
        let mut buf = vec![0xAA; n];
        let full = f.read(offset, &mut buf).unwrap();
        (buf, full)
    }

    #[test]
    fn reads_see_dirty_then_pending_then_committed() {
        let (committed, mut f) = file();
        f.write(0, &[1; PAGE_SIZE * 2]).unwrap();
        let w = f.stage(1);
        f.write(PAGE_SIZE as u64, &[2; PAGE_SIZE]).unwrap();
        assert_eq!(read(&mut f, PAGE_SIZE as u64 - 1, 2).0, vec![1, 2]);
        committed.apply(&w);
        f.durable(1);
        f.discard_event();
        assert_eq!(read(&mut f, PAGE_SIZE as u64 - 1, 2).0, vec![1, 1]);
        assert_eq!(f.size().unwrap(), 2 * PAGE_SIZE as u64);
    }

    #[test]
    fn a_page_written_back_unchanged_is_not_staged() {
        let (committed, mut f) = file();
        f.write(0, &[1; PAGE_SIZE * 3]).unwrap();
        committed.apply(&f.stage(1));
        f.durable(1);
        // Three pages written, one of them changed.
        let mut data = vec![1; PAGE_SIZE * 3];
        data[PAGE_SIZE + 5] = 9;
        f.write(0, &data).unwrap();
        let w = f.stage(2);
        assert_eq!(w.pages.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(read(&mut f, PAGE_SIZE as u64 + 5, 1).0, vec![9]);
        // Past the end an unchanged (zero) page still grows the file.
        f.write(3 * PAGE_SIZE as u64, &[0; PAGE_SIZE]).unwrap();
        assert_eq!(
            f.stage(3).pages.keys().copied().collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(f.size().unwrap(), 4 * PAGE_SIZE as u64);
    }

    #[test]
    fn a_short_read_zero_fills() {
        let (_, mut f) = file();
        f.write(0, &[7; 10]).unwrap();
        let (buf, full) = read(&mut f, 5, 10);
        assert!(!full);
        assert_eq!(buf, [7, 7, 7, 7, 7, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_pending_cut_hides_older_pages_until_durable() {
        let (committed, mut f) = file();
        f.write(0, &[1; PAGE_SIZE * 3]).unwrap();
        committed.apply(&f.stage(1));
        f.durable(1);
        f.truncate(PAGE_SIZE as u64).unwrap();
        let cut = f.stage(2);
        assert_eq!(cut.truncate, Some(1));
        // Grow again without writing page 1: it must read as zeros, not as
        // the committed page the cut removes.
        f.write(2 * PAGE_SIZE as u64, &[3; PAGE_SIZE]).unwrap();
        assert_eq!(read(&mut f, PAGE_SIZE as u64, 1).0, vec![0]);
        assert_eq!(read(&mut f, 2 * PAGE_SIZE as u64, 1).0, vec![3]);
        assert_eq!(read(&mut f, 0, 1).0, vec![1]);
    }

    #[test]
    fn wipe_and_limits() {
        let (committed, mut f) = file();
        f.write(0, &[1; PAGE_SIZE]).unwrap();
        committed.apply(&f.stage(1));
        f.durable(1);
        f.wipe();
        assert_eq!(f.size().unwrap(), 0);
        assert!(matches!(f.write(1 << 20, &[1]), Err(WriteError::Full)));
        f.discard_event();
        assert_eq!(f.size().unwrap(), PAGE_SIZE as u64);
    }
}
