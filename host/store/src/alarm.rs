//! Alarm records: each object's one wake-up time as stored, the writes that
//! change it, and the changes the committer reports once they are durable.
//!
//! An alarm lives in two tables: `alarms` (object -> [`AlarmRecord`]) and
//! the `alarm_times` index (time, object), which the scheduler reads in
//! order ([`crate::Store::alarms_after`]).

use std::sync::Arc;

use crate::keys::ObjectKey;

/// An object's alarm as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmRecord {
    /// When it is due, in ms since the Unix epoch.
    pub time: i64,
    /// How many deliveries of this alarm began (and did not complete).
    pub retries: u32,
}

impl AlarmRecord {
    /// The stored bytes: time (i64 big-endian), retries (u32 big-endian).
    pub(crate) fn encode(&self) -> [u8; 12] {
        let mut v = [0u8; 12];
        v[..8].copy_from_slice(&self.time.to_be_bytes());
        v[8..].copy_from_slice(&self.retries.to_be_bytes());
        v
    }

    /// Reads what [`AlarmRecord::encode`] wrote.
    pub(crate) fn decode(v: &[u8]) -> Option<AlarmRecord> {
        let time = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let retries = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
        Some(AlarmRecord { time, retries })
    }
}

/// A change to an object's alarm in a write set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmWrite {
    /// Set (or replace) the alarm.
    Set(AlarmRecord),
    /// Remove the alarm.
    Delete,
    /// A delivery of the alarm began: store its new retry count. Its time
    /// does not change, and the scheduler is not told.
    Started(AlarmRecord),
}

impl AlarmWrite {
    /// The alarm after this write.
    pub fn record(&self) -> Option<AlarmRecord> {
        match self {
            AlarmWrite::Set(r) | AlarmWrite::Started(r) => Some(*r),
            AlarmWrite::Delete => None,
        }
    }
}

/// A committed change of an object's alarm time, for the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmChange {
    /// Whose alarm.
    pub object: ObjectKey,
    /// The time it had before, if it had an alarm.
    pub old: Option<i64>,
    /// The time it has now, if any.
    pub new: Option<i64>,
}

/// Told of every committed alarm change, on the committer thread, right
/// after the commit is durable and before its waiters hear of it.
pub type AlarmListener = Arc<dyn Fn(&[AlarmChange]) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_short_bytes_are_refused() {
        let record = AlarmRecord {
            time: -5,
            retries: 3,
        };
        assert_eq!(AlarmRecord::decode(&record.encode()), Some(record));
        assert_eq!(AlarmRecord::decode(&record.encode()[..11]), None);
    }
}
