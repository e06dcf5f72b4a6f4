//! The `dohost` binary's own parts, which the library does not have: the
//! console (progress on a terminal, plain lines elsewhere), `--watch`, and
//! `dohost new`.

pub mod console;
pub mod new;
pub mod watch;
