//! The PostgreSQL schema, created and migrated by dohost.
//!
//! Everything lives in the schema `dohost` of the database the cluster
//! names. `dohost.meta` records the schema's version; each step of
//! [`STEPS`] brings it from one version to the next, in one transaction
//! holding an advisory lock, so nodes starting at once migrate it once. A
//! database of a newer version than this dohost knows is refused.
//!
//! The versions: 1, objects' state (`kv`, `pages`, `alarms`), the
//! directory (`objects`) and the class registry (`classes`, `bound`,
//! `migrations`); 2, the cluster (`nodes`, `leases`; cluster.rs); 3, the
//! history for point-in-time recovery (`history`, `history_commits`,
//! `history_state` and the sequence `history_bookmarks`; history.rs).
//!
//! Keys and object keys are `bytea`, which PostgreSQL compares bytewise:
//! the order the store's scans and the alarm index need.

use tokio_postgres::Client;

use super::pg_error;
use crate::error::{Error, ErrorKind, Result};

/// The advisory lock that migrations (and the class registry) take.
pub(super) const SCHEMA_LOCK: i64 = 0x646f_686f_7374; // "dohost"

/// The SQL of each version, in order: version `i + 1` is `STEPS[i]`.
const STEPS: &[&str] = &[
    // 1: objects' state, the directory and the class registry.
    "CREATE TABLE dohost.kv (
        object bytea NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (object, key)
    );
    CREATE TABLE dohost.pages (
        object bytea NOT NULL,
        page integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (object, page)
    );
    CREATE TABLE dohost.alarms (
        object bytea PRIMARY KEY,
        time bigint NOT NULL,
        retries integer NOT NULL
    );
    CREATE INDEX alarms_by_time ON dohost.alarms (time, object);
    CREATE TABLE dohost.objects (
        object bytea PRIMARY KEY,
        class text NOT NULL,
        name text
    );
    CREATE TABLE dohost.classes (
        class text PRIMARY KEY,
        number integer NOT NULL UNIQUE,
        secret bytea NOT NULL
    );
    CREATE TABLE dohost.bound (binding text PRIMARY KEY, class text NOT NULL);
    CREATE TABLE dohost.migrations (position integer PRIMARY KEY, tag text NOT NULL);",
    // 2: the cluster: its nodes, and one lease per shard (see cluster.rs).
    "CREATE TABLE dohost.nodes (
        node text PRIMARY KEY,
        address text NOT NULL,
        heartbeat timestamptz NOT NULL,
        draining boolean NOT NULL DEFAULT false
    );
    CREATE TABLE dohost.leases (
        shard integer PRIMARY KEY,
        owner text,
        epoch bigint NOT NULL DEFAULT 0,
        expires timestamptz NOT NULL DEFAULT 'epoch'
    );",
    // 3: history for point-in-time recovery (see history.rs).
    "CREATE SEQUENCE dohost.history_bookmarks MINVALUE 1;
    CREATE TABLE dohost.history (
        object bytea NOT NULL,
        bookmark bigint NOT NULL,
        kind smallint NOT NULL,
        item bytea NOT NULL,
        value bytea,
        PRIMARY KEY (object, bookmark, kind, item)
    );
    CREATE TABLE dohost.history_commits (
        bookmark bigint PRIMARY KEY,
        time bigint NOT NULL,
        objects bytea[] NOT NULL,
        bytes bigint NOT NULL,
        counted boolean NOT NULL DEFAULT false
    );
    CREATE INDEX history_commits_by_time ON dohost.history_commits (time, bookmark);
    CREATE INDEX history_commits_uncounted ON dohost.history_commits (bookmark)
        WHERE NOT counted;
    CREATE TABLE dohost.history_state (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        enabled boolean NOT NULL,
        floor bigint NOT NULL,
        floor_time bigint NOT NULL,
        commits bigint NOT NULL,
        bytes bigint NOT NULL
    );
    INSERT INTO dohost.history_state (enabled, floor, floor_time, commits, bytes)
        VALUES (false, 0, 0, 0, 0);",
];

/// The schema version this dohost reads and writes.
pub(super) const VERSION: i64 = STEPS.len() as i64;

/// Creates the schema, or brings it up to [`VERSION`].
pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let err = |e: tokio_postgres::Error| pg_error("creating the dohost schema", &e);
    let txn = client.transaction().await.map_err(err)?;
    // `IF NOT EXISTS` would send a notice each start.
    txn.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(err)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    txn.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS dohost;
         CREATE TABLE IF NOT EXISTS dohost.meta (key text PRIMARY KEY, value bigint NOT NULL);",
    )
    .await
    .map_err(err)?;
    let found: i64 = txn
        .query_opt("SELECT value FROM dohost.meta WHERE key = 'schema'", &[])
        .await
        .map_err(err)?
        .map_or(0, |row| row.get(0));
    if found > VERSION {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "the PostgreSQL database has dohost schema version {found}, written by a newer dohost; this one knows version {VERSION}: run the newer dohost"
            ),
        ));
    }
    for (i, step) in STEPS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        txn.batch_execute(step).await.map_err(err)?;
        tracing::info!("PostgreSQL: dohost schema version {}", i + 1);
    }
    txn.execute(
        "INSERT INTO dohost.meta (key, value) VALUES ('schema', $1)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&VERSION],
    )
    .await
    .map_err(err)?;
    txn.commit().await.map_err(err)
}
