//! The class registry: which class owns which namespace of the data
//! directory, and how `[[migrations]]` and a detected rename change that.
//!
//! Storage is keyed by namespace number ([`crate::ObjectKey`]), never by a
//! class or binding name, so renaming a class only changes the registry
//! kept in the store (in redb, these tables):
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

use crate::backend::RegistryTxn;
use crate::error::{Error, Result};
use crate::migrations::{Binding, Migration, plan};
use crate::store::Store;

/// A class's namespace in the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Its number, the first four bytes of its objects' keys.
    pub number: u32,
    /// The secret its ids are keyed with.
    pub secret: [u8; 32],
}

impl NamespaceRecord {
    pub(crate) fn encode(&self) -> [u8; 36] {
        let mut v = [0u8; 36];
        v[..4].copy_from_slice(&self.number.to_be_bytes());
        v[4..].copy_from_slice(&self.secret);
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<NamespaceRecord> {
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
    fn read(txn: &dyn RegistryTxn, bindings: &[Binding<'_>]) -> Result<(Registry, bool)> {
        let mut registry = txn.read()?;
        let legacy = txn.take_legacy_namespaces()?;
        let took_over = !legacy.is_empty();
        for (binding, record) in legacy {
            let Some(ns) = NamespaceRecord::decode(&record) else {
                continue;
            };
            let class = match bindings.iter().find(|b| b.name == binding) {
                Some(b) => Some(b.class.to_owned()),
                None => txn.recorded_class(ns.number)?,
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
    let mut prepared = None;
    store.backend().registry(&mut |txn| {
        let (registry, took_over) = Registry::read(txn, bindings)?;
        let before = registry.clone();
        let plan = plan(
            registry,
            migrations,
            bindings,
            &|number| txn.count_objects(number),
            source,
        )?;
        let changed = took_over || plan.registry != before || !plan.deleted.is_empty();
        if changed {
            for (_, number) in &plan.deleted {
                txn.delete_namespace(*number)?;
            }
            txn.write(&plan.registry)?;
        }
        prepared = Some((plan, changed));
        Ok(changed)
    })?;
    let Some((plan, changed)) = prepared else {
        return Err(Error::storage("migrations", "the registry was not read"));
    };
    if changed {
        for change in &plan.changes {
            tracing::info!("{change}");
        }
        for decision in &plan.detected {
            tracing::warn!("{decision}");
        }
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
    let mut found = None;
    store.backend().registry(&mut |txn| {
        found = Some(Registry::read(txn, &[])?.0);
        // Not committed: reading the registry this way changes nothing.
        Ok(false)
    })?;
    found.ok_or_else(|| Error::storage("read the class registry", "it was not read"))
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
