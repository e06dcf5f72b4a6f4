//! The configuration's reading and checks.

use super::*;

/// A temp dir with a guest crate, the path of a dohost.toml in it, and
/// the text of one binding to that crate.
fn one_binding() -> (tempfile::TempDir, PathBuf, &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("guest");
    std::fs::create_dir(&crate_dir).unwrap();
    std::fs::write(crate_dir.join("Cargo.toml"), "").unwrap();
    let text =
        "[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"C\"\ncomponent = \"guest\"\n";
    let path = dir.path().join("dohost.toml");
    (dir, path, text)
}

#[test]
fn a_component_may_be_a_javascript_module_or_a_package_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dohost.toml");
    std::fs::create_dir_all(dir.path().join("app/src")).unwrap();
    std::fs::write(dir.path().join("app/src/counter.js"), "").unwrap();
    std::fs::write(dir.path().join("app/lib.mjs"), "").unwrap();
    let component = |value: &str| {
        let text = format!(
            "[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"C\"\ncomponent = {value:?}\n"
        );
        Config::parse(&text, &path).map(|c| c.bindings[0].component.clone())
    };
    let module = |c: ComponentSource| match c {
        ComponentSource::JavaScript(m) => m,
        other => panic!("not JavaScript: {other:?}"),
    };
    assert_eq!(
        module(component("app/src/counter.js").unwrap()),
        dir.path().join("app/src/counter.js")
    );
    // A folder with package.json: its "main", else src/index.js.
    std::fs::write(
        dir.path().join("app/package.json"),
        r#"{"main": "lib.mjs"}"#,
    )
    .unwrap();
    assert_eq!(
        module(component("app").unwrap()),
        dir.path().join("app/lib.mjs")
    );
    std::fs::write(dir.path().join("app/package.json"), "{}").unwrap();
    let err = component("app").unwrap_err().to_string();
    assert!(
        err.contains("src/index.ts, src/index.js, index.ts, index.js") && err.contains("\"main\""),
        "{err}"
    );
    std::fs::write(dir.path().join("app/package.json"), "{").unwrap();
    let err = component("app").unwrap_err().to_string();
    assert!(err.contains("is not valid JSON"), "{err}");
    let err = component("app/src/missing.js").unwrap_err().to_string();
    assert!(
        err.contains("does not exist") && err.contains("JavaScript or TypeScript module"),
        "{err}"
    );
}

#[test]
fn limits_set_the_sql_database_size() {
    let (_dir, path, text) = one_binding();
    let plain = Config::parse(text, &path).unwrap();
    assert_eq!(plain.max_sql_database_bytes, None);
    let limited = Config::parse(
        &format!("{text}[limits]\nsql_database_bytes = 65536\n"),
        &path,
    )
    .unwrap();
    assert_eq!(limited.max_sql_database_bytes, Some(65536));
}

#[test]
fn alarms_set_the_retry_policy_within_bounds() {
    let (_dir, path, text) = one_binding();
    let set = Config::parse(
        &format!("{text}[alarms]\nretry_delay_ms = 50\nmax_retries = 2\n"),
        &path,
    )
    .unwrap();
    assert_eq!(
        set.alarm_retry_delay,
        Some(std::time::Duration::from_millis(50))
    );
    assert_eq!(set.alarm_max_retries, Some(2));
    let zero = Config::parse(&format!("{text}[alarms]\nretry_delay_ms = 0\n"), &path);
    assert!(
        zero.unwrap_err()
            .to_string()
            .contains("alarms.retry_delay_ms = 0")
    );
    let many = Config::parse(&format!("{text}[alarms]\nmax_retries = 31\n"), &path);
    assert!(many.unwrap_err().to_string().contains("at most 30"));
}

#[test]
fn limits_set_the_mailbox_and_the_call_timeout() {
    let (_dir, path, text) = one_binding();
    let set = Config::parse(
        &format!("{text}[limits]\nmailbox_capacity = 4\ncall_timeout_ms = 250\n"),
        &path,
    )
    .unwrap();
    assert_eq!(set.mailbox_capacity, Some(4));
    assert_eq!(
        set.call_timeout,
        Some(std::time::Duration::from_millis(250))
    );
    for zero in ["mailbox_capacity = 0", "call_timeout_ms = 0"] {
        let err = Config::parse(&format!("{text}[limits]\n{zero}\n"), &path).unwrap_err();
        assert!(err.to_string().contains(&format!("limits.{zero}")), "{err}");
    }
}

#[test]
fn the_server_section_sets_timeouts_and_bounds() {
    let (_dir, path, text) = one_binding();
    let plain = Config::parse(text, &path).unwrap();
    assert_eq!(plain.server.header_timeout, crate::DEFAULT_HEADER_TIMEOUT);
    assert!(!plain.server.debug_errors);
    let set = Config::parse(
        &format!(
            "{text}[server]\nheader_timeout_ms = 5\nidle_timeout_ms = 6\nbody_timeout_ms = 7\n\
             min_body_rate = 8\nmax_request_body_bytes = 9\nbody_memory_bytes = 10\n\
             max_connections = 11\ndebug_errors = true\n"
        ),
        &path,
    )
    .unwrap()
    .server;
    let ms = std::time::Duration::from_millis;
    assert_eq!(
        (set.header_timeout, set.idle_timeout, set.body_timeout),
        (ms(5), ms(6), ms(7))
    );
    assert_eq!(
        (set.min_body_rate, set.max_request_body, set.body_memory),
        (8, 9, 10)
    );
    assert_eq!(set.max_connections, 11);
    assert!(set.debug_errors);
    for (extra, expected) in [
        ("max_connections = 0", "server.max_connections = 0"),
        (
            "max_request_body_bytes = 10\nbody_memory_bytes = 9",
            "less than one largest body",
        ),
        ("timeout = 1", "unknown field `timeout`"),
        (
            "metrics_listen = \"localhost\"",
            "server.metrics_listen = \"localhost\" is not an address",
        ),
    ] {
        let err = Config::parse(&format!("{text}[server]\n{extra}\n"), &path).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn metrics_and_traces_have_their_own_addresses() {
    let (_dir, path, text) = one_binding();
    let plain = Config::parse(text, &path).unwrap();
    assert_eq!(plain.server.metrics_listen, None);
    assert_eq!(plain.observability.otlp_endpoint, None);
    let set = Config::parse(
        &format!(
            "{text}[server]\nmetrics_listen = \"127.0.0.1:9090\"\n\
             [observability]\notlp_endpoint = \"http://collector:4318/\"\n"
        ),
        &path,
    )
    .unwrap();
    assert_eq!(
        set.server.metrics_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(
        set.observability.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    for bad in ["collector:4318", "ftp://collector", "http://"] {
        let err = Config::parse(
            &format!("{text}[observability]\notlp_endpoint = {bad:?}\n"),
            &path,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("observability.otlp_endpoint = {bad:?}")),
            "{err}"
        );
    }
}

#[test]
fn migrations_and_the_admin_token_are_read_and_checked() {
    let (_dir, path, text) = one_binding();
    let set = Config::parse(
        &format!(
            "{text}[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"C\"]\n\
             [[migrations]]\ntag = \"v2\"\nrenamed_classes = [{{ from = \"C\", to = \"D\" }}]\n\
             transferred_classes = [{{ from = \"E\", from_script = \"other\", to = \"F\" }}]\n\
             deleted_classes = [\"G\"]\n[admin]\ntoken = \"0123456789abcdef\"\n"
        ),
        &path,
    )
    .unwrap();
    assert_eq!(set.migrations.len(), 2);
    assert_eq!(set.migrations[0].new_sqlite_classes, ["C"]);
    assert_eq!(
        set.migrations[1].renamed_classes,
        [
            ("C".to_owned(), "D".to_owned()),
            ("E".to_owned(), "F".to_owned())
        ]
    );
    assert_eq!(set.migrations[1].deleted_classes, ["G"]);
    assert_eq!(set.admin_token.as_deref(), Some("0123456789abcdef"));

    for (extra, expected) in [
        (
            "[[migrations]]\ntag = \"v1\"\n[[migrations]]\ntag = \"v1\"\n",
            "migrations[1].tag = \"v1\" is used twice",
        ),
        ("[[migrations]]\ntag = \"\"\n", "migrations[0].tag is empty"),
        (
            "[[migrations]]\ntag = \"v1\"\ndeleted_classes = [\"no such\"]\n",
            "names \"no such\", which is not a class name",
        ),
        ("[admin]\ntoken = \"short\"\n", "admin.token is too short"),
        (
            "[limits]\nmemory_bytes = 1024\n",
            "limits.memory_bytes = 1024 is out of range",
        ),
        ("[limits]\ncpu_ms = 0\n", "limits.cpu_ms = 0"),
    ] {
        let err = Config::parse(&format!("{text}{extra}"), &path).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err}\nexpected: {expected}"
        );
    }
}

/// A project folder with `src/index.ts` and `dist/`, as a wrangler project
/// has them.
fn wrangler_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::create_dir_all(dir.path().join("dist")).unwrap();
    std::fs::write(dir.path().join("src/index.ts"), "").unwrap();
    dir
}

#[test]
fn wrangler_jsonc_is_read_with_its_comments_and_warnings() {
    let dir = wrangler_project();
    let path = dir.path().join("wrangler.jsonc");
    let text = r#"{
      "$schema": "node_modules/wrangler/config-schema.json",
      "name": "counter", // the worker's name
      "main": "src/index.ts",
      "compatibility_date": "2025-04-01",
      "compatibility_flags": ["some_flag"],
      "durable_objects": { "bindings": [{ "name": "COUNTER", "class_name": "Counter" }] },
      /* SQLite-backed, as the guide has it */
      "migrations": [{ "tag": "v1", "new_sqlite_classes": ["Counter"] }],
      "vars": { "GREETING": "hi", "LIMIT": 3, "SETTINGS": { "a": [1, 2] } },
      "kv_namespaces": [{ "binding": "CACHE", "id": "abc" }],
      "queues": { "producers": [{ "binding": "JOBS", "queue": "jobs" }] },
      "routes": [{ "pattern": "example.com/*" }],
      "observability": { "enabled": true },
      "limits": { "cpu_ms": 50, "subrequests": 20 },
      "assets": { "directory": "./dist", "not_found_handling": "single-page-application", "run_worker_first": ["/api/*"] },
      "brand_new_key": 1,
    }"#;
    let config = Config::parse(text, &path).unwrap();
    let main = dir.path().join("src/index.ts");
    assert!(matches!(&config.main, Some(ComponentSource::JavaScript(m)) if *m == main));
    // A binding without a component finds its class in main.
    assert!(matches!(&config.bindings[0].component, ComponentSource::JavaScript(m) if *m == main));
    assert_eq!(config.migrations[0].new_sqlite_classes, ["Counter"]);
    assert_eq!(config.vars["GREETING"], "hi");
    assert_eq!(config.vars["LIMIT"], "3");
    assert_eq!(config.vars["SETTINGS"], r#"{"a":[1,2]}"#);
    assert_eq!(
        config.json_vars.iter().collect::<Vec<_>>(),
        ["LIMIT", "SETTINGS"]
    );
    assert_eq!(
        config.cpu_time_per_event,
        Some(std::time::Duration::from_millis(50))
    );
    assert_eq!(config.outbound.max_subrequests, 20);
    let assets = config.assets.as_ref().unwrap();
    assert_eq!(assets.directory, dir.path().join("./dist"));
    assert_eq!(
        assets.not_found_handling,
        NotFoundHandling::SinglePageApplication
    );
    assert_eq!(
        assets.run_worker_first,
        RunWorkerFirst::Patterns(vec!["/api/*".into()])
    );
    assert_eq!(
        config.unsupported_bindings.keys().collect::<Vec<_>>(),
        ["CACHE", "JOBS"]
    );
    let warnings = config.warnings.join("\n");
    for key in [
        "kv_namespaces: dohost has no KV namespaces; ignored; code that uses env.CACHE fails",
        "queues: dohost has no Queues",
        "routes: a Cloudflare deployment or build setting",
        "observability.enabled: Cloudflare's Workers Logs settings",
        "brand_new_key: not a key dohost knows; ignored",
        "compatibility_flags: dohost does not implement \"some_flag\"",
    ] {
        assert!(warnings.contains(key), "{key} not in:\n{warnings}");
    }
    assert_eq!(config.warnings.len(), 6, "{warnings}");
    assert!(!warnings.contains("$schema"), "{warnings}");
}

#[test]
fn wrangler_toml_reads_as_dohost_toml_does_but_warns_on_unknown_keys() {
    let dir = wrangler_project();
    let text = "name = \"x\"\nmain = \"src/index.ts\"\naccount_id = \"1\"\nmystery = true\n\
                [[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"C\"\nscript_name = \"other\"\n\
                [[r2_buckets]]\nbinding = \"FILES\"\nbucket_name = \"f\"\n";
    let wrangler = Config::parse(text, &dir.path().join("wrangler.toml")).unwrap();
    let warnings = wrangler.warnings.join("\n");
    assert!(
        warnings.contains("account_id: a Cloudflare deployment"),
        "{warnings}"
    );
    assert!(
        warnings.contains("mystery: not a key dohost knows"),
        "{warnings}"
    );
    assert!(
        warnings.contains("durable_objects.bindings[0].script_name = \"other\""),
        "{warnings}"
    );
    assert!(
        warnings.contains("r2_buckets: dohost has no R2 buckets"),
        "{warnings}"
    );
    // In dohost.toml an unknown key is a typo until shown otherwise.
    let err = Config::parse(text, &dir.path().join("dohost.toml")).unwrap_err();
    assert!(err.to_string().contains("unknown key `mystery`"), "{err}");
    // A binding with neither a component nor a main names both.
    let err = Config::parse(
        "[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"C\"\n",
        &dir.path().join("wrangler.toml"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no component and there is no main"),
        "{err}"
    );
}

#[test]
fn bad_values_are_named_with_their_path() {
    let dir = wrangler_project();
    let path = dir.path().join("wrangler.json");
    for (text, expected) in [
        (
            r#"{"main": "src/index.ts", "durable_objects": {"bindings": [{"name": "C", "class_name": 7}]}}"#,
            "durable_objects.bindings[0].class_name: invalid type: integer `7`",
        ),
        (
            r#"{"main": "src/index.ts", "durable_objects": {"bindings": [{"name": "C", "class_name": "C"}]}, "assets": {"directory": "./missing"}}"#,
            "assets.directory = \"./missing\"",
        ),
        (
            r#"{"main": "src/index.ts", "durable_objects": {"bindings": [{"name": "C", "class_name": "C"}]}, "assets": {"directory": "./dist", "not_found_handling": "spa"}}"#,
            "assets.not_found_handling = \"spa\"",
        ),
        (
            r#"{"main": "src/index.ts", "durable_objects": {"bindings": [{"name": "C", "class_name": "C"}]}, "assets": {"directory": "./dist", "run_worker_first": ["api/*"]}}"#,
            "\"api/*\" is not a path pattern",
        ),
        (r#"{"main": "src/index.ts",, }"#, "on line 1"),
        ("[1]", "must be an object of keys"),
    ] {
        let err = Config::parse(text, &path).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}\nexpected: {expected}");
    }
}

#[test]
fn the_configuration_is_found_in_a_folder_dohost_toml_first() {
    let dir = tempfile::tempdir().unwrap();
    let err = find_config(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("dohost.toml, wrangler.json, wrangler.jsonc, wrangler.toml"),
        "{err}"
    );
    std::fs::write(dir.path().join("wrangler.toml"), "").unwrap();
    assert_eq!(
        find_config(dir.path()).unwrap(),
        dir.path().join("wrangler.toml")
    );
    std::fs::write(dir.path().join("wrangler.jsonc"), "").unwrap();
    assert_eq!(
        find_config(dir.path()).unwrap(),
        dir.path().join("wrangler.jsonc")
    );
    std::fs::write(dir.path().join("dohost.toml"), "").unwrap();
    assert_eq!(
        find_config(dir.path()).unwrap(),
        dir.path().join("dohost.toml")
    );
}
