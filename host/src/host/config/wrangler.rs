//! wrangler's configuration as it is: `wrangler.toml`, `wrangler.jsonc`
//! and `wrangler.json` read like `dohost.toml`, which has wrangler's shape.
//!
//! A file is first read into a JSON value (TOML, or JSON with comments and
//! trailing commas). [`sift`] then takes out what dohost does not do, one
//! warning line for each key it drops: deployment settings (`routes`,
//! `account_id`, `observability`, ...) and bindings to Cloudflare's other
//! products (KV, R2, D1, Queues, ...), whose names are kept so that code
//! using one fails with an error naming it. What is left is checked
//! field by field, as `dohost.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The configuration files `dohost serve` looks for in a folder, in order:
/// dohost's own, then wrangler's (in the order wrangler itself prefers).
pub const CONFIG_FILES: [&str; 4] = [
    "dohost.toml",
    "wrangler.json",
    "wrangler.jsonc",
    "wrangler.toml",
];

/// The configuration file in `dir`: the first of [`CONFIG_FILES`] there.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming the files looked for when there is
/// none.
pub fn find_config(dir: &Path) -> Result<PathBuf> {
    CONFIG_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::config(format!(
                "{}: no configuration here (looked for {}); give one with --config FILE",
                dir.display(),
                CONFIG_FILES.join(", ")
            ))
        })
}

/// Whether `path` is one of wrangler's files (by its name's extension for
/// JSON; `wrangler.toml` by name), whose keys unknown to dohost are
/// warnings rather than errors.
pub(super) fn is_wrangler_file(path: &Path) -> bool {
    is_json(path)
        || path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("wrangler"))
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "json" || e == "jsonc")
}

/// The file's text as a JSON value: TOML, or for `.json` and `.jsonc`
/// JSON with comments and trailing commas, as wrangler reads them.
pub(super) fn read_value(text: &str, path: &Path) -> Result<Map<String, Value>> {
    let file = path.display();
    let value: Value = if is_json(path) {
        jsonc_parser::parse_to_serde_value(text, &jsonc_parser::ParseOptions::default())
            .map_err(|e| Error::config(format!("{file}: {e}")))?
    } else {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| Error::config(format!("{file}: {}", e.to_string().trim_end())))?;
        serde_json::to_value(table)
            .map_err(|e| Error::config(format!("{file}: cannot be read: {e}")))?
    };
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(Error::config(format!(
            "{file}: the configuration must be an object of keys, not {}",
            kind(&other)
        ))),
    }
}

/// The top-level keys dohost reads.
const READ: [&str; 16] = [
    "name",
    "main",
    "compatibility_date",
    "compatibility_flags",
    "durable_objects",
    "vars",
    "limits",
    "alarms",
    "migrations",
    "admin",
    "server",
    "outbound",
    "websockets",
    "assets",
    "cluster",
    "storage",
];

/// wrangler's keys for Cloudflare's other products, each a list of
/// bindings (or one binding): the key, the field that names a binding, the
/// product, and what one binding is.
const BINDINGS: [(&str, &str, &str, &str); 22] = [
    (
        "kv_namespaces",
        "binding",
        "KV namespaces",
        "a KV namespace",
    ),
    ("r2_buckets", "binding", "R2 buckets", "an R2 bucket"),
    ("d1_databases", "binding", "D1 databases", "a D1 database"),
    (
        "services",
        "binding",
        "service bindings",
        "a service binding",
    ),
    (
        "vectorize",
        "binding",
        "Vectorize indexes",
        "a Vectorize index",
    ),
    (
        "hyperdrive",
        "binding",
        "Hyperdrive",
        "a Hyperdrive configuration",
    ),
    (
        "analytics_engine_datasets",
        "binding",
        "Analytics Engine",
        "an Analytics Engine dataset",
    ),
    ("ai", "binding", "Workers AI", "the Workers AI binding"),
    (
        "browser",
        "binding",
        "Browser Rendering",
        "the Browser Rendering binding",
    ),
    ("images", "binding", "Images", "the Images binding"),
    (
        "version_metadata",
        "binding",
        "version metadata",
        "the version metadata binding",
    ),
    ("workflows", "binding", "Workflows", "a Workflow"),
    (
        "dispatch_namespaces",
        "binding",
        "dispatch namespaces",
        "a dispatch namespace",
    ),
    (
        "mtls_certificates",
        "binding",
        "mTLS certificates",
        "an mTLS certificate",
    ),
    ("send_email", "name", "Email", "an Email binding"),
    (
        "secrets_store_secrets",
        "binding",
        "Secrets Store",
        "a Secrets Store secret",
    ),
    ("pipelines", "binding", "Pipelines", "a Pipeline"),
    ("ratelimits", "name", "rate limiting", "a rate limiter"),
    (
        "worker_loaders",
        "binding",
        "Worker Loaders",
        "a Worker Loader",
    ),
    ("wasm_modules", "", "wasm modules", "a wasm module"),
    ("text_blobs", "", "text blobs", "a text blob"),
    ("data_blobs", "", "data blobs", "a data blob"),
];

/// wrangler's deployment and build settings, which mean nothing to a
/// server on one's own machine (or that dohost's build does its own way).
const DEPLOYMENT: [&str; 30] = [
    "account_id",
    "workers_dev",
    "preview_urls",
    "route",
    "routes",
    "zone_id",
    "build",
    "dev",
    "env",
    "rules",
    "tsconfig",
    "minify",
    "keep_names",
    "no_bundle",
    "find_additional_modules",
    "base_dir",
    "preserve_file_names",
    "upload_source_maps",
    "keep_vars",
    "send_metrics",
    "logpush",
    "placement",
    "triggers",
    "tail_consumers",
    "streaming_tail_consumers",
    "alias",
    "define",
    "unsafe",
    "containers",
    "compliance_region",
];

/// The compatibility flags dohost honours; others are named in a warning.
/// The `node:` modules are there with or without `nodejs_compat`, and a
/// `.py` module is built with the Python SDK with or without
/// `python_workers`.
const FLAGS: [&str; 3] = ["nodejs_compat", "nodejs_compat_v2", "python_workers"];

/// What [`sift`] took out of a configuration.
#[derive(Debug, Default)]
pub(super) struct Sifted {
    /// One line per key dropped.
    pub warnings: Vec<String>,
    /// Bindings declared for products dohost lacks: name → what it is.
    pub unsupported_bindings: BTreeMap<String, String>,
}

/// Takes out of `config` what dohost does not read, with a warning for
/// each key. A key wrangler does not have either is an error in
/// `dohost.toml` (a typo, most likely) and a warning in wrangler's files
/// (a key of a newer wrangler).
pub(super) fn sift(config: &mut Map<String, Value>, file: &str, wrangler: bool) -> Result<Sifted> {
    let mut sifted = Sifted::default();
    let keys: Vec<String> = config.keys().cloned().collect();
    for key in keys {
        if READ.contains(&key.as_str()) {
            continue;
        }
        if key == "$schema" {
            // An editor's schema hint in wrangler.jsonc: nothing to do.
            config.remove(&key);
            continue;
        }
        let value = config.remove(&key).unwrap_or(Value::Null);
        if let Some((_, field, product, one)) = BINDINGS.iter().find(|(k, ..)| *k == key) {
            let names = binding_names(&key, &value, field);
            for name in &names {
                sifted
                    .unsupported_bindings
                    .insert(name.clone(), format!("{one} ({key})"));
            }
            let named = if names.is_empty() {
                String::new()
            } else {
                format!(
                    "; code that uses env.{} fails with an error naming it",
                    names.join(", env.")
                )
            };
            sifted.warnings.push(format!(
                "{file}: {key}: dohost has no {product}; ignored{named}"
            ));
        } else if key == "queues" {
            let names = binding_names(
                &key,
                value.get("producers").unwrap_or(&Value::Null),
                "binding",
            );
            for name in &names {
                sifted.unsupported_bindings.insert(
                    name.clone(),
                    "a Queues producer (queues.producers)".to_owned(),
                );
            }
            sifted
                .warnings
                .push(format!("{file}: queues: dohost has no Queues; ignored"));
        } else if key == "observability" {
            sift_observability(config, value, file, &mut sifted);
        } else if DEPLOYMENT.contains(&key.as_str()) {
            sifted.warnings.push(format!(
                "{file}: {key}: a Cloudflare deployment or build setting, which dohost does not use; ignored"
            ));
        } else if wrangler {
            sifted
                .warnings
                .push(format!("{file}: {key}: not a key dohost knows; ignored"));
        } else {
            return Err(Error::config(format!(
                "{file}: unknown key `{key}`; dohost reads {}",
                READ.join(", ")
            )));
        }
    }
    if let Some(Value::Array(flags)) = config.get("compatibility_flags") {
        let unknown: Vec<String> = flags
            .iter()
            .filter(|f| !f.as_str().is_some_and(|f| FLAGS.contains(&f)))
            .map(|f| f.to_string())
            .collect();
        if !unknown.is_empty() {
            sifted.warnings.push(format!(
                "{file}: compatibility_flags: dohost does not implement {}; ignored",
                unknown.join(", ")
            ));
        }
    }
    sift_bindings(config, file, &mut sifted);
    if let Some(Value::Object(limits)) = config.get_mut("limits")
        && let Some(subrequests) = limits.remove("subrequests")
    {
        // wrangler's name for dohost's [outbound] max_subrequests.
        let outbound = config
            .entry("outbound")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(outbound) = outbound {
            outbound.entry("max_subrequests").or_insert(subrequests);
        }
    }
    Ok(sifted)
}

/// Keeps dohost's `observability.otlp_endpoint`; Cloudflare's settings
/// there (`enabled`, `logs`, `head_sampling_rate`) get a warning.
fn sift_observability(
    config: &mut Map<String, Value>,
    value: Value,
    file: &str,
    sifted: &mut Sifted,
) {
    let Value::Object(mut table) = value else {
        sifted.warnings.push(format!(
            "{file}: observability: not a table; ignored (dohost reads observability.otlp_endpoint)"
        ));
        return;
    };
    let ours = table.remove("otlp_endpoint");
    if !table.is_empty() {
        let keys: Vec<String> = table.keys().map(|k| format!("observability.{k}")).collect();
        sifted.warnings.push(format!(
            "{file}: {}: Cloudflare's Workers Logs settings, which dohost does not use; ignored (dohost reads observability.otlp_endpoint)",
            keys.join(", ")
        ));
    }
    if let Some(endpoint) = ours {
        let mut kept = Map::new();
        kept.insert("otlp_endpoint".to_owned(), endpoint);
        config.insert("observability".to_owned(), Value::Object(kept));
    }
}

/// The warnings for a namespace binding's keys that only mean something on
/// Cloudflare: a class in another worker (`script_name`) or environment.
fn sift_bindings(config: &mut Map<String, Value>, file: &str, sifted: &mut Sifted) {
    let Some(Value::Array(bindings)) = config
        .get_mut("durable_objects")
        .and_then(|d| d.get_mut("bindings"))
    else {
        return;
    };
    for (i, binding) in bindings.iter_mut().enumerate() {
        let Value::Object(binding) = binding else {
            continue;
        };
        for key in ["script_name", "environment"] {
            if let Some(value) = binding.remove(key) {
                sifted.warnings.push(format!(
                    "{file}: durable_objects.bindings[{i}].{key} = {value}: dohost serves one worker's classes; the class is looked up in this configuration's components"
                ));
            }
        }
    }
}

/// The binding names under `key`: `field` of each entry of a list (or of
/// one table), or the keys of a table when `field` is empty.
fn binding_names(key: &str, value: &Value, field: &str) -> Vec<String> {
    let named = |entry: &Value| entry.get(field).and_then(Value::as_str).map(str::to_owned);
    match value {
        Value::Array(entries) => entries.iter().filter_map(named).collect(),
        Value::Object(table) if field.is_empty() => table.keys().cloned().collect(),
        Value::Object(_) => named(value).into_iter().collect(),
        _ => {
            tracing::debug!("{key} is neither a list nor a table");
            Vec::new()
        }
    }
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
