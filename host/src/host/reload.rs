//! Code updates: loading every component again and swapping it in.

use wasmtime::component::Linker;

use super::config::BindingConfig;
use super::host::Host;
use crate::error::{Error, Result};
use crate::runtime::{ComponentSource, ObjectState, WorkerState, load_binding, load_worker};

#[cfg(doc)]
use crate::error::ErrorKind;

/// The components of a host and how they are linked.
pub(crate) struct Sources {
    pub(crate) bindings: Vec<BindingConfig>,
    pub(crate) main: Option<ComponentSource>,
    pub(crate) object_linker: Linker<ObjectState>,
    pub(crate) worker_linker: Linker<WorkerState>,
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
            let (pre, exports) =
                load_binding(&inner.shared, &sources.object_linker, &b.name, &b.component)?;
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
            Some(source) => Some(load_worker(&inner.shared, &sources.worker_linker, source)?),
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
