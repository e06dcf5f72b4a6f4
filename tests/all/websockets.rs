//! WebSockets with hibernation: the real server on loopback, the probe's
//! sockets (`tests/guests/probe/src/sockets.rs`) and a real WebSocket
//! client (tokio-tungstenite). Echo, broadcast, tags, attachments that
//! survive the object leaving memory, the auto-response answered with the
//! object out of memory, a trap closing the sockets with 1011, the limits'
//! close codes, and many idle sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{Server, admin_stats, client, get, guests, write_config};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const TOKEN: &str = "websocket-test-token";

/// A server with the probe as PROBE, an idle timeout of `idle_ms`, the
/// admin API on, and `extra` appended to the configuration.
fn serve(dir: &std::path::Path, idle_ms: u64, extra: &str) -> Server {
    let config = write_config(
        dir,
        &format!(
            "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [limits]\nidle_timeout_ms = {idle_ms}\n[admin]\ntoken = {TOKEN:?}\n{extra}",
            guests().probe
        ),
    );
    Server::start(&config, &dir.join("data"))
}

/// Opens a socket to the probe object `room`.
async fn join(server: &Server, room: &str, query: &str) -> Ws {
    let url = format!("ws://{}/PROBE/{room}/websocket?{query}", server.addr());
    let (ws, response) = connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// The next text message on `ws`, within 10 s.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends `text` and returns the answer.
async fn ask(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    next_text(ws).await
}

/// The close frame `ws` receives next (skipping messages), within 10 s.
async fn close_code(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close within 10 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the socket failed instead of closing: {e}"),
        }
    }
}

/// The server's counters, from the admin API.
async fn stats(server: &Server) -> serde_json::Value {
    admin_stats(server, TOKEN).await
}

/// Waits until no object is in memory.
async fn wait_until_hibernated(server: &Server) {
    for _ in 0..300 {
        if stats(server).await["objects_in_memory"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the object never left memory: {}", stats(server).await);
}

/// The JSON list the probe keeps of close and error events.
async fn closes(server: &Server, room: &str) -> Vec<String> {
    let (status, body) = get(&client(), &server.url(&format!("/PROBE/{room}/kv/closes"))).await;
    if status == 404 || body == "not found" {
        return Vec::new();
    }
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("closes: {e}: {body}"))
}

/// Waits until the probe has noted a close or error starting with `what`.
async fn wait_for_close(server: &Server, room: &str, what: &str) -> Vec<String> {
    for _ in 0..300 {
        let closes = closes(server, room).await;
        if closes.iter().any(|c| c.starts_with(what)) {
            return closes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no close {what:?}; closes: {:?}",
        closes(server, room).await
    );
}

#[tokio::test]
async fn sockets_echo_broadcast_and_are_found_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), 60_000, "");
    let mut alice = join(&server, "lobby", "tags=red,admin&name=alice").await;
    let mut bob = join(&server, "lobby", "tags=red&name=bob").await;
    let mut carol = join(&server, "lobby", "tags=blue&name=carol").await;

    assert_eq!(ask(&mut alice, "echo:hello").await, "hello");
    alice
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    match alice.next().await.unwrap().unwrap() {
        Message::Binary(bytes) => assert_eq!(&bytes[..], &[0, 1, 2, 255]),
        other => panic!("expected the bytes back, got {other:?}"),
    }
    assert_eq!(ask(&mut bob, "whoami").await, "bob");
    assert_eq!(ask(&mut alice, "tags").await, r#"["red","admin"]"#);
    assert_eq!(ask(&mut carol, "tagged:red").await, "2");
    assert_eq!(ask(&mut carol, "tagged:admin").await, "1");
    assert_eq!(ask(&mut carol, "tagged:green").await, "0");

    carol.send(Message::text("broadcast:hi all")).await.unwrap();
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next_text(ws).await, "hi all");
    }

    // A client's close reaches the object's close handler, with the
    // socket's attachment still readable; the socket is no longer listed.
    bob.close(None).await.unwrap();
    wait_for_close(&server, "lobby", "bob:1005:true").await;
    assert_eq!(ask(&mut carol, "tagged:red").await, "1");
    // One that goes away without a close frame: 1006, not clean.
    drop(alice);
    wait_for_close(&server, "lobby", "alice:1006:false").await;
    assert_eq!(ask(&mut carol, "tagged:red").await, "0");

    // The object closes one: the client sees its code and reason, and the
    // object gets no close event for it.
    carol.send(Message::text("close:4000:bye")).await.unwrap();
    assert_eq!(close_code(&mut carol).await, (4000, "bye".to_owned()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !closes(&server, "lobby")
            .await
            .iter()
            .any(|c| c.starts_with("carol")),
        "{:?}",
        closes(&server, "lobby").await
    );
    assert_eq!(stats(&server).await["websockets"], 0);
}

#[tokio::test]
async fn a_broadcast_reaches_a_hundred_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), 60_000, "");
    let mut sockets = Vec::new();
    for i in 0..100 {
        sockets.push(join(&server, "hall", &format!("name=s{i}")).await);
    }
    for round in 0..3 {
        let text = format!("broadcast:round {round}");
        sockets[round * 7].send(Message::text(text)).await.unwrap();
        for ws in &mut sockets {
            assert_eq!(next_text(ws).await, format!("round {round}"));
        }
    }
    assert_eq!(stats(&server).await["websockets"], 100);
}

#[tokio::test]
async fn sockets_attachments_and_the_auto_response_outlive_the_object_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), 200, "");
    let mut alice = join(&server, "den", "tags=t1&name=alice").await;
    let mut bob = join(&server, "den", "name=bob").await;
    assert_eq!(ask(&mut alice, "auto:ping:pong").await, "auto set");
    let activations = stats(&server).await["activations"].as_u64().unwrap();

    wait_until_hibernated(&server).await;
    assert_eq!(stats(&server).await["websockets"], 2);
    // The auto-response is answered with the object out of memory.
    for _ in 0..3 {
        assert_eq!(ask(&mut bob, "ping").await, "pong");
    }
    let after = stats(&server).await;
    assert_eq!(after["objects_in_memory"], 0, "{after}");
    assert_eq!(
        after["activations"].as_u64().unwrap(),
        activations,
        "{after}"
    );

    // A message activates the object again, with its sockets, tags and
    // attachments.
    assert_eq!(ask(&mut alice, "whoami").await, "alice");
    assert_eq!(ask(&mut bob, "whoami").await, "bob");
    assert_eq!(ask(&mut bob, "tagged:t1").await, "1");
    let stamped = ask(&mut bob, "auto-at").await;
    assert!(stamped.parse::<u64>().is_ok(), "{stamped}");
    assert_eq!(ask(&mut alice, "auto-at").await, "none");
    assert_eq!(
        stats(&server).await["activations"].as_u64().unwrap(),
        activations + 1
    );
    bob.send(Message::text("broadcast:back")).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "back");
    assert_eq!(next_text(&mut bob).await, "back");
}

#[tokio::test]
async fn a_trap_closes_the_objects_sockets_with_1011_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), 60_000, "");
    let mut alice = join(&server, "fragile", "name=alice").await;
    let mut bob = join(&server, "fragile", "name=bob").await;
    let mut elsewhere = join(&server, "sturdy", "name=eve").await;
    alice.send(Message::text("panic")).await.unwrap();
    assert_eq!(close_code(&mut alice).await.0, 1011);
    assert_eq!(close_code(&mut bob).await.0, 1011);
    // Another object's sockets are untouched.
    assert_eq!(ask(&mut elsewhere, "echo:still here").await, "still here");
    let mut again = join(&server, "fragile", "name=carol").await;
    assert_eq!(ask(&mut again, "echo:works").await, "works");
    assert_eq!(ask(&mut again, "tagged:").await, "0");
    assert!(
        server
            .log_with("panic in a WebSocket handler")
            .contains("panic in a WebSocket handler")
    );
}

#[tokio::test]
async fn the_limits_close_sockets_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        60_000,
        "[websockets]\nmax_per_object = 2\nmax_message_bytes = 1024\nsend_buffer_bytes = 4096\nmax_tags = 2\n",
    );
    let mut big = join(&server, "limits", "name=big").await;
    let mut slow = join(&server, "limits", "name=slow").await;

    // A third socket for the object is refused, naming the limit.
    let url = format!("ws://{}/PROBE/limits/websocket?name=third", server.addr());
    match connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 500);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("max_per_object"), "{body}");
        }
        other => panic!("a third socket was not refused: {other:?}"),
    }
    // Too many tags are refused too, on another object.
    let url = format!("ws://{}/PROBE/tags/websocket?tags=a,b,c", server.addr());
    assert!(connect_async(&url).await.is_err());

    // An incoming message over the limit: 1009, and the object is told.
    big.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(close_code(&mut big).await.0, 1009);
    let closes = wait_for_close(&server, "limits", "big:error:").await;
    assert!(
        closes.iter().any(|c| c.contains("max_message_bytes")),
        "{closes:?}"
    );

    // The object may not send a message over the limit: its handler fails
    // (logged), the socket stays open.
    slow.send(Message::text("big:2000")).await.unwrap();
    assert_eq!(ask(&mut slow, "echo:after").await, "after");
    assert!(
        server.log_with("max_message_bytes").contains("2000 bytes"),
        "{}",
        server.log()
    );

    // More waiting to be sent than the send buffer holds: 1011.
    slow.send(Message::text("flood:10:1000")).await.unwrap();
    let (code, reason) = close_code(&mut slow).await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.contains("send_buffer_bytes"), "{reason}");
}

/// A socket closed before its upgrade came (by its object, or by the host
/// when its object traps or it overflows) still opens, so the client gets
/// the close frame and its code rather than a dropped connection; one its
/// failed event never handed over is dropped.
#[tokio::test]
async fn a_socket_closed_before_its_upgrade_still_gets_its_close_frame() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        60_000,
        "[websockets]\nmax_message_bytes = 1024\nsend_buffer_bytes = 4096\n",
    );
    let mut closed = join(&server, "early", "tags=t&name=closed&send=1:10&close=4000").await;
    assert_eq!(next_text(&mut closed).await, "x".repeat(10));
    assert_eq!(
        close_code(&mut closed).await,
        (4000, "closed before the upgrade".to_owned())
    );
    let mut flooded = join(&server, "early", "tags=t&name=flooded&send=5:1000").await;
    let (code, reason) = close_code(&mut flooded).await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.contains("send_buffer_bytes"), "{reason}");
    // One whose event failed is never handed over: it is dropped.
    let url = format!("ws://{}/PROBE/doomed/websocket?panic=1", server.addr());
    assert!(connect_async(&url).await.is_err());
    // None is left behind, and the object still takes sockets.
    let mut again = join(&server, "early", "tags=t&name=again").await;
    assert_eq!(ask(&mut again, "tagged:t").await, "1");
    let mut held = serde_json::Value::Null;
    for _ in 0..250 {
        held = stats(&server).await["websockets"].clone();
        if held == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, 1, "sockets left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_sockets_stay_open_with_their_object_out_of_memory() {
    const SOCKETS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), 300, "");
    let mut first = join(&server, "arena", "name=first").await;
    assert_eq!(ask(&mut first, "echo:warm").await, "warm");
    let before = server.rss();
    let joins = futures_util::stream::iter(0..SOCKETS - 1)
        .map(|i| {
            let server = &server;
            async move { join(server, "arena", &format!("name=s{i}")).await }
        })
        .buffer_unordered(64);
    let mut sockets: Vec<Ws> = joins.collect().await;
    sockets.push(first);
    wait_until_hibernated(&server).await;
    let after = server.rss();
    let stats = stats(&server).await;
    assert_eq!(stats["websockets"], SOCKETS, "{stats}");
    let per_socket = after.saturating_sub(before) / SOCKETS as u64;
    eprintln!(
        "{SOCKETS} idle hibernated WebSockets: server RSS {} MiB -> {} MiB, {per_socket} bytes per socket",
        before >> 20,
        after >> 20
    );
    assert!(
        per_socket < 64 * 1024,
        "{per_socket} bytes of RSS per idle socket"
    );

    // All still open: one message wakes the object and reaches every one.
    sockets[0]
        .send(Message::text("broadcast:everyone"))
        .await
        .unwrap();
    for ws in &mut sockets {
        assert_eq!(next_text(ws).await, "everyone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_outlive_a_code_reload() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::copy(&guests().probe, &wasm).unwrap();
    let host = dohost::Host::builder()
        .data_dir(dir.path().join("data"))
        .binding("PROBE", "Probe", &wasm)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dohost::server::serve(
        host.clone(),
        listener,
        dohost::ServerSettings::default(),
        std::future::pending(),
    ));
    let url = format!("ws://{addr}/PROBE/stage/websocket?tags=cast&name=alice");
    let (mut alice, _) = connect_async(&url).await.unwrap();
    assert_eq!(ask(&mut alice, "echo:act one").await, "act one");
    let activations = host.stats().activations;

    let reloading = host.clone();
    tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .unwrap()
        .unwrap();
    // The object restarts on the new code and finds its socket, its tags
    // and its attachment.
    assert_eq!(ask(&mut alice, "whoami").await, "alice");
    assert_eq!(ask(&mut alice, "tagged:cast").await, "1");
    assert_eq!(host.stats().activations, activations + 1);
    assert_eq!(host.stats().websockets, 1);
}
