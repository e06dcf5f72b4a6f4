//! The probe's WebSockets: `GET /websocket?tags=a,b&name=x` accepts one
//! (with those tags and the attachment `{"name": x}`; `send=<n>:<bytes>`
//! and `close=<code>` send messages and close it before it is handed over,
//! `panic=1` traps instead of handing it over).
//! Each text message is a command, answered on the same socket:
//!
//! - `echo:<text>`: `<text>` back; a binary message comes back as it is.
//! - `broadcast:<text>`: `<text>` to every socket of the object.
//! - `tagged:<tag>`: how many sockets have `<tag>`.
//! - `tags`: this socket's tags, as JSON.
//! - `whoami`: the attachment's `name`.
//! - `write:<key>`: stores the count of writes under `<key>`, then sends
//!   `written:<key>` (it must leave only once the write is durable).
//! - `auto:<request>:<response>`: sets the auto-response; `auto-off`
//!   removes it; `auto-at`: the auto-response timestamp of this socket.
//! - `big:<bytes>`: that many `x` back.
//! - `flood:<n>:<bytes>`: `<n>` messages of that many `x` back, at once.
//! - `close:<code>:<reason>`: closes this socket.
//! - `panic`: traps (all the object's sockets close with 1011).
//!
//! A close event appends `<name>:<code>:<clean>` to the JSON list under
//! `closes`; an error event appends `<name>:error:<message>`.

use dohost_sdk::{Error, Request, Response, Result, State, WebSocket, WebSocketMessage};
use serde_json::json;

use crate::query_param;

/// Accepts a socket for an upgrade request.
pub fn accept(state: &State, req: &Request) -> Result<Response> {
    if !req.is_websocket_upgrade() {
        return Ok(Response::text("expected a WebSocket upgrade").with_status(426));
    }
    let tags = query_param(req, "tags").unwrap_or_default();
    let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
    let ws = state.accept_websocket(&tags)?;
    let name = query_param(req, "name").unwrap_or_default();
    ws.serialize_attachment(&json!({ "name": name }))?;
    // Before the socket is handed over, the client gets `send=<n>:<bytes>`
    // messages of that many `x`, then the close with `close=<code>`.
    if let Some(send) = query_param(req, "send") {
        let parse = |n: &str| n.parse().map_err(|_| Error::new("send=<n>:<bytes>"));
        let (n, bytes) = send.split_once(':').unwrap_or((&send, "0"));
        let text = "x".repeat(parse(bytes)?);
        for _ in 0..parse(n)? {
            ws.send_text(&text)?;
        }
    }
    if query_param(req, "panic").is_some() {
        panic!("the probe was told to panic after accepting a WebSocket");
    }
    if let Some(code) = query_param(req, "close") {
        let code = code.parse().map_err(|_| Error::new("close=<code>"))?;
        ws.close(code, "closed before the upgrade")?;
    }
    Ok(Response::websocket(ws))
}

/// One message.
pub fn message(state: &State, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
    let text = match message {
        WebSocketMessage::Binary(bytes) => return ws.send_bytes(&bytes),
        WebSocketMessage::Text(text) => text,
    };
    let (command, arg) = text.split_once(':').unwrap_or((&text, ""));
    match command {
        "echo" => ws.send_text(arg),
        "broadcast" => {
            for other in state.websockets(None) {
                other.send_text(arg)?;
            }
            Ok(())
        }
        "tagged" => ws.send_text(&state.websockets(Some(arg)).len().to_string()),
        "tags" => ws.send_json(&ws.tags()),
        "whoami" => ws.send_text(&name(ws)),
        "write" => {
            let storage = state.storage();
            let count = storage.get::<u64>(arg)?.unwrap_or(0) + 1;
            storage.put(arg, &count)?;
            ws.send_text(&format!("written:{arg}"))
        }
        "auto" => {
            let (request, response) = arg.split_once(':').unwrap_or((arg, ""));
            state.set_websocket_auto_response(Some((request, response)))?;
            ws.send_text("auto set")
        }
        "auto-off" => {
            state.set_websocket_auto_response(None)?;
            ws.send_text("auto off")
        }
        "auto-at" => ws.send_text(
            &ws.auto_response_timestamp()
                .map_or("none".to_owned(), |t| t.to_string()),
        ),
        "big" => {
            let bytes: usize = arg.parse().map_err(|_| Error::new("big:<bytes>"))?;
            ws.send_text(&"x".repeat(bytes))
        }
        "flood" => {
            let (n, bytes) = arg.split_once(':').unwrap_or((arg, "0"));
            let n: usize = n.parse().map_err(|_| Error::new("flood:<n>:<bytes>"))?;
            let bytes: usize = bytes.parse().map_err(|_| Error::new("flood:<n>:<bytes>"))?;
            let text = "x".repeat(bytes);
            for _ in 0..n {
                ws.send_text(&text)?;
            }
            Ok(())
        }
        "close" => {
            let (code, reason) = arg.split_once(':').unwrap_or((arg, ""));
            let code = code
                .parse()
                .map_err(|_| Error::new("close:<code>:<reason>"))?;
            ws.close(code, reason)
        }
        "panic" => panic!("the probe was told to panic in a WebSocket handler"),
        _ => ws.send_text(&format!("unknown command {command:?}")),
    }
}

/// The name a socket was accepted with.
fn name(ws: WebSocket) -> String {
    ws.deserialize_attachment::<serde_json::Value>()
        .ok()
        .flatten()
        .and_then(|v| v["name"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Notes a close or error event under `closes`.
pub fn note_end(state: &State, ws: WebSocket, what: &str) -> Result<()> {
    let storage = state.storage();
    let mut closes: Vec<String> = storage.get("closes")?.unwrap_or_default();
    closes.push(format!("{}:{what}", name(ws)));
    storage.put("closes", &closes)
}
