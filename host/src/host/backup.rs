//! Online backup: a consistent copy of a running host's database, taken
//! while it serves.
//!
//! redb lets one process open a file, so the copy is made by the server
//! ([`Host::backup`], `POST /_dohost/backup`): every table, as one read
//! transaction sees it, goes into a new redb file, which `dohost serve
//! --data DIR` opens like any other. It holds every write acknowledged
//! before the backup began (an acknowledged write is committed). A
//! cluster's PostgreSQL database is backed up with its own tools
//! (`pg_dump`).

use std::path::Path;

use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::BackupReport;

/// The response header of `POST /_dohost/backup` that says what the file
/// holds: `{"tables": [[name, rows], ..], "bytes": N}`.
pub const BACKUP_REPORT_HEADER: &str = "dohost-backup";

impl Host {
    /// Copies everything committed, as one moment saw it, into a new
    /// database file at `to` (which must not exist), while the host goes
    /// on serving.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] on a cluster (back up its PostgreSQL
    /// database with `pg_dump`), [`ErrorKind::Storage`] if the copy fails.
    pub async fn backup(&self, to: &Path) -> Result<BackupReport> {
        let store = self.inner.shared.store.clone();
        let to = to.to_path_buf();
        tokio::task::spawn_blocking(move || backup_store(&store, &to))
            .await
            .map_err(|e| Error::new(ErrorKind::Storage, format!("the backup failed: {e}")))?
    }
}

/// Copies `store`'s database into a new file at `to` ([`Host::backup`]).
pub(crate) fn backup_store(store: &dohost_store::Store, to: &Path) -> Result<BackupReport> {
    store.backend().backup(to).map_err(|e| {
        let e = Error::from(e);
        if e.kind() == ErrorKind::BadRequest {
            Error::new(
                e.kind(),
                format!(
                    "{}; `dohost backup` copies a redb data directory only",
                    e.message()
                ),
            )
        } else {
            e
        }
    })
}

/// The answer to `POST /_dohost/backup`: the backup file's bytes, with
/// [`BACKUP_REPORT_HEADER`] saying what it holds. The copy is made in a
/// temporary file that is removed once read.
pub(crate) async fn serve_backup(host: &Host) -> Result<http::Response<bytes::Bytes>> {
    let path = std::env::temp_dir().join(format!(
        "dohost-backup-{}-{:016x}.redb",
        std::process::id(),
        rand::random::<u64>()
    ));
    let report = host.backup(&path).await;
    let bytes = match &report {
        Ok(_) => tokio::fs::read(&path).await.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("reading the backup {}: {e}", path.display()),
            )
        }),
        Err(_) => Ok(Vec::new()),
    };
    let _ = tokio::fs::remove_file(&path).await;
    let (report, bytes) = (report?, bytes?);
    let mut response = http::Response::new(bytes::Bytes::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    let summary = serde_json::json!({ "tables": report.tables, "bytes": report.bytes });
    if let Ok(value) = http::HeaderValue::from_str(&summary.to_string()) {
        headers.insert(BACKUP_REPORT_HEADER, value);
    }
    Ok(response)
}

impl crate::DataDir {
    /// Copies the database of a stopped server's data directory into a new
    /// file at `to` (which must not exist), as [`Host::backup`] does for a
    /// running one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] for a cluster's PostgreSQL database (use
    /// `pg_dump`), [`ErrorKind::Storage`] if the copy fails.
    pub fn backup(&self, to: &Path) -> Result<BackupReport> {
        if self.shared {
            return Err(Error::new(ErrorKind::BadRequest, PG_DUMP));
        }
        backup_store(&self.store, to)
    }
}

/// Why a cluster is not backed up by dohost.
pub(crate) const PG_DUMP: &str = "a cluster's state is in its PostgreSQL database: back it up with PostgreSQL's tools (pg_dump, or a base backup with WAL archiving), not dohost backup";
