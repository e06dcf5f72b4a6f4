//! `dohost:object/websocket`: the WebSockets the host holds for the object
//! (see [`crate::runtime::sockets`](crate::runtime)).

use crate::runtime::ObjectState;
use crate::runtime::bindings::object::dohost::object::websocket::{AutoResponse, Host, Message};
use crate::runtime::sockets::Frame;

impl Host for ObjectState {
    fn accept(&mut self, tags: Vec<String>) -> wasmtime::Result<Result<u64, String>> {
        let owner = self.io.owner();
        Ok(self.io.shared.sockets.accept(&owner, tags))
    }

    fn sockets(&mut self, tag: Option<String>) -> wasmtime::Result<Vec<u64>> {
        Ok(self
            .io
            .shared
            .sockets
            .list(self.io.identity.key, tag.as_deref()))
    }

    fn tags(&mut self, socket: u64) -> wasmtime::Result<Vec<String>> {
        Ok(self.io.shared.sockets.tags(self.io.identity.key, socket))
    }

    fn send(&mut self, socket: u64, message: Message) -> wasmtime::Result<Result<(), String>> {
        Ok(self.queue(socket, Frame::Message(message)))
    }

    fn send_many(
        &mut self,
        sockets: Vec<u64>,
        message: Message,
    ) -> wasmtime::Result<Result<(), String>> {
        let registry = &self.io.shared.sockets;
        if let Err(e) = registry.check_size(&message) {
            return Ok(Err(e));
        }
        for socket in registry.sendable(self.io.identity.key, &sockets) {
            self.io.sent.push((socket, Frame::Message(message.clone())));
        }
        Ok(Ok(()))
    }

    fn close(
        &mut self,
        socket: u64,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<Result<(), String>> {
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Ok(Err(format!(
                "close code {code} is not one an application may send: use 1000 or 3000 to 4999"
            )));
        }
        if reason.len() > 123 {
            return Ok(Err(format!(
                "the close reason is {} bytes; a close frame holds at most 123",
                reason.len()
            )));
        }
        Ok(self.queue(socket, Frame::Close { code, reason }))
    }

    fn set_attachment(
        &mut self,
        socket: u64,
        value: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .io
            .shared
            .sockets
            .set_attachment(self.io.identity.key, socket, value))
    }

    fn attachment(&mut self, socket: u64) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self
            .io
            .shared
            .sockets
            .attachment(self.io.identity.key, socket))
    }

    fn set_auto_response(
        &mut self,
        pair: Option<AutoResponse>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .io
            .shared
            .sockets
            .set_auto_response(self.io.identity.key, pair))
    }

    fn get_auto_response(&mut self) -> wasmtime::Result<Option<AutoResponse>> {
        Ok(self.io.shared.sockets.auto_response(self.io.identity.key))
    }

    fn auto_response_timestamp(&mut self, socket: u64) -> wasmtime::Result<Option<u64>> {
        Ok(self
            .io
            .shared
            .sockets
            .auto_response_at(self.io.identity.key, socket))
    }
}

impl ObjectState {
    /// Checks `frame` and keeps it for the end of the turn (the output
    /// gate).
    fn queue(&mut self, socket: u64, frame: Frame) -> Result<(), String> {
        self.io
            .shared
            .sockets
            .check_send(self.io.identity.key, socket, &frame)?;
        self.io.sent.push((socket, frame));
        Ok(())
    }
}
