//! Stubs: the client side of a call to an object.
//!
//! A [`Stub`] sends one object either an HTTP-shaped request (`fetch`) or
//! an RPC call (`call`: a method name and JSON arguments, so a guest in any
//! language can answer it). Either becomes an event in the object's bounded
//! mailbox; a full mailbox fails the call at once as overloaded. The answer
//! is released only once the object's writes are durable (the output gate,
//! see [`super::object`]).
//!
//! **Call chains.** Every event carries the chain of objects waiting on
//! it, which bounds the depth of calls. An object that waits on an
//! operation (`start-call`) may take other events meanwhile, so A → B → A
//! works. One that waits inside a call (the import's `call`), or inside
//! `blockConcurrencyWhile`, takes no other event until it returns; a call
//! back to such an object is refused at once, naming the cycle, instead of
//! waiting for an answer that can never come.
//!
//! **Timeouts.** Every call gives up after [`Settings::call_timeout`],
//! time in the mailbox included. That also ends waits no chain can see (A
//! and B, each in an event of its own, calling each other). An event whose
//! caller has given up before it started is skipped.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::bindings::WitRequest;
use super::body::{Body, GuestResponse};
use super::namespace::Namespace;
use super::object::{Answer, Event, Origin, Request};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::MAX_CALL_DEPTH;
use dohost_store::{ObjectKey, pass_gate};

#[cfg(doc)]
use crate::settings::Settings;

/// A client for one object. Cheap to clone.
#[derive(Clone)]
pub struct Stub {
    namespace: Namespace,
    id: [u8; 32],
    name: Option<String>,
}

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub")
            .field("binding", &self.namespace.binding())
            .field("id", &hex::encode(self.id))
            .field("name", &self.name)
            .finish()
    }
}

impl Stub {
    pub(crate) fn new(namespace: Namespace, id: [u8; 32], name: Option<String>) -> Stub {
        Stub {
            namespace,
            id,
            name,
        }
    }

    /// The binding of the object's namespace.
    pub(crate) fn binding(&self) -> &str {
        self.namespace.binding()
    }

    /// The object's id as 64 hex characters.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// The name the stub addresses the object by, if it was made from one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Sends `request` to the object's `fetch` and returns its response once
    /// every write the object made up to that response is durable.
    ///
    /// A relative URI (`/path`) is given the origin `http://localhost`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::GuestTrap`] if the object trapped (it is reset),
    /// [`ErrorKind::GuestError`] if its handler returned an error,
    /// [`ErrorKind::Overloaded`] if its mailbox is full,
    /// [`ErrorKind::Timeout`] if it did not answer within the call timeout,
    /// [`ErrorKind::Storage`] if its writes could not be made durable.
    /// [`Error::is_remote`], [`Error::is_retryable`] and
    /// [`Error::is_overloaded`] say what a caller may do about it.
    pub async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        Body::whole(self.fetch_streaming(request).await?).await
    }

    /// Sends `request` to the object's `fetch`, as [`Stub::fetch`], and
    /// returns its response as soon as its head is ready: a body the object
    /// streams (a `ReadableStream`, server-sent events) arrives as the
    /// object writes it.
    ///
    /// # Errors
    ///
    /// As [`Stub::fetch`]; reading the body fails if the object ends it with
    /// an error or is reset before its end.
    pub async fn fetch_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>> {
        let response = self
            .fetch_wit(to_wit_request(request), &CallChain::default())
            .await?;
        from_wit_response(response)
    }

    /// Calls the object's RPC method `method` with `args`, the positional
    /// arguments: a tuple (`&()` for none, `&(a, b)` for two) or one value
    /// (`&5` is the one argument `5`; wrap a single array argument as
    /// `&(vec,)`), sent as JSON. Returns the method's result, read with
    /// serde from JSON or from a JavaScript object's structured clone
    /// ([`dohost_value`], docs/values.md).
    ///
    /// ```no_run
    /// # async fn run(stub: dohost::Stub) -> dohost::Result<()> {
    /// let count: u64 = stub.call("increment", &()).await?;
    /// let sum: u64 = stub.call("add", &(2, 3)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Stub::fetch`]; [`ErrorKind::GuestError`] also when the object has
    /// no such method or the arguments do not fit it, and
    /// [`ErrorKind::BadRequest`] when `args` or the result do not convert.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<R> {
        let result = self
            .call_bytes(method, args_json(args)?.into_bytes())
            .await?;
        dohost_value::from_bytes(&result).map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the result of {}.{method} ({:.200}) does not fit the expected type: {e}",
                    self.label(),
                    String::from_utf8_lossy(&result)
                ),
            )
        })
    }

    /// Calls the object's RPC method `method` with `args`, a JSON array of
    /// the positional arguments, and returns the method's result as JSON
    /// (a JavaScript object's structured clone read as serde reads it).
    ///
    /// # Errors
    ///
    /// As [`Stub::call`]; [`ErrorKind::BadRequest`] when `args` is not a
    /// JSON array, or the result has no JSON form (a cycle).
    pub async fn call_json(&self, method: &str, args: &str) -> Result<String> {
        let result = self.call_bytes(method, args.as_bytes().to_vec()).await?;
        dohost_value::to_json_text(&result).map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the result of {}.{method} has no JSON form: {e}",
                    self.label()
                ),
            )
        })
    }

    /// Calls the object's RPC method `method` with `args`, the array of the
    /// positional arguments in the value format of the SDKs (JSON, or CBOR
    /// after the self-describe tag; docs/values.md), and returns the
    /// method's result in that format.
    ///
    /// # Errors
    ///
    /// As [`Stub::call`]; [`ErrorKind::BadRequest`] when `args` is not an
    /// array.
    pub async fn call_bytes(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>> {
        self.call_wit(method.to_owned(), args, &CallChain::default())
            .await
    }

    /// Sends a request on behalf of the chain `chain`.
    pub(crate) async fn fetch_wit(
        &self,
        req: WitRequest,
        chain: &CallChain,
    ) -> Result<GuestResponse> {
        match self.send(Request::Fetch(Arc::new(req)), chain).await? {
            Answer::Fetch(response) => Ok(response),
            Answer::Call(_) => Err(mixed_answer()),
        }
    }

    /// Calls a method on behalf of the chain `chain`.
    pub(crate) async fn call_wit(
        &self,
        method: String,
        args: Vec<u8>,
        chain: &CallChain,
    ) -> Result<Vec<u8>> {
        if !dohost_value::is_array(&args) {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the arguments of {}.{method} must be an array of the positional \
                     arguments ([] for none); got {:.100}",
                    self.label(),
                    String::from_utf8_lossy(&args)
                ),
            ));
        }
        match self.send(Request::Call { method, args }, chain).await? {
            Answer::Call(result) => Ok(result),
            Answer::Fetch(_) => Err(mixed_answer()),
        }
    }

    /// Calls `method` of target `target`, which instance `instance` of the
    /// object lent, on behalf of the chain `chain` (see
    /// [`super::targets`]).
    pub(crate) async fn call_target_wit(
        &self,
        lent: (u64, u64),
        method: String,
        args: Vec<u8>,
        chain: &CallChain,
    ) -> Result<Vec<u8>> {
        let (instance, target) = lent;
        let request = Request::CallTarget {
            instance,
            target,
            method,
            args,
        };
        match self.send(request, chain).await? {
            Answer::Call(result) => Ok(result),
            Answer::Fetch(_) => Err(mixed_answer()),
        }
    }

    /// Runs `request` where the object is: on the node of the cluster that
    /// owns it ([`super::remote`]), or here.
    async fn send(&self, request: Request, chain: &CallChain) -> Result<Answer> {
        let key = ObjectKey::new(self.namespace.number(), &self.id);
        let shared = self.namespace.shared();
        if let Some(node) = &shared.cluster
            && (!node.holds(&key) || shared.closed.load(std::sync::atomic::Ordering::SeqCst))
        {
            // Not here, or this node is stopping: the owner runs it (a
            // stopping node hands its shards over, then forwards to the
            // next owner).
            self.check_chain(key, chain)?;
            let timeout = shared.settings.call_timeout;
            let forwarded = tokio::time::timeout(
                timeout,
                node.forward(self, key, &request, chain, &shared.closed),
            )
            .await
            .unwrap_or_else(|_| Some(Err(self.timed_out(timeout))));
            if let Some(answer) = forwarded {
                return answer;
            }
        }
        self.send_here(request, chain).await
    }

    /// Refuses a call to `key` that would close a cycle of waiting objects
    /// or go deeper than the limit.
    fn check_chain(&self, key: ObjectKey, chain: &CallChain) -> Result<()> {
        if let Some(cycle) = chain.cycle_to(key, &self.label()) {
            return Err(Error::new(ErrorKind::CallCycle, cycle));
        }
        if chain.depth() >= MAX_CALL_DEPTH {
            return Err(Error::new(
                ErrorKind::CallCycle,
                format!(
                    "the call to {} would be {} calls deep, past the limit of {MAX_CALL_DEPTH}: {}",
                    self.label(),
                    chain.depth() + 1,
                    chain.path()
                ),
            ));
        }
        Ok(())
    }

    /// The error of a call that did not answer within `timeout`.
    fn timed_out(&self, timeout: std::time::Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{} did not answer within the call timeout ({} ms); it may still run \
                 the call",
                self.label(),
                timeout.as_millis()
            ),
        )
    }

    /// Puts `request` in the object's mailbox on this node and waits for
    /// the answer and its output gate, within the call timeout.
    pub(crate) async fn send_here(&self, request: Request, chain: &CallChain) -> Result<Answer> {
        let key = ObjectKey::new(self.namespace.number(), &self.id);
        self.check_chain(key, chain)?;
        let (reply, answer) = oneshot::channel();
        let origin = Origin {
            name: self.name.clone(),
            chain: chain.clone(),
            sent: std::time::Instant::now(),
        };
        self.namespace.deliver(
            &self.id,
            self.name.as_deref(),
            Event::Request {
                request,
                origin,
                reply,
            },
        )?;
        let timeout = self.namespace.shared().settings.call_timeout;
        let answered = async {
            let reply = answer.await.map_err(|_| {
                Error::new(
                    ErrorKind::GuestTrap,
                    format!("{} stopped before it answered", self.label()),
                )
            })?;
            pass_gate(reply.gate).await?;
            reply.result
        };
        tokio::time::timeout(timeout, answered)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(timeout)))
    }

    /// How messages name the object: `BINDING:name`, or `BINDING:id`.
    pub(crate) fn label(&self) -> String {
        object_label(self.namespace.binding(), &self.id, self.name.as_deref())
    }
}

/// How messages name an object: `BINDING:name`, or `BINDING:id`.
pub(crate) fn object_label(binding: &str, id: &[u8; 32], name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{binding}:{name}"),
        None => format!("{binding}:{}", hex::encode(id)),
    }
}

fn mixed_answer() -> Error {
    Error::new(
        ErrorKind::Component,
        "the object answered a different kind of event than it was sent",
    )
}

/// The JSON array of positional arguments for `args` (see [`Stub::call`]).
fn args_json(args: &impl Serialize) -> Result<String> {
    dohost_value::arguments_json(args).map_err(|e| Error::new(ErrorKind::BadRequest, e))
}

/// The objects waiting, each on the next, in one chain of calls: the chain
/// an event was called from, plus the object running it. Cheap to clone and
/// to extend.
#[derive(Clone, Default)]
pub(crate) struct CallChain(Option<Arc<Link>>);

struct Link {
    key: ObjectKey,
    label: String,
    /// Whether the object takes no other event while it waits.
    waits: bool,
    before: CallChain,
}

impl CallChain {
    /// This chain with the object `key` (named `label` in messages) waiting
    /// at its end; `waits` if it takes no other event meanwhile.
    pub(crate) fn then(&self, key: ObjectKey, label: String, waits: bool) -> CallChain {
        CallChain(Some(Arc::new(Link {
            key,
            label,
            waits,
            before: self.clone(),
        })))
    }

    /// How many objects wait in this chain.
    pub(crate) fn depth(&self) -> usize {
        let mut depth = 0;
        let mut at = &self.0;
        while let Some(link) = at {
            depth += 1;
            at = &link.before.0;
        }
        depth
    }

    /// The objects waiting, first caller first: (key, label, whether it
    /// takes no other event meanwhile).
    pub(crate) fn links(&self) -> Vec<(ObjectKey, String, bool)> {
        let mut links = Vec::new();
        let mut at = &self.0;
        while let Some(link) = at {
            links.push((link.key, link.label.clone(), link.waits));
            at = &link.before.0;
        }
        links.reverse();
        links
    }

    /// The objects waiting, first caller first: `A → B → C`.
    fn path(&self) -> String {
        let mut labels = Vec::new();
        let mut at = &self.0;
        while let Some(link) = at {
            labels.push(link.label.as_str());
            at = &link.before.0;
        }
        labels.reverse();
        labels.join(" → ")
    }

    /// If a call to `key` would come back to an object that waits in this
    /// chain and takes no other event meanwhile: the error message naming
    /// the cycle.
    fn cycle_to(&self, key: ObjectKey, label: &str) -> Option<String> {
        let mut links = Vec::new();
        let mut at = &self.0;
        while let Some(link) = at {
            links.push(link);
            at = &link.before.0;
        }
        let first = links.iter().rposition(|l| l.key == key && l.waits)?;
        let mut path: Vec<&str> = links[..=first]
            .iter()
            .rev()
            .map(|l| l.label.as_str())
            .collect();
        path.push(label);
        Some(format!(
            "call cycle {}: {} is waiting on this chain of calls and takes no other event until it \
             returns (a blocking call, or blockConcurrencyWhile), so the call would deadlock; \
             refused",
            path.join(" → "),
            links[first].label
        ))
    }
}

/// Converts an HTTP request to the contract's record.
pub(crate) fn to_wit_request(request: http::Request<Bytes>) -> WitRequest {
    let (parts, body) = request.into_parts();
    let url = if parts.uri.scheme().is_some() && parts.uri.authority().is_some() {
        parts.uri.to_string()
    } else {
        // The Host header only if it is an authority (host and port): it
        // must not move the path the guest sees (`Host: x/sql#`).
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| is_host_and_port(h))
            .unwrap_or("localhost");
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        format!("http://{host}{path}")
    };
    WitRequest {
        method: parts.method.as_str().to_owned(),
        url,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// Whether `value` is a `Host` header's host and optional port: an
/// authority without user information, nothing before or after it.
fn is_host_and_port(value: &str) -> bool {
    !value.is_empty()
        && !value.contains('@')
        && value
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == value)
}

/// Headers a guest may not set on a response: hyper frames the body itself
/// (a `Content-Length` that contradicts the body would split responses on
/// a keep-alive connection), and hop-by-hop headers belong to the server.
const FRAMING_HEADERS: [http::HeaderName; 4] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::UPGRADE,
];

/// Converts a guest's response to an HTTP response.
pub(crate) fn from_wit_response(response: GuestResponse) -> Result<http::Response<Body>> {
    let GuestResponse {
        record: response,
        stream,
    } = response;
    let bad =
        |what: String| Error::new(ErrorKind::GuestError, format!("the guest returned {what}"));
    let status = http::StatusCode::from_u16(response.status)
        .map_err(|_| bad(format!("an invalid status code {}", response.status)))?;
    let mut builder = http::Response::builder().status(status);
    for (name, value) in &response.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("an invalid header name {name:?}")))?;
        if FRAMING_HEADERS.contains(&name) {
            continue;
        }
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| bad(format!("an invalid value for header {name}")))?;
        builder = builder.header(name, value);
    }
    match (response.status, response.websocket) {
        (101, Some(socket)) => builder = builder.extension(AcceptedWebSocket(socket)),
        (101, None) => {
            return Err(bad(
                "a 101 response without a WebSocket (accept one and pass its client end as `webSocket`)".to_owned(),
            ));
        }
        (status, Some(_)) => {
            return Err(bad(format!(
                "a WebSocket with status {status}; a WebSocket goes with status 101"
            )));
        }
        _ => {}
    }
    let body = match stream {
        Some(stream) => Body::streamed(stream),
        None => Body::from(response.body),
    };
    builder
        .body(body)
        .map_err(|e| bad(format!("an invalid response: {e}")))
}

/// The WebSocket a 101 response from an object hands to its client, in the
/// response's extensions. Whoever holds the client's connection upgrades it
/// and gives it to [`Host::accept_websocket`](crate::Host::accept_websocket),
/// as `dohost serve` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedWebSocket(pub(crate) u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ObjectKey {
        ObjectKey::new(0, &[n; 32])
    }

    #[test]
    fn a_call_back_into_a_waiting_object_is_a_cycle() {
        let chain =
            CallChain::default()
                .then(key(1), "A:a".into(), true)
                .then(key(2), "B:b".into(), true);
        let cycle = chain.cycle_to(key(1), "A:a").expect("A waits on B");
        assert!(
            cycle.starts_with("call cycle A:a → B:b → A:a: A:a is waiting"),
            "{cycle}"
        );
        // The cycle is named from the first time the callee waits.
        let longer = chain.then(key(3), "C:c".into(), true);
        let cycle = longer.cycle_to(key(2), "B:b").expect("B waits on C");
        assert!(cycle.starts_with("call cycle B:b → C:c → B:b"), "{cycle}");
    }

    #[test]
    fn calls_to_objects_outside_the_chain_are_no_cycle() {
        assert!(CallChain::default().cycle_to(key(1), "A:a").is_none());
        let chain = CallChain::default().then(key(1), "A:a".into(), true);
        assert!(chain.cycle_to(key(2), "B:b").is_none());
        // An object that takes other events while it waits may be called back.
        let open = CallChain::default().then(key(1), "A:a".into(), false);
        assert!(open.cycle_to(key(1), "A:a").is_none());
        // Chains are values: extending one leaves the other as it was.
        let _other = chain.then(key(2), "B:b".into(), true);
        assert!(chain.cycle_to(key(2), "B:b").is_none());
    }

    #[test]
    fn the_guest_sees_a_url_from_the_request_line_and_a_valid_host() {
        let url = |host: &str| {
            let request = http::Request::get("/count?x=1")
                .header(http::header::HOST, host)
                .body(Bytes::new())
                .unwrap();
            to_wit_request(request).url
        };
        assert_eq!(url("example.com:8787"), "http://example.com:8787/count?x=1");
        assert_eq!(url("[::1]:80"), "http://[::1]:80/count?x=1");
        for hostile in ["x/sql#", "x?y", "user@x", "x#", "", "a b"] {
            assert_eq!(url(hostile), "http://localhost/count?x=1", "{hostile:?}");
        }
    }

    #[test]
    fn a_guest_cannot_frame_its_response() {
        let record = super::super::bindings::WitResponse {
            status: 200,
            headers: vec![
                ("content-length".into(), "2".into()),
                ("Transfer-Encoding".into(), "chunked".into()),
                ("x-kept".into(), "yes".into()),
            ],
            body: b"hello".to_vec(),
            stream: None,
            websocket: None,
        };
        let response = from_wit_response(GuestResponse {
            record,
            stream: None,
        })
        .unwrap();
        assert_eq!(response.headers().len(), 1, "{:?}", response.headers());
        assert_eq!(response.headers()["x-kept"], "yes");
    }
}
