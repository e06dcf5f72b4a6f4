//! `POST /ops`: a list of storage operations run in one event, so tests can
//! drive every storage call (transactions included) and compare the results
//! with a model. The SQL operations and their JSON are in `sql_ops.rs`.

use dohost_sdk::{Error, ListOptions, Result, Storage};

use crate::sql_ops;
use serde::Deserialize;
use serde_json::{Value, json};

/// One storage operation. Values are UTF-8 strings stored as raw bytes.
#[derive(Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Get {
        key: String,
        #[serde(default)]
        no_cache: bool,
    },
    GetMany {
        keys: Vec<String>,
    },
    Put {
        key: String,
        value: String,
        #[serde(default)]
        unconfirmed: bool,
        #[serde(default)]
        no_cache: bool,
    },
    PutMany {
        entries: Vec<(String, String)>,
    },
    Delete {
        key: String,
    },
    DeleteMany {
        keys: Vec<String>,
    },
    List {
        start: Option<String>,
        start_after: Option<String>,
        end: Option<String>,
        prefix: Option<String>,
        #[serde(default)]
        reverse: bool,
        limit: Option<u32>,
    },
    /// How many entries `list` with `prefix` returns (the entries are
    /// listed, not encoded into the answer).
    Count {
        prefix: String,
    },
    DeleteAll,
    Sync,
    /// Runs `ops` in a transaction; then rolls it back (`rollback`) or
    /// fails the closure (`fail`), or commits.
    Txn {
        ops: Vec<Op>,
        #[serde(default)]
        rollback: bool,
        #[serde(default)]
        fail: bool,
    },
    /// Opens `depth` transactions, each inside the one before; an error
    /// at any level rolls every level back and is returned.
    Nest {
        depth: u32,
    },
    /// Runs `what` `times` times (for benchmarks); the last result.
    Repeat {
        times: u32,
        what: Box<Op>,
    },
    /// Traps the event: none of its writes may survive.
    Panic,
    /// `get_alarm`: the alarm's time or null.
    GetAlarm,
    /// `set_alarm` at `at` ms since the epoch, or `in_ms` from now.
    SetAlarm {
        at: Option<i64>,
        in_ms: Option<i64>,
    },
    /// `delete_alarm`.
    DeleteAlarm,
    /// The host's clock as the guest sees it (ms since the epoch).
    Now,
    /// `get_current_bookmark`.
    Bookmark,
    /// `get_bookmark_for_time`.
    BookmarkForTime {
        time: i64,
    },
    /// `on_next_session_restore_bookmark`: the bookmark that undoes it.
    RestoreNext {
        bookmark: String,
    },
    /// `exec`, every row read (see `sql_ops.rs`).
    Sql {
        query: String,
        #[serde(default)]
        params: Vec<Value>,
    },
    /// `exec`, the rows walked and counted, not kept.
    SqlStream {
        query: String,
        #[serde(default)]
        params: Vec<Value>,
    },
    /// `database_size`.
    SqlSize,
    /// `exec`, the cursor kept under `name` for `sql_next`.
    SqlOpen {
        name: String,
        query: String,
        #[serde(default)]
        params: Vec<Value>,
        #[serde(default = "one")]
        batch: u32,
    },
    /// Up to `max` more rows of the cursor kept under `name`.
    SqlNext {
        name: String,
        max: u32,
    },
    /// Drops the cursor kept under `name`.
    SqlClose {
        name: String,
    },
    /// `exec` of `query` `times` times, binding one integer, with each
    /// result read by `one()`: a point query without JSON per query (for
    /// benchmarks).
    SqlPoint {
        query: String,
        id_from: i64,
        #[serde(default = "one")]
        id_count: u32,
        times: u32,
    },
}

fn one() -> u32 {
    1
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `ops` in order; one `{"ok": ..}` or `{"err": ".."}` per operation.
pub fn run(storage: &Storage, ops: &[Op]) -> Vec<Value> {
    ops.iter()
        .map(|op| match run_one(storage, op) {
            Ok(value) => json!({ "ok": value }),
            Err(e) => json!({ "err": e.message() }),
        })
        .collect()
}

fn run_one(storage: &Storage, op: &Op) -> Result<Value> {
    Ok(match op {
        Op::GetAlarm => json!(storage.get_alarm()?),
        Op::SetAlarm { at, in_ms } => {
            let time = match (at, in_ms) {
                (Some(at), None) => *at,
                (None, Some(in_ms)) => dohost_sdk::now_ms() + in_ms,
                _ => return Err(Error::new("set_alarm takes one of at, in_ms")),
            };
            storage.set_alarm(time)?;
            json!(time)
        }
        Op::DeleteAlarm => {
            storage.delete_alarm()?;
            Value::Null
        }
        Op::Now => json!(dohost_sdk::now_ms()),
        Op::Get { key, no_cache } => {
            let storage = if *no_cache {
                storage.no_cache()
            } else {
                *storage
            };
            json!(storage.get_bytes(key)?.map(text))
        }
        Op::GetMany { keys } => {
            let found = storage.get_many_bytes(keys)?;
            json!(
                found
                    .into_iter()
                    .map(|(k, v)| (k, text(v)))
                    .collect::<Vec<_>>()
            )
        }
        Op::Put {
            key,
            value,
            unconfirmed,
            no_cache,
        } => {
            let mut storage = *storage;
            if *unconfirmed {
                storage = storage.allow_unconfirmed();
            }
            if *no_cache {
                storage = storage.no_cache();
            }
            storage.put_bytes(key, value.as_bytes())?;
            Value::Null
        }
        Op::PutMany { entries } => {
            storage.put_many_bytes(entries.iter().map(|(k, v)| (k, v.as_bytes())))?;
            Value::Null
        }
        Op::Delete { key } => json!(storage.delete(key)?),
        Op::DeleteMany { keys } => json!(storage.delete_many(keys)?),
        Op::List {
            start,
            start_after,
            end,
            prefix,
            reverse,
            limit,
        } => {
            let listed = storage.list_bytes(ListOptions {
                start: start.clone(),
                start_after: start_after.clone(),
                end: end.clone(),
                prefix: prefix.clone(),
                reverse: *reverse,
                limit: *limit,
            })?;
            json!(
                listed
                    .into_iter()
                    .map(|(k, v)| (k, text(v)))
                    .collect::<Vec<_>>()
            )
        }
        Op::Count { prefix } => {
            let options = ListOptions {
                prefix: Some(prefix.clone()),
                ..ListOptions::default()
            };
            json!(storage.list_bytes(options)?.len())
        }
        Op::DeleteAll => {
            storage.delete_all()?;
            Value::Null
        }
        Op::Sync => {
            storage.sync()?;
            Value::Null
        }
        Op::Txn {
            ops,
            rollback,
            fail,
        } => storage.transaction(|txn| {
            let results = run(txn, ops);
            if *rollback {
                txn.rollback()?;
            }
            if *fail {
                return Err(Error::new("the transaction failed on request"));
            }
            Ok(json!(results))
        })?,
        Op::Nest { depth } => {
            nest(storage, *depth)?;
            Value::Null
        }
        Op::Repeat { times, what } => {
            let mut last = Value::Null;
            for _ in 0..*times {
                last = run_one(storage, what)?;
            }
            last
        }
        Op::Panic => panic!("probe panic inside /ops"),
        Op::Bookmark => json!(storage.get_current_bookmark()?),
        Op::BookmarkForTime { time } => json!(storage.get_bookmark_for_time(*time)?),
        Op::RestoreNext { bookmark } => json!(storage.on_next_session_restore_bookmark(bookmark)?),
        Op::Sql { query, params } => sql_ops::sql(storage, query, params)?,
        Op::SqlStream { query, params } => sql_ops::sql_stream(storage, query, params)?,
        Op::SqlSize => sql_ops::sql_size(storage),
        Op::SqlOpen {
            name,
            query,
            params,
            batch,
        } => sql_ops::sql_open(storage, name, query, params, *batch)?,
        Op::SqlNext { name, max } => sql_ops::sql_next(name, *max)?,
        Op::SqlClose { name } => sql_ops::sql_close(name),
        Op::SqlPoint {
            query,
            id_from,
            id_count,
            times,
        } => sql_ops::sql_point(storage, query, *id_from, *id_count, *times)?,
    })
}

fn nest(storage: &Storage, depth: u32) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    storage.transaction(|txn| nest(txn, depth - 1))
}
