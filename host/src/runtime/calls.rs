//! Calls a guest makes: what the `namespace`, `outbound` and `events`
//! imports work on. Namespaces and stubs live in the guest's resource
//! table; every call a guest makes goes out with the guest's call chain
//! (empty for a worker, which holds no input gate) after its output gate.
//! A call that waits inside the import passes the gate of earlier events'
//! writes; an operation (`start-*`, see [`super::tasks`]) is launched when
//! its turn ends, behind the gate of that turn's writes too.

use wasmtime::component::{HasData, ResourceTable};

use super::bindings::object::dohost::object::events::Outcome;
use super::bindings::object::dohost::object::namespace::CallError;
use super::bindings::object::dohost::object::outbound::{
    FetchError, FetchErrorKind, Fetched, Redirect,
};
use super::bindings::{WitRequest, WitResponse};
use super::guest::GuestIo;
use super::namespace::Namespace;
use super::outbound::{self, OutboundRequest};
use super::stub::{CallChain, Stub};
use super::tasks::{OpId, Tasks};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::OUTBOUND;
use dohost_store::pass_gate;
use futures_util::future::BoxFuture;

/// A guest's side of its calls: its resource table and where its calls
/// come from.
pub(crate) struct Calls<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) caller: &'a mut dyn GuestIo,
    pub(crate) tasks: &'a mut Tasks,
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
    /// is passed, on behalf of the caller's chain. A streamed body in the
    /// response becomes one of the caller's bodies.
    pub(crate) fn send_request(
        &self,
        stub: Stub,
        req: WitRequest,
    ) -> impl Future<Output = Result<WitResponse>> + Send + 'static {
        let (chain, gate) = self.caller.outgoing(true);
        let bodies = self.tasks.bodies.clone();
        async move {
            pass_gate(gate).await?;
            Ok(stub.fetch_wit(req, &chain).await?.received(&bodies))
        }
    }

    /// Calls `method` of the object of `stub` with the array `args` (see
    /// [`Stub::call_bytes`]), as [`Calls::send_request`] sends a request.
    pub(crate) fn send_call(
        &self,
        stub: Stub,
        method: String,
        args: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send + 'static {
        let (chain, gate) = self.caller.outgoing(true);
        async move {
            pass_gate(gate).await?;
            stub.call_wit(method, args, &chain).await
        }
    }

    /// Starts `req` to the object of `stub` as an operation of the running
    /// turn's event.
    pub(crate) fn start_request(&mut self, stub: Stub, req: WitRequest) -> OpId {
        let bodies = self.tasks.bodies.clone();
        self.start_call_op(Outcome::StubFetch, |chain| async move {
            Ok(stub.fetch_wit(req, &chain).await?.received(&bodies))
        })
    }

    /// Starts a call of `method` on the object of `stub`, as
    /// [`Calls::start_request`] starts a request.
    pub(crate) fn start_call(&mut self, stub: Stub, method: String, args: Vec<u8>) -> OpId {
        self.start_call_op(Outcome::StubCall, |chain| async move {
            stub.call_wit(method, args, &chain).await
        })
    }

    /// Starts a call of `method` on the target behind `capability` (see
    /// [`super::targets`]), as [`Calls::start_request`] starts a request.
    pub(crate) fn start_target_call(
        &mut self,
        capability: &str,
        method: String,
        args: Vec<u8>,
    ) -> OpId {
        let lent = self.caller.shared().lending.get(capability);
        let timeout = self.caller.shared().settings.call_timeout;
        self.start_call_op(Outcome::StubCall, |chain| async move {
            let lent = lent.ok_or_else(|| {
                Error::new(
                    ErrorKind::GuestError,
                    "the RpcTarget or function stub was disposed, or the object that passed it was reset or left memory since",
                )
            })?;
            lent.call(method, args, &chain, timeout).await
        })
    }

    /// Starts what `send` sends on behalf of the caller's chain, within the
    /// event's subrequest limit; `outcome` wraps its answer for `resume`.
    fn start_call_op<T, F>(
        &mut self,
        outcome: fn(std::result::Result<T, CallError>) -> Outcome,
        send: impl FnOnce(CallChain) -> F,
    ) -> OpId
    where
        T: 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let chain = self.caller.outgoing(self.tasks.blocked > 0).0;
        let run: BoxFuture<'static, Outcome> =
            match self.tasks.subrequest(&self.caller.shared().settings) {
                Ok(_) => {
                    let sent = send(chain);
                    Box::pin(async move { outcome(sent.await.map_err(CallError::from)) })
                }
                Err(limit) => Box::pin(std::future::ready(outcome(Err(CallError::from(
                    Error::new(ErrorKind::Overloaded, limit),
                ))))),
            };
        self.tasks.start(run)
    }

    /// Starts an outbound HTTP request, within the running turn's event's
    /// subrequest and connection limits.
    pub(crate) fn start_fetch(&mut self, req: WitRequest, redirect: Redirect) -> OpId {
        let shared = self.caller.shared();
        let run = match self.tasks.subrequest(&shared.settings) {
            Ok(connections) => {
                let client = shared.outbound.clone();
                let request = OutboundRequest {
                    method: req.method,
                    url: req.url,
                    headers: req.headers,
                    body: req.body,
                    redirect: match redirect {
                        Redirect::Follow => outbound::Redirect::Follow,
                        Redirect::Manual => outbound::Redirect::Manual,
                        Redirect::Error => outbound::Redirect::Error,
                    },
                };
                Box::pin(async move {
                    // Waits for one of the event's connections.
                    let _connection = connections.acquire_owned().await;
                    let fetched = client.fetch(request).await;
                    let outcome = fetched.as_ref().map_or_else(|e| e.kind.label(), |_| "ok");
                    metrics::counter!(OUTBOUND, "outcome" => outcome).increment(1);
                    Outcome::Http(fetched.map_err(fetch_error).map(|response| Fetched {
                        response: WitResponse {
                            status: response.status,
                            headers: response.headers,
                            body: response.body,
                            stream: None,
                            websocket: None,
                        },
                        url: response.url,
                        redirected: response.redirected,
                    }))
                }) as BoxFuture<'static, Outcome>
            }
            Err(limit) => Box::pin(std::future::ready(Outcome::Http(Err(FetchError {
                kind: FetchErrorKind::Limit,
                message: limit,
            })))),
        };
        self.tasks.start(run)
    }

    /// Starts a timer of `ms` milliseconds.
    pub(crate) fn start_sleep(&mut self, ms: u64) -> OpId {
        self.tasks.start(Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Outcome::Slept
        }))
    }
}

fn fetch_error(e: outbound::FetchError) -> FetchError {
    FetchError {
        kind: match e.kind {
            outbound::FetchErrorKind::Refused => FetchErrorKind::Refused,
            outbound::FetchErrorKind::Limit => FetchErrorKind::Limit,
            outbound::FetchErrorKind::Timeout => FetchErrorKind::Timeout,
            outbound::FetchErrorKind::Network => FetchErrorKind::Network,
            outbound::FetchErrorKind::Invalid => FetchErrorKind::Invalid,
        },
        message: e.message,
    }
}
