//! `dohost:object/context`: who the object is.

use crate::runtime::bindings::object::dohost::object::context::Host;
use crate::runtime::{Aborted, ObjectState};

impl Host for ObjectState {
    fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.io.identity.id_hex.clone())
    }

    fn name(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.io.identity.name.clone())
    }

    fn class_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.io.identity.class.to_string())
    }

    fn abort(&mut self, reason: Option<String>) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Aborted(reason)))
    }
}
