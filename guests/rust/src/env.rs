//! What a guest knows of its surroundings: its own identity ([`State`]), the
//! configuration's variables and, for workers, the namespaces ([`Env`]).

use crate::bindings::dohost::object::{context, env, namespace};
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

    /// The object's durable storage.
    pub fn storage(&self) -> Storage {
        Storage::new()
    }

    /// The object's SQL database (Cloudflare's `ctx.storage.sql`); the same
    /// as `self.storage().sql()`.
    pub fn sql(&self) -> Sql {
        Sql::new()
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

    /// The namespace bound as `binding` (e.g. `env.namespace("COUNTER")`).
    /// Available to workers; objects calling objects arrives later.
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
    /// The id of the object called `name` (always the same for a name).
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId {
            hex: self.0.id_from_name(name),
            name: Some(name.to_owned()),
        }
    }

    /// A stub for the object with `id`.
    ///
    /// # Errors
    ///
    /// When the id is malformed.
    pub fn get(&self, id: &ObjectId) -> Result<Stub> {
        match &id.name {
            Some(name) => Ok(Stub(self.0.get_by_name(name))),
            None => Ok(Stub(self.0.get(&id.hex)?)),
        }
    }

    /// Parses an id written as 64 hex characters.
    ///
    /// # Errors
    ///
    /// When `hex` is not 64 hex characters.
    pub fn id_from_string(&self, hex: &str) -> Result<ObjectId> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::new(format!(
                "{hex:?} is not an object id: ids are 64 hex characters"
            )));
        }
        Ok(ObjectId {
            hex: hex.to_ascii_lowercase(),
            name: None,
        })
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
    /// the host once the object's writes are durable.
    ///
    /// # Errors
    ///
    /// When the object trapped, returned an error, or is overloaded; see
    /// [`Error::is_remote`], [`Error::is_retryable`], [`Error::is_overloaded`].
    pub fn fetch(&self, request: Request) -> Result<Response> {
        Ok(self.0.fetch(&request.into())?.into())
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
