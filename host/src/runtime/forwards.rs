//! What a guest hands on without copying it through its engine.
//!
//! A worker that forwards the request it received to an object, and
//! returns the object's response, would otherwise copy every header and
//! the body out of the host into the guest and back twice: lifting and
//! lowering records is most of a JavaScript guest's work per request
//! (componentize-js's glue is interpreted JavaScript). So the host keeps
//! the request of each running fetch event and the last few responses
//! the instance received from stubs, and the guest names them by number
//! instead: `stub.start-forward(event)` sends the event's request,
//! `events.finish-fetch-forward(event, op)` answers with operation `op`'s
//! response. The host keeps only what is small ([`MAX_KEPT_BODY`]); for
//! the rest, or what it no longer holds, the guest copies as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::bindings::object::dohost::object::events::Outcome;
use super::bindings::{WitRequest, WitResponse};
use super::tasks::{EventId, OpId};

/// The largest body of a request or response the host keeps for
/// forwarding: a kept response is a copy in the host, and a kept request
/// (the event's own, shared) stays in memory until its event ends, worth
/// it only while they are small beside the guest's copy.
pub(crate) const MAX_KEPT_BODY: usize = 64 << 10;

/// How many received responses an instance keeps, newest first: a
/// handler returns the response it awaited last, and each kept one holds
/// up to [`MAX_KEPT_BODY`] of memory.
const MAX_KEPT_RESPONSES: usize = 4;

/// The requests and responses an instance may hand on by number.
#[derive(Default)]
pub(crate) struct Kept {
    /// The request of each running fetch event: the one the guest
    /// received, not a copy.
    requests: HashMap<EventId, Arc<WitRequest>>,
    /// Responses received from stubs, oldest first.
    responses: VecDeque<(OpId, WitResponse)>,
}

impl Kept {
    /// Keeps the request of fetch event `event`, if it is small enough.
    pub(crate) fn keep_request(&mut self, event: EventId, req: &Arc<WitRequest>) {
        if req.body.len() <= MAX_KEPT_BODY {
            self.requests.insert(event, Arc::clone(req));
        }
    }

    /// The request of running fetch event `event`, if kept.
    pub(crate) fn request(&self, event: EventId) -> Option<&WitRequest> {
        self.requests.get(&event).map(Arc::as_ref)
    }

    /// Forgets what event `event` kept: it ended.
    pub(crate) fn end(&mut self, event: EventId) {
        self.requests.remove(&event);
    }

    /// Keeps the response of `outcome`, the outcome of operation `op`,
    /// when it is a stub's whole, small response.
    pub(crate) fn keep_outcome(&mut self, op: OpId, outcome: &Outcome) {
        let Outcome::StubFetch(Ok(response)) = outcome else {
            return;
        };
        if response.stream.is_some()
            || response.websocket.is_some()
            || response.body.len() > MAX_KEPT_BODY
        {
            return;
        }
        if self.responses.len() >= MAX_KEPT_RESPONSES {
            self.responses.pop_front();
        }
        self.responses.push_back((op, response.clone()));
    }

    /// Takes the response operation `op` delivered, if kept.
    pub(crate) fn take_response(&mut self, op: OpId) -> Option<WitResponse> {
        let at = self.responses.iter().position(|(kept, _)| *kept == op)?;
        self.responses.remove(at).map(|(_, response)| response)
    }

    /// Forgets every kept response (the instance's request is over).
    pub(crate) fn clear_responses(&mut self) {
        self.responses.clear();
    }
}
