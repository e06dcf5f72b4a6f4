//! An object's io: what it keeps across instance resets. The running
//! event's writes, the cache, the SQL database, and the commits sent to
//! the committer with the gates that responses wait on (see the module
//! above for how events use them).

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::FutureExt;

use super::{Gate, Identity, pass_gate};
use crate::alarm::AlarmRecord;
use crate::cache::ObjectCache;
use crate::error::Result;
use crate::host::HostShared;
use crate::kv::EventWrites;
use crate::sql::Sql;
use crate::storage::ObjectRecord;
use crate::stub::CallChain;

/// The object's storage and context, kept across instance resets.
pub(crate) struct ObjectIo {
    pub(crate) identity: Identity,
    pub(crate) shared: Arc<HostShared>,
    /// What the object knows of its keys beyond the running event, including
    /// writes handed to the committer but not yet durable.
    pub(crate) cache: ObjectCache,
    /// The running event's writes.
    pub(crate) writes: EventWrites,
    /// The object's SQL database (no connection until first used).
    pub(crate) sql: Sql,
    /// Commits sent and not yet known durable, oldest first, with the
    /// sequence numbers the cache gave them.
    in_flight: VecDeque<(u64, Gate)>,
    /// The latest commit a response must wait for (one with a write that
    /// did not ask for `allow-unconfirmed`); commits finish in order, so
    /// it covers every confirmed write before it.
    confirmed: Option<(u64, Gate)>,
    /// The object's directory record was committed.
    registered: bool,
    /// The object's alarm as of every write set sent to the committer
    /// (`None`: not read yet).
    alarm: Option<Option<AlarmRecord>>,
    /// The alarm whose handler is running, as stored when it began.
    pub(crate) running_alarm: Option<AlarmRecord>,
    /// The chain of objects waiting on the running event (empty for a
    /// request from outside or an alarm).
    pub(crate) chain: CallChain,
}

impl ObjectIo {
    pub(crate) fn new(identity: Identity, shared: Arc<HostShared>) -> ObjectIo {
        ObjectIo {
            sql: Sql::new(
                identity.key,
                shared.clone(),
                shared.settings.max_sql_database_bytes,
                shared.settings.cpu_time_per_event,
            ),
            identity,
            cache: ObjectCache::new(shared.cache_budget.clone()),
            shared,
            writes: EventWrites::new(),
            in_flight: VecDeque::new(),
            confirmed: None,
            registered: false,
            alarm: None,
            running_alarm: None,
            chain: CallChain::default(),
        }
    }

    /// Hands what the event has committed so far to the committer.
    pub(crate) fn flush(&mut self) {
        let (mut writes, mut confirmed) = self.writes.take_committed();
        // The cache numbers the commit; the SQL pages are staged under the
        // same number (an empty write set does not use its number).
        let seq = self.cache.next_seq();
        writes.pages = self.sql.stage(seq);
        confirmed |= !writes.pages.is_empty();
        if writes.is_empty() {
            return;
        }
        if let Some(write) = writes.alarm {
            self.alarm = Some(write.record());
        }
        let record = (!self.registered).then(|| ObjectRecord {
            class: self.identity.class.to_string(),
            name: self.identity.name.clone(),
        });
        let staged = self.cache.stage(&writes);
        debug_assert_eq!(seq, staged);
        let gate = self
            .shared
            .store
            .commit(self.identity.key, writes, record)
            .shared();
        self.registered = true;
        if confirmed {
            self.confirmed = Some((seq, gate.clone()));
        }
        self.in_flight.push_back((seq, gate));
    }

    /// The object's alarm as of every write set sent to the committer.
    pub(crate) fn alarm(&mut self) -> Result<Option<AlarmRecord>> {
        if let Some(known) = self.alarm {
            return Ok(known);
        }
        let stored = self.shared.store.read_alarm(&self.identity.key)?;
        self.alarm = Some(stored);
        Ok(stored)
    }

    /// The last commit sent, done or not.
    pub(crate) fn latest_commit(&self) -> Option<Gate> {
        self.in_flight.back().map(|(_, gate)| gate.clone())
    }

    /// The gate an event's response, and a call the object makes, must
    /// pass.
    pub(crate) fn response_gate(&self) -> Option<Gate> {
        self.confirmed.as_ref().map(|(_, gate)| gate.clone())
    }

    /// Takes note of the commits that have finished; an error if one failed.
    pub(crate) fn settle(&mut self) -> std::result::Result<(), String> {
        while let Some((seq, gate)) = self.in_flight.front() {
            // Polls the gate once: nobody else may be waiting on it (an
            // allow-unconfirmed commit holds no response).
            match gate.clone().now_or_never() {
                None => break,
                Some(Ok(Ok(()))) => {
                    let seq = *seq;
                    self.in_flight.pop_front();
                    self.cache.durable(seq);
                    self.sql.durable(seq);
                    if self.confirmed.as_ref().is_some_and(|(s, _)| *s <= seq) {
                        self.confirmed = None;
                    }
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(_)) => return Err("the committer stopped".into()),
            }
        }
        Ok(())
    }

    /// Goes back to what redb holds, once nothing sent is still in flight.
    pub(super) async fn forget(&mut self) {
        let _ = pass_gate(self.latest_commit()).await;
        self.cache.clear();
        self.sql.forget();
        self.in_flight.clear();
        self.confirmed = None;
        self.registered = false;
        self.alarm = None;
    }
}
