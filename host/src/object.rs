//! Objects: one actor per live Durable Object, and the host side of the
//! object's imports (`storage`, `context`, `env`).
//!
//! **Input gate.** Each live object is an actor: a task that owns the
//! object's wasm instance and takes events from a bounded mailbox strictly one
//! at a time. No second event enters an object while one runs, so code like
//! `get` then `put` needs no locking.
//!
//! **Write set and cache.** During an event, writes go to the event's write
//! set; reads look at the write set, then the object's cache (the latest
//! known state of keys it has read or written, committed or not), then redb.
//! When the event returns, its write set moves into the cache and goes to the
//! committer ([`crate::storage`]). The object may start its next event at
//! once; it keeps seeing its own writes through the cache.
//!
//! **Output gate.** The event's reply carries a [`Gate`]: the commit of the
//! object's latest write set at the end of the event. Whoever delivers the
//! response ([`crate::namespace::Stub::fetch`]) waits for the gate first, so
//! no response leaves before the writes it may reflect are durable, even a
//! response of an event that wrote nothing but read uncommitted data.
//!
//! **Reset.** A trap discards the event's write set and the instance; the
//! next event gets a fresh instance (the cache, which only holds the results
//! of events that completed, is kept). A failed commit clears the cache too,
//! so the object goes back to what is durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::object::DurableObject;
use crate::bindings::object::dohost::object::{context, env, storage, types};
use crate::bindings::{WitRequest, WitResponse};
use crate::engine::{self, GuestMeter};
use crate::error::{Error, ErrorKind, Result};
use crate::host::HostShared;
use crate::storage::{CommitResult, ListRange, ObjectKey, ObjectRecord, WriteSet};

/// The longest storage key, in bytes (Cloudflare's limit): keys are kept in
/// memory and in every redb index page, so they must stay small.
pub const MAX_KEY_BYTES: usize = 2048;

/// The largest value on the KV API, in bytes (Cloudflare's limit): bigger
/// values belong in several keys or in SQL.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// Resolves when the object's writes up to some event are durable.
pub(crate) type Gate = Shared<oneshot::Receiver<CommitResult>>;

/// Waits for a gate; an error if the commit failed.
pub(crate) async fn pass_gate(gate: Option<Gate>) -> Result<()> {
    let Some(gate) = gate else { return Ok(()) };
    match gate.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::new(ErrorKind::Storage, e)),
        Err(_) => Err(Error::new(
            ErrorKind::Storage,
            "the committer stopped before the write was durable",
        )),
    }
}

/// An event for an object's mailbox.
pub(crate) enum Event {
    /// An HTTP request for the object's `fetch`.
    Fetch {
        req: WitRequest,
        /// The name the caller addressed the object by, if any.
        name: Option<String>,
        reply: oneshot::Sender<Reply>,
    },
}

/// What an event produced, and the gate its delivery must pass.
pub(crate) struct Reply {
    pub(crate) result: Result<WitResponse>,
    pub(crate) gate: Option<Gate>,
}

/// Who an object is: everything its `context` import reports.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) key: ObjectKey,
    pub(crate) id_hex: String,
    pub(crate) name: Option<String>,
    pub(crate) class: Arc<str>,
}

/// The object's storage and context, kept across instance resets.
pub(crate) struct ObjectIo {
    identity: Identity,
    shared: Arc<HostShared>,
    /// Latest known state of keys (None = known absent), including writes
    /// handed to the committer but not yet durable.
    cache: BTreeMap<String, Option<Bytes>>,
    /// The current event's writes.
    writes: WriteSet,
}

/// The data of an object's wasmtime store.
pub(crate) struct ObjectState {
    wasi: WasiCtx,
    table: ResourceTable,
    io: ObjectIo,
    meter: GuestMeter,
}

impl engine::Metered for ObjectState {
    fn meter(&mut self) -> &mut GuestMeter {
        &mut self.meter
    }
}

impl WasiView for ObjectState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A live object's entry in its namespace: the actor's mailbox and a number
/// unique to that actor, so an actor only ever removes its own entry.
pub(crate) struct LiveEntry {
    pub(crate) actor: u64,
    pub(crate) mailbox: mpsc::Sender<Event>,
}

/// The live objects of a namespace: object key -> entry.
pub(crate) type LiveObjects = Mutex<HashMap<ObjectKey, LiveEntry>>;

/// One live object: its mailbox receiver and its instance.
pub(crate) struct Actor {
    /// This actor's number in its [`LiveEntry`].
    number: u64,
    identity: Identity,
    shared: Arc<HostShared>,
    pre: crate::bindings::object::DurableObjectPre<ObjectState>,
    live: Arc<LiveObjects>,
    instance: Option<(wasmtime::Store<ObjectState>, DurableObject)>,
    /// The object's io while no instance holds it.
    io: Option<ObjectIo>,
    last_commit: Option<Gate>,
    registered: bool,
}

impl Actor {
    pub(crate) fn new(
        number: u64,
        identity: Identity,
        shared: Arc<HostShared>,
        pre: crate::bindings::object::DurableObjectPre<ObjectState>,
        live: Arc<LiveObjects>,
    ) -> Actor {
        let io = ObjectIo {
            identity: identity.clone(),
            shared: shared.clone(),
            cache: BTreeMap::new(),
            writes: WriteSet::new(),
        };
        Actor {
            number,
            identity,
            shared,
            pre,
            live,
            instance: None,
            io: Some(io),
            last_commit: None,
            registered: false,
        }
    }

    /// Runs the actor until it has been idle for the configured timeout (or
    /// its namespace is gone).
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        let idle = self.shared.settings.idle_timeout;
        loop {
            match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(event)) => self.handle(event).await,
                Ok(None) => {
                    tracing::debug!(object = %self.identity.id_hex, "object stopped: its namespace closed");
                    return;
                }
                Err(_) => {
                    // Let the last commit land before the object's cache goes
                    // away, so a reactivation reads what this one wrote.
                    let _ = pass_gate(self.last_commit.take()).await;
                    let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                    // Senders enqueue under this lock, so an empty mailbox
                    // now stays empty: nothing is lost by leaving.
                    if rx.is_empty() {
                        if live
                            .get(&self.identity.key)
                            .is_some_and(|e| e.actor == self.number)
                        {
                            live.remove(&self.identity.key);
                        }
                        break;
                    }
                }
            }
        }
        tracing::debug!(object = %self.identity.id_hex, "object evicted after idle timeout");
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Fetch { req, name, reply } => {
                if self.identity.name.is_none() && name.is_some() {
                    self.identity.name = name;
                    self.io_mut().identity.name = self.identity.name.clone();
                }
                let result = self.fetch(req).await;
                let gate = self.last_commit.clone();
                let _ = reply.send(Reply { result, gate });
            }
        }
    }

    fn io_mut(&mut self) -> &mut ObjectIo {
        match (&mut self.instance, &mut self.io) {
            (Some((store, _)), _) => &mut store.data_mut().io,
            (None, Some(io)) => io,
            (None, None) => unreachable!("the io is either in the store or in the actor"),
        }
    }

    /// Drops the instance, keeping the io (its cache) unless told otherwise.
    fn reset(&mut self, keep_cache: bool) {
        if let Some((store, _)) = self.instance.take() {
            self.io = Some(store.into_data().io);
        }
        let io = self.io_mut();
        io.writes.clear();
        if !keep_cache {
            io.cache.clear();
        }
    }

    async fn activate(&mut self) -> Result<()> {
        let Some(io) = self.io.take() else {
            return Ok(());
        };
        let meter = GuestMeter::default();
        let state = ObjectState {
            wasi: engine::wasi_ctx(&meter.output),
            table: ResourceTable::new(),
            io,
            meter,
        };
        let mut store = self
            .shared
            .runtime
            .store(state, self.shared.settings.cpu_time_per_event);

        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => {
                self.io = Some(store.into_data().io);
                return Err(engine::instantiate_error(
                    &e,
                    &format!("cannot activate object {}", self.identity.id_hex),
                    self.shared.settings.max_live_objects,
                ));
            }
        };
        let class = self.identity.class.to_string();
        let init = instance
            .dohost_object_handler()
            .call_init(&mut store, &class)
            .await;
        self.instance = Some((store, instance));
        match init {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => {
                self.reset(true);
                Err(Error::new(
                    ErrorKind::GuestError,
                    format!("class {class} failed to construct: {message}"),
                ))
            }
            Err(trap) => {
                let message = self.trap_message(&trap);
                self.reset(true);
                Err(Error::new(
                    ErrorKind::GuestTrap,
                    format!("class {class} trapped while constructing: {message}"),
                ))
            }
        }
    }

    fn trap_message(&self, trap: &wasmtime::Error) -> String {
        match &self.instance {
            Some((store, _)) => engine::describe_trap(trap, &store.data().meter.output),
            None => format!("{trap:?}"),
        }
    }

    async fn fetch(&mut self, req: WitRequest) -> Result<WitResponse> {
        if let Some(gate) = &self.last_commit {
            match gate.peek() {
                Some(Ok(Ok(()))) => self.last_commit = None,
                Some(_) => {
                    tracing::warn!(object = %self.identity.id_hex, "a commit of this object failed; resetting it to its durable state");
                    self.last_commit = None;
                    self.registered = false;
                    self.reset(false);
                }
                None => {}
            }
        }
        if self.instance.is_none() {
            self.activate().await?;
        }
        let Some((store, instance)) = &mut self.instance else {
            return Err(Error::new(ErrorKind::Component, "object has no instance"));
        };
        store.data_mut().meter.begin_event();
        let result = instance
            .dohost_object_handler()
            .call_fetch(&mut *store, &req)
            .await;
        match result {
            Ok(outcome) => {
                self.end_event();
                outcome.map_err(|message| Error::new(ErrorKind::GuestError, message))
            }
            Err(trap) => {
                let message = self.trap_message(&trap);
                self.reset(true);
                tracing::warn!(object = %self.identity.id_hex, "object trapped and was reset: {message}");
                Err(Error::new(
                    ErrorKind::GuestTrap,
                    format!("the object trapped and was reset: {message}"),
                ))
            }
        }
    }

    /// Moves the event's write set into the cache and to the committer.
    fn end_event(&mut self) {
        let record = (!self.registered).then(|| ObjectRecord {
            class: self.identity.class.to_string(),
            name: self.identity.name.clone(),
        });
        let io = self.io_mut();
        if io.writes.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut io.writes);
        for (key, value) in &writes {
            io.cache.insert(key.clone(), value.clone());
        }
        let key = io.identity.key;
        let done = io.shared.store.commit(key, writes, record);
        self.registered = true;
        self.last_commit = Some(done.shared());
    }
}

impl ObjectIo {
    fn read(&self, key: &str) -> std::result::Result<Option<Bytes>, storage::StorageError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(v.clone());
        }
        self.shared
            .store
            .get(&self.identity.key, key)
            .map(|v| v.map(Bytes::from))
            .map_err(|e| storage::StorageError::Internal(e.to_string()))
    }
}

fn check_key(key: &str) -> std::result::Result<(), storage::StorageError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(storage::StorageError::KeyTooLarge(
            u32::try_from(key.len()).unwrap_or(u32::MAX),
        ));
    }
    Ok(())
}

impl storage::Host for ObjectState {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<std::result::Result<Option<Vec<u8>>, storage::StorageError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let value = self.io.read(&key);
        if let Ok(v) = &value
            && !self.io.writes.contains_key(&key)
            && !self.io.cache.contains_key(&key)
        {
            self.io.cache.insert(key, v.clone());
        }
        Ok(value.map(|v| v.map(|b| b.to_vec())))
    }

    fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<std::result::Result<(), storage::StorageError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(storage::StorageError::ValueTooLarge(
                u32::try_from(value.len()).unwrap_or(u32::MAX),
            )));
        }
        self.io.writes.insert(key, Some(Bytes::from(value)));
        Ok(Ok(()))
    }

    fn delete(
        &mut self,
        key: String,
    ) -> wasmtime::Result<std::result::Result<bool, storage::StorageError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let existed = match self.io.read(&key) {
            Ok(v) => v.is_some(),
            Err(e) => return Ok(Err(e)),
        };
        self.io.writes.insert(key, None);
        Ok(Ok(existed))
    }

    fn list(
        &mut self,
        options: storage::ListOptions,
    ) -> wasmtime::Result<std::result::Result<Vec<(String, Vec<u8>)>, storage::StorageError>> {
        if options.limit == Some(0) {
            return Ok(Err(storage::StorageError::InvalidLimit));
        }
        let range = ListRange {
            start: options.start,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit.and_then(|l| usize::try_from(l).ok()),
        };
        let (lower, upper) = range.key_bounds();
        // The newer state of keys in range: the cache, then this event's writes.
        let mut overlay: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for source in [&self.io.cache, &self.io.writes] {
            for (k, v) in source.range::<str, _>((
                std::ops::Bound::Included(lower.as_str()),
                std::ops::Bound::Unbounded,
            )) {
                if upper.as_ref().is_some_and(|u| k.as_bytes() >= u.as_slice()) {
                    break;
                }
                overlay.insert(k.as_str(), v.as_deref());
            }
        }
        let listed = self
            .io
            .shared
            .store
            .list(&self.io.identity.key, &range, &overlay)
            .map_err(|e| storage::StorageError::Internal(e.to_string()));
        Ok(listed)
    }
}

impl types::Host for ObjectState {}

impl context::Host for ObjectState {
    fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.io.identity.id_hex.clone())
    }

    fn name(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.io.identity.name.clone())
    }

    fn class_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.io.identity.class.to_string())
    }
}

impl env::Host for ObjectState {
    fn vars(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.io.shared.vars_list())
    }

    fn var(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.io.shared.vars.get(&name).cloned())
    }
}

/// How long an idle object stays in memory by default (Cloudflare evicts
/// after about 10 s without events).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
