//! Checksums on what the store keeps: every KV value and every SQL page is
//! stored with a CRC-32 of its bytes after it, checked on every read. A
//! damaged value or page is an error naming the object, never served.
//!
//! Files written before checksums (format 1) are converted once, when they
//! are opened ([`upgrade`]); the format is recorded in the `meta` table.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{KV, PAGES};
use crate::error::{Error, Result};

/// The `meta` table: the file's format, and what else describes the file.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The format this store reads and writes: 2, values and pages sealed.
pub(crate) const FORMAT: u64 = 2;

const FORMAT_KEY: &str = "format";

/// Bytes a seal adds.
pub(crate) const SEAL_BYTES: usize = 4;

/// `value` followed by its checksum.
pub(crate) fn seal(value: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(value.len() + SEAL_BYTES);
    sealed.extend_from_slice(value);
    sealed.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    sealed
}

/// The value of sealed bytes, if its checksum matches.
pub(crate) fn unseal(stored: &[u8]) -> Option<&[u8]> {
    let split = stored.len().checked_sub(SEAL_BYTES)?;
    let (value, sum) = stored.split_at(split);
    let sum = u32::from_le_bytes(sum.try_into().ok()?);
    (crc32fast::hash(value) == sum).then_some(value)
}

/// The error for a value or page whose checksum does not match.
pub(crate) fn damaged(what: &str) -> Error {
    Error::storage(
        "read",
        format!(
            "{what} is damaged (its checksum does not match); the object cannot read it. Run `dohost check` on the data directory to see what else is"
        ),
    )
}

/// Brings `db` to [`FORMAT`]: records it in a new file, seals every value
/// and page of a format-1 file in one transaction. An error for a file of
/// a newer format.
pub(crate) fn upgrade(db: &Database) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::storage("checking the file's format", e);
    let found = {
        let txn = db.begin_read().map_err(|e| err(&e))?;
        match txn.open_table(META) {
            Ok(meta) => meta
                .get(FORMAT_KEY)
                .map_err(|e| err(&e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(err(&e)),
        }
    };
    match found {
        Some(FORMAT) => return Ok(()),
        Some(newer) if newer > FORMAT => {
            return Err(Error::new(
                crate::ErrorKind::Config,
                format!(
                    "the data file has format {newer}, written by a newer dohost; this one reads format {FORMAT}: run the newer dohost"
                ),
            ));
        }
        _ => {}
    }
    let started = std::time::Instant::now();
    let txn = db.begin_write().map_err(|e| err(&e))?;
    let mut sealed = 0u64;
    for table in [KV, PAGES] {
        let mut table = txn.open_table(table).map_err(|e| err(&e))?;
        let entries: Vec<(Vec<u8>, Vec<u8>)> = table
            .iter()
            .map_err(|e| err(&e))?
            .map(|entry| entry.map(|(k, v)| (k.value().to_vec(), seal(v.value()))))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| err(&e))?;
        for (key, value) in entries {
            table
                .insert(key.as_slice(), value.as_slice())
                .map_err(|e| err(&e))?;
            sealed += 1;
        }
    }
    txn.open_table(META)
        .map_err(|e| err(&e))?
        .insert(FORMAT_KEY, FORMAT)
        .map_err(|e| err(&e))?;
    txn.commit().map_err(|e| err(&e))?;
    if sealed > 0 {
        tracing::info!(
            "added checksums to {sealed} values and pages of a file of an older format in {} ms",
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_and_a_changed_one_does_not() {
        let sealed = seal(b"hello");
        assert_eq!(unseal(&sealed), Some(&b"hello"[..]));
        assert_eq!(unseal(&seal(b"")), Some(&b""[..]));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert_eq!(unseal(&bad), None, "byte {i}");
        }
        assert_eq!(unseal(b"abc"), None);
    }

    #[test]
    fn a_file_of_the_format_before_checksums_is_sealed_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let object = crate::ObjectKey::new(3, &[9; 32]);
        {
            // Format 1: raw values, no meta table.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(KV)
                .unwrap()
                .insert(object.kv_key("k").as_slice(), b"old".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (store, stopped) =
            crate::Store::open(&path, None, std::sync::Arc::new(|_: &[_]| {})).unwrap();
        assert_eq!(
            store.get_many(&object, &["k".to_owned()]).unwrap(),
            vec![Some(b"old".to_vec())]
        );
        store.close();
        let _ = stopped.blocking_recv();
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(FORMAT_KEY).unwrap().unwrap().value(), FORMAT);
    }
}
