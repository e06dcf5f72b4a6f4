//! An object's open SQLite connection: its settings and limits, its live
//! statements and its statement cache.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use lru::LruCache;
use rusqlite::hooks::AuthContext;
use rusqlite::limits::Limit;
use rusqlite::{Connection, ffi};

use super::error;
use super::policy::{Policy, authorize};
use super::stmt::Stmt;
use crate::runtime::bindings::object::dohost::object::sql::SqlError;
use crate::settings::{MAX_SQL_PARAMS, MAX_SQL_STATEMENT_BYTES, MAX_SQL_VALUE_BYTES};
use dohost_store::{PAGE_SIZE, PageFile};

/// The smallest page cache of a connection: SQLite's own default.
const MIN_PAGE_CACHE_BYTES: usize = 2 << 20;

/// The page cache of an object's connection: a quarter of the object's
/// memory limit (32 MiB by default), at least SQLite's default. A page the
/// cache misses is a redb read, tens of times dearer than a hit, and a
/// query that scans a table larger than the cache (a `COUNT(*)`) misses on
/// every page. Caches fill only as pages are read, and all of them together
/// stay under SQLite's soft heap limit ([`dohost_store::vfs`]): past it a
/// cache recycles its pages instead of growing.
pub(super) fn cache_bytes(memory_per_object: usize) -> usize {
    (memory_per_object / 4).max(MIN_PAGE_CACHE_BYTES)
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(64).expect("not zero");

/// SQLite virtual-machine steps between checks of the CPU deadline.
const PROGRESS_STEPS: c_int = 1000;

/// Nanoseconds since the first call: the clock of CPU deadlines.
pub(super) fn now_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A statement an open cursor reads.
pub(super) struct Live {
    pub(super) stmt: Stmt,
    /// The query it was prepared from, if it is the whole query (then it
    /// goes back to the statement cache when the cursor is done).
    pub(super) query: Option<Arc<str>>,
}

/// An open connection, its live statements and its statement cache.
pub(super) struct SqlDb {
    /// Statements of open cursors, by cursor id. The statements are
    /// declared before `conn`, so they are finalized before it closes.
    pub(super) live: HashMap<u64, Live>,
    /// Prepared single-statement queries not in use, by query text: an
    /// object runs the same few queries over and over, and preparing costs
    /// more than running a point query.
    pub(super) cached: LruCache<Arc<str>, Stmt>,
    pub(super) conn: Connection,
    pub(super) policy: Arc<Policy>,
    /// Storage transaction levels that have a SQLite savepoint.
    pub(super) savepoints: usize,
}

impl SqlDb {
    /// A cursor is done with `live`: a whole-query statement is kept for
    /// the next `exec` of the same query, any other is finalized.
    pub(super) fn release(&mut self, live: Live) {
        if let Some(query) = live.query {
            live.stmt.rewind();
            self.cached.put(query, live.stmt);
        }
    }

    pub(super) fn close_cursors(&mut self) {
        let live: Vec<Live> = self.live.drain().map(|(_, l)| l).collect();
        for l in live {
            self.release(l);
        }
    }

    pub(super) fn handle(&self) -> *mut ffi::sqlite3 {
        // SAFETY: the handle is only used while `conn` lives, on this thread.
        unsafe { self.conn.handle() }
    }

    /// The connection's latest error.
    pub(super) fn last_error(&self) -> SqlError {
        let db = self.handle();
        // SAFETY: a live connection; the message is copied at once.
        unsafe {
            let code = ffi::sqlite3_extended_errcode(db);
            let message = ffi::sqlite3_errmsg(db);
            let message = if message.is_null() {
                ffi::code_to_str(code).to_owned()
            } else {
                std::ffi::CStr::from_ptr(message)
                    .to_string_lossy()
                    .into_owned()
            };
            error(code, message)
        }
    }

    pub(super) fn total_changes(&self) -> u64 {
        // SAFETY: a live connection.
        u64::try_from(unsafe { ffi::sqlite3_total_changes64(self.handle()) }).unwrap_or(0)
    }

    pub(super) fn in_transaction(&self) -> bool {
        // SAFETY: a live connection.
        unsafe { ffi::sqlite3_get_autocommit(self.handle()) == 0 }
    }

    /// Runs host SQL (savepoints), past the authorizer.
    pub(super) fn host_exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.policy.trusted.store(true, Ordering::Relaxed);
        let result = self.conn.execute_batch(sql);
        self.policy.trusted.store(false, Ordering::Relaxed);
        result
    }

    /// Prepares the first statement of `sql`; also returns the bytes it
    /// used. `None` if `sql` holds no statement.
    pub(super) fn prepare(&self, sql: &[u8]) -> (c_int, Option<Stmt>, usize) {
        Stmt::prepare(self.handle(), sql)
    }
}

/// Opens a connection on `file` with the host's settings and limits: no
/// journal file, a page cache of `cache_bytes`, at most `max_bytes`,
/// statements interrupted once [`now_nanos`] passes `deadline`.
/// The page size of a new database: four of the page file's pages. A scan
/// (`COUNT(*)` sums each leaf's cell count) costs per page, so a table
/// read whole costs a quarter of what 4 KiB pages cost; a small change
/// rewrites one or two of the four, as the page file keeps only the
/// pieces that changed.
const SQLITE_PAGE_SIZE: usize = 4 * PAGE_SIZE;

pub(super) fn connect(
    file: &Arc<Mutex<PageFile>>,
    max_bytes: u64,
    cache_bytes: usize,
    deadline: &Arc<AtomicU64>,
) -> rusqlite::Result<SqlDb> {
    let mut conn = dohost_store::vfs::open(file.clone())?;
    let deadline = deadline.clone();
    let cache_kib = cache_bytes / 1024;
    // A database made before keeps the page size it was made with.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {SQLITE_PAGE_SIZE};
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA journal_mode = MEMORY;
         PRAGMA synchronous = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache_kib};"
    ))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let page_size = u64::try_from(page_size).unwrap_or(0).max(PAGE_SIZE as u64);
    let max_pages = max_bytes / page_size;
    conn.execute_batch(&format!("PRAGMA max_page_count = {max_pages};"))?;
    let limit = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    conn.set_limit(
        Limit::SQLITE_LIMIT_SQL_LENGTH,
        limit(MAX_SQL_STATEMENT_BYTES),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, limit(MAX_SQL_PARAMS))?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit(MAX_SQL_VALUE_BYTES))?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    let policy = Arc::new(Policy::default());
    let p = policy.clone();
    conn.authorizer(Some(move |context: AuthContext<'_>| authorize(&p, context)))?;
    conn.progress_handler(
        PROGRESS_STEPS,
        Some(move || now_nanos() > deadline.load(Ordering::Relaxed)),
    )?;
    Ok(SqlDb {
        live: HashMap::new(),
        cached: LruCache::new(STATEMENT_CACHE),
        conn,
        policy,
        savepoints: 0,
    })
}
