//! Objects: one actor per live Durable Object.
//!
//! **Input gate.** Each live object is an actor: a task that owns the
//! object's wasm instance and takes events from a bounded mailbox. An event
//! runs in turns ([`super::tasks`]): the export call that starts it, and a
//! `resume` for each operation it awaited. Turns never overlap and storage
//! calls are synchronous, so every turn is atomic and `get` then `put`
//! needs no locking; between turns the actor may take the next event
//! (Cloudflare's input gate opens while an event awaits anything but
//! storage), unless the object blocks concurrency.
//!
//! **Storage.** During a turn, writes go to the turn's write layers and
//! reads go from them to the object's cache to redb; when the turn
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
//! an event that wrote nothing but read uncommitted data. A blocking call
//! the object makes passes the gate of earlier turns before it is sent; an
//! operation (a call, a `fetch`) passes the gate taken after the turn that
//! started it, so nothing outside acts on writes that could still be lost.
//!
//! **Calls.** A request or RPC call names the chain of objects waiting on
//! it ([`CallChain`]); each call the object makes while the event runs
//! carries that chain extended by the object itself.
//!
//! **Alarms.** An alarm arrives as an event like a fetch; see
//! [`super::alarm`] for what the actor does with it.
//!
//! **WebSockets.** A message, close or error on one of the object's sockets
//! arrives as an event like a fetch ([`super::sockets`] holds the sockets);
//! what a turn sends goes to the sockets' outboxes with the turn's gate.
//! A reset after a trap closes the object's sockets with 1011.
//!
//! **Reset.** A trap discards the turn's writes and the instance, and fails
//! every event the instance ran; the next event gets a fresh instance (the cache, which only holds what completed
//! events and `sync` sent, is kept). A failed commit clears the cache too,
//! so the object goes back to what is durable. Between events, an instance
//! whose memory has grown near its limit
//! ([`GuestMeter::memory_nearly_full`](super::engine::GuestMeter::memory_nearly_full))
//! is reset the same way, before an
//! event traps on the limit; like an eviction, this loses only in-memory
//! state.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::bindings::WitRequest;
use super::bindings::object::DurableObject;
use super::bindings::object::dohost::object::events::Outcome;
use super::bindings::object::dohost::object::websocket::Message;
use super::bindings::object::exports::dohost::object::handler::AlarmInfo;
use super::body::GuestResponse;
use super::counts::BindingCounts;
use super::engine;
use super::guest::GuestState;
use super::instructions;
use super::shared::HostShared;
use super::sockets::SocketId;
use super::stub::{CallChain, object_label};
use super::tasks::{self, EventId, Finished, InFlight, OpId};
use super::trace::EventTrace;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{
    AlarmRecord, AlarmWrite, Bookmark, Gate, ObjectKey, ObjectRecord, WriteSet, pass_gate,
};

mod io;
mod ready;
mod storage;
pub(crate) use io::ObjectIo;
pub(crate) use ready::{READY_SLOTS, Ready, ReadySlots};

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
    /// Run the object's alarm: it may be due, or the admin asks for it now.
    Alarm { call: AlarmCall, sent: Instant },
    /// Something happened on one of the object's WebSockets
    /// ([`super::sockets`]).
    Socket {
        socket: SocketId,
        what: SocketEvent,
        sent: Instant,
    },
    /// Delete the object (admin): its instance, its cache and all its
    /// storage; answers once the deletion is durable.
    Delete { reply: oneshot::Sender<Result<()>> },
    /// Replace the object's storage with `writes` (admin: an import, a
    /// restore), as a deletion goes: the running event finishes, the
    /// instance and cache go, then `writes` (whole, usually `clear` first)
    /// and `record` commit; answers once that is durable.
    Replace {
        writes: WriteSet,
        record: ObjectRecord,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Bring the object's storage back to a bookmark (admin): its instance
    /// and cache go; answers with the bookmark that undoes it once the
    /// restore is durable.
    Restore {
        bookmark: Bookmark,
        reply: oneshot::Sender<Result<Bookmark>>,
    },
}

/// Why an alarm event came. Either way the alarm runs the same way (see
/// [`super::alarm`]): its delivery is stored as begun, the handler runs as
/// an event of the object, and the alarm is then cleared or retried.
pub(crate) enum AlarmCall {
    /// The scheduler found the alarm due; it holds one of the scheduler's
    /// delivery permits until the event is handled.
    Due {
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// The admin asked for the alarm to run now, due or not; answered when
    /// the handler has ended and the alarm is settled.
    Now(oneshot::Sender<Result<AlarmRan>>),
}

/// How an alarm the admin ran ended.
pub(crate) struct AlarmRan {
    /// The handler's outcome.
    pub(crate) result: Result<()>,
    /// The gate the settled alarm (cleared, or its retry) must pass.
    pub(crate) gate: Option<Gate>,
}

/// What happened on a WebSocket, for the handler's `websocket-*` exports.
pub(crate) enum SocketEvent {
    Message(Message),
    /// The client closed the socket (`clean`), or the connection ended.
    Close {
        code: u16,
        reason: String,
        clean: bool,
    },
    /// The socket failed and the host closed it.
    Error(String),
}

/// What a stub asks of an object.
pub(crate) enum Request {
    /// An HTTP request for the object's `fetch`, shared with what the
    /// guest may hand on unchanged ([`super::forwards`]).
    Fetch(Arc<WitRequest>),
    /// An RPC call for the object's `call`: a method and the array of
    /// arguments (JSON or CBOR, docs/values.md).
    Call { method: String, args: Vec<u8> },
    /// An RPC call to target `target` that instance `instance` of the
    /// object lent (`call-target`, see [`super::targets`]).
    CallTarget {
        instance: u64,
        target: u64,
        method: String,
        args: Vec<u8>,
    },
}

/// What the object answered: a response to a fetch, a call's result.
pub(crate) enum Answer {
    Fetch(GuestResponse),
    Call(Vec<u8>),
}

/// Where a request comes from.
pub(crate) struct Origin {
    /// The name the caller addressed the object by, if any.
    pub(crate) name: Option<String>,
    /// The objects waiting on this request.
    pub(crate) chain: CallChain,
    /// When it was sent, for its trace.
    pub(crate) sent: Instant,
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
    /// Events are boxed: the channel allocates its slots in blocks of 32
    /// when it is made, and a boxed slot is 8 bytes where an event is 152,
    /// which is most of what an idle object's mailbox holds.
    pub(crate) mailbox: mpsc::Sender<Box<Event>>,
}

/// The live objects of a namespace: object key -> entry.
pub(crate) type LiveObjects = Mutex<HashMap<ObjectKey, LiveEntry>>;

/// One live object: its mailbox receiver and its instance.
pub(crate) struct Actor {
    /// This actor's number in its [`LiveEntry`].
    number: u64,
    identity: Identity,
    shared: Arc<HostShared>,
    /// The namespace's code, and instances of it made ahead.
    ready: Arc<Ready>,
    live: Arc<LiveObjects>,
    instance: Option<(wasmtime::Store<ObjectState>, DurableObject)>,
    /// The code generation the instance runs.
    generation: u64,
    /// The object's io while no instance holds it.
    io: Option<ObjectIo>,
    /// Signalled when the object should leave memory to make room
    /// ([`super::residency`]).
    evict: Arc<tokio::sync::Notify>,
    /// The events the instance runs, answered or not, until nothing of
    /// theirs is in flight.
    running: HashMap<EventId, Running>,
    /// The operations the events wait on.
    in_flight: InFlight,
    /// Events taken from the mailbox while the object kept new events out
    /// (`blockConcurrencyWhile` in its constructor): they go first.
    held: VecDeque<Event>,
    /// The number of the last event started.
    last_event: EventId,
    /// What the binding's objects count (metrics).
    counts: Arc<BindingCounts>,
}

/// An event the instance runs.
struct Running {
    /// Who waits for its end; `None` once answered.
    waiter: Option<Waiter>,
    /// The chain of objects waiting on it.
    chain: CallChain,
    /// When its wall-clock time is over: it fails if not answered, and its
    /// operations end.
    deadline: tokio::time::Instant,
    /// Its span; taken when it is answered.
    trace: Option<EventTrace>,
}

/// Who waits for an event's end.
enum Waiter {
    /// A stub, for a request (`call` false) or an RPC call.
    Stub {
        reply: oneshot::Sender<Reply>,
        call: bool,
    },
    /// The alarm scheduler or the admin: the alarm as stored before and as
    /// the handler began, and why it runs.
    Alarm {
        record: AlarmRecord,
        begun: AlarmRecord,
        call: AlarmCall,
    },
    /// A WebSocket's task; `ends`: the socket is forgotten when the event
    /// ends (a close or error event).
    Socket { socket: SocketId, ends: bool },
}

/// What a turn calls in the guest.
enum TurnCall {
    Request(Request),
    Alarm(AlarmInfo),
    Socket(SocketId, SocketEvent),
    Resume(OpId, Outcome),
}

/// Answers an alarm call that will not run: the admin who asked gets
/// `error`; a scheduler's delivery is dropped (the alarm's own state says
/// what comes next).
fn refuse_alarm(call: AlarmCall, error: impl FnOnce() -> Error) {
    if let AlarmCall::Now(reply) = call {
        let _ = reply.send(Err(error()));
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        // Free the instance's slot before another object takes its place.
        if let Some((store, _)) = self.instance.take() {
            self.shared.lending.forget(store.data().io.instance);
        }
        self.shared.residency.leave(self.number);
    }
}

impl Actor {
    pub(crate) fn new(
        number: u64,
        identity: Identity,
        shared: Arc<HostShared>,
        ready: Arc<Ready>,
        live: Arc<LiveObjects>,
        counts: Arc<BindingCounts>,
    ) -> Actor {
        let io = ObjectIo::new(identity.clone(), shared.clone());
        Actor {
            number,
            identity,
            shared,
            ready,
            live,
            instance: None,
            generation: 0,
            io: Some(io),
            evict: Arc::new(tokio::sync::Notify::new()),
            running: HashMap::new(),
            in_flight: InFlight::default(),
            held: VecDeque::new(),
            last_event: 0,
            counts,
        }
    }

    /// Runs the actor until it has been idle for the configured timeout, is
    /// asked to make room ([`super::residency`]), or its namespace is gone.
    ///
    /// It takes a new event whenever the object does not keep events out
    /// and completes operations as they finish, one turn at a time.
    ///
    /// An idle object's task holds this future for as long as it is live,
    /// so what runs an event or a turn is boxed while it runs: the future
    /// itself stays the size of the actor, not of its largest await.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Box<Event>>) {
        let idle = self.shared.settings.idle_timeout;
        let evict = self.evict.clone();
        let most_running = self.shared.settings.mailbox_capacity.max(1);
        // One idle timer for the actor's life, moved on only when it fires
        // early: setting a new one per event costs two timer-wheel updates,
        // which with thousands of live objects miss the CPU's caches.
        let mut last_active = tokio::time::Instant::now();
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        loop {
            if !self.busy() {
                // Between events: another object may take its place.
                self.shared.residency.idle(self.number);
            }
            if !self.blocked()
                && let Some(event) = self.held.pop_front()
            {
                Box::pin(self.handle(event)).await;
                last_active = tokio::time::Instant::now();
                continue;
            }
            let busy = self.busy();
            let accepting = !self.blocked() && self.running.len() < most_running;
            let deadline = self
                .running
                .values()
                .filter(|r| r.waiter.is_some())
                .map(|r| r.deadline)
                .min();
            let (why, room) = tokio::select! {
                biased;
                (op, event, outcome) = self.in_flight.next() => {
                    // An operation its event's deadline cut off: the event
                    // fails first, so what the guest makes of the
                    // cancellation reaches no one.
                    if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                        self.expire();
                    }
                    Box::pin(self.turn(event, TurnCall::Resume(op, outcome))).await;
                    last_active = tokio::time::Instant::now();
                    continue;
                }
                () = sleep_until(deadline) => {
                    self.expire();
                    last_active = tokio::time::Instant::now();
                    continue;
                }
                event = rx.recv(), if accepting => match event {
                    Some(event) => {
                        Box::pin(self.handle(*event)).await;
                        last_active = tokio::time::Instant::now();
                        continue;
                    }
                    None => {
                        self.restore_pending().await;
                        tracing::debug!(object = %self.identity.id_hex, "object stopped: its namespace closed");
                        return;
                    }
                },
                () = evict.notified(), if !busy => ("evicted to make room for another object (limits.max_live_objects)", true),
                () = &mut idle_timer, if !busy => {
                    let due = last_active + idle;
                    if due > tokio::time::Instant::now() {
                        idle_timer.as_mut().reset(due);
                        continue;
                    }
                    ("evicted after the idle timeout", false)
                }
            };
            // Let the last commit land before the object's cache goes
            // away, so a reactivation reads what this one wrote.
            let _ = pass_gate(self.io_mut().storage.latest_commit()).await;
            self.restore_pending().await;
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
                if room {
                    self.counts.room_evictions.increment(1);
                } else {
                    self.counts.idle_evictions.increment(1);
                }
                return;
            }
        }
    }

    /// Whether an event runs or waits on an operation, or the object
    /// writes a body its reader still waits for.
    fn busy(&self) -> bool {
        !self.running.is_empty()
            || !self.in_flight.is_empty()
            || self
                .instance
                .as_ref()
                .is_some_and(|(store, _)| store.data().tasks.bodies.serving())
    }

    /// Whether the object keeps new events out (`blockConcurrencyWhile`).
    fn blocked(&self) -> bool {
        self.instance
            .as_ref()
            .is_some_and(|(store, _)| store.data().tasks.blocked > 0)
    }

    async fn handle(&mut self, event: Event) {
        self.shared.residency.busy(self.number);
        self.event(event).await;
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
                    self.identity.name = origin.name.clone();
                    self.io_mut().identity.name = self.identity.name.clone();
                }
                if let Request::CallTarget { instance, .. } = &request
                    && self.live_instance() != Some(*instance)
                {
                    let error = Error::new(
                        ErrorKind::GuestError,
                        format!(
                            "the RpcTarget is gone: {} was reset or left memory since it passed it",
                            self.label()
                        ),
                    );
                    let _ = reply.send(Reply {
                        result: Err(error),
                        gate: None,
                    });
                    return;
                }
                if let Err(e) = self.begin_event().await {
                    let _ = reply.send(Reply {
                        result: Err(e),
                        gate: None,
                    });
                    return;
                }
                if self.blocked() {
                    // The constructor keeps events out until it is done.
                    self.held.push_front(Event::Request {
                        request,
                        origin,
                        reply,
                    });
                    return;
                }
                let (count, kind) = match request {
                    Request::Fetch(_) => (&self.counts.fetches, "fetch"),
                    Request::Call { .. } => (&self.counts.calls, "call"),
                    Request::CallTarget { .. } => (&self.counts.target_calls, "target"),
                };
                count.increment(1);
                let call = !matches!(request, Request::Fetch(_));
                let trace = EventTrace::open(&self.identity, kind, Some(origin.sent));
                let event = self.open_event(
                    Some(Waiter::Stub { reply, call }),
                    origin.chain,
                    Some(trace),
                );
                self.turn(event, TurnCall::Request(request)).await;
            }
            Event::Alarm { call, sent } => self.alarm(call, sent).await,
            Event::Socket { socket, what, sent } => {
                let ends = !matches!(what, SocketEvent::Message(_));
                if let Err(e) = self.begin_event().await {
                    self.fail(Waiter::Socket { socket, ends }, e);
                    return;
                }
                if self.blocked() {
                    self.held.push_front(Event::Socket { socket, what, sent });
                    return;
                }
                self.counts.socket_events.increment(1);
                let trace = EventTrace::open(&self.identity, "websocket", Some(sent));
                let event = self.open_event(
                    Some(Waiter::Socket { socket, ends }),
                    CallChain::default(),
                    Some(trace),
                );
                self.turn(event, TurnCall::Socket(socket, what)).await;
            }
            Event::Delete { reply } => {
                let _ = reply.send(self.delete().await);
            }
            Event::Replace {
                writes,
                record,
                reply,
            } => {
                let _ = reply.send(self.replace(writes, record).await);
            }
            Event::Restore { bookmark, reply } => {
                let _ = reply.send(self.restore(bookmark).await);
            }
        }
    }

    /// Starts an event for `waiter` (none for the constructor's, which no
    /// one waits for): its number, budget, deadline and span.
    fn open_event(
        &mut self,
        waiter: Option<Waiter>,
        chain: CallChain,
        trace: Option<EventTrace>,
    ) -> EventId {
        self.last_event += 1;
        let event = self.last_event;
        let settings = &self.shared.settings;
        let deadline = tokio::time::Instant::now() + settings.wall_time_per_event;
        if let Some((store, _)) = &mut self.instance {
            store.data_mut().tasks.open(event, settings);
        }
        self.running.insert(
            event,
            Running {
                waiter,
                chain,
                deadline,
                trace,
            },
        );
        event
    }

    /// Runs one turn of event `event`: calls the guest, then answers the
    /// events it finished and launches the operations it started.
    async fn turn(&mut self, event: EventId, call: TurnCall) {
        let wall = self.shared.settings.wall_time_per_event;
        let (chain, span, began) = self
            .running
            .get(&event)
            .map(|r| {
                let trace = r.trace.as_ref();
                (
                    r.chain.clone(),
                    trace.map_or_else(tracing::Span::none, |t| t.span().clone()),
                    trace.and_then(EventTrace::turn_began),
                )
            })
            .unwrap_or_else(|| (CallChain::default(), tracing::Span::none(), None));
        let Some((store, instance)) = &mut self.instance else {
            return;
        };
        store.data_mut().meter.begin_event();
        store.data().io.sql.begin_event();
        store.data_mut().tasks.event = event;
        store.data_mut().io.chain = chain;
        let counted = instructions::run_so_far(store);
        let handler = instance.dohost_object_handler();
        let result = async {
            match &call {
                TurnCall::Request(Request::Fetch(req)) => {
                    store.data_mut().tasks.kept.keep_request(event, req);
                    within_wall(wall, handler.call_fetch(&mut *store, event, req)).await
                }
                TurnCall::Request(Request::Call { method, args }) => {
                    within_wall(wall, handler.call_call(&mut *store, event, method, args)).await
                }
                TurnCall::Request(Request::CallTarget {
                    target,
                    method,
                    args,
                    ..
                }) => {
                    within_wall(
                        wall,
                        handler.call_call_target(&mut *store, event, *target, method, args),
                    )
                    .await
                }
                TurnCall::Alarm(info) => {
                    within_wall(wall, handler.call_alarm(&mut *store, event, *info)).await
                }
                TurnCall::Socket(socket, SocketEvent::Message(message)) => {
                    within_wall(
                        wall,
                        handler.call_websocket_message(&mut *store, event, *socket, message),
                    )
                    .await
                }
                TurnCall::Socket(
                    socket,
                    SocketEvent::Close {
                        code,
                        reason,
                        clean,
                    },
                ) => {
                    within_wall(
                        wall,
                        handler.call_websocket_close(
                            &mut *store,
                            event,
                            *socket,
                            *code,
                            reason,
                            *clean,
                        ),
                    )
                    .await
                }
                TurnCall::Socket(socket, SocketEvent::Error(error)) => {
                    within_wall(
                        wall,
                        handler.call_websocket_error(&mut *store, event, *socket, error),
                    )
                    .await
                }
                TurnCall::Resume(op, outcome) => {
                    store.data_mut().tasks.kept.keep_outcome(*op, outcome);
                    within_wall(wall, handler.call_resume(&mut *store, *op, outcome)).await
                }
            }
        }
        .instrument(span)
        .await;
        let ran = instructions::run_so_far(store) - counted;
        if let Some(trace) = self.running.get_mut(&event).and_then(|r| r.trace.as_mut()) {
            trace.turn_ended(began, ran);
        }
        match result {
            Ok(()) => {
                self.end_turn();
            }
            Err(trap) => self.trapped(&trap),
        }
        self.retire();
    }

    /// After a turn returned: commits its writes, answers the events it
    /// finished (behind the gate of those writes) and launches the
    /// operations it started (behind the same gate).
    ///
    /// If `blockConcurrencyWhile` failed in the turn, the object is reset;
    /// the guest's message is returned.
    fn end_turn(&mut self) -> Option<String> {
        if self.finish_event().is_err() {
            return None;
        }
        self.io_mut().flush();
        let gate = self.io_mut().response_gate();
        let sent = std::mem::take(&mut self.io_mut().sent);
        if !sent.is_empty() {
            self.shared
                .sockets
                .send(self.identity.key, sent, gate.clone());
        }
        let Some((store, _)) = &mut self.instance else {
            return None;
        };
        let tasks = &mut store.data_mut().tasks;
        let finished = std::mem::take(&mut tasks.finished);
        let started = std::mem::take(&mut tasks.started);
        let cancelled = std::mem::take(&mut tasks.cancelled);
        let failure = tasks.failure.take();
        for closing in std::mem::take(&mut tasks.closing) {
            self.shared.actors.spawn(closing.send(gate.clone()));
        }
        for op in cancelled {
            self.in_flight.cancel(op);
        }
        for (event, finished) in &finished {
            if finished.streams()
                && let Some(running) = self.running.get_mut(event)
            {
                running.deadline = tasks::open_ended();
            }
        }
        let wall = self.shared.settings.wall_time_per_event;
        for started in started {
            let deadline = self
                .running
                .get(&started.event)
                .map_or_else(tokio::time::Instant::now, |r| r.deadline);
            self.in_flight.launch(started, gate.clone(), deadline, wall);
        }
        for (event, finished) in finished {
            self.answer(event, finished, gate.clone());
        }
        let message = failure?;
        let error = Error::new(
            ErrorKind::GuestError,
            format!("blockConcurrencyWhile failed, so the object was reset: {message}"),
        );
        tracing::warn!(object = %self.identity.id_hex, "{error}");
        self.reset(&error);
        self.close_sockets("the object was reset: blockConcurrencyWhile failed");
        Some(message)
    }

    /// Delivers how event `event` ended to whoever waits for it.
    fn answer(&mut self, event: EventId, finished: Finished, gate: Option<Gate>) {
        let Some(running) = self.running.get_mut(&event) else {
            // A number the host never gave out.
            return;
        };
        let Some(waiter) = running.waiter.take() else {
            // Answered already: it passed its wall-clock limit.
            return;
        };
        if let Some(trace) = running.trace.take() {
            trace.answered(gate.clone(), &self.shared.actors);
        }
        let guest_error = |message| Error::new(ErrorKind::GuestError, message);
        match (waiter, finished) {
            (Waiter::Stub { reply, call: false }, Finished::Fetch(result)) => {
                let result = result
                    .map_err(guest_error)
                    .and_then(|response| self.handing_over(response))
                    .map(Answer::Fetch);
                let _ = reply.send(Reply { result, gate });
            }
            (Waiter::Stub { reply, call: true }, Finished::Call(result)) => {
                let result = result.map(Answer::Call).map_err(guest_error);
                let _ = reply.send(Reply { result, gate });
            }
            (
                Waiter::Alarm {
                    record,
                    begun,
                    call,
                },
                Finished::Alarm(result),
            ) => self.alarm_ran(record, begun, result.map_err(guest_error), call),
            (Waiter::Socket { socket, ends }, Finished::Socket(result)) => {
                self.socket_done(socket, ends, result.map_err(guest_error));
            }
            (waiter, _) => self.fail(
                waiter,
                Error::new(
                    ErrorKind::Component,
                    "the guest finished an event as a different kind of event than it was sent",
                ),
            ),
        }
    }

    /// Ends what waits with `error`.
    fn fail(&mut self, waiter: Waiter, error: Error) {
        match waiter {
            Waiter::Stub { reply, .. } => {
                let _ = reply.send(Reply {
                    result: Err(error),
                    gate: None,
                });
            }
            Waiter::Alarm {
                record,
                begun,
                call,
            } => self.alarm_ran(record, begun, Err(error), call),
            Waiter::Socket { socket, ends } => self.socket_done(socket, ends, Err(error)),
        }
    }

    /// Checks that a response handing over a WebSocket hands over one of
    /// this object's, accepted and not yet opened.
    fn handing_over(&self, response: GuestResponse) -> Result<GuestResponse> {
        match response.record.websocket {
            Some(socket) if !self.shared.sockets.hand_over(self.identity.key, socket) => {
                Err(Error::new(
                    ErrorKind::GuestError,
                    format!(
                        "the response hands over WebSocket {socket}, which this object did not accept (ctx.acceptWebSocket) or which is open already"
                    ),
                ))
            }
            _ => Ok(response),
        }
    }

    /// After a WebSocket event ended: logs a failure, and forgets a socket
    /// whose close or error event it was.
    fn socket_done(&mut self, socket: SocketId, ends: bool, result: Result<()>) {
        if let Err(e) = result {
            tracing::warn!(object = %self.identity.id_hex, "a WebSocket handler failed: {e:#}");
        }
        if ends {
            self.shared.sockets.forget(socket);
        }
    }

    /// Closes all the object's WebSockets with 1011 (it was reset).
    fn close_sockets(&self, why: &str) {
        self.shared
            .sockets
            .close_object(self.identity.key, 1011, why);
    }

    /// Fails the events whose wall-clock time is over; their operations
    /// end by the same deadline.
    fn expire(&mut self) {
        let now = tokio::time::Instant::now();
        let wall = self.shared.settings.wall_time_per_event;
        let over: Vec<Waiter> = self
            .running
            .values_mut()
            .filter(|r| r.deadline <= now)
            .filter_map(|r| r.waiter.take())
            .collect();
        for waiter in over {
            self.fail(
                waiter,
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the event exceeded its wall-clock time limit of {} ms ([limits] wall_ms)",
                        wall.as_millis()
                    ),
                ),
            );
        }
        self.retire();
    }

    /// Forgets the events that are answered and wait on nothing.
    fn retire(&mut self) {
        let in_flight = &self.in_flight;
        let done: Vec<EventId> = self
            .running
            .iter()
            .filter(|(event, r)| r.waiter.is_none() && !in_flight.has_event(**event))
            .map(|(event, _)| *event)
            .collect();
        for event in done {
            self.running.remove(&event);
            if let Some((store, _)) = &mut self.instance {
                store.data_mut().tasks.close(event);
            }
        }
    }

    /// How errors name the object: binding, name or id.
    fn label(&self) -> String {
        let me = &self.identity;
        object_label(&me.binding, &me.key.id(), me.name.as_deref())
    }

    /// The number of the instance the object runs in now, if any.
    fn live_instance(&self) -> Option<u64> {
        self.instance
            .as_ref()
            .map(|(store, _)| store.data().io.instance)
    }

    fn io_mut(&mut self) -> &mut ObjectIo {
        match (&mut self.instance, &mut self.io) {
            (Some((store, _)), _) => &mut store.data_mut().io,
            (None, Some(io)) => io,
            (None, None) => unreachable!("the io is either in the store or in the actor"),
        }
    }

    /// Drops the instance and the running turn's writes, keeping the io
    /// (the cache holds only what completed turns and syncs wrote). Every
    /// event the instance ran and did not answer fails with `why`, and
    /// what they wait on is dropped.
    fn reset(&mut self, why: &Error) {
        self.counts.reset(match why.kind() {
            ErrorKind::GuestTrap => "trap",
            ErrorKind::GuestError => "error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Storage => "storage",
            ErrorKind::ShutDown => "shutdown",
            _ => "other",
        });
        if let Some((store, _)) = self.instance.take() {
            self.shared.lending.forget(store.data().io.instance);
            self.io = Some(store.into_data().io);
            self.shared.residency.leave(self.number);
        }
        self.io_mut().discard_event();
        self.in_flight.clear();
        let waiters: Vec<Waiter> = self.running.drain().filter_map(|(_, r)| r.waiter).collect();
        for waiter in waiters {
            self.fail(waiter, why.clone());
        }
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
        let mut io = io;
        io.instance = self.shared.instances.fetch_add(1, Ordering::Relaxed) + 1;
        let (generation, pre) = self.ready.code().get();
        self.generation = generation;
        let made = match self.ready.take(generation, &self.shared) {
            Some((mut store, instance)) => {
                ready::occupy(&mut store, io);
                (store, instance)
            }
            None => {
                let log = io.log.clone();
                let state = GuestState::new(io, log);
                let mut store = self
                    .shared
                    .runtime
                    .store(state, self.shared.settings.cpu_time_per_event);
                match pre.instantiate_async(&mut store).await {
                    Ok(instance) => (store, instance),
                    Err(e) => {
                        self.io = Some(store.into_data().io);
                        self.shared.residency.leave(self.number);
                        return Err(engine::instantiate_error(
                            &e,
                            &format!("cannot activate object {}", self.identity.id_hex),
                            self.shared.settings.max_live_objects,
                        ));
                    }
                }
            }
        };
        let class = self.identity.class.to_string();
        self.instance = Some(made);
        // The constructor's turn belongs to an event of its own, which no
        // one waits for: what it starts runs within its wall-clock time.
        let mut trace = EventTrace::open(&self.identity, "constructor", None);
        let init_event = self.open_event(None, CallChain::default(), None);
        let (store, instance) = self.instance.as_mut().expect("set above");
        store.data().io.sql.begin_event();
        store.data_mut().tasks.event = init_event;
        store.data_mut().io.chain = CallChain::default();
        let wall = self.shared.settings.wall_time_per_event;
        let began = trace.turn_began();
        let counted = instructions::run_so_far(store);
        let init = within_wall(
            wall,
            instance
                .dohost_object_handler()
                .call_init(&mut *store, &class),
        )
        .instrument(trace.span().clone())
        .await;
        trace.turn_ended(began, instructions::run_so_far(store) - counted);
        // The constructor's span ends with its first turn: what it started
        // (blockConcurrencyWhile's awaits) shows in the next event's
        // input gate.
        trace.answered(None, &self.shared.actors);
        match init {
            Ok(Ok(())) => {
                let failure = self.end_turn();
                self.retire();
                if let Some(message) = failure {
                    return Err(Error::new(
                        ErrorKind::GuestError,
                        format!("class {class} failed to construct: {message}"),
                    ));
                }
                if self.instance.is_none() {
                    return Err(Error::new(
                        ErrorKind::GuestError,
                        format!("class {class} failed to construct"),
                    ));
                }
                let elapsed = started.elapsed();
                self.counts.activations.increment(1);
                self.counts.activation_time.record(elapsed.as_secs_f64());
                let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
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
                self.reset(&Error::new(ErrorKind::GuestError, message.clone()));
                Err(Error::new(
                    ErrorKind::GuestError,
                    format!("class {class} failed to construct: {message}"),
                ))
            }
            Err(trap) => {
                let (reason, detail) = self.trap_message(&trap);
                self.reset(&Error::new(ErrorKind::GuestTrap, reason.clone()));
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
            self.reset(&Error::new(
                ErrorKind::Storage,
                format!("a commit of this object failed ({e}); the object was reset"),
            ));
            self.io_mut().forget().await;
        }
    }

    /// The live instance, activated if needed, ready for a new event. An
    /// instance with nothing running is replaced first if its code was
    /// updated or its memory has grown near its limit.
    async fn begin_event(&mut self) -> Result<()> {
        self.settle().await;
        if self.instance.is_some() && !self.busy() {
            // Nothing runs, so no event fails with these.
            if self.ready.code().generation() != self.generation {
                let why = Error::new(
                    ErrorKind::Component,
                    "the code was updated: resetting the object",
                );
                tracing::debug!(object = %self.identity.id_hex, "{why}");
                self.reset(&why);
            } else if let Some((store, _)) = &self.instance
                && store.data().meter.memory_nearly_full()
            {
                let (size, limit) = store.data().meter.memory_mib();
                let why = Error::new(
                    ErrorKind::Component,
                    format!(
                        "the object's memory grew to {size} MiB of its {limit} MiB limit; \
                         resetting it to a fresh instance"
                    ),
                );
                tracing::info!(object = %self.identity.id_hex, "{why}");
                self.reset(&why);
            }
        }
        if self.instance.is_none() {
            self.restore_pending().await;
            self.activate().await?;
        }
        Ok(())
    }

    /// Resets the object after a trap, failing every event it ran with
    /// the trap's error.
    fn trapped(&mut self, trap: &wasmtime::Error) {
        if let Some(Aborted(reason)) = trap.downcast_ref::<Aborted>() {
            let reason = reason.as_deref().unwrap_or("no reason given");
            tracing::info!(object = %self.identity.id_hex, "the object called abort: {reason}");
            let error = Error::new(
                ErrorKind::GuestTrap,
                format!("the object called abort and was reset: {reason}"),
            );
            self.reset(&error);
            self.close_sockets("the object was reset by its code");
            return;
        }
        let (reason, detail) = self.trap_message(trap);
        tracing::warn!(object = %self.identity.id_hex, "object trapped and was reset: {reason}\n{detail}");
        let error = Error::new(
            ErrorKind::GuestTrap,
            format!("the object trapped and was reset: {reason}"),
        )
        .with_detail(detail);
        self.reset(&error);
        self.close_sockets("the object was reset after an error");
    }

    /// Starts the object's alarm if it is due, or at once when the admin
    /// asks (see [`super::alarm`]); `sent`: when it was delivered.
    async fn alarm(&mut self, call: AlarmCall, sent: Instant) {
        if self
            .running
            .values()
            .any(|r| matches!(r.waiter, Some(Waiter::Alarm { .. })))
        {
            // Its handler runs already; its end reschedules what is left.
            refuse_alarm(call, || {
                Error::new(
                    ErrorKind::Overloaded,
                    "the object's alarm handler is running already; try again when it has ended",
                )
            });
            return;
        }
        self.settle().await;
        let key = self.identity.key;
        let schedule = self.shared.schedule.clone();
        let record = match self.io_mut().storage.alarm() {
            Ok(Some(record)) => record,
            // Deleted since it was scheduled.
            Ok(None) => {
                refuse_alarm(call, || {
                    Error::new(ErrorKind::NotFound, "the object has no alarm set")
                });
                return;
            }
            Err(e) => {
                tracing::warn!(object = %self.identity.id_hex, "cannot read the object's alarm: {e}");
                match call {
                    AlarmCall::Due { .. } => schedule.remind(super::alarm::now_ms() + 1000, key),
                    AlarmCall::Now(reply) => {
                        let _ = reply.send(Err(Error::from(e)));
                    }
                }
                return;
            }
        };
        if record.time > super::alarm::now_ms() && matches!(call, AlarmCall::Due { .. }) {
            // Moved later since it was scheduled (or the clock stepped).
            schedule.remind(record.time, key);
            return;
        }
        match self.begin_event().await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Overloaded => {
                match call {
                    AlarmCall::Due { .. } => schedule.remind(
                        super::alarm::now_ms() + super::alarm::REDELIVERY_DELAY_MS,
                        key,
                    ),
                    AlarmCall::Now(reply) => {
                        let _ = reply.send(Err(e));
                    }
                }
                return;
            }
            // The object could not be constructed: a failed delivery.
            Err(e) => {
                self.alarm_done(record, record, Err(e), call);
                return;
            }
        }
        if self.blocked() {
            // The constructor keeps events out; the alarm comes again.
            match call {
                AlarmCall::Due { .. } => schedule.remind(
                    super::alarm::now_ms() + super::alarm::REDELIVERY_DELAY_MS,
                    key,
                ),
                now @ AlarmCall::Now(_) => self.held.push_front(Event::Alarm { call: now, sent }),
            }
            return;
        }
        // Stored before the handler runs: a crash from here on makes the
        // next delivery a retry.
        let begun = AlarmRecord {
            time: record.time,
            retries: record.retries.saturating_add(1),
        };
        let io = self.io_mut();
        io.storage.writes.write_alarm(AlarmWrite::Started(begun));
        io.flush();
        io.running_alarm = Some(begun);
        let info = AlarmInfo {
            retry_count: record.retries,
            is_retry: record.retries > 0,
        };
        let waiter = Waiter::Alarm {
            record,
            begun,
            call,
        };
        let trace = EventTrace::open(&self.identity, "alarm", Some(sent));
        let event = self.open_event(Some(waiter), CallChain::default(), Some(trace));
        self.counts.alarms.increment(1);
        self.turn(event, TurnCall::Alarm(info)).await;
    }

    /// Counts an alarm handler that ran to an end and settles its alarm.
    fn alarm_ran(
        &mut self,
        record: AlarmRecord,
        begun: AlarmRecord,
        result: Result<()>,
        call: AlarmCall,
    ) {
        self.shared
            .alarms_run
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.alarm_done(record, begun, result, call);
    }

    /// Settles the alarm after its handler ended with `result`: cleared,
    /// or kept for a retry, unless the handler chose itself; then tells
    /// the admin who asked for it, if one did.
    fn alarm_done(
        &mut self,
        record: AlarmRecord,
        begun: AlarmRecord,
        result: Result<()>,
        call: AlarmCall,
    ) {
        let counts = self.counts.clone();
        let io = self.io_mut();
        io.running_alarm = None;
        // The handler's own set-alarm or delete-alarm (in this write set or
        // made durable by a sync) stands.
        let handler_chose =
            io.storage.writes.writes_alarm() || io.storage.alarm().ok() != Some(Some(begun));
        if !handler_chose {
            let write = match &result {
                Ok(()) => AlarmWrite::Delete,
                Err(e) => super::alarm::after_failure(
                    record,
                    e.message(),
                    &io.identity.id_hex,
                    io.shared.settings.alarm_retry_delay,
                    io.shared.settings.alarm_max_retries,
                ),
            };
            match (&result, &write) {
                (Ok(()), _) => &counts.alarms_ok,
                (Err(_), AlarmWrite::Set(_) | AlarmWrite::Started(_)) => &counts.alarms_retried,
                (Err(_), AlarmWrite::Delete) => &counts.alarms_dropped,
            }
            .increment(1);
            io.storage.writes.write_alarm(write);
        } else {
            match &result {
                Ok(()) => &counts.alarms_ok,
                Err(_) => &counts.alarms_failed,
            }
            .increment(1);
        }
        io.flush();
        if let AlarmCall::Now(reply) = call {
            let gate = io.response_gate();
            let _ = reply.send(Ok(AlarmRan { result, gate }));
        }
    }

    /// Rewrites the object's storage with what `make` computes from the
    /// store once nothing of it is in flight: first its instance (failing
    /// the events it runs with `why`), its sockets, its cache and a pending
    /// restore go; the next event starts on what the commit, after every
    /// earlier one, left. The deletion, import and restore of the admin.
    async fn rewrite<T>(
        &mut self,
        why: &str,
        make: impl FnOnce(
            &dohost_store::Store,
            &ObjectKey,
        ) -> Result<(WriteSet, Option<ObjectRecord>, T)>,
    ) -> Result<T> {
        if self.instance.is_some() {
            self.reset(&Error::new(ErrorKind::GuestError, why));
        }
        self.close_sockets(why);
        let io = self.io_mut();
        io.restore = None;
        io.forget().await;
        let store = io.shared.store.clone();
        let (writes, record, out) = make(&store, &io.identity.key)?;
        let done = store.commit(io.identity.key, writes, record);
        pass_gate(Some(done.shared())).await?;
        tracing::info!(object = %self.identity.id_hex, "{why}");
        Ok(out)
    }

    /// Deletes the object: the instance and everything it wrote go, in one
    /// commit after every earlier one; the next event finds it empty.
    async fn delete(&mut self) -> Result<()> {
        self.rewrite("the object was deleted by the admin", |_, _| {
            Ok((WriteSet::deletion(), None, ()))
        })
        .await
    }

    /// Replaces the object's storage with `writes` and its directory
    /// record with `record` (an import).
    async fn replace(&mut self, writes: WriteSet, record: ObjectRecord) -> Result<()> {
        self.rewrite("the object's storage was replaced by the admin", |_, _| {
            Ok((writes, Some(record), ()))
        })
        .await
    }

    /// Brings the object's storage back to `bookmark`, as a commit of its
    /// own (so it has a bookmark too). Returns the bookmark just before
    /// it, which undoes it.
    async fn restore(&mut self, bookmark: Bookmark) -> Result<Bookmark> {
        let record = ObjectRecord {
            class: self.identity.class.to_string(),
            name: self.identity.name.clone(),
        };
        let why = format!("the object's storage was restored to bookmark {bookmark}");
        self.rewrite(&why, |store, key| {
            store.check_bookmark(bookmark)?;
            let undo = store.current_bookmark()?;
            Ok((store.restore_writes(key, bookmark)?, Some(record), undo))
        })
        .await
    }

    /// Carries out the restore the object's last session asked for
    /// (`onNextSessionRestoreBookmark`), before a new instance starts or
    /// the object leaves memory. A restore that fails is logged: the
    /// object goes on with its storage as it is.
    async fn restore_pending(&mut self) {
        let Some(bookmark) = self.io_mut().restore.take() else {
            return;
        };
        if let Err(e) = self.restore(bookmark).await {
            tracing::error!(object = %self.identity.id_hex, "cannot restore the storage to bookmark {bookmark}: {e}");
        }
    }

    /// Closes the turn's transactions (rolling back those the guest left
    /// open) so its write set can be sent. An error if the turn's writes
    /// had to be dropped instead: the object is then reset.
    fn finish_event(&mut self) -> Result<()> {
        let io = self.io_mut();
        let open = io.storage.writes.close_transactions();
        if open > 0 {
            tracing::warn!(object = %io.identity.id_hex, "the turn ended with {open} transaction(s) open; rolled back");
        }
        if let Err(e) = io.sql.end_event() {
            // The savepoints could not be rolled back: the connection's
            // state is unknown, so the turn's writes are dropped.
            let message = format!(
                "the event's open SQL transaction could not be rolled back ({}); its writes are \
                 dropped and the object is reset",
                e.message
            );
            tracing::error!(object = %io.identity.id_hex, "{message}");
            let error = Error::new(ErrorKind::Storage, message);
            self.reset(&error);
            return Err(error);
        }
        Ok(())
    }
}

/// Waits until `deadline`, or forever without one (for `select!`).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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

/// What `context.abort` ends the guest's call with: the object resets as
/// after a trap, with the guest's reason.
#[derive(Debug)]
pub(crate) struct Aborted(pub(crate) Option<String>);

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(reason) => write!(f, "the object called abort: {reason}"),
            None => f.write_str("the object called abort"),
        }
    }
}

impl std::error::Error for Aborted {}
