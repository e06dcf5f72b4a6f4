//! The HTTP front end of `dohost serve`: hyper 1 over tokio, one task per
//! connection, every request placed by [`Host::route`] on its head and
//! carried out by [`Host::fetch_routed`].
//!
//! What a client cannot do to the server ([`ServerSettings`], `[server]` in
//! `dohost.toml`):
//! - hold a connection without sending: a head must arrive within the
//!   header timeout from its first byte, and a connection with nothing
//!   moving and no request running is closed after the idle timeout;
//! - trickle a body: it must arrive within the body timeout plus its length
//!   over the minimum body rate (408 otherwise);
//! - make the server buffer what it will refuse: 401 and 404 are answered
//!   on the head, without reading the body; bodies over the request-body
//!   limit get 413, and past the memory all bodies together may hold, 503;
//! - exhaust connections or descriptors: at the connection cap (lowered to
//!   fit the descriptor limit) the oldest idle connection is closed for the
//!   new one, and a new one is refused with 503 only if none is idle.
//!
//! A WebSocket upgrade request is routed like any other; when the object
//! answers 101 with a socket it accepted, the edge completes the handshake
//! and hands the upgraded connection to [`Host::accept_websocket`]. From
//! then the connection is the socket's, outside these limits.
//!
//! Errors become plain-text responses that say what a client may know: the
//! message of a 4xx, and for a 5xx one line with an error id, the whole
//! error (a trap's backtrace, the guest's output) going to the log under
//! that id. With [`ServerSettings::debug_errors`] the response carries the
//! whole error too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::metrics::{Refusal, count_refusal};
use crate::{
    AcceptedWebSocket, Body, Error, ErrorKind, Host, RESERVED_DESCRIPTORS, ServerSettings,
};

/// Serves `host` on `listener` with `settings` until `shutdown` resolves,
/// and the metrics on [`ServerSettings::metrics_listen`] if it is set.
///
/// # Errors
///
/// An error if the metrics address cannot be bound; otherwise only if
/// accepting connections fails for good.
pub async fn serve(
    host: Host,
    listener: TcpListener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = connection_cap(settings.max_connections);
    let edge = Arc::new(Edge {
        host,
        budget: BodyBudget {
            used: AtomicUsize::new(0),
            limit: settings.body_memory,
        },
        connections: Connections {
            clock: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        },
        settings,
        at_cap: AtomicBool::new(false),
    });
    let metrics = match edge.settings.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on {addr} for the metrics ([server] metrics_listen): {e}"
                    ),
                )
            })?;
            tracing::info!("the metrics are at http://{addr}/metrics");
            Some(tokio::spawn(serve_metrics(edge.host.clone(), listener)))
        }
        None => None,
    };
    let sweeper = tokio::spawn(sweep(edge.clone()));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors: close the oldest idle
                    // connection and accept again.
                    let out_of_descriptors = matches!(e.raw_os_error(), Some(23 | 24));
                    let shed = out_of_descriptors && edge.connections.shed_oldest_idle();
                    if !edge.at_cap.swap(true, Ordering::Relaxed) {
                        let action = if out_of_descriptors {
                            "closing the oldest idle connections to make room"
                        } else {
                            "retrying"
                        };
                        tracing::warn!(
                            "accepting a connection failed ({e}); {action} (logged once until the server is below its limits again)"
                        );
                    }
                    if !shed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let open = edge.connections.len();
        if open >= cap {
            if !edge.at_cap.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{open} connections are open, the cap ({cap}; [server] max_connections and the descriptor limit): closing the oldest idle ones for new clients (logged once until the server is below its limits again)"
                );
            }
            if !edge.connections.shed_oldest_idle() {
                count_refusal(Refusal::Connections);
                tokio::spawn(refuse(stream, cap));
                continue;
            }
        } else if open < cap - cap / 10 {
            edge.at_cap.store(false, Ordering::Relaxed);
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(edge.clone(), stream));
    }
    sweeper.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(())
}

/// Serves `GET /metrics` (the Prometheus text, without the admin token) on
/// `listener`, the `[server] metrics_listen` address: a scraper's private
/// port. Anything else gets 404.
async fn serve_metrics(host: Host, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let host = host.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let reply = match (req.method(), req.uri().path()) {
                (&http::Method::GET, "/metrics") => match host.metrics_text() {
                    Some(text) => http::Response::builder()
                        .header(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
                        .body(http_body_util::Full::new(Bytes::from(text))),
                    None => http::Response::builder().status(404).body(
                        "metrics are off: this process installed no Prometheus recorder\n".into(),
                    ),
                },
                _ => http::Response::builder()
                    .status(404)
                    .body("this address serves GET /metrics only\n".into()),
            };
            async move { reply }
        });
        tokio::spawn(async move {
            let served = tokio::time::timeout(
                METRICS_CONNECTION_LIMIT,
                http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            )
            .await;
            if let Ok(Err(e)) = served {
                tracing::debug!("a metrics connection ended with an error: {e}");
            }
        });
    }
}

/// How long one connection to the metrics address may stay open: a
/// scraper connects, reads and leaves.
const METRICS_CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// The connection cap: `configured`, lowered to fit the process's
/// descriptor limit.
fn connection_cap(configured: usize) -> usize {
    let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let fits = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

/// What every connection shares.
struct Edge {
    host: Host,
    settings: ServerSettings,
    budget: BodyBudget,
    connections: Connections,
    /// The server is at a limit and said so (logged once per episode).
    at_cap: AtomicBool,
}

/// The open connections, for the timeouts and the cap.
struct Connections {
    clock: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

/// One open connection as the sweeper sees it. Times are milliseconds on
/// the [`Connections`] clock.
struct Conn {
    /// When bytes last moved either way.
    progress: AtomicU64,
    /// When the next request's head began (its first byte), plus one; 0
    /// when no head is under way.
    head_started: AtomicU64,
    /// Requests being handled (their response not yet produced).
    handling: AtomicUsize,
    /// Told to close.
    close: Notify,
}

impl Conn {
    fn idle(&self) -> bool {
        self.handling.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == 0
    }
}

impl Connections {
    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            progress: AtomicU64::new(self.now()),
            head_started: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            close: Notify::new(),
        });
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Closes the idle connection that moved bytes longest ago; whether
    /// there was one.
    fn shed_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = open
            .iter()
            .filter(|(_, c)| c.idle())
            .min_by_key(|(_, c)| c.progress.load(Ordering::Relaxed));
        match oldest {
            Some((_, conn)) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Closes connections past the header or the idle timeout.
async fn sweep(edge: Arc<Edge>) {
    let settings = &edge.settings;
    let period = (settings.header_timeout.min(settings.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let header = u64::try_from(settings.header_timeout.as_millis()).unwrap_or(u64::MAX);
    let idle = u64::try_from(settings.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let now = edge.connections.now();
        let open = edge
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for conn in open.values() {
            if conn.handling.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let head = conn.head_started.load(Ordering::Relaxed);
            let late_head = head > 0 && now.saturating_sub(head - 1) > header;
            let silent = now.saturating_sub(conn.progress.load(Ordering::Relaxed)) > idle;
            if late_head {
                // Counted once: the connection is closing.
                conn.head_started.store(0, Ordering::Relaxed);
                count_refusal(Refusal::Slow);
            }
            if late_head || silent {
                conn.close.notify_one();
            }
        }
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let body = format!(
        "the server has {cap} connections open, its limit, and none is idle; retry later\n"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves one connection until it ends or is told to close.
async fn connection(edge: Arc<Edge>, stream: TcpStream) {
    let (id, conn) = edge.connections.add();
    let io = Tracked {
        stream,
        conn: conn.clone(),
        edge: edge.clone(),
    };
    let service = {
        let edge = edge.clone();
        let conn = conn.clone();
        service_fn(move |req| {
            let edge = edge.clone();
            let handling = Handling::start(conn.clone());
            async move {
                let response = handle(&edge, req).await;
                // A streamed body keeps the request handling until it ends:
                // its pauses are the object's, not an idle client's.
                Ok::<_, Infallible>(response.map(|body| Sending {
                    body,
                    _handling: handling,
                }))
            }
        })
    };
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        ended = served => if let Err(e) = ended {
            tracing::debug!("connection ended with an error: {e}");
        },
        () = conn.close.notified() => tracing::debug!("connection closed: timed out or shed"),
    }
    edge.connections.remove(id);
}

/// A response body being sent, with its request's [`Handling`].
struct Sending {
    body: Body,
    _handling: Handling,
}

impl hyper::body::Body for Sending {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A request being handled on a connection, from its head to the end of
/// its response's body.
struct Handling(Arc<Conn>);

impl Handling {
    fn start(conn: Arc<Conn>) -> Self {
        conn.handling.fetch_add(1, Ordering::Relaxed);
        conn.head_started.store(0, Ordering::Relaxed);
        Handling(conn)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that tells its [`Conn`] when bytes move.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
    edge: Arc<Edge>,
}

impl Tracked {
    /// Notes that bytes moved, now; the time noted.
    fn moved(&self) -> u64 {
        let now = self.edge.connections.now();
        self.conn.progress.store(now, Ordering::Relaxed);
        now
    }

    /// Notes a write that moved bytes.
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.moved();
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = this.moved();
            if this.conn.handling.load(Ordering::Relaxed) == 0 {
                let _ = this.conn.head_started.compare_exchange(
                    0,
                    now + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The request-body memory all connections hold together.
struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    /// Takes `bytes` of the budget, if they are left.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Budget held by one request's body until its response is produced.
struct Held<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Held<'_> {
    fn grow(&mut self, bytes: usize) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

type Reply = hyper::Response<Body>;

async fn handle(edge: &Edge, req: hyper::Request<Incoming>) -> Reply {
    let (mut parts, body) = req.into_parts();
    let upgrade = websocket_key(&parts).map(|key| {
        let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        (key, on_upgrade)
    });
    let has_body = parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let route = match edge.host.route(&parts) {
        Ok(route) if route.reads_body() => route,
        Ok(route) => {
            // Answered on the head: the body is never read, so the
            // connection cannot carry another request.
            let answered = edge
                .host
                .fetch_routed(route, http::Request::from_parts(parts, Bytes::new()))
                .await;
            let reply = match answered {
                Ok(response) => response,
                Err(e) => error_response(edge, &e),
            };
            return closing_if(has_body, reply);
        }
        Err(e) => {
            count_refusal(Refusal::NoRoute);
            return closing_if(has_body, error_response(edge, &e));
        }
    };
    let mut held = Held {
        budget: &edge.budget,
        bytes: 0,
    };
    let body = match read_body(edge, &parts, body, &mut held).await {
        Ok(body) => body,
        Err(refusal) => {
            count_refusal(match refusal.status().as_u16() {
                408 => Refusal::Slow,
                413 => Refusal::TooLarge,
                503 => Refusal::BodyMemory,
                _ => Refusal::Malformed,
            });
            return closing_if(true, refusal);
        }
    };
    let result = edge
        .host
        .fetch_routed(route, http::Request::from_parts(parts, body))
        .await;
    drop(held);
    match result {
        Ok(response) => match response.extensions().get::<AcceptedWebSocket>().copied() {
            Some(accepted) => upgraded(edge, accepted, upgrade, response),
            None => response,
        },
        Err(e) => error_response(edge, &e),
    }
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request (RFC 6455), if
/// the request is one.
fn websocket_key(head: &http::request::Parts) -> Option<String> {
    let has = |name: http::header::HeaderName, token: &str| {
        head.headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let upgrade = head.method == http::Method::GET
        && has(http::header::UPGRADE, "websocket")
        && has(http::header::CONNECTION, "upgrade")
        && head
            .headers
            .get(http::header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let key = head.headers.get(http::header::SEC_WEBSOCKET_KEY)?;
    upgrade.then(|| String::from_utf8_lossy(key.as_bytes()).into_owned())
}

/// Answers 101 for the socket an object accepted, and hands the
/// connection, once upgraded, to the host.
fn upgraded(
    edge: &Edge,
    accepted: AcceptedWebSocket,
    upgrade: Option<(String, Option<hyper::upgrade::OnUpgrade>)>,
    response: http::Response<Body>,
) -> Reply {
    let Some((key, Some(on_upgrade))) = upgrade else {
        edge.host.abandon_websocket(accepted);
        return error_response(
            edge,
            &Error::new(
                ErrorKind::GuestError,
                "the object answered with a WebSocket (status 101) a request that is not a WebSocket upgrade",
            ),
        );
    };
    let (mut parts, _) = response.into_parts();
    let headers = &mut parts.headers;
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    if let Ok(accept) = http::HeaderValue::from_str(&accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    let host = edge.host.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => {
                if let Err(e) = host.accept_websocket(accepted, TokioIo::new(io)) {
                    tracing::debug!("a WebSocket could not start: {e}");
                }
            }
            Err(e) => {
                tracing::debug!("a WebSocket upgrade failed: {e}");
                host.abandon_websocket(accepted);
            }
        }
    });
    hyper::Response::from_parts(parts, Body::default())
}

/// Reads a request body within the size limit, the body memory and the
/// minimum rate; the refusal to answer otherwise.
async fn read_body(
    edge: &Edge,
    head: &http::request::Parts,
    mut body: Incoming,
    held: &mut Held<'_>,
) -> Result<Bytes, Reply> {
    let settings = &edge.settings;
    let limit = settings.max_request_body;
    let too_large = || {
        text(
            413,
            format!(
                "the request body is larger than the limit of {limit} bytes ([server] max_request_body_bytes)\n"
            ),
        )
    };
    let overloaded = || {
        let mut reply = text(
            503,
            format!(
                "the server holds {} bytes of request bodies, its limit ([server] body_memory_bytes); retry later\n",
                settings.body_memory
            ),
        );
        reply.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        reply
    };
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(length) = declared {
        if length > limit {
            return Err(too_large());
        }
        if !held.grow(length) {
            return Err(overloaded());
        }
    }
    let mut bytes = BytesMut::with_capacity(declared.unwrap_or(0));
    let start = tokio::time::Instant::now();
    let rate = settings.min_body_rate.max(1) as f64;
    loop {
        let allowed = settings.body_timeout + Duration::from_secs_f64(bytes.len() as f64 / rate);
        let frame = match tokio::time::timeout_at(start + allowed, body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                return Err(text(
                    408,
                    format!(
                        "the request body arrived too slowly: {} bytes in {} ms, below {} bytes/s after {} ms ([server] min_body_rate, body_timeout_ms)\n",
                        bytes.len(),
                        start.elapsed().as_millis(),
                        settings.min_body_rate,
                        settings.body_timeout.as_millis()
                    ),
                ));
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| text(400, format!("cannot read the request body: {e}\n")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return Err(too_large());
        }
        let beyond_declared = (bytes.len() + data.len()).saturating_sub(held.bytes);
        if beyond_declared > 0 && !held.grow(beyond_declared) {
            return Err(overloaded());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes.freeze())
}

/// `reply`, closing the connection after it if `close`.
fn closing_if(close: bool, mut reply: Reply) -> Reply {
    if close {
        reply.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    reply
}

/// The longest reason a 5xx response gives, in bytes.
const MAX_REASON_BYTES: usize = 500;

fn error_response(edge: &Edge, err: &Error) -> Reply {
    let status = err.http_status();
    let debug = edge.settings.debug_errors;
    if status < 500 {
        tracing::debug!("{status}: {err:#}");
        return text(
            status,
            if debug {
                format!("{err:#}\n")
            } else {
                format!("{err}\n")
            },
        );
    }
    let id = format!("{:016x}", rand::random::<u64>());
    tracing::warn!("{status} (error id {id}): {err:#}");
    if debug {
        return text(status, format!("{err:#}\n(error id {id})\n"));
    }
    let mut reason = err.message().lines().next().unwrap_or_default().to_owned();
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    text(status, format!("{reason}\n(error id {id})\n"))
}

fn text(status: u16, body: String) -> Reply {
    let mut response = hyper::Response::new(Body::from(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
