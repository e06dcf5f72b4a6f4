//! An object read whole ([`crate::ObjectDump`]) in one read-only
//! `REPEATABLE READ` transaction, so an export sees one commit of it while
//! the nodes go on committing.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio_postgres::IsolationLevel;

use super::{PostgresBackend, alarm, pg_error, record, wait_on};
use crate::dump::ObjectDump;
use crate::error::{Error, Result};
use crate::keys::ObjectKey;
use crate::pages::PAGE_SIZE;

impl PostgresBackend {
    /// `object` whole, in one snapshot of the database.
    pub(super) fn dump_snapshot(&self, object: &ObjectKey) -> Result<ObjectDump> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::shut_down());
        }
        let pool = self.reader.pool.clone();
        let key = object.as_bytes().to_vec();
        let name = format!("{object:?}");
        wait_on(&self.reader.handle, async move {
            const WHAT: &str = "reading an object whole";
            let mut client = pool.get().await.map_err(|e| match e {
                deadpool_postgres::PoolError::Backend(e) => pg_error(WHAT, &e),
                e => Error::storage(WHAT, format!("PostgreSQL: {e}")),
            })?;
            let txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| pg_error(WHAT, &e))?;
            let err = |e: tokio_postgres::Error| pg_error(WHAT, &e);
            let record = txn
                .query_opt(
                    "SELECT class, name FROM dohost.objects WHERE object = $1",
                    &[&key],
                )
                .await
                .map_err(err)?
                .map(|row| record(&row, 0));
            let entries = txn
                .query(
                    "SELECT key, value FROM dohost.kv WHERE object = $1 ORDER BY key",
                    &[&key],
                )
                .await
                .map_err(err)?
                .iter()
                .map(|row| {
                    let k: Vec<u8> = row.get(0);
                    let v: Vec<u8> = row.get(1);
                    (String::from_utf8_lossy(&k).into_owned(), Bytes::from(v))
                })
                .collect();
            let rows = txn
                .query(
                    "SELECT page, bytes FROM dohost.pages WHERE object = $1 ORDER BY page",
                    &[&key],
                )
                .await
                .map_err(err)?;
            let mut pages = Vec::new();
            for row in &rows {
                let n: i32 = row.get(0);
                let n = usize::try_from(n).map_err(|_| {
                    Error::storage(WHAT, format!("a page number of {name} is negative"))
                })?;
                let mut bytes: Vec<u8> = row.get(1);
                bytes.resize(PAGE_SIZE, 0);
                // A page never written reads as zeros.
                pages.resize(n, Bytes::from(vec![0u8; PAGE_SIZE]));
                pages.push(Bytes::from(bytes));
            }
            let alarm = txn
                .query_opt(
                    "SELECT time, retries FROM dohost.alarms WHERE object = $1",
                    &[&key],
                )
                .await
                .map_err(err)?
                .map(|row| alarm(&row, 0));
            txn.rollback().await.map_err(err)?;
            Ok(ObjectDump {
                entries,
                pages,
                alarm,
                record,
            })
        })
    }
}
