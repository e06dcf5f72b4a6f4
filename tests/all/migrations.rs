//! Migrations: a renamed class keeps its objects (declared, or detected as
//! in the counter's upgrade to AdvancedCounter), a deleted class takes its storage and alarms
//! with it, migrations apply once, and a configuration that does not fit
//! the data directory refuses to start, naming the problem and the fix.

use std::path::Path;

use serde_json::json;

use crate::support::{
    Server, client, get, guests, request, run_ops, serve_refused, text, write_config,
};

fn counter_config(dir: &Path, class: &str, component: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"{class}\"\ncomponent = {component:?}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_class_keeps_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = guests();
    let http = client();

    let server = Server::start(&counter_config(dir.path(), "Counter", &g.counter), &data);
    for n in 1..=3 {
        assert_eq!(
            get(&http, &server.url("/COUNTER/my-counter/")).await,
            (200, n.to_string())
        );
    }
    server.kill9();

    // The upgrade: the binding now names AdvancedCounter, and the component
    // exports only AdvancedCounter. No migration entry.
    let server = Server::start(
        &counter_config(dir.path(), "AdvancedCounter", &g.advanced),
        &data,
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/my-counter/")).await,
        (200, "4 (advanced)".to_owned())
    );
    let log = server.log();
    assert!(
        log.contains("class Counter renamed to AdvancedCounter") && log.contains("renamed_classes"),
        "the rename is logged with how to record it:\n{log}"
    );
    server.kill9();

    // Recorded: the next start is quiet and counts on.
    let server = Server::start(
        &counter_config(dir.path(), "AdvancedCounter", &g.advanced),
        &data,
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/my-counter/?by=10")).await,
        (200, "14 (advanced)".to_owned())
    );
    assert!(!server.log().contains("renamed"), "{}", server.log());
}

/// A binding: its name, class and component.
type Binding<'a> = (&'a str, &'a str, &'a Path);

fn host(
    data: &Path,
    bindings: &[Binding<'_>],
    migrations: &[dohost::Migration],
) -> dohost::Result<dohost::Host> {
    let mut builder = dohost::Host::builder()
        .data_dir(data)
        .settings(dohost::Settings {
            max_live_objects: 64,
            ..dohost::Settings::default()
        });
    for (binding, class, component) in bindings {
        builder = builder.binding(binding, class, component);
    }
    for m in migrations {
        builder = builder.migration(m.clone());
    }
    builder.build()
}

fn migration(tag: &str) -> dohost::Migration {
    dohost::Migration {
        tag: tag.into(),
        ..dohost::Migration::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_renames_keep_state_and_deleted_classes_lose_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let v1 = dohost::Migration {
        new_classes: vec!["Counter".into(), "Probe".into()],
        ..migration("v1")
    };
    let both = [
        ("COUNTER", "Counter", g.counter.as_path()),
        ("PROBE", "Probe", g.probe.as_path()),
    ];

    let first = host(dir.path(), &both, std::slice::from_ref(&v1)).unwrap();
    let counter = first.namespace("COUNTER").unwrap().get_by_name("c");
    for _ in 0..2 {
        counter.fetch(request("GET", "/", "")).await.unwrap();
    }
    let probe = first.namespace("PROBE").unwrap().get_by_name("p");
    run_ops(
        &probe,
        &json!([
            {"op": "put", "key": "kept?", "value": "yes"},
            {"op": "sql", "query": "CREATE TABLE t(x)", "params": []},
            {"op": "set_alarm", "in_ms": 3_600_000},
        ]),
    )
    .await
    .unwrap();
    first.shutdown().await;

    // Deleting a class that is still bound is refused, and changes nothing.
    let v2 = dohost::Migration {
        renamed_classes: vec![("Counter".into(), "AdvancedCounter".into())],
        deleted_classes: vec!["Probe".into()],
        ..migration("v2")
    };
    let advanced = ("COUNTER", "AdvancedCounter", g.advanced.as_path());
    let err = host(dir.path(), &[advanced, both[1]], &[v1.clone(), v2.clone()]).unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::Config);
    assert!(
        err.message()
            .contains("deletes class Probe, but binding PROBE still uses it")
            && err.message().contains("remove the binding"),
        "{err}"
    );

    let second = host(dir.path(), &[advanced], &[v1.clone(), v2.clone()]).unwrap();
    let counter = second.namespace("COUNTER").unwrap().get_by_name("c");
    assert_eq!(
        text(&counter.fetch(request("GET", "/", "")).await.unwrap()),
        "3 (advanced)"
    );
    assert_eq!(
        second.stats().alarms_in_memory,
        0,
        "the deleted alarm is gone"
    );
    second.shutdown().await;

    // Probe bound again: a new, empty namespace; v1 and v2 are not applied
    // again (the counter keeps counting).
    let third = host(dir.path(), &[advanced, both[1]], &[v1, v2]).unwrap();
    let probe = third.namespace("PROBE").unwrap().get_by_name("p");
    let found = run_ops(
        &probe,
        &json!([
            {"op": "get", "key": "kept?"},
            {"op": "sql", "query": "SELECT name FROM sqlite_master", "params": []},
            {"op": "get_alarm"},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(found[0]["ok"], json!(null), "{found:?}");
    assert_eq!(found[1]["ok"]["rows"], json!([]), "{found:?}");
    assert_eq!(found[2]["ok"], json!(null), "{found:?}");
    let counter = third.namespace("COUNTER").unwrap().get_by_name("c");
    assert_eq!(
        text(&counter.fetch(request("GET", "/", "")).await.unwrap()),
        "4 (advanced)"
    );
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_that_do_not_fit_the_data_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let counter = ("COUNTER", "Counter", g.counter.as_path());

    let cases: Vec<(Vec<Binding<'_>>, Vec<dohost::Migration>, Vec<&str>)> = vec![
        (
            vec![("COUNTER", "Countr", g.counter.as_path())],
            vec![],
            vec![
                "binding COUNTER: class_name = \"Countr\" is not exported by its component, which exports Counter",
                "set class_name to an exported class",
            ],
        ),
        (
            vec![counter],
            vec![dohost::Migration {
                renamed_classes: vec![("Ghost".into(), "Counter".into())],
                ..migration("v1")
            }],
            vec![
                "migration \"v1\" renames class Ghost, which the data directory does not have",
                "fix `from`",
            ],
        ),
        (
            vec![counter],
            vec![dohost::Migration {
                new_classes: vec!["Countr".into()],
                ..migration("v1")
            }],
            vec![
                "creates class Countr, which no binding uses",
                "fix the name",
            ],
        ),
    ];
    for (bindings, migrations, expected) in cases {
        let err = host(dir.path(), &bindings, &migrations).unwrap_err();
        assert_eq!(err.kind(), dohost::ErrorKind::Config, "{err}");
        for part in expected {
            assert!(err.message().contains(part), "{err}\nexpected: {part}");
        }
    }

    // A binding removed while its class has objects.
    let first = host(
        dir.path(),
        &[counter, ("PROBE", "Probe", g.probe.as_path())],
        &[],
    )
    .unwrap();
    let probe = first.namespace("PROBE").unwrap().get_by_name("p");
    probe.fetch(request("GET", "/count", "")).await.unwrap();
    first.shutdown().await;
    let err = host(dir.path(), &[counter], &[]).unwrap_err();
    assert!(
        err.message().contains("holds 1 object(s) of class Probe (bound as PROBE before), but no binding uses the class")
            && err.message().contains("deleted_classes = [\"Probe\"]"),
        "{err}"
    );

    // The same refusal from `dohost serve`, which does not start.
    let config = counter_config(dir.path(), "Counter", &g.counter);
    let stderr = serve_refused(&config, dir.path());
    assert!(
        stderr.contains(&format!(
            "{}: the data directory holds 1 object(s) of class Probe",
            config.display()
        )),
        "{stderr}"
    );

    // Nothing was changed by the refusals: the old configuration still works.
    let again = host(
        dir.path(),
        &[counter, ("PROBE", "Probe", g.probe.as_path())],
        &[],
    )
    .unwrap();
    let probe = again.namespace("PROBE").unwrap().get_by_name("p");
    assert_eq!(
        text(&probe.fetch(request("GET", "/count", "")).await.unwrap()),
        "1 2"
    );
}
