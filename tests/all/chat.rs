//! The chat example (`examples/chat`): its Rust and Python rooms through a
//! real WebSocket client, and its JavaScript version driven in a real browser
//! (Debian's chromium, through chromedriver and fantoccini): two sessions
//! join one room, each sees the other's message, one leaves and the other
//! sees it go.

use std::time::Duration;

use fantoccini::{Client, Locator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::browser::{browser, chromedriver, wait_for};
use crate::support::{Server, admin_stats, client, example_config_file, get, write_config};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The admin token of the servers these tests start.
const TOKEN: &str = "chat-test-admin-token";

/// Serves the chat example's configuration `file` (in `examples/chat`),
/// with rooms that leave memory after 300 ms without events and the admin
/// API on; the server builds its components.
fn serve_chat(dir: &std::path::Path, file: &str) -> Server {
    let text = format!(
        "{}\n[limits]\nidle_timeout_ms = 300\n[admin]\ntoken = {TOKEN:?}\n",
        example_config_file("examples/chat", file)
    );
    Server::start(&write_config(dir, &text), &dir.join("data"))
}

/// Waits until no room is in memory (hibernated, its sockets open).
async fn wait_until_hibernated(server: &Server) {
    for _ in 0..300 {
        let stats = admin_stats(server, TOKEN).await;
        if stats["objects_in_memory"] == 0 && stats["websockets"].as_u64() > Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the room never left memory");
}

/// Joins `room` as `name`.
async fn join(server: &Server, room: &str, name: &str) -> Ws {
    let url = format!("ws://{}/rooms/{room}/websocket?name={name}", server.addr());
    connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .0
}

/// The next JSON message of `kind` on `ws`, skipping others.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within 10 s"))
            .expect("open")
            .expect("a message");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["type"] == kind {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn rust_rooms_broadcast_and_keep_the_last_hundred_messages() {
    rooms_broadcast_and_keep_the_last_hundred_messages("rust.toml").await;
}

#[tokio::test]
async fn python_rooms_broadcast_and_keep_the_last_hundred_messages() {
    rooms_broadcast_and_keep_the_last_hundred_messages("python.toml").await;
}

/// The chat protocol, through the rooms and worker of the chat example's
/// configuration `file`.
async fn rooms_broadcast_and_keep_the_last_hundred_messages(file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_chat(dir.path(), file);
    let (status, page) = get(&client(), &server.url("/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("dohost chat"), "{page}");

    let mut alice = join(&server, "garden", "alice").await;
    assert_eq!(next_of(&mut alice, "history").await["messages"], json!([]));
    assert_eq!(next_of(&mut alice, "joined").await["name"], "alice");
    let mut bob = join(&server, "garden", "bob").await;
    assert_eq!(next_of(&mut alice, "joined").await["name"], "bob");
    assert_eq!(
        next_of(&mut bob, "members").await["members"],
        json!(["alice", "bob"])
    );

    alice
        .send(Message::text(r#"{"text": "hello bob"}"#))
        .await
        .unwrap();
    for ws in [&mut alice, &mut bob] {
        let said = next_of(ws, "message").await;
        assert_eq!(
            (said["name"].as_str(), said["text"].as_str()),
            (Some("alice"), Some("hello bob"))
        );
    }
    bob.send(Message::text("not json")).await.unwrap();
    assert!(next_of(&mut bob, "error").await["error"].is_string());

    bob.close(None).await.unwrap();
    assert_eq!(next_of(&mut alice, "left").await["name"], "bob");
    assert_eq!(
        next_of(&mut alice, "members").await["members"],
        json!(["alice"])
    );

    // The room leaves memory with alice connected; her next message wakes
    // it, and it still knows her name (her socket's attachment).
    wait_until_hibernated(&server).await;
    alice
        .send(Message::text(r#"{"text": "anyone?"}"#))
        .await
        .unwrap();
    assert_eq!(next_of(&mut alice, "message").await["name"], "alice");

    // 105 messages: one who joins now sees the last 100, in order.
    for i in 0..105 {
        alice
            .send(Message::text(
                json!({ "text": format!("m{i}") }).to_string(),
            ))
            .await
            .unwrap();
    }
    for i in 0..105 {
        assert_eq!(
            next_of(&mut alice, "message").await["text"],
            format!("m{i}")
        );
    }
    let mut carol = join(&server, "garden", "carol").await;
    let history = next_of(&mut carol, "history").await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 100);
    assert_eq!((texts[0], texts[99]), ("m5", "m104"));
    // Another room is another object.
    let mut dave = join(&server, "cellar", "dave").await;
    assert_eq!(next_of(&mut dave, "history").await["messages"], json!([]));
}

/// Opens the page and joins `room` as `name`.
async fn join_in_browser(page: &Client, server: &Server, room: &str, name: &str) {
    page.goto(&server.url("/")).await.unwrap();
    page.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    let room_input = page.find(Locator::Css("#room")).await.unwrap();
    room_input.clear().await.unwrap();
    room_input.send_keys(room).await.unwrap();
    page.find(Locator::Css("#join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` and sends it.
async fn say(page: &Client, text: &str) {
    page.find(Locator::Css("#text"))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
    page.find(Locator::Css("#send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn two_browsers_chat_in_one_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_chat(dir.path(), "dohost.toml");
    let driver = chromedriver().await;
    let alice = browser(&driver).await;
    let bob = browser(&driver).await;

    join_in_browser(&alice, &server, "lobby", "alice").await;
    wait_for(&alice, "#members li", |m| m == ["alice"]).await;
    join_in_browser(&bob, &server, "lobby", "bob").await;
    wait_for(&alice, "#members li", |m| m == ["alice", "bob"]).await;
    wait_for(&bob, "#members li", |m| m == ["alice", "bob"]).await;

    // The room leaves memory with both members connected; the next message
    // activates it again, and it still knows who sent it (the socket's
    // attachment).
    wait_until_hibernated(&server).await;
    say(&alice, "hello from alice").await;
    wait_for(&bob, "#messages li", |m| {
        m.iter().any(|t| t == "alice: hello from alice")
    })
    .await;
    say(&bob, "hi alice").await;
    wait_for(&alice, "#messages li", |m| {
        m.iter().any(|t| t == "bob: hi alice")
    })
    .await;

    bob.find(Locator::Css("#leave"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&alice, "#messages li", |m| {
        m.iter().any(|t| t == "bob left")
    })
    .await;
    wait_for(&alice, "#members li", |m| m == ["alice"]).await;

    // One who joins later sees the history, from SQL.
    join_in_browser(&bob, &server, "lobby", "bob").await;
    wait_for(&bob, "#messages li", |m| {
        m.starts_with(&[
            "alice: hello from alice".to_owned(),
            "bob: hi alice".to_owned(),
        ])
    })
    .await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();

    // The JavaScript room's keep-alive is answered by the host, and a
    // message that is not JSON gets an error back.
    let mut probe = join(&server, "lobby", "probe").await;
    probe.send(Message::text("ping")).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), probe.next())
            .await
            .expect("an answer within 10 s")
            .unwrap()
            .unwrap();
        if message == Message::text("pong") {
            break;
        }
    }
    probe.send(Message::text("not json")).await.unwrap();
    assert!(next_of(&mut probe, "error").await["error"].is_string());
}
