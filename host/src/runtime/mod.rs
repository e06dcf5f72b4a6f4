//! The runtime: what runs. One wasmtime engine and the generated bindings;
//! code loading; object actors with their input and output gates;
//! namespaces, ids, stubs and call chains; the entry worker; the alarm
//! scheduler; residency; each object's SQLite engine.
//!
//! It stands on the store (`dohost-store`) and never names the imports or
//! the embedding API above it: the host side of each WIT interface lives in
//! `imports/` and reaches the runtime through the store data
//! ([`GuestState`]) and its views ([`Calls`], [`Vars`]).

pub(crate) mod alarm;
pub(crate) mod bindings;
mod body;
mod calls;
mod code;
mod counts;
mod engine;
mod forwards;
mod guest;
mod ids;
mod instructions;
mod mappings;
mod namespace;
pub(crate) mod object;
pub(crate) mod outbound;
pub(crate) mod remote;
mod residency;
mod shared;
pub(crate) mod sockets;
pub(crate) mod sql;
mod stub;
mod targets;
pub(crate) mod tasks;
mod trace;
mod worker;

pub use body::Body;
pub(crate) use body::GuestResponse;
pub(crate) use calls::{Calls, CallsImport};
pub use code::ComponentSource;
pub(crate) use code::{block_on, load_binding, load_worker};
pub(crate) use engine::{EngineLimits, Runtime, private_dir};
pub(crate) use guest::{GuestIo, GuestState, Vars, VarsImport};
pub(crate) use ids::{minted_by, name_id, parse_id};
pub(crate) use namespace::find;
pub use namespace::{Namespace, ObjectId};
pub(crate) use object::{Aborted, ObjectState, READY_SLOTS};
pub(crate) use shared::HostShared;
pub use stub::{AcceptedWebSocket, Stub};
pub(crate) use stub::{from_wit_response, to_wit_request};
pub(crate) use targets::Lent;
pub(crate) use worker::{WorkerPool, WorkerState};
