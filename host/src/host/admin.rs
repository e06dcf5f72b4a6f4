//! Object admin: list, inspect, delete and restore the objects of a data
//! directory (exports and imports are in `export.rs`).
//!
//! The same answers come from three places:
//! - a running host ([`Host::objects`], [`Host::object`],
//!   [`Host::delete_object`]); a deletion goes through the object's
//!   actor, so it waits for the running event and the next event finds an
//!   empty object;
//! - the admin HTTP API of a running host, when `[admin] token` is set,
//!   each route with `Authorization: Bearer <token>` (B is a binding,
//!   NAME_OR_ID a name, or `id:` and an id):
//!   - `GET /_dohost/bindings`: the bindings and their classes;
//!   - `GET /_dohost/objects[?binding=B]`: every object, as an array; with
//!     `q=TEXT` (a name holding it, or an id starting with it),
//!     `after=B/ID` or `limit=N`, a page `{"objects": [..], "next"}`;
//!   - `GET /_dohost/objects/B/NAME_OR_ID`: what it holds;
//!     `DELETE` the same path deletes it;
//!   - `GET /_dohost/objects/B/NAME_OR_ID/kv[?after=KEY&limit=N]`: a page
//!     of its keys with their values, `{"json": ..}` or `{"hex": ..}`;
//!   - `GET /_dohost/objects/B/NAME_OR_ID/sql/TABLE[?offset=N&limit=N]`:
//!     a page of a table's rows;
//!   - `POST /_dohost/objects/B/NAME_OR_ID/sql` with `{"query": ".."}`:
//!     the rows of one statement that only reads (a write is a 400);
//!   - `POST /_dohost/objects/B/NAME_OR_ID/alarm/run`: runs its alarm now,
//!     as a due alarm runs;
//!   - `GET /_dohost/objects/B/NAME_OR_ID/export`: its export
//!     (`docs/export.md`); `POST /_dohost/objects/B/NAME_OR_ID/import[?replace=1]`
//!     with an export as the body writes it as that object, through its
//!     actor ([`Host::import_object`]);
//!   - `POST /_dohost/backup`: a consistent copy of the whole database
//!     file, taken while the host serves ([`Host::backup`]);
//!   - `POST /_dohost/objects/B/NAME_OR_ID/restore` with `{"at": ..}` (a
//!     bookmark, ms since the epoch, an RFC 3339 time or how long ago):
//!     brings its storage back to then, `{"bookmark", "undo"}`
//!     (`[storage] history`, [`super::history`]);
//!   - `GET /_dohost/history`: what the history holds;
//!
//!   and `GET /_dohost/ui`, a web page over these routes whose files need
//!   no token (`ui.rs`);
//! - a stopped server's data directory ([`DataDir`], `dohost objects`).
//!
//! An object is listed once it has written something (the store's
//! directory of objects). Inspection reads what is durable.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::browse::ObjectQuery;
use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{block_on, minted_by, name_id, parse_id};
use dohost_store::{
    KeyInfo, NamespaceRecord, ObjectKey, Store, TableInfo, WriteSet, pass_gate, read_registry,
};

#[cfg(doc)]
use dohost_store::MAX_KEYS_SHOWN;

/// One object of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// The binding its namespace is bound as, e.g. `COUNTER`.
    pub binding: String,
    /// Its class, e.g. `Counter`.
    pub class: String,
    /// Its id, 64 hex characters.
    pub id: String,
    /// The name it was addressed by, if it ever was.
    pub name: Option<String>,
}

/// What an object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ObjectDetails {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectSummary,
    /// Its first KV keys ([`MAX_KEYS_SHOWN`] at most) with the size of
    /// each value, in key order.
    pub keys: Vec<KeyInfo>,
    /// How many KV keys it has.
    pub keys_total: u64,
    /// The tables of its SQL database with their row counts.
    pub sql_tables: Vec<TableInfo>,
    /// The size of its SQL database file, in bytes.
    pub sql_bytes: u64,
    /// When its alarm is due, in milliseconds since the Unix epoch.
    pub alarm: Option<i64>,
}

/// A namespace as the admin sees it.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub(crate) binding: String,
    pub(crate) class: String,
    pub(crate) ns: NamespaceRecord,
}

impl Place {
    /// The object `name_or_id` names: `id:` and an id of this namespace
    /// (64 hex characters it minted), or else a name. A name is never taken
    /// for an id, even one that looks like one.
    pub(crate) fn resolve(&self, name_or_id: &str) -> Result<ObjectKey> {
        let id = match name_or_id.strip_prefix(ID_PREFIX) {
            Some(hex) => parse_id(hex)
                .filter(|id| minted_by(&self.ns.secret, id))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "{name_or_id:?} is not an id of {}: an id is {ID_PREFIX} and the 64 hex characters its namespace gave it",
                            self.binding
                        ),
                    )
                })?,
            None => name_id(&self.ns.secret, name_or_id),
        };
        Ok(ObjectKey::new(self.ns.number, &id))
    }
}

/// How admin lookups mark an id, as opposed to a name: `id:<64 hex>`.
pub(crate) const ID_PREFIX: &str = "id:";

/// The place bound as `binding` among `places`.
pub(crate) fn place<'a>(places: &'a [Place], binding: &str) -> Result<&'a Place> {
    places.iter().find(|p| p.binding == binding).ok_or_else(|| {
        let known: Vec<&str> = places.iter().map(|p| p.binding.as_str()).collect();
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no binding {binding:?}; the bindings are: {}",
                known.join(", ")
            ),
        )
    })
}

/// The objects of `places` (of the one bound as `binding`, if given), in
/// binding and id order.
pub(crate) fn list(
    store: &Store,
    places: &[Place],
    binding: Option<&str>,
) -> Result<Vec<ObjectSummary>> {
    let chosen: Vec<&Place> = match binding {
        Some(b) => vec![place(places, b)?],
        None => places.iter().collect(),
    };
    let mut found = Vec::new();
    for p in chosen {
        for (key, name) in store.objects(p.ns.number)? {
            found.push(ObjectSummary {
                binding: p.binding.clone(),
                class: p.class.clone(),
                id: hex::encode(key.id()),
                name,
            });
        }
    }
    Ok(found)
}

/// What the object `name_or_id` of `place` holds; `None` if it has never
/// written anything.
pub(crate) fn show(
    store: &Arc<Store>,
    place: &Place,
    name_or_id: &str,
) -> Result<Option<ObjectDetails>> {
    let key = place.resolve(name_or_id)?;
    let Some(contents) = store.contents(key)? else {
        return Ok(None);
    };
    Ok(Some(ObjectDetails {
        object: ObjectSummary {
            binding: place.binding.clone(),
            class: place.class.clone(),
            id: hex::encode(key.id()),
            name: contents.name,
        },
        keys: contents.keys,
        keys_total: contents.keys_total,
        sql_tables: contents.sql_tables,
        sql_bytes: contents.sql_bytes,
        alarm: contents.alarm,
    }))
}

/// A stopped server's data directory, opened to list, inspect and delete
/// objects (`dohost objects`). The bindings are those the server had when
/// it last started.
///
/// ```no_run
/// # fn run() -> dohost::Result<()> {
/// let data = dohost::DataDir::open(".dohost")?;
/// for object in data.objects(Some("COUNTER"))? {
///     println!("{} {:?}", object.id, object.name);
/// }
/// # Ok(()) }
/// ```
pub struct DataDir {
    pub(super) store: Arc<Store>,
    pub(super) places: Vec<Place>,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    /// A cluster's database, which running nodes may be writing: read
    /// only.
    pub(super) shared: bool,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field(
                "bindings",
                &self.places.iter().map(|p| &p.binding).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Verifies the data directory `dir` of a stopped server (`dohost check`):
/// redb's integrity check of the file, then the checksum of every KV value
/// and SQL page, and every alarm record.
///
/// # Errors
///
/// [`ErrorKind::NotFound`] when `dir` holds no database,
/// [`ErrorKind::Storage`] when it cannot be opened at all.
pub fn check_data_dir(dir: impl AsRef<Path>) -> Result<dohost_store::CheckReport> {
    let path = dir.as_ref().join("dohost.redb");
    if !path.is_file() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} holds no dohost database; give the data directory of a server (--data)",
                dir.as_ref().display()
            ),
        ));
    }
    Ok(dohost_store::check_file(&path)?)
}

impl DataDir {
    /// Opens the data directory `dir` of a stopped server.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when `dir` holds no database,
    /// [`ErrorKind::Storage`] when it cannot be opened, e.g. because a
    /// running server has it (use the admin HTTP API then).
    pub fn open(dir: impl AsRef<Path>) -> Result<DataDir> {
        let dir = dir.as_ref();
        let path = dir.join("dohost.redb");
        if !path.is_file() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} holds no dohost database; give the data directory of a server (--data)",
                    dir.display()
                ),
            ));
        }
        let (store, stopped) = Store::open(&path, None, Arc::new(|_: &[_]| {})).map_err(|e| {
            let e = Error::from(e);
            Error::new(
                e.kind(),
                format!(
                    "{}; if `dohost serve` is running on it, use the admin HTTP API ([admin] token) instead",
                    e.message()
                ),
            )
        })?;
        DataDir::over(store, stopped, false)
    }

    /// Opens the objects of the cluster whose state is in the PostgreSQL
    /// database at `url`, to list and inspect them (its nodes may be
    /// running: deleting goes through a node's admin HTTP API).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if the database cannot be reached.
    pub fn open_postgres(url: &str) -> Result<DataDir> {
        let backend = dohost_store::PostgresBackend::connect(url)?;
        let (store, stopped) = Store::start(Arc::new(backend), None, Arc::new(|_: &[_]| {}))?;
        DataDir::over(store, stopped, true)
    }

    fn over(
        store: Store,
        stopped: tokio::sync::oneshot::Receiver<()>,
        shared: bool,
    ) -> Result<DataDir> {
        let registry = read_registry(&store)?;
        let places = registry
            .bound
            .iter()
            .filter_map(|(binding, class)| {
                Some(Place {
                    binding: binding.clone(),
                    class: class.clone(),
                    ns: *registry.classes.get(class)?,
                })
            })
            .collect();
        Ok(DataDir {
            store: Arc::new(store),
            places,
            stopped: Some(stopped),
            shared,
        })
    }

    /// The objects of every binding, or of `binding`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding;
    /// [`ErrorKind::Storage`] if the database cannot be read.
    pub fn objects(&self, binding: Option<&str>) -> Result<Vec<ObjectSummary>> {
        list(&self.store, &self.places, binding)
    }

    /// What the object `name_or_id` (a name, or `id:` and an id of the namespace) of
    /// `binding` holds; `None` if it has never written anything.
    ///
    /// # Errors
    ///
    /// As [`DataDir::objects`].
    pub fn object(&self, binding: &str, name_or_id: &str) -> Result<Option<ObjectDetails>> {
        show(&self.store, place(&self.places, binding)?, name_or_id)
    }

    /// Deletes the object `name_or_id` of `binding`: its keys, SQL database,
    /// alarm and directory entry, in one durable commit. `false` if there
    /// was no such object.
    ///
    /// # Errors
    ///
    /// As [`DataDir::objects`], and [`ErrorKind::Storage`] if the commit
    /// fails (then nothing is deleted).
    pub fn delete_object(&self, binding: &str, name_or_id: &str) -> Result<bool> {
        if self.shared {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "the nodes of the cluster may be running on this database: delete the object through a node's admin HTTP API (DELETE /_dohost/objects/BINDING/NAME_OR_ID)",
            ));
        }
        let key = place(&self.places, binding)?.resolve(name_or_id)?;
        if !self.store.has_object(&key)? {
            return Ok(false);
        }
        let done = self.store.commit(key, WriteSet::deletion(), None);
        block_on(async {
            pass_gate(Some(futures_util::FutureExt::shared(done))).await?;
            Ok(())
        })?;
        Ok(true)
    }
}

impl DataDir {
    /// Brings the storage of the object `name_or_id` of `binding` back to
    /// `at`, in one durable commit, as [`Host::restore_object`] does on a
    /// running server; a deleted object comes back.
    ///
    /// # Errors
    ///
    /// As [`Host::restore_object`]; refused on a cluster's database.
    pub fn restore_object(
        &self,
        binding: &str,
        name_or_id: &str,
        at: super::history::RestorePoint,
    ) -> Result<super::history::Restored> {
        if self.shared {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "the nodes of the cluster may be running on this database: restore the object through a node's admin HTTP API (POST /_dohost/objects/BINDING/NAME_OR_ID/restore)",
            ));
        }
        let place = place(&self.places, binding)?;
        let key = place.resolve(name_or_id)?;
        let bookmark = super::history::resolve(&self.store, at)?;
        let undo = self.store.current_bookmark()?;
        let writes = self.store.restore_writes(&key, bookmark)?;
        // Without a name the record keeps the one it had.
        let record = dohost_store::ObjectRecord {
            class: place.class.clone(),
            name: (!name_or_id.starts_with(ID_PREFIX)).then(|| name_or_id.to_owned()),
        };
        let done = self.store.commit(key, writes, Some(record));
        block_on(async {
            pass_gate(Some(futures_util::FutureExt::shared(done))).await?;
            Ok(())
        })?;
        Ok(super::history::Restored { bookmark, undo })
    }
}

impl Drop for DataDir {
    /// Commits what was sent and releases the database.
    fn drop(&mut self) {
        self.store.close();
        if let Some(stopped) = self.stopped.take() {
            let _ = block_on(async {
                let _ = stopped.await;
                Ok(())
            });
        }
    }
}

/// Where the admin HTTP API lives, when it is on.
pub(crate) const HTTP_PREFIX: &str = "/_dohost/";

/// Checks an admin request's `Authorization: Bearer <token>` header (the
/// scheme in any case), on its head alone: the refusal to answer, with
/// status 401, if it lacks the token.
pub(crate) fn refusal(
    token: &str,
    head: &http::request::Parts,
) -> Option<http::Response<bytes::Bytes>> {
    let given = head
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    let refusal = match given {
        None => {
            "the admin API needs the header Authorization: Bearer <token>, with the [admin] token of dohost.toml"
        }
        // Compared as hashes: blake3's equality takes the same time
        // wherever the two differ.
        Some(given) if blake3::hash(given.as_bytes()) != blake3::hash(token.as_bytes()) => {
            "wrong admin token"
        }
        Some(_) => return None,
    };
    let mut response = json_reply(401, &serde_json::json!({ "error": refusal }));
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    Some(response)
}

/// Answers an admin HTTP request (see the module docs) whose token
/// [`refusal`] accepted: JSON bodies, `{"error": ".."}` with the status
/// of the error on failure.
pub(crate) async fn serve_http(
    host: &Host,
    request: http::Request<bytes::Bytes>,
) -> http::Response<bytes::Bytes> {
    let path = &request.uri().path()[HTTP_PREFIX.len()..];
    let segments: Vec<String> = path
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    if method == http::Method::GET && segments == ["metrics"] {
        return metrics_reply(host);
    }
    if let Some(reply) = super::export::serve_http(host, &method, &segments, &request).await {
        return reply;
    }
    let outcome = match (&method, segments.as_slice()) {
        (&http::Method::GET, ["stats"]) => {
            let stats = host.stats();
            Ok((
                200,
                serde_json::json!({
                    "objects_in_memory": stats.objects_in_memory,
                    "activations": stats.activations,
                    "activation_time_us": stats.activation_time.as_micros(),
                    "websockets": stats.websockets,
                    "worker_instances": stats.worker_instances,
                    "cache_bytes": stats.cache_bytes,
                    "disk_reads": stats.disk_reads,
                    "memory_reads": stats.memory_reads,
                    "alarms_in_memory": stats.alarms_in_memory,
                    "alarms_run": stats.alarms_run,
                }),
            ))
        }
        (&http::Method::GET, ["bindings"]) => Ok((200, serde_json::json!(host.bindings()))),
        (&http::Method::GET, ["objects"]) => {
            let uri = request.uri();
            number(uri, "limit").and_then(|limit| {
                let query = ObjectQuery {
                    binding: param(uri, "binding"),
                    search: param(uri, "q"),
                    after: param(uri, "after"),
                    limit,
                };
                if query.search.is_none() && query.after.is_none() && limit.is_none() {
                    // The whole list, as a bare array.
                    host.objects(query.binding.as_deref())
                        .map(|objects| (200, serde_json::json!(objects)))
                } else {
                    host.find_objects(&query)
                        .map(|page| (200, serde_json::json!(page)))
                }
            })
        }
        (&http::Method::GET, ["objects", binding, name_or_id, "kv"]) => {
            let uri = request.uri();
            number(uri, "limit").and_then(|limit| {
                host.object_kv(
                    binding,
                    name_or_id,
                    param(uri, "after").as_deref(),
                    limit.unwrap_or(DEFAULT_PAGE),
                )
                .map(|page| (200, serde_json::json!(page)))
            })
        }
        (&http::Method::GET, ["objects", binding, name_or_id, "sql", table]) => {
            let uri = request.uri();
            match number(uri, "offset").and_then(|o| Ok((o, number(uri, "limit")?))) {
                Ok((offset, limit)) => host
                    .object_sql_rows(
                        binding,
                        name_or_id,
                        table,
                        u64::try_from(offset.unwrap_or(0)).unwrap_or(u64::MAX),
                        limit.unwrap_or(DEFAULT_PAGE),
                    )
                    .await
                    .map(|rows| (200, serde_json::json!(rows))),
                Err(e) => Err(e),
            }
        }
        (&http::Method::POST, ["objects", binding, name_or_id, "sql"]) => {
            match serde_json::from_slice::<QueryBody>(request.body()) {
                Ok(body) => host
                    .query_object_sql(binding, name_or_id, &body.query)
                    .await
                    .map(|rows| (200, serde_json::json!(rows))),
                Err(e) => Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("the body must be {{\"query\": \"..\"}}: {e}"),
                )),
            }
        }
        (&http::Method::GET, ["history"]) => host
            .history()
            .map(|stats| (200, super::history::stats_json(stats))),
        (&http::Method::POST, ["objects", binding, name_or_id, "restore"]) => {
            match serde_json::from_slice::<super::history::RestoreBody>(request.body()) {
                Ok(body) => match body.point() {
                    Ok(at) => host
                        .restore_object(binding, name_or_id, at)
                        .await
                        .map(|restored| (200, serde_json::json!(restored))),
                    Err(e) => Err(e),
                },
                Err(e) => Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("the body must be {{\"at\": BOOKMARK_OR_TIME}}: {e}"),
                )),
            }
        }
        (&http::Method::POST, ["objects", binding, name_or_id, "alarm", "run"]) => host
            .run_alarm(binding, name_or_id)
            .await
            .map(|run| (200, serde_json::json!(run))),
        (&http::Method::GET, ["objects", binding, name_or_id]) => {
            host.object(binding, name_or_id).map(|found| match found {
                Some(details) => (200, serde_json::json!(details)),
                None => not_found(binding, name_or_id),
            })
        }
        (&http::Method::DELETE, ["objects", binding, name_or_id]) => host
            .delete_object(binding, name_or_id)
            .await
            .map(|deleted| {
                if deleted {
                    (200, serde_json::json!({ "deleted": true }))
                } else {
                    not_found(binding, name_or_id)
                }
            }),
        _ => Ok((
            404,
            serde_json::json!({
                "error": format!(
                    "no admin route {method} {}; the routes are GET {HTTP_PREFIX}stats, GET {HTTP_PREFIX}metrics, GET {HTTP_PREFIX}bindings, GET {HTTP_PREFIX}objects[?binding=B&q=TEXT&after=B/ID&limit=N], GET {HTTP_PREFIX}objects/B/NAME_OR_ID, DELETE {HTTP_PREFIX}objects/B/NAME_OR_ID, GET {HTTP_PREFIX}objects/B/NAME_OR_ID/kv[?after=KEY&limit=N], GET {HTTP_PREFIX}objects/B/NAME_OR_ID/sql/TABLE[?offset=N&limit=N], POST {HTTP_PREFIX}objects/B/NAME_OR_ID/sql with {{\"query\": \"..\"}} (reads only), POST {HTTP_PREFIX}objects/B/NAME_OR_ID/alarm/run, POST {HTTP_PREFIX}objects/B/NAME_OR_ID/restore with {{\"at\": BOOKMARK_OR_TIME}}, GET {HTTP_PREFIX}history, GET {HTTP_PREFIX}objects/B/NAME_OR_ID/export, POST {HTTP_PREFIX}objects/B/NAME_OR_ID/import[?replace=1] and POST {HTTP_PREFIX}backup; the web page is GET {HTTP_PREFIX}ui",
                    request.uri().path()
                )
            }),
        )),
    };
    match outcome {
        Ok((status, body)) => json_reply(status, &body),
        Err(e) => json_reply(
            e.http_status(),
            &serde_json::json!({ "error": e.message() }),
        ),
    }
}

/// How many keys or rows a page holds when the request does not say.
const DEFAULT_PAGE: usize = 50;

/// The body of a read-only query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    query: String,
}

/// The query parameter `name` of `uri`, percent-decoded.
fn param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The query parameter `name` of `uri` as a count, if given.
fn number(uri: &http::Uri, name: &str) -> Result<Option<usize>> {
    param(uri, name)
        .map(|text| {
            text.parse().map_err(|_| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("{name}={text:?} is not a whole number"),
                )
            })
        })
        .transpose()
}

fn not_found(binding: &str, name_or_id: &str) -> (u16, serde_json::Value) {
    (
        404,
        serde_json::json!({
            "error": format!("{binding} has no object {name_or_id:?} (it has never written anything, or was deleted)")
        }),
    )
}

/// The Prometheus text of the metrics ([`crate::metrics`]), or 404 when
/// the process installed no Prometheus recorder.
fn metrics_reply(host: &Host) -> http::Response<bytes::Bytes> {
    match host.metrics_text() {
        Some(text) => {
            let mut response = http::Response::new(bytes::Bytes::from(text));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        None => json_reply(
            404,
            &serde_json::json!({
                "error": "metrics are off: this process installed no Prometheus recorder (dohost serve does; an embedder calls dohost::metrics::install)"
            }),
        ),
    }
}

pub(super) fn json_reply(status: u16, body: &serde_json::Value) -> http::Response<bytes::Bytes> {
    let mut response = http::Response::new(bytes::Bytes::from(format!("{body:#}\n")));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl Host {
    /// The Prometheus text of the metrics ([`crate::metrics`]), with the
    /// gauges of what the host holds now; `None` when the process
    /// installed no Prometheus recorder ([`crate::metrics::install`]).
    pub fn metrics_text(&self) -> Option<String> {
        let stats = self.stats();
        crate::metrics::render(&crate::metrics::Held {
            objects_in_memory: stats.objects_in_memory,
            worker_instances: stats.worker_instances,
            websockets: stats.websockets,
            cache_bytes: stats.cache_bytes,
            alarms_in_memory: stats.alarms_in_memory,
            disk_reads: stats.disk_reads,
            memory_reads: stats.memory_reads,
        })
    }

    /// The objects of every binding, or of `binding`, that have written
    /// something, in binding and id order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding;
    /// [`ErrorKind::Storage`] if the database cannot be read.
    pub fn objects(&self, binding: Option<&str>) -> Result<Vec<ObjectSummary>> {
        list(&self.inner.shared.store, &self.places(), binding)
    }

    /// What the object `name_or_id` (a name, or `id:` and an id of the namespace) of
    /// `binding` holds, as far as it is durable; `None` if it has never
    /// written anything.
    ///
    /// # Errors
    ///
    /// As [`Host::objects`].
    pub fn object(&self, binding: &str, name_or_id: &str) -> Result<Option<ObjectDetails>> {
        let places = self.places();
        show(
            &self.inner.shared.store,
            place(&places, binding)?,
            name_or_id,
        )
    }

    /// Deletes the object `name_or_id` of `binding`: it finishes its
    /// running event, then its instance, keys, SQL database, alarm and
    /// directory entry go in one durable commit; its next event starts
    /// empty. `false` if it had never written anything.
    ///
    /// # Errors
    ///
    /// As [`Host::objects`], and [`ErrorKind::Storage`] if the commit fails.
    pub async fn delete_object(&self, binding: &str, name_or_id: &str) -> Result<bool> {
        let places = self.places();
        let key = place(&places, binding)?.resolve(name_or_id)?;
        self.namespace(binding)?.delete_object(&key.id()).await
    }

    /// Every namespace, for the admin, by binding.
    pub(crate) fn places(&self) -> Vec<Place> {
        self.inner
            .namespaces
            .values()
            .map(|ns| Place {
                binding: ns.binding().to_owned(),
                class: ns.class_name().to_owned(),
                ns: ns.record(),
            })
            .collect()
    }
}
