//! The class registry in PostgreSQL (`dohost.classes`, `dohost.bound`,
//! `dohost.migrations`), changed in one transaction that holds the schema's
//! advisory lock, so nodes starting at once apply migrations one at a time.

use tokio_postgres::Client;

use super::schema::SCHEMA_LOCK;
use super::{PostgresBackend, pg_error};
use crate::backend::RegistryTxn;
use crate::error::{Error, Result};
use crate::keys::namespace_range;
use crate::registry::{NamespaceRecord, Registry};

/// Runs `work` on the registry in one transaction (see [`crate::Backend::registry`]).
pub(super) fn run(
    backend: &PostgresBackend,
    work: &mut dyn FnMut(&dyn RegistryTxn) -> Result<bool>,
) -> Result<()> {
    let client = backend.connect_writer()?;
    let txn = PostgresRegistry { backend, client };
    txn.execute("BEGIN", &[])?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    match work(&txn) {
        Ok(true) => txn.execute("COMMIT", &[]).map(drop),
        Ok(false) => txn.execute("ROLLBACK", &[]).map(drop),
        Err(e) => {
            let _ = txn.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
}

/// The registry inside one PostgreSQL transaction on a connection of its
/// own.
struct PostgresRegistry<'a> {
    backend: &'a PostgresBackend,
    client: Client,
}

type Params<'p> = &'p [&'p (dyn tokio_postgres::types::ToSql + Sync)];

impl PostgresRegistry<'_> {
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let client = &self.client;
        self.backend
            .wait_local(async move { client.execute(sql, params).await })
            .map_err(|e| pg_error("the class registry", &e))
    }

    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<tokio_postgres::Row>> {
        let client = &self.client;
        self.backend
            .wait_local(async move { client.query(sql, params).await })
            .map_err(|e| pg_error("the class registry", &e))
    }
}

impl RegistryTxn for PostgresRegistry<'_> {
    fn read(&self) -> Result<Registry> {
        let mut registry = Registry::default();
        for row in self.query("SELECT class, number, secret FROM dohost.classes", &[])? {
            let class: String = row.get(0);
            let number: i32 = row.get(1);
            let secret: Vec<u8> = row.get(2);
            let record = NamespaceRecord {
                number: u32::try_from(number).unwrap_or(0),
                secret: secret.try_into().map_err(|_| {
                    Error::storage(
                        "reading the class registry",
                        format!("the record of class {class} is corrupt"),
                    )
                })?,
            };
            registry.classes.insert(class, record);
        }
        for row in self.query("SELECT binding, class FROM dohost.bound", &[])? {
            registry.bound.insert(row.get(0), row.get(1));
        }
        for row in self.query("SELECT tag FROM dohost.migrations ORDER BY position", &[])? {
            registry.applied.push(row.get(0));
        }
        Ok(registry)
    }

    fn recorded_class(&self, number: u32) -> Result<Option<String>> {
        let (lo, hi) = namespace_range(number);
        let rows = self.query(
            "SELECT class FROM dohost.objects WHERE object >= $1 AND object < $2 ORDER BY object LIMIT 1",
            &[&lo, &hi],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn count_objects(&self, number: u32) -> Result<u64> {
        let (lo, hi) = namespace_range(number);
        let rows = self.query(
            "SELECT count(*) FROM dohost.objects WHERE object >= $1 AND object < $2",
            &[&lo, &hi],
        )?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn delete_namespace(&self, number: u32) -> Result<()> {
        let (lo, hi) = namespace_range(number);
        for table in ["kv", "pages", "alarms", "objects"] {
            self.execute(
                &format!("DELETE FROM dohost.{table} WHERE object >= $1 AND object < $2"),
                &[&lo, &hi],
            )?;
        }
        Ok(())
    }

    fn write(&self, registry: &Registry) -> Result<()> {
        self.execute("DELETE FROM dohost.classes", &[])?;
        for (class, ns) in &registry.classes {
            let number = i32::try_from(ns.number).map_err(|e| Error::storage("registry", e))?;
            self.execute(
                "INSERT INTO dohost.classes (class, number, secret) VALUES ($1, $2, $3)",
                &[class, &number, &ns.secret.as_slice()],
            )?;
        }
        self.execute("DELETE FROM dohost.bound", &[])?;
        for (binding, class) in &registry.bound {
            self.execute(
                "INSERT INTO dohost.bound (binding, class) VALUES ($1, $2)",
                &[binding, class],
            )?;
        }
        self.execute("DELETE FROM dohost.migrations", &[])?;
        for (i, tag) in registry.applied.iter().enumerate() {
            let position = i32::try_from(i).map_err(|e| Error::storage("registry", e))?;
            self.execute(
                "INSERT INTO dohost.migrations (position, tag) VALUES ($1, $2)",
                &[&position, tag],
            )?;
        }
        Ok(())
    }
}
