//! Cloudflare projects as they are: a JavaScript one with its wrangler.toml
//! (Cloudflare's "Build a counter"), served with no edit; the warnings for
//! the keys dohost does not use; and a binding to a product dohost lacks,
//! which fails with an error naming it when code uses it; a wrangler.json;
//! and a class-style TypeScript worker (examples/js/entrypoint) that streams
//! server-sent events. (The TypeScript project with a wrangler.jsonc is the
//! fullstack example, in fullstack.rs.)

use serde_json::Value;

use crate::support::{
    Server, client, example_config, get, get_streaming, js_examples_built, next_chunk, workspace,
    write_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_a_counter_example_serves_from_its_wrangler_toml() {
    let data = tempfile::tempdir().unwrap();
    let config = workspace().join("examples/js/rpc-counter/wrangler.toml");
    let server = Server::start(&config, data.path());
    assert!(
        server
            .log()
            .contains("wrangler.toml: workers_dev: a Cloudflare deployment or build setting, which dohost does not use; ignored"),
        "{}",
        server.log()
    );
    let client = client();
    for (path, expected) in [
        ("/?name=A", "Durable Object 'A' count: 0"),
        ("/increment?name=A", "Durable Object 'A' count: 1"),
        ("/increment?name=A", "Durable Object 'A' count: 2"),
        ("/decrement?name=B", "Durable Object 'B' count: -1"),
        ("/?name=A", "Durable Object 'A' count: 2"),
    ] {
        let (status, body) = get(&client, &server.url(path)).await;
        assert_eq!((status, body.as_str()), (200, expected), "{path}");
    }
    let (status, body) = get(&client, &server.url("/other?name=A")).await;
    assert_eq!((status, body.as_str()), (404, "Not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrangler_json_serves_the_same_project() {
    let dir = tempfile::tempdir().unwrap();
    let main = workspace().join("examples/js/rpc-counter/src/index.js");
    let config = dir.path().join("wrangler.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "name": "rpc-counter",
            "main": main,
            "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": "Counter"}]},
            "migrations": [{"tag": "v1", "new_sqlite_classes": ["Counter"]}],
        })
        .to_string(),
    )
    .unwrap();
    let server = Server::start(&config, &dir.path().join("data"));
    let (status, body) = get(&client(), &server.url("/increment?name=J")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Durable Object 'J' count: 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_dohost_lacks_is_named_when_code_uses_it() {
    js_examples_built();
    let dir = tempfile::tempdir().unwrap();
    let config = example_config("examples/js/api").replace(
        "[vars]\n",
        "[vars]\nLIMIT = 3\nSETTINGS = { colors = [\"red\"], on = true }\n",
    ) + "\n[[kv_namespaces]]\nbinding = \"CACHE\"\nid = \"0f2ac74b498b48028cb68387c421e279\"\n";
    let server = Server::start(&write_config(dir.path(), &config), &dir.path().join("data"));
    assert!(
        server.log().contains(
            "kv_namespaces: dohost has no KV namespaces; ignored; code that uses env.CACHE fails with an error naming it"
        ),
        "{}",
        server.log()
    );
    let client = client();
    let env = |name: &str| {
        let url = server.url(&format!("/API/a/env?name={name}"));
        let client = client.clone();
        async move {
            let (status, body) = get(&client, &url).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let cache = env("CACHE").await;
    assert_eq!(
        cache["error"],
        "env.CACHE is declared in the configuration as a KV namespace (kv_namespaces), which dohost does not provide"
    );
    assert_eq!(cache["has"], true);
    let greeting = env("GREETING").await;
    assert_eq!(
        (&greeting["type"], &greeting["value"]),
        (&Value::from("string"), &Value::from("hello from [vars]"))
    );
    assert_eq!(env("API").await["type"], "object");
    // Vars that are not strings arrive as the values they are.
    let limit = env("LIMIT").await;
    assert_eq!(
        (&limit["type"], &limit["value"]),
        (&Value::from("number"), &Value::from(3))
    );
    let settings = env("SETTINGS").await;
    assert_eq!(
        settings["value"],
        serde_json::json!({"colors": ["red"], "on": true})
    );
    let nothing = env("NOTHING").await;
    assert_eq!(
        (&nothing["type"], &nothing["has"]),
        (&Value::from("undefined"), &Value::from(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_style_worker_in_typescript_finishes_its_wait_until_work_and_streams_events() {
    let data = tempfile::tempdir().unwrap();
    let config = workspace().join("examples/js/entrypoint/wrangler.toml");
    let server = Server::start(&config, data.path());
    let client = client();
    for _ in 0..3 {
        let (status, body) = get(&client, &server.url("/docs")).await;
        assert_eq!((status, body.as_str()), (200, "welcome to /docs"));
    }
    // Each visit is recorded after its response; they all arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, count) = get(&client, &server.url("/docs?count")).await;
        if count == "3" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "visits recorded: {count}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Server-sent events: the object's stream handed on by the worker as
    // the object writes it, and the worker's own.
    let mut watch = get_streaming(&client, &server.url("/docs?watch=3")).await;
    assert_eq!(watch.headers()["content-type"], "text/event-stream");
    let first = next_chunk(watch.body_mut()).await.unwrap().unwrap();
    assert_eq!(first, "event: count\ndata: 3\n\n");
    let mut rest = String::new();
    while let Some(chunk) = next_chunk(watch.body_mut()).await {
        rest += &chunk.unwrap();
    }
    assert_eq!(rest, first.repeat(2));
    let (status, ticks) = get(&client, &server.url("/docs?tick=2")).await;
    assert_eq!(
        (status, ticks.as_str()),
        (200, "data: tick 1, visit 4\n\ndata: tick 2, visit 5\n\n")
    );

    // A function the worker passes by reference, called back by the object
    // during the call; and ctx.exports.
    let callback = get(&client, &server.url("/docs?callback")).await;
    assert_eq!(
        callback,
        (200, r#"{"told":[5,6],"sum":22,"viaExports":5}"#.to_owned())
    );
}
