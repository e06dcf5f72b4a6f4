//! The generated side of the WIT contract in `wit/`: the only place
//! generated code lives (the host's implementations of the imports are in
//! `imports/`). Nothing generated appears in a public signature of the
//! crate.

/// Bindings for the `durable-object` world (what an object component imports
/// and exports).
pub(crate) mod object {
    wasmtime::component::bindgen!({
        world: "durable-object",
        path: "../wit",
        imports: {
            "dohost:object/storage.sync": async | trappable,
            "dohost:object/storage.get-current-bookmark": async | trappable,
            "dohost:object/storage.on-next-session-restore-bookmark": async | trappable,
            "dohost:object/namespace.[method]stub.fetch": async | trappable,
            "dohost:object/namespace.[method]stub.call": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "dohost:object/sql.cursor": crate::runtime::sql::Cursor,
            "dohost:object/namespace.object-namespace": crate::runtime::Namespace,
            "dohost:object/namespace.stub": crate::runtime::Stub,
        },
    });
}

/// Bindings for the stateless `worker` world. Shared interfaces are reused
/// from [`object`] so a request record is one Rust type on both sides.
pub(crate) mod worker {
    wasmtime::component::bindgen!({
        world: "worker",
        path: "../wit",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "dohost:object/types": super::object::dohost::object::types,
            "dohost:object/env": super::object::dohost::object::env,
            "dohost:object/namespace": super::object::dohost::object::namespace,
            "dohost:object/outbound": super::object::dohost::object::outbound,
            "dohost:object/events": super::object::dohost::object::events,
            "dohost:object/body": super::object::dohost::object::body,
            "dohost:object/targets": super::object::dohost::object::targets,
        },
    });
}

pub(crate) use object::dohost::object::types::{Request as WitRequest, Response as WitResponse};
