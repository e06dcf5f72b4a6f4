//! `dohost:object/alarm`: the object's one alarm, a storage write like any
//! other.

use crate::runtime::ObjectState;
use crate::runtime::bindings::object::dohost::object::alarm::Host;
use crate::runtime::bindings::object::dohost::object::storage::StorageError;

impl Host for ObjectState {
    fn get_alarm(&mut self) -> wasmtime::Result<Result<Option<i64>, StorageError>> {
        Ok(self.io.get_alarm())
    }

    fn set_alarm(&mut self, scheduled_time: i64) -> wasmtime::Result<Result<(), StorageError>> {
        self.io.set_alarm(scheduled_time);
        Ok(Ok(()))
    }

    fn delete_alarm(&mut self) -> wasmtime::Result<Result<(), StorageError>> {
        self.io.delete_alarm();
        Ok(Ok(()))
    }
}
