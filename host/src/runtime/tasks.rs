//! Tasks: the events a guest instance runs and the operations they wait on
//! (see `wit/events.wit`).
//!
//! An event runs in *turns*: the export call that starts it, and each
//! `resume` the host makes when one of the operations it waits on
//! completes. During a turn the guest's imports record, in the store's
//! [`Tasks`], which events it finished and which operations it started;
//! when the turn returns, the driver (the object actor, or the worker
//! pool) answers the finished events and launches the started operations
//! into its [`InFlight`], behind the output gate of the turn's writes.
//! Between turns an object may take its next event: that is Cloudflare's
//! input gate, open while an event waits on anything but storage.
//!
//! **Limits.** Each event may start `[outbound] max_subrequests`
//! operations that reach another object or the outside world, at most
//! `[outbound] max_connections` outbound requests of it are in flight at
//! once (more wait their turn, as on Cloudflare), and every operation ends
//! with its event's wall-clock limit.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::bindings::object::dohost::object::events::Outcome;
use super::body::{Bodies, Closing, GuestResponse};
use super::forwards::Kept;
use crate::settings::Settings;
use dohost_store::{Gate, pass_gate};

/// An event's number, unique within its instance.
pub(crate) type EventId = u64;

/// An operation's number, unique within its instance.
pub(crate) type OpId = u64;

/// How an event ended, as the guest reported it.
pub(crate) enum Finished {
    Fetch(Result<GuestResponse, String>),
    Call(Result<Vec<u8>, String>),
    Alarm(Result<(), String>),
    Socket(Result<(), String>),
}

impl Finished {
    /// Whether the event answered with a streamed body: it then lives while
    /// the body's reader does, as a request on Cloudflare lives while its
    /// client is connected, and its operations are not cut at the
    /// wall-clock limit ([`open_ended`]).
    pub(crate) fn streams(&self) -> bool {
        matches!(self, Finished::Fetch(Ok(response)) if response.stream.is_some())
    }
}

/// The deadline of an event that answered with a streamed body: none to
/// speak of (a year).
pub(crate) fn open_ended() -> Instant {
    Instant::now() + std::time::Duration::from_secs(365 * 86_400)
}

/// An operation a turn started, not yet launched.
pub(crate) struct Started {
    pub(crate) op: OpId,
    pub(crate) event: EventId,
    pub(crate) run: BoxFuture<'static, Outcome>,
}

/// What an event may still spend on operations.
struct Budget {
    /// Subrequests it may still start.
    subrequests: u32,
    /// Its outbound requests in flight.
    connections: Arc<Semaphore>,
}

/// What the guest's imports record during turns: kept in the store data.
#[derive(Default)]
pub(crate) struct Tasks {
    /// The event the running turn belongs to.
    pub(crate) event: EventId,
    next_op: OpId,
    /// Events finished in the running turn.
    pub(crate) finished: Vec<(EventId, Finished)>,
    /// Operations started in the running turn.
    pub(crate) started: Vec<Started>,
    /// Operations the guest gave up in the running turn.
    pub(crate) cancelled: Vec<OpId>,
    /// `block-concurrency` calls not yet matched by `allow-concurrency`.
    pub(crate) blocked: u32,
    /// Why `blockConcurrencyWhile` failed, if it did: the object resets.
    pub(crate) failure: Option<String>,
    /// The instance's streamed bodies.
    pub(crate) bodies: Bodies,
    /// Bodies closed in the running turn, to end behind its gate.
    pub(crate) closing: Vec<Closing>,
    /// Requests and responses the guest may hand on by number.
    pub(crate) kept: Kept,
    budgets: HashMap<EventId, Budget>,
}

impl Tasks {
    /// Opens event `event`'s budget.
    pub(crate) fn open(&mut self, event: EventId, settings: &Settings) {
        self.budgets.insert(
            event,
            Budget {
                subrequests: settings.outbound.max_subrequests,
                connections: Arc::new(Semaphore::new(settings.outbound.max_connections as usize)),
            },
        );
    }

    /// Forgets event `event`'s budget: it ended and nothing of it runs.
    pub(crate) fn close(&mut self, event: EventId) {
        self.budgets.remove(&event);
        self.kept.end(event);
    }

    /// Records `run` as an operation of the running turn's event; its
    /// number.
    pub(crate) fn start(&mut self, run: BoxFuture<'static, Outcome>) -> OpId {
        self.next_op += 1;
        let op = self.next_op;
        let event = self.event;
        self.started.push(Started { op, event, run });
        op
    }

    /// Takes one subrequest from the running turn's event: its connection
    /// limit, or why it may start no more.
    pub(crate) fn subrequest(&mut self, settings: &Settings) -> Result<Arc<Semaphore>, String> {
        let budget = self.budgets.get_mut(&self.event).ok_or_else(|| {
            "the event this operation belongs to has ended and its wall-clock time is over"
                .to_owned()
        })?;
        if budget.subrequests == 0 {
            return Err(format!(
                "the event has made {} subrequests, its limit ([outbound] max_subrequests)",
                settings.outbound.max_subrequests
            ));
        }
        budget.subrequests -= 1;
        Ok(budget.connections.clone())
    }
}

/// The operations a driver has in flight, each with its event.
#[derive(Default)]
pub(crate) struct InFlight {
    running: FuturesUnordered<BoxFuture<'static, Option<(OpId, EventId, Outcome)>>>,
    aborts: HashMap<OpId, (EventId, AbortHandle)>,
}

impl InFlight {
    /// Launches `started` once `gate` (the commit of the writes made before
    /// it) is passed; it ends at `deadline` at the latest.
    pub(crate) fn launch(
        &mut self,
        started: Started,
        gate: Option<Gate>,
        deadline: Instant,
        wall: std::time::Duration,
    ) {
        let Started { op, event, run } = started;
        let (abort, registration) = AbortHandle::new_pair();
        self.aborts.insert(op, (event, abort));
        let gated = async move {
            if let Err(e) = pass_gate(gate).await {
                return Outcome::Cancelled(format!(
                    "not sent: the writes made before it could not be made durable ({e})"
                ));
            }
            run.await
        };
        let limited = async move {
            tokio::time::timeout_at(deadline, gated)
                .await
                .unwrap_or_else(|_| {
                    Outcome::Cancelled(format!(
                        "the event passed its wall-clock time limit of {} ms ([limits] wall_ms)",
                        wall.as_millis()
                    ))
                })
        };
        self.running.push(Box::pin(async move {
            let outcome = Abortable::new(limited, registration).await.ok()?;
            Some((op, event, outcome))
        }));
    }

    /// Gives up operation `op`, if it still runs.
    pub(crate) fn cancel(&mut self, op: OpId) {
        if let Some((_, abort)) = self.aborts.remove(&op) {
            abort.abort();
        }
    }

    /// Whether nothing is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether an operation of `event` is in flight.
    pub(crate) fn has_event(&self, event: EventId) -> bool {
        self.aborts.values().any(|(e, _)| *e == event)
    }

    /// The next operation to complete; pending forever when none is in
    /// flight (for `select!`).
    pub(crate) async fn next(&mut self) -> (OpId, EventId, Outcome) {
        loop {
            match self.running.next().await {
                Some(Some((op, event, outcome))) => {
                    self.aborts.remove(&op);
                    return (op, event, outcome);
                }
                // Cancelled: its outcome goes nowhere.
                Some(None) => {}
                None => std::future::pending().await,
            }
        }
    }

    /// Drops everything in flight (the instance is gone).
    pub(crate) fn clear(&mut self) {
        for (_, abort) in self.aborts.values() {
            abort.abort();
        }
        self.aborts.clear();
        self.running = FuturesUnordered::new();
    }
}
