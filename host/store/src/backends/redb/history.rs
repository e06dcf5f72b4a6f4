//! redb's history ([`crate::history`]): two tables and a few `meta` rows.
//!
//! - `history`: object key + bookmark (u64 big-endian) -> the object's
//!   undo of that commit ([`crate::history::encode_undo`]); KV values and
//!   pages in it are sealed, as in their own tables.
//! - `history_commits`: bookmark -> its time (i64 big-endian, ms since the
//!   epoch), the bytes its rows take (u64 big-endian), and the keys of the
//!   objects it wrote (36 bytes each): what pruning it removes.
//! - `meta`: `history_on`, and the newest and the floor bookmark with
//!   their times, the commits and bytes kept.
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

pub(crate) const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
pub(crate) const HISTORY_COMMITS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("history_commits");

const ON: &str = "history_on";
const LATEST: &str = "history_latest";
const LATEST_TIME: &str = "history_latest_time";
const FLOOR: &str = "history_floor";
const FLOOR_TIME: &str = "history_floor_time";
const COMMITS: &str = "history_commits";
const BYTES: &str = "history_bytes";

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
    commits: u64,
    bytes: u64,
}

/// A commit's history rows, written but not yet durable.
pub(crate) struct Recorded {
    bookmark: u64,
    time: i64,
    bytes: u64,
}

fn history_key(object: &ObjectKey, bookmark: u64) -> Vec<u8> {
    [object.as_bytes(), &bookmark.to_be_bytes()].concat()
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::storage("history", e)
}

/// A `history_commits` row: time, bytes, objects.
fn decode_commit(row: &[u8]) -> Option<(i64, u64, Vec<ObjectKey>)> {
    let time = i64::from_be_bytes(row.get(..8)?.try_into().ok()?);
    let bytes = u64::from_be_bytes(row.get(8..16)?.try_into().ok()?);
    let objects = row[16..]
        .chunks(OBJECT_KEY_LEN)
        .filter_map(ObjectKey::from_bytes)
        .collect();
    Some((time, bytes, objects))
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
        Ok(Some(HistoryState {
            settings: HistorySettings {
                retention: std::time::Duration::MAX,
                max_bytes: None,
            },
            latest: read(LATEST)?,
            latest_time: read(LATEST_TIME)? as i64,
            floor: read(FLOOR)?,
            floor_time: read(FLOOR_TIME)? as i64,
            commits: read(COMMITS)?,
            bytes: read(BYTES)?,
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
            _ => {}
        }
        let txn = db.begin_write().map_err(storage)?;
        let state = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let read = |meta: &redb::Table<&str, u64>, key: &str| -> Result<u64> {
                Ok(meta.get(key).map_err(storage)?.map_or(0, |v| v.value()))
            };
            let latest = read(&meta, LATEST)?;
            let latest_time = read(&meta, LATEST_TIME)? as i64;
            match settings {
                None => {
                    meta.insert(ON, 0).map_err(storage)?;
                    None
                }
                Some(settings) => {
                    // Commits went by unrecorded: history starts now, and
                    // rows kept before it was last off are of no use.
                    let now = now_ms().max(latest_time);
                    for (key, value) in [
                        (ON, 1),
                        (FLOOR, latest),
                        (FLOOR_TIME, now as u64),
                        (LATEST_TIME, now as u64),
                        (COMMITS, 0),
                        (BYTES, 0),
                    ] {
                        meta.insert(key, value).map_err(storage)?;
                    }
                    txn.delete_table(HISTORY).map_err(storage)?;
                    txn.delete_table(HISTORY_COMMITS).map_err(storage)?;
                    txn.open_table(HISTORY).map_err(storage)?;
                    txn.open_table(HISTORY_COMMITS).map_err(storage)?;
                    Some(HistoryState {
                        settings,
                        latest,
                        latest_time: now,
                        floor: latest,
                        floor_time: now,
                        commits: 0,
                        bytes: 0,
                    })
                }
            }
        };
        txn.commit().map_err(storage)?;
        Ok(state)
    }

    /// Writes the history rows of one commit into `txn`.
    pub(crate) fn record(
        &self,
        txn: &WriteTransaction,
        undos: HashMap<ObjectKey, Undo>,
    ) -> std::result::Result<Recorded, redb::Error> {
        let bookmark = self.latest + 1;
        let time = now_ms().max(self.latest_time);
        let mut history = txn.open_table(HISTORY)?;
        let mut objects = Vec::new();
        let mut bytes = 0u64;
        for (object, undo) in undos {
            if undo.is_empty() {
                continue;
            }
            let row = encode_undo(&undo);
            bytes += (row.len() + OBJECT_KEY_LEN + 8) as u64;
            history.insert(history_key(&object, bookmark).as_slice(), row.as_slice())?;
            objects.extend_from_slice(object.as_bytes());
        }
        bytes += (objects.len() + 24) as u64;
        let mut row = Vec::with_capacity(16 + objects.len());
        row.extend_from_slice(&time.to_be_bytes());
        row.extend_from_slice(&bytes.to_be_bytes());
        row.extend_from_slice(&objects);
        txn.open_table(HISTORY_COMMITS)?
            .insert(bookmark, row.as_slice())?;
        let mut meta = txn.open_table(META)?;
        meta.insert(LATEST, bookmark)?;
        meta.insert(LATEST_TIME, time as u64)?;
        meta.insert(COMMITS, self.commits + 1)?;
        meta.insert(BYTES, self.bytes + bytes)?;
        Ok(Recorded {
            bookmark,
            time,
            bytes,
        })
    }

    /// Takes note of a commit whose rows [`HistoryState::record`] wrote,
    /// now durable.
    pub(crate) fn committed(&mut self, recorded: Recorded) {
        self.latest = recorded.bookmark;
        self.latest_time = recorded.time;
        self.commits += 1;
        self.bytes += recorded.bytes;
    }

    pub(crate) fn stats(&self) -> HistoryStats {
        HistoryStats {
            floor: Bookmark(self.floor),
            latest: Bookmark(self.latest),
            floor_time: self.floor_time,
            commits: self.commits,
            bytes: self.bytes,
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
        let commits = txn.open_table(HISTORY_COMMITS).map_err(storage)?;
        let time_of = |bookmark: u64| -> Result<i64> {
            let row = commits.get(bookmark).map_err(storage)?;
            row.and_then(|r| decode_commit(r.value()))
                .map(|(t, _, _)| t)
                .ok_or_else(|| storage(format!("commit {bookmark} has no readable record")))
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
    /// first, unsealed.
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
            return Err(Error::new(
                crate::ErrorKind::Invalid,
                format!(
                    "bookmark {after} is not a point of this server's history: its newest bookmark is {}",
                    Bookmark(self.latest)
                ),
            ));
        }
        let txn = db.begin_read().map_err(storage)?;
        let history = txn.open_table(HISTORY).map_err(storage)?;
        let lo = history_key(object, after.0 + 1);
        let hi = history_key(object, u64::MAX);
        let mut out = Vec::new();
        for row in history
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(storage)?
        {
            let (_, value) = row.map_err(storage)?;
            let mut undo = decode_undo(value.value())
                .ok_or_else(|| damaged(&format!("the history of object {object:?}")))?;
            for (target, old) in &mut undo {
                if matches!(target, UndoTarget::Alarm) {
                    continue;
                }
                if let Some(sealed) = old {
                    *sealed = unseal(sealed)
                        .ok_or_else(|| damaged(&format!("the history of object {object:?}")))?
                        .to_vec();
                }
            }
            out.push(undo);
        }
        Ok(out)
    }

    /// Prunes one step of what the settings no longer keep; whether there
    /// is more to prune.
    pub(crate) fn prune_step(&mut self, db: &Database) -> Result<(u64, bool)> {
        let cutoff = now_ms()
            .saturating_sub(i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX));
        let over = |bytes: u64| self.settings.max_bytes.is_some_and(|max| bytes > max);
        let txn = db.begin_write().map_err(storage)?;
        let (mut floor, mut floor_time, mut bytes) = (self.floor, self.floor_time, self.bytes);
        let mut more = false;
        let pruned = {
            let mut commits = txn.open_table(HISTORY_COMMITS).map_err(storage)?;
            let mut history = txn.open_table(HISTORY).map_err(storage)?;
            let mut gone = Vec::new();
            for row in commits.range(floor + 1..).map_err(storage)? {
                let (bookmark, value) = row.map_err(storage)?;
                let (time, size, objects) = decode_commit(value.value()).ok_or_else(|| {
                    storage(format!(
                        "commit {} has no readable record",
                        bookmark.value()
                    ))
                })?;
                // The newest commit's undo stays, so the floor is at most
                // the commit before it.
                if (time > cutoff && !over(bytes)) || bookmark.value() == self.latest {
                    break;
                }
                if gone.len() == PRUNE_STEP {
                    more = true;
                    break;
                }
                gone.push((bookmark.value(), objects));
                floor = bookmark.value();
                floor_time = time;
                bytes = bytes.saturating_sub(size);
            }
            for (bookmark, objects) in &gone {
                commits.remove(*bookmark).map_err(storage)?;
                for object in objects {
                    history
                        .remove(history_key(object, *bookmark).as_slice())
                        .map_err(storage)?;
                }
            }
            let pruned = gone.len() as u64;
            if pruned > 0 {
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert(FLOOR, floor).map_err(storage)?;
                meta.insert(FLOOR_TIME, floor_time as u64)
                    .map_err(storage)?;
                meta.insert(COMMITS, self.commits - pruned)
                    .map_err(storage)?;
                meta.insert(BYTES, bytes).map_err(storage)?;
            }
            pruned
        };
        if pruned == 0 {
            txn.abort().map_err(storage)?;
            return Ok((0, false));
        }
        txn.commit().map_err(storage)?;
        self.floor = floor;
        self.floor_time = floor_time;
        self.commits -= pruned;
        self.bytes = bytes;
        Ok((pruned, more))
    }
}
