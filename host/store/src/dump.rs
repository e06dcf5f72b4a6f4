//! An object read whole, and written back whole.
//!
//! An export, a backup of one object, must see the object as one commit
//! left it: its KV entries, its SQL database file, its alarm and its
//! directory record, all from the same moment. [`Backend::dump`] reads
//! them so (redb: one read transaction); [`ObjectDump::into_writes`] is
//! the [`WriteSet`] that makes an object hold exactly that again, replacing
//! whatever it held.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::alarm::{AlarmRecord, AlarmWrite};
use crate::backend::{Backend, KeyScan};
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::ObjectKey;
use crate::pages::{PAGE_SIZE, PageView};
use crate::writes::{PageWrites, Write, WriteSet};

/// One object's committed state, as one moment saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectDump {
    /// Every KV entry, in key order: the key and its value as stored (the
    /// SDKs' value format).
    pub entries: Vec<(String, Bytes)>,
    /// The SQL database file, page by page ([`PAGE_SIZE`] bytes each; a
    /// page never written reads as zeros): the file is
    /// `pages.len() * PAGE_SIZE` bytes long.
    pub pages: Vec<Bytes>,
    /// Its alarm, if it has one.
    pub alarm: Option<AlarmRecord>,
    /// Its directory record (class and name); `None` for an object that
    /// never wrote anything.
    pub record: Option<ObjectRecord>,
}

impl ObjectDump {
    /// Whether the object holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.pages.is_empty() && self.alarm.is_none()
    }

    /// Reads `object` from `backend` with its separate reads: `scan`,
    /// `pages`, `alarm`, `object`. Each sees committed state, but they may
    /// see different commits: a backend that can read them in one
    /// transaction overrides [`Backend::dump`].
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Storage`] if anything cannot be read or is
    /// damaged.
    pub fn read_separately<B: Backend + ?Sized>(
        backend: &B,
        object: &ObjectKey,
    ) -> Result<ObjectDump> {
        let record = backend.object(object)?;
        let mut entries = Vec::new();
        let mut scan = KeyScan {
            start: Vec::new(),
            end: None,
            reverse: false,
            limit: SCAN_CHUNK,
            max_bytes: SCAN_BYTES,
        };
        loop {
            let chunk = backend.scan(object, &scan)?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            scan.start = [last.as_bytes(), &[0]].concat();
            entries.extend(chunk.into_iter().map(|(k, v)| (k, Bytes::from(v))));
        }
        let pages = read_pages(&*backend.pages(object)?, object)?;
        let alarm = backend.alarm(object)?;
        Ok(ObjectDump {
            entries,
            pages,
            alarm,
            record,
        })
    }

    /// The write set that makes the object hold exactly this: everything
    /// it held goes (`clear`, the SQL file cut to nothing), then these
    /// entries, pages and alarm (its delivery count starts again). The
    /// directory record is not in it: it goes beside the write set
    /// ([`crate::Store::commit`]'s `record`).
    pub fn into_writes(self) -> WriteSet {
        let entries: BTreeMap<String, Write> = self
            .entries
            .into_iter()
            .map(|(key, value)| {
                (
                    key,
                    Write {
                        value: Some(value),
                        no_cache: true,
                    },
                )
            })
            .collect();
        let pages = (0u32..).zip(self.pages).collect();
        WriteSet {
            clear: true,
            entries,
            pages: PageWrites {
                truncate: Some(0),
                pages,
            },
            alarm: self.alarm.map(|a| {
                AlarmWrite::Set(AlarmRecord {
                    time: a.time,
                    retries: 0,
                })
            }),
            unregister: false,
        }
    }
}

/// What an online backup ([`Backend::backup`]) copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Each table copied, with its rows.
    pub tables: Vec<(String, u64)>,
    /// The size of the file written, in bytes.
    pub bytes: u64,
}

/// How many entries [`ObjectDump::read_separately`] asks `scan` for at once.
const SCAN_CHUNK: usize = 1024;
/// How many bytes of entries it asks `scan` for at once.
const SCAN_BYTES: usize = 8 << 20;

/// Every page of `view`, a page never written as zeros.
pub(crate) fn read_pages(view: &dyn PageView, object: &ObjectKey) -> Result<Vec<Bytes>> {
    let err = |e: String| Error::storage(&format!("reading the SQL pages of {object:?}"), e);
    let count = view.page_count().map_err(err)?;
    let mut pages = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for page in 0..count {
        let bytes = view.read_page(page).map_err(err)?;
        pages.push(match bytes {
            Some(mut bytes) => {
                bytes.resize(PAGE_SIZE, 0);
                Bytes::from(bytes)
            }
            None => Bytes::from(vec![0u8; PAGE_SIZE]),
        });
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;

    fn dump_of(entries: &[(&str, &str)], pages: u8, alarm: Option<i64>) -> ObjectDump {
        ObjectDump {
            entries: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            pages: (0..pages)
                .map(|n| Bytes::from(vec![n; PAGE_SIZE]))
                .collect(),
            alarm: alarm.map(|time| AlarmRecord { time, retries: 0 }),
            record: None,
        }
    }

    fn commit(store: &Store, object: ObjectKey, dump: ObjectDump) {
        let record = ObjectRecord {
            class: "C".into(),
            name: Some("n".into()),
        };
        let done = store.commit(object, dump.into_writes(), Some(record));
        done.blocking_recv().unwrap().unwrap();
    }

    #[test]
    fn a_dump_written_back_replaces_everything_the_object_held() {
        let dir = tempfile::tempdir().unwrap();
        let (store, stopped) =
            Store::open(&dir.path().join("db.redb"), None, Arc::new(|_: &[_]| {})).unwrap();
        let object = ObjectKey::new(3, &[9; 32]);
        let neighbour = ObjectKey::new(3, &[10; 32]);
        commit(&store, neighbour, dump_of(&[("x", "1")], 1, Some(7)));
        commit(
            &store,
            object,
            dump_of(&[("a", "old"), ("b", "2"), ("z", "26")], 10, Some(5)),
        );
        let smaller = dump_of(&[("a", "new")], 2, None);
        commit(&store, object, smaller.clone());

        for read in [
            store.backend().dump(&object).unwrap(),
            ObjectDump::read_separately(&**store.backend(), &object).unwrap(),
        ] {
            let record = read.record.clone().unwrap();
            assert_eq!(
                (record.class.as_str(), record.name.as_deref()),
                ("C", Some("n"))
            );
            assert_eq!(
                ObjectDump {
                    record: None,
                    ..read
                },
                smaller
            );
        }
        let untouched = store.backend().dump(&neighbour).unwrap();
        assert_eq!(untouched.entries.len(), 1);
        assert_eq!(untouched.alarm.map(|a| a.time), Some(7));
        assert_eq!(
            store.backend().alarms_after(None, 10).unwrap(),
            [(7, neighbour)]
        );

        let copy = dir.path().join("copy.redb");
        let report = store.backend().backup(&copy).unwrap();
        assert!(
            report
                .tables
                .iter()
                .any(|(t, rows)| t == "kv" && *rows == 2),
            "{report:?}"
        );
        store.close();
        let _ = stopped.blocking_recv();
        let (copied, stopped) = Store::open(&copy, None, Arc::new(|_: &[_]| {})).unwrap();
        let read = copied.backend().dump(&object).unwrap();
        assert_eq!(
            ObjectDump {
                record: None,
                ..read
            },
            smaller
        );
        copied.close();
        let _ = stopped.blocking_recv();
    }
}
