//! Parent-child coordination, as in Cloudflare's Durable Objects patterns:
//! a `Workspace` object owns a set of `Document` objects.
//!
//! Creating a document picks the child's id with
//! `id_from_name("<workspace-id>:<document-id>")`, so the same document of
//! the same workspace is always the same object and two workspaces never
//! share one; calls the child's `initialize(name)` RPC method; and records the
//! child in the workspace's SQL table `documents`, which the list route
//! reads. Each Document keeps its own name and text in its own storage.
//!
//! Routes of a Workspace (the worker forwards `/workspaces/<name>/...`):
//! - `POST .../documents` with `{"id": "...", "name": "..."}`: creates the
//!   document (201), or 409 if the id is taken.
//! - `GET .../documents`: the workspace's documents, oldest first.
//! - `GET .../documents/<id>`: the document's own view of itself (RPC
//!   `describe`).
//! - `GET .../contents`: every document's own view, asked of all the
//!   children at once (JavaScript's `Promise.all`), so it takes about as
//!   long as the slowest child rather than the sum.
//! - `PUT .../documents/<id>` with text: replaces the document's text (RPC
//!   `write`) and answers its new version.

use dohost_sdk::{
    DurableObject, Env, Error, Request, Response, Result, State, future, now_ms, params,
};
use serde::{Deserialize, Serialize};

/// What `POST .../documents` takes.
#[derive(Deserialize)]
struct NewDocument {
    id: String,
    name: String,
}

/// A row of the workspace's `documents` table.
#[derive(Serialize, Deserialize)]
struct Listed {
    id: String,
    name: String,
    object_id: String,
    created_at: i64,
}

/// What a Document says about itself.
#[derive(Serialize, Deserialize)]
pub struct DocumentInfo {
    /// The name given to `initialize`.
    name: String,
    /// The object's own name: `<workspace-id>:<document-id>`.
    object_name: Option<String>,
    /// When `initialize` first ran (ms since the epoch).
    created_at: i64,
    /// How many times the text was written.
    version: u32,
    /// The current text.
    text: String,
}

/// The parent: creates, records and lists its documents.
pub struct Workspace {
    state: State,
    env: Env,
}

impl DurableObject for Workspace {
    fn new(state: State, env: Env) -> Self {
        // Runs before the first event, so the table exists for every route.
        let created = state.sql().exec(
            "CREATE TABLE IF NOT EXISTS documents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                object_id TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )",
            params![],
        );
        if let Err(e) = created {
            panic!("cannot create the documents table: {e}");
        }
        Workspace { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path().to_owned();
        let rest: Vec<&str> = path.trim_start_matches('/').split('/').skip(2).collect();
        match (req.method.as_str(), rest.as_slice()) {
            ("POST", ["documents"]) => {
                let new: NewDocument = match req.json() {
                    Ok(new) => new,
                    Err(e) => return Ok(Response::text(format!("{e}\n")).with_status(400)),
                };
                self.create(new).await
            }
            ("GET", ["documents"]) => Response::json(&self.list()?),
            ("GET", ["contents"]) => Response::json(&self.contents().await?),
            ("GET", ["documents", id]) => match self.child(id)? {
                Some(child) => Response::json(&child.call::<DocumentInfo>("describe", &()).await?),
                None => Ok(not_found(id)),
            },
            ("PUT", ["documents", id]) => match self.child(id)? {
                Some(child) => {
                    let version: u32 = child.call("write", &req.text()?).await?;
                    Response::json(&serde_json::json!({ "version": version }))
                }
                None => Ok(not_found(id)),
            },
            _ => Ok(Response::text(
                "routes: POST|GET /workspaces/<name>/documents, GET|PUT /workspaces/<name>/documents/<id>, GET /workspaces/<name>/contents\n",
            )
            .with_status(404)),
        }
    }
}

impl Workspace {
    /// The stub of the document `id` of this workspace, whether or not it
    /// was created.
    fn stub(&self, id: &str) -> Result<dohost_sdk::Stub> {
        let documents = self.env.namespace("DOCUMENT")?;
        Ok(documents.get_by_name(&format!("{}:{id}", self.state.id())))
    }

    /// The stub of the document `id`, if this workspace created it.
    fn child(&self, id: &str) -> Result<Option<dohost_sdk::Stub>> {
        let known = self
            .state
            .sql()
            .exec(
                "SELECT COUNT(*) AS n FROM documents WHERE id = ?",
                params![id],
            )?
            .one()?
            .get::<i64>("n")?;
        if known == 0 {
            return Ok(None);
        }
        self.stub(id).map(Some)
    }

    async fn create(&self, new: NewDocument) -> Result<Response> {
        if new.id.is_empty() || new.id.contains('/') {
            return Ok(
                Response::text("a document id is a non-empty string without '/'\n")
                    .with_status(400),
            );
        }
        if self.child(&new.id)?.is_some() {
            return Ok(already_exists(&new.id));
        }
        let child = self.stub(&new.id)?;
        // Other events may run while the call waits, a create of the same
        // id among them: `initialize` with the same name is harmless twice,
        // and the table's primary key lets only the first create record it.
        let info: DocumentInfo = child.call("initialize", &new.name).await?;
        let listed = Listed {
            id: new.id,
            name: info.name,
            object_id: child.id(),
            created_at: info.created_at,
        };
        let inserted = self.state.sql().exec(
            "INSERT INTO documents (id, name, object_id, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
            params![
                listed.id.as_str(),
                listed.name.as_str(),
                listed.object_id.as_str(),
                listed.created_at
            ],
        )?;
        if inserted.rows_written() == 0 {
            return Ok(already_exists(&listed.id));
        }
        Ok(Response::json(&listed)?.with_status(201))
    }

    /// Every document's own view, with its id, asking all the children at
    /// once.
    async fn contents(&self) -> Result<Vec<(String, DocumentInfo)>> {
        let listed = self.list()?;
        let stubs = listed
            .iter()
            .map(|doc| self.stub(&doc.id))
            .collect::<Result<Vec<_>>>()?;
        let infos = future::try_join_all(
            stubs
                .iter()
                .map(|child| child.call::<DocumentInfo>("describe", &())),
        )
        .await?;
        Ok(listed.into_iter().map(|doc| doc.id).zip(infos).collect())
    }

    fn list(&self) -> Result<Vec<Listed>> {
        self.state
            .sql()
            .exec(
                "SELECT id, name, object_id, created_at FROM documents ORDER BY created_at, id",
                params![],
            )?
            .to_array_as()
    }
}

fn already_exists(id: &str) -> Response {
    Response::text(format!("document {id:?} already exists\n")).with_status(409)
}

fn not_found(id: &str) -> Response {
    Response::text(format!("no document {id:?} in this workspace\n")).with_status(404)
}

/// A child: one document, reached only through its workspace's RPC calls.
pub struct Document {
    state: State,
}

impl DurableObject for Document {
    fn new(state: State, _env: Env) -> Self {
        Document { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::json(&self.describe()?)
    }

    dohost_sdk::methods!(initialize, describe, write);
}

impl Document {
    /// Names the document. Repeating it with the same name is harmless (a
    /// retried create); another name is an error.
    fn initialize(&self, name: String) -> Result<DocumentInfo> {
        let storage = self.state.storage();
        match storage.get::<String>("name")? {
            Some(existing) if existing != name => {
                return Err(Error::new(format!(
                    "this document is already initialized as {existing:?}"
                )));
            }
            Some(_) => {}
            None => {
                storage.put("name", &name)?;
                storage.put("created_at", &now_ms())?;
            }
        }
        self.describe()
    }

    fn describe(&self) -> Result<DocumentInfo> {
        let storage = self.state.storage();
        let name = storage
            .get::<String>("name")?
            .ok_or_else(|| Error::new("this document was never initialized"))?;
        Ok(DocumentInfo {
            name,
            object_name: self.state.name(),
            created_at: storage.get("created_at")?.unwrap_or(0),
            version: storage.get("version")?.unwrap_or(0),
            text: storage.get("text")?.unwrap_or_default(),
        })
    }

    fn write(&self, text: String) -> Result<u32> {
        let storage = self.state.storage();
        if storage.get::<String>("name")?.is_none() {
            return Err(Error::new("this document was never initialized"));
        }
        let version = storage.get::<u32>("version")?.unwrap_or(0) + 1;
        storage.put("text", &text)?;
        storage.put("version", &version)?;
        Ok(version)
    }
}

dohost_sdk::export_objects!(Workspace, Document);
