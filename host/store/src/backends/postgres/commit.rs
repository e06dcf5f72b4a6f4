//! A group commit in PostgreSQL: the write sets of a batch folded into
//! what they change in the end ([`Net`]), then applied in one transaction
//! by a few statements over arrays (`unnest`), sent together so they cost
//! one round trip each at most, whatever the number of objects.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use tokio_postgres::{Client, Transaction};

use super::cluster::Cluster;
use super::pg_error;
use crate::alarm::{AlarmChange, AlarmRecord, AlarmWrite};
use crate::backend::{ObjectWrites, Refused};
use crate::directory::ObjectRecord;
use crate::error::Result;
use crate::keys::ObjectKey;

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

    /// Applies the batch inside `txn`; adds the alarm changes to
    /// `changes`.
    async fn apply(&self, txn: &Transaction<'_>, changes: &mut Vec<AlarmChange>) -> Result<()> {
        let err = |e: tokio_postgres::Error| pg_error("commit", &e);
        let key = |object: &ObjectKey| object.as_bytes().to_vec();

        let cleared: Vec<Vec<u8>> = self.each(|o, n| n.clear.then(|| key(o)));
        let cuts: Vec<(Vec<u8>, i32)> = self.each_many(|o, n| {
            n.cut
                .map(|cut| (key(o), i32::try_from(cut).unwrap_or(i32::MAX)))
                .into_iter()
                .collect()
        });
        let removed: Vec<(Vec<u8>, Vec<u8>)> = self.each_many(|o, n| {
            n.keys
                .iter()
                .filter(|(_, v)| v.is_none() && !n.clear)
                .map(|(k, _)| (key(o), k.as_bytes().to_vec()))
                .collect()
        });
        let written: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = self.each_many(|o, n| {
            n.keys
                .iter()
                .filter_map(|(k, v)| v.map(|v| (key(o), k.as_bytes().to_vec(), v.to_vec())))
                .collect()
        });
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
        let unregistered: Vec<Vec<u8>> = self.each(|o, n| n.unregister.then(|| key(o)));
        let registered: Vec<(Vec<u8>, String, Option<String>)> = self.each_many(|o, n| {
            n.record
                .iter()
                .map(|r| (key(o), r.class.clone(), r.name.clone()))
                .collect()
        });
        let alarmed: Vec<Vec<u8>> = self.each(|o, n| (!n.alarms.is_empty()).then(|| key(o)));

        if !cleared.is_empty() {
            txn.execute("DELETE FROM dohost.kv WHERE object = ANY($1)", &[&cleared])
                .await
                .map_err(err)?;
        }
        if !cuts.is_empty() {
            let (objects, from): (Vec<_>, Vec<_>) = cuts.into_iter().unzip();
            txn.execute(
                "DELETE FROM dohost.pages p USING unnest($1::bytea[], $2::int4[]) AS c(object, cut)
                 WHERE p.object = c.object AND p.page >= c.cut",
                &[&objects, &from],
            )
            .await
            .map_err(err)?;
        }
        if !removed.is_empty() {
            let (objects, keys): (Vec<_>, Vec<_>) = removed.into_iter().unzip();
            txn.execute(
                "DELETE FROM dohost.kv k USING unnest($1::bytea[], $2::bytea[]) AS d(object, key)
                 WHERE k.object = d.object AND k.key = d.key",
                &[&objects, &keys],
            )
            .await
            .map_err(err)?;
        }
        if !written.is_empty() {
            let (objects, keys, values) = unzip3(written);
            txn.execute(
                "INSERT INTO dohost.kv (object, key, value)
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])
                 ON CONFLICT (object, key) DO UPDATE SET value = EXCLUDED.value",
                &[&objects, &keys, &values],
            )
            .await
            .map_err(err)?;
        }
        if !pages.is_empty() {
            let (objects, numbers, bytes) = unzip3(pages);
            txn.execute(
                "INSERT INTO dohost.pages (object, page, bytes)
                 SELECT * FROM unnest($1::bytea[], $2::int4[], $3::bytea[])
                 ON CONFLICT (object, page) DO UPDATE SET bytes = EXCLUDED.bytes",
                &[&objects, &numbers, &bytes],
            )
            .await
            .map_err(err)?;
        }
        if !alarmed.is_empty() {
            let rows = txn
                .query(
                    "SELECT object, time, retries FROM dohost.alarms WHERE object = ANY($1) FOR UPDATE",
                    &[&alarmed],
                )
                .await
                .map_err(err)?;
            let mut current: BTreeMap<Vec<u8>, AlarmRecord> = rows
                .iter()
                .map(|row| (row.get(0), super::alarm(row, 1)))
                .collect();
            let (mut set, mut deleted) = (Vec::new(), Vec::new());
            for (object, net) in &self.objects {
                let Some(last) = net.alarms.last() else {
                    continue;
                };
                let mut alarm = current.remove(object.as_bytes());
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
                match last.record() {
                    Some(record) => set.push((
                        key(object),
                        record.time,
                        i32::try_from(record.retries).unwrap_or(i32::MAX),
                    )),
                    None => deleted.push(key(object)),
                }
            }
            if !deleted.is_empty() {
                txn.execute(
                    "DELETE FROM dohost.alarms WHERE object = ANY($1)",
                    &[&deleted],
                )
                .await
                .map_err(err)?;
            }
            if !set.is_empty() {
                let (objects, times, retries) = unzip3(set);
                txn.execute(
                    "INSERT INTO dohost.alarms (object, time, retries)
                     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int4[])
                     ON CONFLICT (object) DO UPDATE SET time = EXCLUDED.time, retries = EXCLUDED.retries",
                    &[&objects, &times, &retries],
                )
                .await
                .map_err(err)?;
            }
        }
        if !unregistered.is_empty() {
            txn.execute(
                "DELETE FROM dohost.objects WHERE object = ANY($1)",
                &[&unregistered],
            )
            .await
            .map_err(err)?;
        }
        if !registered.is_empty() {
            let (objects, classes, names) = unzip3(registered);
            txn.execute(
                "INSERT INTO dohost.objects (object, class, name)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[])
                 ON CONFLICT (object) DO UPDATE
                 SET class = EXCLUDED.class, name = COALESCE(EXCLUDED.name, dohost.objects.name)",
                &[&objects, &classes, &names],
            )
            .await
            .map_err(err)?;
        }
        Ok(())
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

/// Commits `batch` in one transaction on `client`: with a cluster, first
/// checks (and share-locks) the leases of the shards it writes, and refuses
/// the write sets of shards this node no longer owns (see cluster.rs).
/// Adds the alarm changes to `changes` and the time of `COMMIT` to `sync`.
pub(super) async fn commit(
    client: &mut Client,
    batch: &[&ObjectWrites],
    fence: Option<&Cluster>,
    changes: &mut Vec<AlarmChange>,
    sync: &metrics::Histogram,
) -> Result<Refused> {
    let err = |e: tokio_postgres::Error| pg_error("commit", &e);
    let txn = client.transaction().await.map_err(err)?;
    let mut refused = Refused::new();
    let mut allowed: Vec<&ObjectWrites> = Vec::with_capacity(batch.len());
    if let Some(cluster) = fence {
        let lost = |shard: u32| {
            format!(
                "{} {shard} (its lease moved to another node, or this node could not renew it in time); the write is not durable: retry, the request reaches the new owner",
                crate::NOT_OWNER
            )
        };
        let mut epochs: BTreeMap<u32, i64> = BTreeMap::new();
        let mut shards = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter().enumerate() {
            let shard = cluster.shard(&request.object);
            shards.push(shard);
            match cluster.epoch(shard) {
                Some(epoch) => {
                    epochs.insert(shard, epoch);
                }
                None => refused.push((i, lost(shard))),
            }
        }
        let (wanted, at): (Vec<i32>, Vec<i64>) = epochs
            .iter()
            .map(|(shard, epoch)| (i32::try_from(*shard).unwrap_or(i32::MAX), *epoch))
            .unzip();
        let confirmed: std::collections::BTreeSet<u32> = txn
            .query(
                "SELECT l.shard FROM dohost.leases l
                 JOIN unnest($1::int4[], $2::int8[]) AS w(shard, epoch)
                   ON l.shard = w.shard AND l.epoch = w.epoch
                 WHERE l.owner = $3 AND l.expires > now()
                 FOR SHARE OF l",
                &[&wanted, &at, &cluster.node()],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap_or(u32::MAX))
            .collect();
        for (i, request) in batch.iter().enumerate() {
            if confirmed.contains(&shards[i]) {
                allowed.push(request);
            } else if !refused.iter().any(|(at, _)| *at == i) {
                refused.push((i, lost(shards[i])));
            }
        }
    } else {
        allowed.extend_from_slice(batch);
    }
    Net::of(&allowed).apply(&txn, changes).await?;
    let syncing = Instant::now();
    let committed = txn.commit().await.map_err(err);
    sync.record(syncing.elapsed().as_secs_f64());
    if committed.is_err() {
        changes.clear();
    }
    committed.map(|()| refused)
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
