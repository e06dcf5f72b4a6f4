//! Portable exports of one object, and their import (`docs/export.md`).
//!
//! An export is JSON Lines: a header naming the format, its version and
//! the object; a line per KV entry, the value as stored (base64); the
//! object's SQLite database file in chunks of [`PAGES_PER_LINE`] pages;
//! its alarm; and a last line counting what came before, so a cut file is
//! refused rather than imported in part. It is read from one consistent
//! view of the object ([`dohost_store::Backend::dump`]).
//!
//! An import writes the object whole in one commit, replacing what it
//! held ([`dohost_store::ObjectDump::into_writes`]). Ids are keyed with
//! each namespace's secret, so an id from another server is not an id
//! here: the object imported is the one `--as` names, else the header's
//! name, else the header's id only if this namespace minted it.

use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::admin::{ID_PREFIX, Place, place};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{minted_by, name_id, parse_id};
use crate::settings::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use dohost_store::{AlarmRecord, ObjectDump, ObjectKey, ObjectRecord, PAGE_SIZE, Store, WriteSet};

/// The `format` of an export's header.
pub const EXPORT_FORMAT: &str = "dohost-object";

/// The `version` of the format this host writes and reads. A change that
/// an older reader would misread gets a new version.
pub const EXPORT_VERSION: u32 = 1;

/// How many SQL pages one line of an export holds (256 KiB of database,
/// about 350 KB of base64): lines stay small enough to read one at a time.
pub const PAGES_PER_LINE: usize = 64;

/// The longest line an import reads: a KV value as large as the storage
/// API allows, or a chunk of [`PAGES_PER_LINE`] pages, in base64, with room
/// to spare. A longer line is refused, naming its number.
pub const MAX_EXPORT_LINE: usize = 8 << 20;

/// The first line of an export: what it is and which object it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// The binding the object was exported from.
    pub binding: String,
    /// Its class.
    pub class: String,
    /// Its id there, 64 hex characters (an id of that namespace only).
    pub id: String,
    /// The name it was addressed by, if any.
    pub name: Option<String>,
    /// When it was exported, in ms since the Unix epoch.
    pub exported_at: i64,
    /// The size of a page of the SQL lines, [`PAGE_SIZE`].
    pub page_size: usize,
}

/// The last line of an export: how many lines of each kind came before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counts {
    kv: u64,
    sql_pages: u64,
    alarm: u64,
    lines: u64,
}

/// How to import ([`crate::DataDir::import_object`], [`crate::Host::import_object`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// The binding to import into; by default the header's.
    pub binding: Option<String>,
    /// The object to write: a name, or `id:` and an id of the namespace;
    /// by default the header's name, else its id if this namespace minted
    /// it.
    pub target: Option<String>,
    /// Replace an object that already holds data (refused otherwise).
    pub replace: bool,
}

impl ImportOptions {
    /// Import into `binding` instead of the header's.
    pub fn binding(mut self, binding: impl Into<String>) -> Self {
        self.binding = Some(binding.into());
        self
    }

    /// Import as the object `name_or_id` (a name, or `id:` and an id).
    pub fn target(mut self, name_or_id: impl Into<String>) -> Self {
        self.target = Some(name_or_id.into());
        self
    }

    /// Replace an object that already holds data.
    pub fn replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }
}

/// What an export or an import held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TransferReport {
    /// The binding written or read.
    pub binding: String,
    /// Its class.
    pub class: String,
    /// The object's id here, 64 hex characters.
    pub id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// How many KV entries.
    pub kv: u64,
    /// The size of its SQL database file, in bytes.
    pub sql_bytes: u64,
    /// Its alarm's time, in ms since the Unix epoch.
    pub alarm: Option<i64>,
    /// An import replaced an object that held data.
    pub replaced: bool,
}

impl TransferReport {
    fn of(place: &Place, key: &ObjectKey, name: Option<String>, dump: &ObjectDump) -> Self {
        TransferReport {
            binding: place.binding.clone(),
            class: place.class.clone(),
            id: hex::encode(key.id()),
            name,
            kv: dump.entries.len() as u64,
            sql_bytes: (dump.pages.len() * PAGE_SIZE) as u64,
            alarm: dump.alarm.map(|a| a.time),
            replaced: false,
        }
    }
}

/// Writes the export of the object `name_or_id` of `place`, read in one
/// consistent view; `None` (nothing written) if it never wrote anything.
pub(crate) fn export(
    store: &Store,
    place: &Place,
    name_or_id: &str,
    out: &mut dyn Write,
) -> Result<Option<TransferReport>> {
    let key = place.resolve(name_or_id)?;
    let dump = store.backend().dump(&key)?;
    let Some(record) = &dump.record else {
        return Ok(None);
    };
    let header = ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        binding: place.binding.clone(),
        class: place.class.clone(),
        id: hex::encode(key.id()),
        name: record.name.clone(),
        exported_at: now_ms(),
        page_size: PAGE_SIZE,
    };
    write_lines(&header, &dump, out).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("writing the export of {name_or_id:?}: {e}"),
        )
    })?;
    Ok(Some(TransferReport::of(
        place,
        &key,
        record.name.clone(),
        &dump,
    )))
}

/// The lines of an export (see the module docs and `docs/export.md`).
fn write_lines(
    header: &ExportHeader,
    dump: &ObjectDump,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut line = |value: serde_json::Value| writeln!(out, "{value}");
    let mut counts = Counts::default();
    line(serde_json::to_value(header).map_err(std::io::Error::other)?)?;
    counts.lines += 1;
    for (key, value) in &dump.entries {
        line(serde_json::json!({ "kv": key, "value": BASE64.encode(value) }))?;
        counts.kv += 1;
        counts.lines += 1;
    }
    for (n, chunk) in dump.pages.chunks(PAGES_PER_LINE).enumerate() {
        let bytes: Vec<u8> = chunk.concat();
        let offset = (n * PAGES_PER_LINE * PAGE_SIZE) as u64;
        line(serde_json::json!({ "sql": BASE64.encode(&bytes), "offset": offset }))?;
        counts.sql_pages += chunk.len() as u64;
        counts.lines += 1;
    }
    if let Some(alarm) = dump.alarm {
        line(serde_json::json!({ "alarm": alarm.time }))?;
        counts.alarm += 1;
        counts.lines += 1;
    }
    line(serde_json::json!({ "end": counts }))?;
    out.flush()
}

/// An export read back: its header and the object's contents.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) header: ExportHeader,
    pub(crate) dump: ObjectDump,
}

/// Reads an export, refusing a wrong format or version, a cut file, lines
/// out of place, with an error naming the line.
pub(crate) fn read(input: &mut dyn BufRead) -> Result<Parsed> {
    let mut number = 0u64;
    let mut buffer = Vec::new();
    let mut next = |number: &mut u64| -> Result<Option<serde_json::Value>> {
        buffer.clear();
        let read = std::io::Read::take(&mut *input, MAX_EXPORT_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|e| Error::new(ErrorKind::Io, format!("reading the export: {e}")))?;
        if read == 0 {
            return Ok(None);
        }
        *number += 1;
        if buffer.len() > MAX_EXPORT_LINE {
            return Err(bad(
                *number,
                &format!("the line is longer than {MAX_EXPORT_LINE} bytes (MAX_EXPORT_LINE)"),
            ));
        }
        serde_json::from_slice(&buffer)
            .map(Some)
            .map_err(|e| bad(*number, &format!("not a JSON line ({e})")))
    };
    let first = next(&mut number)?
        .ok_or_else(|| Error::new(ErrorKind::BadRequest, "the export is empty"))?;
    let format = first.get("format").and_then(|f| f.as_str());
    if format != Some(EXPORT_FORMAT) {
        return Err(bad(
            1,
            &format!(
                "this is not a dohost object export (its header's format is {format:?}, not {EXPORT_FORMAT:?})"
            ),
        ));
    }
    let version = first.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(EXPORT_VERSION)) {
        return Err(bad(
            1,
            &format!(
                "the export's format version is {}, this dohost reads version {EXPORT_VERSION}",
                version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
            ),
        ));
    }
    let header: ExportHeader = serde_json::from_value(first)
        .map_err(|e| bad(1, &format!("the header is malformed ({e})")))?;
    if header.page_size != PAGE_SIZE {
        return Err(bad(
            1,
            &format!(
                "the export's SQL pages are {} bytes, this dohost's are {PAGE_SIZE}",
                header.page_size
            ),
        ));
    }
    let mut dump = ObjectDump::default();
    let mut counts = Counts {
        lines: 1,
        ..Counts::default()
    };
    loop {
        let Some(line) = next(&mut number)? else {
            return Err(bad(
                number,
                "the export ends here without its last line ({\"end\": ..}): the file was cut short",
            ));
        };
        let n = number;
        let object = line
            .as_object()
            .ok_or_else(|| bad(n, "a line must be a JSON object"))?;
        if let Some(end) = object.get("end") {
            let told: Counts = serde_json::from_value(end.clone())
                .map_err(|e| bad(n, &format!("the last line is malformed ({e})")))?;
            if told != counts {
                return Err(bad(
                    n,
                    &format!(
                        "the last line counts {told:?}, but the lines before hold {counts:?}: the file was cut or changed"
                    ),
                ));
            }
            if next(&mut number)?.is_some() {
                return Err(bad(number, "a line follows the last line ({\"end\": ..})"));
            }
            return Ok(Parsed { header, dump });
        }
        if let Some(key) = object.get("kv") {
            let key = key
                .as_str()
                .ok_or_else(|| bad(n, "\"kv\" must be a string key"))?;
            if counts.sql_pages > 0 || counts.alarm > 0 {
                return Err(bad(n, "a KV line after the SQL or alarm lines"));
            }
            if dump
                .entries
                .last()
                .is_some_and(|(last, _)| last.as_bytes() >= key.as_bytes())
            {
                return Err(bad(
                    n,
                    &format!(
                        "key {key:?} is out of order (keys come in bytewise order, once each)"
                    ),
                ));
            }
            let value = object
                .get("value")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad(n, "a KV line needs \"value\", base64"))?;
            let value = BASE64
                .decode(value)
                .map_err(|e| bad(n, &format!("the value is not base64 ({e})")))?;
            if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
                return Err(bad(
                    n,
                    &format!(
                        "the key is {} bytes and its value {} bytes; the storage API's limits are {MAX_KEY_BYTES} and {MAX_VALUE_BYTES}",
                        key.len(),
                        value.len()
                    ),
                ));
            }
            dump.entries.push((key.to_owned(), Bytes::from(value)));
            counts.kv += 1;
        } else if let Some(data) = object.get("sql") {
            if counts.alarm > 0 {
                return Err(bad(n, "a SQL line after the alarm line"));
            }
            let offset = object
                .get("offset")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(n, "a SQL line needs \"offset\", a byte offset"))?;
            let expected = counts.sql_pages * PAGE_SIZE as u64;
            if offset != expected {
                return Err(bad(
                    n,
                    &format!(
                        "this SQL chunk is at offset {offset}, the file so far ends at {expected}: a chunk is missing or out of place"
                    ),
                ));
            }
            let bytes = BASE64
                .decode(
                    data.as_str()
                        .ok_or_else(|| bad(n, "\"sql\" must be base64"))?,
                )
                .map_err(|e| bad(n, &format!("the SQL chunk is not base64 ({e})")))?;
            if bytes.is_empty() || bytes.len() % PAGE_SIZE != 0 {
                return Err(bad(
                    n,
                    &format!(
                        "a SQL chunk is whole pages of {PAGE_SIZE} bytes; this one is {} bytes",
                        bytes.len()
                    ),
                ));
            }
            let bytes = Bytes::from(bytes);
            for at in (0..bytes.len()).step_by(PAGE_SIZE) {
                dump.pages.push(bytes.slice(at..at + PAGE_SIZE));
            }
            counts.sql_pages += (bytes.len() / PAGE_SIZE) as u64;
            if dump.pages.len() > u32::MAX as usize {
                return Err(bad(
                    n,
                    "the SQL database has more pages than a page number can count",
                ));
            }
        } else if let Some(time) = object.get("alarm") {
            if counts.alarm > 0 {
                return Err(bad(n, "a second alarm line"));
            }
            let time = time
                .as_i64()
                .ok_or_else(|| bad(n, "\"alarm\" must be a time in ms since the Unix epoch"))?;
            dump.alarm = Some(AlarmRecord { time, retries: 0 });
            counts.alarm += 1;
        } else {
            return Err(bad(
                n,
                "an unknown line: a line holds \"kv\", \"sql\", \"alarm\" or \"end\"",
            ));
        }
        counts.lines += 1;
    }
}

/// The error for line `n` of an export.
fn bad(n: u64, why: &str) -> Error {
    Error::new(
        ErrorKind::BadRequest,
        format!("line {n} of the export: {why}"),
    )
}

/// An import ready to commit: which object, its record, and the write set
/// that replaces its storage.
pub(crate) struct Prepared {
    pub(crate) key: ObjectKey,
    pub(crate) record: ObjectRecord,
    pub(crate) writes: WriteSet,
    pub(crate) report: TransferReport,
}

/// Reads an export and decides which object of `places` it writes (see the
/// module docs); refuses a class other than the binding's, and an object
/// that holds data unless `options.replace`.
pub(crate) fn prepare(
    store: &Store,
    places: &[Place],
    input: &mut dyn BufRead,
    options: &ImportOptions,
) -> Result<Prepared> {
    let Parsed { header, dump } = read(input)?;
    let binding = options.binding.as_deref().unwrap_or(&header.binding);
    let place = place(places, binding)?;
    if place.class != header.class {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!(
                "the export holds an object of class {:?}, and {binding} is of class {:?}: import it into a binding of its class (--binding)",
                header.class, place.class
            ),
        ));
    }
    let (key, name) = match (&options.target, &header.name) {
        (Some(target), _) => {
            let key = place.resolve(target)?;
            (
                key,
                (!target.starts_with(ID_PREFIX)).then(|| target.clone()),
            )
        }
        (None, Some(name)) => (
            ObjectKey::new(place.ns.number, &name_id(&place.ns.secret, name)),
            Some(name.clone()),
        ),
        (None, None) => match parse_id(&header.id).filter(|id| minted_by(&place.ns.secret, id)) {
            Some(id) => (ObjectKey::new(place.ns.number, &id), None),
            None => {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!(
                        "the exported object has no name, and its id {} is not an id of {binding} here (ids are minted per namespace): say which object to write with --as NAME (or ?as=NAME)",
                        header.id
                    ),
                ));
            }
        },
    };
    let held = store.has_object(&key)?;
    if held && !options.replace {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!(
                "{binding} object {} already holds data: import with --replace (or ?replace=1) to replace it",
                name.as_deref()
                    .map_or_else(|| hex::encode(key.id()), |n| format!("{n:?}"))
            ),
        ));
    }
    let mut report = TransferReport::of(place, &key, name.clone(), &dump);
    report.replaced = held;
    Ok(Prepared {
        key,
        record: ObjectRecord {
            class: place.class.clone(),
            name,
        },
        writes: dump.into_writes(),
        report,
    })
}

/// Milliseconds since the Unix epoch now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl crate::DataDir {
    /// Writes the export of the object `name_or_id` (a name, or `id:` and
    /// an id) of `binding` to `out` (`docs/export.md`); `None` if it never
    /// wrote anything. A cluster's database may be exported while its
    /// nodes run.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown binding or id,
    /// [`ErrorKind::Storage`] if the object cannot be read,
    /// [`ErrorKind::Io`] if `out` cannot be written.
    pub fn export_object(
        &self,
        binding: &str,
        name_or_id: &str,
        out: &mut dyn Write,
    ) -> Result<Option<TransferReport>> {
        export(&self.store, place(&self.places, binding)?, name_or_id, out)
    }

    /// Imports an export read from `input` (see [`ImportOptions`] for
    /// which object it writes), replacing the object's storage in one
    /// durable commit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] for a cluster's database (import through
    /// a node's admin HTTP API), an export that is not whole or not of
    /// this format and version (naming the line), a class other than the
    /// binding's, an object that holds data without `replace`;
    /// [`ErrorKind::Storage`] if the commit fails (nothing changed).
    pub fn import_object(
        &self,
        input: &mut dyn BufRead,
        options: &ImportOptions,
    ) -> Result<TransferReport> {
        if self.shared {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "the nodes of the cluster may be running on this database: import through a node's admin HTTP API (POST /_dohost/objects/BINDING/NAME_OR_ID/import)",
            ));
        }
        let prepared = prepare(&self.store, &self.places, input, options)?;
        let done = self
            .store
            .commit(prepared.key, prepared.writes, Some(prepared.record));
        crate::runtime::block_on(async {
            dohost_store::pass_gate(Some(futures_util::FutureExt::shared(done))).await?;
            Ok(())
        })?;
        Ok(prepared.report)
    }
}

impl crate::Host {
    /// The export of the object `name_or_id` of `binding`, as far as it is
    /// durable (`docs/export.md`); `None` if it never wrote anything.
    ///
    /// # Errors
    ///
    /// As [`crate::DataDir::export_object`].
    pub fn export_object(
        &self,
        binding: &str,
        name_or_id: &str,
    ) -> Result<Option<(Vec<u8>, TransferReport)>> {
        let places = self.places();
        let mut out = Vec::new();
        let report = export(
            &self.inner.shared.store,
            place(&places, binding)?,
            name_or_id,
            &mut out,
        )?;
        Ok(report.map(|r| (out, r)))
    }

    /// Imports an export read from `input` into the running host: the
    /// object finishes its running event, its instance is reset, then its
    /// storage is replaced in one durable commit; its next event starts on
    /// what was imported.
    ///
    /// # Errors
    ///
    /// As [`crate::DataDir::import_object`] (without the cluster's
    /// refusal), and [`ErrorKind::Unavailable`] on a node of a cluster that
    /// does not hold the object.
    pub async fn import_object(
        &self,
        input: &mut (dyn BufRead + Send),
        options: &ImportOptions,
    ) -> Result<TransferReport> {
        let places = self.places();
        let prepared = prepare(&self.inner.shared.store, &places, input, options)?;
        self.namespace(&prepared.report.binding)?
            .replace_object(&prepared.key.id(), prepared.writes, prepared.record)
            .await?;
        Ok(prepared.report)
    }
}

/// Answers the admin routes of exports, imports and backups, or `None`
/// for another route: `GET objects/B/NAME_OR_ID/export`, `POST
/// objects/B/NAME_OR_ID/import[?replace=1]` and `POST backup`.
pub(crate) async fn serve_http(
    host: &crate::Host,
    method: &http::Method,
    segments: &[&str],
    request: &http::Request<Bytes>,
) -> Option<http::Response<Bytes>> {
    let outcome = match (method, segments) {
        (&http::Method::GET, ["objects", binding, name_or_id, "export"]) => {
            match host.export_object(binding, name_or_id) {
                Ok(Some((bytes, report))) => {
                    let mut response = http::Response::new(Bytes::from(bytes));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/jsonl"),
                    );
                    let file = format!(
                        "attachment; filename=\"{}-{}.jsonl\"",
                        report.binding,
                        &report.id[..16]
                    );
                    if let Ok(value) = http::HeaderValue::from_str(&file) {
                        response
                            .headers_mut()
                            .insert(http::header::CONTENT_DISPOSITION, value);
                    }
                    return Some(response);
                }
                Ok(None) => Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{binding} has no object {name_or_id:?} (it has never written anything, or was deleted)"
                    ),
                )),
                Err(e) => Err(e),
            }
        }
        (&http::Method::POST, ["objects", binding, name_or_id, "import"]) => {
            let replace = request.uri().query().is_some_and(|q| {
                q.split('&')
                    .any(|p| matches!(p, "replace" | "replace=1" | "replace=true"))
            });
            let options = ImportOptions::default()
                .binding(*binding)
                .target(*name_or_id)
                .replace(replace);
            host.import_object(&mut request.body().as_ref(), &options)
                .await
                .and_then(|report| {
                    serde_json::to_value(report)
                        .map_err(|e| Error::new(ErrorKind::Storage, e.to_string()))
                })
        }
        (&http::Method::POST, ["backup"]) => match super::backup::serve_backup(host).await {
            Ok(response) => return Some(response),
            Err(e) => Err(e),
        },
        _ => return None,
    };
    Some(match outcome {
        Ok(body) => super::admin::json_reply(200, &body),
        Err(e) => super::admin::json_reply(
            e.http_status(),
            &serde_json::json!({ "error": e.message() }),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (ExportHeader, ObjectDump) {
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            binding: "B".into(),
            class: "C".into(),
            id: "00".repeat(32),
            name: Some("n".into()),
            exported_at: 1,
            page_size: PAGE_SIZE,
        };
        let dump = ObjectDump {
            entries: vec![
                ("a".into(), Bytes::from_static(b"1")),
                ("b".into(), Bytes::from_static(b"22")),
            ],
            pages: (0..PAGES_PER_LINE + 3)
                .map(|i| Bytes::from(vec![i as u8; PAGE_SIZE]))
                .collect(),
            alarm: Some(AlarmRecord {
                time: 5,
                retries: 0,
            }),
            record: None,
        };
        (header, dump)
    }

    fn written() -> String {
        let (header, dump) = sample();
        let mut out = Vec::new();
        write_lines(&header, &dump, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_export_reads_back_as_written() {
        let text = written();
        assert_eq!(text.lines().count(), 1 + 2 + 2 + 1 + 1);
        let parsed = read(&mut text.as_bytes()).unwrap();
        let (header, dump) = sample();
        assert_eq!(parsed.header, header);
        assert_eq!(parsed.dump, dump);
    }

    #[test]
    fn a_cut_or_changed_export_is_refused_naming_the_line() {
        let text = written();
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines[..lines.len() - 1].join("\n");
        let e = read(&mut cut.as_bytes()).unwrap_err();
        assert!(
            e.message().contains("line 6") && e.message().contains("cut short"),
            "{e}"
        );
        let dropped = [&lines[..3], &lines[4..]].concat().join("\n");
        let e = read(&mut dropped.as_bytes()).unwrap_err();
        assert!(
            e.message().contains("line 4") && e.message().contains("offset"),
            "{e}"
        );
        let newer = text.replacen("\"version\":1", "\"version\":2", 1);
        let e = read(&mut newer.as_bytes()).unwrap_err();
        assert!(
            e.message().contains("line 1") && e.message().contains("version is 2"),
            "{e}"
        );
        let wrong = text.replacen("dohost-object", "something-else", 1);
        let e = read(&mut wrong.as_bytes()).unwrap_err();
        assert!(e.message().contains("not a dohost object export"), "{e}");
    }
}
