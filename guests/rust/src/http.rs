//! Requests and responses as guests see them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::events::Outcome;
use crate::bindings::dohost::object::{body, types};
use crate::task::{Operation, unexpected};
use crate::{Error, Result, WebSocket};

/// An HTTP request: what `fetch` receives and what a stub sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method in upper case.
    pub method: String,
    /// The absolute URL, e.g. `http://localhost:8787/increment?by=2`.
    pub url: String,
    /// Headers in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` for `url` and an empty body.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request for `url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// The URL's path, e.g. `/increment`.
    pub fn path(&self) -> &str {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        path_and_query.split(['?', '#']).next().unwrap_or("/")
    }

    /// The URL's query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        let q = self.url.split_once('?')?.1;
        Some(q.split('#').next().unwrap_or(q))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request asks for a WebSocket (`Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// When the body is not UTF-8.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::new(format!("request body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// When the body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(format!("request body is not the expected JSON: {e}")))
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// With status 101, the WebSocket handed to the client
    /// ([`Response::websocket`]).
    pub websocket: Option<WebSocket>,
}

impl Response {
    /// The 101 response that hands `socket`, accepted with
    /// [`crate::State::accept_websocket`], to the client of the upgrade
    /// request (Cloudflare's `new Response(null, { status: 101, webSocket })`).
    pub fn websocket(socket: WebSocket) -> Response {
        Response {
            status: 101,
            headers: Vec::new(),
            body: Vec::new(),
            websocket: Some(socket),
        }
    }

    /// A 200 response with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
            websocket: None,
        }
    }

    /// A 200 response with `value` as a JSON body.
    ///
    /// # Errors
    ///
    /// When `value` cannot be serialised.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Response> {
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value)
                .map_err(|e| Error::new(format!("cannot serialise the response: {e}")))?,
            websocket: None,
        })
    }

    /// The same response with another status code.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// The body as text (lossy).
    pub fn text_body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl From<types::Request> for Request {
    fn from(r: types::Request) -> Self {
        Request {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<Request> for types::Request {
    fn from(r: Request) -> Self {
        types::Request {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl Response {
    /// A response this guest received, its body read to the end when the
    /// sender streams it (see wit/body.wit).
    pub(crate) async fn received(r: types::Response) -> Result<Response> {
        let mut body = r.body;
        if let Some(stream) = r.stream {
            loop {
                match Operation::new(body::start_read(stream)).await {
                    Outcome::Read(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                    Outcome::Read(Ok(None)) => break,
                    Outcome::Read(Err(message)) => {
                        return Err(Error::new(format!("the streamed body failed: {message}")));
                    }
                    other => return Err(unexpected(other)),
                }
            }
        }
        Ok(Response {
            status: r.status,
            headers: r.headers,
            body,
            websocket: r.websocket.map(WebSocket::from_id),
        })
    }
}

impl From<Response> for types::Response {
    fn from(r: Response) -> Self {
        types::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
            stream: None,
            websocket: r.websocket.map(WebSocket::id),
        }
    }
}
