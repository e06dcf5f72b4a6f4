//! Component code: loading a component, asking it for its classes, and
//! swapping a new version into a running host.
//!
//! A binding's component is loaded (from the compiled cache when it can),
//! linked against the durable-object world and asked for the classes it
//! exports (`handler.classes`), so a wrong `class_name` or a missing import
//! is refused before any object runs.
//!
//! Each namespace (and the entry worker) reads its component through a
//! [`Code`]: the current `InstancePre` and a generation number. A reload
//! ([`crate::Host::reload`], or `dohost serve --watch` when a component file
//! changes) loads and checks every component first, then swaps them all.
//! An event that is running finishes on the code it started with; before
//! its next event each object sees the new generation, drops its instance
//! (its in-memory state goes, as in any reset) and activates on the new
//! code. Storage is untouched.

use std::sync::{Arc, RwLock};

use wasmtime::component::Linker;

use crate::bindings::object::DurableObjectPre;
use crate::bindings::worker::WorkerPre;
use crate::config::{BindingConfig, ComponentSource};
use crate::engine;
use crate::error::{Error, ErrorKind, Result};
use crate::host::{Host, HostShared, block_on};
use crate::object::{Identity, ObjectIo, ObjectState};
use crate::worker::WorkerState;

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

/// The components of a host and how they are linked.
pub(crate) struct Sources {
    pub(crate) bindings: Vec<BindingConfig>,
    pub(crate) main: Option<ComponentSource>,
    pub(crate) object_linker: Linker<ObjectState>,
}

/// Loads (from the compiled cache when it can), links and asks the
/// component of binding `b` for its classes.
pub(crate) fn load_binding(
    shared: &Arc<HostShared>,
    linker: &Linker<ObjectState>,
    b: &BindingConfig,
) -> Result<(DurableObjectPre<ObjectState>, Vec<String>)> {
    let what = format!("binding {}", b.name);
    let component = shared.runtime.load(&b.component, &what)?;
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

/// Loads and links the entry worker.
pub(crate) fn load_worker(
    shared: &Arc<HostShared>,
    source: &ComponentSource,
) -> Result<WorkerPre<WorkerState>> {
    let component = shared.runtime.load(source, "main worker")?;
    let mut linker = shared.runtime.linker::<WorkerState>()?;
    crate::bindings::worker::Worker::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        &mut linker,
        |s| s,
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Component,
            format!("linking the worker contract: {e:#}"),
        )
    })?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
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
    let identity = Identity {
        key: crate::storage::ObjectKey::new(u32::MAX, &[0; 32]),
        binding: what.into(),
        id_hex: String::new(),
        name: None,
        class: "".into(),
    };
    let state = ObjectState::new(ObjectIo::new(identity, shared.clone()));
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
            let message = engine::describe_trap(&e, &store.data().meter);
            Error::new(
                ErrorKind::Component,
                format!("{what}: the component trapped when asked for its classes: {message}"),
            )
        })
}

impl Host {
    /// Loads every component again from where it came from (a `.wasm` file
    /// that changed, say) and swaps them in: running events finish on the
    /// old code, each object is reset before its next event, and new
    /// events run the new code (see `dohost serve --watch`). Storage is
    /// kept; configuration changes (bindings, classes, migrations) need a
    /// restart. Blocks while components compile.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Component`] when a component cannot be read, compiled
    /// or linked, and [`ErrorKind::Config`] when one no longer exports its
    /// binding's class. Then nothing is swapped: the old code keeps running.
    pub fn reload(&self) -> Result<()> {
        let inner = &self.inner;
        let sources = &inner.sources;
        let mut pres = Vec::new();
        for b in &sources.bindings {
            let (pre, exports) = load_binding(&inner.shared, &sources.object_linker, b)?;
            if !exports.contains(&b.class_name) {
                return Err(Error::config(format!(
                    "binding {}: the new component does not export class {} (it exports {}); export the class, or rename it with a migration and restart",
                    b.name,
                    b.class_name,
                    exports.join(", ")
                )));
            }
            pres.push((b.name.as_str(), pre));
        }
        let worker = match &sources.main {
            Some(source) => Some(load_worker(&inner.shared, source)?),
            None => None,
        };
        for (binding, pre) in pres {
            if let Some(namespace) = inner.namespaces.get(binding) {
                namespace.swap_code(pre);
            }
        }
        if let (Some(pool), Some(pre)) = (&inner.worker, worker) {
            pool.swap_code(pre);
        }
        tracing::info!("reloaded the components; objects restart on the new code");
        Ok(())
    }
}
