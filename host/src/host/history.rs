//! Point-in-time recovery for operators: restore an object to a bookmark
//! or a moment (`dohost objects restore`, `POST
//! /_dohost/objects/B/NAME_OR_ID/restore`, [`Host::restore_object`]), and
//! what the history holds (`GET /_dohost/history`). The history itself is
//! the store's ([`dohost_store::history`]); guests use the same bookmarks
//! through `ctx.storage` (`getCurrentBookmark`, `getBookmarkForTime`,
//! `onNextSessionRestoreBookmark`).

use serde::Serialize;

use super::admin::place;
use super::host::Host;
use crate::error::{Error, ErrorKind, Result};
use dohost_store::{Bookmark, HistoryStats, Store};

/// Where to restore an object to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// A bookmark, as `getCurrentBookmark` or an earlier restore returned.
    Bookmark(Bookmark),
    /// A moment, in ms since the Unix epoch: the last commit at or before
    /// it.
    Time(i64),
}

impl std::str::FromStr for RestorePoint {
    type Err = Error;

    /// A bookmark (16 hex digits), ms since the epoch (digits), an RFC 3339
    /// time (`2026-12-07T10:30:00Z`), or how long ago (`10m`, `2h 30m`).
    fn from_str(text: &str) -> Result<RestorePoint> {
        let text = text.trim();
        if let Ok(bookmark) = text.parse::<Bookmark>() {
            return Ok(RestorePoint::Bookmark(bookmark));
        }
        if let Ok(ms) = text.parse::<i64>() {
            return Ok(RestorePoint::Time(ms));
        }
        if let Ok(time) = humantime::parse_rfc3339_weak(text) {
            let ms = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            return Ok(RestorePoint::Time(ms));
        }
        if let Ok(ago) = humantime::parse_duration(text.trim_end_matches(" ago")) {
            let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
            return Ok(RestorePoint::Time(
                dohost_store::history::now_ms().saturating_sub(ago),
            ));
        }
        Err(Error::new(
            ErrorKind::BadRequest,
            format!(
                "{text:?} is neither a bookmark (16 hex digits), a time (ms since the epoch, or RFC 3339 such as 2026-12-07T10:30:00Z) nor how long ago (such as 10m)"
            ),
        ))
    }
}

/// What a restore did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Restored {
    /// The bookmark the object's storage was brought back to.
    #[serde(serialize_with = "as_text")]
    pub bookmark: Bookmark,
    /// The bookmark just before the restore: restoring to it undoes it.
    #[serde(serialize_with = "as_text")]
    pub undo: Bookmark,
}

fn as_text<S: serde::Serializer>(
    bookmark: &Bookmark,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(bookmark)
}

/// The bookmark `at` names in `store`'s history.
pub(crate) fn resolve(store: &Store, at: RestorePoint) -> Result<Bookmark> {
    let bookmark = match at {
        RestorePoint::Bookmark(bookmark) => bookmark,
        RestorePoint::Time(ms) => store.bookmark_for_time(ms)?,
    };
    store.check_bookmark(bookmark)?;
    Ok(bookmark)
}

/// What the history holds, for `GET /_dohost/history`.
pub(crate) fn stats_json(stats: Option<HistoryStats>) -> serde_json::Value {
    match stats {
        None => serde_json::json!({ "on": false }),
        Some(s) => serde_json::json!({
            "on": true,
            "floor": s.floor.to_string(),
            "floor_time": s.floor_time,
            "latest": s.latest.to_string(),
            "commits": s.commits,
            "bytes": s.bytes,
        }),
    }
}

/// The body of `POST /_dohost/objects/B/NAME_OR_ID/restore`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBody {
    /// A bookmark or a time, as [`RestorePoint`] reads them; a number is
    /// ms since the epoch.
    at: serde_json::Value,
}

impl RestoreBody {
    pub(crate) fn point(&self) -> Result<RestorePoint> {
        match &self.at {
            serde_json::Value::String(text) => text.parse(),
            serde_json::Value::Number(n) => n.as_i64().map(RestorePoint::Time).ok_or_else(|| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("\"at\": {n} is not a time in ms"),
                )
            }),
            other => Err(Error::new(
                ErrorKind::BadRequest,
                format!("\"at\": {other} is neither a bookmark nor a time"),
            )),
        }
    }
}

impl Host {
    /// Brings the storage of the object `name_or_id` of `binding` (KV, SQL
    /// database and alarm) back to what it was at `at`: its running event
    /// finishes, its instance and cache go, the restore commits, and its
    /// next event starts on the restored state. A deleted object comes
    /// back. Needs `[storage] history`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] when history is off or `at` is outside
    /// the history kept; [`ErrorKind::NotFound`] for an unknown binding;
    /// [`ErrorKind::Storage`] if the commit fails.
    pub async fn restore_object(
        &self,
        binding: &str,
        name_or_id: &str,
        at: RestorePoint,
    ) -> Result<Restored> {
        let places = self.places();
        let key = place(&places, binding)?.resolve(name_or_id)?;
        let bookmark = resolve(&self.inner.shared.store, at)?;
        let undo = self
            .namespace(binding)?
            .restore_object(&key.id(), bookmark)
            .await?;
        Ok(Restored { bookmark, undo })
    }

    /// What the history holds: its oldest and newest bookmarks, commits and
    /// bytes; `None` when `[storage] history` is off.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if it cannot be read.
    pub fn history(&self) -> Result<Option<HistoryStats>> {
        Ok(self.inner.shared.store.history_stats()?)
    }
}
