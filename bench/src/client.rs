//! The HTTP/1.1 client the load tools share: a keep-alive connection, a
//! GET that reads the whole body, and a pass that sends a range of objects
//! one request each.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A keep-alive connection to `authority`.
pub async fn connect(authority: &str) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// GETs `url`; whether it answered with a success and its whole body.
pub async fn get(sender: &mut Sender, url: String, authority: &str) -> bool {
    let req = hyper::Request::get(url)
        .header(hyper::header::HOST, authority)
        .body(Empty::new())
        .expect("request");
    match sender.send_request(req).await {
        Ok(resp) => {
            let status = resp.status();
            resp.into_body().collect().await.is_ok() && status.is_success()
        }
        Err(_) => false,
    }
}

/// The `host:port` of `url` (`{}` in it stands for an object's number).
pub fn authority(url: &str) -> String {
    let uri: hyper::Uri = url.replace("{}", "0").parse().expect("a valid URL");
    uri.authority().expect("URL has a host").as_str().to_owned()
}

/// Sends one request to each object of `from..to` whose number is
/// `first` modulo `step`, `{}` in `url` replaced by the number; the number
/// of failures (a failed request is not repeated; the connection is made
/// again).
pub async fn touch(url: &str, from: u64, to: u64, first: u64, step: u64) -> u64 {
    let authority = authority(url);
    let mut errors = 0;
    let mut next = from + first;
    'reconnect: while next < to {
        let Some(mut sender) = connect(&authority).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while next < to {
            let url = url.replace("{}", &next.to_string());
            next += step;
            if !get(&mut sender, url, &authority).await {
                errors += 1;
                continue 'reconnect;
            }
        }
    }
    errors
}
