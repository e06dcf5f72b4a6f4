//! Exports, imports and online backups (docs/export.md): an object moved
//! to another server (another namespace secret) holds the same KV entries,
//! SQL rows and alarm; a cut or foreign file is refused; an import into a
//! running server goes through the object, which then serves what was
//! imported; a backup taken while a server takes writes holds every write
//! acknowledged before it began.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Server, client, guests, library_host, probe_stub, run_ops, send, send_with_headers, server_ops,
    write_config,
};

const TOKEN: &str = "export-test-admin-token-0123456789";
const ALARM_AT: i64 = 4_000_000_000_000;

/// KV entries, a SQL table over more than one export line of pages
/// (more than 64 pages), and an alarm.
fn populate_ops() -> Value {
    json!([
        {"op": "put", "key": "greeting", "value": "hello"},
        {"op": "put", "key": "n", "value": "42"},
        {"op": "sql", "query": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)", "params": []},
        {"op": "sql", "query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) INSERT INTO notes(body) SELECT printf('%0100d', x) FROM c", "params": []},
        {"op": "set_alarm", "at": ALARM_AT},
    ])
}

/// What the probe reads back of the state [`populate_ops`] wrote.
fn read_ops() -> Value {
    json!([
        {"op": "get", "key": "greeting"},
        {"op": "get", "key": "n"},
        {"op": "get_alarm"},
        {"op": "sql", "query": "SELECT count(*), sum(length(body)), max(body) FROM notes", "params": []},
    ])
}

fn expected_reads() -> Vec<Value> {
    vec![
        json!({"ok": "hello"}),
        json!({"ok": "42"}),
        json!({"ok": ALARM_AT}),
    ]
}

/// An export's lines after the header (the header names the server's id
/// and the time).
fn body_lines(export: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(export)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_exported_and_imported_into_another_server_holds_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let from = library_host(&dir.path().join("from")).build().unwrap();
    run_ops(&probe_stub(&from, "p"), &populate_ops())
        .await
        .unwrap();
    let before = run_ops(&probe_stub(&from, "p"), &read_ops()).await.unwrap();
    assert_eq!(before[..3], expected_reads()[..]);
    let (export, report) = from.export_object("PROBE", "p").unwrap().unwrap();
    assert_eq!((report.kv, report.alarm), (2, Some(ALARM_AT)));
    assert!(report.sql_bytes > 64 * 4096, "{report:?}");
    let header: Value =
        serde_json::from_str(String::from_utf8_lossy(&export).lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], json!("dohost-object"));
    assert_eq!(header["version"], json!(1));
    assert_eq!(header["name"], json!("p"));
    from.shutdown().await;

    // Another data directory: another secret, so another id for "p".
    let to = library_host(&dir.path().join("to")).build().unwrap();
    let imported = to
        .import_object(&mut export.as_slice(), &dohost::ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(imported.name.as_deref(), Some("p"));
    assert_ne!(imported.id, header["id"].as_str().unwrap());
    let after = run_ops(&probe_stub(&to, "p"), &read_ops()).await.unwrap();
    assert_eq!(after, before);
    let check = to
        .query_object_sql("PROBE", "p", "PRAGMA integrity_check")
        .await
        .unwrap();
    assert!(
        json!(check).to_string().contains("\"ok\""),
        "{}",
        json!(check)
    );
    // Exported again, it is the same file but for the header.
    let (again, _) = to.export_object("PROBE", "p").unwrap().unwrap();
    assert_eq!(body_lines(&again), body_lines(&export));
    // Without a name, an id from another server is no id here: --as says
    // which object to write.
    let nameless =
        String::from_utf8(export.clone())
            .unwrap()
            .replacen("\"name\":\"p\"", "\"name\":null", 1);
    let e = to
        .import_object(&mut nameless.as_bytes(), &dohost::ImportOptions::default())
        .await
        .unwrap_err();
    assert!(e.message().contains("--as"), "{e}");
    to.import_object(
        &mut nameless.as_bytes(),
        &dohost::ImportOptions::default().target("copy"),
    )
    .await
    .unwrap();
    let copy = run_ops(&probe_stub(&to, "copy"), &read_ops())
        .await
        .unwrap();
    assert_eq!(copy, before);
    // A class other than the binding's is refused.
    let e = to
        .import_object(
            &mut export.as_slice(),
            &dohost::ImportOptions::default()
                .binding("COUNTER")
                .replace(true),
        )
        .await
        .unwrap_err();
    assert!(e.message().contains("class \"Probe\""), "{e}");
    to.shutdown().await;
}

fn probe_config(dir: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [admin]\ntoken = \"{TOKEN}\"\n",
            guests().probe,
            guests().counter
        ),
    )
}

/// An admin request with the token: status and body text.
async fn admin(server: &Server, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    send_with_headers(
        &client(),
        method,
        &server.url(path),
        &[("authorization", &auth)],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_imports_into_a_running_object_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path());
    let from = Server::start(&config, &dir.path().join("from"));
    server_ops(&client(), &from, "p", &populate_ops()).await;
    let before = server_ops(&client(), &from, "p", &read_ops()).await;
    let (status, export) = admin(&from, "GET", "/_dohost/objects/PROBE/p/export", "").await;
    assert_eq!(status, 200, "{export}");
    let (status, _) = admin(&from, "GET", "/_dohost/objects/PROBE/ghost/export", "").await;
    assert_eq!(status, 404);
    drop(from);

    let to = Server::start(&config, &dir.path().join("to"));
    // The object is live, with other state, when the import comes.
    server_ops(
        &client(),
        &to,
        "p",
        &json!([{"op": "put", "key": "greeting", "value": "old"}]),
    )
    .await;
    let (status, body) = admin(&to, "POST", "/_dohost/objects/PROBE/p/import", &export).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--replace"), "{body}");

    let lines: Vec<&str> = export.lines().collect();
    let cut = lines[..lines.len() - 2].join("\n");
    let (status, body) = admin(
        &to,
        "POST",
        "/_dohost/objects/PROBE/p/import?replace=1",
        &cut,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cut short"), "{body}");
    let newer = export.replacen("\"version\":1", "\"version\":9", 1);
    let (status, body) = admin(
        &to,
        "POST",
        "/_dohost/objects/PROBE/p/import?replace=1",
        &newer,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("line 1") && body.contains("version is 9"),
        "{body}"
    );
    // Refused imports changed nothing.
    assert_eq!(
        server_ops(
            &client(),
            &to,
            "p",
            &json!([{"op": "get", "key": "greeting"}])
        )
        .await,
        json!([{"ok": "old"}])
    );

    let (status, body) = admin(
        &to,
        "POST",
        "/_dohost/objects/PROBE/p/import?replace=1",
        &export,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["replaced"], json!(true));
    assert_eq!(server_ops(&client(), &to, "p", &read_ops()).await, before);
    let (status, body) = admin(
        &to,
        "POST",
        "/_dohost/objects/PROBE/p/sql",
        &json!({"query": "PRAGMA integrity_check"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let (status, shown) = admin(&to, "GET", "/_dohost/objects/PROBE/p", "").await;
    assert_eq!(status, 200);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["alarm"], json!(ALARM_AT));
    assert_eq!(
        shown["sql_tables"],
        json!([{"name": "notes", "rows": 3000}])
    );

    // An imported alarm is scheduled: one already due runs.
    let due = export.replacen(&format!("{{\"alarm\":{ALARM_AT}}}"), "{\"alarm\":1}", 1);
    assert_ne!(due, export);
    let (status, body) = admin(&to, "POST", "/_dohost/objects/PROBE/due/import", &due).await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server_ops(
            &client(),
            &to,
            "due",
            &json!([{"op": "get", "key": "alarm-log"}]),
        )
        .await;
        if log[0]["ok"]
            .as_str()
            .is_some_and(|runs| runs.contains("retry_count"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the imported alarm never ran: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `dohost ARGS`: whether it succeeded, stdout and stderr.
fn dohost(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(args)
        .output()
        .expect("run dohost");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_and_imports_stopped_data_directories() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from"), dir.path().join("to"));
    let host = library_host(&from).build().unwrap();
    run_ops(&probe_stub(&host, "p"), &populate_ops())
        .await
        .unwrap();
    let before = run_ops(&probe_stub(&host, "p"), &read_ops()).await.unwrap();
    host.shutdown().await;
    // The receiving data directory has its bindings once a server ran on it.
    library_host(&to).build().unwrap().shutdown().await;

    let file = dir.path().join("p.jsonl");
    let (ok, _, log) = dohost(&[
        "objects",
        "export",
        "PROBE",
        "p",
        "--out",
        file.to_str().unwrap(),
        "--data",
        from.to_str().unwrap(),
    ]);
    assert!(ok, "{log}");
    assert!(log.contains("exported PROBE object \"p\""), "{log}");
    let (ok, stdout, log) = dohost(&[
        "objects",
        "export",
        "PROBE",
        "p",
        "--data",
        from.to_str().unwrap(),
    ]);
    assert!(ok, "{log}");
    assert_eq!(
        body_lines(stdout.as_bytes()),
        body_lines(&std::fs::read(&file).unwrap())
    );

    let import = |extra: &[&str]| {
        let mut args = vec![
            "objects",
            "import",
            file.to_str().unwrap(),
            "--data",
            to.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dohost(&args)
    };
    let (ok, _, log) = import(&[]);
    assert!(ok, "{log}");
    let (ok, _, log) = import(&[]);
    assert!(!ok && log.contains("already holds data"), "{log}");
    let (ok, _, log) = import(&["--replace"]);
    assert!(ok && log.contains("replacing"), "{log}");
    let (ok, _, log) = import(&["--as", "second"]);
    assert!(ok, "{log}");

    let host = library_host(&to).build().unwrap();
    for name in ["p", "second"] {
        let after = run_ops(&probe_stub(&host, name), &read_ops())
            .await
            .unwrap();
        assert_eq!(after, before, "{name}");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_holds_every_write_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path());
    let server = Server::start(&config, &dir.path().join("data"));
    let base = server.base.clone();

    // Writers increment four counters in a loop, noting each acknowledged
    // value.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..4 {
        let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            let http = client();
            let name = format!("c{n}");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) =
                    send(&http, "GET", &format!("{base}/COUNTER/{name}/"), "").await;
                assert_eq!(status, 200, "{body}");
                let value: u64 = body.trim().parse().unwrap();
                acked.lock().unwrap().insert(name.clone(), value);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.lock().unwrap().clone();
    assert_eq!(before.len(), 4, "every writer was acknowledged: {before:?}");
    let backup = dir.path().join("backup");
    let (ok, _, log) = tokio::task::spawn_blocking({
        let (backup, base) = (backup.clone(), base.clone());
        move || {
            dohost(&[
                "backup",
                backup.to_str().unwrap(),
                "--url",
                &base,
                "--token",
                TOKEN,
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{log}");
    assert!(log.contains("copied the database of the server"), "{log}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let (ok, _, log) = dohost(&[
        "backup",
        backup.to_str().unwrap(),
        "--url",
        &base,
        "--token",
        TOKEN,
    ]);
    assert!(!ok && log.contains("already exists"), "{log}");
    drop(server);

    // The backup serves, with every counter at least where it was
    // acknowledged before the backup began.
    let restored = Server::start(&config, &backup);
    for (name, seen) in &before {
        let (status, body) = send(
            &client(),
            "GET",
            &restored.url(&format!("/COUNTER/{name}/")),
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let now: u64 = body.trim().parse().unwrap();
        assert!(
            now > *seen,
            "{name}: acknowledged {seen} before the backup, the backup holds {}",
            now - 1
        );
    }
    drop(restored);

    // With no server running, the stopped data directory is copied.
    let offline = dir.path().join("offline");
    let (ok, _, log) = dohost(&[
        "backup",
        offline.to_str().unwrap(),
        "--url",
        &base,
        "--data",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(
        ok && log.contains("copied the stopped data directory"),
        "{log}"
    );
    let (ok, _, log) = dohost(&["check", "--data", offline.to_str().unwrap()]);
    assert!(ok, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_a_postgres_cluster_moves_to_a_redb_server() {
    let postgres = dohost_test_postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [cluster]\ndatabase = {:?}\nnode = \"n1\"\nadvertise = \"127.0.0.1:{port}\"\n\
             secret = \"the export test cluster secret\"\nshards = 8\nlease_ms = 1500\n\
             [admin]\ntoken = \"{TOKEN}\"\n",
            guests().probe,
            guests().counter,
            postgres.database()
        ),
    );
    let node = Server::start(&config, &dir.path().join("data"));
    server_ops(&client(), &node, "p", &populate_ops()).await;
    let before = server_ops(&client(), &node, "p", &read_ops()).await;
    let (status, export) = admin(&node, "GET", "/_dohost/objects/PROBE/p/export", "").await;
    assert_eq!(status, 200, "{export}");
    // The node holds every shard: an import through it goes to the object.
    let (status, body) = admin(&node, "POST", "/_dohost/objects/PROBE/q/import", &export).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server_ops(&client(), &node, "q", &read_ops()).await, before);

    // The CLI reads the cluster's database while the node runs, and
    // refuses to write it or back it up.
    let config_arg = config.to_str().unwrap();
    let (ok, stdout, log) = dohost(&["objects", "export", "PROBE", "p", "--config", config_arg]);
    assert!(ok, "{log}");
    assert_eq!(body_lines(stdout.as_bytes()), body_lines(export.as_bytes()));
    let file = dir.path().join("p.jsonl");
    std::fs::write(&file, &export).unwrap();
    let (ok, _, log) = dohost(&[
        "objects",
        "import",
        file.to_str().unwrap(),
        "--replace",
        "--config",
        config_arg,
    ]);
    assert!(!ok && log.contains("admin HTTP API"), "{log}");
    let (ok, _, log) = dohost(&[
        "backup",
        dir.path().join("b").to_str().unwrap(),
        "--config",
        config_arg,
    ]);
    assert!(!ok && log.contains("pg_dump"), "{log}");
    drop(node);

    let host = library_host(&dir.path().join("redb")).build().unwrap();
    host.import_object(&mut export.as_bytes(), &dohost::ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(
        json!(run_ops(&probe_stub(&host, "p"), &read_ops()).await.unwrap()),
        before
    );
    host.shutdown().await;
}
