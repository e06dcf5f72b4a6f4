//! The probe: Durable Objects whose routes exercise what the host promises.
//! Two classes in one component: `Probe` (below) and `Greeter`.
//!
//! - `GET|PUT|DELETE /kv/<key>`: raw storage of the request body.
//! - `GET /list?prefix=&start=&start_after=&end=&reverse=1&limit=`: JSON
//!   `[[key, value], ..]`.
//! - `POST /ops`: runs a JSON list of storage and SQL operations in one
//!   event (see `ops.rs` and `sql_ops.rs`) and answers with one result per
//!   operation.
//! - `GET /whoami`: JSON `{id, name, class}`.
//! - `GET /var/<name>`: a `[vars]` value.
//! - `GET /relay/<b>,<c>,...`: calls the `relay` RPC method of probe `b`,
//!   which calls `c`'s, ...: the names visited, as JSON.
//! - `GET /count`: an in-memory counter (lost on reset) and a stored one.
//! - `PUT /put-then-panic/<key>`: writes, then panics (the write must vanish).
//! - `PUT /put-then-abort/<key>`: writes, then calls `abort` (the same).
//! - `GET /panic`, `GET /error`, `GET /loop`: a trap, a returned error, a busy loop.
//! - `GET /alloc/<MiB>`: allocates and touches that much memory.
//! - `GET /spin/<ms>`: busy for `<ms>` ms, then answers `{start, end}`.
//! - `POST /fetch`, `GET /sleep/<ms>`, `GET /later/<ms>`: requests to the
//!   outside world, timers and `wait_until` (see `outbound.rs`).
//! - `GET /websocket`: accepts a WebSocket (see `sockets.rs`).
//! - `GET /from-js`: reads the value the JavaScript API tour stores under
//!   `for-rust` (structured clone, see `examples/js/api`) into Rust types,
//!   and answers with them as JSON.
//! - `GET /fetch-from/<BINDING>/<name>/<path>?<query>`: the response of
//!   that object to `GET /<path>?<query>`, its body read whole (a streamed
//!   one to its end).
//! - `GET /print/<n>`: prints `probe line <i>` for i in 1..=n to stdout
//!   (the server's log), then answers `printed <n>`.
//! - `GET /framing`: `hello` with a `Content-Length: 2` and a
//!   `Transfer-Encoding: chunked` header that contradict it.
//!
//! The alarm handler appends `{retry_count, is_retry, at, alarm}` (`alarm`:
//! what `get_alarm` says inside the handler) to the JSON list under the key
//! `alarm-log`, then acts on entry `retry_count` of the JSON list under
//! `alarm-plan` (default `"ok"`): `"ok"`; `"error"`; `"panic"`; `"delete"`
//! (delete the alarm, then fail); `"again:<ms>"` (set a new alarm `<ms>`
//! from now, then succeed); `"sql"` (move the rows of KV `pending:*` into
//! the SQL table `done`); `"spin:<ms>"` (busy for `<ms>` ms, then succeed,
//! also logging `end`); `"ops"` (run the ops under the key `alarm-ops`).

mod ops;
mod outbound;
mod rpc;
mod sockets;
mod sql_ops;

use std::cell::Cell;

use dohost_sdk::{
    AlarmInfo, DurableObject, Env, Error, ListOptions, Request, Response, Result, State, WebSocket,
    WebSocketMessage, now_ms, params,
};
use serde_json::{Value, json};

/// The test object.
pub struct Probe {
    state: State,
    env: Env,
    in_memory: Cell<u64>,
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl DurableObject for Probe {
    fn new(state: State, env: Env) -> Self {
        Probe {
            state,
            env,
            in_memory: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let path = req.path().to_owned();
        let (route, arg) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.trim_start_matches('/'), ""));
        match (req.method.as_str(), route) {
            ("GET", "kv") => Ok(match storage.get_bytes(arg)? {
                Some(v) => Response {
                    status: 200,
                    headers: vec![],
                    body: v,
                    websocket: None,
                },
                None => Response::text("not found").with_status(404),
            }),
            ("PUT", "kv") => {
                storage.put_bytes(arg, &req.body)?;
                Ok(Response::text("ok"))
            }
            ("DELETE", "kv") => Ok(Response::text(storage.delete(arg)?.to_string())),
            ("GET", "fetch-from") => {
                let mut parts = arg.splitn(3, '/');
                let (binding, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let query = req.query().map(|q| format!("?{q}")).unwrap_or_default();
                let url = format!("http://object/{}{query}", parts.next().unwrap_or(""));
                let stub = self.env.namespace(binding)?.get_by_name(name);
                stub.fetch(Request::get(&url)).await
            }
            ("GET", "from-js") => {
                let v: FromJs = storage
                    .get("for-rust")?
                    .ok_or_else(|| Error::new("nothing under for-rust"))?;
                Response::json(&serde_json::json!({
                    "date": v.date,
                    "map": v.map,
                    "numbers": v.numbers,
                    "set": v.set,
                    "big": v.big.to_string(),
                    "bytes": v.bytes.into_vec(),
                    "pixels": v.pixels.into_vec(),
                    "missing": v.missing,
                    "nan": v.nan.is_nan(),
                    "negative_zero": v.negative_zero == 0.0 && v.negative_zero.is_sign_negative(),
                    "pattern": v.pattern,
                    "error": v.error,
                }))
            }
            ("GET", "list") => {
                let options = ListOptions {
                    start: query_param(&req, "start"),
                    start_after: query_param(&req, "start_after"),
                    end: query_param(&req, "end"),
                    prefix: query_param(&req, "prefix"),
                    reverse: query_param(&req, "reverse").is_some(),
                    limit: query_param(&req, "limit").and_then(|l| l.parse().ok()),
                };
                let entries: Vec<(String, String)> = storage
                    .list_bytes(options)?
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                Response::json(&entries)
            }
            ("POST", "ops") => {
                let ops: Vec<ops::Op> = req.json()?;
                Response::json(&ops::run(&storage, &ops))
            }
            ("GET", "whoami") => Response::json(&serde_json::json!({
                "id": self.state.id(),
                "name": self.state.name(),
                "class": self.state.class_name(),
            })),
            ("GET", "var") => Ok(Response::text(self.env.var(arg).unwrap_or_default())),
            ("GET", "relay") => {
                // relay/b,c: this probe calls b's `relay`, which calls c's:
                // the names the call visited, as JSON.
                let path: Vec<String> = arg
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                Response::json(&self.relay(path).await?)
            }
            ("GET", "count") => {
                self.in_memory.set(self.in_memory.get() + 1);
                let stored = storage.get::<u64>("count")?.unwrap_or(0) + 1;
                storage.put("count", &stored)?;
                Ok(Response::text(format!(
                    "{} {}",
                    self.in_memory.get(),
                    stored
                )))
            }
            ("PUT", "put-then-panic") => {
                storage.put_bytes(arg, &req.body)?;
                panic!("probe panic after writing {arg}");
            }
            ("POST", "fetch") => outbound::fetch(&storage, &req).await,
            ("GET", "sleep") => outbound::sleep_route(arg).await,
            ("GET", "later") => outbound::later(storage, arg),
            ("GET", "panic") => panic!("probe panic on request"),
            ("GET", "print") => {
                let n: u32 = arg.parse().map_err(|_| Error::new("print/<n>"))?;
                for i in 1..=n {
                    println!("probe line {i}");
                }
                Ok(Response::text(format!("printed {n}")))
            }
            ("PUT", "put-then-abort") => {
                storage.put_bytes(arg, &req.body)?;
                self.state.abort("the probe gave up")
            }
            ("GET", "error") => Err(Error::new("probe error on request")),
            ("GET", "spin") => {
                let ms: i64 = arg.parse().map_err(|_| Error::new("spin/<ms>"))?;
                let start = now_ms();
                spin_until(start + ms);
                Response::json(&json!({"start": start, "end": now_ms()}))
            }
            ("GET", "alloc") => {
                let mib: usize = arg.parse().map_err(|_| Error::new("alloc/<MiB>"))?;
                let block = std::hint::black_box(vec![1u8; mib << 20]);
                Ok(Response::text(format!(
                    "allocated {} MiB",
                    block.len() >> 20
                )))
            }
            ("GET", "framing") => Ok(Response {
                status: 200,
                headers: vec![
                    ("content-length".into(), "2".into()),
                    ("transfer-encoding".into(), "chunked".into()),
                ],
                body: b"hello".to_vec(),
                websocket: None,
            }),
            ("GET", "websocket") => sockets::accept(&self.state, &req),
            ("GET", "loop") => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => Ok(Response::text(format!("no route {} {path}", req.method)).with_status(404)),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
        sockets::message(&self.state, ws, message)
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: u16,
        _reason: String,
        was_clean: bool,
    ) -> Result<()> {
        sockets::note_end(&self.state, ws, &format!("{code}:{was_clean}"))
    }

    async fn websocket_error(&self, ws: WebSocket, error: String) -> Result<()> {
        sockets::note_end(&self.state, ws, &format!("error:{error}"))
    }

    async fn alarm(&self, info: AlarmInfo) -> Result<()> {
        let storage = self.state.storage();
        let mut log: Vec<Value> = storage.get("alarm-log")?.unwrap_or_default();
        let mut entry = json!({
            "retry_count": info.retry_count,
            "is_retry": info.is_retry,
            "at": now_ms(),
            "alarm": storage.get_alarm()?,
        });
        let plan: Vec<String> = storage.get("alarm-plan")?.unwrap_or_default();
        let action = plan
            .get(info.retry_count as usize)
            .map_or("ok", String::as_str);
        let (verb, arg) = action.split_once(':').unwrap_or((action, ""));
        let result = match verb {
            "ok" => Ok(()),
            "error" => Err(Error::new(format!(
                "probe alarm error #{}",
                info.retry_count
            ))),
            "panic" => panic!("probe alarm panic #{}", info.retry_count),
            "delete" => {
                storage.delete_alarm()?;
                Err(Error::new("probe alarm error after delete_alarm"))
            }
            "again" => {
                let ms: i64 = arg.parse().map_err(|_| Error::new("again:<ms>"))?;
                storage.set_alarm(now_ms() + ms)?;
                Ok(())
            }
            "sql" => {
                let sql = storage.sql();
                sql.exec("CREATE TABLE IF NOT EXISTS done (item TEXT)", params![])?;
                let pending = storage.list_bytes(ListOptions {
                    prefix: Some("pending:".into()),
                    ..ListOptions::default()
                })?;
                for (key, value) in &pending {
                    sql.exec(
                        "INSERT INTO done (item) VALUES (?)",
                        params![String::from_utf8_lossy(value).into_owned()],
                    )?;
                    storage.delete(key)?;
                }
                Ok(())
            }
            "spin" => {
                let ms: i64 = arg.parse().map_err(|_| Error::new("spin:<ms>"))?;
                spin_until(now_ms() + ms);
                entry["end"] = json!(now_ms());
                Ok(())
            }
            "ops" => {
                let ops: Vec<ops::Op> = storage.get("alarm-ops")?.unwrap_or_default();
                entry["ops"] = json!(ops::run(&storage, &ops));
                Ok(())
            }
            other => Err(Error::new(format!("unknown alarm plan step {other:?}"))),
        };
        log.push(entry);
        storage.put("alarm-log", &log)?;
        result
    }

    dohost_sdk::methods!(
        increment,
        add,
        echo,
        whoami,
        fail,
        panic,
        spin,
        memory,
        relay,
        relay_blocked,
        forward,
        fan_out,
        ids,
        check_id
    );
}

fn spin_until(end: i64) {
    while now_ms() < end {
        std::hint::black_box(0);
    }
}

/// A second class in the same component: greets with a `[vars]` value and
/// remembers how many times it did; `?spin=<ms>` first keeps it busy.
pub struct Greeter {
    state: State,
    env: Env,
}

impl DurableObject for Greeter {
    fn new(state: State, env: Env) -> Self {
        Greeter { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if let Some(ms) = req.query().and_then(|q| q.strip_prefix("spin=")) {
            let ms: i64 = ms.parse().map_err(|_| Error::new("spin=<ms>"))?;
            spin_until(now_ms() + ms);
        }
        let storage = self.state.storage();
        let times = storage.get::<u64>("greeted")?.unwrap_or(0) + 1;
        storage.put("greeted", &times)?;
        let greeting = self.env.var("GREETING").unwrap_or_else(|| "hi".into());
        Ok(Response::text(format!(
            "{greeting} #{times} from {}",
            self.state.class_name()
        )))
    }
}

dohost_sdk::export_objects!(Probe, Greeter);

/// The value the JavaScript API tour stores under `for-rust`, as Rust reads
/// structured clone (see `dohost_sdk::value`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FromJs {
    /// A `Date`: seconds since 1970.
    date: f64,
    map: std::collections::BTreeMap<String, u32>,
    numbers: std::collections::BTreeMap<u32, String>,
    set: Vec<u32>,
    big: i128,
    bytes: serde_bytes::ByteBuf,
    pixels: serde_bytes::ByteBuf,
    missing: Option<u32>,
    nan: f64,
    negative_zero: f64,
    pattern: (String, String),
    error: (String, String, String, Option<String>),
}
