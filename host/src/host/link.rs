//! Linking: each interface of the WIT contract to its implementation in
//! `imports/`, for objects and for the entry worker. Object-only interfaces
//! see the object's store data; `env` and `namespace` see the views both
//! kinds of guest share (`Vars`, `Calls`), so they are implemented once.

use wasmtime::component::{HasSelf, Linker};

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::bindings::object::dohost::object::{
    alarm, body, context, env, events, namespace, outbound, sql, storage, targets, types, websocket,
};
use crate::runtime::{
    CallsImport, GuestIo, GuestState, ObjectState, Runtime, VarsImport, WorkerState,
};

fn linking(what: &str) -> impl Fn(wasmtime::Error) -> Error + '_ {
    move |e| {
        Error::new(
            ErrorKind::Component,
            format!("linking the {what} contract: {e:#}"),
        )
    }
}

/// What every guest imports: WASI (with nothing of the host), `types`,
/// `env`, `namespace`, `outbound`, `events`, `body` and `targets`.
fn guest_linker<Io: GuestIo>(runtime: &Runtime, what: &str) -> Result<Linker<GuestState<Io>>> {
    let mut linker = runtime.linker::<GuestState<Io>>()?;
    let l = &mut linker;
    types::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    env::add_to_linker::<_, VarsImport>(l, GuestState::<Io>::vars).map_err(linking(what))?;
    namespace::add_to_linker::<_, CallsImport>(l, GuestState::<Io>::calls)
        .map_err(linking(what))?;
    outbound::add_to_linker::<_, CallsImport>(l, GuestState::<Io>::calls).map_err(linking(what))?;
    events::add_to_linker::<_, CallsImport>(l, GuestState::<Io>::calls).map_err(linking(what))?;
    body::add_to_linker::<_, CallsImport>(l, GuestState::<Io>::calls).map_err(linking(what))?;
    targets::add_to_linker::<_, CallsImport>(l, GuestState::<Io>::calls).map_err(linking(what))?;
    Ok(linker)
}

/// The linker of the `durable-object` world.
pub(crate) fn object_linker(runtime: &Runtime) -> Result<Linker<ObjectState>> {
    let what = "object";
    let mut linker = guest_linker(runtime, what)?;
    let l = &mut linker;
    context::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    storage::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    sql::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    alarm::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    websocket::add_to_linker::<_, HasSelf<_>>(l, |s| s).map_err(linking(what))?;
    Ok(linker)
}

/// The linker of the `worker` world.
pub(crate) fn worker_linker(runtime: &Runtime) -> Result<Linker<WorkerState>> {
    guest_linker(runtime, "worker")
}
