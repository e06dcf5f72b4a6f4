//! The data of a guest's wasmtime store, for objects and workers alike.
//!
//! [`GuestState`] holds what every guest has: WASI with nothing of the host
//! in it, the resource table, the [`GuestMeter`], and the guest's io: an
//! object's ([`ObjectIo`](super::object::ObjectIo)) or a worker's. What the
//! imports every guest has need (`env`, `namespace`) they reach through a
//! view, as wasmtime-wasi's interfaces do: [`Vars`] and [`Calls`], each a
//! [`HasData`] type, so each of those imports is written once.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::calls::Calls;
use super::engine::{GuestLog, GuestMeter, GuestOutput, wasi_ctx};
use super::shared::HostShared;
use super::stub::CallChain;
use super::targets::Lender;
use super::tasks::Tasks;
use dohost_store::Gate;

/// A guest's store data: WASI, resources, meter, and `io`, what the guest
/// is.
pub(crate) struct GuestState<Io> {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) meter: GuestMeter,
    /// The events the instance runs and the operations they started.
    pub(crate) tasks: Tasks,
    pub(crate) io: Io,
}

impl<Io> GuestState<Io> {
    /// A store's data for a guest with `io` whose output goes to `log`: no
    /// WASI access to the host, nothing measured yet.
    pub(crate) fn new(io: Io, log: Arc<GuestLog>) -> GuestState<Io> {
        let mut meter = GuestMeter::default();
        meter.output = GuestOutput::to_log(log);
        GuestState {
            wasi: wasi_ctx(&meter.output),
            table: ResourceTable::new(),
            meter,
            tasks: Tasks::default(),
            io,
        }
    }
}

impl<Io: Send + 'static> WasiView for GuestState<Io> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What the imports every guest has need of its io: the host it runs in,
/// and what a call it makes now carries.
pub(crate) trait GuestIo: Send + 'static {
    /// The host's shared state.
    fn shared(&self) -> &HostShared;
    /// The chain a call made now belongs to, and the gate it must pass
    /// before it is sent. `waits`: whether the caller takes no other event
    /// until the call returns (a call inside the import, or inside
    /// `blockConcurrencyWhile`), so a call back to it would deadlock.
    fn outgoing(&self, waits: bool) -> (CallChain, Option<Gate>);
    /// The object and instance that lend a target now (see
    /// [`super::targets`]), or why this guest cannot lend.
    fn lender(&self) -> Result<(Lender, u64), String>;
}

impl<Io: GuestIo> GuestState<Io> {
    /// The view of the `namespace` import.
    pub(crate) fn calls(&mut self) -> Calls<'_> {
        Calls {
            table: &mut self.table,
            caller: &mut self.io,
            tasks: &mut self.tasks,
        }
    }

    /// The view of the `env` import.
    pub(crate) fn vars(&mut self) -> &Vars {
        &self.io.shared().vars
    }
}

/// A host's `[vars]`, as the `env` import sees them.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    vars: BTreeMap<String, String>,
    /// The variables whose values are JSON (not strings in the configuration).
    json: std::collections::BTreeSet<String>,
    /// Bindings the configuration declares for products dohost does not
    /// have: name → what it is.
    unsupported: BTreeMap<String, String>,
    /// The Durable Object classes bound: class → its first binding.
    classes: BTreeMap<String, String>,
}

impl Vars {
    pub(crate) fn new(
        vars: BTreeMap<String, String>,
        json: std::collections::BTreeSet<String>,
        unsupported: BTreeMap<String, String>,
        classes: BTreeMap<String, String>,
    ) -> Vars {
        Vars {
            vars,
            json,
            unsupported,
            classes,
        }
    }

    /// The classes bound, each with its first binding (`ctx.exports`).
    pub(crate) fn classes(&self) -> Vec<(String, String)> {
        self.classes
            .iter()
            .map(|(class, binding)| (class.clone(), binding.clone()))
            .collect()
    }

    /// The variables whose values are JSON rather than strings.
    pub(crate) fn json_names(&self) -> Vec<String> {
        self.json.iter().cloned().collect()
    }

    /// Why the declared binding `name` is not available, if it is one of
    /// those dohost lacks.
    pub(crate) fn unsupported(&self, name: &str) -> Option<String> {
        self.unsupported.get(name).map(|what| {
            format!(
                "env.{name} is declared in the configuration as {what}, which dohost does not provide"
            )
        })
    }

    /// Every variable, sorted by name.
    pub(crate) fn list(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The variable `name`, if it is set.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

/// The `env` import's [`HasData`]: it sees [`Vars`].
pub(crate) struct VarsImport;

impl HasData for VarsImport {
    type Data<'a> = &'a Vars;
}
