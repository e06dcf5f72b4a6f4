//! Namespaces: how a request finds its object.
//!
//! A namespace is one `[[durable_objects.bindings]]` entry (`env.COUNTER`):
//! a class with its number in storage keys and the secret its ids are keyed
//! with ([`super::ids`]: `id_from_string` refuses an id another namespace
//! minted). It delivers events to its objects' actors ([`super::object`]),
//! starting an actor when the object is not live; [`Stub`] is the client.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::bindings::object::DurableObjectPre;
use super::counts::BindingCounts;
use super::ids::{minted_by, name_id, parse_id, unique_id};
use super::object::{
    Actor, AlarmCall, Event, Identity, LiveEntry, LiveObjects, ObjectState, Ready,
};
use super::shared::HostShared;
use super::stub::Stub;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{NamespaceRecord, ObjectKey};

/// A Durable Object namespace: the objects of one binding. Cheap to clone.
#[derive(Clone)]
pub struct Namespace(Arc<NamespaceInner>);

struct NamespaceInner {
    binding: String,
    class: Arc<str>,
    number: u32,
    secret: [u8; 32],
    /// The code, and instances of it made ahead.
    ready: Arc<Ready>,
    shared: Arc<HostShared>,
    live: Arc<LiveObjects>,
    counts: Arc<BindingCounts>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("binding", &self.0.binding)
            .field("class", &self.0.class)
            .finish()
    }
}

impl Namespace {
    pub(crate) fn new(
        binding: String,
        class: String,
        (number, secret): (u32, [u8; 32]),
        pre: DurableObjectPre<ObjectState>,
        shared: Arc<HostShared>,
    ) -> Namespace {
        let ready = Ready::new(pre);
        let counts = Arc::new(BindingCounts::new(&binding));
        Namespace(Arc::new(NamespaceInner {
            binding,
            class: class.into(),
            number,
            secret,
            ready,
            shared,
            live: Arc::new(Mutex::new(HashMap::new())),
            counts,
        }))
    }

    /// The binding name, e.g. `COUNTER`.
    pub fn binding(&self) -> &str {
        &self.0.binding
    }

    /// The class its objects run, e.g. `Counter`.
    pub fn class_name(&self) -> &str {
        &self.0.class
    }

    /// The id of the object called `name`: always the same for the same name
    /// in this namespace, also after a restart.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId {
            namespace: self.clone(),
            id: name_id(&self.0.secret, name),
            name: Some(name.to_owned()),
        }
    }

    /// A new random id, different from every other unique id (192 random
    /// bits) and from every name's id.
    pub fn new_unique_id(&self) -> ObjectId {
        ObjectId {
            namespace: self.clone(),
            id: unique_id(&self.0.secret),
            name: None,
        }
    }

    /// Parses an id written as 64 hex characters (either case) and checks
    /// that this namespace minted it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] when `hex` is not 64 hexadecimal
    /// characters, or is an id of another namespace.
    pub fn id_from_string(&self, hex: &str) -> Result<ObjectId> {
        let Some(id) = parse_id(hex) else {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!("{hex:?} is not an object id: ids are 64 hexadecimal characters"),
            ));
        };
        if !minted_by(&self.0.secret, &id) {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "{hex} is not an id of namespace {}: it was minted by another namespace (or \
                     altered); make ids with this namespace's id_from_name or new_unique_id",
                    self.0.binding
                ),
            ));
        }
        Ok(ObjectId {
            namespace: self.clone(),
            id,
            name: None,
        })
    }

    /// A stub for the object with `id` (the same as [`ObjectId::get`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] when `id` belongs to another namespace.
    pub fn get(&self, id: &ObjectId) -> Result<Stub> {
        if id.namespace.0.secret != self.0.secret {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "{id} is an id of namespace {}, not {}; get it from its own namespace",
                    id.namespace.binding(),
                    self.0.binding
                ),
            ));
        }
        Ok(id.get())
    }

    /// A stub for the object called `name` (`id_from_name(name).get()`).
    pub fn get_by_name(&self, name: &str) -> Stub {
        self.id_from_name(name).get()
    }

    /// The namespace's number in storage keys.
    pub(crate) fn number(&self) -> u32 {
        self.0.number
    }

    /// Runs new events on `pre` (see [`super::code`]).
    pub(crate) fn swap_code(&self, pre: DurableObjectPre<ObjectState>) {
        self.0.ready.swap(pre, &self.0.shared);
    }

    /// The namespace's number and id secret.
    pub(crate) fn record(&self) -> NamespaceRecord {
        NamespaceRecord {
            number: self.0.number,
            secret: self.0.secret,
        }
    }

    /// Puts an alarm event in the mailbox of the object with `id`,
    /// activating it if needed.
    pub(crate) fn deliver_alarm(
        &self,
        id: &[u8; 32],
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<()> {
        let alarm = Event::Alarm {
            call: AlarmCall::Due { _permit: permit },
            sent: std::time::Instant::now(),
        };
        self.deliver(id, None, alarm)
            .inspect(|()| self.0.counts.alarms_due.increment(1))
    }

    /// Runs the alarm of the object with `id` now, due or not, through its
    /// actor exactly as a due alarm runs (stored as begun, the handler as an
    /// event of the object, then cleared or retried), once that outcome is
    /// durable. The outer error says why it did not run (no alarm, a
    /// handler running already, a full mailbox); the inner result is the
    /// handler's.
    pub(crate) async fn run_alarm(&self, id: &[u8; 32]) -> Result<Result<()>> {
        let shared = &self.0.shared;
        if let Some(node) = &shared.cluster
            && let Some(ran) = node.forward_admin(self, id, false, &shared.closed).await
        {
            return ran.map(|ran| ran.map(drop));
        }
        self.run_alarm_here(id).await
    }

    /// [`Namespace::run_alarm`] on this node.
    pub(crate) async fn run_alarm_here(&self, id: &[u8; 32]) -> Result<Result<()>> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let alarm = Event::Alarm {
            call: AlarmCall::Now(reply),
            sent: std::time::Instant::now(),
        };
        self.deliver(id, None, alarm)?;
        let ran = done.await.map_err(|_| {
            Error::new(
                ErrorKind::ShutDown,
                "the host shut down before the alarm ran",
            )
        })??;
        dohost_store::pass_gate(ran.gate).await?;
        Ok(ran.result)
    }

    /// Deletes the object with `id` through its actor: it finishes its
    /// running event, then its instance and all its storage go in one
    /// commit; `false` if it had never written anything.
    pub(crate) async fn delete_object(&self, id: &[u8; 32]) -> Result<bool> {
        let shared = &self.0.shared;
        if let Some(node) = &shared.cluster
            && let Some(deleted) = node.forward_admin(self, id, true, &shared.closed).await
        {
            return deleted?;
        }
        self.delete_object_here(id).await
    }

    /// [`Namespace::delete_object`] on this node.
    pub(crate) async fn delete_object_here(&self, id: &[u8; 32]) -> Result<bool> {
        let key = ObjectKey::new(self.0.number, id);
        if !self.0.shared.store.has_object(&key)? {
            return Ok(false);
        }
        let (reply, done) = tokio::sync::oneshot::channel();
        self.deliver(id, None, Event::Delete { reply })?;
        done.await.map_err(|_| {
            Error::new(
                ErrorKind::ShutDown,
                "the host shut down before the deletion",
            )
        })??;
        Ok(true)
    }

    /// Replaces the storage of the object with `id` with `writes` and its
    /// directory record with `record`, through its actor
    /// ([`Event::Replace`]): it finishes its running event and starts its
    /// next one on what `writes` left. In a cluster, only on the node that
    /// holds the object.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] on a node of a cluster that does not hold
    /// the object; [`ErrorKind::Storage`] if the commit fails (then nothing
    /// changed).
    pub(crate) async fn replace_object(
        &self,
        id: &[u8; 32],
        writes: dohost_store::WriteSet,
        record: dohost_store::ObjectRecord,
    ) -> Result<()> {
        let key = ObjectKey::new(self.0.number, id);
        if let Some(node) = &self.0.shared.cluster
            && !node.holds(&key)
        {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "object {} of {} is on another node of the cluster: send the import to the node that holds it",
                    hex::encode(id),
                    self.0.binding
                ),
            ));
        }
        let (reply, done) = tokio::sync::oneshot::channel();
        self.deliver(
            id,
            None,
            Event::Replace {
                writes,
                record,
                reply,
            },
        )?;
        done.await.map_err(|_| {
            Error::new(
                ErrorKind::ShutDown,
                "the host shut down before the object's storage was replaced",
            )
        })?
    }

    /// Brings the storage of the object with `id` back to `bookmark`
    /// through its actor (as [`Namespace::delete_object`] deletes);
    /// returns the bookmark that undoes the restore.
    pub(crate) async fn restore_object(
        &self,
        id: &[u8; 32],
        bookmark: dohost_store::Bookmark,
    ) -> Result<dohost_store::Bookmark> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.deliver(id, None, Event::Restore { bookmark, reply })?;
        done.await
            .map_err(|_| Error::new(ErrorKind::ShutDown, "the host shut down before the restore"))?
    }

    /// How many of this namespace's objects are in memory now.
    pub fn live_objects(&self) -> usize {
        self.0.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes every live object's mailbox: each finishes the events already
    /// queued and stops. Called at shutdown, after new events are refused.
    pub(crate) fn close_live(&self) {
        self.0
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Closes the mailboxes of the live objects for which `moved` holds
    /// (their shard moved to another node): each finishes the events it
    /// has (their writes are refused) and stops, so nothing it cached
    /// outlives the move.
    pub(crate) fn close_where(&self, moved: impl Fn(&ObjectKey) -> bool) {
        self.0
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| !moved(key));
    }

    /// The host's shared state.
    pub(crate) fn shared(&self) -> &HostShared {
        &self.0.shared
    }

    /// Puts `event` in the object's mailbox, activating the object if needed.
    pub(crate) fn deliver(&self, id: &[u8; 32], name: Option<&str>, event: Event) -> Result<()> {
        self.deliver_returning(id, name, event).map_err(|(e, _)| e)
    }

    /// As [`Namespace::deliver`], giving the event back with the error.
    #[allow(clippy::result_large_err)] // The event is moved back, not copied.
    pub(crate) fn deliver_returning(
        &self,
        id: &[u8; 32],
        name: Option<&str>,
        event: Event,
    ) -> std::result::Result<(), (Error, Event)> {
        let key = ObjectKey::new(self.0.number, id);
        let mut live = self.0.live.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that close_live takes: after shutdown has
        // closed the mailboxes, no new actor starts.
        if self.0.shared.closed.load(Ordering::SeqCst) {
            return Err((
                Error::new(
                    ErrorKind::ShutDown,
                    format!(
                        "the host is shut down; {} accepts no more events",
                        self.0.binding
                    ),
                ),
                event,
            ));
        }
        if let Some(node) = &self.0.shared.cluster
            && !node.holds(&key)
        {
            return Err((
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "object {} of {} is not on this node of the cluster (its shard moved); retry",
                        hex::encode(id),
                        self.0.binding
                    ),
                ),
                event,
            ));
        }
        let mut event = event;
        for _ in 0..2 {
            let sender = live
                .entry(key)
                .or_insert_with(|| self.spawn(key, id, name))
                .mailbox
                .clone();
            match sender.try_send(Box::new(event)) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(returned)) => {
                    self.0.counts.overloads.increment(1);
                    return Err((
                        Error::new(
                            ErrorKind::Overloaded,
                            format!(
                                "object {} of {} is overloaded: {} events are already waiting; retry later",
                                hex::encode(id),
                                self.0.binding,
                                self.0.shared.settings.mailbox_capacity
                            ),
                        ),
                        *returned,
                    ));
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // The actor died (it never exits with events queued):
                    // start a new one.
                    live.remove(&key);
                    event = *returned;
                }
            }
        }
        Err((
            Error::new(ErrorKind::Component, "the object could not be started"),
            event,
        ))
    }

    fn spawn(&self, key: ObjectKey, id: &[u8; 32], name: Option<&str>) -> LiveEntry {
        static ACTORS: AtomicU64 = AtomicU64::new(0);
        let number = ACTORS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.0.shared.settings.mailbox_capacity);
        let identity = Identity {
            key,
            binding: self.0.binding.as_str().into(),
            id_hex: hex::encode(id),
            name: name.map(str::to_owned),
            class: self.0.class.clone(),
        };
        let actor = Actor::new(
            number,
            identity,
            self.0.shared.clone(),
            self.0.ready.clone(),
            self.0.live.clone(),
            self.0.counts.clone(),
        );
        self.0.shared.actors.spawn(actor.run(rx));
        LiveEntry {
            actor: number,
            mailbox: tx,
        }
    }
}

/// The namespace bound as `binding` among `namespaces`.
pub(crate) fn find(namespaces: &BTreeMap<String, Namespace>, binding: &str) -> Result<Namespace> {
    namespaces.get(binding).cloned().ok_or_else(|| {
        let known: Vec<&str> = namespaces.keys().map(String::as_str).collect();
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no Durable Object binding named {binding:?}; configured: {}",
                known.join(", ")
            ),
        )
    })
}

/// The id of one object in one namespace.
#[derive(Clone)]
pub struct ObjectId {
    namespace: Namespace,
    id: [u8; 32],
    name: Option<String>,
}

impl ObjectId {
    /// The namespace this id belongs to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// A stub for this object.
    pub fn get(&self) -> Stub {
        Stub::new(self.namespace.clone(), self.id, self.name.clone())
    }

    /// The name this id was made from, if it was made from one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The id's 32 bytes.
    pub(crate) fn key_id(&self) -> [u8; 32] {
        self.id
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.id))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self}")?;
        if let Some(name) = &self.name {
            write!(f, ", name: {name:?}")?;
        }
        write!(f, ")")
    }
}
