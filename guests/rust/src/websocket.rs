//! WebSockets the host holds for the object (Cloudflare's WebSocket
//! Hibernation API).
//!
//! An object accepts a socket while it handles an upgrade request
//! ([`Request::is_websocket_upgrade`]) with [`State::accept_websocket`],
//! and answers with [`Response::websocket`]. From then each message,
//! close and error on the socket is an event: the class's
//! [`DurableObject::websocket_message`], [`websocket_close`] and
//! [`websocket_error`]. The host holds the sockets, so the object may leave
//! memory while they stay open; the next message activates it again, and
//! [`State::websockets`], tags and attachments are all still there.
//!
//! [`websocket_close`]: crate::DurableObject::websocket_close
//! [`websocket_error`]: crate::DurableObject::websocket_error

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::websocket as host;
use crate::{Error, Result};

#[cfg(doc)]
use crate::{DurableObject, Request, Response, State};

/// One of the object's WebSockets. Cheap to copy; two values are equal when
/// they name the same socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocket {
    id: u64,
}

/// A message on a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSocketMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl From<host::Message> for WebSocketMessage {
    fn from(m: host::Message) -> Self {
        match m {
            host::Message::Text(t) => WebSocketMessage::Text(t),
            host::Message::Binary(b) => WebSocketMessage::Binary(b),
        }
    }
}

impl WebSocket {
    pub(crate) fn from_id(id: u64) -> WebSocket {
        WebSocket { id }
    }

    pub(crate) fn id(self) -> u64 {
        self.id
    }

    /// Sends a text message. It leaves once the writes the event made
    /// before it are durable, in the order sent.
    ///
    /// # Errors
    ///
    /// When the socket is closed or the message is over the size limit.
    pub fn send_text(&self, text: &str) -> Result<()> {
        host::send(self.id, &host::Message::Text(text.to_owned())).map_err(Error::new)
    }

    /// Sends a binary message, as [`WebSocket::send_text`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_text`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        host::send(self.id, &host::Message::Binary(bytes.to_vec())).map_err(Error::new)
    }

    /// Sends `value` as a JSON text message.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_text`], or when `value` cannot be serialised.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value)
            .map_err(|e| Error::new(format!("cannot serialise the message: {e}")))?;
        self.send_text(&text)
    }

    /// Closes the socket with `code` (1000, or 3000 to 4999) and `reason`
    /// (at most 123 bytes), after what was sent before. The object gets no
    /// close event for it.
    ///
    /// # Errors
    ///
    /// For another code, a longer reason, or a socket closed already.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        host::close(self.id, code, reason).map_err(Error::new)
    }

    /// The tags the socket was accepted with.
    pub fn tags(&self) -> Vec<String> {
        host::tags(self.id)
    }

    /// Keeps `value` (as JSON, at most 2,048 bytes, see [`crate::value`]) with the socket; it
    /// survives the object leaving memory (Cloudflare's
    /// `serializeAttachment`).
    ///
    /// # Errors
    ///
    /// When `value` cannot be serialised or is too large.
    pub fn serialize_attachment<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = crate::value::to_bytes(value)
            .map_err(|e| Error::new(format!("cannot serialise the attachment: {e}")))?;
        host::set_attachment(self.id, Some(&bytes)).map_err(Error::new)
    }

    /// What [`WebSocket::serialize_attachment`] kept, if anything.
    ///
    /// # Errors
    ///
    /// When it does not deserialise as `T`.
    pub fn deserialize_attachment<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        host::attachment(self.id)
            .map(|bytes| {
                crate::value::from_bytes(&bytes)
                    .map_err(|e| Error::new(format!("the attachment does not fit the type: {e}")))
            })
            .transpose()
    }

    /// When the host last answered this socket with the auto-response
    /// ([`State::set_websocket_auto_response`]), in milliseconds since the
    /// Unix epoch.
    pub fn auto_response_timestamp(&self) -> Option<u64> {
        host::auto_response_timestamp(self.id)
    }
}

/// Accepts a new socket with `tags`.
pub(crate) fn accept(tags: &[&str]) -> Result<WebSocket> {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    host::accept(&tags)
        .map(WebSocket::from_id)
        .map_err(Error::new)
}

/// The object's open sockets, with `tag` if given.
pub(crate) fn sockets(tag: Option<&str>) -> Vec<WebSocket> {
    host::sockets(tag)
        .into_iter()
        .map(WebSocket::from_id)
        .collect()
}

/// Sets or removes the auto-response.
pub(crate) fn set_auto_response(pair: Option<(&str, &str)>) -> Result<()> {
    let pair = pair.map(|(request, response)| host::AutoResponse {
        request: request.to_owned(),
        response: response.to_owned(),
    });
    host::set_auto_response(pair.as_ref()).map_err(Error::new)
}

/// The auto-response, if set.
pub(crate) fn auto_response() -> Option<(String, String)> {
    host::get_auto_response().map(|p| (p.request, p.response))
}
