//! The object browser at `/_dohost/ui` in a real browser (headless
//! chromium): log in, open an object of the storage-patterns example, see a
//! key and a SQL row, run a query, be refused a write, delete the object.
//! Then the JSON routes it stands on, through the library: pages of
//! objects and keys, a table's rows, the read-only query, and an alarm run
//! now through the normal alarm path.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{browser, chromedriver, texts, wait_for};
use crate::support::{
    Server, admin_get, client, example_config, library_host, probe_stub, request, run_ops, send,
    write_config,
};

const TOKEN: &str = "ui-test-admin-token-0123456789";

/// Clicks the element `css` matches once it is there and shown.
async fn click(page: &Client, css: &str) {
    for _ in 0..200 {
        if let Ok(found) = page.find(Locator::Css(css)).await
            && found.is_displayed().await.unwrap_or(false)
        {
            found.click().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never appeared");
}

/// Replaces the text of the input `css` with `text`.
async fn type_into(page: &Client, css: &str, text: &str) {
    let input = page.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_logs_in_shows_an_object_queries_it_and_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[admin]\ntoken = \"{TOKEN}\"\n",
        example_config("examples/storage-patterns")
    );
    let server = Server::start(&write_config(dir.path(), &config), &dir.path().join("data"));
    let http = client();
    let (status, body) = send(
        &http,
        "PUT",
        &server.url("/USER_CACHE/directory/user/alice"),
        r#"{"name":"Alice","email":"alice@example.com"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The page's files need no token; the API does.
    let (status, page) = send(&http, "GET", &server.url("/_dohost/ui"), "").await;
    assert_eq!(status, 200);
    assert!(page.contains("/_dohost/ui/ui.js"), "{page}");
    let (status, _) = send(&http, "GET", &server.url("/_dohost/bindings"), "").await;
    assert_eq!(status, 401);

    let driver = chromedriver().await;
    let page = browser(&driver).await;
    page.set_window_size(1280, 900).await.unwrap();
    page.goto(&server.url("/_dohost/ui")).await.unwrap();

    // A wrong token is refused; the right one opens the page.
    type_into(&page, "#token", "guess").await;
    click(&page, "#login button[type=submit]").await;
    wait_for(&page, "#login-error", |t| t == ["Wrong token."]).await;
    type_into(&page, "#token", TOKEN).await;
    click(&page, "#login button[type=submit]").await;
    wait_for(&page, "#bindings a", |b| {
        b.iter().any(|b| b == "USER_CACHE")
    })
    .await;
    assert!(
        !page.current_url().await.unwrap().as_str().contains(TOKEN),
        "the token never goes into a URL"
    );
    wait_for(&page, "#stats dt", |s| {
        s.iter().any(|s| s == "Objects in memory")
    })
    .await;

    // The binding's objects, and the object: its key and its SQL row.
    click(&page, "#bindings a[href='#/USER_CACHE']").await;
    wait_for(&page, "#objects tbody a", |o| o == ["directory"]).await;
    click(&page, "#objects tbody a").await;
    wait_for(&page, "#kv td.key", |k| k == ["user:alice"]).await;
    let values = texts(&page, "#kv pre.json").await;
    assert!(
        values[0].contains("\"name\": \"Alice\""),
        "JSON is shown indented: {values:?}"
    );
    click(&page, "#tables button[data-table=updates]").await;
    wait_for(&page, "#rows td", |cells| {
        cells.iter().any(|c| c == "alice@example.com")
    })
    .await;

    // A query that reads runs; one that writes is refused.
    type_into(
        &page,
        "#query-text",
        "SELECT upper(name) AS shout FROM updates",
    )
    .await;
    click(&page, "#query button[type=submit]").await;
    wait_for(&page, "#query-result td", |cells| cells == ["ALICE"]).await;
    let shot = page.screenshot().await.unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui.png"),
        shot,
    )
    .unwrap();
    type_into(&page, "#query-text", "DELETE FROM updates").await;
    click(&page, "#query button[type=submit]").await;
    wait_for(&page, "#query-error", |e| e[0].contains("read-only")).await;

    // Deleting asks first.
    click(&page, "#delete").await;
    click(&page, "#delete-yes").await;
    wait_for(&page, "#delete-result", |r| r == ["Deleted."]).await;
    page.close().await.unwrap();

    let objects = admin_get(&server, TOKEN, "/_dohost/objects?binding=USER_CACHE").await;
    assert_eq!(objects.trim(), "[]", "the object is gone");
    let (status, body) = send(
        &http,
        "GET",
        &server.url("/USER_CACHE/directory/user/alice"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

/// `METHOD path` of the admin API of `host`, with the token: the status and
/// the JSON answer.
async fn admin(host: &dohost::Host, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut req = request(method, path, body);
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let response = host.fetch(req).await.unwrap();
    let status = response.status().as_u16();
    let json = serde_json::from_slice(response.body())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {:?}", response.body()));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_routes_page_read_only_and_run_alarms_through_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).admin_token(TOKEN).build().unwrap();
    for name in ["apple", "apricot", "banana"] {
        run_ops(
            &probe_stub(&host, name),
            &json!([{"op": "put", "key": "k", "value": name}]),
        )
        .await
        .unwrap();
    }
    let probe = probe_stub(&host, "p");
    run_ops(
        &probe,
        &json!([
            {"op": "put", "key": "a", "value": r#"{"n":1}"#},
            {"op": "put", "key": "b", "value": "[1,2]"},
            {"op": "put", "key": "c", "value": "three"},
            {"op": "sql", "query": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, raw BLOB)", "params": []},
            {"op": "sql", "query": "INSERT INTO notes(body, raw) VALUES ('x', x'00ff'), ('y', NULL), ('z', NULL)", "params": []},
            {"op": "set_alarm", "at": 4_000_000_000_000i64},
        ]),
    )
    .await
    .unwrap();

    let (status, bindings) = admin(&host, "GET", "/_dohost/bindings", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        bindings,
        json!([{"binding": "COUNTER", "class": "Counter"}, {"binding": "PROBE", "class": "Probe"}])
    );

    // Search by name, then pages of two.
    let (_, found) = admin(&host, "GET", "/_dohost/objects?binding=PROBE&q=ap", "").await;
    let names: Vec<&Value> = found["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["name"])
        .collect();
    assert_eq!(names.len(), 2, "{found}");
    assert!(names.contains(&&json!("apple")) && names.contains(&&json!("apricot")));
    let id = host
        .namespace("PROBE")
        .unwrap()
        .id_from_name("banana")
        .to_string();
    let (_, by_id) = admin(
        &host,
        "GET",
        &format!("/_dohost/objects?q=id:{}", &id[..10]),
        "",
    )
    .await;
    assert_eq!(by_id["objects"][0]["name"], json!("banana"), "{by_id}");
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = admin(
            &host,
            "GET",
            &format!("/_dohost/objects?binding=PROBE&limit=2{after}"),
            "",
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let objects = page["objects"].as_array().unwrap();
        assert!(objects.len() <= 2);
        seen.extend(
            objects
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["apple", "apricot", "banana", "p"]);

    // Keys with their values: JSON, or hex for other bytes; paged.
    let (_, kv) = admin(&host, "GET", "/_dohost/objects/PROBE/p/kv?limit=2", "").await;
    assert_eq!(
        kv,
        json!({"keys": [
            {"key": "a", "bytes": 7, "json": {"n": 1}},
            {"key": "b", "bytes": 5, "json": [1, 2]},
        ], "next": "b"})
    );
    let (_, kv) = admin(&host, "GET", "/_dohost/objects/PROBE/p/kv?after=b", "").await;
    assert_eq!(
        kv,
        json!({"keys": [{"key": "c", "bytes": 5, "hex": "7468726565"}], "next": null}),
        "bytes that are not JSON are shown as hex"
    );

    // A table's rows, paged; a blob as hex.
    let (_, rows) = admin(
        &host,
        "GET",
        "/_dohost/objects/PROBE/p/sql/notes?limit=2",
        "",
    )
    .await;
    assert_eq!(rows["columns"], json!(["id", "body", "raw"]));
    assert_eq!(
        rows["rows"],
        json!([[1, "x", {"hex": "00ff"}], [2, "y", null]])
    );
    let (_, rows) = admin(
        &host,
        "GET",
        "/_dohost/objects/PROBE/p/sql/notes?offset=2",
        "",
    )
    .await;
    assert_eq!(rows["rows"], json!([[3, "z", null]]));
    let (status, missing) = admin(&host, "GET", "/_dohost/objects/PROBE/p/sql/nope", "").await;
    assert_eq!(status, 404, "{missing}");

    // The query box reads, and refuses whatever would write, saying why.
    let query = |q: &str| json!({"query": q}).to_string();
    let (status, rows) = admin(
        &host,
        "POST",
        "/_dohost/objects/PROBE/p/sql",
        &query("SELECT count(*) AS n FROM notes"),
    )
    .await;
    assert_eq!((status, &rows["rows"]), (200, &json!([[3]])), "{rows}");
    for write in [
        "DELETE FROM notes",
        "INSERT INTO notes(body) VALUES ('w')",
        "DROP TABLE notes",
        "CREATE TABLE t(x)",
    ] {
        let (status, refused) =
            admin(&host, "POST", "/_dohost/objects/PROBE/p/sql", &query(write)).await;
        assert_eq!(status, 400, "{write}: {refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("read-only"),
            "{write}: {refused}"
        );
    }
    for (sneaky, says) in [
        ("SELECT 1; DELETE FROM notes", "one statement"),
        ("PRAGMA query_only = OFF", "not authorized"),
        ("ATTACH DATABASE 'other' AS other", "not authorized"),
        ("SELEC 1", "syntax error"),
    ] {
        let (status, refused) = admin(
            &host,
            "POST",
            "/_dohost/objects/PROBE/p/sql",
            &query(sneaky),
        )
        .await;
        assert_eq!(status, 400, "{sneaky}: {refused}");
        assert!(
            refused["error"].as_str().unwrap().contains(says),
            "{sneaky}: {refused}"
        );
    }
    let (_, rows) = admin(&host, "GET", "/_dohost/objects/PROBE/p/sql/notes", "").await;
    assert_eq!(
        rows["rows"].as_array().unwrap().len(),
        3,
        "nothing was written"
    );

    // The alarm, far in the future, runs now as a due alarm does: the
    // handler runs as an event of the object and the alarm is cleared.
    let (status, run) = admin(&host, "POST", "/_dohost/objects/PROBE/p/alarm/run", "").await;
    assert_eq!(
        (status, &run),
        (200, &json!({"error": null, "alarm": null})),
        "{run}"
    );
    let log = run_ops(
        &probe,
        &json!([{"op": "get", "key": "alarm-log"}, {"op": "get_alarm"}]),
    )
    .await
    .unwrap();
    let ran: Value = serde_json::from_str(log[0]["ok"].as_str().unwrap()).unwrap();
    assert_eq!(
        ran[0]["retry_count"],
        json!(0),
        "the handler ran once: {ran}"
    );
    assert_eq!(ran.as_array().unwrap().len(), 1, "{ran}");
    assert_eq!(log[1], json!({"ok": null}));
    assert_eq!(host.stats().alarms_run, 1);
    let (status, none) = admin(&host, "POST", "/_dohost/objects/PROBE/p/alarm/run", "").await;
    assert_eq!(status, 404, "{none}");
    assert!(
        none["error"].as_str().unwrap().contains("no alarm"),
        "{none}"
    );

    // A failing handler is retried as any failed alarm is.
    run_ops(
        &probe,
        &json!([
            {"op": "put", "key": "alarm-plan", "value": r#"["error"]"#},
            {"op": "set_alarm", "at": 4_000_000_000_000i64},
        ]),
    )
    .await
    .unwrap();
    let (status, run) = admin(&host, "POST", "/_dohost/objects/PROBE/p/alarm/run", "").await;
    assert_eq!(status, 200, "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("probe alarm error"),
        "{run}"
    );
    let retry = run["alarm"].as_i64().expect("a retry is scheduled");
    assert!(retry < 4_000_000_000_000, "{run}");
    host.shutdown().await;
}

/// The page's files come with their types and a policy that allows only
/// the host's own files; without `[admin] token` there is no page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_from_the_binary_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).admin_token(TOKEN).build().unwrap();
    for (path, kind) in [
        ("/_dohost/ui", "text/html"),
        ("/_dohost/ui/", "text/html"),
        ("/_dohost/ui/ui.js", "text/javascript"),
        ("/_dohost/ui/ui.css", "text/css"),
    ] {
        let response = host.fetch(request("GET", path, "")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").starts_with("default-src 'self'"),
            "{path}"
        );
        assert!(!response.body().is_empty());
    }
    let response = host
        .fetch(request("GET", "/_dohost/ui/other.js", ""))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "anything else under /_dohost/ needs the token"
    );
    host.shutdown().await;

    let plain = library_host(&dir.path().join("plain")).build().unwrap();
    let refused = plain.fetch(request("GET", "/_dohost/ui", "")).await;
    assert!(refused.is_err_and(|e| e.kind() == dohost::ErrorKind::NotFound));
    plain.shutdown().await;
}
