//! Faults end cleanly: a full disk fails writes with a clear error while
//! reads go on, and writes work again once space is freed; a damaged data
//! file is an error at start, never a panic.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Server, client, get, router_config, run_dohost, send};

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `dir`; `None` (and says why) where
    /// this machine does not let the test mount one (not root).
    fn mount(dir: &Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs to fill ({}); run the tests as root to check a full disk",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 1 << 20];
    while file.write_all(&block).is_ok() {}
    let _ = file.flush();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_keeps_reads_and_recovers_when_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 24) else {
        return;
    };
    let server = Server::start(&router_config(dir.path()), &disk.0.join("data"));
    let http = client();
    for n in 0..20 {
        let (status, _) = send(
            &http,
            "PUT",
            &server.url(&format!("/PROBE/p/kv/k{n}")),
            &format!("v{n}"),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        get(&http, &server.url("/_dohost/ready")).await,
        (200, "ok\n".to_owned())
    );

    let filler = fill(&disk.0);
    // A write larger than what is left: it fails with an error that says
    // so, and is not acknowledged.
    let big = "x".repeat(100_000);
    let mut failed = None;
    for n in 0..50 {
        let (status, body) = send(
            &http,
            "PUT",
            &server.url(&format!("/PROBE/p/kv/big{n}")),
            &big,
        )
        .await;
        if status != 200 {
            failed = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = failed.expect("a write on a full disk fails");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("storage commit failed"), "{body}");
    // Reads of what was acknowledged go on; writes fail fast; the server
    // says it is not ready, and is alive.
    for k in [0, 19] {
        assert_eq!(
            get(&http, &server.url(&format!("/PROBE/p/kv/k{k}"))).await,
            (200, format!("v{k}"))
        );
    }
    let (status, body) = get(&http, &server.url("/_dohost/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot be written"), "{body}");
    assert_eq!(get(&http, &server.url("/_dohost/health")).await.0, 200);
    assert_eq!(
        get(&http, &server.url(&format!("/PROBE/p/kv/big{n}")))
            .await
            .0,
        404,
        "the failed write is not there"
    );

    // Space is back: writes go through again without a restart.
    std::fs::remove_file(filler).unwrap();
    let start = Instant::now();
    loop {
        let (status, body) = send(&http, "PUT", &server.url("/PROBE/p/kv/after"), "yes").await;
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "writes did not come back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(&http, &server.url("/PROBE/p/kv/after")).await,
        (200, "yes".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/_dohost/ready")).await,
        (200, "ok\n".to_owned())
    );
    drop(server);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_go_on_exits_the_process_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 16) else {
        return;
    };
    let data = disk.0.join("data");
    let mut server = Server::start(&router_config(dir.path()), &data);
    let http = client();
    let (status, _) = send(&http, "PUT", &server.url("/PROBE/p/kv/k"), "kept").await;
    assert_eq!(status, 200);
    // The file cannot be opened again (a directory stands at its path),
    // and the next commit fails on a full disk.
    std::fs::rename(data.join("dohost.redb"), disk.0.join("moved.redb")).unwrap();
    std::fs::create_dir(data.join("dohost.redb")).unwrap();
    let _filler = fill(&disk.0);
    let big = "x".repeat(100_000);
    for n in 0..50 {
        let (status, _) = send(
            &http,
            "PUT",
            &server.url(&format!("/PROBE/p/kv/b{n}")),
            &big,
        )
        .await;
        if status != 200 {
            break;
        }
    }
    let exited = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits when its store cannot go on");
    assert_eq!(exited.code(), Some(74), "{}", server.log());
    let log = server.log_with("the storage layer cannot go on");
    assert!(log.contains("the storage layer cannot go on"), "{log}");
    drop(server);
    // Restarted on the file: what was acknowledged is there.
    std::fs::remove_dir(data.join("dohost.redb")).unwrap();
    std::fs::rename(disk.0.join("moved.redb"), data.join("dohost.redb")).unwrap();
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let server = Server::start(&router_config(dir.path()), &data);
    assert_eq!(
        get(&http, &server.url("/PROBE/p/kv/k")).await,
        (200, "kept".to_owned())
    );
    drop(server);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_file_is_an_error_at_start_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = router_config(dir.path());
    let server = Server::start(&config, &data);
    assert_eq!(get(&client(), &server.url("/COUNTER/c/")).await.0, 200);
    // Closed cleanly: redb trusts such a file when it opens it again.
    server.stop();
    // Overwrite the pages after the header with garbage: redb
    // panics when it opens such a file.
    let file = data.join("dohost.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(512).take(32 * 1024) {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&file, bytes).unwrap();
    let (ok, log) = run_dohost(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    // The process ends through its error path (a panic would end it with
    // no `error:` line), naming the file and what to do.
    assert!(!ok, "{log}");
    assert!(log.contains("error: cannot open database"), "{log}");
    assert!(log.contains("the file is damaged"), "{log}");
}

/// Flips one byte inside every copy of `marker` in `file`; how many.
fn damage(file: &Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let i = at + i;
        bytes[i + marker.len() / 2] ^= 0x20;
        found += 1;
        at = i + marker.len();
    }
    std::fs::write(file, bytes).unwrap();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_value_or_page_is_detected_not_served_and_check_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = router_config(dir.path());
    let server = Server::start(&config, &data);
    let http = client();
    let kv_marker = "kv-marker-0123456789-abcdefghij";
    let sql_marker = "sql-marker-9876543210-jihgfedcba";
    assert_eq!(
        send(&http, "PUT", &server.url("/PROBE/hurt/kv/k"), kv_marker)
            .await
            .0,
        200
    );
    assert_eq!(
        send(
            &http,
            "PUT",
            &server.url("/PROBE/hurt/kv/fine"),
            "still here"
        )
        .await
        .0,
        200
    );
    let sql = serde_json::json!([
        {"op": "sql", "query": "CREATE TABLE t (s TEXT)", "params": []},
        {"op": "sql", "query": format!("INSERT INTO t VALUES ('{sql_marker}')"), "params": []},
    ]);
    assert_eq!(
        send(
            &http,
            "POST",
            &server.url("/PROBE/hurt/ops"),
            &sql.to_string()
        )
        .await
        .0,
        200
    );
    assert_eq!(get(&http, &server.url("/COUNTER/well/")).await.0, 200);
    server.stop();

    let file = data.join("dohost.redb");
    assert!(damage(&file, kv_marker.as_bytes()) > 0);
    assert!(damage(&file, sql_marker.as_bytes()) > 0);

    // `dohost check` finds both, by object.
    let data_arg = data.to_str().unwrap();
    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"));
    let out = check.args(["check", "--data", data_arg]).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("(named \"hurt\")"), "{report}");
    assert!(report.contains("the value of key \"k\""), "{report}");
    assert!(report.contains("SQL page"), "{report}");

    // The server starts; the damaged reads fail, naming the object; the
    // rest is served.
    let server = Server::start(&config, &data);
    let (status, body) = get(&http, &server.url("/PROBE/hurt/kv/k")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("damaged"), "{body}");
    assert_eq!(
        get(&http, &server.url("/PROBE/hurt/kv/fine")).await,
        (200, "still here".to_owned())
    );
    let count = serde_json::json!([{"op": "sql", "query": "SELECT s FROM t", "params": []}]);
    let (_, body) = send(
        &http,
        "POST",
        &server.url("/PROBE/hurt/ops"),
        &count.to_string(),
    )
    .await;
    assert!(
        !body.contains(sql_marker),
        "a damaged page was served: {body}"
    );
    assert!(body.contains("damaged"), "{body}");
    assert_eq!(
        get(&http, &server.url("/COUNTER/well/")).await,
        (200, "2".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_crash_is_logged_with_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = router_config(dir.path());
    let server = Server::start(&config, &data);
    assert_eq!(get(&client(), &server.url("/COUNTER/c/")).await.0, 200);
    server.kill9();
    let server = Server::start(&config, &data);
    let log = server.log_with("recovered in");
    assert!(log.contains("was not closed cleanly"), "{log}");
    assert!(log.contains("recovered in"), "{log}");
    assert_eq!(
        get(&client(), &server.url("/COUNTER/c/")).await,
        (200, "2".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_is_private_and_a_tampered_compiled_component_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = router_config(dir.path());
    let server = Server::start(&config, &data);
    assert_eq!(get(&client(), &server.url("/COUNTER/c/")).await.0, 200);
    server.stop();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("dohost.redb")), 0o600);
    let compiled: Vec<PathBuf> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(!compiled.is_empty());
    for file in &compiled {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let mut bytes = std::fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(file, bytes).unwrap();
    }
    let server = Server::start(&config, &data);
    let log = server.log_with("does not match its recorded hash");
    assert!(log.contains("does not match its recorded hash"), "{log}");
    assert_eq!(
        get(&client(), &server.url("/COUNTER/c/")).await,
        (200, "2".to_owned())
    );
}
