//! Writes: an event's write layers, and the write sets they become.
//!
//! **Write sets.** A [`WriteSet`] is one object's writes that commit
//! together: KV entries, SQL page changes, an alarm change, a `delete-all`.
//! The committer ([`crate::Store::commit`]) takes write sets whole.
//!
//! **Layers.** The running event's writes are a stack of write sets
//! ([`EventWrites`]). The bottom layer is the event's own; a storage
//! transaction pushes a layer, its commit folds the layer into the one
//! below, its rollback drops it. Reads look from the top layer down, so a
//! transaction sees its own writes. Only the bottom layer ever reaches the
//! committer, so a transaction's writes are durable with the event's, or not
//! at all.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::alarm::{AlarmRecord, AlarmWrite};
use crate::keys::increment;

/// The deepest nesting of transactions: each level keeps its own write
/// layer, so a runaway recursion must not grow the host's memory unbounded.
pub const MAX_TRANSACTION_DEPTH: usize = 64;

/// One write of a key: its new value (None = deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The new value; `None` deletes the key.
    pub value: Option<Bytes>,
    /// The guest hinted it will not read the value again soon.
    pub no_cache: bool,
}

/// Changes to an object's SQL database file.
#[derive(Default, Clone, Debug)]
pub struct PageWrites {
    /// Cut the file to this many pages first.
    pub truncate: Option<u32>,
    /// Then write these pages (each [`crate::PAGE_SIZE`] bytes).
    pub pages: BTreeMap<u32, Bytes>,
}

impl PageWrites {
    /// Whether this changes nothing.
    pub fn is_empty(&self) -> bool {
        self.truncate.is_none() && self.pages.is_empty()
    }
}

/// One object's writes that commit together (an event's, or a part of one
/// flushed by `sync`).
#[derive(Default, Clone, Debug)]
pub struct WriteSet {
    /// Remove every key, SQL page and the alarm of the object first
    /// (`delete-all`).
    pub clear: bool,
    /// Then write these.
    pub entries: BTreeMap<String, Write>,
    /// And these SQL database changes.
    pub pages: PageWrites,
    /// And this change of the alarm (after `clear`, which removes it).
    pub alarm: Option<AlarmWrite>,
    /// Remove the object from the directory too (deleting the object).
    pub unregister: bool,
}

impl WriteSet {
    /// Whether this writes nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear
            && !self.unregister
            && self.entries.is_empty()
            && self.pages.is_empty()
            && self.alarm.is_none()
    }

    /// The write set that deletes an object: every key, SQL page, the
    /// alarm and the directory entry, in one commit.
    pub fn deletion() -> WriteSet {
        WriteSet {
            clear: true,
            unregister: true,
            ..WriteSet::default()
        }
    }
}

/// How a guest asked for a write (the storage API's write options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The response need not wait for this write to be durable.
    pub allow_unconfirmed: bool,
    /// The value need not be cached once durable.
    pub no_cache: bool,
}

/// Why a transaction operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionError {
    /// No transaction is open.
    NoTransaction,
    /// Opening one more would nest deeper than [`MAX_TRANSACTION_DEPTH`].
    TooDeep {
        /// [`MAX_TRANSACTION_DEPTH`].
        limit: usize,
        /// The depth asked for.
        depth: usize,
    },
}

/// A validated range of storage keys to list.
#[derive(Default, Clone, Debug)]
pub struct ListRange {
    /// The first key, inclusive.
    pub start: Option<String>,
    /// The key before the first, exclusive; never set together with
    /// `start`.
    pub start_after: Option<String>,
    /// The key after the last, exclusive.
    pub end: Option<String>,
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Descending order.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<usize>,
}

impl ListRange {
    /// The bounds of the storage keys this range covers: keys `>= lower`
    /// and, when there is an upper bound, `< upper` (bytewise).
    pub fn key_bounds(&self) -> (String, Option<Vec<u8>>) {
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

/// The writes of the running event: the event's write set at the bottom,
/// one layer per open transaction above it.
#[derive(Debug)]
pub struct EventWrites {
    layers: Vec<WriteSet>,
    /// Some write of the event did not ask for `allow-unconfirmed`.
    confirmed: bool,
    /// Bytes of keys and values written in the layers (a key written twice
    /// counts twice until a rollback or a commit recounts).
    bytes: usize,
}

impl Default for EventWrites {
    fn default() -> Self {
        EventWrites {
            layers: vec![WriteSet::default()],
            confirmed: false,
            bytes: 0,
        }
    }
}

impl EventWrites {
    /// Open transactions.
    pub fn depth(&self) -> usize {
        self.layers.len() - 1
    }

    fn top(&mut self) -> &mut WriteSet {
        self.layers
            .last_mut()
            .expect("the event's own layer is never popped")
    }

    /// What the event's writes say about `key`, if anything (`Some(None)`:
    /// deleted).
    pub(crate) fn lookup(&self, key: &str) -> Option<Option<Bytes>> {
        for layer in self.layers.iter().rev() {
            if let Some(w) = layer.entries.get(key) {
                return Some(w.value.clone());
            }
            if layer.clear {
                return Some(None);
            }
        }
        None
    }

    /// Bytes of keys and values the event has written and not yet handed
    /// to the committer: what one event's write-set limit bounds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn recount(&mut self) {
        self.bytes = self
            .layers
            .iter()
            .flat_map(|layer| &layer.entries)
            .map(|(k, w)| k.len() + w.value.as_ref().map_or(0, Bytes::len))
            .sum();
    }

    /// Writes `value` to `key` (`None` deletes it).
    pub fn write(&mut self, key: String, value: Option<Bytes>, options: WriteOptions) {
        self.confirmed |= !options.allow_unconfirmed;
        self.bytes += key.len() + value.as_ref().map_or(0, Bytes::len);
        let no_cache = options.no_cache;
        self.top().entries.insert(key, Write { value, no_cache });
    }

    /// Deletes every key and the alarm (`delete-all`).
    pub fn clear_all(&mut self, options: WriteOptions) {
        self.confirmed |= !options.allow_unconfirmed;
        let top = self.top();
        top.entries.clear();
        top.clear = true;
        top.alarm = Some(AlarmWrite::Delete);
    }

    /// What the event's writes say about the alarm, if anything.
    pub fn alarm(&self) -> Option<Option<AlarmRecord>> {
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.alarm.map(|w| w.record()))
    }

    /// Sets or deletes the alarm.
    pub fn write_alarm(&mut self, write: AlarmWrite) {
        self.confirmed = true;
        self.top().alarm = Some(write);
    }

    /// The event's own write set changes the alarm (open transactions do
    /// not count).
    pub fn writes_alarm(&self) -> bool {
        self.layers[0].alarm.is_some()
    }

    /// Opens a transaction; returns its depth.
    ///
    /// # Errors
    ///
    /// [`TransactionError::TooDeep`] past [`MAX_TRANSACTION_DEPTH`].
    pub fn begin(&mut self) -> Result<usize, TransactionError> {
        if self.depth() >= MAX_TRANSACTION_DEPTH {
            return Err(TransactionError::TooDeep {
                limit: MAX_TRANSACTION_DEPTH,
                depth: self.depth() + 1,
            });
        }
        self.layers.push(WriteSet::default());
        Ok(self.depth())
    }

    /// Folds the innermost transaction into the layer below.
    ///
    /// # Errors
    ///
    /// [`TransactionError::NoTransaction`] when none is open.
    pub fn commit(&mut self) -> Result<(), TransactionError> {
        if self.depth() == 0 {
            return Err(TransactionError::NoTransaction);
        }
        let layer = self.layers.pop().expect("depth > 0");
        let below = self.top();
        if layer.clear {
            below.entries.clear();
            below.clear = true;
        }
        below.entries.extend(layer.entries);
        if layer.alarm.is_some() {
            below.alarm = layer.alarm;
        }
        Ok(())
    }

    /// Drops the innermost transaction's writes.
    ///
    /// # Errors
    ///
    /// [`TransactionError::NoTransaction`] when none is open.
    pub fn rollback(&mut self) -> Result<(), TransactionError> {
        if self.depth() == 0 {
            return Err(TransactionError::NoTransaction);
        }
        self.layers.pop();
        self.recount();
        Ok(())
    }

    /// Takes the event's write set (what is committed so far) and whether
    /// its response must wait for it. Open transactions stay open.
    pub(crate) fn take_committed(&mut self) -> (WriteSet, bool) {
        let confirmed = std::mem::take(&mut self.confirmed);
        let taken = std::mem::take(&mut self.layers[0]);
        self.recount();
        (taken, confirmed)
    }

    /// Ends the event: transactions left open are rolled back (the guest
    /// never committed them); returns how many there were.
    pub fn close_transactions(&mut self) -> usize {
        let open = self.depth();
        self.layers.truncate(1);
        open
    }

    /// Forgets every write (the event trapped).
    pub(crate) fn reset(&mut self) {
        *self = EventWrites::default();
    }

    /// Adds the event's writes with keys in `[lower, upper)` to `overlay`
    /// (over what is there); true if a `delete-all` hides older entries.
    pub(crate) fn overlay_in<'a>(
        &'a self,
        lower: &str,
        upper: Option<&[u8]>,
        overlay: &mut BTreeMap<&'a str, Option<&'a [u8]>>,
    ) -> bool {
        let mut cleared = false;
        for layer in &self.layers {
            if layer.clear {
                overlay.clear();
                cleared = true;
            }
            for (k, w) in entries_in(&layer.entries, lower, upper) {
                overlay.insert(k.as_str(), w.value.as_deref());
            }
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIRMED: WriteOptions = WriteOptions {
        allow_unconfirmed: false,
        no_cache: false,
    };

    fn value(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn nested_transactions_commit_into_their_parent_and_roll_back_alone() {
        let mut w = EventWrites::default();
        w.write("a".into(), value("1"), CONFIRMED);
        assert_eq!(w.begin(), Ok(1));
        w.write("b".into(), value("2"), CONFIRMED);
        assert_eq!(w.begin(), Ok(2));
        w.clear_all(CONFIRMED);
        assert_eq!(w.lookup("a"), Some(None));
        assert!(w.rollback().is_ok());
        assert_eq!(w.lookup("a"), Some(value("1")));
        assert!(w.commit().is_ok());
        assert_eq!(w.rollback(), Err(TransactionError::NoTransaction));
        let (set, confirmed) = w.take_committed();
        assert!(confirmed && !set.clear);
        assert_eq!(set.entries.len(), 2);
    }

    #[test]
    fn transactions_nest_only_so_deep() {
        let mut w = EventWrites::default();
        for _ in 0..MAX_TRANSACTION_DEPTH {
            w.begin().unwrap();
        }
        assert_eq!(
            w.begin(),
            Err(TransactionError::TooDeep {
                limit: 64,
                depth: 65
            })
        );
        assert_eq!(w.close_transactions(), MAX_TRANSACTION_DEPTH);
    }

    #[test]
    fn unconfirmed_writes_do_not_hold_the_response() {
        let mut w = EventWrites::default();
        let unconfirmed = WriteOptions {
            allow_unconfirmed: true,
            no_cache: false,
        };
        w.write("a".into(), value("1"), unconfirmed);
        assert!(!w.take_committed().1);
        w.write("a".into(), value("2"), CONFIRMED);
        assert!(w.take_committed().1);
    }

    #[test]
    fn list_bounds_combine_start_end_and_prefix() {
        let range = ListRange {
            start_after: Some("b".into()),
            prefix: Some("a".into()),
            ..ListRange::default()
        };
        // The prefix's range ends before the start: nothing to list.
        let (lower, upper) = range.key_bounds();
        assert_eq!((lower.as_str(), upper.as_deref()), ("b\0", Some(&b"b"[..])));
        let range = ListRange {
            start: Some("k".into()),
            end: Some("p".into()),
            prefix: Some("m".into()),
            ..ListRange::default()
        };
        let (lower, upper) = range.key_bounds();
        assert_eq!((lower.as_str(), upper.as_deref()), ("m", Some(&b"n"[..])));
        let everything = ListRange::default().key_bounds();
        assert_eq!(everything, (String::new(), None));
    }
}
