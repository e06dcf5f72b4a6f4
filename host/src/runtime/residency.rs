//! Residency: the cap on objects in memory, and who leaves when it is
//! reached.
//!
//! An object is resident while its actor holds a wasm instance. At most
//! [`crate::Settings::max_live_objects`] are resident at once; an object
//! that must activate beyond that asks the least recently used idle object
//! (one between events) to leave, as the idle timeout would have made it,
//! and waits for its slot. An object that left comes back on its next event
//! with its storage intact. Only when every resident object is running an
//! event is the activation refused as overloaded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::engine::MemoryBudget;
use crate::error::{Error, ErrorKind, Result};

/// How long an activation waits for an evicted object to leave before it
/// looks again (the object may have taken new events meanwhile).
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// The resident objects of a host.
pub(crate) struct Residency {
    cap: usize,
    /// All instances' memory: an object activates only while it has room.
    memory: Arc<MemoryBudget>,
    state: Mutex<State>,
    /// Signalled whenever an object leaves.
    left: Notify,
}

#[derive(Default)]
struct State {
    /// Ticks on every event end, to order objects by last use.
    clock: u64,
    /// By actor number.
    resident: HashMap<u64, Resident>,
}

struct Resident {
    last_used: u64,
    busy: bool,
    /// Asked to leave and not busy since.
    asked: bool,
    evict: Arc<Notify>,
}

impl State {
    /// Asks the least recently used idle object not asked yet to leave
    /// memory; whether there was one.
    fn ask_one_to_leave(&mut self) -> bool {
        let victim = self
            .resident
            .values_mut()
            .filter(|r| !r.busy && !r.asked)
            .min_by_key(|r| r.last_used);
        match victim {
            Some(victim) => {
                victim.asked = true;
                victim.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Residency {
    pub(crate) fn new(cap: u32, memory: Arc<MemoryBudget>) -> Residency {
        Residency {
            cap: usize::try_from(cap).unwrap_or(usize::MAX).max(1),
            memory,
            state: Mutex::new(State::default()),
            left: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many objects are resident now.
    pub(crate) fn count(&self) -> usize {
        self.state().resident.len()
    }

    /// Makes actor `actor` resident (and busy), first asking the least
    /// recently used idle object to leave when the cap is reached; `evict`
    /// is how this actor is asked in turn.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Overloaded`] when every resident object is running an
    /// event.
    pub(crate) async fn admit(&self, actor: u64, evict: &Arc<Notify>) -> Result<()> {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            {
                let mut state = self.state();
                let memory_full = self.memory.nearly_full() && !state.resident.is_empty();
                if state.resident.len() < self.cap && !memory_full {
                    let now = state.clock;
                    state.resident.insert(
                        actor,
                        Resident {
                            last_used: now,
                            busy: true,
                            asked: false,
                            evict: evict.clone(),
                        },
                    );
                    return Ok(());
                }
                let asked_already = state.resident.values().any(|r| r.asked);
                if !state.ask_one_to_leave() && !asked_already {
                    let why = if memory_full {
                        format!(
                            "overloaded: the objects in memory hold {} MiB, the limit for all instances ([limits] total_memory_bytes = {} MiB), and all are running events; retry later",
                            self.memory.used() >> 20,
                            self.memory.limit_mib()
                        )
                    } else {
                        format!(
                            "all {} objects in memory are running events, so no other can activate (limits.max_live_objects); retry later",
                            self.cap
                        )
                    };
                    return Err(Error::new(ErrorKind::Overloaded, why));
                }
            }
            if tokio::time::timeout(EVICTION_WAIT, left).await.is_err() {
                // The object asked did not leave (it took new events):
                // ask it no more, and pick again.
                for r in self.state().resident.values_mut() {
                    r.asked = false;
                }
            }
        }
    }

    /// Asks the least recently used idle object to leave memory (for an
    /// instance whose memory must grow); whether there was one.
    pub(crate) fn evict_one(&self) -> bool {
        self.state().ask_one_to_leave()
    }

    /// Actor `actor` starts an event.
    pub(crate) fn busy(&self, actor: u64) {
        if let Some(r) = self.state().resident.get_mut(&actor) {
            r.busy = true;
            r.asked = false;
        }
    }

    /// Actor `actor` finished an event.
    pub(crate) fn idle(&self, actor: u64) {
        let mut state = self.state();
        state.clock += 1;
        let now = state.clock;
        if let Some(r) = state.resident.get_mut(&actor) {
            r.busy = false;
            r.last_used = now;
        }
    }

    /// Actor `actor` dropped its instance.
    pub(crate) fn leave(&self, actor: u64) {
        if self.state().resident.remove(&actor).is_some() {
            self.left.notify_waiters();
        }
    }
}
