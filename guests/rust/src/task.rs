//! The guest's executor: events as futures over the host's operations.
//!
//! The host delivers an event by calling an export; the SDK makes the
//! handler's future a task and polls it. When everything the task awaits is
//! a host operation (a stub call, an outbound request, a timer), the export
//! returns and the object may take its next event. The host later calls
//! `resume` with an operation's outcome; the SDK hands it to the future
//! awaiting it and polls every task that woke, until all wait again (see
//! wit/events.wit). There is one thread, so nothing here locks for long.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::Error;
use crate::bindings::dohost::object::events::{self, Outcome};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Tasks woken since they were last polled, by number. A `Mutex` because a
/// `Waker` must be `Send`; the guest has one thread, so it never waits.
static WOKEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Marks task `id` to be polled.
fn wake(id: u64) {
    WOKEN.lock().unwrap_or_else(|e| e.into_inner()).push(id);
}

/// Wakes the task with its number.
struct TaskWaker(u64);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        wake(self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(self.0);
    }
}

/// What an operation's future and `resume` share.
#[derive(Default)]
struct Slot {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Executor {
    /// Tasks waiting on something, by number.
    tasks: HashMap<u64, Task>,
    next_task: u64,
    /// Operations started and not yet resumed, by the host's number.
    ops: HashMap<u64, Rc<RefCell<Slot>>>,
}

thread_local! {
    static EXECUTOR: RefCell<Executor> = RefCell::new(Executor::default());
}

/// Runs `future`, an event's handler, until it waits on the host, then
/// every task that woke meanwhile; the rest runs in later `resume` calls.
/// A future that completes in one poll (an event that awaits nothing, the
/// common case) costs no bookkeeping.
pub(crate) fn run(future: impl Future<Output = ()> + 'static) {
    let mut task: Task = Box::pin(future);
    let id = next_id();
    if poll(id, &mut task).is_pending() {
        EXECUTOR.with(|e| e.borrow_mut().tasks.insert(id, task));
    }
    run_woken();
}

/// Makes `future` a task of its own (`wait_until`), first polled when the
/// current turn's tasks next wait.
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    let id = next_id();
    EXECUTOR.with(|e| e.borrow_mut().tasks.insert(id, Box::pin(future)));
    wake(id);
}

fn next_id() -> u64 {
    EXECUTOR.with(|e| {
        let mut e = e.borrow_mut();
        e.next_task += 1;
        e.next_task
    })
}

fn poll(id: u64, task: &mut Task) -> Poll<()> {
    let waker = Waker::from(Arc::new(TaskWaker(id)));
    task.as_mut().poll(&mut Context::from_waker(&waker))
}

/// Polls every woken task until none is woken (also after `init`, for
/// tasks a constructor spawned). A task is taken out of the
/// table while it runs, so it can spawn others and start operations.
pub(crate) fn run_woken() {
    loop {
        let woken = std::mem::take(&mut *WOKEN.lock().unwrap_or_else(|e| e.into_inner()));
        if woken.is_empty() {
            return;
        }
        for id in woken {
            let Some(mut task) = EXECUTOR.with(|e| e.borrow_mut().tasks.remove(&id)) else {
                continue;
            };
            if poll(id, &mut task).is_pending() {
                EXECUTOR.with(|e| e.borrow_mut().tasks.insert(id, task));
            }
        }
    }
}

/// The `resume` export: operation `op` has its outcome.
pub(crate) fn resume(op: u64, outcome: Outcome) {
    let slot = EXECUTOR.with(|e| e.borrow_mut().ops.remove(&op));
    if let Some(slot) = slot {
        let mut slot = slot.borrow_mut();
        slot.outcome = Some(outcome);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }
    run_woken();
}

/// The outcome of a host operation, as a future. Dropping it before it
/// completes cancels the operation.
pub(crate) struct Operation {
    op: u64,
    slot: Rc<RefCell<Slot>>,
    done: bool,
}

impl Operation {
    /// Awaits operation `op`, which the host has just started.
    pub(crate) fn new(op: u64) -> Operation {
        let slot = Rc::new(RefCell::new(Slot::default()));
        EXECUTOR.with(|e| e.borrow_mut().ops.insert(op, slot.clone()));
        Operation {
            op,
            slot,
            done: false,
        }
    }
}

impl Future for Operation {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let outcome = {
            let mut slot = self.slot.borrow_mut();
            match slot.outcome.take() {
                Some(outcome) => outcome,
                None => {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        self.done = true;
        Poll::Ready(outcome)
    }
}

/// The error for an outcome of another kind than its operation's: a
/// cancellation (the event passed its wall-clock limit), or (never) a host
/// mix-up.
pub(crate) fn unexpected(outcome: Outcome) -> Error {
    match outcome {
        Outcome::Cancelled(message) => Error::new(message),
        _ => Error::new("the host answered an operation with an outcome of another kind"),
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        if !self.done && self.slot.borrow().outcome.is_none() {
            EXECUTOR.with(|e| e.borrow_mut().ops.remove(&self.op));
            events::cancel(self.op);
        }
    }
}

/// Waits `duration` without holding the object: other events may run
/// meanwhile (JavaScript's `setTimeout`). The wait counts against the
/// event's wall-clock limit.
pub async fn sleep(duration: Duration) {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let _ = Operation::new(events::start_sleep(ms)).await;
}

/// Lets `work` run on after the event's response is sent (Cloudflare's
/// `ctx.waitUntil`), in objects and workers alike. Its operations belong to
/// the event that started it: they count against its limits and end at its
/// wall-clock limit.
pub fn wait_until(work: impl Future<Output = ()> + 'static) {
    spawn(work);
}
