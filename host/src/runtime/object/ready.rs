//! Instances made ahead of the objects that will run in them.
//!
//! An activation makes a store and instantiates the component before the
//! class's constructor runs; on a reused slot that is about half of a Rust
//! object's activation, and none of it depends on the object. So each
//! namespace keeps up to [`READY_PER_NAMESPACE`] instances of its current
//! code made ahead, with a stand-in io ([`ObjectIo::stand_in`]). An
//! activation takes one, gives it the object's io and log, and runs the
//! constructor; a task made for the purpose makes the next one off the
//! request's path. An instance of an older code generation is dropped when
//! it is found (and all of them when the code is swapped).
//!
//! Ready instances hold slots of the pool no live object counts: all
//! namespaces together hold at most [`READY_SLOTS`], which the pool keeps
//! beyond `max_live_objects`, so they never take a live object's slot.
//! Their linear memory counts against `total_memory_bytes` like any
//! instance's, and none is made when that budget is nearly spent, so
//! making one never asks an idle object to leave.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::{ObjectIo, ObjectState};
use crate::runtime::bindings::object::{DurableObject, DurableObjectPre};
use crate::runtime::code::Code;
use crate::runtime::guest::GuestState;
use crate::runtime::shared::HostShared;

/// The instances a namespace keeps made ahead: two, so that two
/// activations at once (one per runtime thread) both find one.
const READY_PER_NAMESPACE: usize = 2;

/// The pool slots kept for ready instances, beyond the live objects.
pub(crate) const READY_SLOTS: u32 = 8;

/// A store with its instance, not yet given to an object.
pub(crate) type Made = (wasmtime::Store<ObjectState>, DurableObject);

/// A namespace's code and the instances made ahead of it.
pub(crate) struct Ready {
    code: Code<DurableObjectPre<ObjectState>>,
    made: Mutex<Vec<(u64, Made)>>,
    /// Whether a task is making instances now.
    filling: AtomicBool,
}

impl Ready {
    pub(crate) fn new(pre: DurableObjectPre<ObjectState>) -> Arc<Ready> {
        Arc::new(Ready {
            code: Code::new(pre),
            made: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
        })
    }

    /// The namespace's code.
    pub(crate) fn code(&self) -> &Code<DurableObjectPre<ObjectState>> {
        &self.code
    }

    /// Makes `pre` the current code and drops the instances made of the
    /// old one.
    pub(crate) fn swap(&self, pre: DurableObjectPre<ObjectState>, shared: &HostShared) {
        self.code.swap(pre);
        let old = std::mem::take(&mut *self.lock());
        shared.ready.release(old.len());
    }

    /// An instance of generation `generation` made ahead, if one is
    /// ready; the next is made in the background. Give it its object with
    /// [`occupy`] before it runs.
    pub(crate) fn take(
        self: &Arc<Self>,
        generation: u64,
        shared: &Arc<HostShared>,
    ) -> Option<Made> {
        let found = {
            let mut made = self.lock();
            let before = made.len();
            made.retain(|(made_for, _)| *made_for == generation);
            let stale = before - made.len();
            let found = made.pop();
            shared.ready.release(stale + usize::from(found.is_some()));
            found
        };
        self.fill(shared);
        found.map(|(_, made)| made)
    }

    /// Starts a task that makes instances until the namespace has
    /// [`READY_PER_NAMESPACE`], unless one runs, the host is closing or
    /// the memory of all instances is near its limit.
    fn fill(self: &Arc<Self>, shared: &Arc<HostShared>) {
        if shared.closed.load(Ordering::Relaxed) || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let ready = self.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            // Not when memory is short: the instance's memory would ask
            // idle objects to leave.
            while ready.lock().len() < READY_PER_NAMESPACE
                && !shared.closed.load(Ordering::Relaxed)
                && !shared.runtime.memory.nearly_full()
                && shared.ready.hold()
            {
                let (generation, pre) = ready.code.get();
                match make(&pre, &shared).await {
                    Some(made) => ready.lock().push((generation, made)),
                    None => {
                        shared.ready.release(1);
                        break;
                    }
                }
            }
            ready.filling.store(false, Ordering::Release);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Made)>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An instance of `pre` in a store with a stand-in io, or `None` if none
/// can be made now (no free slot, no memory): activations then
/// instantiate as they go, and say why if they cannot.
async fn make(pre: &DurableObjectPre<ObjectState>, shared: &Arc<HostShared>) -> Option<Made> {
    let io = ObjectIo::stand_in("(ready)", shared.clone());
    let log = io.log.clone();
    let mut store = shared
        .runtime
        .store(GuestState::new(io, log), shared.settings.cpu_time_per_event);
    match pre.instantiate_async(&mut store).await {
        // The instance's first call, made here: a JavaScript engine does
        // a part of its start on the first call into it (some 200 µs of
        // the counter's activation), which a fresh instance then has
        // behind it.
        Ok(instance) => match instance
            .dohost_object_handler()
            .call_classes(&mut store)
            .await
        {
            Ok(_) => Some((store, instance)),
            Err(e) => {
                tracing::debug!("an instance made ahead trapped on its first call: {e:#}");
                None
            }
        },
        Err(e) => {
            tracing::debug!("no instance made ahead: {e:#}");
            None
        }
    }
}

/// The pool slots all namespaces' ready instances hold, at most
/// [`READY_SLOTS`].
#[derive(Default)]
pub(crate) struct ReadySlots(AtomicU32);

impl ReadySlots {
    /// Takes a slot for an instance about to be made, if one is left.
    fn hold(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < READY_SLOTS).then_some(held + 1)
            })
            .is_ok()
    }

    /// Gives back `count` slots: their instances were taken or dropped.
    fn release(&self, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(count))
            });
    }
}

/// Gives an instance made ahead its object: the object's io, and its log
/// for what the guest prints.
pub(crate) fn occupy(store: &mut wasmtime::Store<ObjectState>, io: ObjectIo) {
    let state = store.data_mut();
    state.meter.output.direct_to(io.log.clone());
    state.io = io;
}
