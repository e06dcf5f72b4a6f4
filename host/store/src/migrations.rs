//! Migrations: the rules by which `[[migrations]]` and the bindings change
//! the class registry ([`crate::Registry`]) when a host starts. [`plan`] is
//! pure, so every rule is tested without a database; [`crate::prepare`]
//! applies its result in one write transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::registry::{NamespaceRecord, Registry};

/// One `[[migrations]]` entry: changes to the classes of the data directory,
/// applied once (recorded by `tag`) and in the order of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// The migration's name, unique in the file.
    pub tag: String,
    /// `new_classes`: classes that start with no objects. dohost gives every
    /// class both the KV and the SQL API; these keep Cloudflare's KV-backed
    /// limit on a value (128 KiB).
    pub new_classes: Vec<String>,
    /// `new_sqlite_classes`: the same, SQLite-backed as on Cloudflare: a key
    /// and its value may take 2 MB together.
    pub new_sqlite_classes: Vec<String>,
    /// `renamed_classes` and `transferred_classes`: (from, to) pairs; the
    /// objects of `from` keep their ids and state under `to`.
    pub renamed_classes: Vec<(String, String)>,
    /// `deleted_classes`: classes whose objects, storage and alarms are
    /// deleted.
    pub deleted_classes: Vec<String>,
}

/// The classes that `migrations` leave SQLite-backed: made by
/// `new_sqlite_classes`, followed through renames, unless deleted since.
pub fn sqlite_classes(migrations: &[Migration]) -> BTreeSet<String> {
    let mut classes = BTreeSet::new();
    for m in migrations {
        classes.extend(m.new_sqlite_classes.iter().cloned());
        for (from, to) in &m.renamed_classes {
            if classes.remove(from) {
                classes.insert(to.clone());
            }
        }
        for class in &m.deleted_classes {
            classes.remove(class);
        }
    }
    classes
}

/// A binding as the registry sees it: its class and what its component
/// exports.
#[derive(Clone, Debug)]
pub struct Binding<'a> {
    /// The binding's name, e.g. `COUNTER`.
    pub name: &'a str,
    /// The class it binds.
    pub class: &'a str,
    /// The classes its component exports.
    pub exports: &'a [String],
}

/// What starting a host does to the registry.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The registry afterwards.
    pub(crate) registry: Registry,
    /// Classes deleted, with their namespace numbers: their storage goes.
    pub(crate) deleted: Vec<(String, u32)>,
    /// What changed, for the log.
    pub(crate) changes: Vec<String>,
    /// What dohost decided on its own (a detected rename), for the log's
    /// warnings.
    pub(crate) detected: Vec<String>,
}

/// Applies `migrations` not applied yet and the bindings to `registry`.
/// `objects_of` counts the objects of a namespace. `source` names the
/// configuration in errors. Pure, so every rule is tested without a host.
pub(crate) fn plan(
    mut registry: Registry,
    migrations: &[Migration],
    bindings: &[Binding<'_>],
    objects_of: &dyn Fn(u32) -> Result<u64>,
    source: &str,
) -> Result<Plan> {
    let refuse = |message: String| Err(Error::config(format!("{source}: {message}")));
    for b in bindings {
        if !b.exports.iter().any(|c| c == b.class) {
            let exports = if b.exports.is_empty() {
                "no classes".to_owned()
            } else {
                b.exports.join(", ")
            };
            return refuse(format!(
                "binding {}: class_name = {:?} is not exported by its component, which exports {exports}; set class_name to an exported class, or export the class (dohost_sdk::export_objects!)",
                b.name, b.class
            ));
        }
        if let Some(other) = bindings
            .iter()
            .find(|o| o.class == b.class && o.name != b.name)
        {
            return refuse(format!(
                "bindings {} and {} both bind class {}; bind each class once (one binding is one namespace)",
                b.name, other.name, b.class
            ));
        }
    }
    let bound_to = |class: &str| bindings.iter().find(|b| b.class == class);

    for (i, tag) in registry.applied.iter().enumerate() {
        match migrations.get(i) {
            Some(m) if &m.tag == tag => {}
            Some(m) => {
                return refuse(format!(
                    "migrations[{i}] has tag {:?}, but the data directory applied {tag:?} in that place; migrations apply once and in order, so keep the applied ones as they were and add new ones at the end",
                    m.tag
                ));
            }
            None => {
                return refuse(format!(
                    "the data directory applied migration {tag:?}, which [[migrations]] no longer lists; keep applied migrations in the file and add new ones after them"
                ));
            }
        }
    }

    let mut changes = Vec::new();
    let mut detected = Vec::new();
    let mut deleted = Vec::new();
    // Classes created by migrations in this start: each must end up bound.
    let mut created: BTreeMap<String, String> = BTreeMap::new();
    for m in &migrations[registry.applied.len()..] {
        let tag = &m.tag;
        for class in m.new_classes.iter().chain(&m.new_sqlite_classes) {
            if !registry.classes.contains_key(class) {
                registry.create(class);
                created.insert(class.clone(), tag.clone());
                changes.push(format!("migration {tag}: new class {class}"));
            }
        }
        for (from, to) in &m.renamed_classes {
            if !registry.classes.contains_key(from) {
                return refuse(format!(
                    "migration {tag:?} renames class {from}, which the data directory does not have (no earlier migration or binding created it); fix `from`, or drop the rename"
                ));
            }
            if registry.classes.contains_key(to) {
                return refuse(format!(
                    "migration {tag:?} renames class {from} to {to}, but {to} already has a namespace in the data directory; rename to a new name, or delete {to} first (deleted_classes)"
                ));
            }
            registry.rename(from, to);
            if let Some(tag) = created.remove(from) {
                created.insert(to.clone(), tag);
            }
            changes.push(format!(
                "migration {tag}: class {from} renamed to {to}; its objects keep their state"
            ));
        }
        for class in &m.deleted_classes {
            if let Some(b) = bound_to(class) {
                return refuse(format!(
                    "migration {tag:?} deletes class {class}, but binding {} still uses it; remove the binding, or take {class} out of deleted_classes",
                    b.name
                ));
            }
            let Some(ns) = registry.classes.remove(class) else {
                return refuse(format!(
                    "migration {tag:?} deletes class {class}, which the data directory does not have; fix the name, or drop it from deleted_classes"
                ));
            };
            created.remove(class);
            let count = objects_of(ns.number)?;
            deleted.push((class.clone(), ns.number));
            changes.push(format!(
                "migration {tag}: class {class} deleted with its {count} object(s), their storage and alarms"
            ));
        }
        registry.applied.push(tag.clone());
    }

    for b in bindings {
        if registry.classes.contains_key(b.class) {
            continue;
        }
        let previous = registry.bound.get(b.name).cloned();
        match previous {
            Some(old)
                if registry.classes.contains_key(&old)
                    && !b.exports.contains(&old)
                    && bound_to(&old).is_none() =>
            {
                registry.rename(&old, b.class);
                detected.push(format!(
                    "class {old} renamed to {new}: binding {binding} now names {new} and its component no longer exports {old}, so {old}'s objects keep their state as {new}; record it with [[migrations]] renamed_classes = [{{ from = \"{old}\", to = \"{new}\" }}]",
                    new = b.class,
                    binding = b.name,
                ));
            }
            _ => {
                registry.create(b.class);
                changes.push(format!("new class {} (binding {})", b.class, b.name));
            }
        }
    }

    let unbound: Vec<(String, NamespaceRecord)> = registry
        .classes
        .iter()
        .filter(|(class, _)| bound_to(class).is_none())
        .map(|(class, ns)| (class.clone(), *ns))
        .collect();
    for (class, ns) in unbound {
        let count = objects_of(ns.number)?;
        if count > 0 {
            let was = registry
                .bound
                .iter()
                .find(|(_, c)| **c == class)
                .map(|(b, _)| format!(" (bound as {b} before)"))
                .unwrap_or_default();
            return refuse(format!(
                "the data directory holds {count} object(s) of class {class}{was}, but no binding uses the class; bind it again, rename it (renamed_classes), delete its objects with a migration (deleted_classes = [\"{class}\"]), or give a different application its own data directory (--data)"
            ));
        }
        if let Some(tag) = created.get(&class) {
            return refuse(format!(
                "migration {tag:?} creates class {class}, which no binding uses; bind it (class_name), fix the name, or rename it in a later migration"
            ));
        }
        registry.classes.remove(&class);
    }
    registry.bound = bindings
        .iter()
        .map(|b| (b.name.to_owned(), b.class.to_owned()))
        .collect();
    Ok(Plan {
        registry,
        deleted,
        changes,
        detected,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn classes(plan: &Plan) -> BTreeSet<&str> {
        plan.registry.classes.keys().map(String::as_str).collect()
    }

    fn migration(tag: &str) -> Migration {
        Migration {
            tag: tag.into(),
            ..Migration::default()
        }
    }

    fn exports(classes: &[&str]) -> Vec<String> {
        classes.iter().map(|c| (*c).to_owned()).collect()
    }

    fn none(_: u32) -> Result<u64> {
        Ok(0)
    }

    fn some(_: u32) -> Result<u64> {
        Ok(3)
    }

    fn start(
        registry: Registry,
        migrations: &[Migration],
        bindings: &[Binding<'_>],
    ) -> Result<Plan> {
        plan(registry, migrations, bindings, &some, "dohost.toml")
    }

    #[test]
    fn a_binding_creates_its_class_and_keeps_it_across_starts() {
        let ex = exports(&["Counter"]);
        let b = [Binding {
            name: "COUNTER",
            class: "Counter",
            exports: &ex,
        }];
        let first = start(Registry::default(), &[], &b).unwrap();
        assert_eq!(classes(&first), BTreeSet::from(["Counter"]));
        let again = start(first.registry.clone(), &[], &b).unwrap();
        assert_eq!(again.registry, first.registry);
        assert!(again.changes.is_empty());
    }

    #[test]
    fn a_rename_is_detected_when_the_component_drops_the_old_class() {
        let old = exports(&["Counter"]);
        let first = start(
            Registry::default(),
            &[],
            &[Binding {
                name: "COUNTER",
                class: "Counter",
                exports: &old,
            }],
        )
        .unwrap();
        let number = first.registry.classes["Counter"].number;
        let new = exports(&["AdvancedCounter"]);
        let renamed = start(
            first.registry.clone(),
            &[],
            &[Binding {
                name: "COUNTER",
                class: "AdvancedCounter",
                exports: &new,
            }],
        )
        .unwrap();
        assert_eq!(renamed.registry.classes["AdvancedCounter"].number, number);
        assert!(
            renamed.detected[0].contains("renamed_classes"),
            "{:?}",
            renamed.detected
        );

        // Still exporting the old class: not a rename, and the old class's
        // objects would be orphaned.
        let both = exports(&["Counter", "AdvancedCounter"]);
        let err = start(
            first.registry,
            &[],
            &[Binding {
                name: "COUNTER",
                class: "AdvancedCounter",
                exports: &both,
            }],
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("3 object(s) of class Counter (bound as COUNTER before)"),
            "{err}"
        );
    }

    #[test]
    fn migrations_rename_delete_and_record_their_tags() {
        let ex = exports(&["B", "Keep"]);
        let b = [
            Binding {
                name: "B",
                class: "B",
                exports: &ex,
            },
            Binding {
                name: "KEEP",
                class: "Keep",
                exports: &ex,
            },
        ];
        let mut v1 = migration("v1");
        v1.new_classes = exports(&["A", "Keep", "Gone"]);
        let mut v2 = migration("v2");
        v2.renamed_classes = vec![("A".into(), "B".into())];
        v2.deleted_classes = exports(&["Gone"]);
        let done = start(Registry::default(), &[v1.clone(), v2.clone()], &b).unwrap();
        assert_eq!(classes(&done), BTreeSet::from(["B", "Keep"]));
        assert_eq!(done.registry.applied, ["v1", "v2"]);
        assert_eq!(done.deleted.len(), 1);
        assert_eq!(done.registry.classes["B"].number, 0, "A's namespace");

        // Applied once: a second start changes nothing.
        let again = start(done.registry.clone(), &[v1.clone(), v2], &b).unwrap();
        assert_eq!(again.registry, done.registry);
        assert!(again.deleted.is_empty());

        // Applied migrations cannot go away or change places.
        let err = start(done.registry.clone(), &[v1], &b).unwrap_err();
        assert!(err.message().contains("no longer lists"), "{err}");
        let err = start(done.registry, &[migration("x"), migration("y")], &b).unwrap_err();
        assert!(
            err.message().contains("applied \"v1\" in that place"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_configurations_are_refused_with_the_fix() {
        let ex = exports(&["Counter"]);
        let counter = [Binding {
            name: "COUNTER",
            class: "Counter",
            exports: &ex,
        }];
        let cases: Vec<(Vec<Binding<'_>>, Vec<Migration>, &str)> = vec![
            (
                vec![Binding {
                    name: "COUNTER",
                    class: "Countr",
                    exports: &ex,
                }],
                vec![],
                "class_name = \"Countr\" is not exported by its component, which exports Counter",
            ),
            (
                vec![
                    counter[0].clone(),
                    Binding {
                        name: "OTHER",
                        class: "Counter",
                        exports: &ex,
                    },
                ],
                vec![],
                "both bind class Counter",
            ),
            (
                counter.to_vec(),
                vec![Migration {
                    renamed_classes: vec![("Nope".into(), "Counter".into())],
                    ..migration("v1")
                }],
                "renames class Nope, which the data directory does not have",
            ),
            (
                counter.to_vec(),
                vec![Migration {
                    deleted_classes: exports(&["Nope"]),
                    ..migration("v1")
                }],
                "deletes class Nope, which the data directory does not have",
            ),
            (
                counter.to_vec(),
                vec![Migration {
                    deleted_classes: exports(&["Counter"]),
                    ..migration("v1")
                }],
                "binding COUNTER still uses it",
            ),
            (
                counter.to_vec(),
                vec![Migration {
                    new_classes: exports(&["Countr"]),
                    ..migration("v1")
                }],
                "creates class Countr, which no binding uses",
            ),
        ];
        for (bindings, migrations, expected) in cases {
            let err = plan(
                Registry::default(),
                &migrations,
                &bindings,
                &none,
                "dohost.toml",
            )
            .unwrap_err();
            assert!(err.message().starts_with("dohost.toml: "), "{err}");
            assert!(
                err.message().contains(expected),
                "{err}\nexpected: {expected}"
            );
        }
    }

    #[test]
    fn an_unbound_class_without_objects_is_forgotten() {
        let ex = exports(&["A", "B"]);
        let first = plan(
            Registry::default(),
            &[],
            &[
                Binding {
                    name: "A",
                    class: "A",
                    exports: &ex,
                },
                Binding {
                    name: "B",
                    class: "B",
                    exports: &ex,
                },
            ],
            &none,
            "f",
        )
        .unwrap();
        let later = plan(
            first.registry,
            &[],
            &[Binding {
                name: "A",
                class: "A",
                exports: &ex,
            }],
            &none,
            "f",
        )
        .unwrap();
        assert_eq!(classes(&later), BTreeSet::from(["A"]));
    }

    #[test]
    fn sqlite_backed_classes_follow_renames_and_deletions() {
        let v1 = Migration {
            new_classes: vec!["Kv".into()],
            new_sqlite_classes: vec!["Chat".into(), "Old".into()],
            ..migration("v1")
        };
        let v2 = Migration {
            renamed_classes: vec![
                ("Chat".into(), "Room".into()),
                ("Kv".into(), "Store".into()),
            ],
            deleted_classes: vec!["Old".into()],
            ..migration("v2")
        };
        let classes = sqlite_classes(&[v1, v2]);
        assert_eq!(classes.into_iter().collect::<Vec<_>>(), ["Room"]);
    }
}
