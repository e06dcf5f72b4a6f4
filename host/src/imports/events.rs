//! `dohost:object/events`: how a guest ends its events, starts timers,
//! gives up operations and keeps other events out (see
//! [`crate::runtime::tasks`](crate::runtime)).

use crate::runtime::bindings::WitResponse;
use crate::runtime::bindings::object::dohost::object::events::Host;
use crate::runtime::tasks::Finished;
use crate::runtime::{Calls, GuestResponse};

impl Host for Calls<'_> {
    fn finish_fetch(
        &mut self,
        event: u64,
        result: Result<WitResponse, String>,
    ) -> wasmtime::Result<()> {
        let bodies = &self.tasks.bodies;
        let result = result.and_then(|record| GuestResponse::returned(record, bodies));
        self.tasks.finished.push((event, Finished::Fetch(result)));
        Ok(())
    }

    fn finish_fetch_forward(&mut self, event: u64, op: u64) -> wasmtime::Result<bool> {
        let Some(record) = self.tasks.kept.take_response(op) else {
            return Ok(false);
        };
        let result = GuestResponse::returned(record, &self.tasks.bodies);
        self.tasks.finished.push((event, Finished::Fetch(result)));
        Ok(true)
    }

    fn finish_call(&mut self, event: u64, result: Result<Vec<u8>, String>) -> wasmtime::Result<()> {
        self.tasks.finished.push((event, Finished::Call(result)));
        Ok(())
    }

    fn finish_alarm(&mut self, event: u64, result: Result<(), String>) -> wasmtime::Result<()> {
        self.tasks.finished.push((event, Finished::Alarm(result)));
        Ok(())
    }

    fn finish_socket(&mut self, event: u64, result: Result<(), String>) -> wasmtime::Result<()> {
        self.tasks.finished.push((event, Finished::Socket(result)));
        Ok(())
    }

    fn start_sleep(&mut self, ms: u64) -> wasmtime::Result<u64> {
        Ok(Calls::start_sleep(self, ms))
    }

    fn cancel(&mut self, op: u64) -> wasmtime::Result<()> {
        self.tasks.cancelled.push(op);
        Ok(())
    }

    fn block_concurrency(&mut self) -> wasmtime::Result<()> {
        self.tasks.blocked += 1;
        Ok(())
    }

    fn allow_concurrency(&mut self, error: Option<String>) -> wasmtime::Result<()> {
        self.tasks.blocked = self.tasks.blocked.saturating_sub(1);
        if let Some(error) = error {
            self.tasks.failure.get_or_insert(error);
        }
        Ok(())
    }
}
