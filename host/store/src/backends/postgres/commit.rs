//! A group commit in PostgreSQL: the write sets of a batch folded into
//! what they change in the end ([`Net`]), then applied in one transaction
//! by a few prepared statements over arrays (`unnest`), whatever the number
//! of objects. The statements go out together (tokio-postgres pipelines
//! what is sent at once; PostgreSQL runs them in order): `BEGIN`, the
//! fence, the old alarms, the writes, then `COMMIT` once the fence is
//! read. So a commit costs two round trips and PostgreSQL's WAL flush.
//!
//! With history on, one more statement goes first among the writes
//! ([`CAPTURE`]): it takes the commit's bookmark and copies what the batch
//! is about to change out of the tables into `dohost.history`, in the same
//! transaction and the same round trip (see history.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::cluster::Cluster;
use super::pg_error;
use crate::alarm::{AlarmChange, AlarmRecord, AlarmWrite};
use crate::backend::{ObjectWrites, Refused};
use crate::directory::ObjectRecord;
use crate::error::Result;
use crate::keys::ObjectKey;

/// The statements of a commit, in the order they run.
const FENCE: &str = "SELECT l.shard FROM dohost.leases l
     JOIN unnest($1::int4[], $2::int8[]) AS w(shard, epoch)
       ON l.shard = w.shard AND l.epoch = w.epoch
     WHERE l.owner = $3 AND l.expires > now()
     FOR SHARE OF l";
const OLD_ALARMS: &str =
    "SELECT object, time, retries FROM dohost.alarms WHERE object = ANY($1) FOR UPDATE";
const CLEAR: &str = "DELETE FROM dohost.kv WHERE object = ANY($1)";
const CUT: &str =
    "DELETE FROM dohost.pages p USING unnest($1::bytea[], $2::int4[]) AS c(object, cut)
     WHERE p.object = c.object AND p.page >= c.cut";
const REMOVE: &str =
    "DELETE FROM dohost.kv k USING unnest($1::bytea[], $2::bytea[]) AS d(object, key)
     WHERE k.object = d.object AND k.key = d.key";
const WRITE: &str = "INSERT INTO dohost.kv (object, key, value)
     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])
     ON CONFLICT (object, key) DO UPDATE SET value = EXCLUDED.value";
const PAGES: &str = "INSERT INTO dohost.pages (object, page, bytes)
     SELECT * FROM unnest($1::bytea[], $2::int4[], $3::bytea[])
     ON CONFLICT (object, page) DO UPDATE SET bytes = EXCLUDED.bytes";
const DELETE_ALARMS: &str = "DELETE FROM dohost.alarms WHERE object = ANY($1)";
const SET_ALARMS: &str = "INSERT INTO dohost.alarms (object, time, retries)
     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int4[])
     ON CONFLICT (object) DO UPDATE SET time = EXCLUDED.time, retries = EXCLUDED.retries";
const UNREGISTER: &str = "DELETE FROM dohost.objects WHERE object = ANY($1)";
/// The history of a commit (see history.rs), before its writes: the next
/// bookmark; what every key, page and alarm the batch changes holds now
/// (`$1` the objects cleared, `$2`/`$3` the keys written or removed,
/// `$4`/`$5` the cuts, `$6`/`$7` the pages written, `$8` the objects with
/// alarm writes), one row each; and the commit's row, with the objects
/// changed (`$9`) and the bytes kept.
const CAPTURE: &str = "WITH b AS (SELECT nextval('dohost.history_bookmarks') AS bookmark),
     old (object, kind, item, value) AS (
         SELECT object, 0::int2, key, value FROM dohost.kv WHERE object = ANY($1::bytea[])
       UNION ALL
         SELECT w.object, 0::int2, w.key, k.value
         FROM unnest($2::bytea[], $3::bytea[]) AS w(object, key)
         LEFT JOIN dohost.kv k ON k.object = w.object AND k.key = w.key
       UNION ALL
         SELECT p.object, 1::int2, int4send(p.page), p.bytes
         FROM dohost.pages p JOIN unnest($4::bytea[], $5::int4[]) AS c(object, cut)
           ON p.object = c.object AND p.page >= c.cut
       UNION ALL
         SELECT w.object, 1::int2, int4send(w.page), p.bytes
         FROM unnest($6::bytea[], $7::int4[]) AS w(object, page)
         LEFT JOIN dohost.pages p ON p.object = w.object AND p.page = w.page
       UNION ALL
         SELECT w.object, 2::int2, ''::bytea, int8send(a.time) || int4send(a.retries)
         FROM unnest($8::bytea[]) AS w(object)
         LEFT JOIN dohost.alarms a ON a.object = w.object
     ),
     kept AS (
         INSERT INTO dohost.history (object, bookmark, kind, item, value)
         SELECT old.object, b.bookmark, old.kind, old.item, old.value FROM old, b
         ON CONFLICT DO NOTHING
         RETURNING octet_length(object) + octet_length(item)
             + coalesce(octet_length(value), 0) + 10 AS bytes
     )
     INSERT INTO dohost.history_commits (bookmark, time, objects, bytes)
     SELECT b.bookmark, (extract(epoch FROM clock_timestamp()) * 1000)::int8, $9::bytea[],
         (SELECT coalesce(sum(bytes), 0) FROM kept)::int8 + 24 + 36 * cardinality($9::bytea[])
     FROM b";
const REGISTER: &str = "INSERT INTO dohost.objects (object, class, name)
     SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[])
     ON CONFLICT (object) DO UPDATE
     SET class = EXCLUDED.class, name = COALESCE(EXCLUDED.name, dohost.objects.name)";

/// The committer's connection with its statements prepared once.
pub(super) struct Writer {
    pub(super) client: Client,
    statements: BTreeMap<&'static str, Statement>,
}

impl Writer {
    /// Prepares the commit's statements on `client`.
    pub(super) async fn new(client: Client) -> Result<Writer> {
        let mut statements = BTreeMap::new();
        for sql in [
            FENCE,
            OLD_ALARMS,
            CLEAR,
            CUT,
            REMOVE,
            WRITE,
            PAGES,
            DELETE_ALARMS,
            SET_ALARMS,
            UNREGISTER,
            REGISTER,
            CAPTURE,
        ] {
            let statement = client
                .prepare(sql)
                .await
                .map_err(|e| pg_error("preparing the commit", &e))?;
            statements.insert(sql, statement);
        }
        Ok(Writer { client, statements })
    }

    fn statement(&self, sql: &'static str) -> &Statement {
        &self.statements[sql]
    }
}

/// What a batch's write sets change in one object, in the end.
#[derive(Default)]
struct ObjectNet<'a> {
    /// Remove every committed key first (a `delete-all`).
    clear: bool,
    /// Remove every committed page at or after this one first.
    cut: Option<u32>,
    /// Then these keys: written, or removed (`None`).
    keys: BTreeMap<&'a str, Option<&'a Bytes>>,
    /// And these pages.
    pages: BTreeMap<u32, &'a Bytes>,
    /// The alarm writes, in order (each may be a change to report).
    alarms: Vec<AlarmWrite>,
    /// The directory: removed first, then (re)entered with this record.
    unregister: bool,
    record: Option<ObjectRecord>,
}

/// What a batch changes, object by object (see the module docs).
pub(super) struct Net<'a> {
    objects: BTreeMap<ObjectKey, ObjectNet<'a>>,
}

impl<'a> Net<'a> {
    /// Folds `batch` in order: a later write of a key or page replaces an
    /// earlier one, a cut or `delete-all` drops what came before it.
    fn of(batch: &[&'a ObjectWrites]) -> Net<'a> {
        let mut objects: BTreeMap<ObjectKey, ObjectNet<'a>> = BTreeMap::new();
        for request in batch {
            let net = objects.entry(request.object).or_default();
            let writes = &request.writes;
            if writes.clear {
                net.clear = true;
                net.keys.clear();
                net.pages.clear();
                net.cut = Some(0);
            }
            if let Some(cut) = writes.pages.truncate {
                net.pages.retain(|page, _| *page < cut);
                net.cut = Some(net.cut.map_or(cut, |c| c.min(cut)));
            }
            for (page, bytes) in &writes.pages.pages {
                net.pages.insert(*page, bytes);
            }
            for (key, write) in &writes.entries {
                net.keys.insert(key.as_str(), write.value.as_ref());
            }
            match (writes.clear, writes.alarm) {
                (_, Some(write)) => net.alarms.push(write),
                (true, None) => net.alarms.push(AlarmWrite::Delete),
                (false, None) => {}
            }
            if writes.unregister {
                net.unregister = true;
                net.record = None;
            }
            if let Some(record) = &request.record {
                let mut record = record.clone();
                if record.name.is_none() {
                    // Activated without its name: keep the one recorded.
                    record.name = net.record.as_ref().and_then(|r| r.name.clone());
                }
                net.record = Some(record);
            }
        }
        Net { objects }
    }

    /// The statements that apply the batch (after `BEGIN`), in order,
    /// each with its parameters; with `history`, [`CAPTURE`] first.
    fn statements(&self, history: bool) -> Vec<(&'static str, Vec<Box<dyn ToSql + Sync + Send>>)> {
        let key = |object: &ObjectKey| object.as_bytes().to_vec();
        let mut out: Vec<(&'static str, Vec<Box<dyn ToSql + Sync + Send>>)> = Vec::new();
        if history {
            out.push((CAPTURE, self.capture()));
        }
        let cleared: Vec<Vec<u8>> = self.each(|o, n| n.clear.then(|| key(o)));
        if !cleared.is_empty() {
            out.push((CLEAR, vec![Box::new(cleared)]));
        }
        let cuts: Vec<(Vec<u8>, i32)> = self.each_many(|o, n| {
            n.cut
                .map(|cut| (key(o), i32::try_from(cut).unwrap_or(i32::MAX)))
                .into_iter()
                .collect()
        });
        if !cuts.is_empty() {
            let (objects, from): (Vec<_>, Vec<_>) = cuts.into_iter().unzip();
            out.push((CUT, vec![Box::new(objects), Box::new(from)]));
        }
        let removed: Vec<(Vec<u8>, Vec<u8>)> = self.each_many(|o, n| {
            n.keys
                .iter()
                .filter(|(_, v)| v.is_none() && !n.clear)
                .map(|(k, _)| (key(o), k.as_bytes().to_vec()))
                .collect()
        });
        if !removed.is_empty() {
            let (objects, keys): (Vec<_>, Vec<_>) = removed.into_iter().unzip();
            out.push((REMOVE, vec![Box::new(objects), Box::new(keys)]));
        }
        let written: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = self.each_many(|o, n| {
            n.keys
                .iter()
                .filter_map(|(k, v)| v.map(|v| (key(o), k.as_bytes().to_vec(), v.to_vec())))
                .collect()
        });
        if !written.is_empty() {
            let (objects, keys, values) = unzip3(written);
            out.push((
                WRITE,
                vec![Box::new(objects), Box::new(keys), Box::new(values)],
            ));
        }
        let pages: Vec<(Vec<u8>, i32, Vec<u8>)> = self.each_many(|o, n| {
            n.pages
                .iter()
                .map(|(page, bytes)| {
                    (
                        key(o),
                        i32::try_from(*page).unwrap_or(i32::MAX),
                        bytes.to_vec(),
                    )
                })
                .collect()
        });
        if !pages.is_empty() {
            let (objects, numbers, bytes) = unzip3(pages);
            out.push((
                PAGES,
                vec![Box::new(objects), Box::new(numbers), Box::new(bytes)],
            ));
        }
        let deleted: Vec<Vec<u8>> = self.each(|o, n| {
            n.alarms
                .last()
                .is_some_and(|last| last.record().is_none())
                .then(|| key(o))
        });
        if !deleted.is_empty() {
            out.push((DELETE_ALARMS, vec![Box::new(deleted)]));
        }
        let set: Vec<(Vec<u8>, i64, i32)> = self.each(|o, n| {
            let record = n.alarms.last()?.record()?;
            Some((
                key(o),
                record.time,
                i32::try_from(record.retries).unwrap_or(i32::MAX),
            ))
        });
        if !set.is_empty() {
            let (objects, times, retries) = unzip3(set);
            out.push((
                SET_ALARMS,
                vec![Box::new(objects), Box::new(times), Box::new(retries)],
            ));
        }
        let unregistered: Vec<Vec<u8>> = self.each(|o, n| n.unregister.then(|| key(o)));
        if !unregistered.is_empty() {
            out.push((UNREGISTER, vec![Box::new(unregistered)]));
        }
        let registered: Vec<(Vec<u8>, String, Option<String>)> = self.each_many(|o, n| {
            n.record
                .iter()
                .map(|r| (key(o), r.class.clone(), r.name.clone()))
                .collect()
        });
        if !registered.is_empty() {
            let (objects, classes, names) = unzip3(registered);
            out.push((
                REGISTER,
                vec![Box::new(objects), Box::new(classes), Box::new(names)],
            ));
        }
        out
    }

    /// The parameters of [`CAPTURE`]: everything the batch changes.
    fn capture(&self) -> Vec<Box<dyn ToSql + Sync + Send>> {
        let key = |object: &ObjectKey| object.as_bytes().to_vec();
        let page = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let cleared: Vec<Vec<u8>> = self.each(|o, n| n.clear.then(|| key(o)));
        let keys: Vec<(Vec<u8>, Vec<u8>)> = self.each_many(|o, n| {
            n.keys
                .keys()
                .map(|k| (key(o), k.as_bytes().to_vec()))
                .collect()
        });
        let cuts: Vec<(Vec<u8>, i32)> = self.each(|o, n| Some((key(o), page(n.cut?))));
        let pages: Vec<(Vec<u8>, i32)> =
            self.each_many(|o, n| n.pages.keys().map(|p| (key(o), page(*p))).collect());
        let changed: Vec<Vec<u8>> = self.each(|o, n| {
            let any = n.clear
                || n.cut.is_some()
                || !n.keys.is_empty()
                || !n.pages.is_empty()
                || !n.alarms.is_empty();
            any.then(|| key(o))
        });
        let (key_objects, keys): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
        let (cut_objects, cuts): (Vec<_>, Vec<_>) = cuts.into_iter().unzip();
        let (page_objects, pages): (Vec<_>, Vec<_>) = pages.into_iter().unzip();
        vec![
            Box::new(cleared),
            Box::new(key_objects),
            Box::new(keys),
            Box::new(cut_objects),
            Box::new(cuts),
            Box::new(page_objects),
            Box::new(pages),
            Box::new(self.alarmed()),
            Box::new(changed),
        ]
    }

    /// The objects with alarm writes.
    fn alarmed(&self) -> Vec<Vec<u8>> {
        self.each(|o, n| (!n.alarms.is_empty()).then(|| o.as_bytes().to_vec()))
    }

    /// The alarm changes the batch makes, given each alarmed object's
    /// alarm before it: one per write that moves an alarm's time.
    fn alarm_changes(&self, mut before: BTreeMap<Vec<u8>, AlarmRecord>) -> Vec<AlarmChange> {
        let mut changes = Vec::new();
        for (object, net) in &self.objects {
            let mut alarm = before.remove(object.as_bytes());
            for write in &net.alarms {
                let new = write.record();
                let (old_time, new_time) = (alarm.map(|r| r.time), new.map(|r| r.time));
                // The start of a delivery keeps the time: nothing to
                // schedule.
                let quiet = matches!(write, AlarmWrite::Started(_))
                    || (old_time.is_none() && new_time.is_none());
                if !quiet {
                    changes.push(AlarmChange {
                        object: *object,
                        old: old_time,
                        new: new_time,
                    });
                }
                alarm = new;
            }
        }
        changes
    }

    /// One value per object that `f` gives one for.
    fn each<T>(&self, f: impl Fn(&ObjectKey, &ObjectNet<'a>) -> Option<T>) -> Vec<T> {
        self.objects.iter().filter_map(|(o, n)| f(o, n)).collect()
    }

    /// The values `f` gives for every object, in object order.
    fn each_many<T>(&self, f: impl Fn(&ObjectKey, &ObjectNet<'a>) -> Vec<T>) -> Vec<T> {
        self.objects.iter().flat_map(|(o, n)| f(o, n)).collect()
    }
}

/// Commits `batch` in one transaction on `writer`: with a cluster, the
/// fence checks (and share-locks) the leases of the shards it writes, and
/// the write sets of shards this node no longer owns are refused (see
/// cluster.rs). With `history`, the transaction keeps the batch's
/// history too. Adds the alarm changes to `changes` and the time of
/// `COMMIT` to `sync`.
pub(super) async fn commit(
    writer: &Writer,
    batch: &[&ObjectWrites],
    fence: Option<&Cluster>,
    history: bool,
    changes: &mut Vec<AlarmChange>,
    sync: &metrics::Histogram,
) -> Result<Refused> {
    let mut refused = Refused::new();
    // The write sets of shards this node does not own (by its own view)
    // are refused at once; those whose lease PostgreSQL does not confirm,
    // after one more try without them.
    let shard_of = |i: usize| fence.map(|c| c.shard(&batch[i].object));
    let lost = |shard: u32| {
        format!(
            "{} {shard} (its lease moved to another node, or this node could not renew it in time); the write is not durable: retry, the request reaches the new owner",
            crate::NOT_OWNER
        )
    };
    let mut epochs: BTreeMap<u32, i64> = BTreeMap::new();
    let mut allowed: Vec<usize> = Vec::with_capacity(batch.len());
    for i in 0..batch.len() {
        match (fence, shard_of(i)) {
            (Some(cluster), Some(shard)) => match cluster.epoch(shard) {
                Some(epoch) => {
                    epochs.insert(shard, epoch);
                    allowed.push(i);
                }
                None => refused.push((i, lost(shard))),
            },
            _ => allowed.push(i),
        }
    }
    loop {
        let writes: Vec<&ObjectWrites> = allowed.iter().map(|i| batch[*i]).collect();
        let net = Net::of(&writes);
        let confirmed = net
            .apply(writer, fence.map(|c| (c, &epochs)), history, changes, sync)
            .await?;
        let Some(confirmed) = confirmed else {
            return Ok(refused);
        };
        // The fence failed: refuse the unconfirmed shards, try the rest.
        let (keep, drop): (Vec<usize>, Vec<usize>) = allowed
            .iter()
            .partition(|i| shard_of(**i).is_some_and(|s| confirmed.contains(&s)));
        for i in drop {
            let shard = shard_of(i).unwrap_or_default();
            epochs.remove(&shard);
            refused.push((i, lost(shard)));
        }
        allowed = keep;
    }
}

impl Net<'_> {
    /// Runs the batch in one transaction: `BEGIN`, the fence (the shards of
    /// `fence`'s epochs that PostgreSQL confirms), the old alarms, the
    /// writes, all sent at once; then `COMMIT`, or `ROLLBACK` and the
    /// shards confirmed when the fence did not confirm them all.
    async fn apply(
        &self,
        writer: &Writer,
        fence: Option<(&Cluster, &BTreeMap<u32, i64>)>,
        history: bool,
        changes: &mut Vec<AlarmChange>,
        sync: &metrics::Histogram,
    ) -> Result<Option<BTreeSet<u32>>> {
        let err = |e: tokio_postgres::Error| pg_error("commit", &e);
        let client = &writer.client;
        let (shards, epochs): (Vec<i32>, Vec<i64>) = fence
            .map(|(_, epochs)| {
                epochs
                    .iter()
                    .map(|(shard, epoch)| (i32::try_from(*shard).unwrap_or(i32::MAX), *epoch))
                    .unzip()
            })
            .unwrap_or_default();
        let node = fence.map(|(c, _)| c.node().to_owned()).unwrap_or_default();
        let alarmed = self.alarmed();
        let statements = self.statements(history);

        let begin = client.batch_execute("BEGIN");
        let fenced = async {
            if fence.is_none() {
                return Ok(Vec::new());
            }
            client
                .query(writer.statement(FENCE), &[&shards, &epochs, &node])
                .await
        };
        let old_alarms = async {
            if alarmed.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query(writer.statement(OLD_ALARMS), &[&alarmed])
                .await
        };
        let writes = try_join_all(statements.iter().map(|(sql, params)| {
            let params: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            async move { client.execute(writer.statement(sql), &params).await }
        }));
        let sent = futures_util::future::try_join4(begin, fenced, old_alarms, writes).await;
        let (_, fenced, old_alarms, _) = match sent {
            Ok(done) => done,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(err(e));
            }
        };
        if fence.is_some() {
            let confirmed: BTreeSet<u32> = fenced
                .iter()
                .map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap_or(u32::MAX))
                .collect();
            if confirmed.len() < shards.len() {
                client.batch_execute("ROLLBACK").await.map_err(err)?;
                return Ok(Some(confirmed));
            }
        }
        let syncing = Instant::now();
        client.batch_execute("COMMIT").await.map_err(err)?;
        sync.record(syncing.elapsed().as_secs_f64());
        let before = old_alarms
            .iter()
            .map(|row| (row.get(0), super::alarm(row, 1)))
            .collect();
        changes.extend(self.alarm_changes(before));
        Ok(None)
    }
}

/// Three columns of rows.
fn unzip3<A, B, C>(rows: Vec<(A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (a, b, c) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
    }
    out
}
