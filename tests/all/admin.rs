//! Object admin: `dohost objects list/show/delete` on a stopped server's
//! data directory, and the admin HTTP API of a running one, which refuses
//! a missing or wrong token.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{
    Server, client, get, guests, library_host, request, run_ops, send, text, write_config,
};

/// Runs `dohost objects ARGS --data DATA`: whether it succeeded, stdout and
/// stderr.
fn objects(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dohost"))
        .arg("objects")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run dohost objects");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two counters and a probe with a key, a SQL table and an alarm.
async fn populate(host: &dohost::Host) {
    let counters = host.namespace("COUNTER").unwrap();
    for name in ["c1", "c2"] {
        counters
            .get_by_name(name)
            .fetch(request("GET", "/", ""))
            .await
            .unwrap();
    }
    let probe = host.namespace("PROBE").unwrap().get_by_name("p");
    run_ops(
        &probe,
        &json!([
            {"op": "put", "key": "greeting", "value": "hello"},
            {"op": "sql", "query": "CREATE TABLE notes(body TEXT)", "params": []},
            {"op": "sql", "query": "INSERT INTO notes VALUES ('a'), ('b')", "params": []},
            {"op": "set_alarm", "at": 4_000_000_000_000i64},
        ]),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_listed_shown_and_deleted_in_a_stopped_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let host = library_host(data).build().unwrap();
    populate(&host).await;
    let probe_id = host
        .namespace("PROBE")
        .unwrap()
        .id_from_name("p")
        .to_string();
    host.shutdown().await;

    let (ok, all, log) = objects(data, &["list"]);
    assert!(ok, "{log}");
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    for name in ["c1", "c2"] {
        assert!(
            lines[..2]
                .iter()
                .any(|l| l.starts_with("COUNTER\tCounter\t") && l.ends_with(&format!("\t{name}"))),
            "{all}"
        );
    }
    assert_eq!(lines[2], format!("PROBE\tProbe\t{probe_id}\tp"));
    assert!(log.contains("3 object(s)"), "{log}");
    let (_, counters, _) = objects(data, &["list", "COUNTER"]);
    assert_eq!(counters.lines().count(), 2, "{counters}");
    let (ok, _, log) = objects(data, &["list", "NOPE"]);
    assert!(
        !ok && log.contains("no binding \"NOPE\"") && log.contains("COUNTER, PROBE"),
        "{log}"
    );

    // By name and by id, the same object.
    let marked_id = format!("id:{probe_id}");
    for which in ["p", marked_id.as_str()] {
        let (ok, shown, log) = objects(data, &["show", "PROBE", which]);
        assert!(ok, "{log}");
        let shown: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(shown["id"], json!(probe_id));
        assert_eq!(shown["name"], json!("p"));
        assert_eq!(shown["class"], json!("Probe"));
        assert_eq!(shown["keys"], json!([{"key": "greeting", "bytes": 5}]));
        assert_eq!(shown["keys_total"], json!(1));
        assert_eq!(shown["sql_tables"], json!([{"name": "notes", "rows": 2}]));
        assert_eq!(shown["alarm"], json!(4_000_000_000_000i64));
    }

    // An id without its prefix is a name, never taken for the id.
    let (ok, _, log) = objects(data, &["show", "PROBE", &probe_id]);
    assert!(!ok && log.contains("PROBE has no object"), "{log}");
    let (ok, _, log) = objects(data, &["show", "PROBE", "id:00ff"]);
    assert!(!ok && log.contains("is not an id of PROBE"), "{log}");

    let (ok, _, log) = objects(data, &["delete", "PROBE", "p"]);
    assert!(ok, "{log}");
    let (ok, _, log) = objects(data, &["show", "PROBE", "p"]);
    assert!(!ok && log.contains("PROBE has no object \"p\""), "{log}");
    let (ok, _, log) = objects(data, &["delete", "PROBE", "p"]);
    assert!(!ok, "deleting twice: {log}");

    // The object is empty when the server comes back; the others are not.
    let host = library_host(data).build().unwrap();
    assert_eq!(host.stats().alarms_in_memory, 0, "the alarm was deleted");
    let probe = host.namespace("PROBE").unwrap().get_by_name("p");
    let found = run_ops(
        &probe,
        &json!([{"op": "get", "key": "greeting"}, {"op": "get_alarm"}]),
    )
    .await
    .unwrap();
    assert_eq!(found, [json!({"ok": null}), json!({"ok": null})]);
    let c1 = host.namespace("COUNTER").unwrap().get_by_name("c1");
    assert_eq!(text(&c1.fetch(request("GET", "/", "")).await.unwrap()), "2");
    host.shutdown().await;

    // A running server holds the data directory: the command says what to
    // use instead.
    let running = library_host(data).build().unwrap();
    let (ok, _, log) = objects(data, &["list"]);
    assert!(!ok && log.contains("admin HTTP API"), "{log}");
    drop(running);
}

const TOKEN: &str = "test-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token_and_deletes_live_objects() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let config = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [admin]\ntoken = \"{TOKEN}\"\n",
            g.counter
        ),
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();
    for expected in ["1", "2"] {
        assert_eq!(
            get(&http, &server.url("/COUNTER/live/")).await,
            (200, expected.to_owned())
        );
    }

    let admin = |method: &'static str, path: &str, token: Option<&str>| {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(server.url(path));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let req = builder
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let http = http.clone();
        async move {
            let resp = http.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };

    let (status, body) = admin("GET", "/_dohost/objects", None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (status, body) = admin("GET", "/_dohost/objects", Some("guess")).await;
    assert_eq!((status, body), (401, json!({"error": "wrong admin token"})));
    let (status, _) = admin("DELETE", "/_dohost/objects/COUNTER/live", Some("guess")).await;
    assert_eq!(status, 401);

    // The scheme is matched in any case (RFC 9110).
    let lowercase = http::Request::get(server.url("/_dohost/objects"))
        .header("authorization", format!("bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(http.request(lowercase).await.unwrap().status(), 200);

    let (status, body) = admin("GET", "/_dohost/objects?binding=COUNTER", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["name"], json!("live"));
    let (status, body) = admin("GET", "/_dohost/objects/COUNTER/live", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"], json!([{"key": "value", "bytes": 1}]));

    // The object is live (in memory); deleting it resets it.
    let (status, body) = admin("DELETE", "/_dohost/objects/COUNTER/live", Some(TOKEN)).await;
    assert_eq!((status, body), (200, json!({"deleted": true})));
    assert_eq!(
        get(&http, &server.url("/COUNTER/live/")).await,
        (200, "1".to_owned())
    );
    let (status, body) = admin("GET", "/_dohost/objects/COUNTER/ghost", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin("GET", "/_dohost/nothing", Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("the routes are"),
        "{body}"
    );

    // Without a token in the config there is no admin API.
    let plain = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n",
            g.counter
        ),
    );
    drop(server);
    let server = Server::start(&plain, &dir.path().join("data"));
    let (status, body) = send(&http, "GET", &server.url("/_dohost/objects"), "").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no Durable Object binding named \"_dohost\""),
        "{body}"
    );
}
