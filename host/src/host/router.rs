//! The default router: how [`Host::fetch`] places a request, through the
//! entry worker when one is configured, else by its path.

use bytes::Bytes;

use super::admin;
use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{from_wit_response, to_wit_request};

impl Host {
    /// The names of all bindings, comma-separated.
    fn binding_names(&self) -> String {
        self.inner
            .namespaces
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Serves one HTTP request as `dohost serve` does: through the entry
    /// worker when one is configured, otherwise through the default router,
    /// which sends `/<BINDING>/<object-name>/<rest>` to the object named
    /// `<object-name>` (by `id_from_name`) with the path `/<rest>`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for a path the router cannot place, and every
    /// error of [`Stub::fetch`](crate::Stub::fetch).
    pub async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        self.inner.start_scheduler();
        if let Some(token) = &self.inner.admin_token
            && request.uri().path().starts_with(admin::HTTP_PREFIX)
        {
            return Ok(admin::serve_http(self, token, request).await);
        }
        if let Some(worker) = &self.inner.worker {
            let response = worker.fetch(to_wit_request(request)).await?;
            return from_wit_response(response);
        }
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let mut segments = path.trim_start_matches('/').splitn(3, '/');
        let binding = segments.next().unwrap_or_default();
        let name = segments.next().unwrap_or_default();
        let rest = segments.next().unwrap_or_default();
        if binding.is_empty() || name.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no route for {path:?}: request /<BINDING>/<object-name>/<path>, with BINDING one of: {}",
                    self.binding_names()
                ),
            ));
        }
        let namespace = self.namespace(binding)?;
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("object name {name:?} is not valid percent-encoded UTF-8"),
                )
            })?;
        let mut rewritten = format!("/{rest}");
        if let Some(query) = parts.uri.query() {
            rewritten.push('?');
            rewritten.push_str(query);
        }
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = Some(rewritten.parse().map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("invalid path {rewritten:?}: {e}"),
            )
        })?);
        parts.uri = http::Uri::from_parts(uri)
            .map_err(|e| Error::new(ErrorKind::BadRequest, format!("invalid URI: {e}")))?;
        let request = http::Request::from_parts(parts, body);
        namespace.id_from_name(&name).get().fetch(request).await
    }
}
