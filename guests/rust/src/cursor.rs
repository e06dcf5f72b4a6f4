//! The rows of an [`exec`](crate::Sql::exec), read from the host as the
//! guest asks for them (Cloudflare's `SqlStorageCursor`).
//!
//! The host keeps the statement and steps it as rows are asked for; the
//! cursor fetches [`DEFAULT_BATCH_ROWS`] rows per host call and hands them
//! out one by one, so walking a million rows holds one batch in the guest
//! at a time.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::iter::FusedIterator;
use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::sql as wit;
use crate::sql::from_wit;
use crate::{Error, Result, Row, SqlValue};

/// How many rows a cursor fetches per host call unless told otherwise
/// ([`Cursor::with_batch_size`]): enough to make the call's cost small per
/// row, few enough that a batch of large rows stays small (the host also
/// cuts a batch short at a few MiB).
const DEFAULT_BATCH_ROWS: u32 = 64;

/// The rows of the last statement of an [`exec`](crate::Sql::exec).
///
/// A `Cursor` is an [`Iterator`] of `Result<`[`Row`]`>`; [`Cursor::one`],
/// [`Cursor::to_array`] and [`Cursor::raw`] read it in Cloudflare's other
/// ways, and the `_as` methods decode rows into serde types
/// ([`Row::decode`]). After an error the iterator ends.
#[derive(Debug)]
pub struct Cursor {
    handle: wit::Cursor,
    columns: OnceCell<Rc<[String]>>,
    buffered: VecDeque<Vec<wit::SqlValue>>,
    batch_rows: u32,
    finished: bool,
}

impl Cursor {
    pub(crate) fn new(handle: wit::Cursor) -> Cursor {
        Cursor {
            handle,
            columns: OnceCell::new(),
            buffered: VecDeque::new(),
            batch_rows: DEFAULT_BATCH_ROWS,
            finished: false,
        }
    }

    /// This cursor, fetching up to `rows` rows (at least 1) per host call
    /// from now on instead of 64: fewer for very large rows or when only
    /// the first few are wanted, more for many small rows.
    #[must_use]
    pub fn with_batch_size(mut self, rows: u32) -> Cursor {
        self.batch_rows = rows.max(1);
        self
    }

    /// The names of the result's columns, in order (Cloudflare's
    /// `columnNames`).
    pub fn column_names(&self) -> &[String] {
        self.shared_columns()
    }

    fn shared_columns(&self) -> &Rc<[String]> {
        self.columns
            .get_or_init(|| self.handle.column_names().into())
    }

    /// Rows read so far by the statements of this `exec` (rows returned,
    /// or rows walked by a full table scan where that is more). It grows
    /// as the cursor is read (Cloudflare's `rowsRead`).
    pub fn rows_read(&self) -> u64 {
        self.handle.rows_read()
    }

    /// Rows inserted, updated or deleted so far by this `exec`
    /// (Cloudflare's `rowsWritten`).
    pub fn rows_written(&self) -> u64 {
        self.handle.rows_written()
    }

    /// The next row's values, fetching a batch when none is buffered.
    fn next_values(&mut self) -> Option<Result<Vec<SqlValue>>> {
        if self.buffered.is_empty() && !self.finished {
            match self.handle.next_batch(self.batch_rows) {
                Ok(rows) if rows.is_empty() => self.finished = true,
                Ok(rows) => self.buffered = rows.into(),
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e.into()));
                }
            }
        }
        let values = self.buffered.pop_front()?;
        Some(Ok(values.into_iter().map(from_wit).collect()))
    }

    /// The only row (Cloudflare's `one()`).
    ///
    /// # Errors
    ///
    /// When the result has no row or more than one (the message says how
    /// many: the rest of the result is counted), or reading fails.
    pub fn one(mut self) -> Result<Row> {
        let Some(row) = self.next().transpose()? else {
            return Err(Error::new(
                "expected exactly one row, but the query returned none",
            ));
        };
        let mut count = 1_u64;
        while self.next_values().transpose()?.is_some() {
            count += 1;
        }
        if count > 1 {
            return Err(Error::new(format!(
                "expected exactly one row, but the query returned {count} rows"
            )));
        }
        Ok(row)
    }

    /// Every remaining row (Cloudflare's `toArray()`). Prefer iterating
    /// when the result may be large.
    ///
    /// # Errors
    ///
    /// When reading fails.
    pub fn to_array(self) -> Result<Vec<Row>> {
        self.collect()
    }

    /// The remaining rows as plain value lists, without column names
    /// (Cloudflare's `raw()`).
    pub fn raw(mut self) -> impl Iterator<Item = Result<Vec<SqlValue>>> {
        std::iter::from_fn(move || self.next_values())
    }

    /// The only row, decoded with [`Row::decode`].
    ///
    /// # Errors
    ///
    /// As [`Cursor::one`], or when the row does not decode as a `T`.
    pub fn one_as<T: DeserializeOwned>(self) -> Result<T> {
        self.one()?.decode()
    }

    /// Every remaining row, decoded with [`Row::decode`].
    ///
    /// # Errors
    ///
    /// When reading fails or a row does not decode as a `T`.
    pub fn to_array_as<T: DeserializeOwned>(self) -> Result<Vec<T>> {
        self.rows_as().collect()
    }

    /// The remaining rows, each decoded with [`Row::decode`] as it is read.
    pub fn rows_as<T: DeserializeOwned>(self) -> impl Iterator<Item = Result<T>> {
        self.map(|row| row?.decode())
    }
}

impl Iterator for Cursor {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        let values = match self.next_values()? {
            Ok(values) => values,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Row::new(self.shared_columns().clone(), values)))
    }
}

impl FusedIterator for Cursor {}
