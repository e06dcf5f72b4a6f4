//! `dohost:object/env`: the host's `[vars]`, for objects and workers alike.

use crate::runtime::Vars;
use crate::runtime::bindings::object::dohost::object::env::Host;

impl Host for &Vars {
    fn vars(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.list())
    }

    fn var(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&name))
    }

    fn json_vars(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.json_names())
    }

    fn unsupported_binding(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.unsupported(&name))
    }

    fn exports(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.classes())
    }
}
