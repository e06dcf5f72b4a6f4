//! Calls a guest makes: what the `namespace` import works on. Namespaces and
//! stubs live in the guest's resource table; every call a guest makes goes
//! out with the guest's call chain (empty for a worker, which holds no input
//! gate) after its output gate.

use wasmtime::component::{HasData, ResourceTable};

use super::bindings::{WitRequest, WitResponse};
use super::guest::GuestIo;
use super::namespace::Namespace;
use super::stub::Stub;
use crate::error::Result;
use dohost_store::pass_gate;

/// A guest's side of its calls: its resource table and where its calls
/// come from.
pub(crate) struct Calls<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) caller: &'a mut dyn GuestIo,
}

/// The `namespace` import's [`HasData`]: it sees [`Calls`].
pub(crate) struct CallsImport;

impl HasData for CallsImport {
    type Data<'a> = Calls<'a>;
}

impl Calls<'_> {
    /// The namespace bound as `binding`.
    pub(crate) fn namespace(&self, binding: &str) -> Result<Namespace> {
        self.caller.shared().namespace(binding)
    }

    /// Sends `req` to the object of `stub` once the caller's output gate
    /// is passed, on behalf of the caller's chain.
    pub(crate) fn send_request(
        &self,
        stub: Stub,
        req: WitRequest,
    ) -> impl Future<Output = Result<WitResponse>> + Send + 'static {
        let (chain, gate) = self.caller.outgoing();
        async move {
            pass_gate(gate).await?;
            stub.fetch_wit(req, &chain).await
        }
    }

    /// Calls `method` of the object of `stub` with the JSON array `args`,
    /// as [`Calls::send_request`] sends a request.
    pub(crate) fn send_call(
        &self,
        stub: Stub,
        method: String,
        args: String,
    ) -> impl Future<Output = Result<String>> + Send + 'static {
        let (chain, gate) = self.caller.outgoing();
        async move {
            pass_gate(gate).await?;
            stub.call_wit(method, args, &chain).await
        }
    }
}
