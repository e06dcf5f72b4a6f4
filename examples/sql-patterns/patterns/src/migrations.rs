//! Schema migrations: the constructor brings the database to the schema
//! version the code wants, one step at a time, each step and its
//! `PRAGMA user_version` in one transaction, so a step runs exactly once
//! however often the object starts (or crashes).
//!
//! - `POST /users` with `{"name": .., "email": ..}` (`email` optional, and
//!   only from schema version 2): the stored user, with its `id`.
//! - `GET /users`: the users in `id` order (the first 1,000).
//! - `GET /version`: `{"user_version": .., "migrations_run": ..}`, the
//!   database's schema version and how many steps this instance's
//!   constructor ran.
//!
//! The version the code wants is `SCHEMA_VERSION` from `[vars]` (1 or 2,
//! by default 2), so a deployment can move from one to the next.

use std::cell::RefCell;

use dohost_sdk::{
    DurableObject, Env, Error, Request, Response, Result, Sql, State, Storage, params,
};
use serde::{Deserialize, Serialize};

use crate::{Failure, Handled, bad_request, finish, no_route, number_var, route};

/// The migrations, in order: step `i` takes the schema from version `i` to
/// `i + 1`. Only ever append to this list.
const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "ALTER TABLE users ADD COLUMN email TEXT",
];

/// The latest schema version: the one all of [`MIGRATIONS`] lead to.
const LATEST: u32 = MIGRATIONS.len() as u32;

/// The first version with the `email` column.
const EMAIL_VERSION: u32 = 2;

/// The longest name or email a client may store, in bytes: the table has
/// no limit of its own short of SQLite's 2 MB per value, and a user record
/// has no need for one.
const MAX_FIELD_BYTES: usize = 1024;

/// How many users `GET /users` answers with at most, so one response stays
/// small however many users there are.
const MAX_LISTED: u32 = 1000;

/// A user as stored (`email` only exists from schema version 2).
#[derive(Debug, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

/// A user as clients send one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    email: Option<String>,
}

/// The database's schema, as the constructor left it.
#[derive(Debug, Clone, Copy)]
struct Schema {
    /// `PRAGMA user_version` after migrating.
    version: u32,
    /// How many migration steps the constructor ran.
    migrations_run: u32,
}

#[derive(Serialize)]
struct Version {
    user_version: u32,
    migrations_run: u32,
}

/// Cloudflare's migration pattern: in the constructor (which runs before
/// any request, as with `blockConcurrencyWhile`), read `PRAGMA
/// user_version` and apply each missing step inside `transactionSync`
/// together with the new `user_version`.
pub struct Migrations {
    storage: Storage,
    /// The version the code wants, or why `SCHEMA_VERSION` is unusable.
    target: Result<u32>,
    /// The migrated schema, or why migrating failed (tried again on the
    /// next request).
    schema: RefCell<Result<Schema>>,
}

fn user_version(sql: Sql) -> Result<u32> {
    let version: i64 = sql.exec("PRAGMA user_version", &[])?.one()?.get_index(0)?;
    u32::try_from(version)
        .map_err(|_| Error::new(format!("PRAGMA user_version is {version}, not a version")))
}

/// Applies the steps from the database's version up to `target`.
fn migrate(storage: Storage, target: u32) -> Result<Schema> {
    let sql = storage.sql();
    let mut version = user_version(sql)?;
    if version > LATEST {
        return Err(Error::new(format!(
            "the database is at schema version {version}, newer than this code's latest ({LATEST})"
        )));
    }
    let mut migrations_run = 0;
    while version < target {
        let step = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
            .ok_or_else(|| Error::new(format!("no migration from schema version {version}")))?;
        let next = version + 1;
        storage.transaction_sync(|| {
            sql.exec(step, &[])?;
            // PRAGMA takes no parameters; `next` is our own number.
            sql.exec(&format!("PRAGMA user_version = {next}"), &[])?;
            Ok(())
        })?;
        version = next;
        migrations_run += 1;
    }
    Ok(Schema {
        version,
        migrations_run,
    })
}

fn checked_field<'a>(field: &str, value: &'a str) -> std::result::Result<&'a str, Failure> {
    if value.trim().is_empty() {
        return Err(bad_request(format!("the {field} is empty")));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(bad_request(format!(
            "the {field} is {} bytes, over the limit of {MAX_FIELD_BYTES} bytes",
            value.len()
        )));
    }
    Ok(value)
}

impl Migrations {
    fn handle(&self, req: &Request) -> Handled {
        let target = self.target.clone()?;
        let schema = {
            let mut schema = self.schema.borrow_mut();
            if schema.is_err() {
                *schema = migrate(self.storage, target);
            }
            schema.clone()?
        };
        let (method, path) = route(req);
        match (method, path.as_slice()) {
            ("POST", ["users"]) => self.add_user(schema, req),
            ("GET", ["users"]) => {
                let users = self
                    .storage
                    .sql()
                    .exec(
                        "SELECT * FROM users ORDER BY id LIMIT ?",
                        params![MAX_LISTED],
                    )?
                    .to_array_as::<User>()?;
                Ok(Response::json(&users)?)
            }
            ("GET", ["version"]) => Ok(Response::json(&Version {
                user_version: user_version(self.storage.sql())?,
                migrations_run: schema.migrations_run,
            })?),
            _ => Err(no_route(req, "POST and GET /users and GET /version")),
        }
    }

    fn add_user(&self, schema: Schema, req: &Request) -> Handled {
        let user: NewUser = serde_json::from_slice(&req.body).map_err(|e| {
            bad_request(format!(
                "the body is not a user {{\"name\", \"email\" (optional)}}: {e}"
            ))
        })?;
        let name = checked_field("name", &user.name)?;
        let sql = self.storage.sql();
        let cursor = match user.email {
            Some(_) if schema.version < EMAIL_VERSION => {
                return Err(bad_request(format!(
                    "this object's schema is at version {}, which has no email column (it arrives in version {EMAIL_VERSION})",
                    schema.version
                )));
            }
            Some(email) => sql.exec(
                "INSERT INTO users (name, email) VALUES (?, ?) RETURNING *",
                params![name, checked_field("email", &email)?],
            )?,
            None => sql.exec(
                "INSERT INTO users (name) VALUES (?) RETURNING *",
                params![name],
            )?,
        };
        Ok(Response::json(&cursor.one_as::<User>()?)?)
    }
}

impl DurableObject for Migrations {
    fn new(state: State, env: Env) -> Self {
        let storage = state.storage();
        let target = number_var(&env, "SCHEMA_VERSION", 1..=LATEST.into(), LATEST.into())
            .map(|v| u32::try_from(v).unwrap_or(LATEST));
        let schema = match &target {
            Ok(target) => migrate(storage, *target),
            Err(e) => Err(e.clone()),
        };
        Migrations {
            storage,
            target,
            schema: RefCell::new(schema),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        finish(self.handle(&req))
    }
}
