//! `dohost:object/targets`: targets lent over RPC (see
//! [`crate::runtime`]'s `targets` module), for objects and workers alike
//! (only objects lend).

use crate::runtime::bindings::object::dohost::object::targets::Host;
use crate::runtime::{Calls, Lent};

impl Host for Calls<'_> {
    fn lend(&mut self, target: u64) -> wasmtime::Result<Result<String, String>> {
        Ok(self.caller.lender().map(|(owner, instance)| {
            self.caller.shared().lending.lend(Lent {
                owner,
                instance,
                target,
            })
        }))
    }

    fn start_call(
        &mut self,
        capability: String,
        method: String,
        args: Vec<u8>,
    ) -> wasmtime::Result<u64> {
        Ok(self.start_target_call(&capability, method, args))
    }

    fn copy(&mut self, capability: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.caller.shared().lending.copy(&capability).ok_or_else(|| {
            "the RPC stub was disposed, or the object that passed its target was reset or left memory since".to_owned()
        }))
    }

    fn release(&mut self, capability: String) -> wasmtime::Result<()> {
        self.caller.shared().lending.release(&capability);
        Ok(())
    }
}
