//! The probe's RPC methods (`stub.call`), for the call tests:
//!
//! - `increment()` and `add(by)`: a stored counter, returning the new value;
//!   `add` fails for `by == 0`.
//! - `echo(value)`: the value back; `whoami()`: `[id, name]`.
//! - `fail(message)`: an error; `panic()`: a trap; `spin(ms)`: busy for `ms`.
//! - `memory()`: an in-memory counter (starts again after a reset).
//! - `relay(path)`: calls `relay` on the PROBE named `path[0]` with the rest
//!   of the path and returns the names visited, this one first.
//! - `forward(binding, name, method, args)`: calls `method` on the object
//!   `name` of `binding` with the JSON array `args` and answers
//!   `{"ok": result}` or `{"err": {message, remote, retryable, overloaded}}`.
//! - `fan_out(prefix, n)`: calls `increment` on PROBE objects `<prefix>0` ..
//!   `<prefix><n-1>` and returns the sum of their answers.
//! - `ids(binding, name)`: `{from_name, again, unique}` ids minted there;
//!   `check_id(binding, id)`: `id-from-string` of `id` there.

use dohost_sdk::{Error, Result, now_ms};
use serde_json::{Value, json};

use crate::{Probe, spin_until};

impl Probe {
    pub(crate) fn increment(&mut self) -> Result<u64> {
        self.add(1)
    }

    pub(crate) fn add(&mut self, by: u64) -> Result<u64> {
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

    pub(crate) fn fail(&mut self, message: String) -> Result<()> {
        Err(Error::new(message))
    }

    pub(crate) fn panic(&mut self) {
        panic!("probe panic in an RPC method");
    }

    pub(crate) fn spin(&mut self, ms: i64) -> i64 {
        spin_until(now_ms() + ms);
        ms
    }

    pub(crate) fn memory(&mut self) -> u64 {
        self.in_memory += 1;
        self.in_memory
    }

    pub(crate) fn relay(&mut self, path: Vec<String>) -> Result<Vec<String>> {
        let me = self.state.name().unwrap_or_else(|| self.state.id());
        let Some((next, rest)) = path.split_first() else {
            return Ok(vec![me]);
        };
        let stub = self.env.namespace("PROBE")?.get_by_name(next);
        let mut visited: Vec<String> = stub.call("relay", &(rest,))?;
        visited.insert(0, me);
        Ok(visited)
    }

    pub(crate) fn forward(
        &mut self,
        binding: String,
        name: String,
        method: String,
        args: Value,
    ) -> Result<Value> {
        let stub = self.env.namespace(&binding)?.get_by_name(&name);
        Ok(match stub.call_json(&method, &args.to_string()) {
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

    pub(crate) fn fan_out(&mut self, prefix: String, n: u32) -> Result<u64> {
        let probes = self.env.namespace("PROBE")?;
        let mut sum = 0;
        for i in 0..n {
            sum += probes
                .get_by_name(&format!("{prefix}{i}"))
                .call::<u64>("increment", &())?;
        }
        Ok(sum)
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
