//! The world outside dohost, for the outbound tests: a real HTTP server on
//! loopback, run by the test process.
//!
//! - `GET /hello`: `hello`.
//! - `POST /echo`: the request body back.
//! - `GET /slow?ms=<ms>`: `slow` after `<ms>` milliseconds.
//! - `GET /redirect`: a 302 to `/hello`.
//! - `POST /v1/traces`: 200, as an OpenTelemetry collector answers an
//!   OTLP/HTTP export.
//! - anything else: 404.
//!
//! Every request is recorded (method, path, body).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path and query.
    pub path: String,
    pub body_len: usize,
    pub body: Bytes,
}

/// A running server; it stops with the test's runtime.
pub struct Outside {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Outside {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Outside {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Outside { addr, seen }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the server received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests for `path` so far.
    pub fn seen_path(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        body_len: body.len(),
        body: body.clone(),
    });
    let reply = |status: u16, body: Bytes| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(body))
            .expect("response")
    };
    let (route, query) = path.split_once('?').unwrap_or((&path, ""));
    Ok(match (method.as_str(), route) {
        ("GET", "/hello") => reply(200, Bytes::from_static(b"hello")),
        ("POST", "/echo") => reply(200, body),
        ("GET", "/slow") => {
            let ms = query
                .strip_prefix("ms=")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            reply(200, Bytes::from_static(b"slow"))
        }
        ("GET", "/redirect") => hyper::Response::builder()
            .status(302)
            .header("location", "/hello")
            .body(Full::new(Bytes::new()))
            .expect("response"),
        ("POST", "/v1/traces") => reply(200, Bytes::new()),
        _ => reply(404, Bytes::from_static(b"no such route")),
    })
}
