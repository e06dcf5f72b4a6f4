//! A host as one node of a cluster (`[cluster]`, docs/cluster.md): joins
//! the cluster in PostgreSQL, resets the objects of shards that move away,
//! loads the alarms of shards that move here, and listens on its advertised
//! address for the events other nodes forward to it.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

use crate::error::{Error, Result};
use crate::runtime::remote::{ClusterNode, EVENT_PATH, SECRET_HEADER};
use crate::runtime::{HostShared, Namespace};
use crate::settings::ClusterSettings;
use dohost_store::{Cluster, NodeConfig, PostgresBackend};

/// The largest event another node may forward: the largest request body,
/// and room for its head.
const MAX_EVENT_BYTES: usize = 100 << 20 | 1 << 20;

/// Joins the cluster `settings` names through `backend` (its database).
pub(crate) fn join(backend: &PostgresBackend, settings: &ClusterSettings) -> Result<ClusterNode> {
    let membership = Cluster::join(
        backend,
        NodeConfig {
            node: settings.node.clone(),
            address: settings.advertise.to_string(),
            shards: settings.shards,
            lease: settings.lease,
        },
    )?;
    tracing::info!(
        node = %settings.node,
        advertise = %settings.advertise,
        "joined the cluster"
    );
    ClusterNode::new(membership, settings)
}

/// Resets the live objects of shards this node loses, and reloads the
/// alarm schedule when it takes shards.
pub(crate) fn follow_moves(
    shared: &Arc<HostShared>,
    namespaces: &Arc<BTreeMap<String, Namespace>>,
) {
    let Some(node) = &shared.cluster else {
        return;
    };
    let weak_shared = Arc::downgrade(shared);
    let weak_namespaces = Arc::downgrade(namespaces);
    let membership = node.membership.clone();
    node.membership.on_change(Box::new(move |lost, taken| {
        if let Some(namespaces) = weak_namespaces.upgrade()
            && !lost.is_empty()
        {
            let lost: std::collections::HashSet<u32> = lost.iter().copied().collect();
            for namespace in namespaces.values() {
                namespace.close_where(|key| lost.contains(&membership.shard(key)));
            }
        }
        if let Some(shared) = weak_shared.upgrade()
            && !taken.is_empty()
        {
            shared.schedule.reload();
        }
    }));
}

/// Binds `address`, where the other nodes will reach this one; checked
/// before the node joins, so a node that cannot listen takes no shard.
pub(crate) fn bind(address: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::config(
            "a cluster node must be built inside a tokio runtime: it listens for the other nodes",
        ));
    }
    let listener = std::net::TcpListener::bind(address).map_err(|e| {
        Error::config(format!(
            "cluster.advertise = \"{address}\": cannot listen there for the other nodes: {e}"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::config(format!("cluster: {e}")))?;
    Ok(listener)
}

/// The task answering the other nodes, and how to stop it.
pub(crate) struct Listening {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// Stops accepting, answers what is in flight and closes the idle
    /// connections cleanly (so the other nodes' pools drop them instead
    /// of sending on them), for at most 5 s.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// Answers the events other nodes forward on `listener` until stopped. It
/// holds the host weakly.
pub(crate) fn listen(
    listener: std::net::TcpListener,
    host: Weak<super::host::HostInner>,
) -> Listening {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut stopped => break,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let host = host.clone();
            let service = hyper::service::service_fn(move |request| {
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(host, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Listening { stop, task }
}

/// Answers one request of another node.
async fn answer(
    host: Weak<super::host::HostInner>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, text: &str| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(text.to_owned())));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
        response
    };
    if request.method() != hyper::Method::POST || request.uri().path() != EVENT_PATH {
        return reply(404, "not a cluster endpoint");
    }
    let secret = request
        .headers()
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let body = match Limited::new(request.into_body(), MAX_EVENT_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(413, "the forwarded event is too large or was cut off"),
    };
    let Some(host) = host.upgrade() else {
        return reply(421, "this node is shutting down");
    };
    let Some(node) = &host.shared.cluster else {
        return reply(404, "not a cluster node");
    };
    let response = node
        .handle(&host.namespaces, secret.as_deref(), &body)
        .await;
    let (parts, body) = response.into_parts();
    hyper::Response::from_parts(parts, Full::new(body))
}

/// A cluster as `dohost cluster status` shows it: read from its database,
/// without joining it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The number of shards.
    pub shards: u32,
    /// Every node that ever joined, with its last heartbeat.
    pub nodes: Vec<dohost_store::NodeStatus>,
    /// Every shard's lease.
    pub leases: Vec<dohost_store::ShardStatus>,
    /// The lease time of the configuration read: a node whose last
    /// heartbeat is older is counted as down.
    pub lease: std::time::Duration,
}

/// Reads the cluster `settings` names (its `database`).
///
/// # Errors
///
/// [`crate::ErrorKind::Storage`] if PostgreSQL cannot be read,
/// [`crate::ErrorKind::NotFound`] if no node has created the cluster yet.
pub fn cluster_status(settings: &ClusterSettings) -> Result<ClusterStatus> {
    let backend = PostgresBackend::connect(&settings.database)?;
    let (shards, nodes, leases) = dohost_store::cluster_status(&backend)?;
    Ok(ClusterStatus {
        shards,
        nodes,
        leases,
        lease: settings.lease,
    })
}

impl std::fmt::Display for ClusterStatus {
    /// Each node (address, last heartbeat, shards owned, the soonest lease
    /// expiry), the shards each owns, then the shards no node owns.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} shards, {} nodes", self.shards, self.nodes.len())?;
        writeln!(
            f,
            "{:<16} {:<22} {:>10} {:>7} {:>14}  state",
            "node", "address", "heartbeat", "shards", "leases expire"
        )?;
        for node in &self.nodes {
            let owned: Vec<&dohost_store::ShardStatus> = self
                .leases
                .iter()
                .filter(|l| l.owner.as_deref() == Some(node.node.as_str()))
                .collect();
            let soonest = owned.iter().filter_map(|l| l.expires_in).min();
            let state = if node.draining {
                "left"
            } else if node.heartbeat > self.lease {
                "down"
            } else {
                "live"
            };
            writeln!(
                f,
                "{:<16} {:<22} {:>8.1}s {:>7} {:>14}  {state}",
                node.node,
                node.address,
                node.heartbeat.as_secs_f64(),
                owned.len(),
                soonest.map_or_else(|| "-".to_owned(), |d| format!("in {:.1}s", d.as_secs_f64())),
            )?;
        }
        for node in &self.nodes {
            let owned: Vec<String> = self
                .leases
                .iter()
                .filter(|l| l.owner.as_deref() == Some(node.node.as_str()))
                .map(|l| l.shard.to_string())
                .collect();
            if !owned.is_empty() {
                writeln!(f, "{} owns shards: {}", node.node, owned.join(" "))?;
            }
        }
        let free: Vec<String> = self
            .leases
            .iter()
            .filter(|l| l.owner.is_none())
            .map(|l| l.shard.to_string())
            .collect();
        if free.is_empty() {
            writeln!(f, "every shard has an owner")
        } else {
            writeln!(
                f,
                "{} shards without an owner now (they move within a lease): {}",
                free.len(),
                free.join(" ")
            )
        }
    }
}
