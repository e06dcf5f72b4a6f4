//! The class registry: which class owns which namespace of the data
//! directory, and how `[[migrations]]` and a detected rename change that.
//!
//! Storage is keyed by namespace number ([`crate::ObjectKey`]), never by a
//! class or binding name, so renaming a class only changes the registry
//! kept in redb:
//! - `classes`: class name -> namespace number (u32 big-endian) and the
//!   32-byte secret its ids are keyed with.
//! - `bound`: binding name -> the class it was bound to when the host last
//!   started, to detect a rename without a migration.
//! - `migrations`: position (u32 big-endian) -> tag: the migrations
//!   applied, in order.
//!
//! When a host starts, [`prepare`] reads the registry, applies the
//! migrations not applied yet, detects renames, creates the namespaces of
//! new classes, deletes those of deleted classes and checks that no class
//! holding objects is left without a binding, all in one write transaction:
//! a configuration that is refused changes nothing.
//!
//! A rename is detected when a binding keeps its name, its class is new,
//! and its component no longer exports the class the binding had: the
//! objects stay, under the new class name.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::{decode_alarm_time_key, namespace_range};
use crate::migrations::{Binding, Migration, plan};
use crate::store::{ALARM_TIMES, ALARMS, KV, NAMESPACES, OBJECTS, PAGES, Store};

const CLASSES: TableDefinition<&str, &[u8]> = TableDefinition::new("classes");
const BOUND: TableDefinition<&str, &str> = TableDefinition::new("bound");
const MIGRATIONS: TableDefinition<u32, &str> = TableDefinition::new("migrations");

/// A class's namespace in the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Its number, the first four bytes of its objects' keys.
    pub number: u32,
    /// The secret its ids are keyed with.
    pub secret: [u8; 32],
}

impl NamespaceRecord {
    fn encode(&self) -> [u8; 36] {
        let mut v = [0u8; 36];
        v[..4].copy_from_slice(&self.number.to_be_bytes());
        v[4..].copy_from_slice(&self.secret);
        v
    }

    fn decode(v: &[u8]) -> Option<NamespaceRecord> {
        let number = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
        let secret = v.get(4..36)?.try_into().ok()?;
        Some(NamespaceRecord { number, secret })
    }
}

/// The classes of a data directory, what each binding was bound to and the
/// migrations applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Class name -> its namespace.
    pub classes: BTreeMap<String, NamespaceRecord>,
    /// Binding name -> the class it was bound to when the host last
    /// started.
    pub bound: BTreeMap<String, String>,
    /// The tags of the migrations applied, in order.
    pub applied: Vec<String>,
}

impl Registry {
    /// Gives `class` a namespace of its own: the next free number and a
    /// fresh secret.
    pub(crate) fn create(&mut self, class: &str) {
        let number = self
            .classes
            .values()
            .map(|ns| ns.number + 1)
            .max()
            .unwrap_or(0);
        self.classes.insert(
            class.to_owned(),
            NamespaceRecord {
                number,
                secret: rand::random(),
            },
        );
    }

    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        if let Some(ns) = self.classes.remove(from) {
            self.classes.insert(to.to_owned(), ns);
        }
        for class in self.bound.values_mut() {
            if class == from {
                to.clone_into(class);
            }
        }
    }

    /// Reads the registry; namespaces recorded by binding name (before
    /// classes had their own) are taken over under the class they hold.
    /// Also says whether there were such namespaces (the transaction then
    /// holds their removal).
    fn read(txn: &WriteTransaction, bindings: &[Binding<'_>]) -> Result<(Registry, bool)> {
        let err = |e: &dyn std::fmt::Display| Error::storage("reading the class registry", e);
        let mut registry = Registry::default();
        let classes = txn.open_table(CLASSES).map_err(|e| err(&e))?;
        for entry in classes.iter().map_err(|e| err(&e))? {
            let (class, v) = entry.map_err(|e| err(&e))?;
            let ns = NamespaceRecord::decode(v.value())
                .ok_or_else(|| err(&format!("the record of class {} is corrupt", class.value())))?;
            registry.classes.insert(class.value().to_owned(), ns);
        }
        let bound = txn.open_table(BOUND).map_err(|e| err(&e))?;
        for entry in bound.iter().map_err(|e| err(&e))? {
            let (binding, class) = entry.map_err(|e| err(&e))?;
            registry
                .bound
                .insert(binding.value().to_owned(), class.value().to_owned());
        }
        let applied = txn.open_table(MIGRATIONS).map_err(|e| err(&e))?;
        for entry in applied.iter().map_err(|e| err(&e))? {
            let (_, tag) = entry.map_err(|e| err(&e))?;
            registry.applied.push(tag.value().to_owned());
        }
        let legacy = take_legacy_namespaces(txn)?;
        let took_over = !legacy.is_empty();
        for (binding, record) in legacy {
            let Some(ns) = NamespaceRecord::decode(&record) else {
                continue;
            };
            let class = match bindings.iter().find(|b| b.name == binding) {
                Some(b) => Some(b.class.to_owned()),
                None => recorded_class(txn, ns.number)?,
            };
            if let Some(class) = class
                && !registry.classes.contains_key(&class)
            {
                registry.classes.insert(class.clone(), ns);
                registry.bound.insert(binding, class);
            }
        }
        Ok((registry, took_over))
    }

    /// Replaces the stored registry with this one.
    fn write(&self, txn: &WriteTransaction) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::storage("writing the class registry", e);
        let mut classes = txn.open_table(CLASSES).map_err(|e| err(&e))?;
        classes.retain(|_, _| false).map_err(|e| err(&e))?;
        for (class, ns) in &self.classes {
            classes
                .insert(class.as_str(), ns.encode().as_slice())
                .map_err(|e| err(&e))?;
        }
        let mut bound = txn.open_table(BOUND).map_err(|e| err(&e))?;
        bound.retain(|_, _| false).map_err(|e| err(&e))?;
        for (binding, class) in &self.bound {
            bound
                .insert(binding.as_str(), class.as_str())
                .map_err(|e| err(&e))?;
        }
        let mut applied = txn.open_table(MIGRATIONS).map_err(|e| err(&e))?;
        for (i, tag) in self.applied.iter().enumerate() {
            let i = u32::try_from(i).map_err(|e| err(&e))?;
            applied.insert(i, tag.as_str()).map_err(|e| err(&e))?;
        }
        Ok(())
    }
}

/// Brings the data directory's registry up to `migrations` and `bindings`
/// (see the module docs) in one transaction, logs what changed, and
/// returns each bound class's namespace.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming the problem and the fix when the
/// migrations or bindings do not fit the data directory (nothing is
/// changed then), [`crate::ErrorKind::Storage`] if the registry cannot be
/// read or written.
pub fn prepare(
    store: &Store,
    migrations: &[Migration],
    bindings: &[Binding<'_>],
    source: &str,
) -> Result<BTreeMap<String, NamespaceRecord>> {
    let db = store.db()?;
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("begin migrations", e))?;
    let (registry, took_over) = Registry::read(&txn, bindings)?;
    let before = registry.clone();
    let plan = plan(
        registry,
        migrations,
        bindings,
        &|number| count_objects(&txn, number),
        source,
    )?;
    if !took_over && plan.registry == before && plan.deleted.is_empty() {
        return Ok(plan.registry.classes);
    }
    for (_, number) in &plan.deleted {
        delete_namespace(&txn, *number)?;
    }
    plan.registry.write(&txn)?;
    txn.commit()
        .map_err(|e| Error::storage("commit migrations", e))?;
    for change in &plan.changes {
        tracing::info!("{change}");
    }
    for decision in &plan.detected {
        tracing::warn!("{decision}");
    }
    Ok(plan.registry.classes)
}

/// The registry as stored, without changing anything (for inspecting a
/// stopped server's data directory).
///
/// # Errors
///
/// [`crate::ErrorKind::Storage`] if the registry cannot be read.
pub fn read_registry(store: &Store) -> Result<Registry> {
    let db = store.db()?;
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("begin reading the class registry", e))?;
    let (registry, _) = Registry::read(&txn, &[])?;
    // Not committed: reading the registry this way changes nothing.
    drop(txn);
    Ok(registry)
}

/// Removes and returns the namespaces recorded by binding name, as data
/// directories did before classes had namespaces of their own: (binding,
/// record), the record encoded as [`NamespaceRecord`] is.
fn take_legacy_namespaces(txn: &redb::WriteTransaction) -> Result<Vec<(String, Vec<u8>)>> {
    let err = |e: &dyn std::fmt::Display| Error::storage("reading old namespaces", e);
    let mut table = txn.open_table(NAMESPACES).map_err(|e| err(&e))?;
    let mut found = Vec::new();
    for entry in table.iter().map_err(|e| err(&e))? {
        let (binding, v) = entry.map_err(|e| err(&e))?;
        found.push((binding.value().to_owned(), v.value().to_vec()));
    }
    table.retain(|_, _| false).map_err(|e| err(&e))?;
    Ok(found)
}

/// The class an object of namespace `number` recorded, if any.
fn recorded_class(txn: &redb::WriteTransaction, number: u32) -> Result<Option<String>> {
    let table = txn
        .open_table(OBJECTS)
        .map_err(|e| Error::storage("objects", e))?;
    let (lo, _) = namespace_range(number);
    let first = table
        .range::<&[u8]>(lo.as_slice()..)
        .map_err(|e| Error::storage("objects", e))?
        .next()
        .transpose()
        .map_err(|e| Error::storage("objects", e))?;
    Ok(first
        .filter(|(k, _)| k.value().starts_with(&lo))
        .and_then(|(_, v)| serde_json::from_slice::<ObjectRecord>(v.value()).ok())
        .map(|r| r.class))
}

/// How many objects of namespace `number` the directory holds.
fn count_objects(txn: &redb::WriteTransaction, number: u32) -> Result<u64> {
    let table = txn
        .open_table(OBJECTS)
        .map_err(|e| Error::storage("objects", e))?;
    let (lo, hi) = namespace_range(number);
    let mut count = 0;
    for entry in table
        .range::<&[u8]>(lo.as_slice()..hi.as_slice())
        .map_err(|e| Error::storage("objects", e))?
    {
        entry.map_err(|e| Error::storage("objects", e))?;
        count += 1;
    }
    Ok(count)
}

/// Removes every row of namespace `number`: keys, SQL pages, alarms with
/// their index entries, and the directory.
fn delete_namespace(txn: &redb::WriteTransaction, number: u32) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::storage("deleting a namespace", e);
    let (lo, hi) = namespace_range(number);
    for table in [KV, PAGES, ALARMS, OBJECTS] {
        let mut table = txn.open_table(table).map_err(|e| err(&e))?;
        table
            .retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)
            .map_err(|e| err(&e))?;
    }
    let mut times = txn.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
    times
        .retain(|k, _| decode_alarm_time_key(k).is_none_or(|(_, o)| o.namespace() != number))
        .map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::TableDefinition;

    use super::*;

    #[test]
    fn namespaces_recorded_by_binding_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dohost.redb");
        let secret = [7u8; 32];
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let legacy: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
                let mut table = txn.open_table(legacy).unwrap();
                let mut v = 3u32.to_be_bytes().to_vec();
                v.extend_from_slice(&secret);
                table.insert("COUNTER", v.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (store, _stopped) =
            Store::open(&path, None, std::sync::Arc::new(|_: &[_]| {})).unwrap();
        let ex = vec!["Counter".to_owned()];
        let b = [Binding {
            name: "COUNTER",
            class: "Counter",
            exports: &ex,
        }];
        let classes = prepare(&store, &[], &b, "f").unwrap();
        assert_eq!(classes["Counter"], NamespaceRecord { number: 3, secret });
        // Kept: the registry holds it now, not the old table.
        let registry = read_registry(&store).unwrap();
        assert_eq!(registry.classes["Counter"].number, 3);
        assert_eq!(registry.bound["COUNTER"], "Counter");
        store.close();
    }
}
