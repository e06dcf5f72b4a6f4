//! The cluster's membership, kept in PostgreSQL and nothing else.
//!
//! Objects map to a fixed number of shards ([`shard_of`], chosen when the
//! cluster is created). Each shard has a row in `dohost.leases`: its owner,
//! an epoch that grows each time it changes hands, and when the lease
//! expires. Every node writes its heartbeat to `dohost.nodes` and, at each
//! beat ([`Cluster`], a third of the lease time):
//!
//! - reads the live nodes (a heartbeat within the lease time, not
//!   draining) and assigns each shard to one of them by rendezvous hashing,
//!   so a node joining or leaving moves only the shards it wins or held;
//! - renews its leases (those it still holds come back; any other was taken
//!   over, so it is lost);
//! - hands over the shards it holds but no longer wins, in two steps: at
//!   once it takes no new event of theirs (running ones finish and
//!   commit); a beat's time later it forgets them (nothing of theirs
//!   commits any more) and releases their leases;
//! - takes the shards it wins that are free or whose lease expired, each
//!   at the next epoch.
//!
//! **Fencing.** Every commit checks, in its own transaction and with a
//! share lock on the lease rows, that this node still owns each shard it
//! writes at the epoch it took it at, and that the lease has not expired
//! (`commit.rs`). A node that was paused or cut off past its lease cannot
//! commit: those write sets are refused. A node also stops counting a
//! shard as its own once its last renewal is older than the lease time on
//! its own clock, so after a pause it serves nothing until a beat has told
//! it what it still owns.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::schema::SCHEMA_LOCK;
use super::{PostgresBackend, connect, pg_error, wait_on};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ObjectKey;

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// Where the other nodes reach it (`host:port`).
    pub address: String,
    /// The number of shards, used when the cluster is created; a node
    /// configured with another number than the cluster's is refused.
    pub shards: u32,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

/// The shard of `object` among `shards`: the first four bytes of its id (a
/// keyed hash, or random) as a number, modulo `shards`.
pub fn shard_of(object: &ObjectKey, shards: u32) -> u32 {
    let id = object.id();
    u32::from_be_bytes([id[0], id[1], id[2], id[3]]) % shards.max(1)
}

/// A node of the cluster and where it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The node's name.
    pub node: String,
    /// Its address (`host:port`).
    pub address: String,
}

/// A shard's lease as the last beat saw it.
#[derive(Clone, Debug)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u32,
    /// Its owner, if any.
    pub owner: Option<String>,
    /// The epoch of its lease.
    pub epoch: i64,
    /// How long until the lease expires unless renewed, if it is live.
    pub expires_in: Option<Duration>,
}

/// A node of the cluster as the last beat saw it.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its address.
    pub address: String,
    /// How long ago its last heartbeat was.
    pub heartbeat: Duration,
    /// Whether it is draining (stopping).
    pub draining: bool,
}

/// Every node with the age of its heartbeat ([`NodeStatus::of`]).
const NODES: &str = "SELECT node, address, extract(epoch from now() - heartbeat)::float8, draining
     FROM dohost.nodes ORDER BY node";

impl NodeStatus {
    /// A row of [`NODES`].
    fn of(row: &tokio_postgres::Row) -> NodeStatus {
        NodeStatus {
            node: row.get(0),
            address: row.get(1),
            heartbeat: Duration::from_secs_f64(row.get::<_, f64>(2).max(0.0)),
            draining: row.get(3),
        }
    }
}

/// What this node knows of the cluster.
#[derive(Default)]
struct View {
    /// The shards this node owns, with the epoch it took each at.
    held: HashMap<u32, i64>,
    /// Shards it owns but hands over once a beat's time has passed since
    /// (the value): it takes no new event of theirs, and what runs may
    /// still commit.
    releasing: HashMap<u32, Instant>,
    /// When the leases in `held` were last renewed, on this node's clock.
    renewed_at: Option<Instant>,
    /// The owner of each shard that has a live lease.
    owners: HashMap<u32, Owner>,
    nodes: Vec<NodeStatus>,
    shards: Vec<ShardStatus>,
}

/// Hears of the shards this node lost (their objects must be reset) and
/// of those it took (their alarms must be loaded): `(lost, taken)`.
pub type ShardListener = Box<dyn Fn(&[u32], &[u32]) + Send + Sync>;

/// This node's membership of the cluster (see the module docs). Cloning
/// gives another handle to it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    view: RwLock<View>,
    listener: Mutex<Option<ShardListener>>,
    /// The connection the beats use; `None` while it is being replaced.
    client: tokio::sync::Mutex<Option<Client>>,
    /// The driver's runtime and the database, as the backend has them.
    handle: tokio::runtime::Handle,
    database: tokio_postgres::Config,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.config.node)
            .finish_non_exhaustive()
    }
}

/// A rendezvous score of `node` for `shard`: the node with the highest
/// score owns the shard. FNV-1a, then a 64-bit finaliser, so every node
/// computes the same scores.
fn score(node: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain(shard.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's 64-bit finaliser: every input bit moves every output
    // bit, so names that differ in one letter still spread evenly.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}

/// The node of `live` that wins `shard`.
fn winner(live: &[String], shard: u32) -> Option<&String> {
    live.iter()
        .max_by_key(|node| (score(node, shard), node.as_str()))
}

impl Cluster {
    /// Joins the cluster whose state is in `backend`'s database: creates it
    /// (with `config.shards` shards) if it is new, makes a first beat so
    /// this node owns its shards before it serves, and beats from then on.
    /// Every commit of `backend` is fenced from now on.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if the cluster has another number of shards,
    /// [`ErrorKind::Storage`] if PostgreSQL cannot be reached.
    pub fn join(backend: &PostgresBackend, config: NodeConfig) -> Result<Cluster> {
        if config.shards == 0 || config.shards > 65_536 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "[cluster] shards = {}: choose between 1 and 65536 (256 is the default)",
                    config.shards
                ),
            ));
        }
        let client = backend.connect_writer()?;
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                view: RwLock::new(View::default()),
                listener: Mutex::new(None),
                client: tokio::sync::Mutex::new(Some(client)),
                handle: backend.handle.clone(),
                database: backend.config.clone(),
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let me = cluster.clone();
        backend.wait(async move { me.create().await })?;
        backend.set_fence(cluster.clone());
        let me = cluster.clone();
        backend.wait(async move { me.beat().await })?;
        let me = cluster.clone();
        backend.handle.spawn(async move { me.run().await });
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.inner.config.shards
    }

    /// The shard of `object`.
    pub fn shard(&self, object: &ObjectKey) -> u32 {
        shard_of(object, self.inner.config.shards)
    }

    /// Calls `listener` with the shards this node loses and takes from now
    /// on.
    pub fn on_change(&self, listener: ShardListener) {
        *self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// The epoch at which this node owns `shard`, if it does and its last
    /// renewal is younger than the lease.
    pub fn epoch(&self, shard: u32) -> Option<i64> {
        let view = self.inner.view.read().unwrap_or_else(|p| p.into_inner());
        let fresh = view
            .renewed_at
            .is_some_and(|at| at.elapsed() < self.inner.config.lease);
        fresh.then(|| view.held.get(&shard).copied()).flatten()
    }

    /// Whether this node owns `object`'s shard now and takes its events
    /// (it is not handing the shard over).
    pub fn holds(&self, object: &ObjectKey) -> bool {
        let shard = self.shard(object);
        self.epoch(shard).is_some()
            && !self
                .inner
                .view
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .releasing
                .contains_key(&shard)
    }

    /// The owner of `object`'s shard as the last beat saw it.
    pub fn owner(&self, object: &ObjectKey) -> Option<Owner> {
        let shard = self.shard(object);
        let view = self.inner.view.read().unwrap_or_else(|p| p.into_inner());
        view.owners.get(&shard).cloned()
    }

    /// The nodes and the shards' leases as the last beat saw them.
    pub fn status(&self) -> (Vec<NodeStatus>, Vec<ShardStatus>) {
        let view = self.inner.view.read().unwrap_or_else(|p| p.into_inner());
        (view.nodes.clone(), view.shards.clone())
    }

    /// Beats now (after an owner answered that a shard is not its own).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if PostgreSQL cannot be reached.
    pub fn refresh(&self) -> Result<()> {
        let me = self.clone();
        wait_on(&self.inner.handle, async move { me.refresh_async().await })
    }

    /// [`Cluster::refresh`] from async code: the beat runs on the driver's
    /// runtime while the caller awaits it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if PostgreSQL cannot be reached.
    pub async fn refresh_async(&self) -> Result<()> {
        let me = self.clone();
        self.inner
            .handle
            .spawn(async move { me.beat().await })
            .await
            .unwrap_or_else(|e| Err(Error::storage("cluster heartbeat", e)))
    }

    /// Leaves the cluster: marks this node draining, forgets and releases
    /// every lease so the other nodes take its shards at their next beat,
    /// and stops beating. Call it once this node's writes are committed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if PostgreSQL cannot be reached (the leases
    /// then expire by themselves).
    pub fn leave(&self) -> Result<()> {
        let me = self.clone();
        wait_on(&self.inner.handle, async move { me.leave_async().await })
    }

    /// [`Cluster::leave`] from async code.
    ///
    /// # Errors
    ///
    /// As [`Cluster::leave`].
    pub async fn leave_async(&self) -> Result<()> {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let me = self.clone();
        self.inner
            .handle
            .spawn(async move { me.release_all().await })
            .await
            .unwrap_or_else(|e| Err(Error::storage("leaving the cluster", e)))
    }

    /// Creates the cluster's shards if they are not there; checks their
    /// number otherwise.
    async fn create(&self) -> Result<()> {
        let err = |e: tokio_postgres::Error| pg_error("creating the cluster", &e);
        let mut guard = self.inner.client.lock().await;
        let client = guard
            .as_mut()
            .ok_or_else(|| Error::storage("creating the cluster", "not connected"))?;
        let txn = client.transaction().await.map_err(err)?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(err)?;
        let found: Option<i64> = txn
            .query_opt("SELECT value FROM dohost.meta WHERE key = 'shards'", &[])
            .await
            .map_err(err)?
            .map(|row| row.get(0));
        let wanted = i64::from(self.inner.config.shards);
        match found {
            Some(n) if n != wanted => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "[cluster] shards = {wanted}, but the cluster in this database was created with {n} shards; the number cannot change: set shards = {n}"
                    ),
                ));
            }
            Some(_) => {
                // A node that starts again under its name moves its leases
                // to new epochs: whatever still runs of its last life (a
                // paused process) cannot commit any more.
                txn.execute(
                    "UPDATE dohost.leases SET epoch = epoch + 1 WHERE owner = $1",
                    &[&self.inner.config.node],
                )
                .await
                .map_err(err)?;
            }
            None => {
                txn.execute(
                    "INSERT INTO dohost.meta (key, value) VALUES ('shards', $1)",
                    &[&wanted],
                )
                .await
                .map_err(err)?;
                txn.execute(
                    "INSERT INTO dohost.leases (shard) SELECT generate_series(0, $1 - 1)
                     ON CONFLICT DO NOTHING",
                    &[&i32::try_from(wanted).unwrap_or(i32::MAX)],
                )
                .await
                .map_err(err)?;
                tracing::info!("created a cluster of {wanted} shards");
            }
        }
        txn.commit().await.map_err(err)
    }

    /// Beats every third of the lease time until the node leaves. A beat
    /// that fails is logged; once the last renewal is older than the lease,
    /// [`Cluster::epoch`] counts nothing as owned.
    async fn run(self) {
        let period = self.inner.config.lease / 3;
        let mut failing = false;
        loop {
            tokio::time::sleep(period).await;
            if self.inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            match self.beat().await {
                Ok(()) if failing => {
                    tracing::warn!("cluster: PostgreSQL answers heartbeats again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::error!("cluster: a heartbeat failed: {e}");
                    }
                    failing = true;
                }
            }
        }
    }

    /// One beat (see the module docs).
    async fn beat(&self) -> Result<()> {
        let err = |e: tokio_postgres::Error| pg_error("cluster heartbeat", &e);
        let mut guard = self.inner.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.inner.database).await?);
        }
        let Some(client) = guard.as_mut() else {
            return Err(Error::storage("cluster heartbeat", "not connected"));
        };
        let config = &self.inner.config;
        let me = config.node.as_str();
        let lease = config.lease.as_secs_f64();
        let started = Instant::now();
        if self.inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            // Left: only learn where the shards went.
            return self.read_owners(client).await;
        }
        client
            .execute(
                "INSERT INTO dohost.nodes (node, address, heartbeat, draining)
                 VALUES ($1, $2, now(), false)
                 ON CONFLICT (node) DO UPDATE SET address = EXCLUDED.address, heartbeat = now(), draining = false",
                &[&me, &config.address],
            )
            .await
            .map_err(err)?;
        let live: Vec<String> = client
            .query(
                "SELECT node FROM dohost.nodes
                 WHERE heartbeat > now() - make_interval(secs => $1) AND NOT draining",
                &[&lease],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let wins = |shard: u32| winner(&live, shard).is_some_and(|w| w == me);
        let renewed: HashMap<u32, i64> = client
            .query(
                "UPDATE dohost.leases SET expires = now() + make_interval(secs => $2)
                 WHERE owner = $1 RETURNING shard, epoch",
                &[&me, &lease],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|row| (u32::try_from(row.get::<_, i32>(0)).unwrap_or(0), row.get(1)))
            .collect();
        // A shard this node no longer wins is handed over in two beats: at
        // the first it takes no new event of the shard (its objects finish
        // what they have and commit), at the next it forgets the shard and
        // releases the lease.
        let was_releasing = self
            .inner
            .view
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .releasing
            .clone();
        let grace = config.lease / 3;
        let (release, releasing): (Vec<u32>, Vec<u32>) = renewed
            .keys()
            .filter(|shard| !wins(**shard))
            .partition(|shard| {
                was_releasing
                    .get(shard)
                    .is_some_and(|since| since.elapsed() >= grace)
            });
        let release: Vec<i32> = release
            .iter()
            .map(|shard| i32::try_from(*shard).unwrap_or(0))
            .collect();
        let mut held: HashMap<u32, i64> = renewed
            .into_iter()
            .filter(|(shard, _)| !release.contains(&i32::try_from(*shard).unwrap_or(0)))
            .collect();
        let releasing: HashMap<u32, Instant> = releasing
            .into_iter()
            .map(|shard| (shard, was_releasing.get(&shard).copied().unwrap_or(started)))
            .collect();
        // Forget before releasing: nothing of a released shard commits.
        self.update_held(&held, &releasing, Some(started));
        if !release.is_empty() {
            client
                .execute(
                    "UPDATE dohost.leases SET owner = NULL, expires = 'epoch'
                     WHERE owner = $1 AND shard = ANY($2)",
                    &[&me, &release],
                )
                .await
                .map_err(err)?;
        }
        let want: Vec<i32> = (0..config.shards)
            .filter(|shard| wins(*shard) && !held.contains_key(shard))
            .map(|shard| i32::try_from(shard).unwrap_or(0))
            .collect();
        if !want.is_empty() {
            for row in client
                .query(
                    "UPDATE dohost.leases
                     SET owner = $1, epoch = epoch + 1, expires = now() + make_interval(secs => $3)
                     WHERE shard = ANY($2) AND (owner IS NULL OR expires < now())
                     RETURNING shard, epoch",
                    &[&me, &want, &lease],
                )
                .await
                .map_err(err)?
            {
                held.insert(u32::try_from(row.get::<_, i32>(0)).unwrap_or(0), row.get(1));
            }
            self.update_held(&held, &releasing, Some(started));
        }
        self.read_owners(client).await
    }

    /// Reads the nodes and every shard's owner into the view.
    async fn read_owners(&self, client: &Client) -> Result<()> {
        let err = |e: tokio_postgres::Error| pg_error("cluster heartbeat", &e);
        let nodes: Vec<NodeStatus> = client
            .query(NODES, &[])
            .await
            .map_err(err)?
            .iter()
            .map(NodeStatus::of)
            .collect();
        let addresses: BTreeMap<&str, &str> = nodes
            .iter()
            .map(|n| (n.node.as_str(), n.address.as_str()))
            .collect();
        let mut owners = HashMap::new();
        let mut shards = Vec::new();
        for row in client
            .query(
                "SELECT shard, owner, epoch,
                        CASE WHEN expires > now() THEN extract(epoch from expires - now())::float8 END
                 FROM dohost.leases ORDER BY shard",
                &[],
            )
            .await
            .map_err(err)?
        {
            let shard = u32::try_from(row.get::<_, i32>(0)).unwrap_or(0);
            let owner: Option<String> = row.get(1);
            let expires_in: Option<f64> = row.get(3);
            if let (Some(owner), Some(_)) = (&owner, expires_in)
                && let Some(address) = addresses.get(owner.as_str())
            {
                owners.insert(
                    shard,
                    Owner {
                        node: owner.clone(),
                        address: (*address).to_owned(),
                    },
                );
            }
            shards.push(ShardStatus {
                shard,
                owner,
                epoch: row.get(2),
                expires_in: expires_in.map(|s| Duration::from_secs_f64(s.max(0.0))),
            });
        }
        let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
        view.owners = owners;
        view.nodes = nodes;
        view.shards = shards;
        Ok(())
    }

    /// Makes `held` what this node owns (handing `releasing` over), renewed
    /// at `renewed_at`, and tells the listener of the shards whose events
    /// it no longer takes and of those it took.
    fn update_held(
        &self,
        held: &HashMap<u32, i64>,
        releasing: &HashMap<u32, Instant>,
        renewed_at: Option<Instant>,
    ) {
        let (lost, taken): (Vec<u32>, Vec<u32>) = {
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            let lost = view
                .held
                .iter()
                .filter(|(shard, epoch)| {
                    !view.releasing.contains_key(shard)
                        && (held.get(shard) != Some(epoch) || releasing.contains_key(shard))
                })
                .map(|(shard, _)| *shard)
                .collect();
            let taken = held
                .iter()
                .filter(|(shard, epoch)| view.held.get(shard) != Some(epoch))
                .map(|(shard, _)| *shard)
                .collect();
            view.held = held.clone();
            view.releasing = releasing.clone();
            view.renewed_at = renewed_at;
            (lost, taken)
        };
        if !lost.is_empty() {
            tracing::info!(shards = lost.len(), "cluster: shards moved to other nodes");
        }
        if !taken.is_empty() {
            tracing::info!(shards = taken.len(), "cluster: took shards");
        }
        if (!lost.is_empty() || !taken.is_empty())
            && let Some(listener) = &*self
                .inner
                .listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        {
            listener(&lost, &taken);
        }
    }

    /// Marks this node draining and releases every lease it holds.
    async fn release_all(&self) -> Result<()> {
        self.update_held(&HashMap::new(), &HashMap::new(), None);
        let err = |e: tokio_postgres::Error| pg_error("leaving the cluster", &e);
        let guard = self.inner.client.lock().await;
        let Some(client) = guard.as_ref() else {
            return Ok(());
        };
        let me = self.inner.config.node.as_str();
        client
            .execute(
                "UPDATE dohost.nodes SET draining = true WHERE node = $1",
                &[&me],
            )
            .await
            .map_err(err)?;
        client
            .execute(
                "UPDATE dohost.leases SET owner = NULL, expires = 'epoch' WHERE owner = $1",
                &[&me],
            )
            .await
            .map_err(err)?;
        tracing::info!("cluster: left; the other nodes take this node's shards");
        Ok(())
    }
}

/// The cluster in `backend`'s database as it is now, read without
/// joining it: its number of shards, its nodes and every shard's lease.
///
/// # Errors
///
/// [`ErrorKind::Storage`] if PostgreSQL cannot be read,
/// [`ErrorKind::NotFound`] if no cluster was created in this database.
pub fn cluster_status(
    backend: &PostgresBackend,
) -> Result<(u32, Vec<NodeStatus>, Vec<ShardStatus>)> {
    let what = "reading the cluster";
    let shards = backend.query(
        what,
        "SELECT value FROM dohost.meta WHERE key = 'shards'",
        Vec::new(),
    )?;
    let Some(shards) = shards.first().map(|row| row.get::<_, i64>(0)) else {
        return Err(Error::new(
            ErrorKind::NotFound,
            "no cluster was created in this database yet: start a node with [cluster] first",
        ));
    };
    let nodes = backend
        .query(what, NODES, Vec::new())?
        .iter()
        .map(NodeStatus::of)
        .collect();
    let leases = backend
        .query(
            what,
            "SELECT shard, CASE WHEN expires > now() THEN owner END, epoch,
                    CASE WHEN expires > now() THEN extract(epoch from expires - now())::float8 END
             FROM dohost.leases ORDER BY shard",
            Vec::new(),
        )?
        .iter()
        .map(|row| ShardStatus {
            shard: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            owner: row.get(1),
            epoch: row.get(2),
            expires_in: row
                .get::<_, Option<f64>>(3)
                .map(|left| Duration::from_secs_f64(left.max(0.0))),
        })
        .collect();
    Ok((u32::try_from(shards).unwrap_or(0), nodes, leases))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, ObjectWrites};
    use crate::writes::{Write, WriteSet};

    fn node(name: &str, shards: u32) -> NodeConfig {
        NodeConfig {
            node: name.to_owned(),
            address: format!("{name}.invalid:1"),
            shards,
            lease: Duration::from_millis(900),
        }
    }

    fn put(object: ObjectKey) -> ObjectWrites {
        let mut writes = WriteSet::default();
        writes.entries.insert(
            "k".to_owned(),
            Write {
                value: Some(bytes::Bytes::from_static(b"v")),
                no_cache: false,
            },
        );
        ObjectWrites {
            object,
            writes,
            record: None,
        }
    }

    /// An object of `shard` among `shards`.
    fn object_in(shard: u32, shards: u32) -> ObjectKey {
        (0u32..)
            .map(|n| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&n.to_be_bytes());
                ObjectKey::new(1, &id)
            })
            .find(|o| shard_of(o, shards) == shard)
            .unwrap()
    }

    /// Waits until `check` holds, beating both nodes (at most 5 s).
    fn settle(nodes: &[&Cluster], check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "the cluster did not settle");
            for n in nodes {
                n.refresh().unwrap();
            }
        }
    }

    #[test]
    fn nodes_split_the_shards_and_a_node_commits_only_its_own() {
        let server = dohost_test_postgres::Postgres::start();
        let url = server.database();
        let shards = 16;
        let a_backend = PostgresBackend::connect(&url).unwrap();
        let a = Cluster::join(&a_backend, node("a", shards)).unwrap();
        assert!(
            (0..shards).all(|s| a.epoch(s).is_some()),
            "alone, a owns every shard"
        );

        let b_backend = PostgresBackend::connect(&url).unwrap();
        let b = Cluster::join(&b_backend, node("b", shards)).unwrap();
        let split = || {
            (0..shards).all(|s| a.epoch(s).is_some() != b.epoch(s).is_some())
                && (0..shards).any(|s| b.epoch(s).is_some())
        };
        settle(&[&a, &b], split);

        // Fencing: a refuses to commit an object of a shard b owns, and
        // commits its own.
        let theirs = (0..shards).find(|s| b.epoch(*s).is_some()).unwrap();
        let ours = (0..shards).find(|s| a.epoch(*s).is_some()).unwrap();
        let (foreign, own) = (put(object_in(theirs, shards)), put(object_in(ours, shards)));
        let refused = a_backend
            .commit(&[&foreign, &own], &mut Vec::new())
            .unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, 0);
        assert!(refused[0].1.contains("no longer owns"), "{}", refused[0].1);
        assert_eq!(
            a_backend.get(&own.object, &["k".into()]).unwrap(),
            [Some(b"v".to_vec())]
        );
        assert_eq!(
            a_backend.get(&foreign.object, &["k".into()]).unwrap(),
            [None]
        );

        // A leaves: b takes every shard.
        a.leave().unwrap();
        settle(&[&b], || (0..shards).all(|s| b.epoch(s).is_some()));
        let refused = a_backend.commit(&[&own], &mut Vec::new()).unwrap();
        assert_eq!(refused.len(), 1, "a left: it owns nothing");
    }

    #[test]
    fn a_node_whose_lease_was_taken_over_cannot_commit() {
        let server = dohost_test_postgres::Postgres::start();
        let url = server.database();
        let shards = 4;
        let a_backend = PostgresBackend::connect(&url).unwrap();
        let a = Cluster::join(&a_backend, node("a", shards)).unwrap();
        let object = object_in(0, shards);
        let epoch = a.epoch(0).unwrap();
        // b takes shard 0 over as if a had stopped beating: its lease is
        // made to expire, b's beat takes it at the next epoch.
        let b_backend = PostgresBackend::connect(&url).unwrap();
        let b = Cluster::join(&b_backend, node("b", shards)).unwrap();
        let taker = a_backend.reader.clone();
        let expired = taker.query(
            "test",
            "UPDATE dohost.leases SET expires = 'epoch', owner = 'b', epoch = epoch + 1 WHERE shard = 0 RETURNING epoch",
            Vec::new(),
        );
        assert_eq!(expired.unwrap().len(), 1);
        // a still believes it owns shard 0 (no beat since), but the commit
        // checks the lease in PostgreSQL.
        assert_eq!(a.epoch(0), Some(epoch));
        let refused = a_backend.commit(&[&put(object)], &mut Vec::new()).unwrap();
        assert_eq!(refused.len(), 1, "a's stale lease must not commit");
        assert_eq!(b_backend.get(&object, &["k".into()]).unwrap(), [None]);
        drop(b);
    }

    #[test]
    fn rendezvous_moves_only_the_shards_a_new_node_wins() {
        let two = vec!["n1".to_owned(), "n2".to_owned()];
        let three = vec!["n1".to_owned(), "n2".to_owned(), "n3".to_owned()];
        let mut moved = 0;
        for shard in 0..256 {
            let before = winner(&two, shard).unwrap();
            let after = winner(&three, shard).unwrap();
            if before != after {
                assert_eq!(after, "n3", "shard {shard} moved between old nodes");
                moved += 1;
            }
        }
        // About a third of the shards go to the new node.
        assert!((65..105).contains(&moved), "{moved} shards moved");
        // And each of three nodes named alike gets about a third.
        for node in &three {
            let owned = (0..256)
                .filter(|s| winner(&three, *s) == Some(node))
                .count();
            assert!((65..105).contains(&owned), "{node} owns {owned} of 256");
        }
    }
}
