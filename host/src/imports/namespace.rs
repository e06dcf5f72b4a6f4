//! `dohost:object/namespace`: how guests, objects and workers alike, reach
//! other objects. A failed call comes back as a `call-error` carrying
//! Cloudflare's `remote`, `retryable` and `overloaded` flags.

use wasmtime::component::Resource;

use crate::error::Error;
use crate::runtime::bindings::object::dohost::object::namespace::{
    CallError, Host, HostObjectNamespace, HostStub,
};
use crate::runtime::bindings::{WitRequest, WitResponse};
use crate::runtime::{Calls, Namespace, Stub};

type Call<T> = wasmtime::Result<Result<T, CallError>>;

impl From<Error> for CallError {
    fn from(err: Error) -> Self {
        CallError {
            remote: err.is_remote(),
            retryable: err.is_retryable(),
            overloaded: err.is_overloaded(),
            // The calling object is the same application: it sees the
            // whole error, a trap's backtrace and output included.
            message: format!("{err:#}"),
        }
    }
}

impl Host for Calls<'_> {}

impl HostObjectNamespace for Calls<'_> {
    fn open(&mut self, binding: String) -> Call<Resource<Namespace>> {
        match self.namespace(&binding) {
            Ok(ns) => Ok(Ok(self.table.push(ns)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn id_from_name(&mut self, ns: Resource<Namespace>, name: String) -> wasmtime::Result<String> {
        Ok(self.table.get(&ns)?.id_from_name(&name).to_string())
    }

    fn new_unique_id(&mut self, ns: Resource<Namespace>) -> wasmtime::Result<String> {
        Ok(self.table.get(&ns)?.new_unique_id().to_string())
    }

    fn id_from_string(&mut self, ns: Resource<Namespace>, id: String) -> Call<String> {
        Ok(self
            .table
            .get(&ns)?
            .id_from_string(&id)
            .map(|id| id.to_string())
            .map_err(CallError::from))
    }

    fn get(&mut self, ns: Resource<Namespace>, id: String) -> Call<Resource<Stub>> {
        match self.table.get(&ns)?.id_from_string(&id) {
            Ok(id) => Ok(Ok(self.table.push(id.get())?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn get_by_name(
        &mut self,
        ns: Resource<Namespace>,
        name: String,
    ) -> wasmtime::Result<Resource<Stub>> {
        let stub = self.table.get(&ns)?.get_by_name(&name);
        Ok(self.table.push(stub)?)
    }

    fn drop(&mut self, ns: Resource<Namespace>) -> wasmtime::Result<()> {
        self.table.delete(ns)?;
        Ok(())
    }
}

impl HostStub for Calls<'_> {
    fn id(&mut self, stub: Resource<Stub>) -> wasmtime::Result<String> {
        Ok(self.table.get(&stub)?.id())
    }

    async fn fetch(&mut self, stub: Resource<Stub>, req: WitRequest) -> Call<WitResponse> {
        let stub = self.table.get(&stub)?.clone();
        Ok(self.send_request(stub, req).await.map_err(CallError::from))
    }

    async fn call(&mut self, stub: Resource<Stub>, method: String, args: Vec<u8>) -> Call<Vec<u8>> {
        let stub = self.table.get(&stub)?.clone();
        Ok(self
            .send_call(stub, method, args)
            .await
            .map_err(CallError::from))
    }

    fn start_fetch(&mut self, stub: Resource<Stub>, req: WitRequest) -> wasmtime::Result<u64> {
        let stub = self.table.get(&stub)?.clone();
        Ok(self.start_request(stub, req))
    }

    fn start_call(
        &mut self,
        stub: Resource<Stub>,
        method: String,
        args: Vec<u8>,
    ) -> wasmtime::Result<u64> {
        let stub = self.table.get(&stub)?.clone();
        Ok(Calls::start_call(self, stub, method, args))
    }

    fn start_forward(&mut self, stub: Resource<Stub>, event: u64) -> wasmtime::Result<Option<u64>> {
        let Some(req) = self.tasks.kept.request(event).cloned() else {
            return Ok(None);
        };
        let stub = self.table.get(&stub)?.clone();
        Ok(Some(self.start_request(stub, req)))
    }

    fn drop(&mut self, stub: Resource<Stub>) -> wasmtime::Result<()> {
        self.table.delete(stub)?;
        Ok(())
    }
}
