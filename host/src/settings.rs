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

/// How many entry-worker instances may exist at once by default, idle or
/// running; more requests wait for one. Separate from the live objects, so
/// a flood of worker requests cannot take their instance slots.
pub const DEFAULT_MAX_WORKER_INSTANCES: u32 = 256;

/// How many threads `dohost serve` runs connections and object events on
/// by default: twice the cores, at least 4, so a few long SQL statements
/// (which hold their thread) leave threads for the other objects and the
/// connections.
pub fn default_worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores * 2).max(4)
}

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

/// The most wall-clock time one event may take by default, waiting on
/// other objects included; past it the event fails and the object is
/// reset. Twice the call timeout: a caller has given up by then.
pub const DEFAULT_WALL_TIME_PER_EVENT: Duration = Duration::from_secs(120);

/// The deepest chain of calls between objects: A calling B calling C ...
/// at most this many objects waiting (Cloudflare's subrequest depth).
pub const MAX_CALL_DEPTH: usize = 16;

/// The most CPU time one event may use by default (Cloudflare's default).
pub const DEFAULT_CPU_TIME_PER_EVENT: Duration = Duration::from_secs(30);

/// The most linear memory one instance may use by default.
pub const DEFAULT_MEMORY_PER_OBJECT: usize = 128 << 20;

/// The most bytes one event may write by default (KV keys and values; SQL
/// pages apart), held in memory until its commit: past it a write fails
/// with an error naming the limit.
pub const DEFAULT_WRITE_SET_BYTES: usize = 128 << 20;

/// The linear memory all live instances may hold together by default: half
/// the machine's memory. Past it idle objects leave memory first; then a
/// growth is refused and a new activation answered 503.
pub fn default_total_memory() -> usize {
    usize::try_from(machine_memory() / 2).unwrap_or(usize::MAX)
}

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

/// The largest value on the KV API, in bytes (Cloudflare's limit for
/// KV-backed classes): bigger values belong in several keys or in SQL.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// The most bytes a key and its value take together in a SQLite-backed
/// class (`new_sqlite_classes`; Cloudflare's limit, 2 MB).
pub const MAX_SQLITE_ENTRY_BYTES: usize = 2 * 1024 * 1024;

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
    /// Entry-worker instances at once, idle or running
    /// ([`DEFAULT_MAX_WORKER_INSTANCES`]); more requests wait for one, up
    /// to the call timeout.
    pub max_worker_instances: u32,
    /// Time without events after which an object leaves memory
    /// ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Events waiting per object ([`DEFAULT_MAILBOX_CAPACITY`]).
    pub mailbox_capacity: usize,
    /// How long a call to an object may take ([`DEFAULT_CALL_TIMEOUT`]).
    pub call_timeout: Duration,
    /// CPU time per event ([`DEFAULT_CPU_TIME_PER_EVENT`]).
    pub cpu_time_per_event: Duration,
    /// Wall-clock time per event ([`DEFAULT_WALL_TIME_PER_EVENT`]).
    pub wall_time_per_event: Duration,
    /// Linear memory per instance ([`DEFAULT_MEMORY_PER_OBJECT`]).
    pub memory_per_object: usize,
    /// Linear memory of all instances together
    /// ([`default_total_memory`]).
    pub total_memory_bytes: usize,
    /// Bytes one event may write to KV, and separately to SQL pages
    /// ([`DEFAULT_WRITE_SET_BYTES`]).
    pub write_set_bytes: usize,
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
    /// How much of every commit's history to keep for point-in-time
    /// recovery (`[storage] history`); off (`None`) by default.
    pub history: Option<dohost_store::HistorySettings>,
    /// Outbound HTTP and subrequests: the egress policy and its limits
    /// (`[outbound]`).
    pub outbound: OutboundSettings,
    /// WebSockets objects accept: their limits (`[websockets]`).
    pub websockets: WebSocketSettings,
    /// The SQLite-backed classes (by `new_sqlite_classes`), whose entries
    /// may take [`MAX_SQLITE_ENTRY_BYTES`]; the others keep
    /// [`MAX_VALUE_BYTES`]. The builder sets it from the migrations.
    pub sqlite_classes: std::collections::BTreeSet<String>,
}

/// How many subrequests (outbound requests and calls to objects) one event
/// may start by default (Cloudflare's limit).
pub const DEFAULT_MAX_SUBREQUESTS: u32 = 1000;

/// How many outbound requests of one event may be in flight at once by
/// default; more wait for one to finish (Cloudflare's 6 connections).
pub const DEFAULT_MAX_OUTBOUND_CONNECTIONS: u32 = 6;

/// How long one outbound request may take by default, its response body
/// read included.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body an outbound request may bring back by
/// default.
pub const DEFAULT_OUTBOUND_RESPONSE_BYTES: u64 = 32 << 20;

/// Where objects and workers may send HTTP requests, and how much
/// (`[outbound]` in dohost.toml).
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// Destinations allowed even if the default refuses them: host names
    /// (`api.example.com`, `*.example.com`), addresses (`127.0.0.1`,
    /// `[::1]`), networks (`10.0.0.0/8`), each with an optional `:port`.
    /// An allow rule beats every deny rule.
    pub allow: Vec<String>,
    /// Destinations refused even if the default allows them, in the same
    /// forms (`*` refuses everything not allowed).
    pub deny: Vec<String>,
    /// Time per outbound request ([`DEFAULT_OUTBOUND_TIMEOUT`]).
    pub timeout: Duration,
    /// Response body bytes per outbound request
    /// ([`DEFAULT_OUTBOUND_RESPONSE_BYTES`]).
    pub max_response_bytes: u64,
    /// Subrequests per event ([`DEFAULT_MAX_SUBREQUESTS`]).
    pub max_subrequests: u32,
    /// Outbound requests in flight per event
    /// ([`DEFAULT_MAX_OUTBOUND_CONNECTIONS`]).
    pub max_connections: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            allow: Vec::new(),
            deny: Vec::new(),
            timeout: DEFAULT_OUTBOUND_TIMEOUT,
            max_response_bytes: DEFAULT_OUTBOUND_RESPONSE_BYTES,
            max_subrequests: DEFAULT_MAX_SUBREQUESTS,
            max_connections: DEFAULT_MAX_OUTBOUND_CONNECTIONS,
        }
    }
}

/// The limits on WebSockets (`[websockets]` in dohost.toml). The defaults
/// are Cloudflare's.
#[derive(Clone, Debug)]
pub struct WebSocketSettings {
    /// Sockets one object may hold open (32,768).
    pub max_per_object: usize,
    /// Tags per socket (10).
    pub max_tags: usize,
    /// Characters per tag (256).
    pub max_tag_chars: usize,
    /// Bytes of one socket's attachment (2,048).
    pub max_attachment_bytes: usize,
    /// Characters of each side of the auto-response (2,048).
    pub max_auto_response_chars: usize,
    /// Bytes of one message either way (32 MiB). A larger incoming message
    /// closes its socket with 1009.
    pub max_message_bytes: usize,
    /// Bytes waiting to be sent on one socket whose client reads too
    /// slowly (64 MiB); past it the socket is closed with 1011. At least
    /// `max_message_bytes`.
    pub send_buffer_bytes: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            max_per_object: 32_768,
            max_tags: 10,
            max_tag_chars: 256,
            max_attachment_bytes: 2048,
            max_auto_response_chars: 2048,
            max_message_bytes: 32 << 20,
            send_buffer_bytes: 64 << 20,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_live_objects: DEFAULT_MAX_LIVE_OBJECTS,
            max_worker_instances: DEFAULT_MAX_WORKER_INSTANCES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            cpu_time_per_event: DEFAULT_CPU_TIME_PER_EVENT,
            wall_time_per_event: DEFAULT_WALL_TIME_PER_EVENT,
            memory_per_object: DEFAULT_MEMORY_PER_OBJECT,
            total_memory_bytes: default_total_memory(),
            write_set_bytes: DEFAULT_WRITE_SET_BYTES,
            cache_per_object: DEFAULT_CACHE_PER_OBJECT,
            cache_total: DEFAULT_CACHE_TOTAL,
            max_sql_database_bytes: DEFAULT_MAX_SQL_DATABASE_BYTES,
            alarm_retry_delay: DEFAULT_ALARM_RETRY_DELAY,
            alarm_max_retries: DEFAULT_ALARM_MAX_RETRIES,
            alarm_window: SCHEDULE_WINDOW,
            history: None,
            outbound: OutboundSettings::default(),
            websockets: WebSocketSettings::default(),
            sqlite_classes: std::collections::BTreeSet::new(),
        }
    }
}

/// The longest object name, in bytes: names are hashed into ids and kept in
/// the directory of objects, so they must stay small. Cloudflare documents
/// no limit; 2 KiB is the limit of a storage key.
pub const MAX_OBJECT_NAME_BYTES: usize = 2048;

/// How long a client may take to send a request's head by default, counted
/// from its first byte.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay open with no request and no bytes moving
/// by default (an idle keep-alive connection, a silent client, a client that
/// stopped reading its response).
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request body may take by default before the minimum rate
/// applies: a body must arrive within this time plus its length over
/// [`DEFAULT_MIN_BODY_RATE`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The slowest a request body may arrive by default, in bytes per second,
/// after [`DEFAULT_BODY_TIMEOUT`].
pub const DEFAULT_MIN_BODY_RATE: u64 = 16 * 1024;

/// The largest request body by default, in bytes (Cloudflare's limit on the
/// free plan): bodies are held in memory while an object handles them.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 100 << 20;

/// The most open connections by default; the server also stays below its
/// file-descriptor limit. Past the cap the oldest idle connection is closed
/// for a new one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Descriptors kept free for the database, compiled components and logs
/// when the connection cap is derived from the descriptor limit.
pub const RESERVED_DESCRIPTORS: u64 = 64;

pub use dohost_store::machine_memory;

/// The request-body memory all connections together may hold by default:
/// an eighth of the machine's memory, at least one largest body.
pub fn default_body_memory() -> usize {
    let eighth = usize::try_from(machine_memory() / 8).unwrap_or(usize::MAX);
    eighth.max(DEFAULT_MAX_REQUEST_BODY)
}

/// How `dohost serve` treats its clients (`[server]` in `dohost.toml`).
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Time to send a request's head, from its first byte
    /// ([`DEFAULT_HEADER_TIMEOUT`]; `header_timeout_ms`).
    pub header_timeout: Duration,
    /// Time a connection may stay open with nothing moving and no request
    /// running ([`DEFAULT_CONNECTION_IDLE_TIMEOUT`]; `idle_timeout_ms`).
    pub idle_timeout: Duration,
    /// Grace time for a request body ([`DEFAULT_BODY_TIMEOUT`];
    /// `body_timeout_ms`).
    pub body_timeout: Duration,
    /// Minimum body rate past the grace time, bytes per second
    /// ([`DEFAULT_MIN_BODY_RATE`]; `min_body_rate`).
    pub min_body_rate: u64,
    /// Largest request body ([`DEFAULT_MAX_REQUEST_BODY`];
    /// `max_request_body_bytes`); larger ones get 413.
    pub max_request_body: usize,
    /// Request-body bytes all connections together may hold
    /// ([`default_body_memory`]; `body_memory_bytes`); past it, 503.
    pub body_memory: usize,
    /// Threads of the async runtime `dohost serve` runs on
    /// ([`default_worker_threads`]; `worker_threads`).
    pub worker_threads: usize,
    /// Open connections at most ([`DEFAULT_MAX_CONNECTIONS`], lowered to
    /// fit the descriptor limit; `max_connections`).
    pub max_connections: usize,
    /// Whether error responses carry the whole error (traps' backtraces,
    /// the guest's output, the configured bindings) instead of one line
    /// and an error id (`debug_errors`, off; on with `dohost serve --dev`).
    pub debug_errors: bool,
    /// A second address that serves the Prometheus metrics at `/metrics`
    /// without the admin token (`metrics_listen`, none by default), for a
    /// scraper on a private network.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The number of shards of a new cluster (`[cluster] shards`).
pub const DEFAULT_CLUSTER_SHARDS: u32 = 256;

/// How long a node's lease on its shards lasts without renewal (`[cluster]
/// lease_ms`): a node that dies has its objects served elsewhere after this
/// long.
pub const DEFAULT_CLUSTER_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// How this host takes part in a cluster (`[cluster]` in dohost.toml; see
/// docs/cluster.md).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// The PostgreSQL database every node keeps its state in.
    pub database: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Where the other nodes reach this one; it listens there.
    pub advertise: std::net::SocketAddr,
    /// The secret every node shares; it authenticates the nodes' requests
    /// to each other.
    pub secret: String,
    /// The number of shards (chosen when the cluster is created).
    pub shards: u32,
    /// How long a lease lasts without renewal.
    pub lease: std::time::Duration,
}

impl ClusterSettings {
    /// A node `node` of the cluster in `database`, reached at `advertise`,
    /// with the default shards and lease.
    pub fn new(database: &str, node: &str, advertise: std::net::SocketAddr, secret: &str) -> Self {
        ClusterSettings {
            database: database.to_owned(),
            node: node.to_owned(),
            advertise,
            secret: secret.to_owned(),
            shards: DEFAULT_CLUSTER_SHARDS,
            lease: DEFAULT_CLUSTER_LEASE,
        }
    }
}

/// Where the host's traces go (`[observability]` in dohost.toml).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ObservabilitySettings {
    /// The OTLP/HTTP collector the event spans are exported to, e.g.
    /// `http://127.0.0.1:4318` (`otlp_endpoint`; none by default: no
    /// export). Spans go to its `/v1/traces`.
    pub otlp_endpoint: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_CONNECTION_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            body_memory: default_body_memory(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            worker_threads: default_worker_threads(),
            debug_errors: false,
            metrics_listen: None,
        }
    }
}
