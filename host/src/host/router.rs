//! The default router: how [`Host::fetch`] places a request, through the
//! entry worker when one is configured, else by its path. A request is
//! placed on its head alone ([`Host::route`]), so a server answers 401 and
//! 404 before it reads a byte of the body.

use bytes::Bytes;

use super::admin;
use super::assets::{self, AssetRoute};
use super::host::Host;
use super::ui;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Body, Stub, from_wit_response, to_wit_request};
use crate::settings::MAX_OBJECT_NAME_BYTES;
use dohost_store::Health;

/// Where a request goes, decided from its head by [`Host::route`]; carried
/// out, with the body, by [`Host::fetch_routed`].
pub struct Route(Place);

enum Place {
    /// An answer already (the admin API refused the request's token).
    Answered(http::Response<Bytes>),
    Admin,
    /// A static asset (`[assets]`), or a redirect to one's path.
    Asset(AssetRoute),
    Worker,
    Object {
        stub: Stub,
        uri: http::Uri,
    },
}

impl Route {
    /// Whether carrying out the request needs its body: `false` when the
    /// answer is known from the head.
    pub fn reads_body(&self) -> bool {
        !matches!(self.0, Place::Answered(_) | Place::Asset(_))
    }

    /// The metrics labels of the route: its kind and binding.
    fn labels(&self) -> (&'static str, String) {
        match &self.0 {
            Place::Answered(_) => ("answered", String::new()),
            Place::Admin => ("admin", String::new()),
            Place::Asset(_) => ("asset", String::new()),
            Place::Worker => ("worker", String::new()),
            Place::Object { stub, .. } => ("object", stub.binding().to_owned()),
        }
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            Place::Answered(_) => "Route::Answered",
            Place::Admin => "Route::Admin",
            Place::Asset(_) => "Route::Asset",
            Place::Worker => "Route::Worker",
            Place::Object { .. } => "Route::Object",
        })
    }
}

/// Liveness: 200 unless the storage layer cannot go on (then the process
/// should be restarted), with no token needed.
pub const HEALTH_PATH: &str = "/_dohost/health";

/// Readiness: 200 while the host takes events and can write, 503 with the
/// reason otherwise (shutting down, or a disk that cannot be written).
pub const READY_PATH: &str = "/_dohost/ready";

impl Host {
    /// The answer of [`HEALTH_PATH`], or of [`READY_PATH`] if `ready`.
    fn health_response(&self, ready: bool) -> http::Response<Bytes> {
        let (status, text) = match self.health() {
            Health::Failed(reason) => (503, format!("failed: {reason}\n")),
            _ if ready && self.is_shut_down() => (503, "shutting down\n".to_owned()),
            Health::Unwritable(reason) if ready => (
                503,
                format!("not ready: the database cannot be written: {reason}\n"),
            ),
            _ => (200, "ok\n".to_owned()),
        };
        let mut response = http::Response::new(Bytes::from(text));
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }

    /// Places a request by its head, as `dohost serve` does: the admin API
    /// (`/_dohost/`, when `[admin] token` is set; a missing or wrong token is
    /// answered here, 401, except for the files of the web page at
    /// `/_dohost/ui`, which need none), else a static asset when `[assets]` has a file
    /// for the path (see [`AssetsConfig`](crate::AssetsConfig)), else the
    /// entry worker when one is configured, else the default router, which
    /// sends `/<BINDING>/<object-name>/<rest>` to the object named
    /// `<object-name>` (by `id_from_name`) with the path `/<rest>`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for a path the router cannot place (the
    /// configured bindings are in [`Error::detail`], not the message);
    /// [`ErrorKind::BadRequest`] for an object name that is not
    /// percent-encoded UTF-8 or longer than [`MAX_OBJECT_NAME_BYTES`].
    pub fn route(&self, head: &http::request::Parts) -> Result<Route> {
        self.inner.start_scheduler();
        match head.uri.path() {
            HEALTH_PATH => return Ok(Route(Place::Answered(self.health_response(false)))),
            READY_PATH => return Ok(Route(Place::Answered(self.health_response(true)))),
            _ => {}
        }
        if let Some(token) = &self.inner.admin_token
            && head.uri.path().starts_with(admin::HTTP_PREFIX)
        {
            // The browser's files hold no data: they need no token.
            if let Some(file) = ui::asset(head) {
                return Ok(Route(Place::Answered(file)));
            }
            return Ok(Route(match admin::refusal(token, head) {
                None => Place::Admin,
                Some(refusal) => Place::Answered(refusal),
            }));
        }
        let path = head.uri.path();
        let mut segments = path.trim_start_matches('/').splitn(3, '/');
        let binding = segments.next().unwrap_or_default();
        if let Some(assets) = &self.inner.assets {
            // Unmatched paths go to the worker, or to the default router
            // when they name a binding; else the not-found handling's page.
            let routable = self.inner.worker.is_some()
                || (self.inner.namespaces.contains_key(binding)
                    && segments.clone().next().is_some());
            match assets.route(head, routable) {
                AssetRoute::Pass => {}
                found => return Ok(Route(Place::Asset(found))),
            }
        }
        if self.inner.worker.is_some() {
            return Ok(Route(Place::Worker));
        }
        let name = segments.next().unwrap_or_default();
        let rest = segments.next().unwrap_or_default();
        let bindings = || {
            let names: Vec<&str> = self.inner.namespaces.keys().map(String::as_str).collect();
            format!("configured bindings: {}", names.join(", "))
        };
        if binding.is_empty() || name.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no route for {path:?}: request /<BINDING>/<object-name>/<path>"),
            )
            .with_detail(bindings()));
        }
        let Some(namespace) = self.inner.namespaces.get(binding) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no route for {path:?}: no Durable Object binding named {binding:?}"),
            )
            .with_detail(bindings()));
        };
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("object name {name:?} is not valid percent-encoded UTF-8"),
                )
            })?;
        if name.len() > MAX_OBJECT_NAME_BYTES {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the object name is {} bytes long; the limit is {MAX_OBJECT_NAME_BYTES}",
                    name.len()
                ),
            ));
        }
        let mut rewritten = format!("/{rest}");
        if let Some(query) = head.uri.query() {
            rewritten.push('?');
            rewritten.push_str(query);
        }
        let mut uri = head.uri.clone().into_parts();
        uri.path_and_query = Some(rewritten.parse().map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("invalid path {rewritten:?}: {e}"),
            )
        })?);
        let uri = http::Uri::from_parts(uri)
            .map_err(|e| Error::new(ErrorKind::BadRequest, format!("invalid URI: {e}")))?;
        let stub = namespace.id_from_name(&name).get();
        Ok(Route(Place::Object { stub, uri }))
    }

    /// Carries out a request placed by [`Host::route`] (from the same head).
    ///
    /// # Errors
    ///
    /// Every error of [`Stub::fetch`](crate::Stub::fetch).
    pub async fn fetch_routed(
        &self,
        route: Route,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>> {
        let started = std::time::Instant::now();
        let (kind, binding) = route.labels();
        let result = self.carry_out(route, request).await;
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(e) => e.http_status(),
        };
        self.inner
            .http_counts
            .record(kind, &binding, status, started.elapsed().as_secs_f64());
        result
    }

    async fn carry_out(
        &self,
        route: Route,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>> {
        let whole = |response: http::Response<Bytes>| response.map(Body::from);
        match route.0 {
            Place::Answered(response) => Ok(whole(response)),
            Place::Asset(AssetRoute::File(file, status)) => {
                let (head, _) = request.into_parts();
                Ok(whole(assets::serve_file(&head, file, status).await))
            }
            Place::Asset(AssetRoute::Redirect(location)) => Ok(whole(assets::redirect(&location))),
            Place::Asset(AssetRoute::Pass) => {
                Err(Error::new(ErrorKind::NotFound, "no asset for this path"))
            }
            Place::Admin => Ok(whole(admin::serve_http(self, request).await)),
            Place::Worker => {
                let worker = self.inner.worker.as_ref().ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, "this host has no entry worker")
                })?;
                let response = worker.fetch(to_wit_request(request)).await?;
                from_wit_response(response)
            }
            Place::Object { stub, uri } => {
                let (mut parts, body) = request.into_parts();
                parts.uri = uri;
                stub.fetch_streaming(http::Request::from_parts(parts, body))
                    .await
            }
        }
    }

    /// Serves one HTTP request as `dohost serve` does: [`Host::route`], then
    /// [`Host::fetch_routed`].
    ///
    /// # Errors
    ///
    /// As [`Host::route`] and [`Host::fetch_routed`].
    /// A body the guest streams is read to its end.
    pub async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (parts, body) = request.into_parts();
        let route = self.route(&parts)?;
        let response = self
            .fetch_routed(route, http::Request::from_parts(parts, body))
            .await?;
        Body::whole(response).await
    }
}
