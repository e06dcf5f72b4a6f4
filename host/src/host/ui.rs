//! The object browser: a web page at `/_dohost/ui` over the admin HTTP API
//! (`admin.rs`), served by the host when `[admin] token` is set.
//!
//! **The token.** The page's three files (`ui/index.html`, `ui/ui.js`,
//! `ui/ui.css`, built into the binary) hold no data, so they are served
//! without the token. The page asks for the token in a login form, keeps it
//! in the tab's `sessionStorage` (gone when the tab closes, never in a URL
//! or a cookie), and sends it as `Authorization: Bearer` on each `fetch` of
//! the API, which stays bearer-only: a cookie would let another site's form
//! act with the admin's rights.
//!
//! **What the page does.** Bindings and their classes; a binding's objects,
//! found by name or id and paged; an object's keys and values (JSON shown
//! indented, other bytes as hex), its SQL tables and their rows, a query box
//! that only reads, its alarm with a button that runs it now, and a delete
//! button that asks first; a panel of the host's main numbers
//! (`/_dohost/stats`), refreshed every two seconds. No framework and no
//! CDN: plain JavaScript, and a Content-Security-Policy that allows only the
//! host's own files.

use bytes::Bytes;

/// Where the page lives.
pub(crate) const UI_PATH: &str = "/_dohost/ui";

/// What the browser may load for the page: its own files and nothing
/// else, no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page's files: path under [`UI_PATH`], content type, bytes.
const FILES: [(&str, &str, &str); 3] = [
    (
        "",
        "text/html; charset=utf-8",
        include_str!("ui/index.html"),
    ),
    (
        "/ui.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/ui.js"),
    ),
    (
        "/ui.css",
        "text/css; charset=utf-8",
        include_str!("ui/ui.css"),
    ),
];

/// The answer for a request of one of the page's files, if `head` asks
/// for one (`GET` or `HEAD`; another method is a 405).
pub(crate) fn asset(head: &http::request::Parts) -> Option<http::Response<Bytes>> {
    let rest = head.uri.path().strip_prefix(UI_PATH)?;
    let rest = if rest == "/" { "" } else { rest };
    let (_, content_type, text) = FILES.iter().find(|(path, _, _)| *path == rest)?;
    let mut response = http::Response::new(Bytes::new());
    if head.method != http::Method::GET && head.method != http::Method::HEAD {
        *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
        response.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return Some(response);
    }
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    if head.method == http::Method::GET {
        *response.body_mut() = Bytes::from_static(text.as_bytes());
    }
    Some(response)
}
