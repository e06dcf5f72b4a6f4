//! The chat example's room in Rust: the same rooms as `chat.js`. Each room
//! holds its members' WebSockets with the Hibernation API (the room leaves
//! memory while they stay connected) and keeps the last 100 messages in
//! SQL.

use dohost_sdk::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketMessage, now_ms,
    params,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many messages a room keeps and shows to a member who joins.
const HISTORY: i64 = 100;

/// One chat room.
pub struct ChatRoom {
    state: State,
}

/// What a socket's attachment holds.
#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

/// A message as the room keeps and sends it.
#[derive(Serialize, Deserialize)]
struct Said {
    name: String,
    text: String,
    at: i64,
}

/// What a client sends.
#[derive(Deserialize)]
struct Incoming {
    text: String,
}

impl ChatRoom {
    fn history(&self) -> Result<Vec<Said>> {
        let mut said: Vec<Said> = self
            .state
            .sql()
            .exec(
                "SELECT name, text, at FROM messages ORDER BY id DESC LIMIT ?",
                params![HISTORY],
            )?
            .to_array_as()?;
        said.reverse();
        Ok(said)
    }

    fn members(&self) -> Vec<String> {
        self.state.websockets(None).into_iter().map(name).collect()
    }

    fn broadcast(&self, message: &serde_json::Value) -> Result<()> {
        for ws in self.state.websockets(None) {
            ws.send_json(message)?;
        }
        Ok(())
    }
}

/// The name a member joined with.
fn name(ws: WebSocket) -> String {
    ws.deserialize_attachment::<Member>()
        .ok()
        .flatten()
        .map_or_else(|| "anonymous".to_owned(), |m| m.name)
}

/// The `name` query parameter, percent-decoded and cut to 32 characters.
fn member_name(req: &Request) -> String {
    let raw = req
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .unwrap_or_default();
    let decoded = percent_decode(&raw.replace('+', " "));
    let name: String = decoded.trim().chars().take(32).collect();
    if name.is_empty() {
        "anonymous".to_owned()
    } else {
        name
    }
}

/// `%XX` escapes decoded (invalid UTF-8 is replaced).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DurableObject for ChatRoom {
    fn new(state: State, _env: Env) -> Self {
        // Both fail only on a broken database or a too-long pair, which
        // the first event reports.
        let _ = state.sql().exec(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             name TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL)",
            &[],
        );
        // Keep-alives are answered by the host without waking the room.
        let _ = state.set_websocket_auto_response(Some(("ping", "pong")));
        ChatRoom { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if !req.is_websocket_upgrade() {
            return Ok(
                Response::text("this is a chat room: connect with a WebSocket").with_status(426),
            );
        }
        let name = member_name(&req);
        let ws = self.state.accept_websocket(&[])?;
        ws.serialize_attachment(&Member { name: name.clone() })?;
        ws.send_json(&json!({ "type": "history", "messages": self.history()? }))?;
        self.broadcast(&json!({ "type": "joined", "name": name }))?;
        self.broadcast(&json!({ "type": "members", "members": self.members() }))?;
        Ok(Response::websocket(ws))
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
        let incoming = match &message {
            WebSocketMessage::Text(text) => serde_json::from_str::<Incoming>(text).ok(),
            WebSocketMessage::Binary(_) => None,
        };
        let Some(incoming) = incoming else {
            return ws
                .send_json(&json!({ "type": "error", "error": "send JSON: {\"text\": \"...\"}" }));
        };
        let text: String = incoming.text.trim().chars().take(1000).collect();
        if text.is_empty() {
            return Ok(());
        }
        let said = Said {
            name: name(ws),
            text,
            at: now_ms(),
        };
        let sql = self.state.sql();
        sql.exec(
            "INSERT INTO messages (name, text, at) VALUES (?, ?, ?)",
            params![said.name.as_str(), said.text.as_str(), said.at],
        )?;
        sql.exec(
            "DELETE FROM messages WHERE id <= (SELECT MAX(id) FROM messages) - ?",
            params![HISTORY],
        )?;
        self.broadcast(
            &json!({ "type": "message", "name": said.name, "text": said.text, "at": said.at }),
        )
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        self.broadcast(&json!({ "type": "left", "name": name(ws) }))?;
        self.broadcast(&json!({ "type": "members", "members": self.members() }))
    }
}

dohost_sdk::export_objects!(ChatRoom);
