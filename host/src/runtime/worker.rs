//! The stateless entry worker (`main` in dohost.toml), like a Cloudflare
//! Worker's default export: it gets every HTTP request and reaches objects
//! through the namespaces bound in the configuration.
//!
//! Workers hold no state between requests that anything may rely on, so the
//! host keeps a small pool of warm instances and gives each concurrent request
//! its own. An instance that trapped is dropped, never reused, and so is one
//! whose memory has grown near its limit
//! ([`GuestMeter::memory_nearly_full`](super::engine::GuestMeter::memory_nearly_full)).

use std::sync::{Arc, Mutex};

use super::bindings::worker::{Worker, WorkerPre};
use super::bindings::{WitRequest, WitResponse};
use super::code::Code;
use super::engine;
use super::guest::{GuestIo, GuestState};
use super::shared::HostShared;
use super::stub::CallChain;
use crate::error::{Error, ErrorKind, Result};
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
}

impl GuestIo for WorkerIo {
    fn shared(&self) -> &HostShared {
        &self.shared
    }

    fn outgoing(&self) -> (CallChain, Option<Gate>) {
        (CallChain::default(), None)
    }
}

/// The data of a worker's wasmtime store.
pub(crate) type WorkerState = GuestState<WorkerIo>;

type WarmWorker = (wasmtime::Store<WorkerState>, Worker);

/// Warm instances of the entry worker.
pub(crate) struct WorkerPool {
    code: Code<WorkerPre<WorkerState>>,
    /// Instances between requests, with the code generation each runs.
    idle: Mutex<Vec<(u64, Counted)>>,
    /// One permit per instance, idle or running: a flood of requests waits
    /// for an instance instead of taking every instance slot of the host.
    instances: Arc<tokio::sync::Semaphore>,
    /// Told when an instance goes back to `idle`.
    returned: tokio::sync::Notify,
    shared: Arc<HostShared>,
}

impl WorkerPool {
    pub(crate) fn new(pre: WorkerPre<WorkerState>, shared: Arc<HostShared>) -> WorkerPool {
        WorkerPool {
            code: Code::new(pre),
            idle: Mutex::new(Vec::new()),
            instances: Arc::new(tokio::sync::Semaphore::new(
                shared.settings.max_worker_instances as usize,
            )),
            returned: tokio::sync::Notify::new(),
            shared,
        }
    }

    /// Runs new requests on `pre` (see [`super::code`]); instances of
    /// the old code finish their requests and are dropped.
    pub(crate) fn swap_code(&self, pre: WorkerPre<WorkerState>) {
        self.code.swap(pre);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Worker instances now, idle or running.
    pub(crate) fn instances(&self) -> usize {
        self.shared.settings.max_worker_instances as usize - self.instances.available_permits()
    }

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
        let state = GuestState::new(WorkerIo {
            shared: self.shared.clone(),
        });
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

    /// Runs one request through a worker instance.
    pub(crate) async fn fetch(&self, req: WitRequest) -> Result<WitResponse> {
        let (generation, (permit, (mut store, instance))) = self.take().await?;
        store.data_mut().meter.begin_event();
        let result = instance
            .dohost_object_worker_handler()
            .call_fetch(&mut store, &req)
            .await;
        match result {
            Ok(outcome) => {
                let meter = &store.data().meter;
                if meter.memory_nearly_full() {
                    let (size, limit) = meter.memory_mib();
                    tracing::info!(
                        "a worker instance's memory grew to {size} MiB of its {limit} MiB limit; \
                         it is dropped, and later requests get a fresh one"
                    );
                } else {
                    let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() < MAX_IDLE_WORKERS && generation == self.code.generation() {
                        idle.push((generation, (permit, (store, instance))));
                        self.returned.notify_one();
                    }
                }
                outcome.map_err(|message| Error::new(ErrorKind::GuestError, message))
            }
            Err(trap) => {
                let (reason, detail) = engine::describe_trap(&trap, &store.data().meter);
                tracing::warn!("the worker trapped: {reason}\n{detail}");
                Err(Error::new(
                    ErrorKind::GuestTrap,
                    format!("the worker trapped: {reason}"),
                )
                .with_detail(detail))
            }
        }
    }
}
