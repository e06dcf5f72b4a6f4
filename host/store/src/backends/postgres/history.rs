//! PostgreSQL's history ([`crate::history`]): three tables and a sequence
//! (schema version 3), shared by every node of a cluster.
//!
//! - `dohost.history_bookmarks`: the sequence each commit with history on
//!   takes its bookmark from. One node writes an object at a time (its
//!   shard's lease fences the commit) and a node commits in turn, so an
//!   object's commits take increasing bookmarks.
//! - `dohost.history`: one row per object, bookmark and thing the commit
//!   changed (`kind` 0 a KV key, `item` the key; 1 a page, `item` its
//!   number as 4 big-endian bytes; 2 the alarm, `item` empty) with what it
//!   held before (`value`, NULL when it did not exist; an alarm as
//!   [`crate::alarm::AlarmRecord`] bytes). The commit writes them itself,
//!   before its writes, in its own transaction (commit.rs, `CAPTURE`).
//! - `dohost.history_commits`: per bookmark its time (PostgreSQL's clock,
//!   ms since the epoch, the same for every node), the objects it wrote
//!   and the bytes its rows take; `counted` once the pruner has added it to
//!   the totals.
//! - `dohost.history_state`: one row: whether history is on, the floor and
//!   its time, and the commits and bytes counted. A commit does not touch
//!   it, so the nodes' commits do not queue on one row: the totals are the
//!   counted ones plus the commits not counted yet.
//!
//! Pruning runs on every node; each step holds [`HISTORY_LOCK`] for its
//! transaction, so steps run one at a time, each starting from what the
//! last one left.

use std::collections::BTreeMap;

use deadpool_postgres::{Object, Pool};

use super::{PostgresBackend, p, pg_error};
use crate::error::{Error, Result};
use crate::history::{
    Bookmark, HistorySettings, HistoryStats, Undo, UndoTarget, before_floor, history_off,
};
use crate::keys::ObjectKey;

/// The advisory lock that turning history on or off and each step of
/// pruning take.
const HISTORY_LOCK: i64 = 0x646f_686f_7374_6869; // "dohosthi"

/// Commits pruned per transaction, so a long prune does not hold its lock
/// (and its deleted rows) for long.
const PRUNE_STEP: i64 = 2_000;

/// What the history holds, and its newest commit: one statement, so one
/// snapshot. Columns: enabled, floor, floor_time, commits, bytes, latest.
const STATS: &str = "SELECT s.enabled, s.floor, s.floor_time, s.commits + u.n, s.bytes + u.b,
        greatest(s.floor, (SELECT max(bookmark) FROM dohost.history_commits))
     FROM dohost.history_state s,
        (SELECT count(*) AS n, coalesce(sum(bytes), 0)::int8 AS b
         FROM dohost.history_commits WHERE NOT counted) u";

/// PostgreSQL's clock in ms since the epoch, as commits record it.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::int8";

/// A connection of the pool for `what`.
async fn pooled(pool: &Pool, what: &str) -> Result<Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(what, &e),
        e => Error::storage(what, format!("PostgreSQL: {e}")),
    })
}

/// Turns history on or off, in one transaction holding [`HISTORY_LOCK`]
/// (see [`crate::Backend::set_history`]).
pub(super) fn enable(backend: &PostgresBackend, on: bool) -> Result<()> {
    let pool = backend.reader.pool.clone();
    backend.wait(async move {
        let what = "turning history on or off";
        let err = |e: tokio_postgres::Error| pg_error(what, &e);
        let mut client = pooled(&pool, what).await?;
        let txn = client.transaction().await.map_err(err)?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&HISTORY_LOCK])
            .await
            .map_err(err)?;
        let was_on: bool = txn
            .query_one("SELECT enabled FROM dohost.history_state", &[])
            .await
            .map_err(err)?
            .get(0);
        if !on {
            txn.execute("UPDATE dohost.history_state SET enabled = false", &[])
                .await
                .map_err(err)?;
        } else if !was_on {
            // Commits went by unrecorded: history starts now, without the
            // rows left from when it was last on, at a bookmark of its own
            // (a bookmark handed out before names a state it cannot
            // rebuild).
            txn.batch_execute(&format!(
                "TRUNCATE dohost.history, dohost.history_commits;
                 UPDATE dohost.history_state SET enabled = true,
                    floor = nextval('dohost.history_bookmarks'),
                    floor_time = {NOW_MS}, commits = 0, bytes = 0;"
            ))
            .await
            .map_err(err)?;
        }
        txn.commit().await.map_err(err)
    })
}

/// A bookmark from a column.
fn bookmark(n: i64) -> Bookmark {
    Bookmark(u64::try_from(n).unwrap_or(0))
}

/// What the history holds; `None` when it is off.
pub(super) fn stats(backend: &PostgresBackend) -> Result<Option<HistoryStats>> {
    let rows = backend.query("read the history", STATS, Vec::new())?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let enabled: bool = row.get(0);
    Ok(enabled.then(|| HistoryStats {
        floor: bookmark(row.get(1)),
        floor_time: row.get(2),
        commits: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        bytes: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        latest: bookmark(row.get(5)),
    }))
}

/// The bookmark of the last commit at or before `time`.
pub(super) fn bookmark_for_time(backend: &PostgresBackend, time: i64) -> Result<Bookmark> {
    let rows = backend.query(
        "read the history",
        "SELECT s.enabled, s.floor, s.floor_time,
            (SELECT bookmark FROM dohost.history_commits WHERE time <= $1
             ORDER BY time DESC, bookmark DESC LIMIT 1)
         FROM dohost.history_state s",
        vec![p(time)],
    )?;
    let row = rows.first().ok_or_else(history_off)?;
    if !row.get::<_, bool>(0) {
        return Err(history_off());
    }
    let (floor, floor_time): (i64, i64) = (row.get(1), row.get(2));
    if time < floor_time {
        return Err(before_floor(
            &format!("the time {time} (ms since the epoch)"),
            bookmark(floor),
            floor_time,
        ));
    }
    let found: Option<i64> = row.get(3);
    Ok(bookmark(found.unwrap_or(floor).max(floor)))
}

/// The undo of each commit after `after` that wrote `object`, oldest
/// first.
pub(super) fn undo_since(
    backend: &PostgresBackend,
    object: &ObjectKey,
    after: Bookmark,
) -> Result<Vec<Undo>> {
    let rows = match i64::try_from(after.0) {
        Ok(after) => backend.query(
            "read the history",
            "SELECT bookmark, kind, item, value FROM dohost.history
             WHERE object = $1 AND bookmark > $2 ORDER BY bookmark",
            vec![p(object.as_bytes().to_vec()), p(after)],
        )?,
        Err(_) => Vec::new(),
    };
    // Read after the rows: pruning moves the floor in the transaction that
    // deletes rows, so a floor at or before `after` now means none of the
    // rows after it had gone.
    let stats = stats(backend)?.ok_or_else(history_off)?;
    if after < stats.floor {
        return Err(before_floor(
            &format!("bookmark {after}"),
            stats.floor,
            stats.floor_time,
        ));
    }
    if after > stats.latest {
        return Err(crate::history::after_latest(after, stats.latest));
    }
    let mut undos: BTreeMap<i64, Undo> = BTreeMap::new();
    for row in &rows {
        let item: Vec<u8> = row.get(2);
        let target = match row.get::<_, i16>(1) {
            0 => UndoTarget::Kv(String::from_utf8_lossy(&item).into_owned()),
            1 => UndoTarget::Page(u32::from_be_bytes(item.as_slice().try_into().map_err(
                |_| Error::storage("read the history", "a page number in it is damaged"),
            )?)),
            2 => UndoTarget::Alarm,
            kind => {
                return Err(Error::storage(
                    "read the history",
                    format!("a row of it has kind {kind}, which this dohost does not know"),
                ));
            }
        };
        undos
            .entry(row.get(0))
            .or_default()
            .insert(target, row.get(3));
    }
    Ok(undos.into_values().collect())
}

/// Prunes what `settings` no longer keep, a step (one transaction) at a
/// time; how many commits' history went.
pub(super) fn prune(backend: &PostgresBackend, settings: HistorySettings) -> Result<u64> {
    let mut pruned = 0;
    loop {
        let pool = backend.reader.pool.clone();
        let (step, more) = backend.wait(prune_step(pool, settings))?;
        pruned += step;
        if !more {
            return Ok(pruned);
        }
    }
}

/// One step of [`prune`]: how many commits went, whether more may go.
async fn prune_step(pool: Pool, settings: HistorySettings) -> Result<(u64, bool)> {
    let what = "prune the history";
    let err = |e: tokio_postgres::Error| pg_error(what, &e);
    let mut client = pooled(&pool, what).await?;
    let txn = client.transaction().await.map_err(err)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&HISTORY_LOCK])
        .await
        .map_err(err)?;
    let state = txn
        .query_one(
            "SELECT enabled, floor, floor_time, commits, bytes FROM dohost.history_state",
            &[],
        )
        .await
        .map_err(err)?;
    if !state.get::<_, bool>(0) {
        return Ok((0, false));
    }
    let (mut floor, mut floor_time): (i64, i64) = (state.get(1), state.get(2));
    let (mut commits, mut bytes): (i64, i64) = (state.get(3), state.get(4));
    // Add the commits made since the last step to the totals.
    let counted = txn
        .query_one(
            "WITH c AS (UPDATE dohost.history_commits SET counted = true
                        WHERE NOT counted RETURNING bytes)
             SELECT count(*), coalesce(sum(bytes), 0)::int8 FROM c",
            &[],
        )
        .await
        .map_err(err)?;
    commits += counted.get::<_, i64>(0);
    bytes += counted.get::<_, i64>(1);
    let now: i64 = txn
        .query_one(&format!("SELECT {NOW_MS}"), &[])
        .await
        .map_err(err)?
        .get(0);
    let cutoff =
        now.saturating_sub(i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX));
    let max = settings
        .max_bytes
        .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    // The newest commit's undo stays, so the floor is at most the commit
    // before it.
    let oldest = txn
        .query(
            "SELECT bookmark, time, bytes FROM dohost.history_commits
             WHERE bookmark < (SELECT max(bookmark) FROM dohost.history_commits)
             ORDER BY bookmark LIMIT $1",
            &[&(PRUNE_STEP + 1)],
        )
        .await
        .map_err(err)?;
    let mut gone: Vec<i64> = Vec::new();
    let mut more = false;
    let mut left = bytes;
    for row in &oldest {
        let (number, time, size): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if time > cutoff && max.is_none_or(|max| left <= max) {
            break;
        }
        if gone.len() as i64 == PRUNE_STEP {
            more = true;
            break;
        }
        gone.push(number);
        if number > floor {
            floor = number;
            floor_time = time;
        }
        left -= size;
    }
    if gone.is_empty() {
        // The counting is kept.
        txn.execute(
            "UPDATE dohost.history_state SET commits = $1, bytes = $2",
            &[&commits, &bytes],
        )
        .await
        .map_err(err)?;
        txn.commit().await.map_err(err)?;
        return Ok((0, false));
    }
    txn.execute(
        "DELETE FROM dohost.history h
         USING (SELECT c.bookmark, unnest(c.objects) AS object
                FROM dohost.history_commits c WHERE c.bookmark = ANY($1)) g
         WHERE h.object = g.object AND h.bookmark = g.bookmark",
        &[&gone],
    )
    .await
    .map_err(err)?;
    // A commit made since the counting above is not in the totals yet.
    let deleted = txn
        .query_one(
            "WITH d AS (DELETE FROM dohost.history_commits WHERE bookmark = ANY($1)
                        RETURNING counted, bytes)
             SELECT count(*) FILTER (WHERE counted),
                 coalesce(sum(bytes) FILTER (WHERE counted), 0)::int8 FROM d",
            &[&gone],
        )
        .await
        .map_err(err)?;
    commits -= deleted.get::<_, i64>(0);
    bytes -= deleted.get::<_, i64>(1);
    txn.execute(
        "UPDATE dohost.history_state
         SET floor = $1, floor_time = $2, commits = $3, bytes = $4",
        &[&floor, &floor_time, &commits, &bytes],
    )
    .await
    .map_err(err)?;
    txn.commit().await.map_err(err)?;
    Ok((u64::try_from(gone.len()).unwrap_or(0), more))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::backend::{Backend, ObjectWrites};
    use crate::writes::{Write, WriteSet};

    fn put(object: ObjectKey, key: &str, value: &str) -> ObjectWrites {
        let mut writes = WriteSet::default();
        writes.entries.insert(
            key.into(),
            Write {
                value: Some(Bytes::from(value.to_owned())),
                no_cache: false,
            },
        );
        ObjectWrites {
            object,
            writes,
            record: None,
        }
    }

    #[test]
    fn the_history_is_the_databases_and_pruning_keeps_it_under_its_size() {
        let server = dohost_test_postgres::Postgres::start();
        let url = server.database();
        let node = PostgresBackend::connect(&url).unwrap();
        let settings = HistorySettings {
            retention: Duration::from_secs(3600),
            max_bytes: Some(1),
        };
        node.set_history(Some(settings)).unwrap();
        let (object, other) = (ObjectKey::new(1, &[3; 32]), ObjectKey::new(1, &[4; 32]));
        node.commit(&[&put(object, "k", "1")], &mut Vec::new())
            .unwrap();
        // One batch writing the key twice: its undo holds what the key
        // held before the batch.
        let batch = [
            put(object, "k", "2"),
            put(object, "k", "3"),
            put(other, "k", "x"),
        ];
        node.commit(&batch.iter().collect::<Vec<_>>(), &mut Vec::new())
            .unwrap();

        // Another process on the database (`dohost objects`) reads the
        // same history without turning it on.
        let reader = PostgresBackend::connect(&url).unwrap();
        let stats = reader.history_stats().unwrap().unwrap();
        assert_eq!((stats.commits, stats.latest.0), (2, stats.floor.0 + 2));
        assert!(stats.bytes > 0);
        let undo = reader.undo_since(&object, stats.floor).unwrap();
        let key = UndoTarget::Kv("k".into());
        assert_eq!(undo.len(), 2);
        assert_eq!(
            (&undo[0][&key], &undo[1][&key]),
            (&None, &Some(b"1".to_vec()))
        );
        assert_eq!(reader.undo_since(&other, stats.floor).unwrap().len(), 1);

        // Over its size: all but the newest commit go, once, whoever
        // prunes.
        assert_eq!(reader.prune_history().unwrap(), 0, "it keeps no history");
        assert_eq!(node.prune_history().unwrap(), 1);
        assert_eq!(node.prune_history().unwrap(), 0);
        let pruned = reader.history_stats().unwrap().unwrap();
        assert_eq!(
            (pruned.commits, pruned.floor.0, pruned.latest),
            (1, stats.floor.0 + 1, stats.latest)
        );
        assert!(pruned.bytes > 0 && pruned.bytes < stats.bytes);
        assert!(reader.undo_since(&object, stats.floor).is_err());

        // Off, then on again: history starts at a bookmark of its own, so
        // the bookmarks handed out before are refused.
        node.set_history(None).unwrap();
        assert_eq!(reader.history_stats().unwrap(), None);
        node.set_history(Some(settings)).unwrap();
        let again = reader.history_stats().unwrap().unwrap();
        let next = Bookmark(stats.latest.0 + 1);
        assert_eq!(
            (again.floor, again.latest, again.commits, again.bytes),
            (next, next, 0, 0)
        );
        assert!(reader.undo_since(&object, stats.latest).is_err());
    }
}
