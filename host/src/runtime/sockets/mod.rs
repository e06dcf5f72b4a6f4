//! WebSockets: the sockets the host holds for objects (Cloudflare's
//! WebSocket Hibernation API, `wit/websocket.wit`).
//!
//! **Ownership.** A socket belongs to the host, not to an instance. The
//! object accepts one (`websocket.accept`, with tags) while it handles an
//! upgrade request; the socket is *pending* until the 101 response that
//! names it reaches the edge, which hands the upgraded connection to
//! [`Sockets::open`]. From then a task per socket (`task.rs`) reads it and
//! writes what the object sends. The registry keeps each socket's tags,
//! attachment and outbox, and each object's auto-response, so an object
//! with nothing but open sockets leaves memory like any idle object, and
//! the next message activates it again with everything in place.
//!
//! **Events.** Each message, close and error goes to the object's mailbox
//! as an event, in the order the socket received them; a full mailbox
//! stops the reading (the client is pushed back by TCP) instead of failing
//! the message. A text message equal to the object's auto-response request
//! is answered here without an event.
//!
//! **Output gate.** What a turn sends is queued on the socket's outbox
//! when the turn ends, with the gate of the turn's writes; the socket's
//! task passes each gate before it writes, so messages leave in order and
//! only once the writes before them are durable.
//!
//! **Limits.** Past `[websockets] send_buffer_bytes` waiting on one socket
//! (a client that does not read) the socket is closed with 1011; an
//! incoming message larger than `max_message_bytes` closes it with 1009
//! and gives the object an error event. A trap closes all the object's
//! sockets with 1011, and shutdown all sockets with 1001.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::task::TaskTracker;

use super::bindings::object::dohost::object::websocket::{AutoResponse, Message};
use super::shared::HostShared;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::WebSocketSettings;
use dohost_store::{Gate, ObjectKey};

mod task;

use task::Task;

/// A socket's number, unique in the process.
pub(crate) type SocketId = u64;

/// How long a pending socket waits for its upgrade before it is dropped.
const PENDING_LIFETIME: Duration = Duration::from_secs(60);

/// How long a closing socket waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The object a socket belongs to, as the mailbox needs it.
#[derive(Clone)]
pub(crate) struct Owner {
    pub(crate) key: ObjectKey,
    pub(crate) binding: Arc<str>,
    pub(crate) name: Option<String>,
}

/// What an object sends on a socket.
pub(crate) enum Frame {
    Message(Message),
    Close { code: u16, reason: String },
}

impl Frame {
    fn bytes(&self) -> usize {
        match self {
            Frame::Message(message) => message_bytes(message),
            Frame::Close { reason, .. } => reason.len(),
        }
    }
}

fn message_bytes(message: &Message) -> usize {
    match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
    }
}

/// A frame on its way out, with the gate it waits for.
struct Outgoing {
    frame: Frame,
    gate: Option<Gate>,
}

/// Why a socket's task must stop at once: a close code and reason.
#[derive(Default)]
struct Abort {
    why: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl Abort {
    fn raise(&self, code: u16, reason: String) {
        let mut why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if why.is_none() {
            *why = Some((code, reason));
            self.notify.notify_one();
        }
    }

    fn take(&self) -> Option<(u16, String)> {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Where a socket is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, its upgrade not yet done.
    Pending,
    Open,
    /// The object closed it, or the host is closing it. If that happened
    /// before its upgrade came, the upgrade still starts its task, which
    /// sends the close frame at once: the client sees the code, not a
    /// dropped connection.
    Closing,
    /// The client closed it (or it failed): only its close or error event
    /// is left.
    Ended,
}

struct Socket {
    owner: Owner,
    tags: Vec<String>,
    attachment: Option<Vec<u8>>,
    auto_response_at: Option<u64>,
    phase: Phase,
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// Taken by the socket's task when the socket opens.
    inbox: Option<mpsc::UnboundedReceiver<Outgoing>>,
    /// When the object accepted it: an upgrade not come by
    /// [`PENDING_LIFETIME`] after it never will.
    accepted: Instant,
    /// A response handing it over left its object: its upgrade may come.
    handed_over: bool,
    /// Bytes in the outbox.
    queued: Arc<AtomicUsize>,
    abort: Arc<Abort>,
}

impl Socket {
    /// Whether messages may still be sent on it.
    fn sendable(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Pending)
    }

    /// Closes it with `code` and `reason` at once, whatever waits in its
    /// outbox.
    fn abort(&mut self, code: u16, reason: String) {
        if self.sendable() {
            self.phase = Phase::Closing;
            self.abort.raise(code, reason);
        }
    }

    /// Queues `frame` behind `gate`; past the send buffer, aborts the
    /// socket instead.
    fn push(&mut self, frame: Frame, gate: Option<Gate>, settings: &WebSocketSettings) {
        let bytes = frame.bytes();
        let queued = self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if queued > settings.send_buffer_bytes {
            self.abort(
                1011,
                format!(
                    "the client reads too slowly: {queued} bytes wait to be sent, past the limit ([websockets] send_buffer_bytes)"
                ),
            );
            return;
        }
        if matches!(frame, Frame::Close { .. }) {
            self.phase = Phase::Closing;
        }
        let _ = self.outbox.send(Outgoing { frame, gate });
    }
}

/// An object's sockets and auto-response.
#[derive(Default)]
struct Held {
    sockets: BTreeSet<SocketId>,
    auto_response: Option<AutoResponse>,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<SocketId, Socket>,
    objects: HashMap<ObjectKey, Held>,
}

impl Registry {
    fn remove(&mut self, id: SocketId) {
        if let Some(socket) = self.sockets.remove(&id)
            && let Some(held) = self.objects.get_mut(&socket.owner.key)
        {
            held.sockets.remove(&id);
            if held.sockets.is_empty() && held.auto_response.is_none() {
                self.objects.remove(&socket.owner.key);
            }
        }
    }

    /// `socket` if `key` owns it.
    fn owned(&mut self, key: ObjectKey, socket: SocketId) -> Option<&mut Socket> {
        self.sockets.get_mut(&socket).filter(|s| s.owner.key == key)
    }
}

/// Every WebSocket the host holds.
pub(crate) struct Sockets {
    registry: Mutex<Registry>,
    settings: WebSocketSettings,
    next: AtomicU64,
    /// The sockets' tasks, so shutdown can let their close frames out.
    tasks: TaskTracker,
}

impl Sockets {
    pub(crate) fn new(settings: WebSocketSettings) -> Sockets {
        Sockets {
            registry: Mutex::default(),
            settings,
            // Not 0, so a forgotten default never names a socket.
            next: AtomicU64::new(1),
            tasks: TaskTracker::new(),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sockets open (or pending) now.
    pub(crate) fn count(&self) -> usize {
        self.registry().sockets.len()
    }

    /// Accepts a new socket for `owner` with `tags` (pending until
    /// [`Sockets::open`]).
    pub(crate) fn accept(
        &self,
        owner: &Owner,
        tags: Vec<String>,
    ) -> std::result::Result<SocketId, String> {
        let limits = &self.settings;
        if tags.len() > limits.max_tags {
            return Err(format!(
                "a WebSocket may have at most {} tags; got {}",
                limits.max_tags,
                tags.len()
            ));
        }
        for tag in &tags {
            let chars = tag.chars().count();
            if chars == 0 || chars > limits.max_tag_chars {
                return Err(format!(
                    "a WebSocket tag must have 1 to {} characters; {:?} has {chars}",
                    limits.max_tag_chars,
                    truncated(tag)
                ));
            }
        }
        let mut registry = self.registry();
        // Sockets whose upgrade never came (the response went elsewhere).
        let stale: Vec<SocketId> = registry
            .objects
            .get(&owner.key)
            .into_iter()
            .flat_map(|held| &held.sockets)
            .filter(|id| {
                let socket = &registry.sockets[*id];
                socket.inbox.is_some() && socket.accepted.elapsed() > PENDING_LIFETIME
            })
            .copied()
            .collect();
        for id in stale {
            registry.remove(id);
        }
        let held = registry.objects.entry(owner.key).or_default();
        if held.sockets.len() >= limits.max_per_object {
            return Err(format!(
                "the object has {} WebSockets, its limit ([websockets] max_per_object)",
                held.sockets.len()
            ));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        held.sockets.insert(id);
        let (outbox, inbox) = mpsc::unbounded_channel();
        registry.sockets.insert(
            id,
            Socket {
                owner: owner.clone(),
                tags,
                attachment: None,
                auto_response_at: None,
                phase: Phase::Pending,
                outbox,
                inbox: Some(inbox),
                accepted: Instant::now(),
                handed_over: false,
                queued: Arc::new(AtomicUsize::new(0)),
                abort: Arc::new(Abort::default()),
            },
        );
        Ok(id)
    }

    /// Notes that a response of `key` hands `socket` over: false unless it
    /// is one of `key`'s and waits for its upgrade (it may be closed
    /// already: the upgrade then sends its close frame).
    pub(crate) fn hand_over(&self, key: ObjectKey, socket: SocketId) -> bool {
        let mut registry = self.registry();
        let Some(s) = registry.owned(key, socket).filter(|s| s.inbox.is_some()) else {
            return false;
        };
        s.handed_over = true;
        true
    }

    /// `key`'s open sockets (and pending ones), oldest first; those with
    /// `tag` if given.
    pub(crate) fn list(&self, key: ObjectKey, tag: Option<&str>) -> Vec<SocketId> {
        let registry = self.registry();
        let Some(held) = registry.objects.get(&key) else {
            return Vec::new();
        };
        held.sockets
            .iter()
            .filter(|id| {
                let socket = &registry.sockets[*id];
                socket.sendable() && tag.is_none_or(|tag| socket.tags.iter().any(|t| t == tag))
            })
            .copied()
            .collect()
    }

    pub(crate) fn tags(&self, key: ObjectKey, socket: SocketId) -> Vec<String> {
        self.registry()
            .owned(key, socket)
            .map(|s| s.tags.clone())
            .unwrap_or_default()
    }

    /// Checks that `key` may send `frame` on `socket` now.
    pub(crate) fn check_send(
        &self,
        key: ObjectKey,
        socket: SocketId,
        frame: &Frame,
    ) -> std::result::Result<(), String> {
        if let Frame::Message(message) = frame {
            self.check_size(message)?;
        }
        let mut registry = self.registry();
        let Some(s) = registry.owned(key, socket) else {
            return Err(format!("WebSocket {socket} is not one of this object's"));
        };
        if !s.sendable() {
            return Err("the WebSocket is closed".to_owned());
        }
        Ok(())
    }

    /// Checks that `message` is within the size limit.
    pub(crate) fn check_size(&self, message: &Message) -> std::result::Result<(), String> {
        let bytes = message_bytes(message);
        if bytes > self.settings.max_message_bytes {
            return Err(format!(
                "the message is {bytes} bytes, larger than the limit of {} ([websockets] max_message_bytes)",
                self.settings.max_message_bytes
            ));
        }
        Ok(())
    }

    /// Which of `sockets` `key` may send on now.
    pub(crate) fn sendable(&self, key: ObjectKey, sockets: &[SocketId]) -> Vec<SocketId> {
        let mut registry = self.registry();
        sockets
            .iter()
            .copied()
            .filter(|&socket| registry.owned(key, socket).is_some_and(|s| s.sendable()))
            .collect()
    }

    /// Queues what a turn of `key` sent, behind `gate` (the turn's
    /// writes). Sockets closed since are skipped.
    pub(crate) fn send(&self, key: ObjectKey, sent: Vec<(SocketId, Frame)>, gate: Option<Gate>) {
        let mut registry = self.registry();
        for (socket, frame) in sent {
            if let Some(s) = registry.owned(key, socket)
                && s.sendable()
            {
                s.push(frame, gate.clone(), &self.settings);
            }
        }
    }

    pub(crate) fn set_attachment(
        &self,
        key: ObjectKey,
        socket: SocketId,
        value: Option<Vec<u8>>,
    ) -> std::result::Result<(), String> {
        let limit = self.settings.max_attachment_bytes;
        if let Some(value) = &value
            && value.len() > limit
        {
            return Err(format!(
                "the attachment is {} bytes serialized, larger than the limit of {limit}",
                value.len()
            ));
        }
        let mut registry = self.registry();
        let s = registry
            .owned(key, socket)
            .ok_or_else(|| format!("WebSocket {socket} is not one of this object's"))?;
        s.attachment = value;
        Ok(())
    }

    pub(crate) fn attachment(&self, key: ObjectKey, socket: SocketId) -> Option<Vec<u8>> {
        self.registry()
            .owned(key, socket)
            .and_then(|s| s.attachment.clone())
    }

    pub(crate) fn set_auto_response(
        &self,
        key: ObjectKey,
        pair: Option<AutoResponse>,
    ) -> std::result::Result<(), String> {
        let limit = self.settings.max_auto_response_chars;
        if let Some(pair) = &pair {
            for (side, text) in [("request", &pair.request), ("response", &pair.response)] {
                let chars = text.chars().count();
                if chars > limit {
                    return Err(format!(
                        "the auto-response {side} has {chars} characters, more than the limit of {limit}"
                    ));
                }
            }
        }
        let mut registry = self.registry();
        match pair {
            Some(pair) => registry.objects.entry(key).or_default().auto_response = Some(pair),
            None => {
                if let Some(held) = registry.objects.get_mut(&key) {
                    held.auto_response = None;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn auto_response(&self, key: ObjectKey) -> Option<AutoResponse> {
        self.registry()
            .objects
            .get(&key)
            .and_then(|h| h.auto_response.clone())
    }

    pub(crate) fn auto_response_at(&self, key: ObjectKey, socket: SocketId) -> Option<u64> {
        self.registry()
            .owned(key, socket)
            .and_then(|s| s.auto_response_at)
    }

    /// The auto-response to `text` on `socket`, if its object has one that
    /// matches (noting when it answered).
    fn auto_answer(&self, socket: SocketId, text: &str) -> Option<String> {
        let mut registry = self.registry();
        let key = registry.sockets.get(&socket)?.owner.key;
        let response = registry
            .objects
            .get(&key)?
            .auto_response
            .as_ref()
            .filter(|pair| pair.request == text)?
            .response
            .clone();
        if let Some(s) = registry.sockets.get_mut(&socket) {
            s.auto_response_at = u64::try_from(super::alarm::now_ms()).ok();
        }
        Some(response)
    }

    /// Closes every socket of `key` with `code` and `reason`, at once (the
    /// object was reset or deleted).
    pub(crate) fn close_object(&self, key: ObjectKey, code: u16, reason: &str) {
        let mut registry = self.registry();
        let ids: Vec<SocketId> = registry
            .objects
            .get(&key)
            .map(|h| h.sockets.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            close_now(&mut registry, id, code, reason);
        }
    }

    /// Closes every socket with `code` and `reason` (shutdown), and waits a
    /// little for the close frames to leave.
    pub(crate) async fn close_all(&self, code: u16, reason: &str) {
        {
            let mut registry = self.registry();
            let ids: Vec<SocketId> = registry.sockets.keys().copied().collect();
            for id in ids {
                close_now(&mut registry, id, code, reason);
            }
        }
        self.tasks.close();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.tasks.wait()).await;
    }

    /// Marks `socket` as ended by its client: it is no longer listed, and
    /// is forgotten when its close or error event ends.
    fn end(&self, socket: SocketId) {
        if let Some(s) = self.registry().sockets.get_mut(&socket) {
            s.phase = Phase::Ended;
        }
    }

    /// Forgets `socket` (its last event ended, or it closed).
    pub(crate) fn forget(&self, socket: SocketId) {
        self.registry().remove(socket);
    }

    /// Opens pending `socket` on `stream`, an upgraded connection, and
    /// runs it in a task of its own.
    pub(crate) fn open<S>(&self, shared: Arc<HostShared>, socket: SocketId, stream: S) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (owner, inbox, queued, abort) = {
            let mut registry = self.registry();
            let Some(s) = registry.sockets.get_mut(&socket) else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no WebSocket {socket} waits for its upgrade (it was closed, or its object was reset)"
                    ),
                ));
            };
            let Some(inbox) = s.inbox.take() else {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("WebSocket {socket} is open already"),
                ));
            };
            // A socket closed before now still starts, to send its close
            // frame.
            if s.phase == Phase::Pending {
                s.phase = Phase::Open;
            }
            (s.owner.clone(), inbox, s.queued.clone(), s.abort.clone())
        };
        let limits = &self.settings;
        let config = WebSocketConfig::default()
            // Many idle sockets: small buffers, grown for big messages.
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(limits.max_message_bytes))
            .max_frame_size(Some(limits.max_message_bytes));
        let task = Task {
            shared,
            socket,
            owner,
            inbox,
            queued,
            abort,
        };
        self.tasks.spawn(async move {
            let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
            task.run(ws).await;
        });
        Ok(())
    }
}

/// Closes `id` now, whatever waits in its outbox; if its upgrade has not
/// come yet, as soon as it comes, or, when no response handed it over
/// (its event failed), drops it.
fn close_now(registry: &mut Registry, id: SocketId, code: u16, reason: &str) {
    let Some(s) = registry.sockets.get_mut(&id) else {
        return;
    };
    if s.inbox.is_some() && !s.handed_over {
        registry.remove(id);
    } else {
        s.abort(code, reason.to_owned());
    }
}

/// A tag or text cut short for a message.
fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}
