//! The chat example's entry worker in Rust: serves the page at `/` and
//! sends `/rooms/<name>/websocket` to the room named `<name>`.

use dohost_sdk::{Env, Request, Response, Result, Worker};

/// The page both versions of the example serve.
const PAGE: &str = include_str!("../../../page.html");

/// Routes the chat's requests.
pub struct Chat;

impl Worker for Chat {
    async fn fetch(req: Request, env: &Env) -> Result<Response> {
        let path = req.path().to_owned();
        if path == "/" {
            let mut page = Response::text(PAGE);
            page.headers = vec![("content-type".into(), "text/html; charset=utf-8".into())];
            return Ok(page);
        }
        let room = path
            .strip_prefix("/rooms/")
            .and_then(|rest| rest.strip_suffix("/websocket"))
            .filter(|room| !room.is_empty() && !room.contains('/'));
        match room {
            Some(room) => env.namespace("ROOMS")?.get_by_name(room).fetch(req).await,
            None => Ok(Response::text("not found").with_status(404)),
        }
    }
}

dohost_sdk::export_worker!(Chat);
