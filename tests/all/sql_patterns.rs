//! Durable Objects SQL patterns, as `examples/sql-patterns` serves them
//! through `dohost serve`: each migration step runs exactly once across
//! restarts and schema versions, the rate limiter refuses the 11th hit in
//! a window and accepts again after it, a batch of thousands of rows lands
//! whole and stays, and bad input gets a 4xx.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, client, get, send, serve_example_with_vars, workspace};

fn example_config() -> PathBuf {
    workspace().join("examples/sql-patterns/dohost.toml")
}

/// Serves the example's own dohost.toml (which builds its crate).
fn start(data: &Path) -> Server {
    Server::start(&example_config(), data)
}

/// Serves the example with the `[vars]` in `vars` set to other values.
fn start_with_vars(dir: &Path, data: &Path, vars: &[(&str, &str)]) -> Server {
    serve_example_with_vars("examples/sql-patterns", dir, data, vars)
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_migration_step_runs_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();

    // Version 1: the users table without email.
    let server = start_with_vars(dir.path(), &data, &[("SCHEMA_VERSION", "1")]);
    let url = |path: &str| server.url(&format!("/MIGRATIONS/m{path}"));
    let (status, body) = get(&http, &url("/version")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse(&body),
        json!({"user_version": 1, "migrations_run": 1})
    );
    let (status, body) = send(&http, "POST", &url("/users"), r#"{"name": "Alice"}"#).await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({"id": 1, "name": "Alice"})),
        "{body}"
    );
    let (status, body) = send(
        &http,
        "POST",
        &url("/users"),
        r#"{"name": "Bob", "email": "bob@example.com"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no email column"), "{body}");
    drop(server);

    // Version 2 on the same data: one step, the existing user kept.
    let server = start_with_vars(dir.path(), &data, &[("SCHEMA_VERSION", "2")]);
    let url = |path: &str| server.url(&format!("/MIGRATIONS/m{path}"));
    let (_, body) = get(&http, &url("/version")).await;
    assert_eq!(
        parse(&body),
        json!({"user_version": 2, "migrations_run": 1})
    );
    let (status, body) = send(
        &http,
        "POST",
        &url("/users"),
        r#"{"name": "Bob", "email": "bob@example.com"}"#,
    )
    .await;
    assert_eq!(
        (status, parse(&body)),
        (
            200,
            json!({"id": 2, "name": "Bob", "email": "bob@example.com"})
        ),
        "{body}"
    );
    drop(server);

    // Version 2 again (the example's own config): nothing left to run.
    let server = start(&data);
    let url = |path: &str| server.url(&format!("/MIGRATIONS/m{path}"));
    let (_, body) = get(&http, &url("/version")).await;
    assert_eq!(
        parse(&body),
        json!({"user_version": 2, "migrations_run": 0})
    );
    let (status, body) = get(&http, &url("/users")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse(&body),
        json!([
            {"id": 1, "name": "Alice"},
            {"id": 2, "name": "Bob", "email": "bob@example.com"},
        ])
    );
    // A new object runs both steps in its constructor.
    let (_, body) = get(&http, &server.url("/MIGRATIONS/fresh/version")).await;
    assert_eq!(
        parse(&body),
        json!({"user_version": 2, "migrations_run": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_refuses_the_eleventh_hit_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();

    // The example's window is a minute: the test is over long before.
    let server = start(&data);
    let hit = server.url("/RATE_LIMITER/client-a/hit");
    for count in 1..=10 {
        let (status, body) = send(&http, "POST", &hit, "").await;
        assert_eq!(
            (status, parse(&body)),
            (200, json!({"allowed": true, "count": count, "limit": 10})),
            "hit {count}: {body}"
        );
    }
    let (status, body) = send(&http, "POST", &hit, "").await;
    assert_eq!(status, 429, "{body}");
    let refused = parse(&body);
    assert_eq!(
        (&refused["allowed"], &refused["count"]),
        (&json!(false), &json!(10))
    );
    let retry = refused["retry_after_ms"].as_i64().unwrap();
    assert!((1..=60_000).contains(&retry), "{refused}");
    // Another client has its own limit.
    let (status, body) = send(&http, "POST", &server.url("/RATE_LIMITER/client-b/hit"), "").await;
    assert_eq!((status, &parse(&body)["count"]), (200, &json!(1)));
    drop(server);

    // The hits are durable: still refused after a restart.
    let server = start(&data);
    let (status, body) = send(&http, "POST", &server.url("/RATE_LIMITER/client-a/hit"), "").await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_accepts_again_once_the_window_has_passed() {
    const WINDOW_MS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let server = start_with_vars(
        dir.path(),
        &dir.path().join("data"),
        &[("RATE_WINDOW_MS", &WINDOW_MS.to_string())],
    );
    let hit = server.url("/RATE_LIMITER/c/hit");

    // Hit until refused (a slow machine may see early hits expire first).
    let mut accepted = 0;
    let refused_at = loop {
        let (status, body) = send(&http, "POST", &hit, "").await;
        match status {
            200 => accepted += 1,
            429 => break Instant::now(),
            _ => panic!("unexpected answer {status}: {body}"),
        }
        assert!(accepted < 1000, "never refused after {accepted} hits");
    };
    assert!(accepted >= 10, "refused after only {accepted} hits");

    // Then accepted again once the window has passed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = send(&http, "POST", &hit, "").await;
        if status == 200 {
            assert_eq!(parse(&body)["allowed"], json!(true), "{body}");
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(
            Instant::now() < deadline,
            "still refused 30 s after a {WINDOW_MS} ms window"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = refused_at.elapsed();
    assert!(
        waited < Duration::from_millis(WINDOW_MS) * 20,
        "accepted again only after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_rows_lands_whole_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = client();
    let server = start(&data);
    let url = |path: &str| server.url(&format!("/BATCH/b{path}"));

    assert_eq!(
        get(&http, &url("/items/count")).await,
        (200, r#"{"count":0}"#.to_owned())
    );
    let (status, body) = send(&http, "POST", &url("/items?count=1000"), "").await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({"items": 1000, "rows_written": 1000})),
        "{body}"
    );
    let (_, body) = get(&http, &url("/items/count")).await;
    assert_eq!(parse(&body), json!({"count": 1000}));
    let (_, body) = get(&http, &url("/items/sum")).await;
    assert_eq!(parse(&body), json!({"sum": 500_500}));
    // Replacing rows changes nothing.
    let (status, body) = send(&http, "POST", &url("/items?count=10"), "").await;
    assert_eq!(status, 200, "{body}");
    // The largest batch, on another object.
    let (status, body) = send(
        &http,
        "POST",
        &server.url("/BATCH/big/items?count=10000"),
        "",
    )
    .await;
    assert_eq!(
        (status, &parse(&body)["items"]),
        (200, &json!(10_000)),
        "{body}"
    );
    drop(server);

    let server = start(&data);
    let url = |path: &str| server.url(&format!("/BATCH/b{path}"));
    let (_, body) = get(&http, &url("/items/count")).await;
    assert_eq!(parse(&body), json!({"count": 1000}));
    let (_, body) = get(&http, &url("/items/sum")).await;
    assert_eq!(parse(&body), json!({"sum": 500_500}));
    let (_, body) = get(&http, &server.url("/BATCH/big/items/sum")).await;
    assert_eq!(parse(&body), json!({"sum": 50_005_000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_client_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let http = client();
    let long_name = format!(r#"{{"name": "{}"}}"#, "x".repeat(2000));
    let number = "not a number from 1 to 10000";
    #[rustfmt::skip]
    let cases = [
        ("POST", "/MIGRATIONS/u/users", "not json", 400, "not a user"),
        ("POST", "/MIGRATIONS/u/users", r#"{"name": 1}"#, 400, "not a user"),
        ("POST", "/MIGRATIONS/u/users", "{}", 400, "missing field `name`"),
        ("POST", "/MIGRATIONS/u/users", r#"{"name": "a", "age": 3}"#, 400, "unknown field `age`"),
        ("POST", "/MIGRATIONS/u/users", r#"{"name": " "}"#, 400, "the name is empty"),
        ("POST", "/MIGRATIONS/u/users", r#"{"name": "a", "email": ""}"#, 400, "the email is empty"),
        ("POST", "/MIGRATIONS/u/users", &long_name, 400, "over the limit of 1024 bytes"),
        ("DELETE", "/MIGRATIONS/u/users", "", 404, "POST and GET /users"),
        ("GET", "/RATE_LIMITER/u/hit", "", 404, "POST /hit"),
        ("POST", "/BATCH/u/items", "", 400, "no count"),
        ("POST", "/BATCH/u/items?count=lots", "", 400, number),
        ("POST", "/BATCH/u/items?count=0", "", 400, number),
        ("POST", "/BATCH/u/items?count=10001", "", 400, number),
        ("POST", "/BATCH/u/items?count=-5", "", 400, number),
        ("POST", "/BATCH/u/items?count=99999999999999999999", "", 400, number),
        ("GET", "/BATCH/u/items/average", "", 404, "GET /items/sum"),
    ];
    for (method, path, body, status, says) in cases {
        let (got, text) = send(&http, method, &server.url(path), body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(
            text.contains(says),
            "{method} {path}: {text:?} should say {says:?}"
        );
    }
    // None of it was stored.
    let (status, body) = get(&http, &server.url("/MIGRATIONS/u/users")).await;
    assert_eq!((status, parse(&body)), (200, json!([])));
    let (_, body) = get(&http, &server.url("/BATCH/u/items/count")).await;
    assert_eq!(parse(&body), json!({"count": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_variable_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_vars(
        dir.path(),
        &dir.path().join("data"),
        &[("SCHEMA_VERSION", "3"), ("RATE_WINDOW_MS", "soon")],
    );
    let http = client();
    let (status, body) = get(&http, &server.url("/MIGRATIONS/m/version")).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("SCHEMA_VERSION = \"3\" is not a number from 1 to 2"),
        "{body}"
    );
    let (status, body) = send(&http, "POST", &server.url("/RATE_LIMITER/r/hit"), "").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("RATE_WINDOW_MS = \"soon\""), "{body}");
}
