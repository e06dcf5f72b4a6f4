//! The KV storage API an object imports (`wit/storage.wit`): limits, the
//! event's write layers (transactions as savepoints), and reads that go from
//! the event's writes to the object cache ([`crate::cache`]) to redb.
//!
//! **Transactions.** The event's writes are a stack of layers. The bottom
//! layer is the event's write set; `transaction-begin` pushes a layer,
//! `transaction-commit` folds the top layer into the one below, and
//! `transaction-rollback` drops it. Reads look from the top layer down, so a
//! transaction sees its own writes. Only the bottom layer ever reaches the
//! committer, so a transaction's writes are durable with the event's, or not
//! at all.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::alarm::{AlarmRecord, AlarmWrite};
use crate::bindings::object::dohost::object::storage::{
    self, ListOptions, OverLimit, ReadOptions, StorageError, WriteOptions,
};
use crate::object::{ObjectState, pass_gate};
use crate::storage::{ListRange, Write, WriteSet, entries_in};

/// The longest storage key, in bytes (Cloudflare's limit): keys are kept in
/// memory and in every redb index page, so they must stay small.
pub const MAX_KEY_BYTES: usize = 2048;

/// The largest value on the KV API, in bytes (Cloudflare's limit): bigger
/// values belong in several keys or in SQL.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// The most keys one many-key call may name (Cloudflare's limit): bounds
/// the memory and time of one host call.
pub const MAX_KEYS_PER_CALL: usize = 128;

/// The deepest nesting of transactions: each level keeps its own write
/// layer, so a runaway recursion must not grow the host's memory unbounded.
pub const MAX_TRANSACTION_DEPTH: usize = 64;

type StorageResult<T> = std::result::Result<T, StorageError>;

fn over(limit: usize, actual: usize) -> OverLimit {
    OverLimit {
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        actual: u32::try_from(actual).unwrap_or(u32::MAX),
    }
}

fn check_key(key: &str) -> StorageResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::KeyTooLarge(over(MAX_KEY_BYTES, key.len())));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> StorageResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StorageError::ValueTooLarge(over(
            MAX_VALUE_BYTES,
            value.len(),
        )));
    }
    Ok(())
}

fn check_count(count: usize) -> StorageResult<()> {
    if count > MAX_KEYS_PER_CALL {
        return Err(StorageError::TooManyKeys(over(MAX_KEYS_PER_CALL, count)));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

/// The writes of the running event: the event's write set at the bottom,
/// one layer per open transaction above it.
#[derive(Debug)]
pub(crate) struct EventWrites {
    layers: Vec<WriteSet>,
    /// Some write of the event did not ask for `allow-unconfirmed`.
    confirmed: bool,
}

impl EventWrites {
    pub(crate) fn new() -> EventWrites {
        EventWrites {
            layers: vec![WriteSet::default()],
            confirmed: false,
        }
    }

    /// Open transactions.
    pub(crate) fn depth(&self) -> usize {
        self.layers.len() - 1
    }

    fn top(&mut self) -> &mut WriteSet {
        self.layers
            .last_mut()
            .expect("the event's own layer is never popped")
    }

    /// What the event's writes say about `key`, if anything.
    fn lookup(&self, key: &str) -> Option<Option<Bytes>> {
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

    fn write(&mut self, key: String, value: Option<Bytes>, options: WriteOptions) {
        self.confirmed |= !options.allow_unconfirmed;
        let no_cache = options.no_cache;
        self.top().entries.insert(key, Write { value, no_cache });
    }

    fn clear_all(&mut self, options: WriteOptions) {
        self.confirmed |= !options.allow_unconfirmed;
        let top = self.top();
        top.entries.clear();
        top.clear = true;
        top.alarm = Some(AlarmWrite::Delete);
    }

    /// What the event's writes say about the alarm, if anything.
    pub(crate) fn alarm(&self) -> Option<Option<AlarmRecord>> {
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.alarm.map(|w| w.record()))
    }

    /// Sets or deletes the alarm.
    pub(crate) fn write_alarm(&mut self, write: AlarmWrite) {
        self.confirmed = true;
        self.top().alarm = Some(write);
    }

    /// The event's own write set changes the alarm (open transactions do
    /// not count).
    pub(crate) fn writes_alarm(&self) -> bool {
        self.layers[0].alarm.is_some()
    }

    fn begin(&mut self) -> StorageResult<u32> {
        if self.depth() >= MAX_TRANSACTION_DEPTH {
            return Err(StorageError::TransactionTooDeep(over(
                MAX_TRANSACTION_DEPTH,
                self.depth() + 1,
            )));
        }
        self.layers.push(WriteSet::default());
        Ok(u32::try_from(self.depth()).unwrap_or(u32::MAX))
    }

    fn commit(&mut self) -> StorageResult<()> {
        if self.depth() == 0 {
            return Err(StorageError::NoTransaction);
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

    fn rollback(&mut self) -> StorageResult<()> {
        if self.depth() == 0 {
            return Err(StorageError::NoTransaction);
        }
        self.layers.pop();
        Ok(())
    }

    /// Takes the event's write set (what is committed so far) and whether
    /// its response must wait for it. Open transactions stay open.
    pub(crate) fn take_committed(&mut self) -> (WriteSet, bool) {
        let confirmed = std::mem::take(&mut self.confirmed);
        (std::mem::take(&mut self.layers[0]), confirmed)
    }

    /// Ends the event: transactions left open are rolled back (the guest
    /// never committed them); returns how many there were.
    pub(crate) fn close_transactions(&mut self) -> usize {
        let open = self.depth();
        self.layers.truncate(1);
        open
    }

    /// Forgets every write (the event trapped).
    pub(crate) fn reset(&mut self) {
        *self = EventWrites::new();
    }

    /// Adds the event's writes with keys in `[lower, upper)` to `overlay`
    /// (over what is there); true if a `delete-all` hides older entries.
    fn overlay_in<'a>(
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

impl ObjectState {
    /// The current value of each (checked) key, sorted by key, reading
    /// what neither the event nor the cache knows from redb in one go.
    fn read_many(
        &mut self,
        keys: impl IntoIterator<Item = String>,
        no_cache: bool,
    ) -> StorageResult<Vec<(String, Option<Bytes>)>> {
        let io = &mut self.io;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for key in keys {
            let known = io.writes.lookup(&key).or_else(|| io.cache.lookup(&key));
            match known {
                Some(value) => found.push((key, value)),
                None => missing.push(key),
            }
        }
        if !missing.is_empty() {
            let values = io
                .shared
                .store
                .get_many(&io.identity.key, &missing)
                .map_err(internal)?;
            for (key, value) in missing.into_iter().zip(values) {
                let value = value.map(Bytes::from);
                if !no_cache {
                    io.cache.fill(&key, value.clone());
                }
                found.push((key, value));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    fn read(&mut self, key: String, no_cache: bool) -> StorageResult<Option<Bytes>> {
        let mut values = self.read_many([key], no_cache)?;
        Ok(values.pop().and_then(|(_, v)| v))
    }
}

/// Checks every key of a many-key call and removes duplicates.
fn checked_keys(keys: Vec<String>) -> StorageResult<BTreeSet<String>> {
    check_count(keys.len())?;
    keys.iter().try_for_each(|k| check_key(k))?;
    Ok(keys.into_iter().collect())
}

impl storage::Host for ObjectState {
    fn get(
        &mut self,
        key: String,
        options: ReadOptions,
    ) -> wasmtime::Result<StorageResult<Option<Vec<u8>>>> {
        Ok(check_key(&key)
            .and_then(|()| self.read(key, options.no_cache))
            .map(|v| v.map(|b| b.to_vec())))
    }

    fn get_many(
        &mut self,
        keys: Vec<String>,
        options: ReadOptions,
    ) -> wasmtime::Result<StorageResult<Vec<(String, Vec<u8>)>>> {
        Ok(checked_keys(keys).and_then(|keys| {
            let values = self.read_many(keys, options.no_cache)?;
            Ok(values
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v.to_vec())))
                .collect())
        }))
    }

    fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        options: WriteOptions,
    ) -> wasmtime::Result<StorageResult<()>> {
        self.put_many(vec![(key, value)], options)
    }

    fn put_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        options: WriteOptions,
    ) -> wasmtime::Result<StorageResult<()>> {
        let checked = check_count(entries.len()).and_then(|()| {
            entries
                .iter()
                .try_for_each(|(k, v)| check_key(k).and_then(|()| check_value(v)))
        });
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        for (key, value) in entries {
            self.io.writes.write(key, Some(Bytes::from(value)), options);
        }
        Ok(Ok(()))
    }

    fn delete(
        &mut self,
        key: String,
        options: WriteOptions,
    ) -> wasmtime::Result<StorageResult<bool>> {
        Ok(self
            .delete_many(vec![key], options)?
            .map(|existed| existed > 0))
    }

    fn delete_many(
        &mut self,
        keys: Vec<String>,
        options: WriteOptions,
    ) -> wasmtime::Result<StorageResult<u32>> {
        let result = checked_keys(keys).and_then(|keys| {
            // Whether a key existed needs its value; a delete is not a read
            // worth caching.
            let values = self.read_many(keys, true)?;
            let mut existed = 0u32;
            for (key, value) in values {
                existed += u32::from(value.is_some());
                self.io.writes.write(key, None, options);
            }
            Ok(existed)
        });
        Ok(result)
    }

    fn list(
        &mut self,
        options: ListOptions,
    ) -> wasmtime::Result<StorageResult<Vec<(String, Vec<u8>)>>> {
        if options.limit == Some(0) {
            return Ok(Err(StorageError::InvalidOptions(
                "limit must be at least 1 (leave it out to list everything)".into(),
            )));
        }
        if options.start.is_some() && options.start_after.is_some() {
            return Ok(Err(StorageError::InvalidOptions(
                "start and start-after cannot both be set".into(),
            )));
        }
        let range = ListRange {
            start: options.start,
            start_after: options.start_after,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit.and_then(|l| usize::try_from(l).ok()),
        };
        let (lower, upper) = range.key_bounds();
        let io = &self.io;
        // The newer state of keys in range: pending commits, then this
        // event's layers, each over the one before.
        let mut overlay = BTreeMap::new();
        let mut cleared = io.cache.pending_in(&lower, upper.as_deref(), &mut overlay);
        cleared |= io.writes.overlay_in(&lower, upper.as_deref(), &mut overlay);
        Ok(io
            .shared
            .store
            .list(&io.identity.key, &range, &overlay, cleared)
            .map_err(internal))
    }

    fn delete_all(&mut self, options: WriteOptions) -> wasmtime::Result<StorageResult<()>> {
        let io = &mut self.io;
        if io.writes.depth() > 0 {
            // A transaction can roll back KV writes but not a dropped SQL
            // database, so inside one delete-all is for KV-only objects.
            match io.sql.has_database() {
                Ok(false) => {}
                Ok(true) => return Ok(Err(StorageError::InTransaction)),
                Err(e) => return Ok(Err(internal(e))),
            }
        } else {
            io.sql.wipe();
        }
        io.writes.clear_all(options);
        Ok(Ok(()))
    }

    async fn sync(&mut self) -> wasmtime::Result<StorageResult<()>> {
        if self.io.writes.depth() > 0 {
            return Ok(Err(StorageError::InTransaction));
        }
        self.io.flush();
        if let Err(e) = pass_gate(self.io.latest_commit()).await {
            // Later writes of this event may build on the failed ones: trap,
            // so the object resets to its durable state.
            return Err(wasmtime::Error::msg(format!(
                "storage sync failed, the object is reset: {e}"
            )));
        }
        Ok(self.io.settle().map_err(internal))
    }

    fn transaction_begin(&mut self) -> wasmtime::Result<StorageResult<u32>> {
        let depth = match self.io.writes.begin() {
            Ok(depth) => depth,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.io.sql.begin(depth as usize) {
            let _ = self.io.writes.rollback();
            return Ok(Err(internal(e.message)));
        }
        Ok(Ok(depth))
    }

    fn transaction_commit(&mut self) -> wasmtime::Result<StorageResult<()>> {
        let depth = self.io.writes.depth();
        if depth == 0 {
            return Ok(Err(StorageError::NoTransaction));
        }
        if let Err(e) = self.io.sql.commit(depth) {
            // SQL rolled the transaction back; so does KV.
            let _ = self.io.writes.rollback();
            return Ok(Err(internal(e.message)));
        }
        Ok(self.io.writes.commit())
    }

    fn transaction_rollback(&mut self) -> wasmtime::Result<StorageResult<()>> {
        let depth = self.io.writes.depth();
        if depth == 0 {
            return Ok(Err(StorageError::NoTransaction));
        }
        if let Err(e) = self.io.sql.rollback(depth) {
            return Err(wasmtime::Error::msg(format!(
                "the SQL transaction could not roll back ({}); the object is reset",
                e.message
            )));
        }
        Ok(self.io.writes.rollback())
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
        let mut w = EventWrites::new();
        w.write("a".into(), value("1"), CONFIRMED);
        assert!(matches!(w.begin(), Ok(1)));
        w.write("b".into(), value("2"), CONFIRMED);
        assert!(matches!(w.begin(), Ok(2)));
        w.clear_all(CONFIRMED);
        assert_eq!(w.lookup("a"), Some(None));
        assert!(w.rollback().is_ok());
        assert_eq!(w.lookup("a"), Some(value("1")));
        assert!(w.commit().is_ok());
        assert!(matches!(w.rollback(), Err(StorageError::NoTransaction)));
        let (set, confirmed) = w.take_committed();
        assert!(confirmed && !set.clear);
        assert_eq!(set.entries.len(), 2);
    }

    #[test]
    fn transactions_nest_only_so_deep() {
        let mut w = EventWrites::new();
        for _ in 0..MAX_TRANSACTION_DEPTH {
            w.begin().unwrap();
        }
        assert!(matches!(
            w.begin(),
            Err(StorageError::TransactionTooDeep(OverLimit {
                limit: 64,
                actual: 65
            }))
        ));
        assert_eq!(w.close_transactions(), MAX_TRANSACTION_DEPTH);
    }
}
