//! What every namespace, object and worker of a host shares.

use super::targets::Lending;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock, Weak};

use tokio_util::task::TaskTracker;

use super::alarm::Schedule;
use super::engine::Runtime;
use super::guest::Vars;
use super::namespace::{Namespace, find};
use super::object::ReadySlots;
use super::outbound::Outbound;
use super::residency::Residency;
use super::sockets::Sockets;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;
use dohost_store::{CacheBudget, Store};

/// The state every namespace and worker of a host shares.
pub(crate) struct HostShared {
    pub(crate) runtime: Runtime,
    pub(crate) store: Arc<Store>,
    pub(crate) vars: Vars,
    pub(crate) settings: Settings,
    /// The bound on all objects' cached values.
    pub(crate) cache_budget: Arc<CacheBudget>,
    /// The objects in memory and the cap on them.
    pub(crate) residency: Residency,
    /// The client of outbound HTTP requests, with the egress policy.
    pub(crate) outbound: Arc<Outbound>,
    /// The WebSockets objects hold.
    pub(crate) sockets: Sockets,
    /// Set once the host shuts down: no new events are accepted.
    pub(crate) closed: AtomicBool,
    /// Every object actor and the alarm scheduler, so shutdown can wait
    /// for them.
    pub(crate) actors: TaskTracker,

    /// The earliest alarms ([`super::alarm`]).
    pub(crate) schedule: Arc<Schedule>,
    /// Alarm handlers that ran to an end.
    pub(crate) alarms_run: AtomicU64,
    /// Successful activations and their total time in nanoseconds.
    pub(crate) activations: AtomicU64,
    pub(crate) activation_nanos: AtomicU64,
    /// The targets objects lent over RPC.
    pub(crate) lending: Lending,
    /// The number of the last object instance made.
    pub(crate) instances: AtomicU64,
    /// The pool slots held by instances made ahead of their objects.
    pub(crate) ready: ReadySlots,
    /// Every namespace, for objects' calls. Weak: the namespaces hold this
    /// shared state, and the host owns them.
    pub(crate) namespaces: OnceLock<Weak<BTreeMap<String, Namespace>>>,
    /// This node's part in a cluster, if the host is one of its nodes.
    pub(crate) cluster: Option<super::remote::ClusterNode>,
}

impl HostShared {
    /// The state of a host running on `runtime` over `store`, with no
    /// namespaces yet ([`HostShared::namespaces`] is set once they exist).
    pub(crate) fn new(
        runtime: Runtime,
        store: Arc<Store>,
        vars: Vars,
        settings: Settings,
        schedule: Arc<Schedule>,
        outbound: Outbound,
        cluster: Option<super::remote::ClusterNode>,
    ) -> HostShared {
        let residency = Residency::new(settings.max_live_objects, runtime.memory.clone());
        HostShared {
            outbound: Arc::new(outbound),
            runtime,
            store,
            vars,
            cache_budget: CacheBudget::new(settings.cache_per_object, settings.cache_total),
            residency,
            sockets: Sockets::new(settings.websockets.clone()),
            settings,
            closed: AtomicBool::new(false),
            actors: TaskTracker::new(),
            schedule,
            alarms_run: AtomicU64::new(0),
            activations: AtomicU64::new(0),
            activation_nanos: AtomicU64::new(0),
            lending: Lending::default(),
            instances: AtomicU64::new(0),
            ready: ReadySlots::default(),
            namespaces: OnceLock::new(),
            cluster,
        }
    }

    /// The namespace bound as `binding`, while the host runs.
    pub(crate) fn namespace(&self, binding: &str) -> Result<Namespace> {
        let namespaces = self
            .namespaces
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| {
                Error::new(ErrorKind::ShutDown, "the host is shut down; no more calls")
            })?;
        find(&namespaces, binding)
    }
}
