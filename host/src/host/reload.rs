//! Code updates: loading every component again and swapping it in.

use wasmtime::component::Linker;

use std::sync::Mutex;

use super::config::{BindingConfig, Config};
use super::host::Host;
use crate::error::{Error, Result};
use crate::runtime::{ComponentSource, ObjectState, WorkerState, load_binding, load_worker};

#[cfg(doc)]
use crate::error::ErrorKind;

/// The components of a host and how they are linked.
pub(crate) struct Sources {
    /// Where each component comes from now; a reload may change it.
    pub(crate) components: Mutex<Components>,
    pub(crate) object_linker: Linker<ObjectState>,
    pub(crate) worker_linker: Linker<WorkerState>,
}

/// The bindings' components and the entry worker's.
pub(crate) struct Components {
    pub(crate) bindings: Vec<BindingConfig>,
    pub(crate) main: Option<ComponentSource>,
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
        // Held throughout: one reload at a time.
        let components = self
            .inner
            .sources
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.swap_in(&components)
    }

    /// As [`Host::reload`], from the components `config` names now: the
    /// host's configuration built again ([`crate::build::build_config`]),
    /// whose JavaScript components have new file names. Later reloads use
    /// these components.
    ///
    /// # Errors
    ///
    /// As [`Host::reload`], and [`ErrorKind::Config`] when `config` has
    /// other bindings or classes than the host, or gains or loses the entry
    /// worker: those changes need a restart.
    pub fn reload_from(&self, config: &Config) -> Result<()> {
        let mut components = self
            .inner
            .sources
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let shape = |bindings: &[BindingConfig], main: bool| {
            let mut names: Vec<(String, String)> = bindings
                .iter()
                .map(|b| (b.name.clone(), b.class_name.clone()))
                .collect();
            names.sort();
            (names, main)
        };
        if shape(&components.bindings, components.main.is_some())
            != shape(&config.bindings, config.main.is_some())
        {
            return Err(Error::config(
                "the configuration's bindings, classes or entry worker changed; restart the server to take them",
            ));
        }
        let new = Components {
            bindings: config.bindings.clone(),
            main: config.main.clone(),
        };
        self.swap_in(&new)?;
        *components = new;
        Ok(())
    }

    /// Loads `components` and swaps them in; see [`Host::reload`].
    fn swap_in(&self, components: &Components) -> Result<()> {
        let inner = &self.inner;
        let sources = &inner.sources;
        let mut pres = Vec::new();
        for b in &components.bindings {
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
        let worker = match &components.main {
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
