//! One `tracing` span per event an object runs, with where its time went.
//!
//! The span is `event` at debug level with target `dohost::event`, so it
//! costs next to nothing unless a subscriber asks for it
//! (`RUST_LOG=dohost::event=debug`, or the OpenTelemetry export of
//! `[observability] otlp_endpoint`). Its fields: `binding`, `class`,
//! `object` (the id), `kind` (fetch, call, target, alarm, websocket,
//! constructor), and the times, in microseconds:
//! - `input_gate_us`: from the event's arrival in the mailbox to its first
//!   turn (other events' turns ran, the object activated, or it kept
//!   events out);
//! - `run_us` over `turns`: the time the guest ran the event's turns (the
//!   time between them the event awaited calls and fetches);
//! - `output_gate_us`: from the answer to the durability of the writes it
//!   may reflect, when the response may leave.
//!
//! The span ends when the output gate opens; what the guest logs while a
//! turn runs is inside it.

use std::time::{Duration, Instant};

use tracing::Span;
use tracing::field::Empty;

use super::instructions;
use super::object::Identity;
use crate::telemetry::EVENT_TARGET;
use dohost_store::{Gate, pass_gate};

/// An event's span and the time its turns took so far (recorded once).
pub(crate) struct EventTrace {
    span: Span,
    run: Duration,
    turns: u32,
    /// What the event is, for the instruction count; `None` when not
    /// counting (see instructions.rs).
    counted: Option<String>,
    /// The wasm instructions its turns ran, when counting.
    instructions: u64,
}

impl EventTrace {
    /// The span of an event of `kind` for the object `identity`, which
    /// arrived at `sent` (`None`: it did not come through the mailbox).
    pub(crate) fn open(identity: &Identity, kind: &'static str, sent: Option<Instant>) -> Self {
        let span = tracing::debug_span!(
            target: EVENT_TARGET,
            "event",
            binding = %identity.binding,
            class = %identity.class,
            object = %identity.id_hex,
            kind,
            input_gate_us = Empty,
            run_us = Empty,
            turns = Empty,
            output_gate_us = Empty,
        );
        if let Some(sent) = sent.filter(|_| !span.is_disabled()) {
            span.record("input_gate_us", micros(sent.elapsed()));
        }
        let counted = instructions::counting()
            .then(|| format!("{} {} {kind}", identity.binding, identity.class));
        EventTrace {
            span,
            run: Duration::ZERO,
            turns: 0,
            counted,
            instructions: 0,
        }
    }

    /// The span, for what runs in the event's turns.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// When a turn begins; `None` when no one traces.
    pub(crate) fn turn_began(&self) -> Option<Instant> {
        (!self.span.is_disabled()).then(Instant::now)
    }

    /// Counts a turn that began at `began` and ran `instructions` wasm
    /// instructions (0 when not counting).
    pub(crate) fn turn_ended(&mut self, began: Option<Instant>, instructions: u64) {
        self.instructions += instructions;
        if let Some(began) = began {
            self.run += began.elapsed();
            self.turns += 1;
        }
    }

    /// Records the event's turns; the span ends once `gate` opens, in a
    /// task of `spawner`'s.
    pub(crate) fn answered(mut self, gate: Option<Gate>, spawner: &tokio_util::task::TaskTracker) {
        self.record_turns();
        if let Some(what) = self.counted.take() {
            instructions::report(&what, self.instructions);
        }
        if self.span.is_disabled() {
            return;
        }
        let span = self.span.clone();
        let Some(gate) = gate else {
            span.record("output_gate_us", 0);
            return;
        };
        let began = Instant::now();
        spawner.spawn(async move {
            let _ = pass_gate(Some(gate)).await;
            span.record("output_gate_us", micros(began.elapsed()));
        });
    }
}

impl EventTrace {
    fn record_turns(&mut self) {
        if !self.span.is_disabled() && self.turns > 0 {
            self.span.record("run_us", micros(self.run));
            self.span
                .record("turns", i64::from(std::mem::take(&mut self.turns)));
        }
    }
}

impl Drop for EventTrace {
    /// An event that failed without an answer (a trap, its wall-clock
    /// limit) still shows its turns.
    fn drop(&mut self) {
        self.record_turns();
    }
}

/// Microseconds as an `i64`: OpenTelemetry's integer attributes are
/// signed (an unsigned field would go out as text).
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
