//! The stateless entry worker (`main` in dohost.toml), like a Cloudflare
//! Worker's default export: it gets every HTTP request and reaches objects
//! through the namespaces bound in the configuration.
//!
//! Workers hold no state between requests that anything may rely on, so the
//! host keeps a small pool of warm instances and gives each concurrent request
//! its own. An instance that trapped is dropped, never reused, and so is one
//! whose memory has grown near its limit ([`GuestMeter::memory_nearly_full`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::object::dohost::object::{env, types};
use crate::bindings::worker::{Worker, WorkerPre};
use crate::bindings::{WitRequest, WitResponse};
use crate::calls::{self, Caller};
use crate::engine::{self, GuestMeter};
use crate::error::{Error, ErrorKind, Result};
use crate::host::HostShared;
use crate::namespace::Namespace;
use crate::object::Gate;
use crate::stub::CallChain;

/// How many idle worker instances are kept warm for the next requests.
const MAX_IDLE_WORKERS: usize = 64;

/// The data of a worker's wasmtime store.
pub(crate) struct WorkerState {
    wasi: WasiCtx,
    table: ResourceTable,
    shared: Arc<HostShared>,
    namespaces: Arc<BTreeMap<String, Namespace>>,
    meter: GuestMeter,
}

impl engine::Metered for WorkerState {
    fn meter(&mut self) -> &mut GuestMeter {
        &mut self.meter
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type WarmWorker = (wasmtime::Store<WorkerState>, Worker);

/// Warm instances of the entry worker.
pub(crate) struct WorkerPool {
    code: crate::code::Code<WorkerPre<WorkerState>>,
    /// Instances between requests, with the code generation each runs.
    idle: Mutex<Vec<(u64, WarmWorker)>>,
    shared: Arc<HostShared>,
    namespaces: Arc<BTreeMap<String, Namespace>>,
}

impl WorkerPool {
    pub(crate) fn new(
        pre: WorkerPre<WorkerState>,
        shared: Arc<HostShared>,
        namespaces: Arc<BTreeMap<String, Namespace>>,
    ) -> WorkerPool {
        WorkerPool {
            code: crate::code::Code::new(pre),
            idle: Mutex::new(Vec::new()),
            shared,
            namespaces,
        }
    }

    /// Runs new requests on `pre` (see [`crate::code`]); instances of
    /// the old code finish their requests and are dropped.
    pub(crate) fn swap_code(&self, pre: WorkerPre<WorkerState>) {
        self.code.swap(pre);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn instantiate(&self) -> Result<(u64, WarmWorker)> {
        let meter = GuestMeter::default();
        let state = WorkerState {
            wasi: engine::wasi_ctx(&meter.output),
            table: ResourceTable::new(),
            shared: self.shared.clone(),
            namespaces: self.namespaces.clone(),
            meter,
        };
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
        Ok((generation, (store, instance)))
    }

    /// Runs one request through a worker instance.
    pub(crate) async fn fetch(&self, req: WitRequest) -> Result<WitResponse> {
        let warm = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (generation, (mut store, instance)) = match warm {
            Some(w) => w,
            None => self.instantiate().await?,
        };
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
                        idle.push((generation, (store, instance)));
                    }
                }
                outcome.map_err(|message| Error::new(ErrorKind::GuestError, message))
            }
            Err(trap) => {
                let message = engine::describe_trap(&trap, &store.data().meter);
                tracing::warn!("the worker trapped: {message}");
                Err(Error::new(
                    ErrorKind::GuestTrap,
                    format!("the worker trapped: {message}"),
                ))
            }
        }
    }
}

impl Caller for WorkerState {
    fn resources(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn binding(&self, binding: &str) -> Result<Namespace> {
        calls::lookup(&self.namespaces, binding)
    }

    fn outgoing(&self) -> (CallChain, Option<Gate>) {
        // A worker holds no input gate and writes nothing.
        (CallChain::default(), None)
    }
}

calls::namespace_import!(WorkerState);

impl types::Host for WorkerState {}

impl env::Host for WorkerState {
    fn vars(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.shared.vars_list())
    }

    fn var(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.shared.vars.get(&name).cloned())
    }
}
