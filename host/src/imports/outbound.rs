//! `dohost:object/outbound`: HTTP requests to the world outside dohost,
//! under the egress policy (see
//! [`crate::runtime::outbound`](crate::runtime)).

use crate::runtime::Calls;
use crate::runtime::bindings::WitRequest;
use crate::runtime::bindings::object::dohost::object::outbound::{Host, Redirect};

impl Host for Calls<'_> {
    fn start_fetch(&mut self, req: WitRequest, redirect: Redirect) -> wasmtime::Result<u64> {
        Ok(Calls::start_fetch(self, req, redirect))
    }
}
