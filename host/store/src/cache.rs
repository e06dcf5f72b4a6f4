//! The object cache: what an object knows about its own keys without asking
//! redb.
//!
//! It holds two kinds of entries:
//!
//! - **Pending** writes: handed to the committer by an earlier event (or a
//!   `sync`) and not yet known to be durable. They must be seen by every
//!   later read, so they are never evicted; each carries the sequence number
//!   of its commit. A pending `delete-all` hides every committed key until it
//!   is durable.
//! - **Clean** entries: values known to equal what redb holds (`None` =
//!   known absent), read from redb or written by a commit now durable. They
//!   form an LRU bounded in bytes, per object and across all objects of the
//!   host ([`CacheBudget`]), so a hot object's reads never reach redb while
//!   a host with many objects keeps a fixed amount of memory for caching.
//!
//! Commits finish in the order they were sent (one committer, one queue), so
//! "commit `n` is durable" means every commit up to `n` is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use lru::LruCache;

use crate::writes::{Write, WriteSet, entries_in};

/// The bytes a cache entry costs beyond its key and value: the LRU node, the
/// hash table slot and the `String`/`Bytes` headers.
const ENTRY_OVERHEAD: usize = 96;

/// The shared bound on all objects' clean entries.
#[derive(Debug)]
pub struct CacheBudget {
    per_object: usize,
    total: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    /// A bound of `per_object` bytes for each object's clean entries and
    /// `total` bytes for all of them together.
    pub fn new(per_object: usize, total: usize) -> Arc<CacheBudget> {
        Arc::new(CacheBudget {
            per_object,
            total,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held by clean entries of all objects.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over_total(&self) -> bool {
        self.used() > self.total
    }
}

struct Pending {
    value: Option<Bytes>,
    /// The commit that makes this value durable.
    seq: u64,
    /// Keep the value as a clean entry once durable (no `no-cache` hint).
    keep: bool,
}

/// One object's cache (see the module docs).
pub(crate) struct ObjectCache {
    budget: Arc<CacheBudget>,
    clean: LruCache<String, Option<Bytes>>,
    clean_bytes: usize,
    pending: BTreeMap<String, Pending>,
    /// The commit of a `delete-all` not yet known durable.
    cleared_by: Option<u64>,
    /// The sequence number of the last commit sent.
    last_seq: u64,
}

fn cost(key: &str, value: &Option<Bytes>) -> usize {
    key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

impl ObjectCache {
    pub(crate) fn new(budget: Arc<CacheBudget>) -> ObjectCache {
        ObjectCache {
            budget,
            clean: LruCache::unbounded(),
            clean_bytes: 0,
            pending: BTreeMap::new(),
            cleared_by: None,
            last_seq: 0,
        }
    }

    /// What the cache knows of `key`: `Some(value)` (`value` None = absent)
    /// or `None` when only redb knows.
    pub(crate) fn lookup(&mut self, key: &str) -> Option<Option<Bytes>> {
        if let Some(p) = self.pending.get(key) {
            return Some(p.value.clone());
        }
        if self.cleared_by.is_some() {
            return Some(None);
        }
        self.clean.get(key).cloned()
    }

    /// Remembers what redb holds for `key` (after a miss).
    pub(crate) fn fill(&mut self, key: &str, value: Option<Bytes>) {
        if self.pending.contains_key(key) || self.cleared_by.is_some() {
            return;
        }
        self.insert_clean(key.to_owned(), value);
    }

    fn insert_clean(&mut self, key: String, value: Option<Bytes>) {
        let size = cost(&key, &value);
        if size > self.budget.per_object {
            self.remove_clean(&key);
            return;
        }
        if let Some(old) = self.clean.put(key.clone(), value) {
            self.release(cost(&key, &old));
        }
        self.clean_bytes += size;
        self.budget.used.fetch_add(size, Ordering::Relaxed);
        while self.clean_bytes > self.budget.per_object || self.budget.over_total() {
            let Some((k, v)) = self.clean.pop_lru() else {
                break;
            };
            self.release(cost(&k, &v));
        }
    }

    fn remove_clean(&mut self, key: &str) {
        if let Some(old) = self.clean.pop(key) {
            self.release(cost(key, &old));
        }
    }

    fn release(&mut self, size: usize) {
        self.clean_bytes -= size;
        self.budget.used.fetch_sub(size, Ordering::Relaxed);
    }

    /// The number the next [`ObjectCache::stage`] gives its commit.
    pub(crate) fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    /// Takes a write set that is being sent to the committer; returns the
    /// sequence number of its commit.
    pub(crate) fn stage(&mut self, writes: &WriteSet) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        if writes.clear {
            self.drop_clean();
            self.pending.clear();
            self.cleared_by = Some(seq);
        }
        for (key, Write { value, no_cache }) in &writes.entries {
            self.remove_clean(key);
            self.pending.insert(
                key.clone(),
                Pending {
                    value: value.clone(),
                    seq,
                    keep: !no_cache,
                },
            );
        }
        seq
    }

    /// Records that every commit up to `seq` is durable: their pending
    /// writes become clean entries (or leave, if sent with `no-cache`).
    pub(crate) fn durable(&mut self, seq: u64) {
        if self.cleared_by.is_some_and(|s| s <= seq) {
            self.cleared_by = None;
        }
        let done: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.seq <= seq)
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(p) = self.pending.remove(&key)
                && p.keep
            {
                self.insert_clean(key, p.value);
            }
        }
    }

    /// Forgets everything, pending writes included: after a failed commit
    /// the object goes back to what redb holds.
    pub(crate) fn clear(&mut self) {
        self.drop_clean();
        self.pending.clear();
        self.cleared_by = None;
    }

    fn drop_clean(&mut self) {
        self.budget
            .used
            .fetch_sub(self.clean_bytes, Ordering::Relaxed);
        self.clean_bytes = 0;
        self.clean.clear();
    }

    /// Pending writes with keys in `[lower, upper)`, for merging into a
    /// list; and whether a pending `delete-all` hides redb's entries.
    pub(crate) fn pending_in<'a>(
        &'a self,
        lower: &str,
        upper: Option<&[u8]>,
        overlay: &mut BTreeMap<&'a str, Option<&'a [u8]>>,
    ) -> bool {
        for (k, p) in entries_in(&self.pending, lower, upper) {
            overlay.insert(k.as_str(), p.value.as_deref());
        }
        self.cleared_by.is_some()
    }
}

impl Drop for ObjectCache {
    fn drop(&mut self) {
        self.drop_clean();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, Option<&str>)], clear: bool) -> WriteSet {
        WriteSet {
            clear,
            entries: entries
                .iter()
                .map(|(k, v)| {
                    let value = v.map(|v| Bytes::copy_from_slice(v.as_bytes()));
                    (
                        (*k).to_owned(),
                        Write {
                            value,
                            no_cache: false,
                        },
                    )
                })
                .collect(),
            ..WriteSet::default()
        }
    }

    #[test]
    fn clean_entries_stay_within_the_object_budget() {
        let budget = CacheBudget::new(10 * (ENTRY_OVERHEAD + 10), usize::MAX);
        let mut cache = ObjectCache::new(budget.clone());
        for i in 0..100 {
            cache.fill(&format!("key{i:02}"), Some(Bytes::from_static(b"value")));
        }
        assert!(cache.clean_bytes <= 10 * (ENTRY_OVERHEAD + 10));
        assert_eq!(budget.used(), cache.clean_bytes);
        // The most recent entries are the ones kept.
        assert!(cache.lookup("key99").is_some());
        assert!(cache.lookup("key00").is_none());
        drop(cache);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_total_budget_bounds_all_objects_together() {
        let budget = CacheBudget::new(usize::MAX, 4 * (ENTRY_OVERHEAD + 8));
        let mut a = ObjectCache::new(budget.clone());
        let mut b = ObjectCache::new(budget.clone());
        for i in 0..10 {
            a.fill(&format!("a{i}"), Some(Bytes::from_static(b"1234567")));
            b.fill(&format!("b{i}"), Some(Bytes::from_static(b"1234567")));
        }
        assert!(budget.used() <= 4 * (ENTRY_OVERHEAD + 8));
    }

    #[test]
    fn pending_writes_are_never_evicted_and_become_clean_when_durable() {
        let budget = CacheBudget::new(0, 0);
        let mut cache = ObjectCache::new(budget.clone());
        let seq = cache.stage(&set(&[("a", Some("1")), ("b", None)], false));
        assert_eq!(cache.lookup("a"), Some(Some(Bytes::from_static(b"1"))));
        assert_eq!(cache.lookup("b"), Some(None));
        cache.durable(seq);
        // Nothing fits a zero budget: now only redb knows.
        assert_eq!(cache.lookup("a"), None);
    }

    #[test]
    fn a_pending_delete_all_hides_redb_until_durable() {
        let budget = CacheBudget::new(usize::MAX, usize::MAX);
        let mut cache = ObjectCache::new(budget);
        cache.fill("old", Some(Bytes::from_static(b"x")));
        let seq = cache.stage(&set(&[("new", Some("y"))], true));
        assert_eq!(cache.lookup("old"), Some(None));
        assert_eq!(cache.lookup("other"), Some(None));
        let mut overlay = BTreeMap::new();
        assert!(cache.pending_in("", None, &mut overlay));
        assert_eq!(overlay.len(), 1);
        cache.durable(seq);
        assert_eq!(cache.lookup("other"), None);
        assert_eq!(cache.lookup("new"), Some(Some(Bytes::from_static(b"y"))));
    }
}
