//! The object's SQL database (Cloudflare's `ctx.storage.sql`).
//!
//! Every object has its own SQLite database beside its key-value storage,
//! and the two commit together: an event's SQL writes and KV writes become
//! durable at once when the event ends (or at
//! [`Storage::sync`](crate::Storage::sync)), or, after a trap, neither does.
//! Each statement runs in autocommit mode; to make several statements
//! all-or-nothing, run them inside
//! [`Storage::transaction_sync`](crate::Storage::transaction_sync) (plain `BEGIN`, `COMMIT`, `ROLLBACK` and
//! `SAVEPOINT` in [`Sql::exec`] are refused, as on Cloudflare).
//!
//! [`Sql::exec`] returns a [`Cursor`], which reads the result from the host
//! a batch of rows at a time, so a result larger than the guest's memory
//! can still be walked.

use crate::bindings::dohost::object::sql as wit;
use crate::{Cursor, Error, SqlValue};

/// The longest SQL string one [`Sql::exec`] takes, in bytes (Cloudflare's
/// limit): statements are parsed and kept by the host, so their size is
/// bounded.
pub const MAX_SQL_STATEMENT_BYTES: usize = 100_000;

/// The most parameters one [`Sql::exec`] binds (Cloudflare's limit).
pub const MAX_SQL_PARAMS: usize = 100;

/// The largest string, blob or row in a SQL database, in bytes
/// (Cloudflare's limit): a row is read into memory whole, on the host and
/// in the guest.
pub const MAX_SQL_VALUE_BYTES: usize = 2_000_000;

/// A handle on the object's SQL database, from [`State::sql`] or
/// [`Storage::sql`]. It is a plain `Copy` value; every handle reaches the
/// same database, one SQLite database per object, whose writes commit
/// together with the object's key-value writes when the event ends. Each
/// statement runs in autocommit mode; group statements with
/// [`Storage::transaction_sync`].
///
/// ```no_run
/// use dohost_sdk::{Result, State, params};
///
/// #[derive(serde::Deserialize)]
/// struct User {
///     id: i64,
///     name: String,
/// }
///
/// fn example(state: &State) -> Result<()> {
///     let sql = state.sql();
///     sql.exec(
///         "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
///         &[],
///     )?;
///     sql.exec("INSERT INTO users (name) VALUES (?)", params!["Alice"])?;
///     let count: i64 = sql.exec("SELECT count(*) AS n FROM users", &[])?.one()?.get("n")?;
///     for user in sql.exec("SELECT id, name FROM users", &[])?.rows_as::<User>() {
///         let user = user?;
///         println!("{} {} of {count}", user.id, user.name);
///     }
///     Ok(())
/// }
/// ```
///
/// [`State::sql`]: crate::State::sql
/// [`Storage::sql`]: crate::Storage::sql
/// [`Storage::transaction_sync`]: crate::Storage::transaction_sync
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    _private: (),
}

impl Sql {
    pub(crate) fn new() -> Sql {
        Sql { _private: () }
    }

    /// Runs `query`, binding `params` (see [`params!`](crate::params)) to
    /// its `?`, `?NNN` or `:name` placeholders by position, and returns a
    /// cursor over its rows (Cloudflare's `sql.exec`). Several
    /// `;`-separated statements run in order; the parameters bind to the
    /// last one, whose rows the cursor reads.
    ///
    /// The statement has run up to its first row when `exec` returns, so a
    /// write takes effect whether or not the cursor is read. A cursor is
    /// closed when the event ends, a transaction commits or rolls back, at
    /// [`Storage::sync`](crate::Storage::sync) and at
    /// [`Storage::delete_all`](crate::Storage::delete_all); reading on
    /// after that is an error.
    ///
    /// # Errors
    ///
    /// SQLite's errors (with [`Error::sql_code`] set): a syntax error, a
    /// constraint, a full database, a transaction statement, a refused
    /// `PRAGMA`; or a query over [`MAX_SQL_STATEMENT_BYTES`], more than
    /// [`MAX_SQL_PARAMS`] parameters or a value over
    /// [`MAX_SQL_VALUE_BYTES`].
    pub fn exec(&self, query: &str, params: &[SqlValue]) -> crate::Result<Cursor> {
        let params: Vec<wit::SqlValue> = params.iter().map(to_wit).collect();
        Ok(Cursor::new(wit::exec(query, &params)?))
    }

    /// The size of the object's SQL database in bytes (0 if it has none),
    /// Cloudflare's `sql.databaseSize`.
    pub fn database_size(&self) -> u64 {
        wit::database_size()
    }
}

fn to_wit(value: &SqlValue) -> wit::SqlValue {
    match value {
        SqlValue::Null => wit::SqlValue::Null,
        SqlValue::Integer(i) => wit::SqlValue::Integer(*i),
        SqlValue::Real(f) => wit::SqlValue::Real(*f),
        SqlValue::Text(s) => wit::SqlValue::Text(s.clone()),
        SqlValue::Blob(b) => wit::SqlValue::Blob(b.clone()),
    }
}

pub(crate) fn from_wit(value: wit::SqlValue) -> SqlValue {
    match value {
        wit::SqlValue::Null => SqlValue::Null,
        wit::SqlValue::Integer(i) => SqlValue::Integer(i),
        wit::SqlValue::Real(f) => SqlValue::Real(f),
        wit::SqlValue::Text(s) => SqlValue::Text(s),
        wit::SqlValue::Blob(b) => SqlValue::Blob(b),
    }
}

/// SQLite's name for a primary result code (`code & 0xff`).
fn primary_name(code: i32) -> Option<&'static str> {
    const NAMES: [&str; 27] = [
        "SQLITE_OK",
        "SQLITE_ERROR",
        "SQLITE_INTERNAL",
        "SQLITE_PERM",
        "SQLITE_ABORT",
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_NOMEM",
        "SQLITE_READONLY",
        "SQLITE_INTERRUPT",
        "SQLITE_IOERR",
        "SQLITE_CORRUPT",
        "SQLITE_NOTFOUND",
        "SQLITE_FULL",
        "SQLITE_CANTOPEN",
        "SQLITE_PROTOCOL",
        "SQLITE_EMPTY",
        "SQLITE_SCHEMA",
        "SQLITE_TOOBIG",
        "SQLITE_CONSTRAINT",
        "SQLITE_MISMATCH",
        "SQLITE_MISUSE",
        "SQLITE_NOLFS",
        "SQLITE_AUTH",
        "SQLITE_FORMAT",
        "SQLITE_RANGE",
        "SQLITE_NOTADB",
    ];
    usize::try_from(code & 0xff)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
}

/// The message of a SQL error: `SQLITE_CONSTRAINT (2067): UNIQUE constraint
/// failed: users.email`.
fn sql_message(code: i32, message: &str) -> String {
    match primary_name(code) {
        Some(name) => format!("{name} ({code}): {message}"),
        None => format!("SQLite error {code}: {message}"),
    }
}

impl From<wit::SqlError> for Error {
    fn from(e: wit::SqlError) -> Self {
        let mut error = Error::new(sql_message(e.code, &e.message));
        error.sql_code = Some(e.code);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_errors_name_the_primary_code() {
        assert_eq!(
            sql_message(2067, "UNIQUE constraint failed: users.email"),
            "SQLITE_CONSTRAINT (2067): UNIQUE constraint failed: users.email"
        );
        assert_eq!(
            sql_message(1, "near \"SELEC\": syntax error"),
            "SQLITE_ERROR (1): near \"SELEC\": syntax error"
        );
        assert_eq!(sql_message(13, "full"), "SQLITE_FULL (13): full");
        assert_eq!(sql_message(26, "x"), "SQLITE_NOTADB (26): x");
        assert_eq!(sql_message(27, "x"), "SQLite error 27: x");
        assert_eq!(sql_message(-1, "x"), "SQLite error -1: x");
    }

    #[test]
    fn values_round_trip_through_the_bindings() {
        for value in [
            SqlValue::Null,
            SqlValue::Integer(i64::MIN),
            SqlValue::Real(-0.5),
            SqlValue::Text("t".into()),
            SqlValue::Blob(vec![1, 2, 3]),
        ] {
            assert_eq!(from_wit(to_wit(&value)), value);
        }
    }
}
