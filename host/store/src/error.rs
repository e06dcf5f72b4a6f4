//! The one error type of the store.
//!
//! Every failure carries an [`ErrorKind`] and a message written for a
//! person: it names what failed and, where there is one, the fix. The
//! `dohost` crate turns it into its own error of the same kind.

use std::fmt;

/// What class of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bindings and migrations do not fit the data directory; nothing
    /// was changed.
    Config,
    /// The database failed; what was being written is not durable.
    Storage,
    /// An I/O error outside the database (a thread that cannot start).
    Io,
    /// The database is closed.
    ShutDown,
    /// A read or write is larger than a limit allows (named in the
    /// message).
    TooLarge,
    /// What was asked for does not exist (a table of an object's SQL
    /// database, named in the message).
    NotFound,
    /// A request the store refuses as given, e.g. a query that would
    /// write where only reads are allowed; the message says why.
    Invalid,
    /// This node of a cluster no longer owns the object's shard (fencing);
    /// the write is not durable, and a retry reaches the new owner.
    NotOwner,
}

/// A failure of the store: a kind and a readable message.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What class of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn storage(context: &str, err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Storage, format!("{context}: {err}"))
    }

    pub(crate) fn shut_down() -> Self {
        Self::new(
            ErrorKind::ShutDown,
            "the host is shut down; its database is closed",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
