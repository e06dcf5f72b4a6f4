//! History: what point-in-time recovery keeps of every commit.
//!
//! With history on (`[storage] history`), every group commit gets the next
//! number of the database, its **bookmark**, and the backend keeps, in the
//! same transaction, each written object's **undo**: what every key, SQL
//! page and the alarm it changed held before the commit. An object's state
//! at bookmark `b` is then its state now with the undo of every later
//! commit applied, newest first; or, the same, each thing changed since `b`
//! takes the value the first undo after `b` recorded for it
//! ([`restore_writes`]).
//!
//! A restore is an ordinary write set, committed like an event's, so it has
//! a bookmark and an undo of its own: restoring to the bookmark just before
//! it undoes it. A deletion is a commit too, so a deleted object can be
//! brought back.
//!
//! The history kept is pruned in the background: commits older than the
//! retention, and the oldest ones while it holds more than its size bound
//! ([`HistorySettings`]). The oldest bookmark still restorable is the
//! **floor**; history turned on after being off starts a new floor.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::alarm::{AlarmRecord, AlarmWrite};
use crate::error::{Error, ErrorKind, Result};
use crate::writes::{Write, WriteSet};

/// How much history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Commits older than this are pruned.
    pub retention: Duration,
    /// While the history holds more than this many bytes, the oldest
    /// commits are pruned too.
    pub max_bytes: Option<u64>,
}

impl HistorySettings {
    /// How often the pruner looks: an eighth of the retention, between
    /// 50 ms and a minute.
    pub fn prune_interval(&self) -> Duration {
        (self.retention / 8).clamp(Duration::from_millis(50), Duration::from_secs(60))
    }
}

/// A point in the database's history: the number of a commit. Its text
/// (16 lowercase hex digits) orders as the commits do, as Cloudflare's
/// bookmarks compare lexically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bookmark(pub u64);

impl std::fmt::Display for Bookmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Bookmark {
    type Err = Error;

    fn from_str(text: &str) -> Result<Bookmark> {
        let valid = text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
        valid
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .map(Bookmark)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Invalid,
                    format!(
                        "{text:?} is not a bookmark: a bookmark is the 16 hex digits getCurrentBookmark or getBookmarkForTime returned"
                    ),
                )
            })
    }
}

/// What the history holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// The oldest bookmark that can be restored.
    pub floor: Bookmark,
    /// The newest commit's bookmark.
    pub latest: Bookmark,
    /// The time of the floor, in ms since the Unix epoch.
    pub floor_time: i64,
    /// Commits kept after the floor.
    pub commits: u64,
    /// Bytes of undo and commit records kept.
    pub bytes: u64,
}

/// What one undo entry is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UndoTarget {
    /// A KV key.
    Kv(String),
    /// A page of the SQL database file.
    Page(u32),
    /// The alarm.
    Alarm,
}

/// One object's undo of one commit: what each thing it changed held
/// before (`None`: it did not exist). Alarms are [`AlarmRecord`] bytes.
pub type Undo = BTreeMap<UndoTarget, Option<Vec<u8>>>;

/// Notes `old` as what `target` held before the commit, unless an earlier
/// write of the same commit noted it already (that one saw the older
/// value).
pub fn note(undo: &mut Undo, target: UndoTarget, old: Option<&[u8]>) {
    undo.entry(target)
        .or_insert_with(|| old.map(<[u8]>::to_vec));
}

/// The stored form of an [`Undo`]: per entry a tag byte (0 key, 1 page,
/// 2 alarm), the key (u32 big-endian length and UTF-8 bytes) or page
/// (u32 big-endian), then 0 (absent) or 1 and the value (u32 big-endian
/// length and bytes).
pub fn encode_undo(undo: &Undo) -> Vec<u8> {
    let mut out = Vec::new();
    let len = |out: &mut Vec<u8>, n: usize| {
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    };
    for (target, old) in undo {
        match target {
            UndoTarget::Kv(key) => {
                out.push(0);
                len(&mut out, key.len());
                out.extend_from_slice(key.as_bytes());
            }
            UndoTarget::Page(page) => {
                out.push(1);
                out.extend_from_slice(&page.to_be_bytes());
            }
            UndoTarget::Alarm => out.push(2),
        }
        match old {
            Some(value) => {
                out.push(1);
                len(&mut out, value.len());
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    out
}

/// Reads what [`encode_undo`] wrote; `None` if it is damaged.
pub fn decode_undo(mut bytes: &[u8]) -> Option<Undo> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(head)
    }
    fn number(bytes: &mut &[u8]) -> Option<u32> {
        Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    let mut undo = Undo::new();
    while !bytes.is_empty() {
        let target = match take(&mut bytes, 1)?[0] {
            0 => {
                let n = number(&mut bytes)? as usize;
                UndoTarget::Kv(String::from_utf8(take(&mut bytes, n)?.to_vec()).ok()?)
            }
            1 => UndoTarget::Page(number(&mut bytes)?),
            2 => UndoTarget::Alarm,
            _ => return None,
        };
        let old = match take(&mut bytes, 1)?[0] {
            0 => None,
            1 => {
                let n = number(&mut bytes)? as usize;
                Some(take(&mut bytes, n)?.to_vec())
            }
            _ => return None,
        };
        undo.insert(target, old);
    }
    Some(undo)
}

/// The write set that brings an object back to a bookmark: `since` holds
/// the undo of every commit after it that wrote the object, oldest first;
/// `pages_now` is its SQL file's length now, in pages.
pub fn restore_writes(since: &[Undo], pages_now: u32) -> WriteSet {
    let mut then = Undo::new();
    for undo in since {
        for (target, old) in undo {
            then.entry(target.clone()).or_insert_with(|| old.clone());
        }
    }
    let mut writes = WriteSet::default();
    // The file's length then: its last page that existed then, counting
    // the pages no commit since changed as existing if they exist now.
    let mut length = pages_now;
    while length > 0 {
        match then.get(&UndoTarget::Page(length - 1)) {
            Some(None) => length -= 1,
            _ => break,
        }
    }
    let longest_then = then
        .iter()
        .filter_map(|(t, old)| match (t, old) {
            (UndoTarget::Page(p), Some(_)) => Some(p + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let length = length.max(longest_then);
    if length < pages_now {
        writes.pages.truncate = Some(length);
    }
    for (target, old) in then {
        match target {
            UndoTarget::Kv(key) => {
                let value = old.map(Bytes::from);
                writes.entries.insert(
                    key,
                    Write {
                        value,
                        no_cache: false,
                    },
                );
            }
            UndoTarget::Page(page) => {
                if let Some(bytes) = old.filter(|_| page < length) {
                    writes.pages.pages.insert(page, Bytes::from(bytes));
                }
            }
            UndoTarget::Alarm => {
                writes.alarm = Some(match old.as_deref().and_then(AlarmRecord::decode) {
                    Some(record) => AlarmWrite::Set(AlarmRecord {
                        time: record.time,
                        retries: 0,
                    }),
                    None => AlarmWrite::Delete,
                });
            }
        }
    }
    writes
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The error for history asked of a store that keeps none.
pub fn history_off() -> Error {
    Error::new(
        ErrorKind::Invalid,
        "point-in-time recovery is off on this server: set `history = \"7d\"` (how long to keep) under [storage] in dohost.toml",
    )
}

/// The error for a bookmark past the newest commit (from another
/// database, or made up).
pub fn after_latest(bookmark: Bookmark, latest: Bookmark) -> Error {
    Error::new(
        ErrorKind::Invalid,
        format!(
            "bookmark {bookmark} is not a point of this server's history: its newest bookmark is {latest}"
        ),
    )
}

/// The error for a bookmark or time older than the history kept.
pub fn before_floor(what: &str, floor: Bookmark, floor_time: i64) -> Error {
    Error::new(
        ErrorKind::Invalid,
        format!(
            "{what} is older than the history this server keeps: the oldest point it can restore is bookmark {floor} ({floor_time} ms since the epoch); [storage] history sets how long history is kept"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undo_round_trips_and_damage_is_refused() {
        let mut undo = Undo::new();
        note(&mut undo, UndoTarget::Kv("a".into()), Some(b"1"));
        note(&mut undo, UndoTarget::Kv("a".into()), Some(b"2"));
        note(&mut undo, UndoTarget::Page(3), None);
        note(&mut undo, UndoTarget::Alarm, Some(&[0; 12]));
        let bytes = encode_undo(&undo);
        let back = decode_undo(&bytes).unwrap();
        assert_eq!(back, undo);
        assert_eq!(back[&UndoTarget::Kv("a".into())], Some(b"1".to_vec()));
        assert_eq!(decode_undo(&bytes[..bytes.len() - 1]), None);
        assert_eq!(
            "00000000000000ff".parse::<Bookmark>().unwrap(),
            Bookmark(255)
        );
        assert_eq!(Bookmark(255).to_string(), "00000000000000ff");
        assert!("ff".parse::<Bookmark>().is_err());
    }

    #[test]
    fn a_restore_takes_the_first_undo_after_the_bookmark() {
        let mut first = Undo::new();
        note(&mut first, UndoTarget::Kv("a".into()), Some(b"old"));
        note(&mut first, UndoTarget::Kv("b".into()), None);
        note(&mut first, UndoTarget::Page(2), None);
        note(&mut first, UndoTarget::Page(1), Some(b"p1"));
        let mut second = Undo::new();
        note(&mut second, UndoTarget::Kv("a".into()), Some(b"newer"));
        note(&mut second, UndoTarget::Alarm, None);
        let writes = restore_writes(&[first, second], 3);
        assert_eq!(writes.entries["a"].value.as_deref(), Some(&b"old"[..]));
        assert_eq!(writes.entries["b"].value, None);
        assert_eq!(writes.pages.truncate, Some(2));
        assert_eq!(writes.pages.pages[&1].as_ref(), b"p1");
        assert_eq!(writes.alarm, Some(AlarmWrite::Delete));
    }
}

#[cfg(test)]
mod store_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::alarm::AlarmRecord;
    use crate::keys::ObjectKey;
    use crate::{PAGE_SIZE, Store, pass_gate};

    type Opened = (Store, tokio::sync::oneshot::Receiver<()>);

    /// Opens a store of one backend (the same database each time) with
    /// history kept for the retention given.
    type Open<'a> = &'a dyn Fn(Duration) -> Opened;

    fn with_history((store, stopped): Opened, retention: Duration) -> Opened {
        store
            .enable_history(Some(HistorySettings {
                retention,
                max_bytes: None,
            }))
            .unwrap();
        (store, stopped)
    }

    /// A redb store in `dir`.
    fn redb(dir: &tempfile::TempDir) -> impl Fn(Duration) -> Opened {
        let path = dir.path().join("db.redb");
        move |retention| {
            let opened = Store::open(&path, None, Arc::new(|_: &[_]| {})).unwrap();
            with_history(opened, retention)
        }
    }

    /// A PostgreSQL store on a fresh database of `server`.
    fn postgres(server: &dohost_test_postgres::Postgres) -> impl Fn(Duration) -> Opened {
        let url = server.database();
        move |retention| {
            let backend = crate::PostgresBackend::connect(&url).unwrap();
            let opened = Store::start(Arc::new(backend), None, Arc::new(|_: &[_]| {})).unwrap();
            with_history(opened, retention)
        }
    }

    fn commit(store: &Store, object: ObjectKey, writes: WriteSet) {
        let done = store.commit(object, writes, None);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(pass_gate(Some(futures_util::FutureExt::shared(done))))
            .unwrap();
    }

    fn put(key: &str, value: &str) -> (String, Write) {
        let value = Some(Bytes::from(value.to_owned()));
        (
            key.into(),
            Write {
                value,
                no_cache: false,
            },
        )
    }

    fn page(fill: u8) -> Bytes {
        Bytes::from(vec![fill; PAGE_SIZE])
    }

    /// The object's keys, pages and alarm time, as committed.
    fn state(store: &Store, object: &ObjectKey) -> (Vec<Option<Vec<u8>>>, Vec<u8>, Option<i64>) {
        let keys = store.get_many(object, &["a".into(), "b".into()]).unwrap();
        let view = store.committed_pages(object).unwrap();
        let pages = (0..view.page_count().unwrap())
            .map(|p| view.read_page(p).unwrap().map_or(0, |bytes| bytes[0]))
            .collect();
        let alarm = store.read_alarm(object).unwrap().map(|r| r.time);
        (keys, pages, alarm)
    }

    #[test]
    fn a_restore_brings_back_keys_pages_and_the_alarm_and_can_be_undone() {
        let dir = tempfile::tempdir().unwrap();
        restore_and_undo(&redb(&dir));
    }

    #[test]
    fn postgres_restores_keys_pages_and_the_alarm_and_undoes_a_restore() {
        let server = dohost_test_postgres::Postgres::start();
        restore_and_undo(&postgres(&server));
    }

    fn restore_and_undo(open: Open<'_>) {
        let (store, stopped) = open(Duration::from_secs(3600));
        let object = ObjectKey::new(1, &[7; 32]);
        let mut first = WriteSet::default();
        first.entries.extend([put("a", "1")]);
        first.pages.pages.insert(0, page(1));
        first.alarm = Some(AlarmWrite::Set(AlarmRecord {
            time: 100,
            retries: 0,
        }));
        commit(&store, object, first);
        let then = store.current_bookmark().unwrap();
        let at_then = state(&store, &object);
        let mut second = WriteSet::default();
        second.entries.extend([put("a", "2"), put("b", "3")]);
        second.pages.pages.insert(0, page(2));
        second.pages.pages.insert(1, page(3));
        second.alarm = Some(AlarmWrite::Delete);
        commit(&store, object, second);
        let at_second = state(&store, &object);
        let mut cut = WriteSet::default();
        cut.pages.truncate = Some(1);
        commit(&store, object, cut);
        assert_eq!(state(&store, &object).1, vec![2]);
        commit(&store, object, WriteSet::deletion());
        assert_eq!(state(&store, &object), (vec![None, None], vec![], None));

        // Restored after a restart: the history is in the database.
        store.close();
        drop(store);
        stopped.blocking_recv().unwrap();
        let (store, _stopped) = open(Duration::from_secs(3600));
        let before_restore = store.current_bookmark().unwrap();
        let writes = store.restore_writes(&object, then).unwrap();
        commit(&store, object, writes);
        assert_eq!(state(&store, &object), at_then);
        assert_eq!(
            at_then,
            (vec![Some(b"1".to_vec()), None], vec![1], Some(100))
        );

        // The restore is a commit of its own: undone by restoring to the
        // bookmark just before it; any earlier point stays reachable (the
        // second commit's, with the page the cut after it removed).
        let writes = store.restore_writes(&object, before_restore).unwrap();
        commit(&store, object, writes);
        assert_eq!(state(&store, &object), (vec![None, None], vec![], None));
        let second_bookmark = Bookmark(then.0 + 1);
        let writes = store.restore_writes(&object, second_bookmark).unwrap();
        commit(&store, object, writes);
        assert_eq!(state(&store, &object), at_second);

        // Times map to the last commit at or before them.
        let now = now_ms();
        assert_eq!(
            store.bookmark_for_time(now + 1000).unwrap(),
            store.current_bookmark().unwrap()
        );
        assert!(store.bookmark_for_time(0).is_err());
        assert!(store.restore_writes(&object, Bookmark(u64::MAX)).is_err());
    }

    #[test]
    fn pruning_moves_the_floor_and_refuses_older_bookmarks() {
        let dir = tempfile::tempdir().unwrap();
        prune_and_refuse(&redb(&dir));
    }

    #[test]
    fn postgres_pruning_moves_the_floor_and_refuses_older_bookmarks() {
        let server = dohost_test_postgres::Postgres::start();
        prune_and_refuse(&postgres(&server));
    }

    fn prune_and_refuse(open: Open<'_>) {
        let (store, _stopped) = open(Duration::from_millis(1));
        let object = ObjectKey::new(1, &[8; 32]);
        for i in 0..5 {
            let mut writes = WriteSet::default();
            writes.entries.extend([put("a", &i.to_string())]);
            commit(&store, object, writes);
        }
        let old = Bookmark(store.current_bookmark().unwrap().0 - 3);
        std::thread::sleep(Duration::from_millis(5));
        // The pruner thread may have pruned some already.
        store.backend().prune_history().unwrap();
        let stats = store.history_stats().unwrap().unwrap();
        // The newest commit's undo is always kept.
        assert_eq!((stats.floor.0 + 1, stats.commits), (stats.latest.0, 1));
        let refused = store.restore_writes(&object, old).unwrap_err();
        assert!(
            refused.message().contains("older than the history"),
            "{refused}"
        );
        assert!(store.restore_writes(&object, stats.latest).is_ok());
    }

    /// History turned off drops what it kept; turned on again it starts at
    /// a bookmark of its own, and refuses the ones handed out before.
    #[test]
    fn history_turned_off_and_on_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let object = ObjectKey::new(1, &[9; 32]);
        let reopen = |settings: Option<HistorySettings>| {
            let (store, stopped) = Store::open(&path, None, Arc::new(|_: &[_]| {})).unwrap();
            store.enable_history(settings).unwrap();
            (store, stopped)
        };
        let close = |(store, stopped): Opened| {
            store.close();
            drop(store);
            stopped.blocking_recv().unwrap();
        };
        let on = Some(HistorySettings {
            retention: Duration::from_secs(3600),
            max_bytes: None,
        });
        let write = |store: &Store, value: &str| {
            let mut writes = WriteSet::default();
            writes.entries.extend([put("a", value)]);
            commit(store, object, writes);
        };
        let opened = reopen(on);
        write(&opened.0, "1");
        let before = opened.0.current_bookmark().unwrap();
        close(opened);
        let opened = reopen(None);
        write(&opened.0, "2");
        assert!(opened.0.current_bookmark().is_err());
        close(opened);
        let opened = reopen(on);
        write(&opened.0, "3");
        let stats = opened.0.history_stats().unwrap().unwrap();
        assert_eq!(stats.floor.0, before.0 + 1, "a floor of its own");
        assert_eq!((stats.latest.0, stats.commits), (before.0 + 2, 1));
        // `before` named the state with "1"; "2" was never recorded.
        assert!(opened.0.restore_writes(&object, before).is_err());
        assert!(opened.0.restore_writes(&object, stats.floor).is_ok());
        close(opened);
    }
}
