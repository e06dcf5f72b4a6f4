//! In-memory caching: the object keeps what it read in a field, so repeated
//! reads cost no storage call, and storage stays the truth that outlives the
//! object.
//!
//! - `GET /user/<id>`: the user as `{"user": {..}, "from": "memory"}` (or
//!   `"storage"` when the map did not have it); 404 if there is none.
//! - `PUT /user/<id>` with `{"name": .., "email": ..}`: stores the user,
//!   and appends the change to the SQL table `updates`. The key and the
//!   row commit together, as every write of one event does, so the log
//!   never misses a stored user nor holds one that was not stored.

use std::cell::RefCell;
use std::collections::HashMap;

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, Storage, params};
use serde::{Deserialize, Serialize};

use crate::{
    Handled, bad_request, checked_body, checked_name, client_error, finish, no_route, route,
};

/// How many users the map holds. Past it the map is emptied (storage still
/// has every user), so clients cannot grow the object's memory without
/// bound.
const MAX_CACHED_USERS: usize = 1000;

/// A user, as clients send it and as it is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    name: String,
    email: String,
}

/// A user read back, and where it came from.
#[derive(Serialize)]
struct Found<'a> {
    user: &'a User,
    from: &'static str,
}

/// Cloudflare's in-memory caching pattern: `getUser` looks in a `Map` field
/// first and falls back to storage, filling the map; `updateUser` writes
/// storage and the map.
pub struct UserCache {
    storage: Storage,
    /// A `RefCell`: handlers share `&self`.
    users: RefCell<HashMap<String, User>>,
}

fn key(id: &str) -> String {
    format!("user:{id}")
}

impl UserCache {
    fn handle(&self, req: &Request) -> Handled {
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("GET", ["user", id]) => self.get_user(checked_name(id)?),
            ("PUT", ["user", id]) => {
                let id = checked_name(id)?;
                let user = serde_json::from_slice(checked_body(&req.body)?).map_err(|e| {
                    bad_request(format!(
                        "the body is not a user {{\"name\", \"email\"}}: {e}"
                    ))
                })?;
                self.update_user(id, user)
            }
            _ => Err(no_route(req, "GET and PUT /user/<id>")),
        }
    }

    fn get_user(&self, id: &str) -> Handled {
        if let Some(user) = self.users.borrow().get(id) {
            return Ok(Response::json(&Found {
                user,
                from: "memory",
            })?);
        }
        let Some(user) = self.storage.get::<User>(&key(id))? else {
            return Err(client_error(404, format!("no user {id:?}")));
        };
        let response = Response::json(&Found {
            user: &user,
            from: "storage",
        })?;
        self.remember(id, user);
        Ok(response)
    }

    fn update_user(&self, id: &str, user: User) -> Handled {
        self.storage.put(&key(id), &user)?;
        let sql = self.storage.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS updates (seq INTEGER PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL)",
            &[],
        )?;
        sql.exec(
            "INSERT INTO updates (user, name, email) VALUES (?, ?, ?)",
            params![id, user.name.as_str(), user.email.as_str()],
        )?;
        let response = Response::json(&user)?;
        self.remember(id, user);
        Ok(response)
    }

    fn remember(&self, id: &str, user: User) {
        let mut users = self.users.borrow_mut();
        if users.len() >= MAX_CACHED_USERS && !users.contains_key(id) {
            users.clear();
        }
        users.insert(id.to_owned(), user);
    }
}

impl DurableObject for UserCache {
    fn new(state: State, _env: Env) -> Self {
        UserCache {
            storage: state.storage(),
            users: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
