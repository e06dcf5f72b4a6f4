//! Cleanup: `delete_all` removes every key of the object in one step,
//! atomically with the event's other writes.
//!
//! - `PUT /kv/<key>`: stores the body under `<key>`.
//! - `GET /kv/<key>`: the stored body; 404 if there is none.
//! - `GET /count`: how many keys the object has, as text.
//! - `POST /delete-all`: deletes them all.

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, Storage};

use crate::{Handled, checked_body, checked_name, client_error, finish, no_route, route, scan};

/// Cloudflare's cleanup pattern: `ctx.storage.deleteAll()` when an object's
/// data is no longer needed, leaving no key behind (after it, and after a
/// restart, the object is as if new).
pub struct Cleanup {
    storage: Storage,
}

impl Cleanup {
    fn handle(&self, req: &Request) -> Handled {
        let storage = self.storage;
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("PUT", ["kv", key]) => {
                storage.put_bytes(checked_name(key)?, checked_body(&req.body)?)?;
                Ok(Response::text("stored"))
            }
            ("GET", ["kv", key]) => match storage.get_bytes(checked_name(key)?)? {
                Some(body) => Ok(Response {
                    status: 200,
                    headers: vec![("content-type".into(), "application/octet-stream".into())],
                    body,
                    websocket: None,
                }),
                None => Err(client_error(404, format!("no key {key:?}"))),
            },
            ("GET", ["count"]) => {
                let mut count = 0_u64;
                scan(
                    |options| storage.list_bytes(options),
                    None,
                    |_, _| count += 1,
                )?;
                Ok(Response::text(count.to_string()))
            }
            ("POST", ["delete-all"]) => {
                storage.delete_all()?;
                Ok(Response::text("deleted"))
            }
            _ => Err(no_route(
                req,
                "PUT and GET /kv/<key>, GET /count and POST /delete-all",
            )),
        }
    }
}

impl DurableObject for Cleanup {
    fn new(state: State, _env: Env) -> Self {
        Cleanup {
            storage: state.storage(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
