//! The `dohost` binary's own parts, which the library does not have: the
//! console (progress on a terminal, plain lines elsewhere), `--watch`,
//! `dohost new`, and moving objects and databases (`transfer`).

pub mod console;
pub mod new;
pub mod transfer;
pub mod watch;
