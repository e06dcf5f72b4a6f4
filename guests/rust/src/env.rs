//! What a guest knows of its surroundings: its own identity ([`State`]), the
//! configuration's variables and the namespaces of other objects ([`Env`]).

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::events::{self, Outcome};
use crate::bindings::dohost::object::{context, env, namespace};
use crate::task::{Operation, unexpected};
use crate::{Error, Request, Response, Result, Sql, Storage};

/// The object's own state handle: its id, name, storage and SQL database.
#[derive(Debug, Clone)]
pub struct State {
    _private: (),
}

impl State {
    pub(crate) fn new() -> State {
        State { _private: () }
    }

    /// The object's id: 64 hex characters.
    pub fn id(&self) -> String {
        context::id()
    }

    /// The name the object was addressed by, when known.
    pub fn name(&self) -> Option<String> {
        context::name()
    }

    /// The class this object runs.
    pub fn class_name(&self) -> String {
        context::class_name()
    }

    /// Resets the object (Cloudflare's `ctx.abort`): this call does not
    /// return. The events the object is running fail with an error carrying
    /// `reason`, their writes are dropped, and the next event starts a
    /// fresh instance on what is durable.
    pub fn abort(&self, reason: &str) -> ! {
        context::abort(Some(reason));
        unreachable!("the host ends the call to abort")
    }

    /// The object's durable storage.
    pub fn storage(&self) -> Storage {
        Storage::new()
    }

    /// The object's SQL database (Cloudflare's `ctx.storage.sql`); the same
    /// as `self.storage().sql()`.
    pub fn sql(&self) -> Sql {
        Sql::new()
    }

    /// Runs `work` and keeps every other event out of the object until it
    /// finishes (Cloudflare's `blockConcurrencyWhile`); events already
    /// running go on once it is done. An `Err` resets the object, as on
    /// Cloudflare: every event running in it fails with that message.
    ///
    /// # Errors
    ///
    /// What `work` returns.
    pub async fn block_concurrency_while<T>(
        &self,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        events::block_concurrency();
        let result = work.await;
        match &result {
            Ok(_) => events::allow_concurrency(None),
            Err(e) => events::allow_concurrency(Some(e.message())),
        }
        result
    }

    /// Accepts a WebSocket for this object with `tags` (at most 10, each 1
    /// to 256 characters; Cloudflare's `ctx.acceptWebSocket`). Answer the
    /// upgrade request with [`crate::Response::websocket`] to hand it to the
    /// client; messages sent before that wait for it.
    ///
    /// # Errors
    ///
    /// When the tags break the limits, or the object has as many sockets
    /// as it may (32,768 by default).
    pub fn accept_websocket(&self, tags: &[&str]) -> Result<crate::WebSocket> {
        crate::websocket::accept(tags)
    }

    /// The object's open WebSockets, oldest first; only those with `tag`
    /// if one is given (Cloudflare's `ctx.getWebSockets`).
    pub fn websockets(&self, tag: Option<&str>) -> Vec<crate::WebSocket> {
        crate::websocket::sockets(tag)
    }

    /// Sets (or with `None` removes) the object's auto-response: a text
    /// message equal to `request` is answered with `response` by the host,
    /// without waking the object (Cloudflare's
    /// `ctx.setWebSocketAutoResponse`). Each side at most 2,048 characters.
    ///
    /// # Errors
    ///
    /// When a side is too long.
    pub fn set_websocket_auto_response(&self, pair: Option<(&str, &str)>) -> Result<()> {
        crate::websocket::set_auto_response(pair)
    }

    /// The object's auto-response as (request, response), if set.
    pub fn websocket_auto_response(&self) -> Option<(String, String)> {
        crate::websocket::auto_response()
    }

    /// Lets `work` run on after the event's response is sent (Cloudflare's
    /// `ctx.waitUntil`), within the event's wall-clock limit; the same as
    /// [`crate::wait_until`].
    pub fn wait_until(&self, work: impl Future<Output = ()> + 'static) {
        crate::wait_until(work);
    }
}

/// The environment: `[vars]` and Durable Object namespace bindings.
#[derive(Debug, Clone, Default)]
pub struct Env {
    _private: (),
}

impl Env {
    pub(crate) fn new() -> Env {
        Env { _private: () }
    }

    /// The value of variable `name` from `[vars]`.
    pub fn var(&self, name: &str) -> Option<String> {
        env::var(name)
    }

    /// Every variable, sorted by name.
    pub fn vars(&self) -> Vec<(String, String)> {
        env::vars()
    }

    /// The namespace bound as `binding` (e.g. `env.namespace("COUNTER")`,
    /// Cloudflare's `env.COUNTER`), in objects and workers alike.
    ///
    /// # Errors
    ///
    /// When no binding has that name.
    pub fn namespace(&self, binding: &str) -> Result<Namespace> {
        Ok(Namespace(namespace::ObjectNamespace::open(binding)?))
    }
}

/// A Durable Object namespace (Cloudflare's `env.COUNTER`).
#[derive(Debug)]
pub struct Namespace(namespace::ObjectNamespace);

/// An object id, possibly with the name it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    hex: String,
    name: Option<String>,
}

impl ObjectId {
    /// The name the id was made from, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex)
    }
}

impl Namespace {
    /// The id of the object called `name`: always the same for a name, and
    /// different in every namespace.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId {
            hex: self.0.id_from_name(name),
            name: Some(name.to_owned()),
        }
    }

    /// A new random id that nothing else will ever produce (Cloudflare's
    /// `newUniqueId`); keep its string to reach the object again.
    pub fn new_unique_id(&self) -> ObjectId {
        ObjectId {
            hex: self.0.new_unique_id(),
            name: None,
        }
    }

    /// Parses an id written as 64 hex characters, checking that this
    /// namespace minted it.
    ///
    /// # Errors
    ///
    /// When `hex` is not 64 hex characters or is another namespace's id.
    pub fn id_from_string(&self, hex: &str) -> Result<ObjectId> {
        Ok(ObjectId {
            hex: self.0.id_from_string(hex)?,
            name: None,
        })
    }

    /// A stub for the object with `id`.
    ///
    /// # Errors
    ///
    /// When the id is not one of this namespace's.
    pub fn get(&self, id: &ObjectId) -> Result<Stub> {
        match &id.name {
            Some(name) => Ok(Stub(self.0.get_by_name(name))),
            None => Ok(Stub(self.0.get(&id.hex)?)),
        }
    }

    /// A stub for the object called `name` (`get(&id_from_name(name))`);
    /// the object then knows its name ([`State::name`]).
    pub fn get_by_name(&self, name: &str) -> Stub {
        Stub(self.0.get_by_name(name))
    }
}

/// A client for one object.
#[derive(Debug)]
pub struct Stub(namespace::Stub);

impl Stub {
    /// The object's id.
    pub fn id(&self) -> String {
        self.0.id()
    }

    /// Sends `request` to the object and returns its response, released by
    /// the host once the object's writes are durable. This object may take
    /// other events while it waits.
    ///
    /// # Errors
    ///
    /// When the object trapped, returned an error, or is overloaded, or the
    /// call timed out or would have closed a cycle of calls; see
    /// [`Error::is_remote`], [`Error::is_retryable`], [`Error::is_overloaded`].
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        match Operation::new(self.0.start_fetch(&request.into())).await {
            Outcome::StubFetch(result) => Response::received(result?).await,
            other => Err(unexpected(other)),
        }
    }

    /// Calls the object's RPC method `method` (see [`crate::methods!`])
    /// with `args`, the positional arguments: a tuple (`&()` for none,
    /// `&(a, b)` for two) or one value (`&5` is the one argument `5`; wrap
    /// a single array argument as `&(vec,)`). Returns the method's result.
    ///
    /// ```ignore
    /// let count: u64 = stub.call("increment", &()).await?;
    /// let sum: u64 = stub.call("add", &(2, 3)).await?;
    /// ```
    ///
    /// While the call runs this object may take other events, calls back
    /// from the object it called included (A → B → A).
    ///
    /// # Errors
    ///
    /// As [`Stub::fetch`]; also when the object has no such method, the
    /// arguments do not fit it (both `remote`), or the result does not
    /// deserialize into `R`.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<R> {
        let result = self
            .call_bytes(method, crate::rpc::args_json(args)?.as_bytes())
            .await?;
        crate::value::from_bytes(&result).map_err(|e| {
            Error::new(format!(
                "the result of {method} ({:.100}) does not fit the expected type: {e}",
                String::from_utf8_lossy(&result)
            ))
        })
    }

    /// Calls the object's RPC method `method` with `args`, a JSON array of
    /// the positional arguments, and returns the result as JSON (a
    /// JavaScript object's structured clone read as serde reads it).
    ///
    /// # Errors
    ///
    /// As [`Stub::call`]; also when the result has no JSON form (a cycle).
    pub async fn call_json(&self, method: &str, args: &str) -> Result<String> {
        let result = self.call_bytes(method, args.as_bytes()).await?;
        crate::value::to_json_text(&result)
            .map_err(|e| Error::new(format!("the result of {method} has no JSON form: {e}")))
    }

    /// Calls the object's RPC method `method` with `args`, the array of the
    /// positional arguments in the value format of the SDKs ([`crate::value`]),
    /// and returns the result in that format.
    ///
    /// # Errors
    ///
    /// As [`Stub::call`].
    pub async fn call_bytes(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        match Operation::new(self.0.start_call(method, args)).await {
            Outcome::StubCall(result) => Ok(result?),
            other => Err(unexpected(other)),
        }
    }
}

impl From<namespace::CallError> for Error {
    fn from(e: namespace::CallError) -> Self {
        Error {
            message: e.message,
            remote: e.remote,
            retryable: e.retryable,
            overloaded: e.overloaded,
            sql_code: None,
        }
    }
}
