//! # dohost-sdk
//!
//! Write Durable Objects for [dohost](https://example.invalid/dohost) in Rust.
//! A class implements [`DurableObject`]; [`export_objects!`] exports one or
//! more classes from the component (the host picks one by name per object).
//! A stateless entry worker implements [`Worker`] and is exported with
//! [`export_worker!`]. Build with `cargo build --release --target
//! wasm32-wasip2` (or `dohost build`).
//!
//! ```no_run
//! use dohost_sdk::{DurableObject, Env, Request, Response, Result, State};
//!
//! struct Counter {
//!     state: State,
//! }
//!
//! impl DurableObject for Counter {
//!     fn new(state: State, _env: Env) -> Self {
//!         Counter { state }
//!     }
//!
//!     async fn fetch(&self, _req: Request) -> Result<Response> {
//!         let storage = self.state.storage();
//!         let value = storage.get::<u64>("value")?.unwrap_or(0) + 1;
//!         storage.put("value", &value)?;
//!         Ok(Response::text(value.to_string()))
//!     }
//! }
//!
//! dohost_sdk::export_objects!(Counter);
//! ```
//!
//! An object keeps its state in key-value [`Storage`] and in its own SQLite
//! database ([`Sql`], with [`Cursor`], [`Row`] and [`params!`]); the two
//! commit together when the event ends.
//!
//! Objects reach other objects through [`Env::namespace`]: ids
//! ([`Namespace::id_from_name`], [`Namespace::new_unique_id`]), stubs, and
//! [`Stub::fetch`] or [`Stub::call`] for RPC methods, which a class exposes
//! with [`methods!`].
//!
//! Handlers are `async` and take `&self`, as in Cloudflare's `workers-rs`.
//! Storage and SQL calls are synchronous and never interleave: everything
//! an event does between two `.await`s is atomic, so `get` then `put` needs
//! no locking. What an event awaits (stub calls, [`fetch`] to the outside
//! world, [`sleep`]) lets the object take its next event meanwhile
//! (Cloudflare's input gate), which is why handlers share `&self`: state
//! kept in fields that several events change goes in a `Cell` or
//! `RefCell`, never borrowed across an `.await`.
//! [`State::block_concurrency_while`] keeps other events out while it
//! runs. Await several things at once with the combinators of
//! [`future`] (`join`, `join_all`, `try_join_all`, `select`), and let work
//! run on after the response with [`State::wait_until`].

#![deny(missing_docs)]

extern crate self as dohost_sdk;

#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings;
mod cursor;
mod env;
mod http;
mod outbound;
mod row;
mod rpc;
mod sql;
mod sql_value;
mod storage;
mod task;
/// The format of stored values and RPC arguments (docs/values.md).
pub use dohost_value as value;
mod websocket;

use std::cell::RefCell;
use std::fmt;

pub use cursor::Cursor;
pub use env::{Env, Namespace, ObjectId, State, Stub};
pub use futures_util::future;
pub use futures_util::{join, try_join};
pub use http::{Request, Response};
pub use outbound::{Redirect, fetch, fetch_with};
pub use row::Row;
pub use rpc::Method;
pub use sql::{MAX_SQL_PARAMS, MAX_SQL_STATEMENT_BYTES, MAX_SQL_VALUE_BYTES, Sql};
pub use sql_value::{FromSql, SqlValue};
pub use storage::{
    ListOptions, MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_VALUE_BYTES, Storage, Transaction,
};
pub use task::{sleep, wait_until};
pub use websocket::{WebSocket, WebSocketMessage};

/// An error from the host or from a guest's own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    remote: bool,
    retryable: bool,
    overloaded: bool,
    sql_code: Option<i32>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            remote: false,
            retryable: false,
            overloaded: false,
            sql_code: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error came from the called object's own code.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// Whether repeating the call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the called object was overloaded.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    /// The SQLite result code when the error came from [`Sql::exec`] or a
    /// [`Cursor`]: the extended code, e.g. 2067 for a unique constraint;
    /// `code & 0xff` is the primary code (19, `SQLITE_CONSTRAINT`). `None`
    /// for every other error.
    pub fn sql_code(&self) -> Option<i32> {
        self.sql_code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// What the host tells [`DurableObject::alarm`] about the alarm it
/// delivers (Cloudflare's `alarmInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInfo {
    /// How many earlier deliveries of this alarm did not complete (the
    /// handler failed or was cut off by a crash); 0 the first time.
    pub retry_count: u32,
    /// Whether this delivery is a retry.
    pub is_retry: bool,
}

/// Milliseconds since the Unix epoch, now (JavaScript's `Date.now()`), for
/// [`Storage::set_alarm`].
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A Durable Object class.
///
/// The host constructs one value per object when the object is activated
/// (before its first event) and calls [`DurableObject::fetch`] for each
/// request. One event runs at a time until it awaits something other than
/// storage; then the next may start (see the crate's documentation). Fields
/// are the object's in-memory state: they last while the object stays live,
/// so anything that must survive goes to [`State::storage`].
#[allow(async_fn_in_trait)] // The guest has one thread: no future is `Send`.
pub trait DurableObject: 'static {
    /// Constructs the object. Runs before any event reaches it (Cloudflare's
    /// constructor with `blockConcurrencyWhile`): storage reads here are
    /// safe, and nothing else runs until it returns.
    fn new(state: State, env: Env) -> Self
    where
        Self: Sized;

    /// Handles one HTTP request. An `Err` becomes a 500 response with its
    /// message; writes made before it are kept. A panic resets the object
    /// and discards this event's writes.
    ///
    /// # Errors
    ///
    /// Whatever the object wants to report as a failure.
    async fn fetch(&self, req: Request) -> Result<Response>;

    /// Handles the object's alarm when it is due ([`Storage::set_alarm`]).
    /// `Ok` clears the alarm, unless the handler set a new one. An `Err` or
    /// a panic makes the host retry it with exponential backoff (2 s, 4 s,
    /// ... up to 6 retries by default); [`Storage::delete_alarm`] in the
    /// handler stops the retries. A panic also resets the object and
    /// discards this event's writes.
    ///
    /// The default fails: a class that sets alarms must handle them.
    ///
    /// # Errors
    ///
    /// Whatever the object wants retried.
    async fn alarm(&self, info: AlarmInfo) -> Result<()> {
        let _ = info;
        Err(Error::new(
            "this class has no alarm handler: implement DurableObject::alarm",
        ))
    }

    /// Runs the RPC method `method` for a caller's
    /// [`Stub::call`]: `args` is the array of the positional arguments and
    /// the result a value, both in the format of [`value`] (JSON, or CBOR
    /// from JavaScript). Do not write it by hand: list the class's
    /// methods with [`methods!`] inside the `impl DurableObject` block,
    /// which defines it. An `Err` reaches the caller as a remote error; a
    /// panic resets the object.
    ///
    /// The default knows no methods.
    ///
    /// # Errors
    ///
    /// When there is no such method, the arguments do not fit, or the
    /// method fails.
    async fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let _ = args;
        Err(rpc::unknown_method(method, &[]))
    }

    /// Handles a message on one of the object's WebSockets (Cloudflare's
    /// `webSocketMessage`): an event like a request, which may run while
    /// the object was out of memory. An `Err` is logged by the host; the
    /// socket stays open.
    ///
    /// The default refuses the message (an object that accepts sockets
    /// implements it).
    ///
    /// # Errors
    ///
    /// What the handler returns.
    async fn websocket_message(&self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
        let _ = (ws, message);
        Err(Error::new(
            "this class has no WebSocket message handler: implement DurableObject::websocket_message",
        ))
    }

    /// Handles the client closing one of the object's WebSockets
    /// (Cloudflare's `webSocketClose`); `was_clean` is false, with code 1006,
    /// when the connection ended without a close frame. The socket's tags
    /// and attachment can still be read here; it is gone afterwards.
    ///
    /// # Errors
    ///
    /// What the handler returns (logged by the host).
    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: u16,
        reason: String,
        was_clean: bool,
    ) -> Result<()> {
        let _ = (ws, code, reason, was_clean);
        Ok(())
    }

    /// Handles a WebSocket that failed (a protocol error, a message over
    /// the size limit) and that the host closed (Cloudflare's
    /// `webSocketError`).
    ///
    /// # Errors
    ///
    /// What the handler returns (logged by the host).
    async fn websocket_error(&self, ws: WebSocket, error: String) -> Result<()> {
        let _ = (ws, error);
        Ok(())
    }
}

/// A stateless entry worker (a Cloudflare Worker's default export).
#[allow(async_fn_in_trait)] // The guest has one thread: no future is `Send`.
pub trait Worker: 'static {
    /// Handles one HTTP request, typically by forwarding it to an object
    /// through `env.namespace(..)`.
    ///
    /// # Errors
    ///
    /// Whatever the worker wants to report as a failure (a 500).
    async fn fetch(req: Request, env: &Env) -> Result<Response>;
}

#[doc(hidden)]
pub mod __private {
    //! Support for the export macros. Not part of the API.
    pub use crate::bindings;
    pub use crate::rpc::{invoke, unknown_method};
    pub use wit_bindgen;

    use std::rc::Rc;

    use super::*;
    use crate::bindings::dohost::object::{events, types};
    use crate::rpc::LocalFuture;
    use crate::task;

    /// Constructs the class called `name`, if the component exports it.
    pub type Construct = fn(name: &str) -> Option<Rc<dyn ErasedObject>>;

    /// A [`DurableObject`] behind a vtable; each event's future holds the
    /// object, since several may be running.
    pub trait ErasedObject {
        fn fetch(self: Rc<Self>, req: Request) -> LocalFuture<'static, Result<Response>>;
        fn alarm(self: Rc<Self>, info: AlarmInfo) -> LocalFuture<'static, Result<()>>;
        fn call(
            self: Rc<Self>,
            method: String,
            args: Vec<u8>,
        ) -> LocalFuture<'static, Result<Vec<u8>>>;
        fn socket(
            self: Rc<Self>,
            ws: WebSocket,
            event: SocketEvent,
        ) -> LocalFuture<'static, Result<()>>;
    }

    /// What happened on a WebSocket.
    pub enum SocketEvent {
        Message(WebSocketMessage),
        Close(u16, String, bool),
        Error(String),
    }

    impl<T: DurableObject> ErasedObject for T {
        fn fetch(self: Rc<Self>, req: Request) -> LocalFuture<'static, Result<Response>> {
            Box::pin(async move { DurableObject::fetch(&*self, req).await })
        }

        fn alarm(self: Rc<Self>, info: AlarmInfo) -> LocalFuture<'static, Result<()>> {
            Box::pin(async move { DurableObject::alarm(&*self, info).await })
        }

        fn call(
            self: Rc<Self>,
            method: String,
            args: Vec<u8>,
        ) -> LocalFuture<'static, Result<Vec<u8>>> {
            Box::pin(async move { DurableObject::call(&*self, &method, &args).await })
        }

        fn socket(
            self: Rc<Self>,
            ws: WebSocket,
            event: SocketEvent,
        ) -> LocalFuture<'static, Result<()>> {
            Box::pin(async move {
                match event {
                    SocketEvent::Message(m) => {
                        DurableObject::websocket_message(&*self, ws, m).await
                    }
                    SocketEvent::Close(code, reason, clean) => {
                        DurableObject::websocket_close(&*self, ws, code, reason, clean).await
                    }
                    SocketEvent::Error(e) => DurableObject::websocket_error(&*self, ws, e).await,
                }
            })
        }
    }

    /// Builds a `T` as an erased object.
    pub fn construct<T: DurableObject>() -> Rc<dyn ErasedObject> {
        Rc::new(T::new(State::new(), Env::new()))
    }

    thread_local! {
        static OBJECT: RefCell<Option<Rc<dyn ErasedObject>>> = const { RefCell::new(None) };
    }

    pub fn init(class: String, construct: Construct, classes: &[&str]) -> Result<(), String> {
        match construct(&class) {
            Some(object) => {
                OBJECT.with(|o| *o.borrow_mut() = Some(object));
                task::run_woken();
                Ok(())
            }
            None => Err(format!(
                "this component exports no class {class:?}; it exports: {}",
                classes.join(", ")
            )),
        }
    }

    fn object(event: &str) -> Result<Rc<dyn ErasedObject>, String> {
        OBJECT
            .with(|o| o.borrow().clone())
            .ok_or_else(|| format!("{event} before init: the host must call init first"))
    }

    /// Runs request event `event`; reports it to the host when it ends,
    /// in this turn or a later one.
    pub fn fetch(event: u64, req: types::Request) {
        task::run(async move {
            let result = match object("fetch") {
                Ok(object) => object
                    .fetch(req.into())
                    .await
                    .map(Into::into)
                    .map_err(|e| e.message),
                Err(e) => Err(e),
            };
            events::finish_fetch(event, result.as_ref().map_err(String::as_str));
        });
    }

    /// Runs alarm event `event`; reports it to the host when it ends.
    pub fn alarm(event: u64, info: crate::bindings::exports::dohost::object::handler::AlarmInfo) {
        let info = AlarmInfo {
            retry_count: info.retry_count,
            is_retry: info.is_retry,
        };
        task::run(async move {
            let result = match object("alarm") {
                Ok(object) => object.alarm(info).await.map_err(|e| e.message),
                Err(e) => Err(e),
            };
            events::finish_alarm(event, result.as_ref().map(|_| ()).map_err(String::as_str));
        });
    }

    /// Runs RPC event `event`; reports it to the host when it ends.
    pub fn call(event: u64, method: String, args: Vec<u8>) {
        task::run(async move {
            let result = match object("call") {
                Ok(object) => object.call(method, args).await.map_err(|e| e.message),
                Err(e) => Err(e),
            };
            events::finish_call(event, result.as_deref().map_err(String::as_str));
        });
    }

    /// A call to a target this guest lent: Rust guests lend none.
    pub fn no_targets(event: u64) {
        events::finish_call(
            event,
            Err("Rust guests pass no RpcTargets or functions by reference"),
        );
    }

    /// An operation's outcome: wakes what awaits it.
    pub fn socket(event: u64, socket: u64, what: SocketEvent) {
        task::run(async move {
            let result = match object("a WebSocket event") {
                Ok(object) => object
                    .socket(WebSocket::from_id(socket), what)
                    .await
                    .map_err(|e| e.message),
                Err(e) => Err(e),
            };
            events::finish_socket(event, result.as_ref().map(|_| ()).map_err(String::as_str));
        });
    }

    pub fn resume(op: u64, outcome: events::Outcome) {
        task::resume(op, outcome);
    }

    /// Runs the worker's request event `event`; reports it to the host
    /// when it ends.
    pub fn worker_fetch<W: Worker>(event: u64, req: types::Request) {
        task::run(async move {
            let env = Env::new();
            let result = W::fetch(req.into(), &env)
                .await
                .map(Into::into)
                .map_err(|e| e.message);
            events::finish_fetch(event, result.as_ref().map_err(String::as_str));
        });
    }

    const NOT_AN_OBJECT: &str =
        "this component is a worker (export_worker!), not a Durable Object class";

    pub fn not_an_object() -> Result<(), String> {
        Err(NOT_AN_OBJECT.to_owned())
    }

    /// Ends event `event` as one this component does not handle.
    pub fn not_an_object_fetch(event: u64) {
        events::finish_fetch(event, Err(NOT_AN_OBJECT));
    }

    pub fn not_an_object_alarm(event: u64) {
        events::finish_alarm(event, Err(NOT_AN_OBJECT));
    }

    pub fn not_an_object_call(event: u64) {
        events::finish_call(event, Err(NOT_AN_OBJECT));
    }

    pub fn not_an_object_socket(event: u64) {
        events::finish_socket(event, Err(NOT_AN_OBJECT));
    }

    pub fn not_a_worker(event: u64) {
        events::finish_fetch(
            event,
            Err("this component exports Durable Object classes (export_objects!), not a worker"),
        );
    }
}

/// Exports Durable Object classes from this component. Each class is known
/// to the host by its type name, which is the `class_name` of a binding.
///
/// ```ignore
/// dohost_sdk::export_objects!(Counter, AdvancedCounter);
/// ```
#[macro_export]
macro_rules! export_objects {
    ($($class:ident),+ $(,)?) => {
        #[doc(hidden)]
        struct __DohostGuest;

        impl $crate::__private::bindings::exports::dohost::object::handler::Guest for __DohostGuest {
            fn classes() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![$(::std::string::String::from(stringify!($class))),+]
            }

            fn init(class_name: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                fn construct(name: &str) -> ::std::option::Option<::std::rc::Rc<dyn $crate::__private::ErasedObject>> {
                    match name {
                        $(stringify!($class) => ::std::option::Option::Some($crate::__private::construct::<$class>()),)+
                        _ => ::std::option::Option::None,
                    }
                }
                $crate::__private::init(class_name, construct, &[$(stringify!($class)),+])
            }

            fn fetch(
                event: u64,
                req: $crate::__private::bindings::dohost::object::types::Request,
            ) {
                $crate::__private::fetch(event, req)
            }

            fn alarm(
                event: u64,
                info: $crate::__private::bindings::exports::dohost::object::handler::AlarmInfo,
            ) {
                $crate::__private::alarm(event, info)
            }

            fn call(event: u64, method: ::std::string::String, args: ::std::vec::Vec<u8>) {
                $crate::__private::call(event, method, args)
            }

            fn call_target(event: u64, _target: u64, _method: ::std::string::String, _args: ::std::vec::Vec<u8>) {
                $crate::__private::no_targets(event)
            }

            fn websocket_message(
                event: u64,
                socket: u64,
                message: $crate::__private::bindings::dohost::object::websocket::Message,
            ) {
                $crate::__private::socket(event, socket, $crate::__private::SocketEvent::Message(message.into()))
            }

            fn websocket_close(
                event: u64,
                socket: u64,
                code: u16,
                reason: ::std::string::String,
                was_clean: bool,
            ) {
                $crate::__private::socket(event, socket, $crate::__private::SocketEvent::Close(code, reason, was_clean))
            }

            fn websocket_error(event: u64, socket: u64, error: ::std::string::String) {
                $crate::__private::socket(event, socket, $crate::__private::SocketEvent::Error(error))
            }

            fn resume(op: u64, outcome: $crate::__private::bindings::dohost::object::events::Outcome) {
                $crate::__private::resume(op, outcome)
            }
        }

        impl $crate::__private::bindings::exports::dohost::object::worker_handler::Guest for __DohostGuest {
            fn fetch(
                event: u64,
                _req: $crate::__private::bindings::dohost::object::types::Request,
            ) {
                $crate::__private::not_a_worker(event)
            }

            fn call_target(event: u64, _target: u64, _method: ::std::string::String, _args: ::std::vec::Vec<u8>) {
                $crate::__private::no_targets(event)
            }

            fn resume(op: u64, outcome: $crate::__private::bindings::dohost::object::events::Outcome) {
                $crate::__private::resume(op, outcome)
            }
        }

        $crate::__private::bindings::__export_guest!(__DohostGuest with_types_in $crate::__private::bindings);
    };
}

/// Exports a stateless entry worker from this component.
///
/// ```ignore
/// dohost_sdk::export_worker!(Forwarder);
/// ```
#[macro_export]
macro_rules! export_worker {
    ($worker:ident) => {
        #[doc(hidden)]
        struct __DohostGuest;

        impl $crate::__private::bindings::exports::dohost::object::handler::Guest for __DohostGuest {
            fn classes() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec::Vec::new()
            }

            fn init(_class_name: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::not_an_object()
            }

            fn fetch(
                event: u64,
                _req: $crate::__private::bindings::dohost::object::types::Request,
            ) {
                $crate::__private::not_an_object_fetch(event)
            }

            fn alarm(
                event: u64,
                _info: $crate::__private::bindings::exports::dohost::object::handler::AlarmInfo,
            ) {
                $crate::__private::not_an_object_alarm(event)
            }

            fn call(event: u64, _method: ::std::string::String, _args: ::std::vec::Vec<u8>) {
                $crate::__private::not_an_object_call(event)
            }

            fn call_target(event: u64, _target: u64, _method: ::std::string::String, _args: ::std::vec::Vec<u8>) {
                $crate::__private::not_an_object_call(event)
            }

            fn websocket_message(
                event: u64,
                _socket: u64,
                _message: $crate::__private::bindings::dohost::object::websocket::Message,
            ) {
                $crate::__private::not_an_object_socket(event)
            }

            fn websocket_close(
                event: u64,
                _socket: u64,
                _code: u16,
                _reason: ::std::string::String,
                _was_clean: bool,
            ) {
                $crate::__private::not_an_object_socket(event)
            }

            fn websocket_error(event: u64, _socket: u64, _error: ::std::string::String) {
                $crate::__private::not_an_object_socket(event)
            }

            fn resume(op: u64, outcome: $crate::__private::bindings::dohost::object::events::Outcome) {
                $crate::__private::resume(op, outcome)
            }
        }

        impl $crate::__private::bindings::exports::dohost::object::worker_handler::Guest for __DohostGuest {
            fn fetch(
                event: u64,
                req: $crate::__private::bindings::dohost::object::types::Request,
            ) {
                $crate::__private::worker_fetch::<$worker>(event, req)
            }

            fn call_target(event: u64, _target: u64, _method: ::std::string::String, _args: ::std::vec::Vec<u8>) {
                $crate::__private::no_targets(event)
            }

            fn resume(op: u64, outcome: $crate::__private::bindings::dohost::object::events::Outcome) {
                $crate::__private::resume(op, outcome)
            }
        }

        $crate::__private::bindings::__export_guest!(__DohostGuest with_types_in $crate::__private::bindings);
    };
}
