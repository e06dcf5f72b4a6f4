//! The storage API of an object (`wit/storage.wit`, `wit/alarm.wit`) over
//! its [`ObjectStorage`](dohost_store::ObjectStorage): the API's limits,
//! checked before anything is read or written, and what ties KV to SQL.
//! Storage transactions are write layers in the store and SQLite savepoints
//! in the SQL engine, opened and closed together, so a transaction's SQL and
//! KV writes commit or roll back as one.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::ObjectIo;
use crate::runtime::bindings::object::dohost::object::storage::{
    ListOptions, OverLimit, StorageError, WriteOptions,
};
use crate::settings::{MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_SQLITE_ENTRY_BYTES, MAX_VALUE_BYTES};
use dohost_store::{AlarmRecord, AlarmWrite, ListRange, TransactionError, pass_gate};

pub(crate) type StorageResult<T> = std::result::Result<T, StorageError>;

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

/// Checks a value against its class's limit: [`MAX_VALUE_BYTES`], or for a
/// SQLite-backed class [`MAX_SQLITE_ENTRY_BYTES`] for key and value
/// together.
fn check_value(key: &str, value: &[u8], sqlite_backed: bool) -> StorageResult<()> {
    let (limit, size) = if sqlite_backed {
        (MAX_SQLITE_ENTRY_BYTES, key.len() + value.len())
    } else {
        (MAX_VALUE_BYTES, value.len())
    };
    if size > limit {
        return Err(StorageError::ValueTooLarge(over(limit, size)));
    }
    Ok(())
}

fn check_count(count: usize) -> StorageResult<()> {
    if count > MAX_KEYS_PER_CALL {
        return Err(StorageError::TooManyKeys(over(MAX_KEYS_PER_CALL, count)));
    }
    Ok(())
}

/// Checks every key of a many-key call and removes duplicates.
fn checked_keys(keys: Vec<String>) -> StorageResult<BTreeSet<String>> {
    check_count(keys.len())?;
    keys.iter().try_for_each(|k| check_key(k))?;
    Ok(keys.into_iter().collect())
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

/// A history error for the guest: what it asked wrongly as
/// `invalid-options`, the rest as `internal`.
fn history_error(e: dohost_store::Error) -> StorageError {
    match e.kind() {
        dohost_store::ErrorKind::Invalid => StorageError::InvalidOptions(e.message().to_owned()),
        _ => internal(e),
    }
}

fn transaction_error(e: TransactionError) -> StorageError {
    match e {
        TransactionError::NoTransaction => StorageError::NoTransaction,
        TransactionError::TooDeep { limit, depth } => {
            StorageError::TransactionTooDeep(over(limit, depth))
        }
    }
}

fn write_options(options: WriteOptions) -> dohost_store::WriteOptions {
    dohost_store::WriteOptions {
        allow_unconfirmed: options.allow_unconfirmed,
        no_cache: options.no_cache,
    }
}

impl ObjectIo {
    /// The current value of each (checked) key, sorted by key.
    fn read_many(
        &mut self,
        keys: impl IntoIterator<Item = String>,
        no_cache: bool,
    ) -> StorageResult<Vec<(String, Option<Bytes>)>> {
        self.storage.get_many(keys, no_cache).map_err(internal)
    }

    /// `get`.
    pub(crate) fn get(&mut self, key: String, no_cache: bool) -> StorageResult<Option<Vec<u8>>> {
        check_key(&key)?;
        let mut values = self.read_many([key], no_cache)?;
        Ok(values.pop().and_then(|(_, v)| v).map(|b| b.to_vec()))
    }

    /// `get-many`: the keys that exist, sorted.
    pub(crate) fn get_many(
        &mut self,
        keys: Vec<String>,
        no_cache: bool,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        let values = self.read_many(checked_keys(keys)?, no_cache)?;
        Ok(values
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_vec())))
            .collect())
    }

    /// `put-many` (and `put`): all or nothing.
    pub(crate) fn put_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        options: WriteOptions,
    ) -> StorageResult<()> {
        check_count(entries.len())?;
        let sqlite_backed = self
            .shared
            .settings
            .sqlite_classes
            .contains(&*self.identity.class);
        entries
            .iter()
            .try_for_each(|(k, v)| check_key(k).and_then(|()| check_value(k, v, sqlite_backed)))?;
        let adding: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let limit = self.shared.settings.write_set_bytes;
        let total = self.storage.writes.bytes() + adding;
        if total > limit {
            return Err(StorageError::Internal(format!(
                "the event's writes would reach {total} bytes, over the limit of {limit} for one event ([limits] write_set_bytes); split the work over several events"
            )));
        }
        let options = write_options(options);
        for (key, value) in entries {
            self.storage
                .writes
                .write(key, Some(Bytes::from(value)), options);
        }
        Ok(())
    }

    /// `delete-many` (and `delete`): how many of the keys existed.
    pub(crate) fn delete_many(
        &mut self,
        keys: Vec<String>,
        options: WriteOptions,
    ) -> StorageResult<u32> {
        // Whether a key existed needs its value; a delete is not a read
        // worth caching.
        let values = self.read_many(checked_keys(keys)?, true)?;
        let options = write_options(options);
        let mut existed = 0u32;
        for (key, value) in values {
            existed += u32::from(value.is_some());
            self.storage.writes.write(key, None, options);
        }
        Ok(existed)
    }

    /// `list`.
    pub(crate) fn list(&mut self, options: ListOptions) -> StorageResult<Vec<(String, Vec<u8>)>> {
        if options.limit == Some(0) {
            return Err(StorageError::InvalidOptions(
                "limit must be at least 1 (leave it out to list everything)".into(),
            ));
        }
        if options.start.is_some() && options.start_after.is_some() {
            return Err(StorageError::InvalidOptions(
                "start and start-after cannot both be set".into(),
            ));
        }
        let range = ListRange {
            start: options.start,
            start_after: options.start_after,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit.and_then(|l| usize::try_from(l).ok()),
        };
        // The result is copied into the guest and decoded there: half its
        // memory at most.
        let limit = self.shared.settings.memory_per_object / 2;
        self.storage.list(&range, limit).map_err(internal)
    }

    /// `delete-all`: every key, the alarm and the SQL database.
    pub(crate) fn delete_all(&mut self, options: WriteOptions) -> StorageResult<()> {
        if self.storage.writes.depth() > 0 {
            // A transaction can roll back KV writes but not a dropped SQL
            // database, so inside one delete-all is for KV-only objects.
            match self.sql.has_database() {
                Ok(false) => {}
                Ok(true) => return Err(StorageError::InTransaction),
                Err(e) => return Err(internal(e)),
            }
        } else {
            self.sql.wipe();
        }
        self.storage.writes.clear_all(write_options(options));
        Ok(())
    }

    /// `sync`: the event's writes so far are durable when it returns. An
    /// `Err` of the outer result traps the event: later writes of the event
    /// may build on writes that failed.
    pub(crate) async fn sync(&mut self) -> Result<StorageResult<()>, String> {
        if self.storage.writes.depth() > 0 {
            return Ok(Err(StorageError::InTransaction));
        }
        self.flush();
        if let Err(e) = pass_gate(self.storage.latest_commit()).await {
            return Err(format!("storage sync failed, the object is reset: {e}"));
        }
        Ok(self.storage.settle().map_err(internal))
    }

    /// `get-current-bookmark`: the bookmark once everything written so far
    /// is durable.
    pub(crate) async fn current_bookmark(&mut self) -> Result<StorageResult<String>, String> {
        if let Err(e) = self.sync().await? {
            return Ok(Err(e));
        }
        Ok(self
            .shared
            .store
            .current_bookmark()
            .map(|b| b.to_string())
            .map_err(history_error))
    }

    /// `get-bookmark-for-time`.
    pub(crate) fn bookmark_for_time(&mut self, time: i64) -> StorageResult<String> {
        self.shared
            .store
            .bookmark_for_time(time)
            .map(|b| b.to_string())
            .map_err(history_error)
    }

    /// `on-next-session-restore-bookmark`: checks the bookmark, notes it
    /// for the object's next start, and returns the bookmark that undoes
    /// the restore.
    pub(crate) async fn restore_next_session(
        &mut self,
        bookmark: String,
    ) -> Result<StorageResult<String>, String> {
        let bookmark = match bookmark.parse::<dohost_store::Bookmark>() {
            Ok(bookmark) => bookmark,
            Err(e) => return Ok(Err(history_error(e))),
        };
        // Refused now rather than when the object restarts.
        if let Err(e) = self.shared.store.check_bookmark(bookmark) {
            return Ok(Err(history_error(e)));
        }
        let undo = self.current_bookmark().await?;
        if undo.is_ok() {
            self.restore = Some(bookmark);
        }
        Ok(undo)
    }

    /// `transaction-begin`: a write layer and a savepoint; its depth.
    pub(crate) fn transaction_begin(&mut self) -> StorageResult<u32> {
        let depth = self.storage.writes.begin().map_err(transaction_error)?;
        if let Err(e) = self.sql.begin(depth) {
            let _ = self.storage.writes.rollback();
            return Err(internal(e.message));
        }
        Ok(u32::try_from(depth).unwrap_or(u32::MAX))
    }

    /// `transaction-commit`.
    pub(crate) fn transaction_commit(&mut self) -> StorageResult<()> {
        let depth = self.storage.writes.depth();
        if depth == 0 {
            return Err(StorageError::NoTransaction);
        }
        if let Err(e) = self.sql.commit(depth) {
            // SQL rolled the transaction back; so does KV.
            let _ = self.storage.writes.rollback();
            return Err(internal(e.message));
        }
        self.storage.writes.commit().map_err(transaction_error)
    }

    /// `transaction-rollback`. An `Err` of the outer result traps the
    /// event: SQLite could not roll back, so KV and SQL would disagree.
    pub(crate) fn transaction_rollback(&mut self) -> Result<StorageResult<()>, String> {
        let depth = self.storage.writes.depth();
        if depth == 0 {
            return Ok(Err(StorageError::NoTransaction));
        }
        if let Err(e) = self.sql.rollback(depth) {
            return Err(format!(
                "the SQL transaction could not roll back ({}); the object is reset",
                e.message
            ));
        }
        Ok(self.storage.writes.rollback().map_err(transaction_error))
    }

    /// `get-alarm`: the alarm as the running event sees it. The alarm being
    /// delivered is gone as far as its handler knows.
    pub(crate) fn get_alarm(&mut self) -> StorageResult<Option<i64>> {
        let record = match self.storage.writes.alarm() {
            Some(record) => record,
            None => self.storage.alarm().map_err(internal)?,
        };
        let running = self.running_alarm;
        Ok(record.filter(|r| running != Some(*r)).map(|r| r.time))
    }

    /// `set-alarm`.
    pub(crate) fn set_alarm(&mut self, scheduled_time: i64) {
        self.storage
            .writes
            .write_alarm(AlarmWrite::Set(AlarmRecord {
                time: scheduled_time,
                retries: 0,
            }));
    }

    /// `delete-alarm`.
    pub(crate) fn delete_alarm(&mut self) {
        self.storage.writes.write_alarm(AlarmWrite::Delete);
    }
}
