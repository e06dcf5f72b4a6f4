//! The SQL engine of an object (`wit/sql.wit`): one SQLite database per
//! object, its file kept in redb through the store's VFS
//! ([`dohost_store::vfs`], [`PageFile`]).
//!
//! **Lifecycle.** An object that never calls `sql` opens no connection. The
//! first `exec` opens one on the object's page file; it stays open while the
//! object lives (its page cache is what makes reads cheap) and is closed
//! when the object traps, fails a commit or runs `delete-all`, so the next
//! use reopens it from what is committed. The page file itself (what the
//! event changed, what is pending, what redb holds) is the store's.
//!
//! **Atomicity with KV.** SQLite commits each autocommit statement into the
//! page file's dirty pages; the event's dirty pages go to the committer with
//! its KV writes when the event ends (or at `sync`), one write set, one redb
//! transaction. Storage transactions (`transaction-begin` and friends) are
//! SQLite savepoints too, opened lazily: a transaction's SQL and KV writes
//! commit or roll back together. Plain `BEGIN`/`COMMIT`/`SAVEPOINT` in guest
//! SQL are refused by the authorizer, as Cloudflare does.
//!
//! **Cursors.** `exec` runs every statement but the last to completion and
//! the last up to its first row; the rest is stepped as the guest reads.
//! Statements live in the [`SqlDb`], never in the guest's resource table, so
//! none outlives its connection; cursors close when the event ends, a
//! transaction ends, `sync` runs or the connection closes.
//!
//! **Limits.** Statement length, bound parameters and value size are
//! SQLite limits set on the connection (and checked first, for a clearer
//! message); the database size is `max_page_count`; a statement that runs
//! past the event's CPU budget is interrupted by a progress handler.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::ffi;

use crate::runtime::bindings::object::dohost::object::sql::{SqlError, SqlValue};
use crate::settings::{MAX_SQL_PARAMS, MAX_SQL_STATEMENT_BYTES, MAX_SQL_VALUE_BYTES};
use dohost_store::PageFile;

mod db;
mod policy;
mod stmt;

use db::{Live, SqlDb, cache_bytes, connect, now_nanos};
use stmt::has_statement;

/// The most bytes of rows one `next-batch` returns (at least one row).
const MAX_BATCH_BYTES: usize = 4 << 20;

pub(crate) type SqlResult<T> = std::result::Result<T, SqlError>;

fn error(code: c_int, message: impl Into<String>) -> SqlError {
    SqlError {
        code,
        message: message.into(),
    }
}

/// What went wrong in an `exec`: an error the guest sees, or one that
/// leaves the event's KV and SQL writes inconsistent, so the event traps.
pub(crate) enum Failure {
    Sql(SqlError),
    Trap(String),
}

impl From<SqlError> for Failure {
    fn from(e: SqlError) -> Self {
        Failure::Sql(e)
    }
}

/// The host side of a `cursor` resource.
pub struct Cursor {
    id: u64,
    pub(crate) columns: Vec<String>,
    /// The row `exec` stepped to and nobody has read yet.
    peeked: Option<(Vec<SqlValue>, usize)>,
    /// Every row was read.
    done: bool,
    /// Rows read by statements already finished.
    rows_read: u64,
    /// Rows the live statement returned so far.
    returned: u64,
    pub(crate) rows_written: u64,
}

/// An object's SQL state, kept across events (see the module docs).
pub(crate) struct Sql {
    file: Arc<Mutex<PageFile>>,
    db: Option<SqlDb>,
    next_cursor: u64,
    /// When the running event's statements are interrupted, in
    /// [`now_nanos`]; `u64::MAX` for never.
    deadline: Arc<AtomicU64>,
    cpu_budget: Duration,
    max_bytes: u64,
    /// SQLite's page cache for this connection.
    cache_bytes: usize,
}

impl Sql {
    /// The engine of the database in `file`, which may grow to
    /// `max_bytes`, whose statements are interrupted past `cpu_budget` of
    /// an event, with a page cache of [`cache_bytes`] for an object whose
    /// memory limit is `memory_per_object`.
    pub(crate) fn new(
        file: Arc<Mutex<PageFile>>,
        max_bytes: u64,
        cpu_budget: Duration,
        memory_per_object: usize,
    ) -> Sql {
        Sql {
            cache_bytes: cache_bytes(memory_per_object),
            file,
            db: None,
            next_cursor: 0,
            deadline: Arc::new(AtomicU64::new(u64::MAX)),
            cpu_budget,
            max_bytes,
        }
    }

    fn file(&self) -> std::sync::MutexGuard<'_, PageFile> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the CPU clock of a new event.
    pub(crate) fn begin_event(&self) {
        let budget = u64::try_from(self.cpu_budget.as_nanos()).unwrap_or(u64::MAX);
        self.deadline
            .store(now_nanos().saturating_add(budget), Ordering::Relaxed);
    }

    fn open(&mut self) -> SqlResult<&mut SqlDb> {
        if self.db.is_none() {
            let db = connect(&self.file, self.max_bytes, self.cache_bytes, &self.deadline)
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, m) => error(
                        f.extended_code,
                        m.unwrap_or_else(|| format!("cannot open the SQL database: {f}")),
                    ),
                    other => error(
                        ffi::SQLITE_ERROR,
                        format!("cannot open the SQL database: {other}"),
                    ),
                })?;
            self.db = Some(db);
        }
        Ok(self.db.as_mut().expect("opened above"))
    }

    /// Explains a failed step or prepare, in the guest's terms.
    fn explain(&self, mut e: SqlError) -> SqlError {
        match e.code & 0xff {
            ffi::SQLITE_AUTH => {
                if let Some(db) = &self.db
                    && let Some(reason) = db
                        .policy
                        .denied
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                {
                    e.message = reason;
                }
            }
            ffi::SQLITE_INTERRUPT => {
                e.message = format!(
                    "the statement was interrupted: the event exceeded its CPU time limit of {} ms",
                    self.cpu_budget.as_millis()
                );
            }
            ffi::SQLITE_FULL => {
                e.message = match self.file().last_error.take() {
                    Some(cause) => format!("{}: {cause}", e.message),
                    None => format!(
                        "{}: the object's SQL database reached its size limit of {} bytes",
                        e.message, self.max_bytes
                    ),
                };
            }
            ffi::SQLITE_IOERR => {
                if let Some(cause) = self.file().last_error.take() {
                    e.message = format!("{}: {cause}", e.message);
                }
            }
            _ => {}
        }
        e
    }

    /// Checks what can be checked before SQLite sees the query.
    fn check(query: &str, params: &[SqlValue]) -> SqlResult<()> {
        if query.len() > MAX_SQL_STATEMENT_BYTES {
            return Err(error(
                ffi::SQLITE_TOOBIG,
                format!(
                    "the SQL string is {} bytes; the limit is {MAX_SQL_STATEMENT_BYTES}",
                    query.len()
                ),
            ));
        }
        if params.len() > MAX_SQL_PARAMS {
            return Err(error(
                ffi::SQLITE_RANGE,
                format!(
                    "{} values to bind; the limit is {MAX_SQL_PARAMS}",
                    params.len()
                ),
            ));
        }
        for (i, p) in params.iter().enumerate() {
            let len = match p {
                SqlValue::Text(s) => s.len(),
                SqlValue::Blob(b) => b.len(),
                _ => 0,
            };
            if len > MAX_SQL_VALUE_BYTES {
                return Err(error(
                    ffi::SQLITE_TOOBIG,
                    format!(
                        "value {} is {len} bytes; the limit is {MAX_SQL_VALUE_BYTES}",
                        i + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs `query` inside `depth` open storage transactions.
    pub(crate) fn exec(
        &mut self,
        depth: usize,
        query: &str,
        params: &[SqlValue],
    ) -> Result<Cursor, Failure> {
        Self::check(query, params)?;
        self.open()?;
        self.ensure_savepoints(depth)?;
        self.next_cursor += 1;
        let id = self.next_cursor;
        let mut cursor = Cursor {
            id,
            columns: Vec::new(),
            peeked: None,
            done: true,
            rows_read: 0,
            returned: 0,
            rows_written: 0,
        };
        let result = self.run(query.as_bytes(), params, &mut cursor);
        let db = self.db.as_ref().expect("opened above");
        if result.is_err() && depth > 0 && !db.in_transaction() {
            // SQLite rolled the whole transaction back (a full database, an
            // interrupt): the storage transaction's KV writes would outlive
            // its SQL writes, so the event must not go on.
            return Err(Failure::Trap(format!(
                "SQLite rolled back the open transaction after an error ({}); the object is reset \
                 so its KV and SQL writes stay consistent",
                result.err().map(|e| e.message).unwrap_or_default()
            )));
        }
        result.map_err(|e| Failure::Sql(self.explain(e)))?;
        Ok(cursor)
    }

    fn run(&mut self, sql: &[u8], params: &[SqlValue], cursor: &mut Cursor) -> SqlResult<()> {
        let db = self.db.as_mut().expect("opened by exec");
        let mut rest = sql;
        let before = db.total_changes();
        let text = std::str::from_utf8(sql).unwrap_or_default();
        let mut first = true;
        loop {
            let cached = if first {
                db.cached.pop_entry(text)
            } else {
                None
            };
            let (stmt, query) = match cached {
                Some((query, stmt)) => {
                    rest = &[];
                    (Some(stmt), Some(query))
                }
                None => {
                    let (rc, stmt, used) = db.prepare(rest);
                    if rc != ffi::SQLITE_OK {
                        return Err(db.last_error());
                    }
                    rest = &rest[used.min(rest.len())..];
                    let whole = first && !has_statement(rest);
                    (stmt, whole.then(|| Arc::<str>::from(text)))
                }
            };
            first = false;
            let Some(stmt) = stmt else {
                // Only whitespace or comments were left.
                if params.is_empty() {
                    return Ok(());
                }
                return Err(error(
                    ffi::SQLITE_RANGE,
                    format!(
                        "{} values to bind but the query has no statement",
                        params.len()
                    ),
                ));
            };
            let last = !has_statement(rest);
            if !last {
                if stmt.param_count() > 0 {
                    return Err(error(
                        ffi::SQLITE_RANGE,
                        "only the last statement of a query can have parameters",
                    ));
                }
                let mut returned = 0u64;
                loop {
                    match stmt.step() {
                        ffi::SQLITE_ROW => returned += 1,
                        ffi::SQLITE_DONE => break,
                        _ => return Err(db.last_error()),
                    }
                }
                cursor.rows_read += returned.max(stmt.fullscan_steps());
                continue;
            }
            if stmt.param_count() != params.len() {
                return Err(error(
                    ffi::SQLITE_RANGE,
                    format!(
                        "the statement has {} parameters but {} values were given",
                        stmt.param_count(),
                        params.len()
                    ),
                ));
            }
            for (i, p) in params.iter().enumerate() {
                if stmt.bind(i, p) != ffi::SQLITE_OK {
                    let e = db.last_error();
                    db.release(Live { stmt, query });
                    return Err(e);
                }
            }
            cursor.columns = stmt.columns();
            let rc = stmt.step();
            let live = Live { stmt, query };
            match rc {
                ffi::SQLITE_ROW => {
                    cursor.peeked = Some(live.stmt.row());
                    cursor.returned = 1;
                    cursor.done = false;
                    db.live.insert(cursor.id, live);
                }
                ffi::SQLITE_DONE => {
                    cursor.rows_read += live.stmt.fullscan_steps();
                    db.release(live);
                }
                _ => {
                    let e = db.last_error();
                    db.release(live);
                    return Err(e);
                }
            }
            cursor.rows_written += db.total_changes().saturating_sub(before);
            return Ok(());
        }
    }

    /// The next row of `cursor`, and its size in bytes.
    pub(crate) fn next(
        &mut self,
        cursor: &mut Cursor,
    ) -> SqlResult<Option<(Vec<SqlValue>, usize)>> {
        if let Some(row) = cursor.peeked.take() {
            return Ok(Some(row));
        }
        if cursor.done {
            return Ok(None);
        }
        let Some(db) = self.db.as_mut() else {
            return Err(closed());
        };
        let Some(Live { stmt, .. }) = db.live.get(&cursor.id) else {
            return Err(closed());
        };
        let before = db.total_changes();
        let rc = stmt.step();
        cursor.rows_written += db.total_changes().saturating_sub(before);
        match rc {
            ffi::SQLITE_ROW => {
                cursor.returned += 1;
                Ok(Some(stmt.row()))
            }
            ffi::SQLITE_DONE => {
                finish(db, cursor);
                Ok(None)
            }
            _ => {
                let e = db.last_error();
                finish(db, cursor);
                Err(self.explain(e))
            }
        }
    }

    /// Up to `max` rows of `cursor`, fewer once they pass a byte budget.
    pub(crate) fn next_batch(
        &mut self,
        cursor: &mut Cursor,
        max: u32,
    ) -> SqlResult<Vec<Vec<SqlValue>>> {
        let mut rows = Vec::new();
        let mut bytes = 0;
        while rows.len() < max as usize && bytes < MAX_BATCH_BYTES {
            match self.next(cursor)? {
                Some((row, size)) => {
                    bytes += size;
                    rows.push(row);
                }
                None => break,
            }
        }
        Ok(rows)
    }

    pub(crate) fn rows_read(&self, cursor: &Cursor) -> u64 {
        let walked = self
            .db
            .as_ref()
            .and_then(|db| db.live.get(&cursor.id))
            .map_or(0, |l| l.stmt.fullscan_steps());
        cursor.rows_read + cursor.returned.max(walked)
    }

    /// Forgets a cursor the guest dropped.
    pub(crate) fn drop_cursor(&mut self, cursor: &Cursor) {
        if let Some(db) = &mut self.db
            && let Some(live) = db.live.remove(&cursor.id)
        {
            db.release(live);
        }
    }

    /// Closes every open cursor: its statement ends, so an autocommit write
    /// it was part of is in the page file.
    pub(crate) fn close_cursors(&mut self) {
        if let Some(db) = &mut self.db {
            db.close_cursors();
        }
    }

    fn ensure_savepoints(&mut self, depth: usize) -> SqlResult<()> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        while db.savepoints < depth {
            db.host_exec(&format!("SAVEPOINT dohost_{}", db.savepoints + 1))
                .map_err(|e| error(ffi::SQLITE_ERROR, format!("cannot open a savepoint: {e}")))?;
            db.savepoints += 1;
        }
        Ok(())
    }

    /// A storage transaction began at `depth`. The savepoint is only opened
    /// if SQL is in use (otherwise the first `exec` opens it).
    pub(crate) fn begin(&mut self, depth: usize) -> SqlResult<()> {
        self.ensure_savepoints(depth)
    }

    /// The storage transaction at `depth` commits. An error (a deferred
    /// foreign key check failing, say) means it was rolled back instead.
    pub(crate) fn commit(&mut self, depth: usize) -> SqlResult<()> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        if db.savepoints < depth {
            return Ok(());
        }
        db.close_cursors();
        if let Err(e) = db.host_exec(&format!("RELEASE dohost_{depth}")) {
            let message = e.to_string();
            self.rollback(depth)?;
            return Err(error(
                ffi::SQLITE_CONSTRAINT,
                format!("the transaction could not commit and was rolled back: {message}"),
            ));
        }
        db.savepoints = depth - 1;
        Ok(())
    }

    /// The storage transaction at `depth` rolls back.
    pub(crate) fn rollback(&mut self, depth: usize) -> SqlResult<()> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        if db.savepoints < depth {
            return Ok(());
        }
        db.close_cursors();
        db.host_exec(&format!(
            "ROLLBACK TO dohost_{depth}; RELEASE dohost_{depth}"
        ))
        .map_err(|e| error(ffi::SQLITE_ERROR, format!("cannot roll back: {e}")))?;
        db.savepoints = depth - 1;
        Ok(())
    }

    /// Ends the host call's reads of committed pages (see
    /// [`PageFile::end_reads`]).
    pub(crate) fn end_reads(&self) {
        self.file().end_reads();
    }

    /// The event ends: open transactions roll back, cursors close, and no
    /// read transaction stays open past it.
    pub(crate) fn end_event(&mut self) -> SqlResult<()> {
        let rolled_back = match &self.db {
            Some(db) if db.savepoints > 0 => self.rollback(1),
            _ => Ok(()),
        };
        self.close_cursors();
        self.end_reads();
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        rolled_back
    }

    /// True if the object has a SQL database (even one not opened yet).
    pub(crate) fn has_database(&mut self) -> Result<bool, String> {
        Ok(self.db.is_some() || self.file().size()? > 0)
    }

    pub(crate) fn database_size(&mut self) -> Result<u64, String> {
        self.file().size()
    }

    /// `delete-all` outside a transaction: the database is gone; the next
    /// `exec` starts an empty one.
    pub(crate) fn wipe(&mut self) {
        self.db = None;
        self.file().wipe();
    }

    /// Closes the connection: the next `exec` opens one again on the page
    /// file as it is then (after a trap, a failed commit, a deletion).
    pub(crate) fn close(&mut self) {
        self.db = None;
    }
}

fn closed() -> SqlError {
    error(
        ffi::SQLITE_MISUSE,
        "the cursor was closed before all its rows were read: cursors close when their event \
         ends, when a transaction ends, and at sync and delete-all",
    )
}

/// The cursor's statement ran to its end (or failed): it is finalized.
fn finish(db: &mut SqlDb, cursor: &mut Cursor) {
    if let Some(live) = db.live.remove(&cursor.id) {
        cursor.rows_read += cursor.returned.max(live.stmt.fullscan_steps());
        cursor.returned = 0;
        db.release(live);
    }
    cursor.done = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DEFAULT_MAX_SQL_DATABASE_BYTES;
    use dohost_store::{MemoryPages, ObjectKey};

    fn sql(committed: &Arc<MemoryPages>) -> Sql {
        let file = PageFile::new(
            ObjectKey::new(0, &[0; 32]),
            committed.clone(),
            DEFAULT_MAX_SQL_DATABASE_BYTES,
        );
        Sql::new(
            Arc::new(Mutex::new(file)),
            DEFAULT_MAX_SQL_DATABASE_BYTES,
            Duration::from_secs(30),
            crate::settings::DEFAULT_MEMORY_PER_OBJECT,
        )
    }

    /// Commits the event's pages as commit `seq`, as the object's storage
    /// does when an event ends.
    fn commit(db: &mut Sql, committed: &MemoryPages, seq: u64) {
        db.close_cursors();
        committed.apply(&db.file().stage(seq));
        db.file().durable(seq);
    }

    /// Drops the event's writes, as a trap does.
    fn reset(db: &mut Sql) {
        db.close();
        db.file().discard_event();
    }

    /// Goes back to what is committed, as a failed commit does.
    fn forget(db: &mut Sql) {
        db.close();
        db.file().forget();
    }

    fn query(sql: &mut Sql, q: &str, params: &[SqlValue]) -> SqlResult<Vec<Vec<SqlValue>>> {
        let mut cursor = match sql.exec(0, q, params) {
            Ok(c) => c,
            Err(Failure::Sql(e)) => return Err(e),
            Err(Failure::Trap(m)) => panic!("trap: {m}"),
        };
        let rows = sql.next_batch(&mut cursor, u32::MAX)?;
        sql.drop_cursor(&cursor);
        Ok(rows)
    }

    fn integers(rows: &[Vec<SqlValue>]) -> Vec<i64> {
        rows.iter()
            .flatten()
            .map(|v| match v {
                SqlValue::Integer(i) => *i,
                other => panic!("not an integer: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_database_reopens_from_its_committed_pages() {
        let committed = Arc::new(MemoryPages::default());
        let mut db = sql(&committed);
        query(
            &mut db,
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); INSERT INTO t (b) VALUES ('x'), ('y')",
            &[],
        )
        .unwrap();
        commit(&mut db, &committed, 1);
        // An uncommitted insert disappears with a reset.
        query(&mut db, "INSERT INTO t (b) VALUES ('z')", &[]).unwrap();
        reset(&mut db);
        let rows = query(&mut db, "SELECT a FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(integers(&rows), [1, 2]);
        forget(&mut db);
        let rows = query(
            &mut db,
            "SELECT count(*) FROM t WHERE b > ?",
            &[SqlValue::Text("x".into())],
        )
        .unwrap();
        assert_eq!(integers(&rows), [1]);
        let rows = query(&mut db, "PRAGMA integrity_check", &[]).unwrap();
        assert!(
            matches!(&rows[..], [row] if matches!(&row[..], [SqlValue::Text(ok)] if ok == "ok"))
        );
    }

    #[test]
    fn cached_statements_run_again_with_new_bindings() {
        let committed = Arc::new(MemoryPages::default());
        let mut db = sql(&committed);
        query(
            &mut db,
            "CREATE TABLE t (a); INSERT INTO t VALUES (1), (2), (3)",
            &[],
        )
        .unwrap();
        let select = "SELECT a FROM t WHERE a >= ? ORDER BY a";
        // A cursor left half-read holds its statement; the same query runs
        // beside it on a second one.
        let Ok(mut open) = db.exec(0, select, &[SqlValue::Integer(1)]) else {
            panic!("exec failed")
        };
        assert!(matches!(db.next(&mut open), Ok(Some(_))));
        for (from, expected) in [(2, vec![2, 3]), (3, vec![3]), (1, vec![1, 2, 3])] {
            let rows = query(&mut db, select, &[SqlValue::Integer(from)]).unwrap();
            assert_eq!(integers(&rows), expected);
        }
        let rest = db.next_batch(&mut open, 10).unwrap();
        assert_eq!(integers(&rest), [2, 3]);
        assert_eq!(db.rows_read(&open), 3);
        // A full scan reads every row, returned or not.
        let Ok(mut update) = db.exec(0, "UPDATE t SET a = a + 10", &[]) else {
            panic!("exec failed")
        };
        assert_eq!(db.next_batch(&mut update, 10).unwrap().len(), 0);
        assert_eq!((db.rows_read(&update), update.rows_written), (3, 3));
    }

    #[test]
    fn transactions_are_refused_with_a_pointer_to_the_api() {
        let committed = Arc::new(MemoryPages::default());
        let mut db = sql(&committed);
        let e = query(&mut db, "BEGIN", &[]).unwrap_err();
        assert_eq!(e.code, ffi::SQLITE_AUTH);
        assert!(e.message.contains("transaction_sync"), "{}", e.message);
        let e = query(&mut db, "PRAGMA journal_mode = WAL", &[]).unwrap_err();
        assert!(e.message.contains("journal_mode"), "{}", e.message);
    }

    #[test]
    fn savepoints_follow_storage_transactions() {
        let committed = Arc::new(MemoryPages::default());
        let mut db = sql(&committed);
        query(&mut db, "CREATE TABLE t (a)", &[]).unwrap();
        db.begin(1).unwrap();
        assert!(db.exec(1, "INSERT INTO t VALUES (1)", &[]).is_ok());
        db.begin(2).unwrap();
        assert!(db.exec(2, "INSERT INTO t VALUES (2)", &[]).is_ok());
        db.rollback(2).unwrap();
        db.commit(1).unwrap();
        let rows = query(&mut db, "SELECT a FROM t", &[]).unwrap();
        assert_eq!(integers(&rows), [1]);
    }
}
