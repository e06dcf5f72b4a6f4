//! The directory of objects: every object that has written something, with
//! its class and the name it was addressed by, and what the admin reads of
//! an object (its keys, SQL tables and alarm). Inspection reads what is
//! durable and writes nothing.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys::ObjectKey;
use crate::pages::PAGE_SIZE;
use crate::store::Store;

/// The most keys [`Contents::keys`] lists.
pub const MAX_KEYS_SHOWN: usize = 1000;

/// The directory record of an object.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The object's class when it first wrote.
    pub class: String,
    /// The name it was addressed by, if any.
    pub name: Option<String>,
}

/// A KV key of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// The size of its value, in bytes.
    pub bytes: usize,
}

/// A table of an object's SQL database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TableInfo {
    /// The table's name.
    pub name: String,
    /// How many rows it has.
    pub rows: u64,
}

/// What an object holds, as far as it is durable.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Contents {
    /// The name it was addressed by, if it ever was.
    pub name: Option<String>,
    /// Its first KV keys ([`MAX_KEYS_SHOWN`] at most), in key order.
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

impl Store {
    /// The objects of namespace `number` with the names they recorded, in
    /// id order.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    pub fn objects(&self, number: u32) -> Result<Vec<(ObjectKey, Option<String>)>> {
        self.objects_after(number, None, usize::MAX, |_, _| true)
    }

    /// Up to `limit` objects of namespace `number` after `after` (in id
    /// order) that `wanted` takes, given each one's key and name.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    pub fn objects_after(
        &self,
        number: u32,
        after: Option<&ObjectKey>,
        limit: usize,
        wanted: impl Fn(&ObjectKey, Option<&str>) -> bool,
    ) -> Result<Vec<(ObjectKey, Option<String>)>> {
        const CHUNK: usize = 1024;
        let mut found = Vec::new();
        let mut after = after.copied();
        while found.len() < limit {
            let chunk = self.backend().objects(number, after.as_ref(), CHUNK)?;
            let complete = chunk.len() < CHUNK;
            after = chunk.last().map(|(key, _)| *key);
            for (key, record) in chunk {
                let name = record.and_then(|r| r.name);
                if found.len() < limit && wanted(&key, name.as_deref()) {
                    found.push((key, name));
                }
            }
            if complete {
                break;
            }
        }
        Ok(found)
    }

    /// Whether the directory lists the object `key`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if the directory cannot be read.
    pub fn has_object(&self, key: &ObjectKey) -> Result<bool> {
        Ok(self.backend().object(key)?.is_some())
    }

    /// What the object `key` holds; `None` if it has never written
    /// anything.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if its storage cannot be read.
    pub fn contents(self: &Arc<Self>, key: ObjectKey) -> Result<Option<Contents>> {
        let Some(record) = self.backend().object(&key)? else {
            return Ok(None);
        };
        let (keys, keys_total) = self.backend().key_sizes(&key, MAX_KEYS_SHOWN)?;
        let page_count = self.page_count(&key)?;
        let sql_tables = if page_count == 0 {
            Vec::new()
        } else {
            self.sql_tables(key)
                .map_err(|e| Error::storage("reading the object's SQL database", e))?
        };
        Ok(Some(Contents {
            name: record.name,
            keys,
            keys_total,
            sql_tables,
            sql_bytes: u64::from(page_count) * PAGE_SIZE as u64,
            alarm: self.read_alarm(&key)?.map(|a| a.time),
        }))
    }

    /// The tables of the SQL database of `object` with their row counts,
    /// read through the same VFS objects use, without writing.
    fn sql_tables(
        self: &Arc<Self>,
        object: ObjectKey,
    ) -> std::result::Result<Vec<TableInfo>, rusqlite::Error> {
        let conn = self.read_only(object)?;
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        names
            .into_iter()
            .map(|name| {
                let quoted = name.replace('"', "\"\"");
                let rows: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM \"{quoted}\""), [], |row| {
                        row.get(0)
                    })?;
                Ok(TableInfo {
                    name,
                    rows: u64::try_from(rows).unwrap_or(0),
                })
            })
            .collect()
    }
}
