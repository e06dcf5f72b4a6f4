//! The HTTP edge holds against clients that misbehave: silent, slow and
//! idle connections are closed, the connection cap and the descriptor limit
//! leave room for new clients, bodies are refused on the head and bounded
//! in memory, the `Host` header cannot move the path, a guest cannot frame
//! its response, and errors tell the client one line.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Server, client, get, router_config, write_config};

/// A config with the counter (COUNTER) and the probe (PROBE), plus `extra`.
fn config_with(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(router_config(dir)).unwrap();
    write_config(dir, &format!("{base}{extra}"))
}

/// Waits until the server closes `stream` (reads EOF or a reset), reading
/// and dropping what it sends; how long that took, or `None` after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `raw` on a new connection and reads until the server closes it
/// (the requests should say `Connection: close`).
async fn exchange(addr: &str, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response head from `stream`: its status line and headers.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte))
            .await
            .expect("a response head")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_clients_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        "[server]\nheader_timeout_ms = 300\nidle_timeout_ms = 800\nbody_timeout_ms = 300\nmin_body_rate = 1000\n",
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let addr = server.addr().to_owned();

    // A client that connects and says nothing: closed at the idle timeout.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert!(took >= Duration::from_millis(700), "closed after {took:?}");

    // A head sent a line at a time keeps bytes moving, but must be whole
    // within the header timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"GET /COUNTER/slow/ HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 256];
        if let Ok(0) = slow.try_read(&mut buf) {
            closed = true;
        }
        if closed || slow.write_all(b"X-Slow: yes\r\n").await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head trickled for 5 s was not cut off");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // A keep-alive connection after its response: closed when idle.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /COUNTER/idle/ HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        closed_within(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "an idle keep-alive connection stays open"
    );

    // A body below the minimum rate: 408, and the write never happened.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(
            b"PUT /PROBE/p/kv/k HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let head = read_head(&mut trickle).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let http = client();
    assert_eq!(get(&http, &server.url("/PROBE/p/kv/k")).await.0, 404);
    assert_eq!(
        get(&http, &server.url("/COUNTER/after/")).await,
        (200, "1".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "[server]\nmax_connections = 20\n");
    let server = Server::start(&config, &dir.path().join("data"));
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(server.addr()).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let http = client();
    for n in 1..=3 {
        let answered = tokio::time::timeout(
            Duration::from_secs(10),
            get(&http, &server.url("/COUNTER/capped/")),
        )
        .await
        .expect("a new client is served at the cap");
        assert_eq!(answered, (200, n.to_string()));
    }
    // The first connections were the ones closed.
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(5))
            .await
            .is_some()
    );
    let log = server.log();
    assert_eq!(log.matches("the cap (20").count(), 1, "logged once: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_new_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with_descriptors(&router_config(dir.path()), &dir.path().join("data"), 256);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    let http = client();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        get(&http, &server.url("/COUNTER/limited/")),
    )
    .await
    .expect("a new client is served at the descriptor limit");
    assert_eq!(answered, (200, "1".to_owned()));
}

const TOKEN: &str = "an-admin-token-for-the-edge-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_refused_on_the_head_and_bounded_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            "[admin]\ntoken = \"{TOKEN}\"\n[server]\nmax_request_body_bytes = 2000000\nbody_memory_bytes = 2500000\n"
        ),
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();
    assert_eq!(get(&http, &server.url("/COUNTER/warm/")).await.0, 200);
    let before = server.rss();

    // 95 MiB announced, 1 MiB sent: the answer comes on the head.
    let announced = 95 << 20;
    let chunk = vec![b'x'; 1 << 20];
    for (head, status) in [
        ("POST /NOPE/x/ HTTP/1.1", "HTTP/1.1 404"),
        ("POST /_dohost/objects HTTP/1.1", "HTTP/1.1 401"),
    ] {
        for _ in 0..3 {
            let mut stream = TcpStream::connect(server.addr()).await.unwrap();
            stream
                .write_all(
                    format!("{head}\r\nHost: a\r\nContent-Length: {announced}\r\n\r\n").as_bytes(),
                )
                .await
                .unwrap();
            let _ = stream.write_all(&chunk).await;
            let answer = read_head(&mut stream).await;
            assert!(answer.starts_with(status), "{head}: {answer}");
            assert!(answer.contains("connection: close"), "{answer}");
        }
    }
    // Over the per-request limit: 413 on the head too.
    let answer = exchange(
        server.addr(),
        b"PUT /PROBE/m/kv/big HTTP/1.1\r\nHost: a\r\nContent-Length: 3000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let grown = server.rss().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);

    // One body holds 2 MB of the 2.5 MB budget; another of 1 MB is refused
    // with 503 until the first is done.
    let mut first = TcpStream::connect(server.addr()).await.unwrap();
    first
        .write_all(b"PUT /COUNTER/m/ HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
        .await
        .unwrap();
    first.write_all(&vec![b'a'; 1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = b"PUT /COUNTER/m/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n";
    let answer = exchange(server.addr(), second).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("body_memory_bytes"), "{answer}");
    first
        .write_all(&vec![b'a'; 2_000_000 - 1000])
        .await
        .unwrap();
    let head = read_head(&mut first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut full = second.to_vec();
    full.extend(vec![b'b'; 1_000_000]);
    let answer = exchange(server.addr(), &full).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_cannot_move_the_path_and_a_guest_cannot_frame_its_response() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();
    assert_eq!(
        get(&http, &server.url("/COUNTER/h/")).await,
        (200, "1".to_owned())
    );
    // With the Host header pasted into the URL, the counter would see
    // `/sql` and answer its SQL row count, 1.
    let answer = exchange(
        server.addr(),
        b"GET /COUNTER/h/ HTTP/1.1\r\nHost: x/sql#\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("\r\n\r\n2"), "{answer}");

    // Two requests on one connection: each response is framed by its body,
    // whatever headers the guest set.
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /PROBE/f/framing HTTP/1.1\r\nHost: a\r\n\r\nGET /PROBE/f/framing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let responses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 2, "{out}");
    for response in responses {
        assert!(response.starts_with("200"), "{out}");
        assert!(response.contains("content-length: 5\r\n"), "{out}");
        assert!(!response.contains("transfer-encoding"), "{out}");
        assert!(response.ends_with("\r\n\r\nhello"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tell_the_client_one_line_and_the_log_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = router_config(dir.path());
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();

    let (status, body) = get(&http, &server.url("/PROBE/p/panic")).await;
    assert_eq!(status, 500);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(
        lines[0].starts_with("the object trapped and was reset: "),
        "{body}"
    );
    let id = lines[1]
        .strip_prefix("(error id ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no error id: {body}"));
    assert!(!body.contains("probe panic on request"), "{body}");
    // The log has the whole error under that id. The trap's own warning
    // also quotes the panic and may be written first, so wait for the id.
    let log = server.log_with(&format!("error id {id}"));
    let logged = log
        .lines()
        .position(|l| l.contains(&format!("error id {id}")))
        .unwrap_or_else(|| panic!("{id} not logged: {log}"));
    let rest: String = log
        .lines()
        .skip(logged)
        .take(80)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(rest.contains("probe panic on request"), "{rest}");

    // A 404 does not list the bindings; a name has a length limit.
    let (status, body) = get(&http, &server.url("/NOPE/x/")).await;
    assert_eq!(status, 404);
    assert!(!body.contains("PROBE"), "{body}");
    let long = "n".repeat(dohost::MAX_OBJECT_NAME_BYTES + 1);
    let (status, body) = get(&http, &server.url(&format!("/COUNTER/{long}/"))).await;
    assert_eq!(status, 400);
    assert!(body.contains("the limit is 2048"), "{body}");
    drop(server);

    // In development mode the client sees it all.
    let server = Server::start_with(&config, &dir.path().join("data"), &["--dev"]);
    let (status, body) = get(&http, &server.url("/PROBE/p/panic")).await;
    assert_eq!(status, 500);
    assert!(body.contains("probe panic on request"), "{body}");
    let (_, body) = get(&http, &server.url("/NOPE/x/")).await;
    assert!(
        body.contains("configured bindings: COUNTER, PROBE"),
        "{body}"
    );
}
