//! The `namespace` import: how guests, objects and workers alike, reach
//! other objects. Namespaces and stubs live in the guest's resource table;
//! every call a guest makes goes out with the guest's call chain (empty for
//! a worker, which holds no input gate) after its output gate, and comes
//! back as a `call-error` carrying Cloudflare's `remote`, `retryable` and
//! `overloaded` flags.

use std::collections::BTreeMap;

use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::object::dohost::object::namespace::CallError;
use crate::bindings::{WitRequest, WitResponse};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::Namespace;
use crate::object::{Gate, pass_gate};
use crate::stub::{CallChain, Stub};

/// A guest's side of its calls: what the `namespace` import needs from the
/// store's data.
pub(crate) trait Caller: Send {
    /// The guest's resource table.
    fn resources(&mut self) -> &mut ResourceTable;
    /// The namespace bound as `binding`.
    fn binding(&self, binding: &str) -> Result<Namespace>;
    /// The chain a call made now belongs to, and the gate it must pass
    /// before it is sent.
    fn outgoing(&self) -> (CallChain, Option<Gate>);
}

/// The namespace bound as `binding` among `namespaces`.
pub(crate) fn lookup(namespaces: &BTreeMap<String, Namespace>, binding: &str) -> Result<Namespace> {
    namespaces.get(binding).cloned().ok_or_else(|| {
        let known: Vec<&str> = namespaces.keys().map(String::as_str).collect();
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no Durable Object binding named {binding:?}; configured: {}",
                known.join(", ")
            ),
        )
    })
}

/// The contract's form of a failed call.
fn call_error(err: &Error) -> CallError {
    CallError {
        message: err.message().to_owned(),
        remote: err.is_remote(),
        retryable: err.is_retryable(),
        overloaded: err.is_overloaded(),
    }
}

type Call<T> = wasmtime::Result<std::result::Result<T, CallError>>;

pub(crate) fn open<C: Caller>(caller: &mut C, binding: &str) -> Call<Resource<Namespace>> {
    match caller.binding(binding) {
        Ok(ns) => Ok(Ok(caller.resources().push(ns)?)),
        Err(e) => Ok(Err(call_error(&e))),
    }
}

pub(crate) fn id_from_name<C: Caller>(
    caller: &mut C,
    ns: &Resource<Namespace>,
    name: &str,
) -> wasmtime::Result<String> {
    Ok(caller.resources().get(ns)?.id_from_name(name).to_string())
}

pub(crate) fn new_unique_id<C: Caller>(
    caller: &mut C,
    ns: &Resource<Namespace>,
) -> wasmtime::Result<String> {
    Ok(caller.resources().get(ns)?.new_unique_id().to_string())
}

pub(crate) fn id_from_string<C: Caller>(
    caller: &mut C,
    ns: &Resource<Namespace>,
    id: &str,
) -> Call<String> {
    Ok(caller
        .resources()
        .get(ns)?
        .id_from_string(id)
        .map(|id| id.to_string())
        .map_err(|e| call_error(&e)))
}

pub(crate) fn get<C: Caller>(
    caller: &mut C,
    ns: &Resource<Namespace>,
    id: &str,
) -> Call<Resource<Stub>> {
    match caller.resources().get(ns)?.id_from_string(id) {
        Ok(id) => Ok(Ok(caller.resources().push(id.get())?)),
        Err(e) => Ok(Err(call_error(&e))),
    }
}

pub(crate) fn get_by_name<C: Caller>(
    caller: &mut C,
    ns: &Resource<Namespace>,
    name: &str,
) -> wasmtime::Result<Resource<Stub>> {
    let stub = caller.resources().get(ns)?.get_by_name(name);
    Ok(caller.resources().push(stub)?)
}

pub(crate) fn stub_id<C: Caller>(
    caller: &mut C,
    stub: &Resource<Stub>,
) -> wasmtime::Result<String> {
    Ok(caller.resources().get(stub)?.id())
}

pub(crate) async fn fetch<C: Caller>(
    caller: &mut C,
    stub: &Resource<Stub>,
    req: WitRequest,
) -> Call<WitResponse> {
    let stub = caller.resources().get(stub)?.clone();
    let (chain, gate) = caller.outgoing();
    let result = async {
        pass_gate(gate).await?;
        stub.fetch_wit(req, &chain).await
    };
    Ok(result.await.map_err(|e| call_error(&e)))
}

pub(crate) async fn call<C: Caller>(
    caller: &mut C,
    stub: &Resource<Stub>,
    method: String,
    args: String,
) -> Call<String> {
    let stub = caller.resources().get(stub)?.clone();
    let (chain, gate) = caller.outgoing();
    let result = async {
        pass_gate(gate).await?;
        stub.call_wit(method, args, &chain).await
    };
    Ok(result.await.map_err(|e| call_error(&e)))
}

pub(crate) fn delete<C: Caller, R: 'static>(
    caller: &mut C,
    resource: Resource<R>,
) -> wasmtime::Result<()> {
    caller.resources().delete(resource)?;
    Ok(())
}

/// Implements the generated `namespace` host traits for a store's data
/// type that is a [`Caller`].
macro_rules! namespace_import {
    ($state:ty) => {
        impl $crate::bindings::object::dohost::object::namespace::Host for $state {}

        impl $crate::bindings::object::dohost::object::namespace::HostObjectNamespace for $state {
            fn open(
                &mut self,
                binding: String,
            ) -> wasmtime::Result<
                std::result::Result<
                    wasmtime::component::Resource<$crate::namespace::Namespace>,
                    $crate::bindings::object::dohost::object::namespace::CallError,
                >,
            > {
                $crate::calls::open(self, &binding)
            }

            fn id_from_name(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
                name: String,
            ) -> wasmtime::Result<String> {
                $crate::calls::id_from_name(self, &ns, &name)
            }

            fn new_unique_id(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
            ) -> wasmtime::Result<String> {
                $crate::calls::new_unique_id(self, &ns)
            }

            fn id_from_string(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
                id: String,
            ) -> wasmtime::Result<
                std::result::Result<
                    String,
                    $crate::bindings::object::dohost::object::namespace::CallError,
                >,
            > {
                $crate::calls::id_from_string(self, &ns, &id)
            }

            fn get(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
                id: String,
            ) -> wasmtime::Result<
                std::result::Result<
                    wasmtime::component::Resource<$crate::stub::Stub>,
                    $crate::bindings::object::dohost::object::namespace::CallError,
                >,
            > {
                $crate::calls::get(self, &ns, &id)
            }

            fn get_by_name(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
                name: String,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::stub::Stub>> {
                $crate::calls::get_by_name(self, &ns, &name)
            }

            fn drop(
                &mut self,
                ns: wasmtime::component::Resource<$crate::namespace::Namespace>,
            ) -> wasmtime::Result<()> {
                $crate::calls::delete(self, ns)
            }
        }

        impl $crate::bindings::object::dohost::object::namespace::HostStub for $state {
            fn id(
                &mut self,
                stub: wasmtime::component::Resource<$crate::stub::Stub>,
            ) -> wasmtime::Result<String> {
                $crate::calls::stub_id(self, &stub)
            }

            async fn fetch(
                &mut self,
                stub: wasmtime::component::Resource<$crate::stub::Stub>,
                req: $crate::bindings::WitRequest,
            ) -> wasmtime::Result<
                std::result::Result<
                    $crate::bindings::WitResponse,
                    $crate::bindings::object::dohost::object::namespace::CallError,
                >,
            > {
                $crate::calls::fetch(self, &stub, req).await
            }

            async fn call(
                &mut self,
                stub: wasmtime::component::Resource<$crate::stub::Stub>,
                method: String,
                args: String,
            ) -> wasmtime::Result<
                std::result::Result<
                    String,
                    $crate::bindings::object::dohost::object::namespace::CallError,
                >,
            > {
                $crate::calls::call(self, &stub, method, args).await
            }

            fn drop(
                &mut self,
                stub: wasmtime::component::Resource<$crate::stub::Stub>,
            ) -> wasmtime::Result<()> {
                $crate::calls::delete(self, stub)
            }
        }
    };
}

pub(crate) use namespace_import;
