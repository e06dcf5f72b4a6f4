//! Alarms: the scheduler that delivers each object's one wake-up time.
//!
//! **Storage.** An object's alarm is part of its storage: `set-alarm` and
//! `delete-alarm` write into the event's write layers like KV writes (a
//! rolled-back transaction or a trap takes them back) and commit in the
//! event's redb transaction, to the `alarms` table and the `alarm_times`
//! index ([`dohost_store::AlarmRecord`]). The committer tells the
//! [`Schedule`] of every committed change.
//!
//! **Schedule.** The scheduler keeps only the earliest alarms in memory
//! ([`Settings::alarm_window`], by default [`SCHEDULE_WINDOW`]), loaded
//! from the `alarm_times` index, and knows up to which (time, object) every
//! committed alarm is among them. When the window runs low it loads the
//! next ones; a committed alarm later than the window is left to that load. So a million scheduled alarms cost a few
//! thousand entries of memory, and alarms due while the host was down are
//! found by the first load and fire at once.
//!
//! **Delivery.** When an alarm is due, the scheduler puts an alarm event in
//! the object's mailbox (activating it), so the handler never runs beside
//! another event of the object; at most [`MAX_DELIVERIES`] are under way at
//! once. The object checks its alarm again before running it (a fetch may
//! have moved or deleted it meanwhile), then stores that a delivery began
//! (its retry count goes up by one) and calls the guest's `alarm`. If the
//! handler returns `ok` the alarm is deleted, unless the handler set or
//! deleted it itself. If it fails (an error, a trap, a constructor that
//! fails) the alarm moves to a retry time with exponential backoff, and is
//! dropped with an error log line after [`Settings::alarm_max_retries`]
//! retries. A crash in the middle of a handler leaves the increased retry
//! count in redb, so the alarm runs again after restart with `is-retry`.
//!
//! **Run now.** The admin can run an object's alarm before its time
//! ([`Namespace::run_alarm`]): the same alarm event, put in the object's
//! mailbox without waiting for the schedule and without the check that it
//! is due, so it is stored as begun, handled, and cleared or retried
//! exactly as above.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use super::namespace::Namespace;
use super::shared::HostShared;
use crate::error::ErrorKind;
use crate::settings::MAX_DELIVERIES;
use dohost_store::{AlarmChange, AlarmRecord, AlarmWrite, ObjectKey, Store};

#[cfg(doc)]
use crate::settings::{SCHEDULE_WINDOW, Settings};

/// How long (ms) an alarm waits before it is delivered again when its object
/// was overloaded (full mailbox or instance pool). Not a retry: the handler
/// did not run.
pub(crate) const REDELIVERY_DELAY_MS: i64 = 100;

/// How long (ms) an alarm of an object another node of the cluster owns
/// waits before this node looks at it again.
const NOT_OURS_DELAY_MS: i64 = 1000;

/// How long the scheduler waits after it failed to read the index.
const RELOAD_ERROR_DELAY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The in-memory part of the alarm index: the earliest alarms.
pub(crate) struct Schedule {
    window: Mutex<Window>,
    /// Wakes the scheduler: an earlier alarm arrived, or the host stops.
    wake: Notify,
    stopped: AtomicBool,
}

struct Window {
    /// The most alarms `soon` holds.
    size: usize,
    /// Alarms to deliver, earliest first. Every committed alarm up to
    /// `loaded_to` is here; a few may be here that are no longer committed
    /// (the object checks before it runs one).
    soon: BTreeSet<(i64, ObjectKey)>,
    /// Every committed alarm up to this one is in `soon` (none: nothing
    /// loaded yet).
    loaded_to: Option<(i64, ObjectKey)>,
    /// Every committed alarm is in `soon`.
    all_loaded: bool,
}

impl Window {
    fn covers(&self, entry: &(i64, ObjectKey)) -> bool {
        self.all_loaded || self.loaded_to.is_some_and(|to| *entry <= to)
    }

    /// Keeps the window within its size by forgetting the latest entries
    /// (they are still in redb, and now beyond `loaded_to`).
    fn trim(&mut self) {
        while self.soon.len() > self.size {
            self.soon.pop_last();
            let last = self.soon.last().copied();
            // A reminder may lie beyond `loaded_to`: what lies between was
            // never loaded, so `loaded_to` never moves up here.
            self.loaded_to = if self.all_loaded {
                last
            } else {
                self.loaded_to.min(last)
            };
            self.all_loaded = false;
        }
    }
}

/// What the scheduler should do next.
enum Next {
    /// Deliver this alarm now.
    Due(ObjectKey),
    /// Sleep until this time (ms since the epoch), unless woken.
    At(i64),
    /// Nothing is scheduled: sleep until woken.
    Idle,
}

impl Schedule {
    /// A schedule that keeps up to `size` alarms in memory (at least 2).
    pub(crate) fn new(size: usize) -> Arc<Schedule> {
        Arc::new(Schedule {
            window: Mutex::new(Window {
                size: size.max(2),
                soon: BTreeSet::new(),
                loaded_to: None,
                all_loaded: false,
            }),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        })
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in committed alarm changes (called by the committer).
    pub(crate) fn apply(&self, changes: &[AlarmChange]) {
        let mut window = self.window();
        let first = window.soon.first().copied();
        for change in changes {
            if let Some(time) = change.old {
                window.soon.remove(&(time, change.object));
            }
            if let Some(time) = change.new {
                let entry = (time, change.object);
                if window.covers(&entry) {
                    window.soon.insert(entry);
                }
            }
        }
        window.trim();
        let earlier = match (window.soon.first(), first) {
            (Some(now), Some(before)) => now < &before,
            (Some(_), None) => true,
            (None, _) => false,
        };
        drop(window);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Asks for `object`'s alarm to be delivered at `time` (ms since the
    /// epoch) without a committed change: an object found its alarm not yet
    /// due, or could not take it now.
    pub(crate) fn remind(&self, time: i64, object: ObjectKey) {
        let mut window = self.window();
        let earlier = window
            .soon
            .first()
            .is_none_or(|first| (time, object) < *first);
        window.soon.insert((time, object));
        window.trim();
        drop(window);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Loads the next alarms from redb when the window runs low.
    fn refill(&self, store: &Store) -> crate::error::Result<()> {
        let mut window = self.window();
        if window.all_loaded || window.soon.len() >= window.size / 2 {
            return Ok(());
        }
        // Under the lock: a commit that lands meanwhile is applied after
        // this, against the new `loaded_to`.
        let want = window.size - window.soon.len();
        let found = store.alarms_after(window.loaded_to, want)?;
        if found.len() < want {
            window.all_loaded = true;
        }
        if let Some(last) = found.last() {
            window.loaded_to = Some(*last);
        }
        window.soon.extend(found);
        Ok(())
    }

    fn next(&self, now: i64) -> Next {
        let mut window = self.window();
        match window.soon.first().copied() {
            Some((time, object)) if time <= now => {
                window.soon.pop_first();
                Next::Due(object)
            }
            Some((time, _)) => Next::At(time),
            None => Next::Idle,
        }
    }

    /// Forgets what was loaded, so the next load reads every alarm again
    /// (a node of a cluster took shards: their alarms were committed by
    /// another node).
    pub(crate) fn reload(&self) {
        let mut window = self.window();
        window.soon.clear();
        window.loaded_to = None;
        window.all_loaded = false;
        drop(window);
        self.wake.notify_one();
    }

    /// How many alarms the scheduler holds in memory.
    pub(crate) fn in_memory(&self) -> usize {
        self.window().soon.len()
    }

    /// Stops the scheduler task.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// The scheduler: delivers due alarms to the objects of `namespaces` (by
/// namespace number) until the schedule is stopped.
pub(crate) async fn run(
    schedule: Arc<Schedule>,
    shared: Arc<HostShared>,
    namespaces: HashMap<u32, Namespace>,
) {
    let deliveries = Arc::new(Semaphore::new(MAX_DELIVERIES));
    while !schedule.stopped.load(Ordering::SeqCst) {
        if let Err(e) = schedule.refill(&shared.store) {
            if e.kind() == ErrorKind::ShutDown {
                return;
            }
            tracing::error!("cannot read the alarm index: {e}; trying again");
            tokio::time::sleep(RELOAD_ERROR_DELAY).await;
            continue;
        }
        let delay = match schedule.next(now_ms()) {
            Next::Due(object) => {
                let Ok(permit) = deliveries.clone().acquire_owned().await else {
                    return;
                };
                let Some(namespace) = namespaces.get(&object.namespace()) else {
                    tracing::warn!(object = ?object, "an alarm is due for an object of a namespace no binding has; it stays stored and is not delivered");
                    continue;
                };
                match namespace.deliver_alarm(&object.id(), permit) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::ShutDown => return,
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        // Another node of the cluster owns it and runs it;
                        // look again later in case its shard comes here.
                        schedule.remind(now_ms() + NOT_OURS_DELAY_MS, object);
                    }
                    Err(e) => {
                        tracing::debug!(object = ?object, "alarm delivery postponed: {e}");
                        schedule.remind(now_ms() + REDELIVERY_DELAY_MS, object);
                    }
                }
                continue;
            }
            Next::At(time) => Some(Duration::from_millis(
                u64::try_from(time.saturating_sub(now_ms())).unwrap_or(0),
            )),
            Next::Idle => None,
        };
        match delay {
            Some(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = schedule.wake.notified() => {}
                }
            }
            None => schedule.wake.notified().await,
        }
    }
}

/// What to store after a delivery of `record` (its retry count as it was
/// when the delivery began) failed with `message`: the retry, or nothing
/// when the retries are used up.
pub(crate) fn after_failure(
    record: AlarmRecord,
    message: &str,
    object: &str,
    first_delay: Duration,
    max_retries: u32,
) -> AlarmWrite {
    if record.retries >= max_retries {
        tracing::error!(
            object,
            "the alarm failed {} times and is dropped: {message}",
            record.retries + 1
        );
        return AlarmWrite::Delete;
    }
    let delay = first_delay.saturating_mul(1 << record.retries.min(20));
    tracing::warn!(
        object,
        retry_in_ms = ms(delay),
        "the alarm failed and will be retried: {message}"
    );
    AlarmWrite::Set(AlarmRecord {
        time: now_ms().saturating_add(ms(delay)),
        retries: record.retries.saturating_add(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SCHEDULE_WINDOW;

    fn key(n: u8) -> ObjectKey {
        ObjectKey::new(0, &[n; 32])
    }

    fn change(object: u8, old: Option<i64>, new: Option<i64>) -> AlarmChange {
        AlarmChange {
            object: key(object),
            old,
            new,
        }
    }

    #[test]
    fn changes_beyond_the_loaded_window_wait_for_the_next_load() {
        let schedule = Schedule::new(SCHEDULE_WINDOW);
        {
            let mut w = schedule.window();
            w.loaded_to = Some((100, key(9)));
        }
        schedule.apply(&[change(1, None, Some(50)), change(2, None, Some(150))]);
        assert_eq!(schedule.in_memory(), 1);
        // Moving an alarm takes the old entry out.
        schedule.apply(&[change(1, Some(50), Some(60))]);
        assert!(matches!(schedule.next(55), Next::At(60)));
        assert!(matches!(schedule.next(60), Next::Due(k) if k == key(1)));
        assert!(matches!(schedule.next(1000), Next::Idle));
    }

    #[test]
    fn the_window_forgets_its_latest_entries_beyond_its_size() {
        let schedule = Schedule::new(SCHEDULE_WINDOW);
        schedule.window().all_loaded = true;
        let changes: Vec<_> = (0..=SCHEDULE_WINDOW as i64)
            .map(|t| AlarmChange {
                object: key(1),
                old: None,
                new: Some(t),
            })
            .collect();
        schedule.apply(&changes);
        let w = schedule.window();
        assert_eq!(w.soon.len(), SCHEDULE_WINDOW);
        assert!(!w.all_loaded);
        assert_eq!(w.loaded_to, Some((SCHEDULE_WINDOW as i64 - 1, key(1))));
    }

    #[test]
    fn a_reminder_beyond_the_loaded_window_does_not_stretch_it() {
        let schedule = Schedule::new(3);
        schedule.window().loaded_to = Some((100, key(9)));
        schedule.apply(&[change(1, None, Some(10)), change(2, None, Some(20))]);
        schedule.remind(500, key(3));
        schedule.remind(600, key(4));
        let w = schedule.window();
        assert_eq!(w.soon.len(), 3);
        // Alarms between 100 and 500 were never loaded: still not covered.
        assert!(!w.covers(&(300, key(5))));
        assert_eq!(w.loaded_to, Some((100, key(9))));
    }

    #[test]
    fn retries_back_off_exponentially_then_stop() {
        let first = Duration::from_millis(100);
        let before = now_ms();
        for retries in 0..3 {
            let write = after_failure(AlarmRecord { time: 0, retries }, "x", "o", first, 3);
            let AlarmWrite::Set(next) = write else {
                panic!("retry {retries} was dropped");
            };
            assert_eq!(next.retries, retries + 1);
            let delay = next.time - before;
            let expected = 100 << retries;
            assert!(delay >= expected && delay < expected + 1000, "{delay}");
        }
        let last = after_failure(
            AlarmRecord {
                time: 0,
                retries: 3,
            },
            "x",
            "o",
            first,
            3,
        );
        assert_eq!(last, AlarmWrite::Delete);
    }
}
