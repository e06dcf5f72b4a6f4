//! HTTP requests to the world outside dohost (JavaScript's global `fetch`).

use crate::bindings::dohost::object::events::Outcome;
use crate::bindings::dohost::object::outbound;
use crate::task::{Operation, unexpected};
use crate::{Error, Request, Response, Result};

/// What [`fetch_with`] does with a redirect (fetch's `redirect` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirect {
    /// Follow it, up to 20 in a row, each hop checked against the egress
    /// policy.
    #[default]
    Follow,
    /// Return the 3xx response as it is.
    Manual,
    /// Fail the request.
    Error,
}

/// Sends `request` (an absolute `http` or `https` URL) and returns the
/// response, following redirects. Other events of the object may run while
/// it waits. The request leaves once the writes made before it are durable
/// (the output gate), under the egress policy of `[outbound]` in the
/// server's configuration (by default public addresses only) and the
/// event's subrequest limits.
///
/// ```ignore
/// let quote = dohost_sdk::fetch(Request::get("https://api.example.com/quote")).await?;
/// ```
///
/// # Errors
///
/// When the policy refuses the destination, a limit is reached, the request
/// times out or is invalid, or the connection fails; the message says which
/// (and names the rule or limit).
pub async fn fetch(request: Request) -> Result<Response> {
    fetch_with(request, Redirect::Follow).await
}

/// [`fetch`] with a choice of what to do with redirects.
///
/// # Errors
///
/// As [`fetch`]; with [`Redirect::Error`], also on a redirect.
pub async fn fetch_with(request: Request, redirect: Redirect) -> Result<Response> {
    let redirect = match redirect {
        Redirect::Follow => outbound::Redirect::Follow,
        Redirect::Manual => outbound::Redirect::Manual,
        Redirect::Error => outbound::Redirect::Error,
    };
    let op = outbound::start_fetch(&request.into(), redirect);
    match Operation::new(op).await {
        Outcome::Http(Ok(fetched)) => Response::received(fetched.response).await,
        Outcome::Http(Err(e)) => Err(Error::new(e.message)),
        other => Err(unexpected(other)),
    }
}
