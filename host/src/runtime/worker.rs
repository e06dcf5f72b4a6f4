//! The stateless entry worker (`main` in dohost.toml), like a Cloudflare
//! Worker's default export: it gets every HTTP request and reaches objects
//! through the namespaces bound in the configuration.
//!
//! Workers hold no state between requests that anything may rely on, so the
//! host keeps a small pool of warm instances and gives each concurrent request
//! its own. An instance that trapped is dropped, never reused, and so is one
//! whose memory has grown near its limit
//! ([`GuestMeter::memory_nearly_full`](super::engine::GuestMeter::memory_nearly_full)).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::bindings::WitRequest;
use super::bindings::object::dohost::object::events::Outcome;
use super::bindings::worker::{Worker, WorkerPre};
use super::body::GuestResponse;
use super::code::Code;
use super::engine::{self, GuestLog};
use super::guest::{GuestIo, GuestState};
use super::instructions;
use super::shared::HostShared;
use super::stub::CallChain;
use super::targets::{Lender, TargetCall};
use super::tasks::{self, EventId, Finished, InFlight, OpId};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;
use dohost_store::Gate;

/// How many idle worker instances are kept warm for the next requests.
const MAX_IDLE_WORKERS: usize = 64;

/// A worker instance with the permit that counts it against
/// [`Settings::max_worker_instances`](crate::settings::Settings::max_worker_instances).
type Counted = (tokio::sync::OwnedSemaphorePermit, WarmWorker);

/// What a worker is: a guest of the host that holds no input gate and
/// writes nothing.
pub(crate) struct WorkerIo {
    shared: Arc<HostShared>,
    /// The running request's number and where calls to the targets it
    /// lends go (see [`super::targets`]).
    lending: Option<(u64, mpsc::UnboundedSender<TargetCall>)>,
}

impl GuestIo for WorkerIo {
    fn shared(&self) -> &HostShared {
        &self.shared
    }

    fn outgoing(&self, _waits: bool) -> (CallChain, Option<Gate>) {
        (CallChain::default(), None)
    }

    fn lender(&self) -> std::result::Result<(Lender, u64), String> {
        self.lending
            .as_ref()
            .map(|(number, calls)| (Lender::Worker(calls.clone()), *number))
            .ok_or_else(|| "the worker runs no request".to_owned())
    }
}

/// The data of a worker's wasmtime store.
pub(crate) type WorkerState = GuestState<WorkerIo>;

type WarmWorker = (wasmtime::Store<WorkerState>, Worker);

/// Warm instances of the entry worker. Cheap to share: work a request
/// left running (`waitUntil`) finishes in a task of its own.
pub(crate) struct WorkerPool(Arc<Pool>);

struct Pool {
    code: Code<WorkerPre<WorkerState>>,
    /// Instances between requests, with the code generation each runs.
    idle: Mutex<Vec<(u64, Counted)>>,
    /// One permit per instance, idle or running: a flood of requests waits
    /// for an instance instead of taking every instance slot of the host.
    instances: Arc<tokio::sync::Semaphore>,
    /// Told when an instance goes back to `idle`.
    returned: tokio::sync::Notify,
    shared: Arc<HostShared>,
    /// Where the instances' output goes: the log as `worker=main`.
    log: Arc<GuestLog>,
}

/// The one event a worker instance runs at a time.
const EVENT: EventId = 1;

/// A request running in a worker instance.
struct Run {
    generation: u64,
    permit: tokio::sync::OwnedSemaphorePermit,
    store: wasmtime::Store<WorkerState>,
    instance: Worker,
    in_flight: InFlight,
    deadline: tokio::time::Instant,
    /// The request's number: the capabilities it lends end with it.
    number: u64,
    /// Calls to the targets the request lent.
    calls: mpsc::UnboundedReceiver<TargetCall>,
    /// The target calls running, by event, and who waits for each.
    calling: HashMap<EventId, oneshot::Sender<Result<Vec<u8>>>>,
    last_event: EventId,
}

impl WorkerPool {
    pub(crate) fn new(pre: WorkerPre<WorkerState>, shared: Arc<HostShared>) -> WorkerPool {
        WorkerPool(Arc::new(Pool {
            code: Code::new(pre),
            idle: Mutex::new(Vec::new()),
            instances: Arc::new(tokio::sync::Semaphore::new(
                shared.settings.max_worker_instances as usize,
            )),
            returned: tokio::sync::Notify::new(),
            shared,
            log: GuestLog::worker("main"),
        }))
    }

    /// Runs new requests on `pre` (see [`super::code`]); instances of
    /// the old code finish their requests and are dropped.
    pub(crate) fn swap_code(&self, pre: WorkerPre<WorkerState>) {
        self.0.code.swap(pre);
        self.0
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Worker instances now, idle or running.
    pub(crate) fn instances(&self) -> usize {
        self.0.shared.settings.max_worker_instances as usize - self.0.instances.available_permits()
    }

    /// Runs one request through a worker instance. The response comes back
    /// as soon as the worker gives it; what the worker still waits on then
    /// (`waitUntil`) runs on, within the request's wall-clock limit, before
    /// the instance takes another request.
    pub(crate) async fn fetch(&self, req: WitRequest) -> Result<GuestResponse> {
        let (generation, (permit, (mut store, instance))) = self.0.take().await?;
        let settings = &self.0.shared.settings;
        let number = self.0.shared.instances.fetch_add(1, Ordering::Relaxed) + 1;
        let (lend, calls) = mpsc::unbounded_channel();
        store.data_mut().io.lending = Some((number, lend));
        let mut run = Run {
            generation,
            permit,
            store,
            instance,
            in_flight: InFlight::default(),
            deadline: tokio::time::Instant::now() + settings.wall_time_per_event,
            number,
            calls,
            calling: HashMap::new(),
            last_event: EVENT,
        };
        run.store.data_mut().tasks.open(EVENT, settings);
        let (answer, run) = run.answer(req, settings).await?;
        if run.in_flight.is_empty() {
            self.0.put_back(run);
        } else {
            let pool = self.0.clone();
            self.0.shared.actors.spawn(async move {
                if let Some(run) = run.drain(&pool.shared.settings).await {
                    pool.put_back(run);
                }
            });
        }
        answer
    }
}

/// What a worker's turn calls.
enum TurnCall {
    /// Shared with what the worker may hand on unchanged
    /// ([`super::forwards`]).
    Request(Arc<WitRequest>),
    /// A call to a target the request lent, as event `.0`.
    Target(EventId, TargetCall),
    Resume(OpId, Outcome),
}

impl Run {
    /// Runs turns until the worker answers the request: the answer and the
    /// run, or the error if the instance trapped (it is dropped).
    async fn answer(
        mut self,
        req: WitRequest,
        settings: &Settings,
    ) -> Result<(Result<GuestResponse>, Run)> {
        let mut call = TurnCall::Request(Arc::new(req));
        let counted = instructions::run_so_far(&self.store);
        loop {
            if let Some(finished) = self.turn(call, settings).await? {
                if instructions::counting() {
                    let ran = instructions::run_so_far(&self.store) - counted;
                    instructions::report("worker fetch", ran);
                }
                let answer = match finished {
                    Finished::Fetch(result) => {
                        result.map_err(|message| Error::new(ErrorKind::GuestError, message))
                    }
                    Finished::Call(_) | Finished::Alarm(_) | Finished::Socket(_) => {
                        Err(Error::new(
                            ErrorKind::Component,
                            "the worker finished its request as another kind of event",
                        ))
                    }
                };
                return Ok((answer, self));
            }
            let (op, _, outcome) = tokio::select! {
                next = self.in_flight.next(), if !self.in_flight.is_empty() => next,
                Some(target) = self.calls.recv() => {
                    call = self.target_call(target, settings);
                    continue;
                }
                () = tokio::time::sleep_until(self.deadline) => {
                    let limit = settings.wall_time_per_event.as_millis();
                    let error = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the worker exceeded its wall-clock time limit of {limit} ms \
                             ([limits] wall_ms)"
                        ),
                    );
                    return Ok((Err(error), self));
                }
            };
            call = TurnCall::Resume(op, outcome);
        }
    }

    /// Runs the turns of what the worker still waits on after it answered;
    /// the run, unless it trapped.
    async fn drain(mut self, settings: &Settings) -> Option<Run> {
        while !self.in_flight.is_empty() {
            let call = tokio::select! {
                (op, _, outcome) = self.in_flight.next() => TurnCall::Resume(op, outcome),
                Some(target) = self.calls.recv() => self.target_call(target, settings),
            };
            self.turn(call, settings).await.ok()?;
        }
        Some(self)
    }

    /// Starts an event for a call to a target the request lent.
    fn target_call(&mut self, call: TargetCall, settings: &Settings) -> TurnCall {
        self.last_event += 1;
        self.store.data_mut().tasks.open(self.last_event, settings);
        TurnCall::Target(self.last_event, call)
    }

    /// The request is over: the targets it lent go with it.
    fn end(&mut self) {
        let io = &mut self.store.data_mut().io;
        io.lending = None;
        io.shared.lending.forget(self.number);
        self.calls.close();
    }

    /// One turn; how the worker finished its request, if it did in this
    /// turn.
    async fn turn(&mut self, call: TurnCall, settings: &Settings) -> Result<Option<Finished>> {
        let store = &mut self.store;
        store.data_mut().meter.begin_event();
        store.data_mut().tasks.event = EVENT;
        let handler = self.instance.dohost_object_worker_handler();
        let result = match call {
            TurnCall::Request(req) => {
                store.data_mut().tasks.kept.keep_request(EVENT, &req);
                handler.call_fetch(&mut *store, EVENT, &req).await
            }
            TurnCall::Target(event, call) => {
                store.data_mut().tasks.event = event;
                self.calling.insert(event, call.reply);
                handler
                    .call_call_target(&mut *store, event, call.target, &call.method, &call.args)
                    .await
            }
            TurnCall::Resume(op, outcome) => {
                store.data_mut().tasks.kept.keep_outcome(op, &outcome);
                handler.call_resume(&mut *store, op, &outcome).await
            }
        };
        if let Err(trap) = result {
            self.end();
            let store = &self.store;
            let (reason, detail) = engine::describe_trap(&trap, &store.data().meter);
            tracing::warn!("the worker trapped: {reason}\n{detail}");
            return Err(Error::new(
                ErrorKind::GuestTrap,
                format!("the worker trapped: {reason}"),
            )
            .with_detail(detail));
        }
        let data = self.store.data_mut();
        let tasks = &mut data.tasks;
        for closing in std::mem::take(&mut tasks.closing) {
            data.io.shared.actors.spawn(closing.send(None));
        }
        for op in std::mem::take(&mut tasks.cancelled) {
            self.in_flight.cancel(op);
        }
        let mut finished = None;
        for (event, done) in std::mem::take(&mut tasks.finished) {
            if event == EVENT {
                finished = Some(done);
            } else if let Some(reply) = self.calling.remove(&event) {
                tasks.close(event);
                let _ = reply.send(match done {
                    Finished::Call(result) => {
                        result.map_err(|message| Error::new(ErrorKind::GuestError, message))
                    }
                    _ => Err(Error::new(
                        ErrorKind::Component,
                        "the worker finished a call to its RpcTarget as another kind of event",
                    )),
                });
            }
        }
        if finished.as_ref().is_some_and(Finished::streams) {
            self.deadline = tasks::open_ended();
        }
        for started in std::mem::take(&mut tasks.started) {
            self.in_flight
                .launch(started, None, self.deadline, settings.wall_time_per_event);
        }
        Ok(finished)
    }
}

impl Pool {
    /// An idle instance, or a new one once one more may exist: waits up
    /// to the call timeout for a running one to finish.
    async fn take(&self) -> Result<(u64, Counted)> {
        if let Some(warm) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(warm);
        }
        let timeout = self.shared.settings.call_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(warm) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return Ok(warm);
            }
            tokio::select! {
                permit = self.instances.clone().acquire_owned() => {
                    let permit = permit
                        .map_err(|_| Error::new(ErrorKind::ShutDown, "the worker pool is closed"))?;
                    return self.instantiate(permit).await;
                }
                () = &mut returned => {}
                () = tokio::time::sleep_until(deadline) => {
                    let limit = self.shared.settings.max_worker_instances;
                    return Err(Error::new(
                        ErrorKind::Overloaded,
                        format!(
                            "overloaded: all {limit} worker instances ([limits] max_worker_instances) stayed busy for the call timeout ({} ms); retry later",
                            timeout.as_millis()
                        ),
                    ));
                }
            }
        }
    }

    /// A new instance, counted by `permit`.
    async fn instantiate(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(u64, Counted)> {
        let state = GuestState::new(
            WorkerIo {
                shared: self.shared.clone(),
                lending: None,
            },
            self.log.clone(),
        );
        let mut store = self
            .shared
            .runtime
            .store(state, self.shared.settings.cpu_time_per_event);
        let (generation, pre) = self.code.get();
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| {
            engine::instantiate_error(
                &e,
                "cannot start the worker",
                self.shared.settings.max_live_objects,
            )
        })?;
        Ok((generation, (permit, (store, instance))))
    }

    /// Keeps a run's instance for the next request, unless its memory has
    /// grown near its limit or its code is old.
    fn put_back(&self, mut run: Run) {
        run.end();
        let tasks = &mut run.store.data_mut().tasks;
        tasks.close(EVENT);
        tasks.kept.clear_responses();
        // What the request left open fails for its readers.
        tasks.bodies.clear();
        let meter = &run.store.data().meter;
        if meter.memory_nearly_full() {
            let (size, limit) = meter.memory_mib();
            tracing::info!(
                "a worker instance's memory grew to {size} MiB of its {limit} MiB limit; \
                 it is dropped, and later requests get a fresh one"
            );
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_WORKERS && run.generation == self.code.generation() {
            idle.push((run.generation, (run.permit, (run.store, run.instance))));
            self.returned.notify_one();
        }
    }
}
