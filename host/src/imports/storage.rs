//! `dohost:object/storage`: the object's KV storage and transactions.

use crate::runtime::ObjectState;
use crate::runtime::bindings::object::dohost::object::storage::{
    Host, ListOptions, ReadOptions, StorageError, WriteOptions,
};

type StorageResult<T> = wasmtime::Result<Result<T, StorageError>>;

impl Host for ObjectState {
    fn get(&mut self, key: String, options: ReadOptions) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.io.get(key, options.no_cache))
    }

    fn get_many(
        &mut self,
        keys: Vec<String>,
        options: ReadOptions,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        Ok(self.io.get_many(keys, options.no_cache))
    }

    fn put(&mut self, key: String, value: Vec<u8>, options: WriteOptions) -> StorageResult<()> {
        Ok(self.io.put_many(vec![(key, value)], options))
    }

    fn put_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        options: WriteOptions,
    ) -> StorageResult<()> {
        Ok(self.io.put_many(entries, options))
    }

    fn delete(&mut self, key: String, options: WriteOptions) -> StorageResult<bool> {
        Ok(self
            .io
            .delete_many(vec![key], options)
            .map(|existed| existed > 0))
    }

    fn delete_many(&mut self, keys: Vec<String>, options: WriteOptions) -> StorageResult<u32> {
        Ok(self.io.delete_many(keys, options))
    }

    fn list(&mut self, options: ListOptions) -> StorageResult<Vec<(String, Vec<u8>)>> {
        Ok(self.io.list(options))
    }

    fn delete_all(&mut self, options: WriteOptions) -> StorageResult<()> {
        Ok(self.io.delete_all(options))
    }

    async fn sync(&mut self) -> StorageResult<()> {
        self.io.sync().await.map_err(wasmtime::Error::msg)
    }

    async fn get_current_bookmark(&mut self) -> StorageResult<String> {
        self.io
            .current_bookmark()
            .await
            .map_err(wasmtime::Error::msg)
    }

    fn get_bookmark_for_time(&mut self, time: i64) -> StorageResult<String> {
        Ok(self.io.bookmark_for_time(time))
    }

    async fn on_next_session_restore_bookmark(
        &mut self,
        bookmark: String,
    ) -> StorageResult<String> {
        self.io
            .restore_next_session(bookmark)
            .await
            .map_err(wasmtime::Error::msg)
    }

    fn transaction_begin(&mut self) -> StorageResult<u32> {
        Ok(self.io.transaction_begin())
    }

    fn transaction_commit(&mut self) -> StorageResult<()> {
        Ok(self.io.transaction_commit())
    }

    fn transaction_rollback(&mut self) -> StorageResult<()> {
        self.io.transaction_rollback().map_err(wasmtime::Error::msg)
    }
}
