//! `dohost objects export|import` and `dohost backup`: moving objects and
//! whole databases between servers (`docs/export.md`).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::console::console;

/// `dohost objects export`: the object's export to `out`, or stdout.
pub fn export(
    dir: &dohost::DataDir,
    binding: &str,
    name_or_id: &str,
    out: Option<&Path>,
) -> Result<()> {
    let report = match out {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            let report = dir.export_object(binding, name_or_id, &mut file)?;
            file.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            if report.is_none() {
                // Nothing to export: leave no empty file behind.
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            report
        }
        None => dir.export_object(binding, name_or_id, &mut std::io::stdout().lock())?,
    };
    let Some(report) = report else {
        bail!(
            "{binding} has no object {name_or_id:?} (it has never stored anything, or was deleted)"
        );
    };
    console().line(&format!("exported {}", describe(&report)));
    Ok(())
}

/// `dohost objects import`: reads an export from `file` (stdin when `None`
/// or `-`) and writes it.
pub fn import(
    dir: &dohost::DataDir,
    file: Option<&Path>,
    options: &dohost::ImportOptions,
) -> Result<()> {
    let stdin;
    let mut input: Box<dyn BufRead> = match file {
        Some(path) if path != Path::new("-") => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        _ => {
            stdin = std::io::stdin();
            Box::new(stdin.lock())
        }
    };
    let report = dir.import_object(&mut *input, options)?;
    console().line(&format!(
        "imported {}{}",
        describe(&report),
        if report.replaced {
            ", replacing what it held"
        } else {
            ""
        }
    ));
    Ok(())
}

fn describe(report: &dohost::TransferReport) -> String {
    format!(
        "{} object {} ({}): {} KV entries, {} bytes of SQL database, {}",
        report.binding,
        report
            .name
            .as_ref()
            .map_or_else(|| format!("id:{}", report.id), |n| format!("{n:?}")),
        report.class,
        report.kv,
        report.sql_bytes,
        report
            .alarm
            .map_or_else(|| "no alarm".to_owned(), |t| format!("alarm at {t}")),
    )
}

/// The file a backup writes in its folder, as a data directory holds it.
const DATABASE_FILE: &str = "dohost.redb";

/// `dohost backup`: asks the server at `url` for a consistent copy of its
/// database and writes it into `dir`; with no server answering there,
/// copies the stopped data directory `data` directly.
pub fn backup(dir: &Path, url: &str, token: Option<&str>, data: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(DATABASE_FILE);
    if target.exists() {
        bail!(
            "{} already exists: give an empty folder (a backup never overwrites one)",
            target.display()
        );
    }
    let partial = dir.join(format!(".{DATABASE_FILE}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let outcome = match ask_server(url, token)? {
        Some((bytes, summary)) => {
            write_private(&partial, &bytes)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            format!(
                "copied the database of the server at {url}, as it was when the backup began ({} bytes; {summary})",
                bytes.len()
            )
        }
        None => {
            let stopped = dohost::DataDir::open(data).with_context(|| {
                format!("no server answered at {url}, and the data directory cannot be opened")
            })?;
            let report = stopped.backup(&partial)?;
            format!(
                "no server answered at {url}: copied the stopped data directory {} ({} bytes; {})",
                data.display(),
                report.bytes,
                tables(&report.tables)
            )
        }
    };
    let synced = std::fs::File::open(&partial).and_then(|f| f.sync_all());
    synced.with_context(|| format!("cannot sync {}", partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot move the backup to {}", target.display()))?;
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    console().line(&format!("{outcome}; wrote {}", target.display()));
    Ok(())
}

/// `POST /_dohost/backup` at `url`: the file and a summary of its tables,
/// or `None` when nothing listens there.
fn ask_server(url: &str, token: Option<&str>) -> Result<Option<(Vec<u8>, String)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let endpoint = format!("{}/_dohost/backup", url.trim_end_matches('/'));
        let mut request = reqwest::Client::new().post(&endpoint);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("POST {endpoint}"))),
        };
        let status = response.status();
        let summary = response
            .headers()
            .get(dohost::BACKUP_REPORT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok());
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the backup from {endpoint}"))?;
        if !status.is_success() {
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (give the [admin] token with --token, or --config of the server)"
            } else if status == reqwest::StatusCode::NOT_FOUND {
                " (the server has no admin API: set [admin] token)"
            } else {
                ""
            };
            bail!("the server at {url} refused the backup: {status}: {why}{hint}");
        }
        let tables: Vec<(String, u64)> = summary
            .and_then(|s| serde_json::from_value(s["tables"].clone()).ok())
            .unwrap_or_default();
        Ok(Some((body.to_vec(), self::tables(&tables))))
    })
}

fn tables(tables: &[(String, u64)]) -> String {
    let list: Vec<String> = tables
        .iter()
        .map(|(name, rows)| format!("{name} {rows}"))
        .collect();
    format!("{} tables: {}", tables.len(), list.join(", "))
}

/// Writes `bytes` to a new file at `path` readable by its owner only, as a
/// data directory's database is.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
