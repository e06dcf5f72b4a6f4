//! The metrics of one binding's objects (see [`crate::metrics`] for the
//! names), as handles registered once per namespace so that recording on
//! the hot path is an atomic add.

use metrics::{Counter, Histogram, counter, histogram};

use crate::metrics::{
    ACTIVATION_DURATION, ACTIVATIONS, ALARMS, ALARMS_DUE, EVENTS, EVICTIONS, OVERLOADS,
};

/// What the objects of one binding count.
pub(crate) struct BindingCounts {
    binding: String,
    pub(crate) fetches: Counter,
    pub(crate) calls: Counter,
    pub(crate) target_calls: Counter,
    pub(crate) alarms: Counter,
    /// Alarms that came due and went to their object's mailbox.
    pub(crate) alarms_due: Counter,
    pub(crate) socket_events: Counter,
    pub(crate) activations: Counter,
    pub(crate) activation_time: Histogram,
    pub(crate) idle_evictions: Counter,
    pub(crate) room_evictions: Counter,
    pub(crate) overloads: Counter,
    pub(crate) alarms_ok: Counter,
    /// Failed, and set again for a retry.
    pub(crate) alarms_retried: Counter,
    /// Failed for the last time: no retry is left.
    pub(crate) alarms_dropped: Counter,
    /// Failed after the handler set or deleted the alarm itself.
    pub(crate) alarms_failed: Counter,
}

impl BindingCounts {
    pub(crate) fn new(binding: &str) -> BindingCounts {
        let b = || binding.to_owned();
        let event = |kind: &'static str| counter!(EVENTS, "binding" => b(), "kind" => kind);
        BindingCounts {
            binding: b(),
            fetches: event("fetch"),
            calls: event("call"),
            target_calls: event("target"),
            alarms: event("alarm"),
            alarms_due: counter!(ALARMS_DUE, "binding" => b()),
            socket_events: event("websocket"),
            activations: counter!(ACTIVATIONS, "binding" => b()),
            activation_time: histogram!(ACTIVATION_DURATION, "binding" => b()),
            idle_evictions: counter!(EVICTIONS, "binding" => b(), "reason" => "idle"),
            room_evictions: counter!(EVICTIONS, "binding" => b(), "reason" => "room"),
            overloads: counter!(OVERLOADS, "binding" => b()),
            alarms_ok: counter!(ALARMS, "binding" => b(), "outcome" => "ok"),
            alarms_retried: counter!(ALARMS, "binding" => b(), "outcome" => "retried"),
            alarms_dropped: counter!(ALARMS, "binding" => b(), "outcome" => "dropped"),
            alarms_failed: counter!(ALARMS, "binding" => b(), "outcome" => "error"),
        }
    }

    /// Counts a reset of one of the binding's objects, for `cause`.
    pub(crate) fn reset(&self, cause: &'static str) {
        counter!(crate::metrics::RESETS, "binding" => self.binding.clone(), "cause" => cause)
            .increment(1);
    }
}
