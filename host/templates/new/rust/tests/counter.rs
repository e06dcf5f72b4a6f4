//! The counter counts: starts `dohost serve` on a free port with a fresh
//! data directory and asks it three times. Run with `cargo test`; it runs
//! the `dohost` on PATH, or the one DOHOST names.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `dohost serve`, stopped and its data removed when dropped.
struct Server {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Starts the server and waits until it says where it serves (the first
/// start builds the guests, which takes a while).
fn serve() -> Server {
    let dohost = std::env::var("DOHOST").unwrap_or_else(|_| "dohost".to_owned());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("dohost.toml");
    let data = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
    let mut child = Command::new(&dohost)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {dohost} ({e}): put dohost on PATH or set DOHOST"));
    let stderr = child.stderr.take().expect("the server's stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(" on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(Ok(addr.to_owned()));
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = tx.send(Err(log));
    });
    let addr = match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(Ok(addr)) => addr,
        Ok(Err(log)) => panic!("dohost serve stopped:\n{log}"),
        Err(_) => panic!("dohost serve did not start within 10 minutes"),
    };
    Server { child, addr, data }
}

/// GETs `path`: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (status, if chunked { unchunk(body) } else { body.to_owned() })
}

/// The body of a chunked response.
fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

#[test]
fn the_counter_counts() {
    let server = serve();
    for expected in ["1", "2", "3"] {
        let (status, body) = get(&server.addr, "/");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        assert_eq!(body, expected);
    }
}
