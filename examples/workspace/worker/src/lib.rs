//! The workspace example's entry worker: `/workspaces/<name>/...` goes to
//! the Workspace object called `<name>`, as
//! `env.WORKSPACE.getByName(name).fetch(request)` would in a Cloudflare
//! Worker; anything else is a 404 that says what is served.

use dohost_sdk::{Env, Request, Response, Result, Worker};

/// Routes requests to workspaces by name.
pub struct Router;

impl Worker for Router {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let path = req.path().to_owned();
        let mut segments = path.trim_start_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("workspaces"), Some(name)) if !name.is_empty() => {
                env.namespace("WORKSPACE")?
                    .get_by_name(name)
                    .fetch(req)
                    .await
            }
            _ => Ok(Response::text(
                "not found: this app serves /workspaces/<workspace>/documents[/<id>]\n",
            )
            .with_status(404)),
        }
    }
}

dohost_sdk::export_worker!(Router);
