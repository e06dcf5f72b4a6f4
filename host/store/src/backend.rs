//! The storage backend interface: where committed state lives.
//!
//! Everything above this trait is the same for every backend: the object's
//! write layers and cache ([`crate::ObjectStorage`]), the committer thread
//! that batches write sets and runs the output gate
//! ([`crate::committer`]), SQLite's page file and VFS, the class registry's
//! rules ([`crate::migrations`]). A backend only reads committed state and
//! applies a batch of write sets atomically. Two exist: redb, one file on
//! one machine ([`crate::redb`], the default), and PostgreSQL, shared by
//! the nodes of a cluster ([`crate::postgres`]). Another (FoundationDB,
//! TiKV) implements this trait and is handed to [`crate::Store::start`];
//! nothing above the store changes.
//!
//! ## What a backend promises
//!
//! - [`Backend::commit`] applies every write set of a batch, in order, in
//!   one atomic, durable transaction, or none of them; it returns only once
//!   the batch is durable (the output gate waits on it).
//! - Reads see only committed state, and what a commit that returned made
//!   durable. A read need not be a snapshot across calls: an object's
//!   uncommitted writes are layered over it by the store.
//! - Keys of one object compare bytewise; [`Backend::scan`] and
//!   [`Backend::alarms_after`] return them in that order.
//! - Errors name what failed; a damaged value is an error, never returned.

use crate::alarm::{AlarmChange, AlarmRecord};
use crate::directory::{KeyInfo, ObjectRecord};
use crate::dump::{BackupReport, ObjectDump};
use crate::error::{Error, ErrorKind, Result};
use crate::history::{Bookmark, HistorySettings, HistoryStats, Undo};
use crate::keys::ObjectKey;
use crate::pages::PageView;
use crate::registry::Registry;
use crate::writes::WriteSet;

/// One object's write set in a batch handed to [`Backend::commit`].
#[derive(Debug)]
pub struct ObjectWrites {
    /// The object written.
    pub object: ObjectKey,
    /// What its event wrote.
    pub writes: WriteSet,
    /// Enter (or update) the object in the directory of objects; a record
    /// without a name keeps the name recorded before.
    pub record: Option<ObjectRecord>,
}

/// Write sets of a batch that [`Backend::commit`] refused: their positions
/// in the batch, with the reason.
pub type Refused = Vec<(usize, String)>;

/// A range of one object's KV keys to read, bytewise on the keys (without
/// the object's prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScan {
    /// The first key that may be returned (inclusive).
    pub start: Vec<u8>,
    /// The first key past the range (exclusive); `None`: to the last key.
    pub end: Option<Vec<u8>>,
    /// From the last key down instead of from the first up.
    pub reverse: bool,
    /// Return at most this many entries.
    pub limit: usize,
    /// Stop once the keys and values returned hold more than this many
    /// bytes (the entry that passed it is still returned).
    pub max_bytes: usize,
}

/// The class registry inside one backend transaction: [`Backend::registry`]
/// hands it to the registry's rules ([`crate::prepare`]), which read it,
/// decide, and write it back.
pub trait RegistryTxn {
    /// The registry as stored.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read or is corrupt.
    fn read(&self) -> Result<Registry>;

    /// Removes and returns the namespaces an old redb file recorded by
    /// binding name (binding, 36-byte record); none for other backends.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be read.
    fn take_legacy_namespaces(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }

    /// The class the first object of namespace `number` recorded, if any.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    fn recorded_class(&self, number: u32) -> Result<Option<String>>;

    /// How many objects of namespace `number` the directory holds.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    fn count_objects(&self, number: u32) -> Result<u64>;

    /// Removes every row of namespace `number`: keys, SQL pages, alarms,
    /// directory entries.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be removed.
    fn delete_namespace(&self, number: u32) -> Result<()>;

    /// Replaces the stored registry with `registry`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be written.
    fn write(&self, registry: &Registry) -> Result<()>;
}

/// Where committed state lives (see the module docs).
pub trait Backend: Send + Sync + 'static {
    /// The committed values of `keys` of `object`, one per key.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be read or a value is
    /// damaged.
    fn get(&self, object: &ObjectKey, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;

    /// The committed entries of `object` in `scan`, in key order (or
    /// reverse).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be read or a value is
    /// damaged.
    fn scan(&self, object: &ObjectKey, scan: &KeyScan) -> Result<Vec<(String, Vec<u8>)>>;

    /// The first `limit` keys of `object` with the sizes of their values,
    /// and how many keys it has.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be read.
    fn key_sizes(&self, object: &ObjectKey, limit: usize) -> Result<(Vec<KeyInfo>, u64)>;

    /// The committed SQL pages of `object`: what one read transaction sees
    /// (kept for the reads of one host call, or one inspecting query).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the pages cannot be read.
    fn pages(&self, object: &ObjectKey) -> Result<Box<dyn PageView>>;

    /// The committed alarm of `object`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    fn alarm(&self, object: &ObjectKey) -> Result<Option<AlarmRecord>>;

    /// Up to `limit` committed alarms in (time, object) order, after
    /// `after` (from the first when `None`).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if they cannot be read.
    fn alarms_after(
        &self,
        after: Option<(i64, ObjectKey)>,
        limit: usize,
    ) -> Result<Vec<(i64, ObjectKey)>>;

    /// The directory record of `object`, if it has one.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    fn object(&self, object: &ObjectKey) -> Result<Option<ObjectRecord>>;

    /// `object` whole (its entries, SQL pages, alarm and directory
    /// record) as one moment saw it, for an export. The default reads
    /// them one after the other, which may see different commits; a
    /// backend that can, reads them in one transaction.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if anything cannot be read or is
    /// damaged.
    fn dump(&self, object: &ObjectKey) -> Result<ObjectDump> {
        ObjectDump::read_separately(self, object)
    }

    /// Copies everything committed, as one moment saw it, into a new
    /// database file at `to` that the same backend opens (an online
    /// backup, while commits go on).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::BadRequest`] if this backend has no such copy
    /// (PostgreSQL: use `pg_dump`); [`crate::ErrorKind::Storage`] if the
    /// copy fails.
    fn backup(&self, to: &std::path::Path) -> Result<BackupReport> {
        let _ = to;
        Err(crate::Error::new(
            crate::ErrorKind::Invalid,
            "this storage backend has no file to copy: back up its database with its own tools (PostgreSQL: pg_dump)",
        ))
    }

    /// Up to `limit` objects of namespace `number` after `after`, in key
    /// order, with their directory records (`None`: unreadable).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    fn objects(
        &self,
        number: u32,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Option<ObjectRecord>)>>;

    /// Applies `batch` in order, atomically and durably (see the module
    /// docs); adds the alarm changes it made to `changes`, one per write
    /// set that moved an alarm's time. A backend shared by a cluster may
    /// refuse the write sets of objects this node no longer owns (fencing):
    /// it commits the rest and returns the refused ones' positions in
    /// `batch`, each with the reason.
    ///
    /// # Errors
    ///
    /// Why the batch was not committed (nothing of it was).
    fn commit(
        &self,
        batch: &[&ObjectWrites],
        changes: &mut Vec<AlarmChange>,
    ) -> std::result::Result<Refused, String>;

    /// Gets ready to commit again after a failed commit (redb opens its
    /// file again). Reads go on meanwhile where they can.
    ///
    /// # Errors
    ///
    /// Why the backend cannot go on: the process should stop.
    fn recover(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Runs `work` on the class registry in one transaction, committed if
    /// `work` returns true and dropped otherwise. Nodes sharing a backend
    /// run it one at a time.
    ///
    /// # Errors
    ///
    /// `work`'s error, or [`crate::ErrorKind::Storage`] if the transaction
    /// fails.
    fn registry(&self, work: &mut dyn FnMut(&dyn RegistryTxn) -> Result<bool>) -> Result<()>;

    /// Turns history on (with how much to keep) or off, before the first
    /// commit ([`crate::history`]). Turned on after being off, history
    /// starts at the next commit.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the backend cannot record it;
    /// [`crate::ErrorKind::Config`] if it keeps no history.
    fn set_history(&self, settings: Option<HistorySettings>) -> Result<()> {
        match settings {
            None => Ok(()),
            Some(_) => Err(Error::new(
                ErrorKind::Config,
                "this storage backend keeps no history: remove [storage] history",
            )),
        }
    }

    /// What the history holds; `None` when it is off.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if it cannot be read.
    fn history_stats(&self) -> Result<Option<HistoryStats>> {
        Ok(None)
    }

    /// The bookmark of the last commit at or before `time` (ms since the
    /// epoch).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when history is off or `time` is
    /// before the floor.
    fn bookmark_for_time(&self, time: i64) -> Result<Bookmark> {
        let _ = time;
        Err(crate::history::history_off())
    }

    /// The undo of every commit after `after` that wrote `object`, oldest
    /// first.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when history is off, `after` is before
    /// the floor or past the last commit; [`crate::ErrorKind::Storage`] if
    /// it cannot be read.
    fn undo_since(&self, object: &ObjectKey, after: Bookmark) -> Result<Vec<Undo>> {
        let _ = (object, after);
        Err(crate::history::history_off())
    }

    /// Prunes what the history settings no longer keep; how many commits'
    /// history went.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the history cannot be pruned.
    fn prune_history(&self) -> Result<u64> {
        Ok(0)
    }

    /// Stops serving reads: the store is closed. The committer still
    /// commits what it was sent.
    fn close(&self);

    /// Lets go of everything once the committer has stopped (redb's file
    /// is released when the last reader is done).
    fn release(&self);
}
