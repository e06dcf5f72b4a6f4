//! `dohost:object/context`: who the object is.

use crate::runtime::ObjectState;
use crate::runtime::bindings::object::dohost::object::context::Host;

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
}
