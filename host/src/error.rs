//! The one error type of the `dohost` library.
//!
//! Every failure carries an [`ErrorKind`] that says what class of problem it
//! is (and so which HTTP status a server gives it), plus a message written
//! for a person: it names the thing that failed and, where there is one, the
//! fix.

use std::fmt;

/// What class of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration (file or builder) is invalid; nothing was started.
    Config,
    /// A name, binding or path that does not exist (HTTP 404).
    NotFound,
    /// The client's request is malformed or too large (HTTP 400 / 413).
    BadRequest,
    /// The guest component failed to load, compile or instantiate.
    Component,
    /// The guest trapped or exceeded a limit; the object was reset (HTTP 500).
    GuestTrap,
    /// The guest returned an error from its handler (HTTP 500).
    GuestError,
    /// The object's mailbox is full or the host is out of instance slots;
    /// retry later (HTTP 503).
    Overloaded,
    /// The database failed; the event's writes are not durable (HTTP 500).
    Storage,
    /// Building a guest component failed.
    Build,
    /// An I/O error outside the database.
    Io,
    /// The host is shutting down or shut down; no new events (HTTP 503).
    ShutDown,
    /// A call to an object did not finish within the call timeout; the
    /// object may still run it (HTTP 504).
    Timeout,
    /// A call would have re-entered an object that is waiting in the same
    /// call chain, so it was refused instead of deadlocking, or would have
    /// gone deeper than [`crate::MAX_CALL_DEPTH`] (HTTP 500).
    CallCycle,
    /// The request lacks the credentials a route needs (HTTP 401).
    Unauthorized,
    /// In a cluster, the object's shard moved: this node no longer owns
    /// it, or no node that owns it can be reached now. Nothing of the event
    /// is durable; retry (HTTP 503).
    Unavailable,
}

/// A failure in the `dohost` library: a kind, a readable one-line message,
/// and for some failures a detail for the log (a trap's backtrace and the
/// guest's last output).
///
/// `{err}` shows the message; `{err:#}` the message and the detail.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Option<Box<str>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// This error with `detail` for the log: what an operator needs and a
    /// client should not see.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        self.detail = (!detail.is_empty()).then(|| detail.into_boxed_str());
        self
    }

    /// The detail for the log, if any: a trap's backtrace and the guest's
    /// last output, the bindings a route could have named.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// What class of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status a server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::NotFound => 404,
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Overloaded | ErrorKind::ShutDown | ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            _ => 500,
        }
    }

    /// Whether the called object's own code raised this error (it returned
    /// an error or trapped): Cloudflare's `.remote`.
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, ErrorKind::GuestTrap | ErrorKind::GuestError)
    }

    /// Whether repeating the call may succeed (Cloudflare's `.retryable`):
    /// the object trapped and was reset, or its writes could not be
    /// committed, or (in a cluster) its shard moved. Only calls that are
    /// safe to repeat should be retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::GuestTrap | ErrorKind::Storage | ErrorKind::Unavailable
        )
    }

    /// Whether the object was overloaded (Cloudflare's `.overloaded`); such
    /// calls should not be retried at once.
    pub fn is_overloaded(&self) -> bool {
        self.kind == ErrorKind::Overloaded
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.detail {
            Some(detail) if f.alternate() => write!(f, "\n{detail}"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

impl From<dohost_store::Error> for Error {
    fn from(e: dohost_store::Error) -> Self {
        let kind = match e.kind() {
            dohost_store::ErrorKind::Config => ErrorKind::Config,
            dohost_store::ErrorKind::Io => ErrorKind::Io,
            dohost_store::ErrorKind::ShutDown => ErrorKind::ShutDown,
            dohost_store::ErrorKind::TooLarge | dohost_store::ErrorKind::Invalid => {
                ErrorKind::BadRequest
            }
            dohost_store::ErrorKind::NotFound => ErrorKind::NotFound,
            dohost_store::ErrorKind::NotOwner => ErrorKind::Unavailable,
            _ => ErrorKind::Storage,
        };
        Error::new(kind, e.message())
    }
}
