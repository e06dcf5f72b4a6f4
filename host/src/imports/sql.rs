//! `dohost:object/sql`: the object's SQLite database and its cursors.
//!
//! The pages SQLite misses in one host call are read in one redb read
//! transaction, ended when the call returns ([`crate::runtime::sql::Sql::end_reads`]).

use wasmtime::component::Resource;

use crate::runtime::ObjectState;
use crate::runtime::bindings::object::dohost::object::sql::{Host, HostCursor, SqlError, SqlValue};
use crate::runtime::sql::{Cursor, Failure};

type SqlResult<T> = wasmtime::Result<Result<T, SqlError>>;

impl Host for ObjectState {
    fn exec(&mut self, query: String, params: Vec<SqlValue>) -> SqlResult<Resource<Cursor>> {
        let depth = self.io.storage.writes.depth();
        let result = self.io.sql.exec(depth, &query, &params);
        self.io.sql.end_reads();
        match result {
            Ok(cursor) => Ok(Ok(self.table.push(cursor)?)),
            Err(Failure::Sql(e)) => Ok(Err(e)),
            Err(Failure::Trap(message)) => Err(wasmtime::Error::msg(message)),
        }
    }

    fn database_size(&mut self) -> wasmtime::Result<u64> {
        self.io
            .sql
            .database_size()
            .map_err(|e| wasmtime::Error::msg(format!("cannot read the SQL database size: {e}")))
    }
}

impl HostCursor for ObjectState {
    fn column_names(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&cursor)?.columns.clone())
    }

    fn next(&mut self, cursor: Resource<Cursor>) -> SqlResult<Option<Vec<SqlValue>>> {
        let cursor = self.table.get_mut(&cursor)?;
        let row = self.io.sql.next(cursor);
        self.io.sql.end_reads();
        Ok(row.map(|row| row.map(|(values, _)| values)))
    }

    fn next_batch(&mut self, cursor: Resource<Cursor>, max: u32) -> SqlResult<Vec<Vec<SqlValue>>> {
        let cursor = self.table.get_mut(&cursor)?;
        let rows = self.io.sql.next_batch(cursor, max);
        self.io.sql.end_reads();
        Ok(rows)
    }

    fn rows_read(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<u64> {
        Ok(self.io.sql.rows_read(self.table.get(&cursor)?))
    }

    fn rows_written(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&cursor)?.rows_written)
    }

    fn drop(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<()> {
        let cursor = self.table.delete(cursor)?;
        self.io.sql.drop_cursor(&cursor);
        Ok(())
    }
}
