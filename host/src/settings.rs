//! Limits and their defaults, in one place: [`Settings`] (what a host may
//! tune, each field with its `DEFAULT_*` and its `dohost.toml` key) and the
//! fixed limits of the storage and SQL APIs (Cloudflare's).

use std::time::Duration;

pub use dohost_store::MAX_TRANSACTION_DEPTH;

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".dohost";

/// How many objects may be live (in memory) at once by default. Sizes the
/// instance pool; idle objects leave after the idle timeout, and the least
/// recently used idle object leaves when another must activate at the cap.
pub const DEFAULT_MAX_LIVE_OBJECTS: u32 = 10_000;

/// How long an idle object stays in memory by default (Cloudflare evicts
/// after about 10 s without events).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most events that may wait in one object's mailbox by default; more
/// are refused as overloaded (HTTP 503) instead of growing memory.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// How long a call to an object (a request, an RPC call) may take by
/// default, waiting in the mailbox included, before the caller gets a
/// timeout error. It also ends deadlocks between call chains: two objects
/// that call each other from different chains both time out.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The most CPU time one event may use by default (Cloudflare's default).
pub const DEFAULT_CPU_TIME_PER_EVENT: Duration = Duration::from_secs(30);

/// The most linear memory one instance may use by default.
pub const DEFAULT_MEMORY_PER_OBJECT: usize = 128 << 20;

/// How many bytes of cached values one object may keep by default.
pub const DEFAULT_CACHE_PER_OBJECT: usize = 8 << 20;

/// How many bytes of cached values all objects together may keep by
/// default.
pub const DEFAULT_CACHE_TOTAL: usize = 512 << 20;

/// The largest SQL database of one object by default, in bytes
/// (Cloudflare's limit: 10 GB).
pub const DEFAULT_MAX_SQL_DATABASE_BYTES: u64 = 10_000_000_000;

/// The delay before the first retry of a failed alarm by default
/// (Cloudflare's); each further retry waits twice as long.
pub const DEFAULT_ALARM_RETRY_DELAY: Duration = Duration::from_secs(2);

/// How many times a failed alarm is retried by default (Cloudflare's)
/// before it is dropped.
pub const DEFAULT_ALARM_MAX_RETRIES: u32 = 6;

/// How many of the earliest alarms the scheduler keeps in memory by
/// default; the rest stay in redb until their turn comes.
pub const SCHEDULE_WINDOW: usize = 4096;

/// How many alarm deliveries may be under way at once: bounds the objects
/// activated by a burst of due alarms.
pub const MAX_DELIVERIES: usize = 256;

/// The longest storage key, in bytes (Cloudflare's limit): keys are kept in
/// memory and in every redb index page, so they must stay small.
pub const MAX_KEY_BYTES: usize = 2048;

/// The largest value on the KV API, in bytes (Cloudflare's limit): bigger
/// values belong in several keys or in SQL.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// The most keys one many-key call may name (Cloudflare's limit): bounds
/// the memory and time of one host call.
pub const MAX_KEYS_PER_CALL: usize = 128;

/// The longest SQL string one `exec` takes, in bytes (Cloudflare's limit).
pub const MAX_SQL_STATEMENT_BYTES: usize = 100_000;

/// The most values one `exec` binds (Cloudflare's limit).
pub const MAX_SQL_PARAMS: usize = 100;

/// The largest string, blob or row in a SQL database, in bytes
/// (Cloudflare's limit).
pub const MAX_SQL_VALUE_BYTES: usize = 2_000_000;

/// Tunable limits of a host. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Objects in memory at once ([`DEFAULT_MAX_LIVE_OBJECTS`]); beyond it
    /// the least recently used idle object leaves.
    pub max_live_objects: u32,
    /// Time without events after which an object leaves memory
    /// ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Events waiting per object ([`DEFAULT_MAILBOX_CAPACITY`]).
    pub mailbox_capacity: usize,
    /// How long a call to an object may take ([`DEFAULT_CALL_TIMEOUT`]).
    pub call_timeout: Duration,
    /// CPU time per event ([`DEFAULT_CPU_TIME_PER_EVENT`]).
    pub cpu_time_per_event: Duration,
    /// Linear memory per instance ([`DEFAULT_MEMORY_PER_OBJECT`]).
    pub memory_per_object: usize,
    /// Bytes of cached storage values per object
    /// ([`DEFAULT_CACHE_PER_OBJECT`]); writes not yet durable are held
    /// beyond it until they are.
    pub cache_per_object: usize,
    /// Bytes of cached storage values of all objects together
    /// ([`DEFAULT_CACHE_TOTAL`]).
    pub cache_total: usize,
    /// The largest SQL database of one object, in bytes
    /// ([`DEFAULT_MAX_SQL_DATABASE_BYTES`]).
    pub max_sql_database_bytes: u64,
    /// The delay before the first retry of a failed alarm; each further
    /// retry waits twice as long ([`DEFAULT_ALARM_RETRY_DELAY`]).
    pub alarm_retry_delay: Duration,
    /// How many times a failed alarm is retried before it is dropped
    /// ([`DEFAULT_ALARM_MAX_RETRIES`]).
    pub alarm_max_retries: u32,
    /// How many of the earliest alarms the scheduler keeps in memory
    /// ([`SCHEDULE_WINDOW`]); the rest wait in redb.
    pub alarm_window: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_live_objects: DEFAULT_MAX_LIVE_OBJECTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            cpu_time_per_event: DEFAULT_CPU_TIME_PER_EVENT,
            memory_per_object: DEFAULT_MEMORY_PER_OBJECT,
            cache_per_object: DEFAULT_CACHE_PER_OBJECT,
            cache_total: DEFAULT_CACHE_TOTAL,
            max_sql_database_bytes: DEFAULT_MAX_SQL_DATABASE_BYTES,
            alarm_retry_delay: DEFAULT_ALARM_RETRY_DELAY,
            alarm_max_retries: DEFAULT_ALARM_MAX_RETRIES,
            alarm_window: SCHEDULE_WINDOW,
        }
    }
}
