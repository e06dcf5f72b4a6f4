//! `dohost check`: verifies a whole database file (redb's own integrity
//! check, then the checksum of every KV value and SQL page, and every alarm
//! record) and reports what is damaged, by object.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable};

use crate::alarm::AlarmRecord;
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::{OBJECT_KEY_LEN, ObjectKey};
use crate::sealed::unseal;
use crate::store::{ALARMS, KV, OBJECTS, PAGES, open_database};

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
    let mut note = |key: &[u8], what: String| {
        if let Some(object) = ObjectKey::from_bytes(key.get(..OBJECT_KEY_LEN).unwrap_or_default()) {
            damaged.entry(object).or_default().push(what);
        }
    };
    let kv = txn.open_table(KV).map_err(|e| err(&e))?;
    for entry in kv.iter().map_err(|e| err(&e))? {
        match entry {
            Ok((k, v)) => {
                report.values += 1;
                if unseal(v.value()).is_none() {
                    let key = String::from_utf8_lossy(&k.value()[OBJECT_KEY_LEN..]).into_owned();
                    note(k.value(), format!("the value of key {key:?}"));
                }
            }
            Err(e) => report
                .structure
                .push_str(&format!("; a KV entry cannot be read: {e}")),
        }
    }
    let pages = txn.open_table(PAGES).map_err(|e| err(&e))?;
    for entry in pages.iter().map_err(|e| err(&e))? {
        match entry {
            Ok((k, v)) => {
                report.pages += 1;
                if unseal(v.value()).is_none() {
                    let number = k.value()[OBJECT_KEY_LEN..]
                        .try_into()
                        .map_or(0, u32::from_be_bytes);
                    note(k.value(), format!("SQL page {number}"));
                }
            }
            Err(e) => report
                .structure
                .push_str(&format!("; a SQL page cannot be read: {e}")),
        }
    }
    let alarms = txn.open_table(ALARMS).map_err(|e| err(&e))?;
    for entry in alarms.iter().map_err(|e| err(&e))? {
        match entry {
            Ok((k, v)) => {
                report.alarms += 1;
                if AlarmRecord::decode(v.value()).is_none() {
                    note(k.value(), "its alarm".to_owned());
                }
            }
            Err(e) => report
                .structure
                .push_str(&format!("; an alarm cannot be read: {e}")),
        }
    }
    let objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
    for (object, what) in damaged {
        let name = objects
            .get(object.as_bytes())
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<ObjectRecord>(v.value()).ok())
            .and_then(|record| record.name);
        let label = match name {
            Some(name) => format!(
                "namespace {} object {} (named {name:?})",
                object.namespace(),
                hex::encode(object.id())
            ),
            None => format!(
                "namespace {} object {}",
                object.namespace(),
                hex::encode(object.id())
            ),
        };
        report.damaged.push((label, what));
    }
    Ok(report)
}
