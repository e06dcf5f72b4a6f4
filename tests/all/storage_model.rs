//! The storage API behaves like a `BTreeMap`: random sequences of events
//! (get, get-many, put, put-many, delete, delete-many, list with every
//! option, delete-all, sync, nested transactions with commit, rollback and
//! failure, events that trap) run through the real host and against a model,
//! with host restarts in the middle, and every result must match.
//!
//! The host runs with a tiny cache so values keep moving between the event's
//! writes, pending commits, the LRU and redb.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::{library_host, probe_stub, run_ops};

pub(crate) type Model = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub(crate) struct ListArgs {
    pub(crate) start: Option<String>,
    pub(crate) start_after: Option<String>,
    pub(crate) end: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Clone)]
enum Op {
    Get(String),
    GetMany(Vec<String>),
    Put(String, String),
    PutMany(Vec<(String, String)>),
    Delete(String),
    DeleteMany(Vec<String>),
    List(ListArgs),
    DeleteAll,
    Sync,
    Txn {
        ops: Vec<Op>,
        rollback: bool,
        fail: bool,
    },
}

#[derive(Debug, Clone)]
enum Step {
    /// One event; `trap` makes it panic after its operations.
    Event {
        ops: Vec<Op>,
        trap: bool,
    },
    Restart,
}

fn key() -> impl Strategy<Value = String> {
    "[ab]{0,2}|é"
}

fn value() -> impl Strategy<Value = String> {
    "[0-9]{0,3}"
}

fn list_args() -> impl Strategy<Value = ListArgs> {
    (
        proptest::option::weighted(0.3, key()),
        proptest::option::weighted(0.2, key()),
        proptest::option::weighted(0.3, key()),
        proptest::option::weighted(0.3, "[ab]{0,1}"),
        any::<bool>(),
        proptest::option::weighted(0.4, 0u32..4),
    )
        .prop_map(
            |(start, start_after, end, prefix, reverse, limit)| ListArgs {
                start,
                start_after,
                end,
                prefix,
                reverse,
                limit,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let leaf = prop_oneof![
        3 => key().prop_map(Op::Get),
        1 => proptest::collection::vec(key(), 0..4).prop_map(Op::GetMany),
        4 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => proptest::collection::vec((key(), value()), 0..4).prop_map(Op::PutMany),
        2 => key().prop_map(Op::Delete),
        1 => proptest::collection::vec(key(), 0..4).prop_map(Op::DeleteMany),
        2 => list_args().prop_map(Op::List),
        1 => Just(Op::DeleteAll),
        1 => Just(Op::Sync),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        (
            proptest::collection::vec(inner, 0..4),
            proptest::bool::weighted(0.25),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(ops, rollback, fail)| Op::Txn {
                ops,
                rollback,
                fail,
            })
    })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => (proptest::collection::vec(op(), 1..6), proptest::bool::weighted(0.1))
            .prop_map(|(ops, trap)| Step::Event { ops, trap }),
        1 => Just(Step::Restart),
    ];
    proptest::collection::vec(step, 1..10)
}

fn to_json(op: &Op) -> Value {
    match op {
        Op::Get(k) => json!({"op": "get", "key": k}),
        Op::GetMany(keys) => json!({"op": "get_many", "keys": keys}),
        Op::Put(k, v) => json!({"op": "put", "key": k, "value": v}),
        Op::PutMany(entries) => json!({"op": "put_many", "entries": entries}),
        Op::Delete(k) => json!({"op": "delete", "key": k}),
        Op::DeleteMany(keys) => json!({"op": "delete_many", "keys": keys}),
        Op::List(a) => a.to_json(),
        Op::DeleteAll => json!({"op": "delete_all"}),
        Op::Sync => json!({"op": "sync"}),
        Op::Txn {
            ops,
            rollback,
            fail,
        } => json!({
            "op": "txn", "ops": ops.iter().map(to_json).collect::<Vec<_>>(),
            "rollback": rollback, "fail": fail,
        }),
    }
}

impl ListArgs {
    /// The probe's `/ops` form of this list call.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "op": "list", "start": self.start, "start_after": self.start_after,
            "end": self.end, "prefix": self.prefix, "reverse": self.reverse,
            "limit": self.limit,
        })
    }
}

fn ok(value: Value) -> Value {
    json!({ "ok": value })
}

fn err() -> Value {
    json!({ "err": "any" })
}

/// What `list` with `a` must return over `model` (an `{"ok": ..}` result).
pub(crate) fn list_model(model: &Model, a: &ListArgs) -> Value {
    if a.limit == Some(0) || (a.start.is_some() && a.start_after.is_some()) {
        return err();
    }
    let lower = match (&a.start, &a.start_after) {
        (Some(s), _) => Bound::Included(s.clone()),
        (_, Some(s)) => Bound::Excluded(s.clone()),
        _ => Bound::Unbounded,
    };
    let mut entries: Vec<(&String, &String)> = model
        .range((lower, Bound::Unbounded))
        .filter(|(k, _)| a.end.as_ref().is_none_or(|e| *k < e))
        .filter(|(k, _)| a.prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .collect();
    if a.reverse {
        entries.reverse();
    }
    entries.truncate(a.limit.map_or(usize::MAX, |l| l as usize));
    ok(json!(entries))
}

/// Applies `op` to the model inside `depth` open transactions; returns the
/// result the host must give.
fn apply(model: &mut Model, op: &Op, depth: usize) -> Value {
    match op {
        Op::Get(k) => ok(json!(model.get(k))),
        Op::GetMany(keys) => {
            let mut found: BTreeMap<&String, &String> = BTreeMap::new();
            for k in keys {
                if let Some(v) = model.get(k) {
                    found.insert(k, v);
                }
            }
            ok(json!(found.into_iter().collect::<Vec<_>>()))
        }
        Op::Put(k, v) => {
            model.insert(k.clone(), v.clone());
            ok(Value::Null)
        }
        Op::PutMany(entries) => {
            model.extend(entries.iter().cloned());
            ok(Value::Null)
        }
        Op::Delete(k) => ok(json!(model.remove(k).is_some())),
        Op::DeleteMany(keys) => {
            let mut keys = keys.clone();
            keys.sort();
            keys.dedup();
            ok(json!(
                keys.iter().filter(|k| model.remove(*k).is_some()).count()
            ))
        }
        Op::List(a) => list_model(model, a),
        Op::DeleteAll => {
            model.clear();
            ok(Value::Null)
        }
        // Durability is not visible in the model; only its refusal is.
        Op::Sync if depth > 0 => err(),
        Op::Sync => ok(Value::Null),
        Op::Txn {
            ops,
            rollback,
            fail,
        } => {
            let before = model.clone();
            let results: Vec<Value> = ops.iter().map(|op| apply(model, op, depth + 1)).collect();
            if *rollback || *fail {
                *model = before;
            }
            if *fail { err() } else { ok(json!(results)) }
        }
    }
}

/// Compares host results with expected ones; `{"err": ..}` matches any error.
fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) if e.contains_key("err") => a.contains_key("err"),
        (Value::Object(a), Value::Object(e)) => {
            a.len() == e.len()
                && e.iter()
                    .all(|(k, ev)| a.get(k).is_some_and(|av| same(av, ev)))
        }
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(a, e)| same(a, e))
        }
        _ => actual == expected,
    }
}

/// Where a model test keeps its state: redb in the data directory, or a
/// PostgreSQL database.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Redb,
    Postgres(&'a str),
}

fn tiny_cache_host(dir: &std::path::Path, backend: Backend<'_>) -> dohost::Host {
    let builder = match backend {
        Backend::Redb => library_host(dir),
        Backend::Postgres(url) => library_host(dir).postgres(url),
    };
    builder
        .settings(dohost::Settings {
            max_live_objects: 64,
            cache_per_object: 600,
            cache_total: 2000,
            ..dohost::Settings::default()
        })
        .build()
        .expect("host builds")
}

async fn check_case(
    host: &mut dohost::Host,
    dir: &std::path::Path,
    backend: Backend<'_>,
    object: &str,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Restart => {
                host.clone().shutdown().await;
                *host = tiny_cache_host(dir, backend);
            }
            Step::Event { ops, trap } => {
                let stub = probe_stub(host, object);
                let mut json_ops: Vec<Value> = ops.iter().map(to_json).collect();
                if *trap {
                    json_ops.push(json!({"op": "panic"}));
                }
                let outcome = run_ops(&stub, &json!(json_ops)).await;
                // A trap discards the event's writes since its last sync;
                // a sync has already made the earlier ones durable.
                let mut durable = model.clone();
                let mut expected = Vec::with_capacity(ops.len());
                for op in ops {
                    expected.push(apply(&mut model, op, 0));
                    if matches!(op, Op::Sync) {
                        durable = model.clone();
                    }
                }
                if *trap {
                    prop_assert!(outcome.is_err(), "step {n}: a trapping event must fail");
                    model = durable;
                    continue;
                }
                let actual = outcome.map_err(|e| TestCaseError::fail(format!("step {n}: {e}")))?;
                prop_assert!(
                    same(&json!(actual), &json!(expected)),
                    "step {n}: host {actual:?}\nmodel {expected:?}"
                );
            }
        }
    }
    // Everything, read back in one list at the end.
    let stub = probe_stub(host, object);
    let all = run_ops(&stub, &json!([{"op": "list"}])).await.unwrap();
    prop_assert_eq!(&all[0], &ok(json!(model.iter().collect::<Vec<_>>())));
    Ok(())
}

#[test]
fn random_storage_histories_match_a_btreemap() {
    random_histories(Backend::Redb, 64);
}

/// The same with every object's state in a real PostgreSQL started by the
/// test.
#[test]
fn random_storage_histories_match_a_btreemap_on_postgres() {
    let server = dohost_test_postgres::Postgres::start();
    random_histories(Backend::Postgres(&server.database()), 48);
}

fn random_histories(backend: Backend<'_>, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = std::cell::RefCell::new(rt.block_on(async { tiny_cache_host(dir.path(), backend) }));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    let result = runner.run(&steps(), |steps| {
        case.set(case.get() + 1);
        let object = format!("model-{}", case.get());
        let mut host = host.borrow_mut();
        rt.block_on(check_case(&mut host, dir.path(), backend, &object, &steps))
    });
    rt.block_on(host.into_inner().shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Found by the random test: a trap after `sync` keeps what the sync made
/// durable (here a delete-all committed in a transaction) and drops only the
/// writes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_sync_keeps_what_the_sync_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = tiny_cache_host(dir.path(), Backend::Redb);
    let put = |k: &str, v: &str| Op::Put(k.into(), v.into());
    let steps = [
        Step::Event {
            ops: vec![put("", ""), put("a", "1")],
            trap: false,
        },
        Step::Event {
            ops: vec![
                Op::Txn {
                    ops: vec![Op::DeleteAll],
                    rollback: false,
                    fail: false,
                },
                Op::Sync,
                put("b", "2"),
            ],
            trap: true,
        },
        Step::Restart,
        Step::Event {
            ops: vec![Op::Get("a".into()), Op::Get("b".into())],
            trap: false,
        },
    ];
    check_case(
        &mut host,
        dir.path(),
        Backend::Redb,
        "sync-then-trap",
        &steps,
    )
    .await
    .unwrap();
    host.shutdown().await;
}

/// After a restart every read comes from PostgreSQL: single keys, several
/// at once, and a list, including a key deleted and one never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_read_back_from_postgres_after_a_restart() {
    let server = dohost_test_postgres::Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Postgres(&url);
    let mut host = tiny_cache_host(dir.path(), backend);
    let put = |k: &str, v: &str| Op::Put(k.into(), v.into());
    let steps = [
        Step::Event {
            ops: vec![put("a", "1"), put("b", "22"), put("é", "3")],
            trap: false,
        },
        Step::Event {
            ops: vec![Op::Delete("b".into()), put("ab", "4")],
            trap: false,
        },
        Step::Restart,
        Step::Event {
            ops: vec![
                Op::Get("a".into()),
                Op::Get("b".into()),
                Op::GetMany(vec!["ab".into(), "é".into(), "zz".into()]),
            ],
            trap: false,
        },
    ];
    check_case(&mut host, dir.path(), backend, "read-back", &steps)
        .await
        .unwrap();
    host.shutdown().await;
}
