//! The HTTP front end of `dohost serve`: hyper 1 over tokio, one task per
//! connection, every request handed to [`Host::fetch`].
//!
//! Errors become plain-text responses that say what went wrong: 404 for a
//! path the router cannot place, 413 for a body over [`MAX_REQUEST_BODY`],
//! 503 when an object is overloaded, 500 with the trap for a guest that
//! failed (the object is reset and the server keeps serving).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{Error, Host};

/// The largest request body accepted, in bytes (Cloudflare's limit on the
/// free plan): bodies are held in memory while an object handles them.
pub const MAX_REQUEST_BODY: usize = 100 << 20;

/// Serves `host` on `listener` until `shutdown` resolves.
///
/// # Errors
///
/// Returns an error only if accepting connections fails for good.
pub async fn serve(
    host: Host,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, retry.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(handle(&host, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
    }
}

async fn handle(host: &Host, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                text(
                    413,
                    format!("request body is larger than the limit of {MAX_REQUEST_BODY} bytes\n"),
                )
            } else {
                text(400, format!("cannot read the request body: {e}\n"))
            };
        }
    };
    match host.fetch(http::Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Full::new),
        Err(e) => error_response(&e),
    }
}

fn error_response(err: &Error) -> hyper::Response<Full<Bytes>> {
    let status = err.http_status();
    if status >= 500 {
        tracing::warn!("{status}: {err}");
    }
    text(status, format!("{err}\n"))
}

fn text(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
