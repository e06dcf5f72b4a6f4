//! Objects: one actor per live Durable Object.
//!
//! **Input gate.** Each live object is an actor: a task that owns the
//! object's wasm instance and takes events from a bounded mailbox strictly one
//! at a time. No second event enters an object while one runs, so code like
//! `get` then `put` needs no locking.
//!
//! **Storage.** During an event, writes go to the event's write layers and
//! reads go from them to the object's cache to redb; when the event
//! returns, its write set goes to the committer. All of that is the
//! object's [`ObjectStorage`](dohost_store::ObjectStorage), kept in its
//! io ([`ObjectIo`]) across instance resets. The object may start its next
//! event at once; it keeps seeing its own writes through the cache.
//!
//! **Output gate.** The event's reply carries a [`Gate`]: the commit of the
//! object's latest confirmed write set (one not written with
//! `allow-unconfirmed`). Whoever delivers the response
//! ([`Stub`](super::Stub)) waits for the gate first, so no response or RPC
//! result leaves before the writes it may reflect are durable, even one of
//! an event that wrote nothing but read uncommitted data. A call the object
//! makes to another object passes the same gate before it is sent, so the
//! callee never acts on writes of earlier events that could still be lost
//! (the running event's own writes commit when it ends, or at a `sync`).
//!
//! **Calls.** A request or RPC call names the chain of objects waiting on
//! it ([`CallChain`]); each call the object makes while the event runs
//! carries that chain extended by the object itself.
//!
//! **Alarms.** An alarm arrives as an event like a fetch; see
//! [`super::alarm`] for what the actor does with it.
//!
//! **Reset.** A trap discards the event's writes and the instance; the next
//! event gets a fresh instance (the cache, which only holds what completed
//! events and `sync` sent, is kept). A failed commit clears the cache too,
//! so the object goes back to what is durable. Between events, an instance
//! whose memory has grown near its limit
//! ([`GuestMeter::memory_nearly_full`](super::engine::GuestMeter::memory_nearly_full))
//! is reset the same way, before an
//! event traps on the limit; like an eviction, this loses only in-memory
//! state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::bindings::object::DurableObject;
use super::bindings::object::exports::dohost::object::handler::AlarmInfo;
use super::bindings::{WitRequest, WitResponse};
use super::code::Code;
use super::engine;
use super::guest::GuestState;
use super::shared::HostShared;
use super::stub::CallChain;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{AlarmRecord, AlarmWrite, Gate, ObjectKey, WriteSet, pass_gate};

mod io;
mod storage;
pub(crate) use io::ObjectIo;

/// The data of an object's wasmtime store.
pub(crate) type ObjectState = GuestState<ObjectIo>;

/// An event for an object's mailbox.
pub(crate) enum Event {
    /// A request or an RPC call from a stub.
    Request {
        request: Request,
        origin: Origin,
        reply: oneshot::Sender<Reply>,
    },
    /// The object's alarm may be due. Holds one of the scheduler's delivery
    /// permits until it is handled.
    Alarm {
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// Delete the object (admin): its instance, its cache and all its
    /// storage; answers once the deletion is durable.
    Delete { reply: oneshot::Sender<Result<()>> },
}

/// What a stub asks of an object.
pub(crate) enum Request {
    /// An HTTP request for the object's `fetch`.
    Fetch(WitRequest),
    /// An RPC call for the object's `call`: a method and a JSON array of
    /// arguments.
    Call { method: String, args: String },
}

/// What the object answered: a response to a fetch, JSON from a call.
pub(crate) enum Answer {
    Fetch(WitResponse),
    Call(String),
}

/// Where a request comes from.
pub(crate) struct Origin {
    /// The name the caller addressed the object by, if any.
    pub(crate) name: Option<String>,
    /// The objects waiting on this request.
    pub(crate) chain: CallChain,
}

/// What an event produced, and the gate its delivery must pass.
pub(crate) struct Reply {
    pub(crate) result: Result<Answer>,
    pub(crate) gate: Option<Gate>,
}

/// Who an object is: everything its `context` import reports.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) key: ObjectKey,
    pub(crate) binding: Arc<str>,
    pub(crate) id_hex: String,
    pub(crate) name: Option<String>,
    pub(crate) class: Arc<str>,
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
    code: Arc<Code<super::bindings::object::DurableObjectPre<ObjectState>>>,
    live: Arc<LiveObjects>,
    instance: Option<(wasmtime::Store<ObjectState>, DurableObject)>,
    /// The code generation the instance runs.
    generation: u64,
    /// The object's io while no instance holds it.
    io: Option<ObjectIo>,
    /// Signalled when the object should leave memory to make room
    /// ([`super::residency`]).
    evict: Arc<tokio::sync::Notify>,
}

impl Drop for Actor {
    fn drop(&mut self) {
        // Free the instance's slot before another object takes its place.
        drop(self.instance.take());
        self.shared.residency.leave(self.number);
    }
}

impl Actor {
    pub(crate) fn new(
        number: u64,
        identity: Identity,
        shared: Arc<HostShared>,
        code: Arc<Code<super::bindings::object::DurableObjectPre<ObjectState>>>,
        live: Arc<LiveObjects>,
    ) -> Actor {
        let io = ObjectIo::new(identity.clone(), shared.clone());
        Actor {
            number,
            identity,
            shared,
            code,
            live,
            instance: None,
            generation: 0,
            io: Some(io),
            evict: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Runs the actor until it has been idle for the configured timeout, is
    /// asked to make room ([`super::residency`]), or its namespace is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        let idle = self.shared.settings.idle_timeout;
        let evict = self.evict.clone();
        loop {
            let why = tokio::select! {
                biased;
                event = rx.recv() => match event {
                    Some(event) => {
                        self.handle(event).await;
                        continue;
                    }
                    None => {
                        tracing::debug!(object = %self.identity.id_hex, "object stopped: its namespace closed");
                        return;
                    }
                },
                () = evict.notified() => "evicted to make room for another object (limits.max_live_objects)",
                () = tokio::time::sleep(idle) => "evicted after the idle timeout",
            };
            // Let the last commit land before the object's cache goes
            // away, so a reactivation reads what this one wrote.
            let _ = pass_gate(self.io_mut().storage.latest_commit()).await;
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            // Senders enqueue under this lock, so an empty mailbox now stays
            // empty: nothing is lost by leaving.
            if rx.is_empty() {
                if live
                    .get(&self.identity.key)
                    .is_some_and(|e| e.actor == self.number)
                {
                    live.remove(&self.identity.key);
                }
                tracing::debug!(object = %self.identity.id_hex, "object {why}");
                return;
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        self.shared.residency.busy(self.number);
        self.event(event).await;
        self.shared.residency.idle(self.number);
    }

    async fn event(&mut self, event: Event) {
        match event {
            Event::Request {
                request,
                origin,
                reply,
            } => {
                if reply.is_closed() {
                    // The caller gave up (a call timeout, a closed
                    // connection) before the event began.
                    return;
                }
                if self.identity.name.is_none() && origin.name.is_some() {
                    self.identity.name = origin.name;
                    self.io_mut().identity.name = self.identity.name.clone();
                }
                self.io_mut().chain = origin.chain;
                let result = self.request(request).await;
                let gate = self.io_mut().response_gate();
                let _ = reply.send(Reply { result, gate });
            }
            Event::Alarm { _permit } => {
                self.io_mut().chain = CallChain::default();
                self.alarm().await;
            }
            Event::Delete { reply } => {
                let _ = reply.send(self.delete().await);
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

    /// Drops the instance and the event's writes, keeping the io (the
    /// cache holds only what completed events and syncs wrote).
    fn reset(&mut self) {
        if let Some((store, _)) = self.instance.take() {
            self.io = Some(store.into_data().io);
            self.shared.residency.leave(self.number);
        }
        self.io_mut().discard_event();
    }

    async fn activate(&mut self) -> Result<()> {
        if self.io.is_none() {
            return Ok(());
        }
        self.shared
            .residency
            .admit(self.number, &self.evict)
            .await?;
        let Some(io) = self.io.take() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let state = GuestState::new(io);
        let mut store = self
            .shared
            .runtime
            .store(state, self.shared.settings.cpu_time_per_event);

        let (generation, pre) = self.code.get();
        self.generation = generation;
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => {
                self.io = Some(store.into_data().io);
                self.shared.residency.leave(self.number);
                return Err(engine::instantiate_error(
                    &e,
                    &format!("cannot activate object {}", self.identity.id_hex),
                    self.shared.settings.max_live_objects,
                ));
            }
        };
        let class = self.identity.class.to_string();
        store.data().io.sql.begin_event();
        let wall = self.shared.settings.wall_time_per_event;
        let init = within_wall(
            wall,
            instance
                .dohost_object_handler()
                .call_init(&mut store, &class),
        )
        .await;
        self.instance = Some((store, instance));
        match init {
            Ok(Ok(())) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let shared = &self.shared;
                shared
                    .activations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared
                    .activation_nanos
                    .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(message)) => {
                self.reset();
                Err(Error::new(
                    ErrorKind::GuestError,
                    format!("class {class} failed to construct: {message}"),
                ))
            }
            Err(trap) => {
                let (reason, detail) = self.trap_message(&trap);
                self.reset();
                tracing::warn!(object = %self.identity.id_hex, "class {class} trapped while constructing: {reason}\n{detail}");
                Err(Error::new(
                    ErrorKind::GuestTrap,
                    format!("class {class} trapped while constructing: {reason}"),
                )
                .with_detail(detail))
            }
        }
    }

    /// Why the instance trapped, in one line, and the detail for the log.
    fn trap_message(&self, trap: &wasmtime::Error) -> (String, String) {
        match &self.instance {
            Some((store, _)) => engine::describe_trap(trap, &store.data().meter),
            None => (trap.to_string(), format!("{trap:?}")),
        }
    }

    /// Goes back to what is durable if a commit failed.
    async fn settle(&mut self) {
        if let Err(e) = self.io_mut().storage.settle() {
            tracing::warn!(object = %self.identity.id_hex, "a commit of this object failed ({e}); resetting it to its durable state");
            self.reset();
            self.io_mut().forget().await;
        }
    }

    /// The live instance, activated if needed, ready for an event.
    async fn begin_event(
        &mut self,
    ) -> Result<(&mut wasmtime::Store<ObjectState>, &mut DurableObject)> {
        if self.instance.is_some() && self.code.generation() != self.generation {
            tracing::debug!(object = %self.identity.id_hex, "the code was updated: resetting the object");
            self.reset();
        }
        if let Some((store, _)) = &self.instance
            && store.data().meter.memory_nearly_full()
        {
            let (size, limit) = store.data().meter.memory_mib();
            tracing::info!(
                object = %self.identity.id_hex,
                "the object's memory grew to {size} MiB of its {limit} MiB limit; \
                 resetting it to a fresh instance"
            );
            self.reset();
        }
        if self.instance.is_none() {
            self.activate().await?;
        }
        let Some((store, instance)) = &mut self.instance else {
            return Err(Error::new(ErrorKind::Component, "object has no instance"));
        };
        store.data_mut().meter.begin_event();
        store.data().io.sql.begin_event();
        Ok((store, instance))
    }

    /// Resets the object after a trap; the error to report.
    fn trapped(&mut self, trap: &wasmtime::Error) -> Error {
        let (reason, detail) = self.trap_message(trap);
        self.reset();
        tracing::warn!(object = %self.identity.id_hex, "object trapped and was reset: {reason}\n{detail}");
        Error::new(
            ErrorKind::GuestTrap,
            format!("the object trapped and was reset: {reason}"),
        )
        .with_detail(detail)
    }

    /// Runs a request or an RPC call.
    async fn request(&mut self, request: Request) -> Result<Answer> {
        self.settle().await;
        let wall = self.shared.settings.wall_time_per_event;
        let (store, instance) = self.begin_event().await?;
        let handler = instance.dohost_object_handler();
        let result = match &request {
            Request::Fetch(req) => within_wall(wall, handler.call_fetch(&mut *store, req))
                .await
                .map(|outcome| outcome.map(Answer::Fetch)),
            Request::Call { method, args } => {
                within_wall(wall, handler.call_call(&mut *store, method, args))
                    .await
                    .map(|outcome| outcome.map(Answer::Call))
            }
        };
        match result {
            Ok(outcome) => {
                self.end_event()?;
                outcome.map_err(|message| Error::new(ErrorKind::GuestError, message))
            }
            Err(trap) => Err(self.trapped(&trap)),
        }
    }

    /// Delivers the object's alarm if it is due (see [`super::alarm`]).
    async fn alarm(&mut self) {
        self.settle().await;
        let key = self.identity.key;
        let schedule = self.shared.schedule.clone();
        let record = match self.io_mut().storage.alarm() {
            Ok(Some(record)) => record,
            // Deleted since it was scheduled.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(object = %self.identity.id_hex, "cannot read the object's alarm: {e}");
                schedule.remind(super::alarm::now_ms() + 1000, key);
                return;
            }
        };
        if record.time > super::alarm::now_ms() {
            // Moved later since it was scheduled (or the clock stepped).
            schedule.remind(record.time, key);
            return;
        }
        let mut started = None;
        let result = match self.begin_event().await {
            Ok(_) => {
                // Stored before the handler runs: a crash from here on makes
                // the next delivery a retry.
                let begun = AlarmRecord {
                    time: record.time,
                    retries: record.retries.saturating_add(1),
                };
                started = Some(begun);
                let io = self.io_mut();
                io.storage.writes.write_alarm(AlarmWrite::Started(begun));
                io.flush();
                io.running_alarm = Some(begun);
                let info = AlarmInfo {
                    retry_count: record.retries,
                    is_retry: record.retries > 0,
                };
                let wall = self.shared.settings.wall_time_per_event;
                let (store, instance) = self.instance.as_mut().expect("begun above");
                let outcome = within_wall(
                    wall,
                    instance
                        .dohost_object_handler()
                        .call_alarm(&mut *store, info),
                )
                .await;
                let result = match outcome {
                    Ok(outcome) => self.finish_event().and_then(|()| {
                        outcome.map_err(|message| Error::new(ErrorKind::GuestError, message))
                    }),
                    Err(trap) => Err(self.trapped(&trap)),
                };
                self.io_mut().running_alarm = None;
                self.shared
                    .alarms_run
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                result
            }
            Err(e) if e.kind() == ErrorKind::Overloaded => {
                schedule.remind(
                    super::alarm::now_ms() + super::alarm::REDELIVERY_DELAY_MS,
                    key,
                );
                return;
            }
            // The object could not be constructed: a failed delivery.
            Err(e) => Err(e),
        };
        let expected = started.unwrap_or(record);
        let io = self.io_mut();
        // The handler's own set-alarm or delete-alarm (in this write set or
        // made durable by a sync) stands.
        let handler_chose =
            io.storage.writes.writes_alarm() || io.storage.alarm().ok() != Some(Some(expected));
        if !handler_chose {
            let write = match &result {
                Ok(_) => AlarmWrite::Delete,
                Err(e) => super::alarm::after_failure(
                    record,
                    e.message(),
                    &io.identity.id_hex,
                    io.shared.settings.alarm_retry_delay,
                    io.shared.settings.alarm_max_retries,
                ),
            };
            io.storage.writes.write_alarm(write);
        }
        io.flush();
    }

    /// Deletes the object: the instance and everything it wrote go, in one
    /// commit after every earlier one; the next event finds it empty.
    async fn delete(&mut self) -> Result<()> {
        self.reset();
        let io = self.io_mut();
        io.forget().await;
        let done = io
            .shared
            .store
            .commit(io.identity.key, WriteSet::deletion(), None);
        pass_gate(Some(done.shared())).await?;
        tracing::info!(object = %self.identity.id_hex, "object deleted by the admin");
        Ok(())
    }

    /// Hands the event's writes to the committer; transactions the guest
    /// left open are rolled back. An error if the event's writes had to be
    /// dropped instead.
    fn end_event(&mut self) -> Result<()> {
        self.finish_event()?;
        self.io_mut().flush();
        Ok(())
    }

    /// Closes the event's transactions (rolling back those the guest left
    /// open) so its write set can be sent. An error if the event's writes
    /// had to be dropped instead.
    fn finish_event(&mut self) -> Result<()> {
        let io = self.io_mut();
        let open = io.storage.writes.close_transactions();
        if open > 0 {
            tracing::warn!(object = %io.identity.id_hex, "the event ended with {open} transaction(s) open; rolled back");
        }
        if let Err(e) = io.sql.end_event() {
            // The savepoints could not be rolled back: the connection's
            // state is unknown, so the event's writes are dropped.
            let message = format!(
                "the event's open SQL transaction could not be rolled back ({}); its writes are \
                 dropped and the object is reset",
                e.message
            );
            tracing::error!(object = %io.identity.id_hex, "{message}");
            self.reset();
            return Err(Error::new(ErrorKind::Storage, message));
        }
        Ok(())
    }
}

/// Runs a call into the guest for at most `limit` of wall-clock time. Past
/// it the call is abandoned (its instance must not be entered again: the
/// caller resets the object, as after a trap).
async fn within_wall<T>(
    limit: std::time::Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(wasmtime::Error::msg(format!(
            "the event exceeded its wall-clock time limit of {} ms ([limits] wall_ms)",
            limit.as_millis()
        )))
    })
}
