//! # Progress of long work
//!
//! The first build of a guest (cargo for `wasm32-wasip2`, `npm install` of
//! the JavaScript build tools, componentize-js) and compiling a component to
//! native code take seconds to minutes; later runs find them cached. The
//! library reports each such step as a [`Task`]: a `tracing` span with the
//! target [`TARGET`] and a `task` field saying what it does, an event in that
//! span for each line a build tool prints (its `line` field), and one event
//! with an `outcome` and the `elapsed_ms` when the step succeeds. A step that
//! fails closes its span without an outcome; its error says why.
//!
//! The library draws nothing: the `dohost` binary renders these spans as a
//! progress line when stderr is a terminal and as plain log lines otherwise,
//! and an embedder's subscriber sees them as any other span.

use std::fmt::Display;
use std::time::Instant;

/// The `tracing` target of progress spans and events.
pub const TARGET: &str = "dohost::progress";

/// One step of long work, reported from start to end (see the module
/// documentation). Dropping it without [`Task::finish`] reports a step that
/// did not complete.
#[derive(Debug)]
pub struct Task {
    span: tracing::Span,
    started: Instant,
}

impl Task {
    /// Starts reporting the step `task`, e.g. "compiling binding COUNTER to
    /// native code".
    pub fn start(task: impl Display) -> Task {
        Task {
            span: tracing::info_span!(target: TARGET, "task", task = %task),
            started: Instant::now(),
        }
    }

    /// Reports a line a tool printed while doing the step.
    pub fn line(&self, line: &str) {
        tracing::info!(target: TARGET, parent: &self.span, line = %line);
    }

    /// Ends the step, reporting what it produced and how long it took.
    pub fn finish(self, outcome: impl Display) {
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(target: TARGET, parent: &self.span, outcome = %outcome, elapsed_ms);
    }
}
