//! The host side of the WIT contract (`wit/`): one file per interface, named
//! after it, holding only the implementations of its generated traits, as
//! wasmtime-wasi keeps `p2/host/*.rs`. The code they call is the runtime's;
//! nothing names this module: the linker ([`crate::host`]) finds the
//! implementations by trait.
//!
//! Object-only interfaces (`context`, `storage`, `sql`, `alarm`,
//! `websocket`) are
//! implemented on an object's store data; the ones every guest has (`env`,
//! `namespace`, `outbound`, `events`, `body`, `types`) on the views objects and
//! workers share, so each is written once.

mod alarm;
mod body;
mod context;
mod env;
mod events;
mod namespace;
mod outbound;
mod sql;
mod storage;
mod targets;
mod types;
mod websocket;
