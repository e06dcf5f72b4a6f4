//! The class registry in redb: the `classes`, `bound` and `migrations`
//! tables, and the old `namespaces` table taken over on a first start.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{ALARM_TIMES, ALARMS, KV, NAMESPACES, OBJECTS, PAGES};
use crate::backend::RegistryTxn;
use crate::directory::ObjectRecord;
use crate::error::{Error, Result};
use crate::keys::{decode_alarm_time_key, namespace_range};
use crate::registry::{NamespaceRecord, Registry};

const CLASSES: TableDefinition<&str, &[u8]> = TableDefinition::new("classes");
const BOUND: TableDefinition<&str, &str> = TableDefinition::new("bound");
const MIGRATIONS: TableDefinition<u32, &str> = TableDefinition::new("migrations");

/// The registry inside one redb write transaction.
pub(super) struct RedbRegistry<'a>(pub(super) &'a WriteTransaction);

impl RegistryTxn for RedbRegistry<'_> {
    fn read(&self) -> Result<Registry> {
        let txn = self.0;
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
        Ok(registry)
    }

    fn take_legacy_namespaces(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let err = |e: &dyn std::fmt::Display| Error::storage("reading old namespaces", e);
        let mut table = self.0.open_table(NAMESPACES).map_err(|e| err(&e))?;
        let mut found = Vec::new();
        for entry in table.iter().map_err(|e| err(&e))? {
            let (binding, v) = entry.map_err(|e| err(&e))?;
            found.push((binding.value().to_owned(), v.value().to_vec()));
        }
        table.retain(|_, _| false).map_err(|e| err(&e))?;
        Ok(found)
    }

    fn recorded_class(&self, number: u32) -> Result<Option<String>> {
        let table = self
            .0
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

    fn count_objects(&self, number: u32) -> Result<u64> {
        let table = self
            .0
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

    fn delete_namespace(&self, number: u32) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::storage("deleting a namespace", e);
        let (lo, hi) = namespace_range(number);
        for table in [KV, PAGES, ALARMS, OBJECTS] {
            let mut table = self.0.open_table(table).map_err(|e| err(&e))?;
            table
                .retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)
                .map_err(|e| err(&e))?;
        }
        let mut times = self.0.open_table(ALARM_TIMES).map_err(|e| err(&e))?;
        times
            .retain(|k, _| decode_alarm_time_key(k).is_none_or(|(_, o)| o.namespace() != number))
            .map_err(|e| err(&e))?;
        Ok(())
    }

    fn write(&self, registry: &Registry) -> Result<()> {
        let txn = self.0;
        let err = |e: &dyn std::fmt::Display| Error::storage("writing the class registry", e);
        let mut classes = txn.open_table(CLASSES).map_err(|e| err(&e))?;
        classes.retain(|_, _| false).map_err(|e| err(&e))?;
        for (class, ns) in &registry.classes {
            classes
                .insert(class.as_str(), ns.encode().as_slice())
                .map_err(|e| err(&e))?;
        }
        let mut bound = txn.open_table(BOUND).map_err(|e| err(&e))?;
        bound.retain(|_, _| false).map_err(|e| err(&e))?;
        for (binding, class) in &registry.bound {
            bound
                .insert(binding.as_str(), class.as_str())
                .map_err(|e| err(&e))?;
        }
        let mut applied = txn.open_table(MIGRATIONS).map_err(|e| err(&e))?;
        for (i, tag) in registry.applied.iter().enumerate() {
            let i = u32::try_from(i).map_err(|e| err(&e))?;
            applied.insert(i, tag.as_str()).map_err(|e| err(&e))?;
        }
        Ok(())
    }
}
