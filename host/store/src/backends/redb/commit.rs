//! redb's part of a group commit: one write transaction for the write
//! sets of a batch, and one fsync.

use std::collections::HashMap;
use std::time::Instant;

use redb::{Database, ReadableTable};

use super::history::HistoryState;
use super::sealed::seal;
use super::{ALARM_TIMES, ALARMS, KV, OBJECTS, PAGES};
use crate::alarm::{AlarmChange, AlarmRecord, AlarmWrite};
use crate::backend::ObjectWrites;
use crate::directory::ObjectRecord;
use crate::history::{Undo, UndoTarget, note};
use crate::keys::OBJECT_KEY_LEN;
use crate::keys::{ObjectKey, alarm_time_key};
use crate::writes::{Write, WriteSet};

/// Applies the alarm part of `writes` (its alarm write, or the removal
/// that `clear` implies) to the `alarms` table and its time index; the
/// change the scheduler must hear of, if any.
fn write_alarm(
    alarms: &mut redb::Table<&[u8], &[u8]>,
    alarm_times: &mut redb::Table<&[u8], &[u8]>,
    object: &ObjectKey,
    writes: &WriteSet,
    undo: Option<&mut Undo>,
) -> std::result::Result<Option<AlarmChange>, redb::StorageError> {
    let write = match (writes.clear, writes.alarm) {
        (_, Some(write)) => write,
        (true, None) => AlarmWrite::Delete,
        (false, None) => return Ok(None),
    };
    let stored = alarms.get(object.as_bytes())?.map(|v| v.value().to_vec());
    if let Some(undo) = undo {
        note(undo, UndoTarget::Alarm, stored.as_deref());
    }
    let old = stored.as_deref().and_then(AlarmRecord::decode);
    let new = write.record();
    match new {
        Some(record) => {
            alarms.insert(object.as_bytes(), record.encode().as_slice())?;
        }
        None => {
            alarms.remove(object.as_bytes())?;
        }
    }
    let (old_time, new_time) = (old.map(|r| r.time), new.map(|r| r.time));
    if old_time != new_time {
        if let Some(time) = old_time {
            alarm_times.remove(alarm_time_key(time, object).as_slice())?;
        }
        if let Some(time) = new_time {
            alarm_times.insert(alarm_time_key(time, object).as_slice(), [].as_slice())?;
        }
    }
    // The start of a delivery keeps the time: nothing to schedule.
    let quiet =
        matches!(write, AlarmWrite::Started(_)) || (old_time.is_none() && new_time.is_none());
    Ok((!quiet).then_some(AlarmChange {
        object: *object,
        old: old_time,
        new: new_time,
    }))
}

/// Which write set of a batch writes each SQL page and key last: only its
/// write goes to redb, since the later one would overwrite the earlier in
/// the same transaction anyway. A hot object's events write the same pages
/// again and again (a SQL table's last leaf, its header page), so a batch
/// of its write sets costs what its distinct pages cost, not their sum.
/// Cuts and `clear` still apply in order: they remove only what no later
/// write set writes again.
struct LastWrites<'a> {
    pages: HashMap<(ObjectKey, u32), usize>,
    keys: HashMap<(ObjectKey, &'a str), usize>,
}

impl<'a> LastWrites<'a> {
    fn of(batch: &'a [&'a ObjectWrites]) -> Self {
        let mut last = LastWrites {
            pages: HashMap::new(),
            keys: HashMap::new(),
        };
        for (i, request) in batch.iter().enumerate() {
            for page in request.writes.pages.pages.keys() {
                last.pages.insert((request.object, *page), i);
            }
            for key in request.writes.entries.keys() {
                last.keys.insert((request.object, key.as_str()), i);
            }
        }
        last
    }

    /// Whether write set `i` writes `page` of `object` last.
    fn page(&self, i: usize, object: &ObjectKey, page: u32) -> bool {
        self.pages.get(&(*object, page)) == Some(&i)
    }

    /// Whether write set `i` writes `key` of `object` last.
    fn key(&self, i: usize, object: &ObjectKey, key: &str) -> bool {
        self.keys.get(&(*object, key)) == Some(&i)
    }
}

/// The KV key of a `kv` table key.
fn kv_key(stored: &[u8]) -> String {
    String::from_utf8_lossy(&stored[OBJECT_KEY_LEN..]).into_owned()
}

/// The page number of a `pages` table key.
fn page_number(stored: &[u8]) -> u32 {
    let bytes = stored[OBJECT_KEY_LEN..].try_into().unwrap_or([0; 4]);
    u32::from_be_bytes(bytes)
}

/// Commits `batch` in one transaction; adds the alarm changes it made to
/// `changes`, and the time of redb's commit (its fsync) to `sync`. With
/// `history`, the transaction also keeps each object's undo under the
/// commit's bookmark ([`crate::history`]); `history` moves on only if the
/// commit succeeds.
pub(super) fn commit_batch(
    db: &Database,
    batch: &[&ObjectWrites],
    changes: &mut Vec<AlarmChange>,
    sync: &metrics::Histogram,
    history: Option<&mut HistoryState>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("storage commit failed: {e}");
    let txn = db.begin_write().map_err(|e| err(&e))?;
    let mut undos: Option<HashMap<ObjectKey, Undo>> = history.is_some().then(HashMap::new);
    {
        let mut kv = txn.open_table(KV).map_err(|e| err(&e))?;
        let mut pages = txn.open_table(PAGES).map_err(|e| err(&e))?;
        let mut alarms = txn.open_table(ALARMS).map_err(|e| err(&e))?;
        let mut alarm_times = txn.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
        let mut objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
        let last = LastWrites::of(batch);
        for (i, request) in batch.iter().enumerate() {
            let mut undo = undos.as_mut().map(|u| u.entry(request.object).or_default());
            if let Some(change) = write_alarm(
                &mut alarms,
                &mut alarm_times,
                &request.object,
                &request.writes,
                undo.as_deref_mut(),
            )
            .map_err(|e| err(&e))?
            {
                changes.push(change);
            }
            let object = &request.object;
            let end = object.end();
            if request.writes.clear {
                let lo = object.kv_key("");
                kv.retain_in::<&[u8], _>(lo.as_slice()..end.as_slice(), |k, v| {
                    if let Some(undo) = undo.as_deref_mut() {
                        note(undo, UndoTarget::Kv(kv_key(k)), Some(v));
                    }
                    false
                })
                .map_err(|e| err(&e))?;
            }
            let page_writes = &request.writes.pages;
            let cut = match (request.writes.clear, page_writes.truncate) {
                (true, _) => Some(0),
                (false, cut) => cut,
            };
            if let Some(cut) = cut {
                let lo = object.page_key(cut);
                pages
                    .retain_in::<&[u8], _>(lo.as_slice()..end.as_slice(), |k, v| {
                        if let Some(undo) = undo.as_deref_mut() {
                            note(undo, UndoTarget::Page(page_number(k)), Some(v));
                        }
                        false
                    })
                    .map_err(|e| err(&e))?;
            }
            for (page, bytes) in &page_writes.pages {
                if !last.page(i, object, *page) {
                    continue;
                }
                let old = pages
                    .insert(object.page_key(*page).as_slice(), seal(bytes).as_slice())
                    .map_err(|e| err(&e))?;
                if let Some(undo) = undo.as_deref_mut() {
                    note(
                        undo,
                        UndoTarget::Page(*page),
                        old.as_ref().map(|v| v.value()),
                    );
                }
            }
            for (key, Write { value, .. }) in &request.writes.entries {
                if !last.key(i, object, key) {
                    continue;
                }
                let k = object.kv_key(key);
                let old = match value {
                    Some(v) => kv.insert(k.as_slice(), seal(v).as_slice()),
                    None => kv.remove(k.as_slice()),
                }
                .map_err(|e| err(&e))?;
                if let Some(undo) = undo.as_deref_mut() {
                    note(
                        undo,
                        UndoTarget::Kv(key.clone()),
                        old.as_ref().map(|v| v.value()),
                    );
                }
            }
            if request.writes.unregister {
                objects.remove(object.as_bytes()).map_err(|e| err(&e))?;
            }
            if let Some(record) = &request.record {
                let mut record = record.clone();
                if record.name.is_none() {
                    // Activated without its name (e.g. by its alarm): keep
                    // the name an earlier activation recorded.
                    let known = objects
                        .get(object.as_bytes())
                        .map_err(|e| err(&e))?
                        .and_then(|v| serde_json::from_slice::<ObjectRecord>(v.value()).ok());
                    record.name = known.and_then(|k| k.name);
                }
                let json = serde_json::to_vec(&record).map_err(|e| err(&e))?;
                objects
                    .insert(object.as_bytes(), json.as_slice())
                    .map_err(|e| err(&e))?;
            }
        }
    }
    let recorded = match (history, undos) {
        (Some(history), Some(undos)) => {
            Some((history.record(&txn, undos).map_err(|e| err(&e))?, history))
        }
        _ => None,
    };
    let syncing = Instant::now();
    let committed = txn.commit().map_err(|e| err(&e));
    sync.record(syncing.elapsed().as_secs_f64());
    if committed.is_ok()
        && let Some((commit, history)) = recorded
    {
        history.committed(commit);
    }
    committed
}
