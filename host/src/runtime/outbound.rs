//! # Outbound fetch
//!
//! Objects reach the outside world through [`Outbound::fetch`]. A guest is
//! hostile and the host often sits in a network worth protecting (a cloud
//! metadata service on 169.254.169.254, databases on 10/8, admin ports on
//! loopback), so every hop of a fetch passes an egress policy before a socket
//! opens: the `[outbound]` allow rules, then the deny rules, then a default
//! that lets public addresses through and refuses every other kind.
//!
//! The policy judges the addresses actually connected to. Names are resolved
//! by this module, installed as reqwest's resolver, which drops the addresses
//! the policy refuses; a name that looked public when a guest probed it and
//! resolves to 127.0.0.1 when connecting (DNS rebinding) gets nowhere. IP
//! literals never reach a resolver and are checked before sending. reqwest
//! follows redirects, and each hop is checked again by the redirect policy and
//! the resolver.
//!
//! The resolver and the redirect policy belong to the client that all fetches
//! share, and the resolver is told only a name. The port it is for and the
//! fetch's redirect mode reach them through the task-local [`TRIP`], set while
//! a fetch runs; outside of one, both refuse.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url, redirect};

use crate::settings::OutboundSettings;

/// Redirects followed before a fetch fails, as in the fetch standard.
const MAX_REDIRECTS: usize = 20;

/// Request headers that the URL and the body decide. A guest's value could
/// frame the body differently from what is sent, on a connection that other
/// fetches reuse, or name a host that is not the one checked.
const CONNECTION_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What a fetch does when the response is a redirect: fetch's `redirect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// Follow it, checking the new destination like the first.
    #[default]
    Follow,
    /// Return the 3xx response as it is.
    Manual,
    /// Fail the fetch.
    Error,
}

/// A request from an object.
#[derive(Clone, Debug)]
pub(crate) struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub redirect: Redirect,
}

/// The response, body read in full.
#[derive(Clone, Debug)]
pub(crate) struct OutboundResponse {
    pub status: u16,
    /// The URL of the last hop, after any redirects.
    pub url: String,
    pub redirected: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a fetch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchErrorKind {
    /// The egress policy refused a destination.
    Refused,
    /// The response body or the redirect chain was too long.
    Limit,
    /// The fetch took longer than `[outbound] timeout_ms`.
    Timeout,
    /// Resolving, connecting or the exchange itself failed.
    Network,
    /// The request was malformed: URL, scheme, method or headers.
    Invalid,
}

impl FetchErrorKind {
    /// The kind in lower case, as the metrics label it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FetchErrorKind::Refused => "refused",
            FetchErrorKind::Limit => "limit",
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Network => "network",
            FetchErrorKind::Invalid => "invalid",
        }
    }
}

/// A failed fetch; the message names the destination and the cause.
#[derive(Clone, Debug)]
pub(crate) struct FetchError {
    pub kind: FetchErrorKind,
    pub message: String,
}

impl FetchError {
    fn new(kind: FetchErrorKind, message: String) -> FetchError {
        FetchError { kind, message }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for FetchError {}

/// The HTTP client objects fetch through, with the egress policy built in.
/// Clones share one connection pool.
#[derive(Clone)]
pub(crate) struct Outbound {
    client: reqwest::Client,
    policy: Arc<Policy>,
    timeout: Duration,
    max_response_bytes: u64,
}

impl Outbound {
    /// Builds the client for `settings`.
    ///
    /// # Errors
    ///
    /// A message naming the first invalid allow or deny rule, or why the
    /// client could not be built.
    pub(crate) fn new(settings: OutboundSettings) -> Result<Outbound, String> {
        let policy = Arc::new(Policy::new(&settings.allow, &settings.deny)?);
        let redirects = Arc::clone(&policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            // The previous hop's URL may carry a secret the next host must not see.
            .referer(false)
            .redirect(redirect::Policy::custom(move |attempt| {
                follow(&redirects, attempt)
            }))
            .dns_resolver(Arc::new(Resolver(Arc::clone(&policy))))
            .build()
            .map_err(|e| format!("cannot build the outbound HTTP client: {e}"))?;
        Ok(Outbound {
            client,
            policy,
            timeout: settings.timeout,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// Sends `req` and reads the whole response.
    ///
    /// # Errors
    ///
    /// A [`FetchError`] whose kind says whether the request was invalid,
    /// refused by the policy, over a limit, too slow, or failed on the network.
    pub(crate) async fn fetch(&self, req: OutboundRequest) -> Result<OutboundResponse, FetchError> {
        let url = Url::parse(&req.url).map_err(|e| {
            let message = format!("cannot fetch \"{}\": invalid URL: {e}", req.url);
            FetchError::new(FetchErrorKind::Invalid, message)
        })?;
        self.policy.admit(&url)?;
        let dest = destination(&url);
        let request = build_request(url.clone(), req.method, req.headers, req.body)?;
        let trip = Trip {
            redirect: req.redirect,
            dest: dest.clone(),
            hop: RefCell::new(url),
            redirected: Cell::new(false),
        };
        let exchange = tokio::time::timeout(self.timeout, self.exchange(request, &dest));
        let result = match TRIP.scope(trip, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::new(
                FetchErrorKind::Timeout,
                format!(
                    "fetch to {dest} timed out after {} ms ([outbound] timeout_ms)",
                    self.timeout.as_millis()
                ),
            )),
        };
        if let Err(e) = &result {
            tracing::debug!(error = %e, "outbound fetch failed");
        }
        result
    }

    /// Sends the request and reads the body under the size bound; runs
    /// inside the fetch's [`TRIP`].
    async fn exchange(
        &self,
        request: reqwest::Request,
        dest: &str,
    ) -> Result<OutboundResponse, FetchError> {
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| failure(dest, e))?;
        let too_large = || {
            FetchError::new(
                FetchErrorKind::Limit,
                format!(
                    "fetch to {dest} failed: the response body is larger than \
                     [outbound] max_response_bytes ({} bytes)",
                    self.max_response_bytes
                ),
            )
        };
        // Content-Length is only a claim; the running count below is the bound.
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_bytes)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failure(dest, e))? {
            let total = u64::try_from(body.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
            if total > self.max_response_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        Ok(OutboundResponse {
            status: response.status().as_u16(),
            url: response.url().to_string(),
            redirected: TRIP.with(|trip| trip.redirected.get()),
            headers,
            body,
        })
    }
}

/// Checks the method, headers and body and assembles reqwest's request.
fn build_request(
    url: Url,
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<reqwest::Request, FetchError> {
    let invalid = |why: String| {
        FetchError::new(
            FetchErrorKind::Invalid,
            format!("cannot fetch {url}: {why}"),
        )
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid(format!("\"{method}\" is not an HTTP method")))?;
    // Forbidden by the fetch standard; CONNECT would also turn the pooled
    // connection into a tunnel.
    if matches!(method.as_str(), "CONNECT" | "TRACE" | "TRACK") {
        return Err(invalid(format!("the {method} method is not allowed")));
    }
    if !body.is_empty() && (method == Method::GET || method == Method::HEAD) {
        return Err(invalid(format!("a {method} request cannot have a body")));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("\"{name}\" is not a header name")))?;
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| invalid(format!("the value of header \"{name}\" is not valid")))?;
        if !CONNECTION_HEADERS.contains(&name.as_str()) {
            map.append(name, value);
        }
    }
    let mut request = reqwest::Request::new(method, url);
    *request.headers_mut() = map;
    if !body.is_empty() {
        *request.body_mut() = Some(body.into());
    }
    Ok(request)
}

/// Recovers our own error from reqwest's, where the resolver or the redirect
/// policy raised it; anything else is a network failure, told with its
/// causes.
fn failure(dest: &str, error: reqwest::Error) -> FetchError {
    let error = error.without_url();
    let mut message = format!("fetch to {dest} failed: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(ours) = cause.downcast_ref::<FetchError>() {
            return ours.clone();
        }
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    FetchError::new(FetchErrorKind::Network, message)
}

/// How messages name a destination: scheme, host and port, leaving out the
/// path and query, which may carry secrets into logs.
fn destination(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    format!("{}://{host}:{port}/", url.scheme())
}

tokio::task_local! {
    /// The fetch running on this task, for the client-wide resolver and
    /// redirect policy.
    static TRIP: Trip;
}

/// What the resolver and the redirect policy need to know about one fetch.
struct Trip {
    redirect: Redirect,
    /// The first destination, for messages about the whole fetch.
    dest: String,
    /// The URL being connected to: the first, then each redirect's.
    hop: RefCell<Url>,
    redirected: Cell<bool>,
}

/// The error for a connection attempted outside [`Outbound::fetch`], which
/// has no port or redirect mode to be judged by.
fn outside_fetch() -> FetchError {
    let message = "outbound connection refused: it does not belong to a fetch".to_owned();
    FetchError::new(FetchErrorKind::Refused, message)
}

/// Decides one redirect: by the fetch's redirect mode, the redirect limit and
/// the policy's verdict on the new URL, which becomes the hop.
fn follow(policy: &Policy, attempt: redirect::Attempt<'_>) -> redirect::Action {
    let verdict = TRIP.try_with(|trip| {
        let next = attempt.url();
        match trip.redirect {
            Redirect::Manual => return Ok(false),
            Redirect::Error => {
                let message = format!(
                    "fetch to {} was redirected to {next}, and its redirect mode is \"error\"",
                    trip.dest
                );
                return Err(FetchError::new(FetchErrorKind::Network, message));
            }
            Redirect::Follow => {}
        }
        // `previous` holds the first URL and every redirect before this one.
        if attempt.previous().len() > MAX_REDIRECTS {
            let message = format!(
                "fetch to {} failed: more than {MAX_REDIRECTS} redirects",
                trip.dest
            );
            return Err(FetchError::new(FetchErrorKind::Limit, message));
        }
        policy.admit(next)?;
        *trip.hop.borrow_mut() = next.clone();
        trip.redirected.set(true);
        Ok(true)
    });
    match verdict.unwrap_or_else(|_| Err(outside_fetch())) {
        Ok(true) => attempt.follow(),
        Ok(false) => attempt.stop(),
        Err(e) => attempt.error(e),
    }
}

/// reqwest's resolver: resolves the current hop's name and keeps only the
/// addresses the policy allows, so those checked are those connected to.
struct Resolver(Arc<Policy>);

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        // Read now, while the connector is polled by the fetch's task.
        let hop = TRIP.try_with(|trip| trip.hop.borrow().clone());
        Box::pin(async move {
            let hop = hop.map_err(|_| outside_fetch())?;
            // Only the hop's own host has a known port to be judged with.
            if hop.domain() != Some(name.as_str()) {
                return Err(outside_fetch().into());
            }
            let dest = destination(&hop);
            let addrs = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| {
                    let message = format!(
                        "fetch to {dest} failed: cannot resolve {}: {e}",
                        name.as_str()
                    );
                    FetchError::new(FetchErrorKind::Network, message)
                })?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .filter(|addr| match policy.check(&hop, addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match refusal {
                Some(e) if allowed.is_empty() => Err(e.into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The egress policy: the parsed `[outbound]` rules and the default.
#[derive(Debug)]
struct Policy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl Policy {
    fn new(allow: &[String], deny: &[String]) -> Result<Policy, String> {
        let parse = |key: &str, rules: &[String]| {
            rules
                .iter()
                .map(|text| {
                    Rule::parse(text).map_err(|why| {
                        format!("[outbound] {key} rule \"{text}\" is invalid: {why}")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Policy {
            allow: parse("allow", allow)?,
            deny: parse("deny", deny)?,
        })
    }

    /// Checks what can be checked before connecting: the scheme, and the
    /// address of an IP-literal host, which reqwest connects to without
    /// asking the resolver.
    fn admit(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            let message = format!("cannot fetch {url}: only http and https URLs can be fetched");
            return Err(FetchError::new(FetchErrorKind::Invalid, message));
        }
        let host = url.host_str().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check(url, ip),
            Err(_) => Ok(()),
        }
    }

    /// Decides whether a hop to `url` may connect to `ip`: an allow rule
    /// matching the name or the address wins, then a deny rule refuses, then
    /// the default refuses every address that is not public.
    fn check(&self, url: &Url, ip: IpAddr) -> Result<(), FetchError> {
        let ip = ip.to_canonical();
        let name = url.domain().map(|name| name.trim_end_matches('.'));
        let port = url.port_or_known_default().unwrap_or_default();
        if self.allow.iter().any(|rule| rule.matches(name, ip, port)) {
            return Ok(());
        }
        let dest = destination(url);
        let message = if let Some(rule) = self.deny.iter().find(|rule| rule.matches(name, ip, port))
        {
            format!(
                "fetch to {dest} refused by [outbound] deny rule \"{}\"",
                rule.text
            )
        } else if let Some(kind) = match ip {
            IpAddr::V4(v4) => special_v4(v4),
            IpAddr::V6(v6) => special_v6(v6),
        } {
            let (what, allow) = match name {
                Some(name) => (
                    format!("{name} resolves to {ip}, {kind}"),
                    format!("{name}:{port}"),
                ),
                None => (
                    format!("{ip} is {kind}"),
                    SocketAddr::new(ip, port).to_string(),
                ),
            };
            format!(
                "fetch to {dest} refused: {what}, which objects may not reach by default; \
                 allow it with [outbound] allow = [\"{allow}\"]"
            )
        } else {
            return Ok(());
        };
        Err(FetchError::new(FetchErrorKind::Refused, message))
    }
}

/// One allow or deny rule.
#[derive(Debug)]
struct Rule {
    /// As written, for messages.
    text: String,
    host: RuleHost,
    /// `None` matches every port.
    port: Option<u16>,
}

#[derive(Debug)]
enum RuleHost {
    /// `*`: every destination.
    Any,
    /// `api.example.com`: this name.
    Name(String),
    /// `*.example.com`: names under it, kept as the suffix `.example.com`.
    Subdomains(String),
    /// `10.0.0.0/8`, or one address as a /32 or /128.
    Net(IpAddr, u8),
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let (host, port) = split_port(text)?;
        let host = if host == "*" {
            RuleHost::Any
        } else if let Some((addr, len)) = host.split_once('/') {
            let ip = ip_literal(addr).ok_or_else(|| format!("\"{addr}\" is not an IP address"))?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let len = len
                .parse::<u8>()
                .ok()
                .filter(|&len| len <= bits)
                .ok_or_else(|| format!("\"/{len}\" is not a prefix length for {ip}"))?;
            if prefix(ip, len) != ip {
                return Err(format!("{ip} has bits set past the /{len} prefix"));
            }
            RuleHost::Net(ip, len)
        } else if let Some(ip) = ip_literal(host) {
            RuleHost::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
        } else if let Some(parent) = host.strip_prefix("*.") {
            RuleHost::Subdomains(format!(".{}", host_name(parent)?))
        } else {
            RuleHost::Name(host_name(host)?)
        };
        Ok(Rule {
            text: text.to_owned(),
            host,
            port,
        })
    }

    fn matches(&self, name: Option<&str>, ip: IpAddr, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
            && match &self.host {
                RuleHost::Any => true,
                RuleHost::Name(rule) => name == Some(rule.as_str()),
                RuleHost::Subdomains(suffix) => {
                    name.is_some_and(|name| name.ends_with(suffix.as_str()))
                }
                RuleHost::Net(net, len) => {
                    net.is_ipv4() == ip.is_ipv4() && prefix(ip, *len) == *net
                }
            }
    }
}

/// Splits `host:port`. IPv6 addresses have colons of their own, so they take
/// a port only in brackets: `[::1]:8080`, `[fd00::]/8:443`.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let after_bracket = text.rfind(']').map_or(0, |i| i + 1);
    let Some(colon) = text[after_bracket..].rfind(':').map(|i| i + after_bracket) else {
        return Ok((text, None));
    };
    if after_bracket == 0 && text[..colon].contains(':') {
        return Ok((text, None));
    }
    let port = &text[colon + 1..];
    match port.parse::<u16>() {
        Ok(number) if number != 0 => Ok((&text[..colon], Some(number))),
        _ => Err(format!("\"{port}\" is not a port")),
    }
}

/// An IP address, bracketed or not, with IPv4-mapped IPv6 as IPv4.
fn ip_literal(text: &str) -> Option<IpAddr> {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Lowercases a host name, refusing what could not be one.
fn host_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label) {
        return Err(format!(
            "\"{text}\" is not a host name (international names are written in punycode), \
             an IP address or a CIDR range"
        ));
    }
    Ok(name)
}

/// `ip` with all but its first `len` bits cleared.
fn prefix(ip: IpAddr, len: u8) -> IpAddr {
    let len = u32::from(len);
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32u32.saturating_sub(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_private() => "a private address",
        _ if ip.is_link_local() => "a link-local address",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (0, _, _) => "an unspecified address",
        _ if ip.is_broadcast() => "the broadcast address",
        _ if ip.is_multicast() => "a multicast address",
        _ if ip.is_documentation() => "a documentation address",
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, _, _) => "a reserved address",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses
    // carry an IPv4 address that a gateway may deliver to.
    let embeds_v4 = matches!(
        segments,
        [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..]
    );
    if embeds_v4 && !ip.is_loopback() && !ip.is_unspecified() {
        let [.., a, b, c, d] = ip.octets();
        return special_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(match segments {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "the unspecified address",
        _ if ip.is_unique_local() => "a unique local address",
        _ if ip.is_unicast_link_local() => "a link-local address",
        _ if ip.is_multicast() => "a multicast address",
        [0x2001, 0xdb8, ..] => "a documentation address",
        // Site-local (deprecated, fec0::/10) and discard-only (100::/64).
        [0xfec0..=0xfeff, ..] | [0x100, 0, 0, 0, ..] => "a reserved address",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
    use hyper::body::{Frame, Incoming};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    const MIB: usize = 1024 * 1024;

    /// Routes: `/echo` returns the method in `x-method` and the body;
    /// `/redirect` 302s to `/echo`; `/to?URL` 302s to URL; `/loop` 302s to
    /// itself; `/sleep` answers after 10 s; `/big` is 1 MiB with a length and
    /// `/stream` 1 MiB without one.
    async fn handle(
        req: Request<Incoming>,
    ) -> Result<Response<BoxBody<Bytes, Infallible>>, hyper::Error> {
        let redirect = |location: &str| {
            Response::builder()
                .status(302)
                .header("location", location)
                .body(Full::new(Bytes::new()).boxed())
        };
        let response = match req.uri().path() {
            "/echo" => {
                let method = req.method().to_string();
                let body = req.into_body().collect().await?.to_bytes();
                Response::builder()
                    .header("x-method", method)
                    .body(Full::new(body).boxed())
            }
            "/redirect" => redirect("/echo"),
            "/to" => redirect(req.uri().query().unwrap_or_default()),
            "/loop" => redirect("/loop"),
            "/sleep" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Response::builder().body(Full::new(Bytes::new()).boxed())
            }
            "/big" => Response::builder().body(Full::new(Bytes::from(vec![7; MIB])).boxed()),
            "/stream" => {
                let chunks = (0..16).map(|_| Ok(Frame::data(Bytes::from(vec![7; MIB / 16]))));
                Response::builder()
                    .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
            }
            _ => Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()).boxed()),
        };
        Ok(response.expect("test response is well formed"))
    }

    /// Starts the test server on a loopback port and returns the port.
    async fn server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handle)),
                );
            }
        });
        port
    }

    fn strings(rules: &[&str]) -> Vec<String> {
        rules.iter().map(|rule| rule.to_string()).collect()
    }

    fn outbound(allow: &[&str], deny: &[&str]) -> Outbound {
        let settings = OutboundSettings {
            allow: strings(allow),
            deny: strings(deny),
            ..Default::default()
        };
        Outbound::new(settings).unwrap()
    }

    fn get(url: &str) -> OutboundRequest {
        OutboundRequest {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            redirect: Redirect::Follow,
        }
    }

    fn header<'a>(response: &'a OutboundResponse, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    async fn refusal(outbound: &Outbound, req: OutboundRequest) -> String {
        let error = outbound.fetch(req).await.unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Refused, "{error}");
        error.message
    }

    #[tokio::test]
    async fn get_and_a_10_mib_post_round_trip() {
        let port = server().await;
        let outbound = outbound(&[&format!("127.0.0.1:{port}")], &[]);
        let response = outbound
            .fetch(get(&format!("http://127.0.0.1:{port}/echo")))
            .await
            .unwrap();
        assert_eq!(
            (response.status, header(&response, "x-method")),
            (200, Some("GET"))
        );
        assert!(!response.redirected);

        let body: Vec<u8> = (0..10 * MIB).map(|i| (i % 251) as u8).collect();
        let post = OutboundRequest {
            method: "POST".into(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: body.clone(),
            ..get(&format!("http://127.0.0.1:{port}/echo"))
        };
        // On its own task: the host runs fetches from spawned tasks, so the
        // future must be Send.
        let response = tokio::spawn(async move { outbound.fetch(post).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(header(&response, "x-method"), Some("POST"));
        assert!(response.body == body, "the 10 MiB body came back changed");
    }

    #[tokio::test]
    async fn loopback_is_refused_by_default() {
        let port = server().await;
        let message = refusal(
            &outbound(&[], &[]),
            get(&format!("http://127.0.0.1:{port}/echo")),
        )
        .await;
        assert_eq!(
            message,
            format!(
                "fetch to http://127.0.0.1:{port}/ refused: 127.0.0.1 is a loopback address, which objects \
                 may not reach by default; allow it with [outbound] allow = [\"127.0.0.1:{port}\"]"
            )
        );
        // The rule is for that port only.
        let outbound = outbound(&[&format!("127.0.0.1:{port}")], &[]);
        let other = port.wrapping_add(1);
        refusal(&outbound, get(&format!("http://127.0.0.1:{other}/"))).await;
    }

    #[tokio::test]
    async fn allow_rules_reach_loopback_by_address_and_by_name() {
        let port = server().await;
        let by_address = outbound(&[&format!("127.0.0.1:{port}")], &[]);
        let response = by_address
            .fetch(get(&format!("http://localhost:{port}/echo")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        let by_name = outbound(&[&format!("localhost:{port}")], &[]);
        let response = by_name
            .fetch(get(&format!("http://localhost:{port}/echo")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let port = server().await;
        let message = refusal(
            &outbound(&[], &[]),
            get(&format!("http://localhost:{port}/echo")),
        )
        .await;
        assert_eq!(
            message,
            format!(
                "fetch to http://localhost:{port}/ refused: localhost resolves to 127.0.0.1, a loopback \
                 address, which objects may not reach by default; allow it with [outbound] allow = \
                 [\"localhost:{port}\"]"
            )
        );
    }

    #[tokio::test]
    async fn allow_beats_deny() {
        let port = server().await;
        let url = format!("http://127.0.0.1:{port}/echo");
        let both = outbound(&[&format!("127.0.0.1:{port}")], &["127.0.0.0/8"]);
        assert_eq!(both.fetch(get(&url)).await.unwrap().status, 200);
        let message = refusal(&outbound(&[], &["127.0.0.0/8"]), get(&url)).await;
        assert_eq!(
            message,
            format!(
                "fetch to http://127.0.0.1:{port}/ refused by [outbound] deny rule \"127.0.0.0/8\""
            )
        );
    }

    fn check(policy: &Policy, url: &str, ip: &str) -> Result<(), String> {
        let url = Url::parse(url).unwrap();
        policy
            .check(&url, ip.parse().unwrap())
            .map_err(|e| e.message)
    }

    #[test]
    fn deny_rules_refuse_public_addresses() {
        let policy = Policy::new(
            &[],
            &strings(&["93.184.216.0/24", "x.test", "*.example.com:443"]),
        )
        .unwrap();
        assert_eq!(
            check(&policy, "http://example.net/", "93.184.216.34"),
            Err("fetch to http://example.net:80/ refused by [outbound] deny rule \"93.184.216.0/24\"".into())
        );
        assert_eq!(
            check(&policy, "http://x.test/", "93.184.217.34"),
            Err("fetch to http://x.test:80/ refused by [outbound] deny rule \"x.test\"".into())
        );
        assert!(check(&policy, "https://api.example.com/", "93.184.217.34").is_err());
        assert!(check(&policy, "http://api.example.com/", "93.184.217.34").is_ok());
        assert!(check(&policy, "https://example.com/", "93.184.217.34").is_ok());
        assert!(check(&policy, "http://example.net/", "93.184.217.34").is_ok());
    }

    #[test]
    fn only_public_addresses_are_reachable_by_default() {
        let policy = Policy::new(&[], &[]).unwrap();
        let refused = [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ];
        for ip in refused {
            assert!(
                check(&policy, "http://example.com/", ip).is_err(),
                "{ip} was allowed"
            );
        }
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ];
        for ip in public {
            assert_eq!(check(&policy, "http://example.com/", ip), Ok(()), "{ip}");
        }
        let url = Url::parse("http://[::ffff:7f00:1]:8080/").unwrap();
        assert!(
            policy
                .admit(&url)
                .unwrap_err()
                .message
                .ends_with("allow = [\"127.0.0.1:8080\"]")
        );
        let url = Url::parse("http://[::1]:8080/").unwrap();
        assert!(
            policy
                .admit(&url)
                .unwrap_err()
                .message
                .ends_with("allow = [\"[::1]:8080\"]")
        );
        let allowed = Policy::new(&strings(&["[::1]:8080"]), &[]).unwrap();
        assert!(allowed.admit(&url).is_ok());
    }

    #[tokio::test]
    async fn redirects_are_followed_and_checked() {
        let port = server().await;
        let other = server().await;
        let base = format!("http://127.0.0.1:{port}");
        let outbound = outbound(&[&format!("127.0.0.1:{port}")], &[]);
        let response = outbound
            .fetch(get(&format!("{base}/redirect")))
            .await
            .unwrap();
        assert_eq!((response.status, response.redirected), (200, true));
        assert_eq!(response.url, format!("{base}/echo"));

        let message = refusal(
            &outbound,
            get(&format!("{base}/to?http://127.0.0.1:{other}/echo")),
        )
        .await;
        assert!(
            message.starts_with(&format!(
                "fetch to http://127.0.0.1:{other}/ refused: 127.0.0.1 is a loopback"
            )),
            "{message}"
        );
        let message = refusal(
            &outbound,
            get(&format!("{base}/to?http://localhost:{other}/echo")),
        )
        .await;
        assert!(
            message.contains("localhost resolves to 127.0.0.1"),
            "{message}"
        );

        let error = outbound
            .fetch(get(&format!("{base}/to?ftp://example.com/")))
            .await
            .unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Invalid, "{error}");
        let error = outbound
            .fetch(get(&format!("{base}/loop")))
            .await
            .unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Limit, "{error}");
        assert!(error.message.contains("more than 20 redirects"), "{error}");
    }

    #[tokio::test]
    async fn manual_and_error_redirect_modes() {
        let port = server().await;
        let outbound = outbound(&[&format!("127.0.0.1:{port}")], &[]);
        let url = format!("http://127.0.0.1:{port}/redirect");
        let manual = OutboundRequest {
            redirect: Redirect::Manual,
            ..get(&url)
        };
        let response = outbound.fetch(manual).await.unwrap();
        assert_eq!((response.status, response.redirected), (302, false));
        assert_eq!(header(&response, "location"), Some("/echo"));
        assert_eq!(response.url, url);

        let error = OutboundRequest {
            redirect: Redirect::Error,
            ..get(&url)
        };
        let error = outbound.fetch(error).await.unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Network, "{error}");
        assert!(
            error.message.contains("redirect mode is \"error\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn slow_servers_time_out() {
        let port = server().await;
        let settings = OutboundSettings {
            allow: vec![format!("127.0.0.1:{port}")],
            timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let error = Outbound::new(settings)
            .unwrap()
            .fetch(get(&format!("http://127.0.0.1:{port}/sleep")))
            .await
            .unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Timeout, "{error}");
        assert_eq!(
            error.message,
            format!(
                "fetch to http://127.0.0.1:{port}/ timed out after 300 ms ([outbound] timeout_ms)"
            )
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn large_responses_hit_the_limit() {
        let port = server().await;
        let settings = OutboundSettings {
            allow: vec![format!("127.0.0.1:{port}")],
            max_response_bytes: 64 * 1024,
            ..Default::default()
        };
        let outbound = Outbound::new(settings).unwrap();
        // With a Content-Length, and streamed without one.
        for path in ["big", "stream"] {
            let error = outbound
                .fetch(get(&format!("http://127.0.0.1:{port}/{path}")))
                .await
                .unwrap_err();
            assert_eq!(error.kind, FetchErrorKind::Limit, "{error}");
            assert!(
                error
                    .message
                    .ends_with("[outbound] max_response_bytes (65536 bytes)"),
                "{error}"
            );
        }
        let response = outbound
            .fetch(get(&format!("http://127.0.0.1:{port}/echo")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
    }

    #[test]
    fn rules_are_validated_at_new() {
        let good = [
            "api.example.com",
            "*.example.com",
            "*",
            "127.0.0.1",
            "[::1]",
            "::1",
            "10.0.0.0/8",
            "fd00::/8",
            "127.0.0.1:8080",
            "*.example.com:443",
            "[::1]:8080",
            "[fd00::]/8:443",
            "*:443",
        ];
        Outbound::new(OutboundSettings {
            allow: strings(&good),
            deny: strings(&good),
            ..Default::default()
        })
        .unwrap();
        let bad = [
            "",
            "exa mple.com",
            "*foo.example.com",
            "a.*.example.com",
            "example.com:",
            "example.com:99999",
            "127.0.0.1:0",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "fd00::/129",
            "[::1",
            "http://example.com",
        ];
        for rule in bad {
            let settings = OutboundSettings {
                deny: strings(&[rule]),
                ..Default::default()
            };
            let Err(message) = Outbound::new(settings) else {
                panic!("{rule:?} was accepted")
            };
            assert!(
                message.starts_with(&format!("[outbound] deny rule \"{rule}\" is invalid: ")),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn only_valid_http_requests_are_sent() {
        let outbound = outbound(&[], &[]);
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "javascript:alert(1)",
        ] {
            let error = outbound.fetch(get(url)).await.unwrap_err();
            assert_eq!(error.kind, FetchErrorKind::Invalid, "{error}");
        }
        let error = outbound.fetch(get("file:///etc/passwd")).await.unwrap_err();
        assert_eq!(
            error.message,
            "cannot fetch file:///etc/passwd: only http and https URLs can be fetched"
        );
        let bad = [
            OutboundRequest {
                method: "GE T".into(),
                ..get("http://example.com/")
            },
            OutboundRequest {
                method: "CONNECT".into(),
                ..get("http://example.com/")
            },
            OutboundRequest {
                body: vec![1],
                ..get("http://example.com/")
            },
            OutboundRequest {
                headers: vec![("bad header".into(), "x".into())],
                ..get("http://example.com/")
            },
            OutboundRequest {
                headers: vec![("x".into(), "a\nb".into())],
                ..get("http://example.com/")
            },
        ];
        for req in bad {
            let error = outbound.fetch(req).await.unwrap_err();
            assert_eq!(error.kind, FetchErrorKind::Invalid, "{error}");
        }
    }
}
