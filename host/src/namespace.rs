//! Namespaces, ids and stubs: how a request finds its object.
//!
//! A namespace is one `[[durable_objects.bindings]]` entry (`env.COUNTER`).
//! `id_from_name` derives an object's 32-byte id as a keyed BLAKE3 hash of
//! the name under the namespace's secret (kept in the data directory), so the
//! same name always reaches the same object and names in different namespaces
//! never collide. An id is written as 64 lowercase hex characters.
//!
//! A [`Stub`] delivers requests to the object's actor, activating the object
//! when it is not live, and releases the response only once the object's
//! writes are durable (the output gate, see [`crate::object`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::bindings::object::DurableObjectPre;
use crate::bindings::{WitRequest, WitResponse};
use crate::error::{Error, ErrorKind, Result};
use crate::host::HostShared;
use crate::object::{Actor, Event, Identity, LiveEntry, LiveObjects, ObjectState, pass_gate};
use crate::storage::ObjectKey;

/// A Durable Object namespace: the objects of one binding. Cheap to clone.
#[derive(Clone)]
pub struct Namespace(Arc<NamespaceInner>);

struct NamespaceInner {
    binding: String,
    class: Arc<str>,
    number: u32,
    secret: [u8; 32],
    pre: DurableObjectPre<ObjectState>,
    shared: Arc<HostShared>,
    live: Arc<LiveObjects>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("binding", &self.0.binding)
            .field("class", &self.0.class)
            .finish()
    }
}

impl Namespace {
    pub(crate) fn new(
        binding: String,
        class: String,
        (number, secret): (u32, [u8; 32]),
        pre: DurableObjectPre<ObjectState>,
        shared: Arc<HostShared>,
    ) -> Namespace {
        Namespace(Arc::new(NamespaceInner {
            binding,
            class: class.into(),
            number,
            secret,
            pre,
            shared,
            live: Arc::new(Mutex::new(HashMap::new())),
        }))
    }

    /// The binding name, e.g. `COUNTER`.
    pub fn binding(&self) -> &str {
        &self.0.binding
    }

    /// The class its objects run, e.g. `Counter`.
    pub fn class_name(&self) -> &str {
        &self.0.class
    }

    /// The id of the object called `name`: always the same for the same name
    /// in this namespace.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let id = *blake3::keyed_hash(&self.0.secret, name.as_bytes()).as_bytes();
        ObjectId {
            namespace: self.clone(),
            id,
            name: Some(name.to_owned()),
        }
    }

    /// Parses an id written as 64 hex characters.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] when `hex` is not 64 hexadecimal characters.
    pub fn id_from_string(&self, hex: &str) -> Result<ObjectId> {
        let mut id = [0u8; 32];
        if hex.len() != 64 || hex::decode_to_slice(hex, &mut id).is_err() {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!("{hex:?} is not an object id: ids are 64 hexadecimal characters"),
            ));
        }
        Ok(ObjectId {
            namespace: self.clone(),
            id,
            name: None,
        })
    }

    /// A stub for the object with `id`.
    pub fn get(&self, id: &ObjectId) -> Stub {
        Stub {
            namespace: self.clone(),
            id: id.id,
            name: id.name.clone(),
        }
    }

    /// The namespace's number in storage keys.
    pub(crate) fn number(&self) -> u32 {
        self.0.number
    }

    /// Puts an alarm event in the mailbox of the object with `id`,
    /// activating it if needed.
    pub(crate) fn deliver_alarm(
        &self,
        id: &[u8; 32],
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<()> {
        self.deliver(id, None, Event::Alarm { _permit: permit })
    }

    /// How many of this namespace's objects are in memory now.
    pub fn live_objects(&self) -> usize {
        self.0.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes every live object's mailbox: each finishes the events already
    /// queued and stops. Called at shutdown, after new events are refused.
    pub(crate) fn close_live(&self) {
        self.0
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Puts `event` in the object's mailbox, activating the object if needed.
    fn deliver(&self, id: &[u8; 32], name: Option<&str>, event: Event) -> Result<()> {
        let key = ObjectKey::new(self.0.number, id);
        let mut live = self.0.live.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that close_live takes: after shutdown has
        // closed the mailboxes, no new actor starts.
        if self.0.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::ShutDown,
                format!(
                    "the host is shut down; {} accepts no more events",
                    self.0.binding
                ),
            ));
        }
        let mut event = event;
        for _ in 0..2 {
            let sender = live
                .entry(key)
                .or_insert_with(|| self.spawn(key, id, name))
                .mailbox
                .clone();
            match sender.try_send(event) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(Error::new(
                        ErrorKind::Overloaded,
                        format!(
                            "object {} of {} is overloaded: {} events are already waiting; retry later",
                            hex::encode(id),
                            self.0.binding,
                            self.0.shared.settings.mailbox_capacity
                        ),
                    ));
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // The actor died (it never exits with events queued):
                    // start a new one.
                    live.remove(&key);
                    event = returned;
                }
            }
        }
        Err(Error::new(
            ErrorKind::Component,
            "the object could not be started",
        ))
    }

    fn spawn(&self, key: ObjectKey, id: &[u8; 32], name: Option<&str>) -> LiveEntry {
        static ACTORS: AtomicU64 = AtomicU64::new(0);
        let number = ACTORS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.0.shared.settings.mailbox_capacity);
        let identity = Identity {
            key,
            id_hex: hex::encode(id),
            name: name.map(str::to_owned),
            class: self.0.class.clone(),
        };
        let actor = Actor::new(
            number,
            identity,
            self.0.shared.clone(),
            self.0.pre.clone(),
            self.0.live.clone(),
        );
        self.0.shared.actors.spawn(actor.run(rx));
        LiveEntry {
            actor: number,
            mailbox: tx,
        }
    }
}

/// The id of one object in one namespace.
#[derive(Clone)]
pub struct ObjectId {
    namespace: Namespace,
    id: [u8; 32],
    name: Option<String>,
}

impl ObjectId {
    /// A stub for this object.
    pub fn get(&self) -> Stub {
        self.namespace.get(self)
    }

    /// The name this id was made from, if it was made from one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.id))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self}")?;
        if let Some(name) = &self.name {
            write!(f, ", name: {name:?}")?;
        }
        write!(f, ")")
    }
}

/// A client for one object.
#[derive(Clone)]
pub struct Stub {
    namespace: Namespace,
    id: [u8; 32],
    name: Option<String>,
}

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub")
            .field("binding", &self.namespace.0.binding)
            .field("id", &hex::encode(self.id))
            .field("name", &self.name)
            .finish()
    }
}

impl Stub {
    /// The object's id as 64 hex characters.
    pub fn id(&self) -> String {
        hex::encode(self.id)
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
    /// [`ErrorKind::Storage`] if its writes could not be made durable.
    pub async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let response = self.fetch_wit(to_wit_request(request)).await?;
        from_wit_response(response)
    }

    pub(crate) async fn fetch_wit(&self, req: WitRequest) -> Result<WitResponse> {
        let (reply, rx) = oneshot::channel();
        self.namespace.deliver(
            &self.id,
            self.name.as_deref(),
            Event::Fetch {
                req,
                name: self.name.clone(),
                reply,
            },
        )?;
        let reply = rx.await.map_err(|_| {
            Error::new(
                ErrorKind::GuestTrap,
                "the object stopped before it answered",
            )
        })?;
        pass_gate(reply.gate).await?;
        reply.result
    }
}

/// Converts an HTTP request to the contract's record.
pub(crate) fn to_wit_request(request: http::Request<Bytes>) -> WitRequest {
    let (parts, body) = request.into_parts();
    let url = if parts.uri.scheme().is_some() && parts.uri.authority().is_some() {
        parts.uri.to_string()
    } else {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
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

/// Converts the contract's response record to an HTTP response.
pub(crate) fn from_wit_response(response: WitResponse) -> Result<http::Response<Bytes>> {
    let bad =
        |what: String| Error::new(ErrorKind::GuestError, format!("the guest returned {what}"));
    let status = http::StatusCode::from_u16(response.status)
        .map_err(|_| bad(format!("an invalid status code {}", response.status)))?;
    let mut builder = http::Response::builder().status(status);
    for (name, value) in &response.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("an invalid header name {name:?}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| bad(format!("an invalid value for header {name}")))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Bytes::from(response.body))
        .map_err(|e| bad(format!("an invalid response: {e}")))
}
