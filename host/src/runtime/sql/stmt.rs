//! A prepared statement held across host calls (a cursor's), on SQLite's C
//! interface: rusqlite's `Statement` borrows its connection, so it cannot
//! live in the object's state between calls.

use std::ffi::{c_char, c_int};
use std::ptr::NonNull;

use rusqlite::ffi;

use crate::runtime::bindings::object::dohost::object::sql::SqlValue;

/// A prepared statement, owned by its [`super::SqlDb`].
pub(super) struct Stmt(NonNull<ffi::sqlite3_stmt>);

// SAFETY: a statement is only used with its connection, by whoever holds
// the object's io (one thread at a time); the connection is opened with
// SQLITE_OPEN_NO_MUTEX, which allows that.
unsafe impl Send for Stmt {}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the statement is live: SqlDb drops its statements before
        // its connection.
        unsafe { ffi::sqlite3_finalize(self.0.as_ptr()) };
    }
}

impl Stmt {
    /// Prepares the first statement of `sql`; also returns the bytes it
    /// used. `None` if `sql` holds no statement. `db` must be a live
    /// connection, which must outlive the statement.
    pub(super) fn prepare(db: *mut ffi::sqlite3, sql: &[u8]) -> (c_int, Option<Stmt>, usize) {
        let mut stmt = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        let len = c_int::try_from(sql.len()).unwrap_or(c_int::MAX);
        // SAFETY: `sql` is valid for `len` bytes; `tail` points into it.
        unsafe {
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast::<c_char>(),
                len,
                0,
                &mut stmt,
                &mut tail,
            );
            let used = if tail.is_null() {
                sql.len()
            } else {
                usize::try_from(tail.offset_from(sql.as_ptr().cast::<c_char>()))
                    .unwrap_or(sql.len())
            };
            (rc, NonNull::new(stmt).map(Stmt), used)
        }
    }
    pub(super) fn raw(&self) -> *mut ffi::sqlite3_stmt {
        self.0.as_ptr()
    }

    pub(super) fn step(&self) -> c_int {
        // SAFETY: a live statement.
        unsafe { ffi::sqlite3_step(self.raw()) }
    }

    pub(super) fn param_count(&self) -> usize {
        // SAFETY: a live statement.
        let n = unsafe { ffi::sqlite3_bind_parameter_count(self.raw()) };
        usize::try_from(n).unwrap_or(0)
    }

    pub(super) fn columns(&self) -> Vec<String> {
        // SAFETY: a live statement; names are NUL-terminated and valid
        // until the next call on the statement, so they are copied at once.
        unsafe {
            let n = ffi::sqlite3_column_count(self.raw());
            (0..n)
                .map(|i| {
                    let name = ffi::sqlite3_column_name(self.raw(), i);
                    if name.is_null() {
                        String::new()
                    } else {
                        std::ffi::CStr::from_ptr(name)
                            .to_string_lossy()
                            .into_owned()
                    }
                })
                .collect()
        }
    }

    /// The current row (after a step returned `SQLITE_ROW`) and its size.
    pub(super) fn row(&self) -> (Vec<SqlValue>, usize) {
        let mut size = 0;
        // SAFETY: a live statement on a row; text and blob pointers are
        // valid for the length SQLite reports until the next step, and are
        // copied at once.
        let values = unsafe {
            let n = ffi::sqlite3_column_count(self.raw());
            (0..n)
                .map(|i| {
                    let raw = self.raw();
                    let bytes = |p: *const u8| {
                        let len = usize::try_from(ffi::sqlite3_column_bytes(raw, i)).unwrap_or(0);
                        if p.is_null() || len == 0 {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(p, len)
                        }
                    };
                    match ffi::sqlite3_column_type(raw, i) {
                        ffi::SQLITE_INTEGER => {
                            size += 8;
                            SqlValue::Integer(ffi::sqlite3_column_int64(raw, i))
                        }
                        ffi::SQLITE_FLOAT => {
                            size += 8;
                            SqlValue::Real(ffi::sqlite3_column_double(raw, i))
                        }
                        ffi::SQLITE_TEXT => {
                            let b = bytes(ffi::sqlite3_column_text(raw, i));
                            size += b.len();
                            SqlValue::Text(String::from_utf8_lossy(b).into_owned())
                        }
                        ffi::SQLITE_BLOB => {
                            let b = bytes(ffi::sqlite3_column_blob(raw, i).cast::<u8>());
                            size += b.len();
                            SqlValue::Blob(b.to_vec())
                        }
                        _ => SqlValue::Null,
                    }
                })
                .collect()
        };
        (values, size)
    }

    pub(super) fn bind(&self, index: usize, value: &SqlValue) -> c_int {
        let i = c_int::try_from(index + 1).unwrap_or(c_int::MAX);
        let raw = self.raw();
        // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy text
        // and blobs before the call returns.
        unsafe {
            match value {
                SqlValue::Null => ffi::sqlite3_bind_null(raw, i),
                SqlValue::Integer(v) => ffi::sqlite3_bind_int64(raw, i, *v),
                SqlValue::Real(v) => ffi::sqlite3_bind_double(raw, i, *v),
                SqlValue::Text(s) => ffi::sqlite3_bind_text64(
                    raw,
                    i,
                    s.as_ptr().cast::<c_char>(),
                    s.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                SqlValue::Blob(b) if b.is_empty() => ffi::sqlite3_bind_zeroblob(raw, i, 0),
                SqlValue::Blob(b) => ffi::sqlite3_bind_blob64(
                    raw,
                    i,
                    b.as_ptr().cast(),
                    b.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        }
    }

    /// Makes a finished statement ready to run again: no bindings, no
    /// counts.
    pub(super) fn rewind(&self) {
        // SAFETY: a live statement.
        unsafe {
            ffi::sqlite3_reset(self.raw());
            ffi::sqlite3_clear_bindings(self.raw());
            ffi::sqlite3_stmt_status(self.raw(), ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
        }
    }

    /// Rows walked by full table scans so far: SQLite counts the steps from
    /// one row to the next, so a scan that moved at all also read the row
    /// it started on.
    pub(super) fn fullscan_steps(&self) -> u64 {
        // SAFETY: a live statement.
        let n = unsafe {
            ffi::sqlite3_stmt_status(self.raw(), ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP, 0)
        };
        let steps = u64::try_from(n).unwrap_or(0);
        steps + u64::from(steps > 0)
    }
}

/// True if `sql` holds anything but whitespace, `;` and comments.
pub(super) fn has_statement(sql: &[u8]) -> bool {
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b';' => i += 1,
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < sql.len() && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_whitespace_and_comments_are_no_statement() {
        assert!(!has_statement(b"  ;\n -- done\n /* and */ ;"));
        assert!(has_statement(b"; SELECT 1"));
        assert!(has_statement(b"/* c */ x"));
        assert!(!has_statement(b"/* unterminated"));
    }
}
