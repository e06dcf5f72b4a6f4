//! Counting the wasm instructions each event runs, for measuring.
//!
//! With `DOHOST_FUEL=1` in its environment the host turns on wasmtime's
//! fuel (`Config::consume_fuel`), gives every store all the fuel there is,
//! and logs what each event's turns used, at info level with target
//! `dohost::instructions`:
//!
//! ```text
//! INFO dohost::instructions: worker fetch: 1190342 wasm instructions
//! INFO dohost::instructions: COUNTER Counter fetch: 617023 wasm instructions
//! ```
//!
//! Fuel counts nearly every wasm instruction once, so the count is the
//! same on every run of the same code, where timings on a shared machine
//! are not: it is how the work per event of a JavaScript guest (an
//! interpreter running in wasm) is compared between builds
//! (`bench/instructions.sh`). Counting makes the compiled code slower and
//! changes it, so compiled components are cached apart; it is off by
//! default, and then costs a flag test per turn.

use std::sync::LazyLock;

/// The environment variable that turns counting on.
pub(crate) const FUEL_VAR: &str = "DOHOST_FUEL";

/// The log target of the counts.
pub(crate) const TARGET: &str = "dohost::instructions";

/// Whether this process counts instructions (see the module's docs).
pub(crate) fn counting() -> bool {
    static ON: LazyLock<bool> =
        LazyLock::new(|| std::env::var_os(FUEL_VAR).is_some_and(|v| !v.is_empty() && v != "0"));
    *ON
}

/// The wasm instructions the guest of `store` has run so far; 0 when not
/// counting.
pub(crate) fn run_so_far<T>(store: &wasmtime::Store<T>) -> u64 {
    if !counting() {
        return 0;
    }
    u64::MAX - store.get_fuel().unwrap_or(u64::MAX)
}

/// Logs that the event `what` (e.g. "COUNTER Counter fetch") ran
/// `instructions` wasm instructions.
pub(crate) fn report(what: &str, instructions: u64) {
    tracing::info!(target: TARGET, "{what}: {instructions} wasm instructions");
}
