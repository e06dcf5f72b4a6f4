//! What guest SQL may do: the authorizer refuses statements that would
//! manage transactions, attach files, create temporary objects or change how
//! the database is stored, with a message saying what to use instead.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// What the authorizer lets guest SQL do. Host statements (savepoints) run
/// with `trusted` set.
#[derive(Default)]
pub(super) struct Policy {
    pub(super) trusted: AtomicBool,
    /// Why the last statement was refused.
    pub(super) denied: Mutex<Option<String>>,
}

/// Pragmas guest SQL may read or set.
const SETTABLE_PRAGMAS: &[&str] = &[
    "analysis_limit",
    "application_id",
    "automatic_index",
    "case_sensitive_like",
    "defer_foreign_keys",
    "foreign_keys",
    "ignore_check_constraints",
    "legacy_alter_table",
    "optimize",
    "recursive_triggers",
    "reverse_unordered_selects",
    "user_version",
];

/// Pragmas guest SQL may run to inspect the database (any argument names
/// what to inspect; nothing is changed).
const INSPECTING_PRAGMAS: &[&str] = &[
    "collation_list",
    "compile_options",
    "data_version",
    "foreign_key_check",
    "foreign_key_list",
    "freelist_count",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "pragma_list",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// Pragmas guest SQL may read but not set.
const READABLE_PRAGMAS: &[&str] = &[
    "encoding",
    "max_page_count",
    "page_count",
    "page_size",
    "schema_version",
];

fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT cannot be used in exec: group statements \
             with the storage transaction API (transaction_sync), which runs them in one \
             SQLite savepoint together with the KV writes"
                .into(),
        ),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH cannot be used: an object has exactly one database".into())
        }
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Some(
            "temporary tables, indexes, triggers and views cannot be created: use ordinary \
             ones (they live in the object's database)"
                .into(),
        ),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let allowed = SETTABLE_PRAGMAS.contains(&name.as_str())
                || INSPECTING_PRAGMAS.contains(&name.as_str())
                || (READABLE_PRAGMAS.contains(&name.as_str()) && pragma_value.is_none());
            (!allowed).then(|| {
                format!(
                    "PRAGMA {name} cannot be used{}: the host manages the database's storage \
                     settings",
                    if pragma_value.is_some() {
                        " with a value"
                    } else {
                        ""
                    }
                )
            })
        }
        _ => None,
    }
}

pub(super) fn authorize(policy: &Policy, context: AuthContext<'_>) -> Authorization {
    if policy.trusted.load(Ordering::Relaxed) {
        return Authorization::Allow;
    }
    match refusal(&context.action) {
        Some(reason) => {
            *policy.denied.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            Authorization::Deny
        }
        None => Authorization::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_sql_may_not_manage_storage() {
        let pragma = |name, value| AuthAction::Pragma {
            pragma_name: name,
            pragma_value: value,
        };
        assert!(refusal(&pragma("user_version", Some("2"))).is_none());
        assert!(refusal(&pragma("table_info", Some("users"))).is_none());
        assert!(refusal(&pragma("page_size", None)).is_none());
        assert!(refusal(&pragma("page_size", Some("8192"))).is_some());
        assert!(refusal(&pragma("journal_mode", Some("wal"))).is_some());
        assert!(refusal(&pragma("WRITABLE_SCHEMA", Some("1"))).is_some());
    }
}
