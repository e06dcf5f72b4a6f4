//! `dohost:object/body`: streamed response bodies (see
//! [`crate::runtime`]'s `body` module), for objects and workers alike.

use crate::runtime::Calls;
use crate::runtime::bindings::object::dohost::object::body::Host;

impl Host for Calls<'_> {
    fn open(&mut self) -> wasmtime::Result<u64> {
        Ok(self.tasks.bodies.open())
    }

    fn start_write(&mut self, stream: u64, chunk: Vec<u8>) -> wasmtime::Result<u64> {
        let write = self.tasks.bodies.write(stream, chunk);
        Ok(self.tasks.start(write))
    }

    fn close(&mut self, stream: u64, error: Option<String>) -> wasmtime::Result<()> {
        if let Some(closing) = self.tasks.bodies.close(stream, error) {
            self.tasks.closing.push(closing);
        }
        Ok(())
    }

    fn start_read(&mut self, stream: u64) -> wasmtime::Result<u64> {
        let read = self.tasks.bodies.read(stream);
        Ok(self.tasks.start(read))
    }

    fn discard(&mut self, stream: u64) -> wasmtime::Result<()> {
        self.tasks.bodies.discard(stream);
        Ok(())
    }
}
