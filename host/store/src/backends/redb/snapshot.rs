//! Consistent reads of more than one table: an object whole
//! ([`crate::ObjectDump`]) and the whole file (an online backup), each in
//! one read transaction, so they see one commit while the committer goes
//! on committing.

use std::path::Path;

use bytes::Bytes;
use redb::{Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, Value};

use super::sealed::{damaged, unseal};
use super::{ALARMS, CommittedPages, KV, OBJECTS, PAGES, guarded, unreadable_record};
use crate::alarm::AlarmRecord;
use crate::dump::{BackupReport, ObjectDump, read_pages};
use crate::error::{Error, Result};
use crate::keys::{OBJECT_KEY_LEN, ObjectKey};

/// `object` whole, in one read transaction of `db`.
pub(super) fn dump(db: &Database, object: &ObjectKey) -> Result<ObjectDump> {
    let what = "reading an object whole";
    let err = |e: &dyn std::fmt::Display| Error::storage(what, e);
    guarded(what, || {
        let txn = db.begin_read().map_err(|e| err(&e))?;
        let objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
        let record = objects
            .get(object.as_bytes())
            .map_err(|e| err(&e))?
            .map(|v| serde_json::from_slice(v.value()).unwrap_or_else(|_| unreadable_record()));
        let kv = txn.open_table(KV).map_err(|e| err(&e))?;
        let (lo, hi) = (object.kv_key(""), object.end());
        let mut entries = Vec::new();
        for entry in kv
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())
            .map_err(|e| err(&e))?
        {
            let (k, v) = entry.map_err(|e| err(&e))?;
            let key = String::from_utf8_lossy(&k.value()[OBJECT_KEY_LEN..]).into_owned();
            let value = unseal(v.value()).ok_or_else(|| {
                damaged(&format!("the value of key {key:?} of object {object:?}"))
            })?;
            entries.push((key, Bytes::copy_from_slice(value)));
        }
        let alarms = txn.open_table(ALARMS).map_err(|e| err(&e))?;
        let alarm = match alarms.get(object.as_bytes()).map_err(|e| err(&e))? {
            None => None,
            Some(v) => Some(AlarmRecord::decode(v.value()).ok_or_else(|| {
                Error::storage(what, format!("the alarm of {object:?} is corrupt"))
            })?),
        };
        let view = CommittedPages {
            table: txn.open_table(PAGES).map_err(|e| err(&e))?,
            object: *object,
        };
        let pages = read_pages(&view, object)?;
        Ok(ObjectDump {
            entries,
            pages,
            alarm,
            record,
        })
    })
}

/// Copies every table of `db`, as one read transaction sees them, into a
/// new redb file at `to` (which must not exist), made durable before this
/// returns.
pub(super) fn backup(db: &Database, to: &Path) -> Result<BackupReport> {
    let what = "backing up the database";
    let err = |e: &dyn std::fmt::Display| Error::storage(what, e);
    guarded(what, || {
        let txn = db.begin_read().map_err(|e| err(&e))?;
        if let Some(table) = txn.list_multimap_tables().map_err(|e| err(&e))?.next() {
            return Err(Error::storage(
                what,
                format!(
                    "the backup does not copy multimap tables, and the database has one ({})",
                    redb::MultimapTableHandle::name(&table)
                ),
            ));
        }
        // Readable by its owner only, as the database it copies.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .map_err(|e| Error::storage(&format!("creating {}", to.display()), e))?;
        }
        let out = Database::builder()
            .create(to)
            .map_err(|e| Error::storage(&format!("creating {}", to.display()), e))?;
        let write = out.begin_write().map_err(|e| err(&e))?;
        let mut report = BackupReport::default();
        for table in txn.list_tables().map_err(|e| err(&e))? {
            let name = redb::TableHandle::name(&table).to_owned();
            let rows = copy_any(&txn, &write, &name)?;
            report.tables.push((name, rows));
        }
        write.commit().map_err(|e| err(&e))?;
        drop(out);
        report.bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        Ok(report)
    })
}

/// Copies the table `name`, whatever its key and value types among those
/// dohost's tables use; an error naming the table for any other type (a
/// new table of a new type adds its types here).
fn copy_any(txn: &ReadTransaction, write: &redb::WriteTransaction, name: &str) -> Result<u64> {
    macro_rules! try_types {
        ($(($k:ty, $v:ty)),* $(,)?) => {
            $(
                if let Some(rows) = copy_table::<$k, $v>(txn, write, name)? {
                    return Ok(rows);
                }
            )*
        };
    }
    try_types!(
        (&[u8], &[u8]),
        (&str, &[u8]),
        (&str, &str),
        (&str, u64),
        (u32, &str),
        (u64, &[u8]),
        (u64, u64),
    );
    Err(Error::storage(
        "backing up the database",
        format!("table {name:?} has key and value types the backup does not know (snapshot.rs)"),
    ))
}

/// Copies table `name` if its types are `K` and `V`: how many rows; `None`
/// if it has other types.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    write: &redb::WriteTransaction,
    name: &str,
) -> Result<Option<u64>> {
    let err = |e: &dyn std::fmt::Display| Error::storage(&format!("copying table {name:?}"), e);
    let definition = TableDefinition::<K, V>::new(name);
    let from = match txn.open_table(definition) {
        Ok(table) => table,
        Err(redb::TableError::TableTypeMismatch { .. }) => return Ok(None),
        Err(e) => return Err(err(&e)),
    };
    let mut to = write.open_table(definition).map_err(|e| err(&e))?;
    let mut rows = 0;
    for entry in redb::ReadableTable::iter(&from).map_err(|e| err(&e))? {
        let (k, v) = entry.map_err(|e| err(&e))?;
        to.insert(k.value(), v.value()).map_err(|e| err(&e))?;
        rows += 1;
    }
    Ok(Some(rows))
}
