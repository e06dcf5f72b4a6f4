//! `dohost new`: every template is a project that `dohost serve` runs at
//! once, whose counter counts and whose own test (the command its README
//! names) passes; `dohost dev` picks up an edit to it. Each template is
//! built once: the serve builds its guests, the template's test reuses them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, admin_get, client, get, run_dohost};

/// Runs `dohost new` for `lang` into a temp dir: the dir and the project.
fn new_project(lang: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("hello-{lang}"));
    let (ok, log) = run_dohost(
        &["new", project.to_str().unwrap(), "--lang", lang],
        Duration::from_secs(30),
    );
    assert!(ok, "dohost new failed:\n{log}");
    assert!(log.contains("dohost dev"), "{log}");
    for file in ["README.md", "dohost.toml", ".gitignore"] {
        assert!(project.join(file).is_file(), "{file} missing:\n{log}");
    }
    (dir, project)
}

/// Serves `project` and checks that its counter counts from 1.
async fn serve_counts(project: &Path, data: &Path) {
    let server = Server::start(&project.join("dohost.toml"), data);
    let http = client();
    for expected in ["1", "2"] {
        let (status, body) = get(&http, &server.url("/")).await;
        assert_eq!((status, body.as_str()), (200, expected), "{}", server.log());
    }
    server.stop();
}

/// Runs the template's own test, `program args` in `project`, with this
/// build's `dohost`.
fn own_test(project: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(project)
        .env("DOHOST", env!("CARGO_BIN_EXE_dohost"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed in {}:\n{}\n{}",
        args.join(" "),
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_template_serves_counts_passes_its_test_and_reloads_under_dev() {
    let (dir, project) = new_project("rust");
    let data = dir.path().join("data");
    serve_counts(&project, &data).await;
    own_test(&project, &cargo(), &["test"]);

    // `dohost dev`: an edit to the object is rebuilt and reloaded.
    let server = Server::start_dev(&project.join("dohost.toml"), &data);
    let http = client();
    assert_eq!(get(&http, &server.url("/")).await, (200, "3".to_owned()));
    // The object browser is on, with a token made for the run.
    let log = server.log();
    let token = log
        .split("admin token made for this run: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("dohost dev prints the object browser's token:\n{log}"));
    let objects = admin_get(&server, token, "/_dohost/objects?binding=COUNTER").await;
    assert!(objects.contains("\"counter\""), "{objects}");
    let source = project.join("counter/src/lib.rs");
    let code = std::fs::read_to_string(&source).unwrap();
    let edited = code.replace(
        "Response::text(value.to_string())",
        "Response::text(format!(\"count {value}\"))",
    );
    assert_ne!(code, edited, "the template's counter changed shape");
    std::fs::write(&source, edited).unwrap();
    let mut answer = String::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = get(&http, &server.url("/")).await;
        assert_eq!(status, 200, "{body}");
        answer = body;
        if answer.starts_with("count ") {
            break;
        }
    }
    assert!(
        answer.starts_with("count "),
        "the edit was never picked up: {answer}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("changed: ") && log.contains("counter/src/lib.rs") && log.contains("reloaded"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_template_serves_counts_and_passes_its_test() {
    let (dir, project) = new_project("js");
    serve_counts(&project, &dir.path().join("data")).await;
    own_test(&project, "npm", &["test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_template_serves_counts_and_passes_its_test() {
    let (dir, project) = new_project("ts");
    assert!(
        std::fs::read_to_string(project.join("worker-configuration.d.ts"))
            .unwrap()
            .contains("COUNTER: DurableObjectNamespace"),
        "the TypeScript template has its Env types"
    );
    serve_counts(&project, &dir.path().join("data")).await;
    own_test(&project, "npm", &["test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_template_serves_counts_and_passes_its_test() {
    let (dir, project) = new_project("python");
    serve_counts(&project, &dir.path().join("data")).await;
    own_test(&project, "python3", &["-m", "unittest"]);
}

#[test]
fn new_refuses_a_folder_that_is_not_empty_and_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let (ok, log) = run_dohost(&["new", taken.to_str().unwrap()], Duration::from_secs(30));
    assert!(!ok && log.contains("exists and is not empty"), "{log}");
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).unwrap(),
        "mine"
    );

    let bad = dir.path().join("Hello World");
    let (ok, log) = run_dohost(&["new", bad.to_str().unwrap()], Duration::from_secs(30));
    assert!(!ok && log.contains("cannot name a project"), "{log}");
    assert!(!bad.exists());
}
