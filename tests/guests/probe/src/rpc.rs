//! The probe's RPC methods (`stub.call`), for the call tests:
//!
//! - `increment()` and `add(by)`: a stored counter, returning the new value;
//!   `add` fails for `by == 0`.
//! - `echo(value)`: the value back; `whoami()`: `[id, name]`.
//! - `fail(message)`: an error; `panic()`: a trap; `spin(ms)`: busy for `ms`.
//! - `memory()`: an in-memory counter (starts again after a reset).
//! - `relay(path)`: calls `relay` on the PROBE named `path[0]` with the rest
//!   of the path and returns the names visited, this one first.
//! - `relay_blocked(path)`: `relay` inside `block_concurrency_while`, so
//!   no other event enters this object until it returns.
//! - `forward(binding, name, method, args)`: calls `method` on the object
//!   `name` of `binding` with the JSON array `args` and answers
//!   `{"ok": result}` or `{"err": {message, remote, retryable, overloaded}}`.
//! - `fan_out(prefix, n)`: calls `increment` on PROBE objects `<prefix>0` ..
//!   `<prefix><n-1>`, all at once, and returns the sum of their answers.
//! - `ids(binding, name)`: `{from_name, again, unique}` ids minted there;
//!   `check_id(binding, id)`: `id-from-string` of `id` there.

use dohost_sdk::{Error, Result, future, now_ms};
use serde_json::{Value, json};

use crate::{Probe, spin_until};

impl Probe {
    pub(crate) fn increment(&self) -> Result<u64> {
        self.add(1)
    }

    pub(crate) fn add(&self, by: u64) -> Result<u64> {
        if by == 0 {
            return Err(Error::new("add: by must not be 0"));
        }
        let storage = self.state.storage();
        let count = storage.get::<u64>("rpc-count")?.unwrap_or(0) + by;
        storage.put("rpc-count", &count)?;
        Ok(count)
    }

    pub(crate) fn echo(&self, value: Value) -> Value {
        value
    }

    pub(crate) fn whoami(&self) -> (String, Option<String>) {
        (self.state.id(), self.state.name())
    }

    pub(crate) fn fail(&self, message: String) -> Result<()> {
        Err(Error::new(message))
    }

    pub(crate) fn panic(&self) {
        panic!("probe panic in an RPC method");
    }

    pub(crate) fn spin(&self, ms: i64) -> i64 {
        spin_until(now_ms() + ms);
        ms
    }

    pub(crate) fn memory(&self) -> u64 {
        self.in_memory.set(self.in_memory.get() + 1);
        self.in_memory.get()
    }

    pub(crate) async fn relay(&self, path: Vec<String>) -> Result<Vec<String>> {
        let me = self.state.name().unwrap_or_else(|| self.state.id());
        let Some((next, rest)) = path.split_first() else {
            return Ok(vec![me]);
        };
        let stub = self.env.namespace("PROBE")?.get_by_name(next);
        let mut visited: Vec<String> = stub.call("relay", &(rest,)).await?;
        visited.insert(0, me);
        Ok(visited)
    }

    pub(crate) async fn relay_blocked(&self, path: Vec<String>) -> Result<Vec<String>> {
        self.state.block_concurrency_while(self.relay(path)).await
    }

    pub(crate) async fn forward(
        &self,
        binding: String,
        name: String,
        method: String,
        args: Value,
    ) -> Result<Value> {
        let stub = self.env.namespace(&binding)?.get_by_name(&name);
        Ok(match stub.call_json(&method, &args.to_string()).await {
            Ok(result) => {
                json!({"ok": serde_json::from_str::<Value>(&result).map_err(|e| Error::new(e.to_string()))?})
            }
            Err(e) => json!({"err": {
                "message": e.message(),
                "remote": e.is_remote(),
                "retryable": e.is_retryable(),
                "overloaded": e.is_overloaded(),
            }}),
        })
    }

    pub(crate) async fn fan_out(&self, prefix: String, n: u32) -> Result<u64> {
        let probes = self.env.namespace("PROBE")?;
        let stubs: Vec<_> = (0..n)
            .map(|i| probes.get_by_name(&format!("{prefix}{i}")))
            .collect();
        let counts =
            future::try_join_all(stubs.iter().map(|s| s.call::<u64>("increment", &()))).await?;
        Ok(counts.iter().sum())
    }

    pub(crate) fn ids(&self, binding: String, name: String) -> Result<Value> {
        let ns = self.env.namespace(&binding)?;
        Ok(json!({
            "from_name": ns.id_from_name(&name).to_string(),
            "again": ns.id_from_name(&name).to_string(),
            "unique": ns.new_unique_id().to_string(),
        }))
    }

    pub(crate) fn check_id(&self, binding: String, id: String) -> Result<String> {
        Ok(self
            .env
            .namespace(&binding)?
            .id_from_string(&id)?
            .to_string())
    }
}
