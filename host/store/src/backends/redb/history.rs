//! redb's history ([`crate::history`]): one table, appended to by every
//! commit, and a few `meta` rows that only turning history on and pruning
//! write.
//!
//! - `history`: bookmark (u64) -> the commit's record, then each written
//!   object's undo. The record: its time (i64 big-endian, ms since the
//!   epoch), the bytes of the row, and the commits and bytes recorded since
//!   history began, this one included (u64 big-endian each). Then per
//!   object: its key (36 bytes), the undo's length (u32 big-endian) and the
//!   undo ([`crate::history::encode_undo`]; KV values and pages in it are
//!   sealed, as in their own tables). One row per commit, at the end of
//!   the table: a commit with history costs one more insert, whatever the
//!   objects it wrote (a row per object, keyed by object, cost a third of
//!   the throughput on writes to many objects; keyed by bookmark, a tenth).
//! - `meta`: `history_on`; the floor bookmark and its time; the commits
//!   and bytes pruned since history began; and the newest bookmark and its
//!   time when history was turned on (until a commit records its own).
//!
//! Commit times never go back: a commit made while the clock stepped back
//! takes the time of the one before it.

use std::collections::HashMap;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::sealed::{META, damaged, unseal};
use crate::error::{Error, Result};
use crate::history::{
    Bookmark, HistorySettings, HistoryStats, Undo, UndoTarget, before_floor, decode_undo,
    encode_undo, now_ms,
};
use crate::keys::{OBJECT_KEY_LEN, ObjectKey};

/// The bytes of a commit's record, before the undo of its objects.
const RECORD_BYTES: usize = 32;

pub(crate) const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");

const ON: &str = "history_on";
const START: &str = "history_start";
const START_TIME: &str = "history_start_time";
const FLOOR: &str = "history_floor";
const FLOOR_TIME: &str = "history_floor_time";
const PRUNED_COMMITS: &str = "history_pruned_commits";
const PRUNED_BYTES: &str = "history_pruned_bytes";

/// Commits pruned per transaction, so a long prune lets commits through
/// between its steps.
const PRUNE_STEP: usize = 2_000;

/// What the backend knows of its history while it is on.
#[derive(Clone, Debug)]
pub(crate) struct HistoryState {
    settings: HistorySettings,
    latest: u64,
    latest_time: i64,
    floor: u64,
    floor_time: i64,
    /// Commits and bytes recorded since history began.
    recorded: (u64, u64),
    /// Commits and bytes pruned since history began.
    pruned: (u64, u64),
}

/// A commit's record in `history`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recorded {
    bookmark: u64,
    time: i64,
    /// The bytes of this commit's rows.
    bytes: u64,
    /// Commits and bytes recorded since history began, this one included.
    recorded: (u64, u64),
}

impl Recorded {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut row = [0; RECORD_BYTES];
        row[..8].copy_from_slice(&self.time.to_be_bytes());
        row[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        row[16..24].copy_from_slice(&self.recorded.0.to_be_bytes());
        row[24..].copy_from_slice(&self.recorded.1.to_be_bytes());
        row
    }

    fn decode(bookmark: u64, row: &[u8]) -> Option<Recorded> {
        let number = |at: usize| Some(u64::from_be_bytes(row.get(at..at + 8)?.try_into().ok()?));
        Some(Recorded {
            bookmark,
            time: number(0)? as i64,
            bytes: number(8)?,
            recorded: (number(16)?, number(24)?),
        })
    }
}

/// The undo entries of a `history` row after its record: (object, undo
/// bytes), or `None` at the first damaged one.
fn undo_entries(row: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let mut rest = row.get(RECORD_BYTES..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let entry = (|| {
            let object = rest.get(..OBJECT_KEY_LEN)?;
            let at = OBJECT_KEY_LEN + 4;
            let len = u32::from_be_bytes(rest.get(OBJECT_KEY_LEN..at)?.try_into().ok()?) as usize;
            let undo = rest.get(at..at + len)?;
            rest = &rest[at + len..];
            Some((object, undo))
        })();
        if entry.is_none() {
            rest = &[];
        }
        Some(entry)
    })
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::storage("history", e)
}

fn no_record(bookmark: u64) -> Error {
    storage(format!("commit {bookmark} has no readable record"))
}

impl HistoryState {
    /// The history `db` keeps, if it was last on: opened without
    /// settings (by `dohost objects`), a file goes on recording history as
    /// it did, and keeps all of it.
    pub(crate) fn load(db: &Database) -> Result<Option<HistoryState>> {
        let txn = db.begin_read().map_err(storage)?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let read = |key: &str| -> Result<u64> {
            Ok(meta.get(key).map_err(storage)?.map_or(0, |v| v.value()))
        };
        if read(ON)? != 1 {
            return Ok(None);
        }
        let history = txn.open_table(HISTORY).map_err(storage)?;
        let last = match history.last().map_err(storage)? {
            Some((key, row)) => {
                let bookmark = key.value();
                Some(Recorded::decode(bookmark, row.value()).ok_or_else(|| no_record(bookmark))?)
            }
            None => None,
        };
        let pruned = (read(PRUNED_COMMITS)?, read(PRUNED_BYTES)?);
        Ok(Some(HistoryState {
            settings: HistorySettings {
                retention: std::time::Duration::MAX,
                max_bytes: None,
            },
            latest: last.map_or(read(START)?, |r| r.bookmark),
            latest_time: last.map_or(read(START_TIME)? as i64, |r| r.time),
            floor: read(FLOOR)?,
            floor_time: read(FLOOR_TIME)? as i64,
            recorded: last.map_or(pruned, |r| r.recorded),
            pruned,
        }))
    }

    /// Turns history on or off in `db` (see [`crate::Backend::set_history`]),
    /// which kept `was` ([`HistoryState::load`]): the state while on.
    pub(crate) fn enable(
        db: &Database,
        was: Option<HistoryState>,
        settings: Option<HistorySettings>,
    ) -> Result<Option<HistoryState>> {
        match (was, settings) {
            (Some(was), Some(settings)) => return Ok(Some(HistoryState { settings, ..was })),
            (None, None) => return Ok(None),
            (Some(was), None) => {
                // Off: its rows go (history turned on again starts anew),
                // and bookmarks go on from the newest one.
                let txn = db.begin_write().map_err(storage)?;
                txn.delete_table(HISTORY).map_err(storage)?;
                {
                    let mut meta = txn.open_table(META).map_err(storage)?;
                    meta.insert(ON, 0).map_err(storage)?;
                    meta.insert(START, was.latest).map_err(storage)?;
                    meta.insert(START_TIME, was.latest_time as u64)
                        .map_err(storage)?;
                }
                txn.commit().map_err(storage)?;
                return Ok(None);
            }
            (None, Some(_)) => {}
        }
        let Some(settings) = settings else {
            return Ok(None);
        };
        let txn = db.begin_write().map_err(storage)?;
        let state = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let read = |meta: &redb::Table<&str, u64>, key: &str| -> Result<u64> {
                Ok(meta.get(key).map_err(storage)?.map_or(0, |v| v.value()))
            };
            // Commits went by unrecorded: history starts now, at a
            // bookmark of its own (one handed out before names a state it
            // cannot rebuild), and rows kept before are of no use.
            let latest = read(&meta, START)? + 1;
            let now = now_ms().max(read(&meta, START_TIME)? as i64);
            for (key, value) in [
                (ON, 1),
                (START, latest),
                (START_TIME, now as u64),
                (FLOOR, latest),
                (FLOOR_TIME, now as u64),
                (PRUNED_COMMITS, 0),
                (PRUNED_BYTES, 0),
            ] {
                meta.insert(key, value).map_err(storage)?;
            }
            HistoryState {
                settings,
                latest,
                latest_time: now,
                floor: latest,
                floor_time: now,
                recorded: (0, 0),
                pruned: (0, 0),
            }
        };
        txn.delete_table(HISTORY).map_err(storage)?;
        txn.open_table(HISTORY).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Some(state))
    }

    /// Writes the history rows of one commit into `txn`.
    pub(crate) fn record(
        &self,
        txn: &WriteTransaction,
        undos: HashMap<ObjectKey, Undo>,
    ) -> std::result::Result<Recorded, redb::Error> {
        let bookmark = self.latest + 1;
        let mut row = vec![0; RECORD_BYTES];
        for (object, undo) in undos {
            if undo.is_empty() {
                continue;
            }
            let undo = encode_undo(&undo);
            row.extend_from_slice(object.as_bytes());
            row.extend_from_slice(&u32::try_from(undo.len()).unwrap_or(u32::MAX).to_be_bytes());
            row.extend_from_slice(&undo);
        }
        let bytes = (row.len() + 8) as u64;
        let recorded = Recorded {
            bookmark,
            time: now_ms().max(self.latest_time),
            bytes,
            recorded: (self.recorded.0 + 1, self.recorded.1 + bytes),
        };
        row[..RECORD_BYTES].copy_from_slice(&recorded.encode());
        txn.open_table(HISTORY)?.insert(bookmark, row.as_slice())?;
        Ok(recorded)
    }

    /// Takes note of a commit whose rows [`HistoryState::record`] wrote,
    /// now durable.
    pub(crate) fn committed(&mut self, recorded: Recorded) {
        self.latest = recorded.bookmark;
        self.latest_time = recorded.time;
        self.recorded = recorded.recorded;
    }

    pub(crate) fn stats(&self) -> HistoryStats {
        HistoryStats {
            floor: Bookmark(self.floor),
            latest: Bookmark(self.latest),
            floor_time: self.floor_time,
            commits: self.recorded.0 - self.pruned.0,
            bytes: self.recorded.1 - self.pruned.1,
        }
    }

    /// The bookmark of the last commit at or before `time`.
    pub(crate) fn bookmark_for_time(&self, db: &Database, time: i64) -> Result<Bookmark> {
        if time >= self.latest_time {
            return Ok(Bookmark(self.latest));
        }
        if time < self.floor_time {
            return Err(before_floor(
                &format!("the time {time} (ms since the epoch)"),
                Bookmark(self.floor),
                self.floor_time,
            ));
        }
        let txn = db.begin_read().map_err(storage)?;
        let history = txn.open_table(HISTORY).map_err(storage)?;
        let time_of = |bookmark: u64| -> Result<i64> {
            let row = history.get(bookmark).map_err(storage)?;
            row.and_then(|r| Recorded::decode(bookmark, r.value()))
                .map(|r| r.time)
                .ok_or_else(|| no_record(bookmark))
        };
        // Commit times only grow: search the last one at or before `time`
        // between the floor (at or before it) and the latest (after it).
        let (mut lo, mut hi) = (self.floor, self.latest);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if time_of(mid)? <= time {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Bookmark(lo))
    }

    /// The undo of each commit after `after` that wrote `object`, oldest
    /// first, unsealed. Reads the history since `after` (a restore is
    /// rare; commits are not).
    pub(crate) fn undo_since(
        &self,
        db: &Database,
        object: &ObjectKey,
        after: Bookmark,
    ) -> Result<Vec<Undo>> {
        if after.0 < self.floor {
            return Err(before_floor(
                &format!("bookmark {after}"),
                Bookmark(self.floor),
                self.floor_time,
            ));
        }
        if after.0 > self.latest {
            return Err(crate::history::after_latest(after, Bookmark(self.latest)));
        }
        let damage = || damaged(&format!("the history of object {object:?}"));
        let txn = db.begin_read().map_err(storage)?;
        let history = txn.open_table(HISTORY).map_err(storage)?;
        let mut out = Vec::new();
        for row in history.range(after.0 + 1..).map_err(storage)? {
            let (_, row) = row.map_err(storage)?;
            let Some(entry) = undo_entries(row.value())
                .map(|e| e.ok_or_else(damage))
                .find(|e| e.as_ref().map_or(true, |(o, _)| *o == object.as_bytes()))
            else {
                continue;
            };
            let mut undo = decode_undo(entry?.1).ok_or_else(damage)?;
            for (target, old) in &mut undo {
                if matches!(target, UndoTarget::Alarm) {
                    continue;
                }
                if let Some(sealed) = old {
                    *sealed = unseal(sealed).ok_or_else(damage)?.to_vec();
                }
            }
            out.push(undo);
        }
        Ok(out)
    }

    /// Prunes one step of what the settings no longer keep; how many
    /// commits went, and whether there is more to prune.
    pub(crate) fn prune_step(&mut self, db: &Database) -> Result<(u64, bool)> {
        let cutoff = now_ms()
            .saturating_sub(i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX));
        let over = |bytes: u64| self.settings.max_bytes.is_some_and(|max| bytes > max);
        let txn = db.begin_write().map_err(storage)?;
        let (mut floor, mut floor_time) = (self.floor, self.floor_time);
        let (mut commits, mut bytes) = (self.pruned.0, self.pruned.1);
        let mut more = false;
        {
            let mut history = txn.open_table(HISTORY).map_err(storage)?;
            // The newest commit's undo stays, so the floor is at most the
            // commit before it.
            for bookmark in self.floor + 1..self.latest {
                let row = history
                    .get(bookmark)
                    .map_err(storage)?
                    .and_then(|r| Recorded::decode(bookmark, r.value()))
                    .ok_or_else(|| no_record(bookmark))?;
                if row.time > cutoff && !over(self.recorded.1 - bytes) {
                    break;
                }
                if commits - self.pruned.0 == PRUNE_STEP as u64 {
                    more = true;
                    break;
                }
                floor = bookmark;
                floor_time = row.time;
                commits += 1;
                bytes += row.bytes;
            }
            if floor > self.floor {
                history
                    .retain_in(self.floor + 1..=floor, |_, _| false)
                    .map_err(storage)?;
                let mut meta = txn.open_table(META).map_err(storage)?;
                for (key, value) in [
                    (FLOOR, floor),
                    (FLOOR_TIME, floor_time as u64),
                    (PRUNED_COMMITS, commits),
                    (PRUNED_BYTES, bytes),
                ] {
                    meta.insert(key, value).map_err(storage)?;
                }
            }
        }
        if floor == self.floor {
            txn.abort().map_err(storage)?;
            return Ok((0, false));
        }
        txn.commit().map_err(storage)?;
        let pruned = commits - self.pruned.0;
        self.floor = floor;
        self.floor_time = floor_time;
        self.pruned = (commits, bytes);
        Ok((pruned, more))
    }
}
