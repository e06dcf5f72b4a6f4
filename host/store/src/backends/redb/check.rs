//! `dohost check`: verifies a whole database file (redb's own integrity
//! check, then the checksum of every KV value and SQL page, and every alarm
//! record) and reports what is damaged, by object.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::sealed::unseal;
use super::{ALARMS, KV, OBJECTS, PAGES, open_database};
use crate::alarm::AlarmRecord;
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::{OBJECT_KEY_LEN, ObjectKey};

/// What is damaged in a table entry (key, stored value), if anything.
type Damage<'a> = &'a dyn Fn(&[u8], &[u8]) -> Option<String>;

/// What [`check_file`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// What redb's integrity check said of the file's structure.
    pub structure: String,
    /// KV values read and verified.
    pub values: u64,
    /// SQL pages read and verified.
    pub pages: u64,
    /// Alarms read.
    pub alarms: u64,
    /// Damaged objects: the object (namespace number, id in hex, and its
    /// name when the directory knows it) and what is damaged.
    pub damaged: Vec<(String, Vec<String>)>,
}

impl CheckReport {
    /// Whether nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Verifies the database file at `path` of a stopped server.
///
/// # Errors
///
/// [`crate::ErrorKind::Storage`] if the file cannot be opened at all (its
/// message says why: damaged beyond repair, or in use by a server).
pub fn check_file(path: &Path) -> Result<CheckReport> {
    let mut db = open_database(path)?;
    let mut report = CheckReport {
        structure: match db.check_integrity() {
            Ok(true) => "the file's structure is intact".to_owned(),
            Ok(false) => "the file's structure was damaged and has been repaired".to_owned(),
            Err(e) => format!("the file's structure is damaged beyond repair: {e}"),
        },
        ..CheckReport::default()
    };
    let err = |e: &dyn std::fmt::Display| Error::storage("check", e);
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let mut damaged: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    let mut scan =
        |table: TableDefinition<&[u8], &[u8]>, entries: &str, damage: Damage<'_>| -> Result<u64> {
            let mut read = 0;
            for entry in txn
                .open_table(table)
                .map_err(|e| err(&e))?
                .iter()
                .map_err(|e| err(&e))?
            {
                match entry {
                    Ok((k, v)) => {
                        read += 1;
                        let object = ObjectKey::from_bytes(
                            k.value().get(..OBJECT_KEY_LEN).unwrap_or_default(),
                        );
                        if let (Some(object), Some(what)) = (object, damage(k.value(), v.value())) {
                            damaged.entry(object).or_default().push(what);
                        }
                    }
                    Err(e) => report
                        .structure
                        .push_str(&format!("; one of the {entries} cannot be read: {e}")),
                }
            }
            Ok(read)
        };
    let values = scan(KV, "KV entries", &|k, v| {
        let key = String::from_utf8_lossy(&k[OBJECT_KEY_LEN..]);
        unseal(v)
            .is_none()
            .then(|| format!("the value of key {key:?}"))
    })?;
    let pages = scan(PAGES, "SQL pages", &|k, v| {
        let number = k[OBJECT_KEY_LEN..].try_into().map_or(0, u32::from_be_bytes);
        unseal(v).is_none().then(|| format!("SQL page {number}"))
    })?;
    let alarms = scan(ALARMS, "alarms", &|_, v| {
        AlarmRecord::decode(v)
            .is_none()
            .then(|| "its alarm".to_owned())
    })?;
    (report.values, report.pages, report.alarms) = (values, pages, alarms);
    let objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
    for (object, what) in damaged {
        let name = objects
            .get(object.as_bytes())
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<ObjectRecord>(v.value()).ok())
            .and_then(|record| record.name)
            .map_or_else(String::new, |name| format!(" (named {name:?})"));
        let label = format!(
            "namespace {} object {}{name}",
            object.namespace(),
            hex::encode(object.id())
        );
        report.damaged.push((label, what));
    }
    Ok(report)
}
