//! The object's durable key-value storage (Cloudflare's `ctx.storage`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::alarm;
use crate::bindings::dohost::object::storage as wit;
use crate::{Error, Result, Sql};

/// The longest storage key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// The largest storage value, in bytes.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// The most keys (or entries) one many-key call takes.
pub const MAX_KEYS_PER_CALL: usize = 128;

/// Which entries [`Storage::list`] returns. `Default` lists every key in
/// ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys `>= start`. Not together with `start_after`.
    pub start: Option<String>,
    /// Only keys `> start_after`. Not together with `start`.
    pub start_after: Option<String>,
    /// Only keys `< end`.
    pub end: Option<String>,
    /// Only keys beginning with `prefix`.
    pub prefix: Option<String>,
    /// Descending order (the range stays the same).
    pub reverse: bool,
    /// At most this many entries (at least 1 when set).
    pub limit: Option<u32>,
}

/// The object's storage. Writes are visible at once to later reads and are
/// made durable together at the end of the event; the host holds the
/// event's response until they are.
///
/// Typed values are stored as JSON (so other languages read them the same);
/// the `_bytes` methods store raw bytes. Keys are at most 2,048 bytes, values
/// at most 131,072 bytes, and the many-key methods take at most 128 keys; a
/// call over a limit fails as a whole and writes nothing.
///
/// Cloudflare's per-call options are chosen with [`Storage::allow_unconfirmed`]
/// and [`Storage::no_cache`], which return a `Storage` that applies them:
///
/// ```no_run
/// # fn f(storage: dohost_sdk::Storage) -> dohost_sdk::Result<()> {
/// storage.allow_unconfirmed().put("last-seen", &1_700_000_000_u64)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Storage {
    allow_unconfirmed: bool,
    no_cache: bool,
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    crate::value::from_bytes(bytes).map_err(|e| {
        Error::new(format!(
            "the value under {key:?} is not the expected value: {e}"
        ))
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    crate::value::to_bytes(value)
        .map_err(|e| Error::new(format!("cannot encode the value for {key:?}: {e}")))
}

impl Storage {
    pub(crate) fn new() -> Storage {
        Storage::default()
    }

    /// This storage, with writes that do not hold the event's response
    /// until they are durable (Cloudflare's `allowUnconfirmed`). They still
    /// commit atomically with the event's other writes.
    #[must_use]
    pub fn allow_unconfirmed(self) -> Storage {
        Storage {
            allow_unconfirmed: true,
            ..self
        }
    }

    /// This storage, with the hint that what it reads or writes will not be
    /// read again soon, so the host does not keep it in the object's cache
    /// (Cloudflare's `noCache`).
    #[must_use]
    pub fn no_cache(self) -> Storage {
        Storage {
            no_cache: true,
            ..self
        }
    }

    /// The object's SQL database (Cloudflare's `storage.sql`), whose writes
    /// commit together with this storage's.
    pub fn sql(&self) -> Sql {
        Sql::new()
    }

    fn read_options(&self) -> wit::ReadOptions {
        wit::ReadOptions {
            no_cache: self.no_cache,
        }
    }

    fn write_options(&self) -> wit::WriteOptions {
        wit::WriteOptions {
            allow_unconfirmed: self.allow_unconfirmed,
            no_cache: self.no_cache,
        }
    }

    /// The value under `key`, decoded from JSON.
    ///
    /// # Errors
    ///
    /// When the key is too long, the host cannot read, or the stored value is
    /// not JSON of type `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_bytes(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// The raw bytes under `key`.
    ///
    /// # Errors
    ///
    /// When the key is too long or the host cannot read.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(wit::get(key, self.read_options())?)
    }

    /// The values of those `keys` (at most 128) that exist, by key, decoded
    /// from JSON.
    ///
    /// # Errors
    ///
    /// When there are too many keys, a key is too long, the host cannot read,
    /// or a value is not JSON of type `T`.
    pub fn get_many<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<BTreeMap<String, T>> {
        self.get_many_bytes(keys)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v).map(|v| (k, v)))
            .collect()
    }

    /// The raw values of those `keys` (at most 128) that exist, by key.
    ///
    /// # Errors
    ///
    /// When there are too many keys, a key is too long, or the host cannot
    /// read.
    pub fn get_many_bytes<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        Ok(wit::get_many(&keys, self.read_options())?
            .into_iter()
            .collect())
    }

    /// Stores `value` as JSON under `key`.
    ///
    /// # Errors
    ///
    /// When the key or the encoded value is over its limit.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.put_bytes(key, &encode(key, value)?)
    }

    /// Stores raw bytes under `key`.
    ///
    /// # Errors
    ///
    /// When the key or the value is over its limit.
    pub fn put_bytes(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(wit::put(key, value, self.write_options())?)
    }

    /// Stores every entry (at most 128) as JSON, all or none.
    ///
    /// # Errors
    ///
    /// When there are too many entries or a key or value is over its limit;
    /// then nothing is written.
    pub fn put_many<K: AsRef<str>, T: Serialize>(
        &self,
        entries: impl IntoIterator<Item = (K, T)>,
    ) -> Result<()> {
        let entries = entries
            .into_iter()
            .map(|(k, v)| {
                let key = k.as_ref().to_owned();
                let value = encode(&key, &v)?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(wit::put_many(&entries, self.write_options())?)
    }

    /// Stores every raw entry (at most 128), all or none.
    ///
    /// # Errors
    ///
    /// When there are too many entries or a key or value is over its limit;
    /// then nothing is written.
    pub fn put_many_bytes<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_vec()))
            .collect();
        Ok(wit::put_many(&entries, self.write_options())?)
    }

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// When the key is too long or the host cannot read.
    pub fn delete(&self, key: &str) -> Result<bool> {
        Ok(wit::delete(key, self.write_options())?)
    }

    /// Deletes `keys` (at most 128); returns how many of them existed.
    ///
    /// # Errors
    ///
    /// When there are too many keys, a key is too long, or the host cannot
    /// read; then nothing is deleted.
    pub fn delete_many<K: AsRef<str>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u32> {
        let keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        Ok(wit::delete_many(&keys, self.write_options())?)
    }

    /// Deletes every key, the SQL database and the alarm of the object,
    /// atomically with the event's other writes (Cloudflare's `deleteAll`).
    ///
    /// # Errors
    ///
    /// Only if the host fails.
    pub fn delete_all(&self) -> Result<()> {
        Ok(wit::delete_all(self.write_options())?)
    }

    /// The time the object's alarm is set for, in ms since the Unix epoch,
    /// or `None` when there is none (Cloudflare's `getAlarm`). Inside
    /// [`crate::DurableObject::alarm`], the alarm being handled is not
    /// reported unless the handler set a new one.
    ///
    /// # Errors
    ///
    /// Only if the host cannot read.
    pub fn get_alarm(&self) -> Result<Option<i64>> {
        Ok(alarm::get_alarm()?)
    }

    /// Sets the object's alarm to `scheduled_time_ms` (ms since the Unix
    /// epoch; see [`crate::now_ms`]), replacing any alarm set before
    /// (Cloudflare's `setAlarm`). A time in the past fires at once. Like a
    /// write, it commits with the event and a rolled-back transaction takes
    /// it back.
    ///
    /// # Errors
    ///
    /// Only if the host fails.
    pub fn set_alarm(&self, scheduled_time_ms: i64) -> Result<()> {
        Ok(alarm::set_alarm(scheduled_time_ms)?)
    }

    /// Deletes the object's alarm, if any (Cloudflare's `deleteAlarm`).
    /// Inside [`crate::DurableObject::alarm`] it also stops the retries of
    /// the alarm being handled.
    ///
    /// # Errors
    ///
    /// Only if the host fails.
    pub fn delete_alarm(&self) -> Result<()> {
        Ok(alarm::delete_alarm()?)
    }

    /// Entries chosen by `options`, values decoded from JSON.
    ///
    /// # Errors
    ///
    /// When the options contradict each other, the host cannot read, or a
    /// value is not JSON of type `T`.
    pub fn list<T: DeserializeOwned>(&self, options: ListOptions) -> Result<Vec<(String, T)>> {
        self.list_bytes(options)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v).map(|v| (k, v)))
            .collect()
    }

    /// Entries chosen by `options`, as raw bytes.
    ///
    /// # Errors
    ///
    /// When the options contradict each other (`start` with `start_after`,
    /// a `limit` of 0) or the host cannot read.
    pub fn list_bytes(&self, options: ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(wit::list(&wit::ListOptions {
            start: options.start,
            start_after: options.start_after,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit,
            no_cache: self.no_cache,
        })?)
    }

    /// Returns once everything written so far, this event's writes
    /// included, is durable (Cloudflare's `sync`).
    ///
    /// # Errors
    ///
    /// Inside a transaction. (If the commit fails, the object traps and is
    /// reset to its durable state.)
    pub fn sync(&self) -> Result<()> {
        Ok(wit::sync()?)
    }

    /// The bookmark of the object's storage now, once everything written
    /// so far is durable (Cloudflare's `getCurrentBookmark`; the server
    /// must keep history: `[storage] history`). Bookmarks are 16 hex
    /// digits; later points compare greater.
    ///
    /// # Errors
    ///
    /// When the server keeps no history, or inside a transaction.
    pub fn get_current_bookmark(&self) -> Result<String> {
        Ok(wit::get_current_bookmark()?)
    }

    /// The bookmark of the storage as it was at `time`, in ms since the
    /// Unix epoch (Cloudflare's `getBookmarkForTime`).
    ///
    /// # Errors
    ///
    /// When the server keeps no history, or `time` is older than it.
    pub fn get_bookmark_for_time(&self, time: i64) -> Result<String> {
        Ok(wit::get_bookmark_for_time(time)?)
    }

    /// Asks that the storage (KV, SQL and the alarm) be brought back to
    /// `bookmark` when the object next starts; call
    /// [`crate::State::abort`] next (Cloudflare's
    /// `onNextSessionRestoreBookmark`). Returns the bookmark that undoes
    /// the restore.
    ///
    /// # Errors
    ///
    /// When the bookmark is not one of the history kept.
    pub fn on_next_session_restore_bookmark(&self, bookmark: &str) -> Result<String> {
        Ok(wit::on_next_session_restore_bookmark(bookmark)?)
    }

    /// Runs `f` in a transaction: its writes, key-value and SQL, are kept
    /// if it returns `Ok` (and did not call [`Transaction::rollback`]) and
    /// discarded if it returns `Err`, which is passed on. Transactions
    /// nest: one inside another is a savepoint of the outer one.
    ///
    /// ```no_run
    /// # fn f(storage: dohost_sdk::Storage) -> dohost_sdk::Result<()> {
    /// storage.transaction(|txn| {
    ///     let from = txn.get::<i64>("alice")?.unwrap_or(0);
    ///     if from < 10 {
    ///         return Err(dohost_sdk::Error::new("not enough money"));
    ///     }
    ///     txn.put("alice", &(from - 10))?;
    ///     txn.put("bob", &(txn.get::<i64>("bob")?.unwrap_or(0) + 10))
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// What `f` returns, or an error if transactions nest more than 64 deep.
    pub fn transaction<R>(&self, f: impl FnOnce(&Transaction) -> Result<R>) -> Result<R> {
        wit::transaction_begin()?;
        let txn = Transaction {
            storage: *self,
            rolled_back: Cell::new(false),
        };
        let result = f(&txn);
        if result.is_ok() && !txn.rolled_back.get() {
            wit::transaction_commit()?;
        } else {
            wit::transaction_rollback()?;
        }
        result
    }

    /// Runs `f` in a transaction (Cloudflare's `transactionSync`): the SQL
    /// and key-value writes it makes are kept if it returns `Ok` and all
    /// discarded if it returns `Err`, which is passed on. This is how to
    /// group SQL statements: `BEGIN`, `COMMIT`, `ROLLBACK` and `SAVEPOINT`
    /// are refused by [`Sql::exec`]. Like [`Storage::transaction`] (of which
    /// it is the closure-without-argument form), it nests as savepoints, and
    /// cursors opened inside are closed when it ends.
    ///
    /// ```no_run
    /// # fn f(storage: dohost_sdk::Storage) -> dohost_sdk::Result<()> {
    /// use dohost_sdk::params;
    ///
    /// let sql = storage.sql();
    /// storage.transaction_sync(|| {
    ///     sql.exec("UPDATE accounts SET balance = balance - ? WHERE name = ?", params![10, "alice"])?;
    ///     sql.exec("UPDATE accounts SET balance = balance + ? WHERE name = ?", params![10, "bob"])?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// What `f` returns, or an error if transactions nest more than 64 deep.
    pub fn transaction_sync<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.transaction(|_| f())
    }
}

/// An open transaction, handed to the closure of [`Storage::transaction`].
/// It is a [`Storage`] (reads see the transaction's writes) that can also be
/// rolled back.
#[derive(Debug)]
pub struct Transaction {
    storage: Storage,
    rolled_back: Cell<bool>,
}

impl Transaction {
    /// Discards the transaction's writes so far; the transaction will not
    /// commit, and writes made after this call are discarded too
    /// (Cloudflare's `txn.rollback()`).
    ///
    /// # Errors
    ///
    /// Only if the host fails.
    pub fn rollback(&self) -> Result<()> {
        wit::transaction_rollback()?;
        wit::transaction_begin()?;
        self.rolled_back.set(true);
        Ok(())
    }
}

impl Deref for Transaction {
    type Target = Storage;

    fn deref(&self) -> &Storage {
        &self.storage
    }
}

impl From<wit::StorageError> for Error {
    fn from(e: wit::StorageError) -> Self {
        let over = |what: &str, unit: &str, o: wit::OverLimit| {
            format!(
                "{what} of {} {unit} is over the limit of {} {unit}",
                o.actual, o.limit
            )
        };
        Error::new(match e {
            wit::StorageError::KeyTooLarge(o) => over("storage key", "bytes", o),
            wit::StorageError::ValueTooLarge(o) => over("storage value", "bytes", o),
            wit::StorageError::TooManyKeys(o) => over("a storage call", "keys", o),
            wit::StorageError::TransactionTooDeep(o) => over("transaction nesting", "levels", o),
            wit::StorageError::InvalidOptions(m) => format!("invalid storage options: {m}"),
            wit::StorageError::NoTransaction => "no transaction is open".to_owned(),
            wit::StorageError::InTransaction => {
                "sync cannot run inside a transaction; call it after the transaction".to_owned()
            }
            wit::StorageError::Internal(m) => format!("storage failed: {m}"),
        })
    }
}
