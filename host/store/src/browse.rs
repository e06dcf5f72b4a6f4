//! What the object browser reads of one object (the admin's web page): a
//! page of its KV keys with their values, a page of one SQL table's rows,
//! and the rows of a read-only query.
//!
//! Like the directory, these read what is durable and write nothing. The
//! SQL database is opened through the same VFS objects use, on a fresh
//! connection each time, with `PRAGMA query_only = ON`; a query is also
//! refused before it runs unless SQLite reports its statement read-only
//! (`sqlite3_stmt_readonly`), and an authorizer refuses `ATTACH`, `DETACH`
//! and pragmas that set a value. Every answer is bounded: rows, bytes and
//! time each have a limit below.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use serde::Serialize;

use crate::backend::KeyScan;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ObjectKey;
use crate::pages::{PageFile, PageSource, PageView};
use crate::store::Store;

/// The most keys one page of [`Store::kv_page`] holds: each comes with its
/// value (up to the value limit each), so a page stays a few MiB at most.
pub const MAX_KV_PAGE: usize = 100;

/// The most rows one page of a table, or one query, gives.
pub const MAX_ROWS: usize = 1000;

/// The most bytes of cell values one answer of [`Store::sql_rows`] or
/// [`Store::sql_query`] holds; the rows past it are left out (`truncated`).
pub const MAX_ROWS_BYTES: usize = 4 << 20;

/// How long a read-only query may run before it is interrupted: a query
/// holds a thread while it runs, and a recursive one may never end.
pub const QUERY_TIME_LIMIT: Duration = Duration::from_secs(5);

/// One KV key of an object with its value, as stored (see docs/values.md).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value's bytes.
    pub value: Vec<u8>,
}

/// Rows of an object's SQL database: a table's page or a query's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Rows {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, each with one value per column: `null`, a number, a
    /// string, or `{"hex": ".."}` for a blob.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether rows were left out ([`MAX_ROWS`], [`MAX_ROWS_BYTES`]).
    pub truncated: bool,
}

/// An error naming what the client asked wrong.
fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

impl Store {
    /// Up to `limit` ([`MAX_KV_PAGE`] at most) KV keys of object `key`
    /// with their values, in key order, starting after the key `after`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if the keys cannot be read or a value is
    /// damaged.
    pub fn kv_page(
        &self,
        key: ObjectKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let scan = KeyScan {
            // The first key after `after`: `after` followed by a zero byte.
            start: after.map_or_else(Vec::new, |after| [after.as_bytes(), &[0]].concat()),
            end: None,
            reverse: false,
            limit: limit.min(MAX_KV_PAGE),
            max_bytes: usize::MAX,
        };
        Ok(self
            .backend()
            .scan(&key, &scan)?
            .into_iter()
            .map(|(key, value)| KvEntry { key, value })
            .collect())
    }

    /// Up to `limit` ([`MAX_ROWS`] at most) rows of table `table` of the
    /// SQL database of `object`, from row `offset` (in the table's order).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] if the database has no such table;
    /// [`ErrorKind::Storage`] if it cannot be read.
    pub fn sql_rows(
        self: &Arc<Self>,
        object: ObjectKey,
        table: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Rows> {
        if self.page_count(&object)? == 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                "the object has no SQL database",
            ));
        }
        let conn = self.read_only(object).map_err(sql_error)?;
        let known: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(sql_error)?;
        let Some(table) = known else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the object's SQL database has no table {table:?}"),
            ));
        };
        let quoted = table.replace('"', "\"\"");
        let limit = limit.min(MAX_ROWS);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{quoted}\" LIMIT ?1 OFFSET ?2"))
            .map_err(sql_error)?;
        let rows = i64::try_from(limit).unwrap_or(i64::MAX);
        collect(&mut statement, (rows, offset), limit).map_err(sql_error)
    }

    /// The rows of `query`, one read-only statement, run against the SQL
    /// database of `object` ([`MAX_ROWS`] and [`MAX_ROWS_BYTES`] at most,
    /// within [`QUERY_TIME_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] for a statement that would write, more than
    /// one statement, a query SQLite refuses or that ran out of time, each
    /// saying so; [`ErrorKind::Storage`] if the database cannot be read.
    pub fn sql_query(self: &Arc<Self>, object: ObjectKey, query: &str) -> Result<Rows> {
        let mut conn = self.read_only(object).map_err(sql_error)?;
        conn.authorizer(Some(refuse_attach_and_settings))
            .map_err(sql_error)?;
        let started = Instant::now();
        conn.progress_handler(10_000, Some(move || started.elapsed() > QUERY_TIME_LIMIT))
            .map_err(sql_error)?;
        let mut statement = conn.prepare(query).map_err(|e| match e {
            rusqlite::Error::MultipleStatement => {
                invalid("the query box runs one statement at a time; remove what follows the first")
            }
            e => query_error(e),
        })?;
        if !statement.readonly() {
            return Err(invalid(
                "the query box is read-only: this statement would write to the database (only statements that read, such as SELECT, are run here)",
            ));
        }
        collect(&mut statement, [], MAX_ROWS).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                invalid(format!(
                    "the query ran longer than {} s and was stopped",
                    QUERY_TIME_LIMIT.as_secs()
                ))
            }
            e => query_error(e),
        })
    }

    /// A connection to the SQL database of `object` through the VFS that
    /// cannot write, reading the pages of one redb read transaction.
    pub(crate) fn read_only(
        self: &Arc<Self>,
        object: ObjectKey,
    ) -> std::result::Result<rusqlite::Connection, rusqlite::Error> {
        let snapshot = self.committed_pages(&object).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some(e.to_string()),
            )
        })?;
        let file = Arc::new(Mutex::new(PageFile::new(
            object,
            Arc::new(Snapshot(Arc::from(snapshot))),
            u64::MAX,
        )));
        let conn = crate::vfs::open(file)?;
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA journal_mode = MEMORY;
             PRAGMA query_only = ON;",
        )?;
        Ok(conn)
    }
}

/// An object's SQL pages as one redb read transaction sees them. An
/// object's own page file begins a transaction per host call, which is
/// right for it: only its own actor writes its pages. A reader beside the
/// actor must not see half of a commit, so it keeps one transaction for as
/// long as its connection lives (a query's time at most).
struct Snapshot(Arc<dyn PageView>);

impl PageSource for Snapshot {
    fn view(&self, _: &ObjectKey) -> std::result::Result<Box<dyn PageView>, String> {
        Ok(Box::new(self.0.clone()))
    }
}

/// The authorizer of read-only queries: `ATTACH` and `DETACH` (which
/// `sqlite3_stmt_readonly` calls read-only) and pragmas that set a value
/// (such as `query_only = OFF`) are refused; whatever else writes is left
/// for the read-only check, which says why.
fn refuse_attach_and_settings(action: AuthContext<'_>) -> Authorization {
    match action.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma {
            pragma_value: Some(_),
            pragma_name,
        } if !matches!(
            pragma_name,
            "table_info"
                | "table_xinfo"
                | "index_list"
                | "index_info"
                | "index_xinfo"
                | "foreign_key_list"
        ) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Runs `statement` with `params` and collects up to `limit` rows, within
/// [`MAX_ROWS_BYTES`].
fn collect(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    limit: usize,
) -> rusqlite::Result<Rows> {
    let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut found = Rows {
        columns,
        rows: Vec::new(),
        truncated: false,
    };
    let mut bytes = 0_usize;
    let mut rows = statement.query(params)?;
    while let Some(row) = rows.next()? {
        if found.rows.len() >= limit || bytes > MAX_ROWS_BYTES {
            found.truncated = true;
            break;
        }
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            let (cell, size) = cell(row.get_ref(i)?);
            bytes = bytes.saturating_add(size);
            cells.push(cell);
        }
        found.rows.push(cells);
    }
    Ok(found)
}

/// A cell as JSON, and about how many bytes it holds.
fn cell(value: ValueRef<'_>) -> (serde_json::Value, usize) {
    match value {
        ValueRef::Null => (serde_json::Value::Null, 4),
        ValueRef::Integer(i) => (i.into(), 8),
        ValueRef::Real(f) => (
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
            8,
        ),
        ValueRef::Text(t) => (String::from_utf8_lossy(t).into_owned().into(), t.len()),
        ValueRef::Blob(b) => (serde_json::json!({ "hex": hex::encode(b) }), b.len() * 2),
    }
}

/// A failure reading the database itself.
fn sql_error(e: rusqlite::Error) -> Error {
    Error::storage("reading the object's SQL database", e)
}

/// A query's failure: the client's (SQLite's message) unless the database
/// could not be read.
fn query_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DatabaseCorrupt) => {
            sql_error(e)
        }
        _ => invalid(format!("SQLite refused the query: {e}")),
    }
}
