//! One open socket's task (see the module above): it reads the client's
//! messages into the object's events, in order, and writes what the object
//! sends once each turn's writes are durable, until either side closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use super::{Abort, CLOSE_GRACE, Frame, Outgoing, Owner, SocketId};
use crate::error::ErrorKind;
use crate::runtime::bindings::object::dohost::object::websocket::Message;
use crate::runtime::object::{Event, SocketEvent};
use crate::runtime::shared::HostShared;
use dohost_store::pass_gate;

/// A close frame with `code` and `reason`, cut to the 123 bytes a close
/// frame holds.
fn close_frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code: code.into(),
        reason: reason[..end].into(),
    }
}

/// How a socket's task ended.
enum End {
    /// The object closed it (its close frame is sent).
    ByObject,
    /// The host closes it with this code and reason.
    ByHost(u16, String),
    /// The client closed it, or the connection ended: the object was told.
    ByClient,
    /// It failed: the host closes it with this code and reason, and the
    /// object was told.
    Failed(u16, String),
}

/// One open socket's task: reads messages into events, writes what the
/// object sends.
pub(super) struct Task {
    pub(super) shared: Arc<HostShared>,
    pub(super) socket: SocketId,
    pub(super) owner: Owner,
    pub(super) inbox: mpsc::UnboundedReceiver<Outgoing>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) abort: Arc<Abort>,
}

impl Task {
    pub(super) async fn run<S>(mut self, mut ws: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let end = self.serve(&mut ws).await;
        if let End::ByHost(code, reason) | End::Failed(code, reason) = &end {
            let frame = close_frame(*code, reason);
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
        }
        if matches!(end, End::ByObject | End::ByHost(..)) {
            self.shared.sockets.forget(self.socket);
        }
        // Let the close handshake finish, briefly.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }

    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            tokio::select! {
                biased;
                () = self.abort.notify.notified() => {
                    let (code, reason) = self.abort.take().unwrap_or((1011, String::new()));
                    return End::ByHost(code, reason);
                }
                out = self.inbox.recv() => {
                    let Some(Outgoing { frame, gate }) = out else {
                        return End::ByHost(1011, "the socket was dropped".to_owned());
                    };
                    self.queued.fetch_sub(frame.bytes(), Ordering::AcqRel);
                    if let Err(e) = pass_gate(gate).await {
                        return End::ByHost(
                            1011,
                            format!("the object's writes could not be made durable: {e}"),
                        );
                    }
                    let message = match frame {
                        Frame::Message(Message::Text(text)) => WsMessage::text(text),
                        Frame::Message(Message::Binary(bytes)) => WsMessage::binary(bytes),
                        Frame::Close { code, reason } => {
                            let frame = close_frame(code, &reason);
                            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
                            return End::ByObject;
                        }
                    };
                    let sent = tokio::select! {
                        sent = ws.send(message) => sent,
                        () = self.abort.notify.notified() => {
                            let (code, reason) = self.abort.take().unwrap_or((1011, String::new()));
                            return End::ByHost(code, reason);
                        }
                    };
                    if sent.is_err() {
                        self.client_left(1006, String::new(), false).await;
                        return End::ByClient;
                    }
                }
                incoming = ws.next() => {
                    let what = match incoming {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(answer) = self.shared.sockets.auto_answer(self.socket, &text) {
                                if ws.send(WsMessage::text(answer)).await.is_err() {
                                    self.client_left(1006, String::new(), false).await;
                                    return End::ByClient;
                                }
                                continue;
                            }
                            SocketEvent::Message(Message::Text(text.to_string()))
                        }
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            SocketEvent::Message(Message::Binary(bytes.to_vec()))
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = frame
                                .map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string()));
                            self.client_left(code, reason, true).await;
                            return End::ByClient;
                        }
                        // Pings are answered by the protocol.
                        Some(Ok(_)) => continue,
                        Some(Err(WsError::Capacity(e))) => {
                            let error = format!("{e}: larger than the limit ([websockets] max_message_bytes)");
                            self.shared.sockets.end(self.socket);
                            self.deliver(SocketEvent::Error(error.clone())).await;
                            return End::Failed(1009, error);
                        }
                        Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                            self.client_left(1006, String::new(), false).await;
                            return End::ByClient;
                        }
                        Some(Err(WsError::Protocol(e))) => {
                            let error = format!("WebSocket protocol error: {e}");
                            self.shared.sockets.end(self.socket);
                            self.deliver(SocketEvent::Error(error.clone())).await;
                            return End::Failed(1002, error);
                        }
                        Some(Err(_)) | None => {
                            self.client_left(1006, String::new(), false).await;
                            return End::ByClient;
                        }
                    };
                    self.deliver(what).await;
                }
            }
        }
    }

    /// The client closed the socket, or went away: the object's close
    /// event.
    async fn client_left(&self, code: u16, reason: String, clean: bool) {
        self.shared.sockets.end(self.socket);
        self.deliver(SocketEvent::Close {
            code,
            reason,
            clean,
        })
        .await;
    }

    /// Puts `what` in the object's mailbox, waiting while it is full; a
    /// close or error event that cannot be delivered forgets the socket.
    async fn deliver(&self, what: SocketEvent) {
        let ends = !matches!(what, SocketEvent::Message(_));
        let mut what = Some(what);
        let mut pause = Duration::from_millis(1);
        loop {
            let namespace = match self.shared.namespace(&self.owner.binding) {
                Ok(namespace) => namespace,
                Err(_) => break,
            };
            let event = Event::Socket {
                socket: self.socket,
                what: what.take().expect("put back on every retry"),
                sent: std::time::Instant::now(),
            };
            match namespace.deliver_returning(
                &self.owner.key.id(),
                self.owner.name.as_deref(),
                event,
            ) {
                Ok(()) => return,
                Err((e, Event::Socket { what: back, .. })) if e.kind() == ErrorKind::Overloaded => {
                    what = Some(back);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    tracing::debug!("a WebSocket event was not delivered: {e}");
                    break;
                }
            }
        }
        if ends {
            self.shared.sockets.forget(self.socket);
        }
    }
}
