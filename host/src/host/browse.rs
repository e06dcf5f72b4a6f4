//! The object browser's reads and actions, as [`Host`] methods: the
//! bindings, a page of objects found by name or id, a page of an object's
//! keys with their values shown as JSON or hex, a page of a SQL table's
//! rows, a read-only query, and running an object's alarm now. The admin
//! HTTP API (`admin.rs`) and its web page (`/_dohost/ui`, `ui.rs`) are a
//! thin layer over these; an embedder gets the same answers.
//!
//! Reads see what is durable, like [`Host::object`]; an event still
//! running is not seen until it has committed.

use serde::Serialize;

use super::admin::{ID_PREFIX, ObjectSummary, Place, place};
use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{MAX_KV_PAGE, ObjectKey, Rows};

/// The most objects one page of [`Host::find_objects`] holds.
pub const MAX_OBJECTS_PAGE: usize = 1000;

/// The most bytes of a value [`KvItem`] shows as hex: a value that is not
/// JSON may be up to the value limit, and a page holds up to
/// [`MAX_KV_PAGE`] of them.
pub const MAX_HEX_SHOWN: usize = 4096;

/// The longest query [`Host::query_object_sql`] takes, in bytes.
pub const MAX_QUERY_BYTES: usize = 100_000;

/// A binding and its class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BindingSummary {
    /// The binding, e.g. `COUNTER`.
    pub binding: String,
    /// Its class, e.g. `Counter`.
    pub class: String,
}

/// Which objects [`Host::find_objects`] gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectQuery {
    /// Only the objects of this binding.
    pub binding: Option<String>,
    /// Only the objects whose name holds this text (in any case), or whose
    /// id starts with it (hex, with or without `id:`).
    pub search: Option<String>,
    /// Only the objects after this one, given as `BINDING/ID` (the
    /// `next` of the previous page).
    pub after: Option<String>,
    /// At most this many ([`MAX_OBJECTS_PAGE`] at most); `None`: all.
    pub limit: Option<usize>,
}

/// A page of objects, in binding and id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ObjectPage {
    /// The objects.
    pub objects: Vec<ObjectSummary>,
    /// When the page is full, the `after` of the next page (which may be
    /// empty).
    pub next: Option<String>,
}

/// A value as the browser shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ShownValue {
    /// The value read as JSON (docs/values.md: JSON, or CBOR of values
    /// JSON can hold).
    Json(serde_json::Value),
    /// Bytes that are not such a value, in hex ([`MAX_HEX_SHOWN`] at most).
    Hex(String),
}

impl ShownValue {
    /// How `bytes`, a stored value, is shown.
    pub fn of(bytes: &[u8]) -> ShownValue {
        match dohost_value::from_bytes::<serde_json::Value>(bytes) {
            Ok(json) => ShownValue::Json(json),
            Err(_) => ShownValue::Hex(hex::encode(&bytes[..bytes.len().min(MAX_HEX_SHOWN)])),
        }
    }
}

/// A KV key of an object with its value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KvItem {
    /// The key.
    pub key: String,
    /// The size of its value, in bytes.
    pub bytes: usize,
    /// The value: `{"json": ..}` or `{"hex": ".."}` in JSON.
    #[serde(flatten)]
    pub value: ShownValue,
}

/// A page of an object's keys, in key order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KvPage {
    /// The keys and values.
    pub keys: Vec<KvItem>,
    /// When the page is full, the `after` of the next page (which may be
    /// empty).
    pub next: Option<String>,
}

/// How an alarm run by [`Host::run_alarm`] ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AlarmRun {
    /// The handler's error, if it failed (the alarm is then retried as
    /// any failed alarm is).
    pub error: Option<String>,
    /// When the object's alarm is due now, in milliseconds since the Unix
    /// epoch: `None` once cleared, else its retry or what the handler set.
    pub alarm: Option<i64>,
}

impl Host {
    /// The bindings of the host's namespaces and their classes, by
    /// binding.
    pub fn bindings(&self) -> Vec<BindingSummary> {
        self.places()
            .into_iter()
            .map(|p| BindingSummary {
                binding: p.binding,
                class: p.class,
            })
            .collect()
    }

    /// The objects `query` asks for, in binding and id order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding;
    /// [`ErrorKind::BadRequest`] for an `after` that is not `BINDING/ID`;
    /// [`ErrorKind::Storage`] if the database cannot be read.
    pub fn find_objects(&self, query: &ObjectQuery) -> Result<ObjectPage> {
        let places = self.places();
        let chosen: Vec<&Place> = match &query.binding {
            Some(b) => vec![place(&places, b)?],
            None => places.iter().collect(),
        };
        let after = query
            .after
            .as_deref()
            .map(|after| {
                let parsed = after.split_once('/').and_then(|(binding, id)| {
                    let p = place(&places, binding).ok()?;
                    let id = crate::runtime::parse_id(id)?;
                    Some((binding, ObjectKey::new(p.ns.number, &id)))
                });
                parsed.ok_or_else(|| {
                    Error::new(
                        ErrorKind::BadRequest,
                        format!("after={after:?} is not BINDING/ID, the `next` of a page"),
                    )
                })
            })
            .transpose()?;
        let search = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let needle = search.map(str::to_lowercase);
        let id_prefix = needle
            .as_deref()
            .map(|n| n.strip_prefix(ID_PREFIX).unwrap_or(n).to_owned());
        let wanted = |key: &ObjectKey, name: Option<&str>| {
            let Some(needle) = &needle else { return true };
            let by_id = id_prefix
                .as_deref()
                .is_some_and(|p| hex::encode(key.id()).starts_with(p));
            by_id || name.is_some_and(|n| n.to_lowercase().contains(needle.as_str()))
        };
        let limit = query.limit.map_or(usize::MAX, |l| l.min(MAX_OBJECTS_PAGE));
        let mut objects = Vec::new();
        for p in chosen {
            let from = match &after {
                Some((binding, _)) if p.binding.as_str() < *binding => continue,
                Some((binding, key)) if p.binding == *binding => Some(key),
                _ => None,
            };
            let left = limit - objects.len();
            if left == 0 {
                break;
            }
            for (key, name) in
                self.inner
                    .shared
                    .store
                    .objects_after(p.ns.number, from, left, wanted)?
            {
                objects.push(ObjectSummary {
                    binding: p.binding.clone(),
                    class: p.class.clone(),
                    id: hex::encode(key.id()),
                    name,
                });
            }
        }
        let next = (objects.len() == limit)
            .then(|| objects.last().map(|o| format!("{}/{}", o.binding, o.id)))
            .flatten();
        Ok(ObjectPage { objects, next })
    }

    /// Up to `limit` ([`MAX_KV_PAGE`] at most) keys of the object
    /// `name_or_id` of `binding` with their values, after the key `after`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding or an object that has
    /// never written anything; [`ErrorKind::Storage`] if its keys cannot be
    /// read.
    pub fn object_kv(
        &self,
        binding: &str,
        name_or_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvPage> {
        let key = self.existing(binding, name_or_id)?;
        let limit = limit.clamp(1, MAX_KV_PAGE);
        let keys: Vec<KvItem> = self
            .inner
            .shared
            .store
            .kv_page(key, after, limit)?
            .into_iter()
            .map(|entry| KvItem {
                bytes: entry.value.len(),
                value: ShownValue::of(&entry.value),
                key: entry.key,
            })
            .collect();
        let next = (keys.len() == limit)
            .then(|| keys.last().map(|k| k.key.clone()))
            .flatten();
        Ok(KvPage { keys, next })
    }

    /// Up to `limit` ([`dohost_store::MAX_ROWS`] at most) rows of table
    /// `table` of the SQL database of the object `name_or_id` of `binding`,
    /// from row `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding, object or table;
    /// [`ErrorKind::Storage`] if the database cannot be read.
    pub async fn object_sql_rows(
        &self,
        binding: &str,
        name_or_id: &str,
        table: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Rows> {
        let key = self.existing(binding, name_or_id)?;
        let store = self.inner.shared.store.clone();
        let table = table.to_owned();
        blocking(move || store.sql_rows(key, &table, offset, limit.max(1))).await
    }

    /// The rows of `query`, one statement that only reads, against the SQL
    /// database of the object `name_or_id` of `binding`, as durable (within
    /// [`dohost_store::MAX_ROWS`] rows and [`dohost_store::QUERY_TIME_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] for a statement that would write (the
    /// database is opened read-only as well), more than one statement, a
    /// query longer than [`MAX_QUERY_BYTES`], or one SQLite refuses or
    /// stops, with SQLite's message; [`ErrorKind::NotFound`] as
    /// [`Host::object_kv`].
    pub async fn query_object_sql(
        &self,
        binding: &str,
        name_or_id: &str,
        query: &str,
    ) -> Result<Rows> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
                    query.len()
                ),
            ));
        }
        let key = self.existing(binding, name_or_id)?;
        let store = self.inner.shared.store.clone();
        let query = query.to_owned();
        blocking(move || store.sql_query(key, &query)).await
    }

    /// Runs the alarm of the object `name_or_id` of `binding` now, due or
    /// not, exactly as a due alarm runs: the object stores that a delivery
    /// began, its alarm handler runs as an event of the object, and the
    /// alarm is then cleared, or kept for a retry if the handler failed.
    /// Returns once that outcome is durable.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] as [`Host::object_kv`], or when the object
    /// has no alarm set; [`ErrorKind::Overloaded`] when its alarm handler
    /// is running already or its mailbox is full.
    pub async fn run_alarm(&self, binding: &str, name_or_id: &str) -> Result<AlarmRun> {
        let key = self.existing(binding, name_or_id)?;
        let result = self.namespace(binding)?.run_alarm(&key.id()).await?;
        Ok(AlarmRun {
            error: result.err().map(|e| e.message().to_owned()),
            alarm: self.inner.shared.store.read_alarm(&key)?.map(|a| a.time),
        })
    }

    /// The key of the object `name_or_id` of `binding`, if it has written
    /// something.
    fn existing(&self, binding: &str, name_or_id: &str) -> Result<ObjectKey> {
        let places = self.places();
        let key = place(&places, binding)?.resolve(name_or_id)?;
        if !self.inner.shared.store.has_object(&key)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{binding} has no object {name_or_id:?} (it has never written anything, or was deleted)"
                ),
            ));
        }
        Ok(key)
    }
}

/// Runs a read of SQLite off the async threads: a query holds its thread
/// until it ends.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> dohost_store::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::new(ErrorKind::Storage, format!("the read failed: {e}")))?
        .map_err(Error::from)
}
