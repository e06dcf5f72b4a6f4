//! Events for objects another node of the cluster owns (docs/cluster.md).
//!
//! Any node accepts any event. When this node does not own an object's
//! shard ([`dohost_store::Cluster`]), [`ClusterNode::forward`] sends the
//! event to the owner's internal address over HTTP/1 (keep-alive
//! connections, authenticated by the cluster's secret), and the owner runs
//! it as a local event ([`ClusterNode::handle`]) with the caller's call
//! chain, so cycles and depth are checked across nodes as on one. The
//! answer comes back whole, with its error kind, so `remote`, `retryable`
//! and `overloaded` mean what they mean locally.
//!
//! **One message each way.** `POST /_dohost/cluster/event` carries a
//! 4-byte big-endian length, a JSON head ([`EventHead`]) and then the raw
//! bytes: the request body of a fetch, or the arguments of a call. The
//! answer is the same for a fetch (its status and headers in
//! [`ResponseHead`]), the raw result of a call, or, with status 500 and
//! header `x-dohost-error`, an [`ErrorBody`].
//!
//! **Moves.** An owner that does not own the shard (any more) answers 421
//! without running anything; so does a node that cannot be reached. Both
//! were never delivered, so the caller beats (which also takes free
//! shards), and tries the new owner, until the lease time has passed twice;
//! then the event fails with [`ErrorKind::Unavailable`]. A connection lost
//! after the event was sent may have run it: that is an error, not a retry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dohost_store::{Cluster, ObjectKey};
use serde::{Deserialize, Serialize};

use super::bindings::{WitRequest, WitResponse};
use super::body::{Body, GuestResponse};
use super::object::{Answer, Request};
use super::stub::{CallChain, Stub};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::ClusterSettings;

/// The path of the internal endpoint.
pub(crate) const EVENT_PATH: &str = "/_dohost/cluster/event";
/// The header that carries the cluster's secret.
pub(crate) const SECRET_HEADER: &str = "x-dohost-cluster-secret";
/// The header of an answer that is an error ([`ErrorBody`]).
const ERROR_HEADER: &str = "x-dohost-error";

/// This node's part in the cluster: its membership and the client that
/// reaches the other nodes.
pub(crate) struct ClusterNode {
    pub(crate) membership: Cluster,
    secret: String,
    lease: Duration,
    client: reqwest::Client,
    /// Events being forwarded now: a stopping node waits for them.
    forwarding: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one forwarded event while it lives.
struct Forwarding(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What an event is and whom it is for.
#[derive(Serialize, Deserialize)]
struct EventHead {
    binding: String,
    id: String,
    name: Option<String>,
    /// The objects waiting on the event, first caller first: (object key
    /// in hex, label, whether it takes no other event meanwhile).
    chain: Vec<(String, String, bool)>,
    kind: EventKind,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum EventKind {
    /// A request for the object's `fetch`; the body follows the head.
    Fetch {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
    },
    /// An RPC call; the arguments follow the head.
    Call { method: String },
    /// The admin's "run the alarm now"; answered with an [`AdminOutcome`].
    RunAlarm,
    /// The admin's deletion of the object; answered with an
    /// [`AdminOutcome`] (`ok`: whether it had stored anything).
    Delete,
}

/// The answer to an admin event: the inner outcome of running an alarm,
/// or whether a deleted object existed.
#[derive(Serialize, Deserialize)]
struct AdminOutcome {
    existed: bool,
    error: Option<ErrorBody>,
}

/// The head of a fetch's answer; its body follows.
#[derive(Serialize, Deserialize)]
struct ResponseHead {
    status: u16,
    headers: Vec<(String, String)>,
}

/// An error answer.
#[derive(Serialize, Deserialize)]
struct ErrorBody {
    kind: String,
    message: String,
}

/// A 4-byte length, the JSON of `head`, then `rest`.
fn frame(head: &impl Serialize, rest: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(head).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + json.len() + rest.len());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(rest);
    out
}

/// Reads what [`frame`] wrote.
fn unframe<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<(T, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head = serde_json::from_slice(bytes.get(4..4 + len)?).ok()?;
    Some((head, &bytes[4 + len..]))
}

/// The name of an error kind on the wire.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "config",
        ErrorKind::NotFound => "not_found",
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::Component => "component",
        ErrorKind::GuestTrap => "guest_trap",
        ErrorKind::GuestError => "guest_error",
        ErrorKind::Overloaded => "overloaded",
        ErrorKind::Storage => "storage",
        ErrorKind::Build => "build",
        ErrorKind::Io => "io",
        ErrorKind::ShutDown => "shut_down",
        ErrorKind::Timeout => "timeout",
        ErrorKind::CallCycle => "call_cycle",
        ErrorKind::Unauthorized => "unauthorized",
        _ => "unavailable",
    }
}

/// The kind named `name` on the wire.
fn kind_of(name: &str) -> ErrorKind {
    [
        ErrorKind::Config,
        ErrorKind::NotFound,
        ErrorKind::BadRequest,
        ErrorKind::Component,
        ErrorKind::GuestTrap,
        ErrorKind::GuestError,
        ErrorKind::Overloaded,
        ErrorKind::Storage,
        ErrorKind::Build,
        ErrorKind::Io,
        ErrorKind::ShutDown,
        ErrorKind::Timeout,
        ErrorKind::CallCycle,
        ErrorKind::Unauthorized,
    ]
    .into_iter()
    .find(|kind| kind_name(*kind) == name)
    .unwrap_or(ErrorKind::Unavailable)
}

/// Why a forwarded event did not reach an owner that ran it.
enum Missed {
    /// It was never delivered: try again (after a beat).
    Again(String),
    /// It may have run, or it failed there: the caller's answer.
    Answer(Error),
}

impl ClusterNode {
    /// This node's part in the cluster `membership`.
    pub(crate) fn new(membership: Cluster, settings: &ClusterSettings) -> Result<ClusterNode> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_only()
            .no_proxy()
            .build()
            .map_err(|e| Error::config(format!("cluster: the client of other nodes: {e}")))?;
        Ok(ClusterNode {
            membership,
            secret: settings.secret.clone(),
            lease: settings.lease,
            client,
            forwarding: std::sync::Arc::default(),
        })
    }

    /// After this node left: keeps answering the others ("not here")
    /// until each has beaten once (a third of the lease) and knows the new
    /// owners, and until the events this node forwards (requests that
    /// reached it while it stopped) have their answers; at most twice the
    /// lease.
    pub(crate) async fn linger(&self) {
        let started = Instant::now();
        let learned = self.lease / 3 + Duration::from_millis(250);
        while started.elapsed() < self.lease * 2
            && (started.elapsed() < learned
                || self.forwarding.load(std::sync::atomic::Ordering::SeqCst) > 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this node owns `key`'s shard now.
    pub(crate) fn holds(&self, key: &ObjectKey) -> bool {
        self.membership.holds(key)
    }

    /// Sends `request` for `stub`'s object to the node that owns it and
    /// returns its answer; `None` once this node owns the object itself
    /// (the caller runs it here) and is not `closing`. While this node
    /// stops, it waits for its shards to move and forwards to their new
    /// owners.
    pub(crate) async fn forward(
        &self,
        stub: &Stub,
        key: ObjectKey,
        request: &Request,
        chain: &CallChain,
        closing: &std::sync::atomic::AtomicBool,
    ) -> Option<Result<Answer>> {
        let (kind, rest) = match request {
            Request::Fetch(req) => (
                EventKind::Fetch {
                    method: req.method.clone(),
                    url: req.url.clone(),
                    headers: req.headers.clone(),
                },
                req.body.as_slice(),
            ),
            Request::Call { method, args } => (
                EventKind::Call {
                    method: method.clone(),
                },
                args.as_slice(),
            ),
            Request::CallTarget { .. } => {
                return Some(Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{}: a target lent by an object on another node of the cluster cannot be called from this node",
                        stub.label()
                    ),
                )));
            }
        };
        let head = EventHead {
            binding: stub.binding().to_owned(),
            id: stub.id(),
            name: stub.name().map(str::to_owned),
            chain: chain
                .links()
                .into_iter()
                .map(|(key, label, waits)| (hex::encode(key.as_bytes()), label, waits))
                .collect(),
            kind,
        };
        self.route(key, &stub.label(), &head, rest, closing).await
    }

    /// Runs the admin's `kind` (run the alarm, delete) for object `id` of
    /// `namespace` on the node that owns it: `None` once this node owns it
    /// and is not `closing`.
    pub(crate) async fn forward_admin(
        &self,
        namespace: &super::Namespace,
        id: &[u8; 32],
        delete: bool,
        closing: &std::sync::atomic::AtomicBool,
    ) -> Option<Result<std::result::Result<bool, Error>>> {
        let key = ObjectKey::new(namespace.number(), id);
        let head = EventHead {
            binding: namespace.binding().to_owned(),
            id: hex::encode(id),
            name: None,
            chain: Vec::new(),
            kind: if delete {
                EventKind::Delete
            } else {
                EventKind::RunAlarm
            },
        };
        let label = super::stub::object_label(namespace.binding(), id, None);
        let answer = self.route(key, &label, &head, &[], closing).await?;
        Some(answer.and_then(|answer| {
            let Answer::Call(bytes) = answer else {
                return Err(Error::new(ErrorKind::Unavailable, "a mixed answer"));
            };
            let outcome: AdminOutcome = serde_json::from_slice(&bytes)
                .map_err(|_| Error::new(ErrorKind::Unavailable, "an unreadable admin answer"))?;
            Ok(match outcome.error {
                Some(e) => Err(Error::new(kind_of(&e.kind), e.message)),
                None => Ok(outcome.existed),
            })
        }))
    }

    /// Sends `head` and `rest` for `key` (named `label`) to the node that
    /// owns it, trying again while the shard moves.
    async fn route(
        &self,
        key: ObjectKey,
        label: &str,
        head: &EventHead,
        rest: &[u8],
        closing: &std::sync::atomic::AtomicBool,
    ) -> Option<Result<Answer>> {
        self.forwarding
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _counted = Forwarding(self.forwarding.clone());
        let call = !matches!(head.kind, EventKind::Fetch { .. });
        let body = Bytes::from(frame(head, rest));
        let deadline = Instant::now() + self.lease * 2;
        let mut last = String::from("no node owns its shard now");
        loop {
            if self.holds(&key) && !closing.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            if let Some(owner) = self.membership.owner(&key)
                && owner.node != self.membership.node()
            {
                match self.send(&owner.address, body.clone(), call).await {
                    Ok(answer) => return Some(Ok(answer)),
                    Err(Missed::Answer(e)) => return Some(Err(e)),
                    Err(Missed::Again(why)) => last = format!("node {} {why}", owner.node),
                }
            }
            if Instant::now() >= deadline {
                return Some(Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{label} is unavailable: {last}; its shard {} has had no reachable owner for {} ms (twice the lease time); retry",
                        self.membership.shard(&key),
                        (self.lease * 2).as_millis()
                    ),
                )));
            }
            // Beat now: it learns the new owner, and takes the shard if it
            // is free and this node wins it.
            if let Err(e) = self.membership.refresh_async().await {
                last = format!("(the cluster's database cannot be read: {e})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one framed event to `address` and reads its answer.
    async fn send(
        &self,
        address: &str,
        body: Bytes,
        call: bool,
    ) -> std::result::Result<Answer, Missed> {
        let sent = self
            .client
            .post(format!("http://{address}{EVENT_PATH}"))
            .header(SECRET_HEADER, &self.secret)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return Err(Missed::Again(format!("cannot be reached ({e})")));
            }
            Err(e) => {
                return Err(Missed::Answer(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the connection to the node at {address} was lost while it ran the event ({}); it may have run",
                        chain(&e)
                    ),
                )));
            }
        };
        let status = response.status().as_u16();
        let is_error = response.headers().contains_key(ERROR_HEADER);
        let bytes = response.bytes().await.map_err(|e| {
            Missed::Answer(Error::new(
                ErrorKind::Unavailable,
                format!("the answer of the node at {address} was cut off ({e})"),
            ))
        })?;
        if status == 421 {
            return Err(Missed::Again("does not own it (any more)".to_owned()));
        }
        if is_error {
            let error: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
                Missed::Answer(Error::new(
                    ErrorKind::Unavailable,
                    format!("the node at {address} answered {status} with an unreadable error"),
                ))
            })?;
            return Err(Missed::Answer(Error::new(
                kind_of(&error.kind),
                error.message,
            )));
        }
        if call {
            return Ok(Answer::Call(bytes.to_vec()));
        }
        let (head, rest): (ResponseHead, &[u8]) = unframe(&bytes).ok_or_else(|| {
            Missed::Answer(Error::new(
                ErrorKind::Unavailable,
                format!("the node at {address} answered with an unreadable response"),
            ))
        })?;
        Ok(Answer::Fetch(GuestResponse {
            record: WitResponse {
                status: head.status,
                headers: head.headers,
                body: rest.to_vec(),
                stream: None,
                websocket: None,
            },
            stream: None,
        }))
    }

    /// Runs an event another node forwarded (`body` as [`frame`] wrote
    /// it) on this node and answers it: 421 if this node does not own the
    /// object, 401 without the secret.
    pub(crate) async fn handle(
        &self,
        namespaces: &std::collections::BTreeMap<String, super::Namespace>,
        secret: Option<&[u8]>,
        body: &[u8],
    ) -> http::Response<Bytes> {
        if !secret.is_some_and(|s| constant_time_eq(s, self.secret.as_bytes())) {
            return error_response(
                401,
                &Error::new(
                    ErrorKind::Unauthorized,
                    "the cluster secret is missing or wrong",
                ),
            );
        }
        let Some((head, rest)) = unframe::<EventHead>(body) else {
            return error_response(
                400,
                &Error::new(ErrorKind::BadRequest, "an unreadable cluster event"),
            );
        };
        let answered = async {
            let namespace = super::namespace::find(namespaces, &head.binding)?;
            let id = namespace.id_from_string(&head.id)?;
            let stub = match &head.name {
                Some(name) => namespace.get_by_name(name),
                None => id.get(),
            };
            let mut chain = CallChain::default();
            for (key, label, waits) in head.chain {
                let key = hex::decode(&key)
                    .ok()
                    .and_then(|k| ObjectKey::from_bytes(&k))
                    .ok_or_else(|| Error::new(ErrorKind::BadRequest, "a corrupt call chain"))?;
                chain = chain.then(key, label, waits);
            }
            let request = match head.kind {
                EventKind::Fetch {
                    method,
                    url,
                    headers,
                } => Request::Fetch(std::sync::Arc::new(WitRequest {
                    method,
                    url,
                    headers,
                    body: rest.to_vec(),
                })),
                EventKind::Call { method } => Request::Call {
                    method,
                    args: rest.to_vec(),
                },
                EventKind::RunAlarm => return admin(&namespace, id.key_id(), false).await,
                EventKind::Delete => return admin(&namespace, id.key_id(), true).await,
            };
            stub.send_here(request, &chain).await
        };
        match answered.await {
            Ok(Answer::Call(result)) => http::Response::new(Bytes::from(result)),
            Ok(Answer::Fetch(response)) => {
                let record = response.record;
                let body = match response.stream {
                    Some(stream) => {
                        match Body::whole(http::Response::new(Body::streamed(stream))).await {
                            Ok(whole) => whole.into_body().to_vec(),
                            Err(e) => return error_response(500, &e),
                        }
                    }
                    None => record.body,
                };
                let head = ResponseHead {
                    status: record.status,
                    headers: record.headers,
                };
                http::Response::new(Bytes::from(frame(&head, &body)))
            }
            Err(e) if e.kind() == ErrorKind::Unavailable || e.kind() == ErrorKind::ShutDown => {
                error_response(421, &e)
            }
            Err(e) => error_response(500, &e),
        }
    }
}

/// Runs the admin's deletion (or "run the alarm now") of object `id` of
/// `namespace` here, for another node.
async fn admin(namespace: &super::Namespace, id: [u8; 32], delete: bool) -> Result<Answer> {
    let (existed, error) = if delete {
        (namespace.delete_object_here(&id).await?, None)
    } else {
        (true, namespace.run_alarm_here(&id).await?.err())
    };
    let outcome = AdminOutcome {
        existed,
        error: error.map(|e| ErrorBody {
            kind: kind_name(e.kind()).to_owned(),
            message: e.message().to_owned(),
        }),
    };
    Ok(Answer::Call(
        serde_json::to_vec(&outcome).unwrap_or_default(),
    ))
}

/// An error with its sources, outermost first.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// An error answer with `status`.
fn error_response(status: u16, error: &Error) -> http::Response<Bytes> {
    let body = ErrorBody {
        kind: kind_name(error.kind()).to_owned(),
        message: error.message().to_owned(),
    };
    let mut response =
        http::Response::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if status != 421 {
        response
            .headers_mut()
            .insert(ERROR_HEADER, http::HeaderValue::from_static("1"));
    }
    response
}

/// Whether `a` and `b` are equal, in a time that does not depend on where
/// they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
