//! Python guests (examples/python), built by dohost with the Python SDK
//! (componentize-py) and served by `dohost serve`: the Counter and its
//! worker, a tour of the SDK's API, and Python, Rust and JavaScript objects
//! calling each other and reading each other's stored values.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::outside::Outside;
use crate::support::{
    Server, client, example_config, example_config_file, get, get_json, get_streaming,
    js_examples_built, next_chunk, send, send_json, with_component, workspace, write_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_counter_counts_through_its_worker_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let config = write_config(dir.path(), &example_config("examples/python/counter"));
    let server = Server::start(&config, &dir.path().join("data"));
    assert!(
        server.log().contains("componentize-py")
            || server.log().contains("unchanged since the last build"),
        "the build says what it built: {}",
        server.log()
    );
    for expected in ["1", "2", "3"] {
        let (status, body) = get(&client, &server.url("/")).await;
        assert_eq!((status, body.as_str()), (200, expected), "{}", server.log());
    }
    // Any path reaches the same counter: the worker forwards to "my-counter".
    let (status, body) = send(&client, "POST", &server.url("/anything?x=1"), "ignored").await;
    assert_eq!((status, body.as_str()), (200, "4"));
    drop(server);

    let server = Server::start(&config, &dir.path().join("data"));
    let (status, body) = get(&client, &server.url("/")).await;
    assert_eq!((status, body.as_str()), (200, "5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_kv_sql_alarms_rpc_timers_streams_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let outside = Outside::start().await;
    let config = example_config("examples/python/api")
        .replace("127.0.0.1:8788", &outside.addr)
        .replace("http://127.0.0.1:8788", &outside.url(""));
    let server = Server::start(&write_config(dir.path(), &config), &dir.path().join("data"));
    let url = |route: &str| server.url(&format!("/tour/{route}"));

    let kv = get_json(&client, &url("kv")).await;
    assert_eq!(
        kv,
        json!({
            "one": 1,
            "many": {"a": 1, "b": [2, "two"]},
            "listed": ["starts", "d", "c"],
            "after": ["b", "c"],
            "deleted": true,
            "deleted_many": 1,
            "left": ["c", "d", "starts"],
            "sync": {"three": 3.5},
            "too_long": "KeyTooLarge",
        })
    );
    let values = get_json(&client, &url("values")).await;
    assert_eq!(
        values,
        json!({
            "same": true,
            "shared_kept": true,
            "types": ["big:int", "bytes:bytes", "float:float", "map:dict", "set:set", "shared:list", "when:datetime"],
        })
    );
    let txn = get_json(&client, &url("txn")).await;
    assert_eq!(
        txn,
        json!({"result": "committed", "sync_result": 7, "kept": {"t1": "kept"}})
    );
    let sql = get_json(&client, &url("sql")).await;
    assert_eq!(sql["columns"], json!(["id", "body", "score"]));
    assert_eq!(
        sql["rows"],
        json!([{"id": 1, "body": "first", "score": 1.5}, {"id": 2, "body": "second", "score": 2.5}])
    );
    assert_eq!((&sql["count"], &sql["sum"]), (&json!(2), &json!(4.0)));
    assert_eq!(sql["raw"], json!([["first", "first"]]));
    assert_eq!(
        (&sql["rows_read"], &sql["size"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(sql["error"], "no such table: nowhere");

    // The alarm: set 100 ms ahead, then alarm() records it fired.
    let (status, set) = send_json(&client, "POST", &url("alarm?in=100"), "").await;
    assert_eq!(status, 200);
    assert!(set["alarm"].as_i64().unwrap() > 1_600_000_000_000, "{set}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let fired = loop {
        let state = get_json(&client, &url("alarm")).await;
        if state["fired"] == 1 || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(fired, json!({"alarm": null, "fired": 1, "retry": 0}));

    // RPC between two Python objects, concurrently, and its errors.
    let rpc = get_json(&client, &url("rpc")).await;
    assert_eq!(
        rpc,
        json!({
            "added": 5,
            "echoed": {"nested": [1, {"x": null}]},
            "failure": {"message": "RuntimeError: on purpose", "remote": true},
            "missing": "TypeError: class Api has no RPC method 'nope'",
            "total": 5,
        })
    );

    // RpcTargets and functions by reference, both ways and disposed.
    let targets = get_json(&client, &url("targets")).await;
    assert_eq!(targets["counted"], json!([12, 15]), "{targets}");
    assert_eq!(
        (&targets["tripled"], &targets["calls"]),
        (&json!(18), &json!(2))
    );
    assert!(
        targets["dropped"].as_str().unwrap().contains("disposed"),
        "{targets}"
    );
    assert_eq!(targets["kept"], "kept b");
    assert!(
        targets["disposed"].as_str().unwrap().contains("disposed"),
        "{targets}"
    );
    assert!(
        targets["stored"]
            .as_str()
            .unwrap()
            .contains("passes by reference over RPC only"),
        "{targets}"
    );
    assert_eq!(targets["echoed"], 15);
    assert!(targets["after_reset"].is_string(), "{targets}");
    let lent = get_json(&client, &url("lend")).await;
    assert_eq!(lent, json!({"applied": 200}), "the worker lent a function");

    // An exception answers 500 with its message; the object keeps serving,
    // its writes before the exception kept, as in any event.
    let (status, body) = get(&client, &url("error")).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("ValueError: this route always fails"),
        "{body}"
    );
    let state = get_json(&client, &url("state")).await;
    assert_eq!(state["name"], "tour");
    assert_eq!(state["id"].as_str().unwrap().len(), 64);
    assert_eq!(state["starts"], 1, "the object was not reset: {state}");
    assert_eq!(state["greeting"], "hello from dohost.toml");
    assert_eq!(state["limits"], json!({"requests": 10, "window": "1m"}));
    assert_eq!(state["before_error"], true);

    // Timers run concurrently (asyncio.gather of two 1.5 s sleeps), and
    // other events reach the object meanwhile.
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = url("wait?ms=1500");
        async move { get_json(&client, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = get_json(&client, &url("state")).await;
    assert!(
        !waiting.is_finished(),
        "another event of the object was answered while one slept"
    );
    let waited = waiting.await.unwrap()["waited_ms"].as_u64().unwrap();
    assert!((1490..3000).contains(&waited), "waited {waited} ms");

    // A streamed body: the first event comes while the generator waits;
    // the last once /release is called. The same through a second object
    // that relays the first's body with chunks().
    for (path, source) in [
        ("streamer/stream", "streamer"),
        ("relayer/relay?from=relayed", "relayed"),
    ] {
        let mut response = get_streaming(&client, &server.url(&format!("/{path}"))).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let body = response.body_mut();
        assert_eq!(next_event(body).await, Ok("data: first\n\n".to_owned()));
        let release = server.url(&format!("/{source}/release"));
        assert_eq!(send_json(&client, "POST", &release, "").await.0, 200);
        assert_eq!(next_event(body).await, Ok("data: last\n\n".to_owned()));
        assert!(next_chunk(body).await.is_none(), "{path}: the body ended");
    }
    // A generator that raises at once cuts the body after what it wrote:
    // the head and the first event still reach the client. Its traceback
    // is logged.
    let mut response = get_streaming(&client, &url("stream?fail=1")).await;
    assert_eq!(response.status(), 200);
    let body = response.body_mut();
    assert_eq!(next_event(body).await, Ok("data: first\n\n".to_owned()));
    assert!(next_event(body).await.is_err(), "the broken body was cut");
    assert!(
        server
            .log_with("the stream broke")
            .contains("RuntimeError: the stream broke")
    );

    let outbound = get_json(&client, &url("outbound")).await;
    assert_eq!(outbound, json!({"status": 200, "body": "hello"}));
    assert_eq!(outside.seen_path("/hello").len(), 1);

    // After a restart the constructor's blockConcurrencyWhile ran again.
    drop(server);
    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let state = get_json(&client, &server.url("/tour/state")).await;
    assert_eq!(state["starts"], 2);
}

/// The next server-sent event of `body` (up to its blank line), within
/// 10 s, or how the body failed.
async fn next_event(body: &mut hyper::body::Incoming) -> Result<String, String> {
    let mut event = String::new();
    while !event.ends_with("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), next_chunk(body))
            .await
            .expect("an event within 10 s")
            .unwrap_or_else(|| Err("the body ended".to_owned()))?;
        event.push_str(&chunk);
    }
    Ok(event)
}

/// RpcTargets and functions pass by reference between Python and
/// JavaScript objects, both ways: each tour's targets route with the
/// other's Api as its peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_objects_lend_each_other_rpc_targets() {
    js_examples_built();
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let config = format!(
        "[[durable_objects.bindings]]\nname = \"API\"\nclass_name = \"PyApi\"\ncomponent = {:?}\n\
         [[durable_objects.bindings]]\nname = \"JS\"\nclass_name = \"Api\"\ncomponent = {:?}\n\
         [vars]\nGREETING = \"hello\"\n",
        workspace().join("examples/python/api/api.py"),
        workspace().join("examples/js/api/api.js"),
    );
    let server = Server::start(&write_config(dir.path(), &config), &dir.path().join("data"));
    let disposed = "Attempted to use an RPC stub after it was disposed";
    let gone = "CallError: the RpcTarget or function stub was disposed, or the object that passed it was reset or left memory since";

    // Python lends to JavaScript and calls what JavaScript lends.
    let python = get_json(&client, &server.url("/API/py/targets?binding=JS")).await;
    assert_eq!(
        python["counted"],
        json!(["py-peer: 12", "py-peer: 15"]),
        "{python}"
    );
    assert_eq!(
        (&python["tripled"], &python["calls"]),
        (&json!(18), &json!(2))
    );
    assert_eq!(python["dropped"], format!("CallError: Error: {disposed}"));
    assert_eq!(python["kept"], "kept b");
    assert_eq!(python["disposed"], format!("RuntimeError: {disposed}"));
    assert_eq!(python["echoed"], 15);
    assert_eq!(python["after_reset"], gone);

    // JavaScript lends to Python and calls what Python lends.
    let js = get_json(&client, &server.url("/JS/js/targets")).await;
    assert_eq!(js["counted"], json!([12, 15]), "{js}");
    assert_eq!(
        (&js["tripled"], &js["calls"], &js["kept"]),
        (&json!(18), &json!(3), &json!("kept b"))
    );
    assert_eq!(
        js["dropped"],
        format!("CallError: RuntimeError: {disposed}")
    );
    assert_eq!(js["disposed"], format!("Error: {disposed}"));
    assert_eq!(js["echoed"], 15);
    assert_eq!(js["afterReset"], gone);
}

/// Creates the document `id` named `name` in the Workspace `workspace`.
async fn create_document(
    client: &crate::support::HttpClient,
    server: &Server,
    workspace: &str,
    id: &str,
    name: &str,
) -> Value {
    let (status, body) = send_json(
        client,
        "POST",
        &server.url(&format!("/workspaces/{workspace}/documents")),
        &json!({"id": id, "name": name}).to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}; {}", server.log());
    body
}

/// Writes `text` into document `id` of `workspace`; its new version.
async fn write_document(
    client: &crate::support::HttpClient,
    server: &Server,
    workspace: &str,
    id: &str,
    text: &str,
) -> u64 {
    let url = server.url(&format!("/workspaces/{workspace}/documents/{id}"));
    let (status, body) = send_json(client, "PUT", &url, text).await;
    assert_eq!(status, 200, "{body}");
    body["version"].as_u64().unwrap()
}

/// What document `id` of `workspace` says of itself: (name, text, version).
async fn read_document(
    client: &crate::support::HttpClient,
    server: &Server,
    workspace: &str,
    id: &str,
) -> (String, String, u64) {
    let url = server.url(&format!("/workspaces/{workspace}/documents/{id}"));
    let doc = get_json(client, &url).await;
    (
        doc["name"].as_str().unwrap().to_owned(),
        doc["text"].as_str().unwrap().to_owned(),
        doc["version"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_rust_and_javascript_objects_call_each_other_and_read_each_others_values() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let data = dir.path().join("data");
    let serve = |text: &str| Server::start(&write_config(dir.path(), text), &data);
    let example = "examples/python/workspace";
    let python_module = workspace().join(example).join("workspace.py");
    let doc = |title: &str, text: &str, version: u64| (title.to_owned(), text.to_owned(), version);

    // Python -> Python: the Python Workspace with Python Documents.
    let server = serve(&example_config(example));
    create_document(&client, &server, "acme", "plan", "The plan").await;
    assert_eq!(
        write_document(&client, &server, "acme", "plan", "by Python").await,
        1
    );
    drop(server);

    // Python -> Rust: the Python Workspace calls the Rust Document, which
    // reads what the Python one stored.
    let server = serve(&example_config_file(example, "rust.toml"));
    assert_eq!(
        read_document(&client, &server, "acme", "plan").await,
        doc("The plan", "by Python", 1)
    );
    assert_eq!(
        write_document(&client, &server, "acme", "plan", "by Rust").await,
        2
    );
    create_document(&client, &server, "acme", "notes", "Notes").await;
    drop(server);

    // Python -> JavaScript, likewise.
    let server = serve(&example_config_file(example, "js.toml"));
    let contents = get_json(&client, &server.url("/workspaces/acme/contents")).await;
    let texts: Vec<(&str, &str)> = contents
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_str().unwrap(), pair[1]["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts, [("plan", "by Rust"), ("notes", "")]);
    assert_eq!(
        write_document(&client, &server, "acme", "notes", "by JS").await,
        1
    );
    drop(server);

    // Rust -> Python: the Rust Workspace (and worker) of examples/workspace
    // with the Python Document, on the same data: its table and its
    // documents, written by Rust and JavaScript, read by Python.
    let rust_workspace = with_component(
        &example_config("examples/workspace"),
        "DOCUMENT",
        &python_module,
    );
    let server = serve(&rust_workspace);
    assert_eq!(
        read_document(&client, &server, "acme", "notes").await,
        doc("Notes", "by JS", 1)
    );
    assert_eq!(
        write_document(&client, &server, "acme", "plan", "by Python again").await,
        3
    );
    drop(server);

    // JavaScript -> Python: the JavaScript Workspace of examples/js/patterns
    // creates Python Documents over RPC.
    crate::support::js_examples_built();
    let js_patterns = with_component(
        &example_config("examples/js/patterns"),
        "DOCUMENT",
        &python_module,
    );
    let server = serve(&js_patterns);
    let (status, created) = send_json(
        &client,
        "POST",
        &server.url("/workspaces/js-side/documents"),
        "From JS",
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let described = get_json(
        &client,
        &server.url(&format!("/workspaces/js-side/documents/{id}")),
    )
    .await;
    assert_eq!(
        (&described["name"], &described["version"]),
        (&json!("From JS"), &json!(0))
    );
    drop(server);

    // And the Rust Document reads the last Python write.
    let server = serve(&example_config("examples/workspace"));
    assert_eq!(
        read_document(&client, &server, "acme", "plan").await,
        doc("The plan", "by Python again", 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_module_that_does_not_build_is_refused_with_python_s_error() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("broken.py");
    std::fs::write(
        &module,
        "from workers import DurableObject\n\nclass Broken(DurableObject)\n    pass\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "name = \"broken\"\n[[durable_objects.bindings]]\nname = \"BROKEN\"\nclass_name = \"Broken\"\ncomponent = \"broken.py\"\n",
    );
    let refused = crate::support::serve_refused(&config, &dir.path().join("data"));
    assert!(
        refused.contains("building the Python guest") && refused.contains("SyntaxError"),
        "{refused}"
    );
}

/// Cloudflare's Python Durable Object example (its changelog of
/// 2025-05-14), with the wrangler.toml it gives: served as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_s_python_durable_object_example_runs_from_its_wrangler_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/entry.py"),
        r#"from workers import DurableObject, Response, WorkerEntrypoint
from urllib.parse import urlparse


class MyDurableObject(DurableObject):
    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env

    def fetch(self, request):
        result = self.ctx.storage.sql.exec("SELECT 'Hello, World!' as greeting").one()
        return Response(result.greeting)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        id = self.env.MY_DURABLE_OBJECT.idFromName(url.path)
        stub = self.env.MY_DURABLE_OBJECT.get(id)
        greeting = await stub.fetch(request.url)
        return greeting
"#,
    )
    .unwrap();
    let config = dir.path().join("wrangler.toml");
    std::fs::write(
        &config,
        r#"name = "hello-python"
main = "src/entry.py"
compatibility_date = "2025-05-01"
compatibility_flags = ["python_workers"]

[[durable_objects.bindings]]
name = "MY_DURABLE_OBJECT"
class_name = "MyDurableObject"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["MyDurableObject"]
"#,
    )
    .unwrap();
    let server = Server::start(&config, &dir.path().join("data"));
    let (status, body) = get(&client(), &server.url("/hello")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello, World!"),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("python_workers"), "{}", server.log());
}

/// What the JavaScript SDK stores with structured clone (a `Date`, `Map`s,
/// a `Set`, a `BigInt`, bytes, `undefined`, `NaN`, a `RegExp`, an `Error`)
/// reads in Python as Python's types: the JavaScript Api of examples/js/api
/// stores it, then the Python Api of examples/python/api, swapped in on the
/// same binding and data, reads it. As many Python objects as
/// `max_live_objects` are live at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_what_javascript_stored_with_structured_clone() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let data = dir.path().join("data");
    crate::support::js_examples_built();
    let js = example_config("examples/js/api");
    let server = Server::start(&write_config(dir.path(), &js), &data);
    let (status, body) = get(&client, &server.url("/API/shared/clone?write=1")).await;
    assert_eq!(status, 200, "{body}");
    drop(server);

    // At most 40 live objects, and no entry worker: a pool of few slots,
    // each of which a Python instance (14 core instances) must fit.
    let python = workspace().join("examples/python/api/api.py");
    let config = with_component(&js, "API", &python) + "\n[limits]\nmax_live_objects = 40\n";
    let server = Server::start(&write_config(dir.path(), &config), &data);
    for n in 0..40 {
        let state = get_json(&client, &server.url(&format!("/API/live-{n}/state"))).await;
        assert_eq!(state["starts"], 1, "{state}");
    }
    let read = get_json(&client, &server.url("/API/shared/read?key=for-rust")).await;
    let expected = json!({
        "date": "datetime: datetime.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=datetime.timezone.utc)",
        "map": "dict: {'a': 1, 'b': 2}",
        "numbers": "dict: {7: 'seven'}",
        "set": "set: {1, 2, 3}",
        "big": "int: 12345678901234567890",
        "bytes": "bytes: b'\\x01\\x02\\x03'",
        "pixels": "bytes: b'\\xff\\x00'",
        "missing": "NoneType: None",
        "nan": "float: nan",
        "negativeZero": "float: -0.0",
        "pattern": "tuple: ('a+b', 'g')",
    });
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&read[key], want, "{key}: {read}");
    }
    let error = read["error"].as_str().unwrap();
    assert!(
        error.starts_with("tuple: ('Error', 'TypeError', 'bad input'"),
        "{error}"
    );
}
