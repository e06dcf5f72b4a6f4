//! Component code: where a component comes from, loading it, asking it for
//! its classes, and swapping a new version into a running host.
//!
//! A binding's component is loaded (from the compiled cache when it can),
//! linked against the durable-object world and asked for the classes it
//! exports (`handler.classes`), so a wrong `class_name` or a missing import
//! is refused before any object runs.
//!
//! Each namespace (and the entry worker) reads its component through a
//! [`Code`]: the current `InstancePre` and a generation number. A reload
//! (`Host::reload`, or `dohost serve --watch` when a component file
//! changes) loads and checks every component first, then swaps them all.
//! An event that is running finishes on the code it started with; before
//! its next event each object sees the new generation, drops its instance
//! (its in-memory state goes, as in any reset) and activates on the new
//! code. Storage is untouched.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker, ResourceType};

use super::bindings::object::DurableObjectPre;
use super::bindings::worker::WorkerPre;
use super::engine;
use super::guest::GuestState;
use super::object::{ObjectIo, ObjectState};
use super::shared::HostShared;
use super::worker::WorkerState;
use crate::error::{Error, ErrorKind, Result};

/// Where a component comes from.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// A compiled WebAssembly component file (`.wasm`).
    File(PathBuf),
    /// A Rust guest crate directory (with `Cargo.toml`), built by
    /// `dohost build` into a component for `wasm32-wasip2`.
    RustCrate(PathBuf),
    /// A JavaScript module (a `.js` file, or the `main` of a folder with
    /// `package.json`), built by `dohost build` with the JavaScript SDK
    /// into a component.
    JavaScript(PathBuf),
    /// A Python module (a `.py` file, or the main module of a folder with
    /// `pyproject.toml`), built by `dohost build` with the Python SDK into
    /// a component.
    Python(PathBuf),
    /// Component bytes held in memory (embedding).
    Bytes(Arc<[u8]>),
}

/// A component's current code and its generation.
pub(crate) struct Code<P> {
    current: RwLock<(u64, P)>,
}

impl<P: Clone> Code<P> {
    pub(crate) fn new(pre: P) -> Code<P> {
        Code {
            current: RwLock::new((0, pre)),
        }
    }

    /// The generation and the code to instantiate.
    pub(crate) fn get(&self) -> (u64, P) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Makes `pre` the current code, in a new generation.
    pub(crate) fn swap(&self, pre: P) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0 + 1, pre);
    }
}

/// Loads (from the compiled cache when it can), links and asks the
/// component of binding `binding` for its classes.
pub(crate) fn load_binding(
    shared: &Arc<HostShared>,
    linker: &Linker<ObjectState>,
    binding: &str,
    source: &ComponentSource,
) -> Result<(DurableObjectPre<ObjectState>, Vec<String>)> {
    let what = format!("binding {binding}");
    let component = shared.runtime.load(source, &what)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("{what}: the component does not fit the durable-object world: {e:#}"),
        )
    })?;
    let pre = DurableObjectPre::new(instance_pre).map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("{what}: the component does not export the handler interface: {e:#}"),
        )
    })?;
    let exports = block_on(exported_classes(&pre, shared, &what))?;
    Ok((pre, exports))
}

/// The interfaces an object imports that the worker world lacks.
const OBJECT_ONLY: [&str; 5] = [
    "dohost:object/storage@0.1.0",
    "dohost:object/sql@0.1.0",
    "dohost:object/alarm@0.1.0",
    "dohost:object/context@0.1.0",
    "dohost:object/websocket@0.1.0",
];

/// Links `component` as the entry worker. A component built for the
/// `guest` world that imports every interface of it (a Python guest: one
/// component serves the objects and the worker of its module) also
/// imports the interfaces only objects have ([`OBJECT_ONLY`]): in a worker
/// their functions trap, naming themselves, and the SDK's worker code never
/// calls them. Every other import is linked, or refused, as before.
fn link_worker(
    linker: &Linker<WorkerState>,
    component: &Component,
) -> wasmtime::Result<InstancePre<WorkerState>> {
    let engine = component.engine();
    let component_type = component.component_type();
    let object_only: Vec<_> = component_type
        .imports(engine)
        .filter(|(name, _)| OBJECT_ONLY.contains(name))
        .collect();
    if object_only.is_empty() {
        return linker.instantiate_pre(component);
    }
    let mut linker = linker.clone();
    for (interface, import) in object_only {
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let mut functions = linker.instance(interface)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let message = format!(
                        "{interface}#{name} is for Durable Objects; a worker cannot call it"
                    );
                    functions.func_new(name, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(message.clone()))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    functions.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    linker.instantiate_pre(component)
}

/// Loads and links the entry worker.
pub(crate) fn load_worker(
    shared: &Arc<HostShared>,
    linker: &Linker<WorkerState>,
    source: &ComponentSource,
) -> Result<WorkerPre<WorkerState>> {
    let component = shared.runtime.load(source, "main worker")?;
    let instance_pre = link_worker(linker, &component).map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("main worker: the component does not fit the worker world: {e:#}"),
        )
    })?;
    WorkerPre::new(instance_pre).map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("main worker: the component does not export worker-handler: {e:#}"),
        )
    })
}

/// Asks a component which classes it exports (`handler.classes`), in an
/// instance that is dropped at once. `what` names the component in errors.
pub(crate) async fn exported_classes(
    pre: &DurableObjectPre<ObjectState>,
    shared: &Arc<HostShared>,
    what: &str,
) -> Result<Vec<String>> {
    let io = ObjectIo::stand_in(what, shared.clone());
    let log = io.log.clone();
    let state = GuestState::new(io, log);
    let mut store = shared
        .runtime
        .store(state, shared.settings.cpu_time_per_event);
    let instance = pre.instantiate_async(&mut store).await.map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("{what}: cannot instantiate the component: {e:#}"),
        )
    })?;
    instance
        .dohost_object_handler()
        .call_classes(&mut store)
        .await
        .map_err(|e| {
            let (reason, detail) = engine::describe_trap(&e, &store.data().meter);
            Error::new(
                ErrorKind::Component,
                format!(
                    "{what}: the component trapped when asked for its classes: {reason}\n{detail}"
                ),
            )
        })
}

/// Runs `future` to its end on a thread of its own, so building a host
/// works both inside and outside an async runtime.
pub(crate) fn block_on<T: Send>(
    future: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| Error::io("cannot start a runtime to load components", e))?
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Component,
                    "loading a component panicked",
                ))
            })
    })
}
