//! JavaScript guests (examples/js), built by dohost with the JS SDK and
//! served by `dohost serve`: the Counter example and its worker, the storage
//! patterns, a tour of the SDK's API, and calls between JavaScript and Rust
//! objects in both directions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Server, client, example_config, get, get_json, get_streaming, js_examples_built, next_chunk,
    send, send_json, send_with_headers, with_component, workspace, write_config,
};

/// Serves the JavaScript example `example` (under examples/js) from `dir`.
fn serve_js(example: &str, dir: &std::path::Path) -> Server {
    serve_js_with(example, dir, "")
}

/// As [`serve_js`], with `extra` appended to the example's dohost.toml.
fn serve_js_with(example: &str, dir: &std::path::Path, extra: &str) -> Server {
    js_examples_built();
    let config = example_config(&format!("examples/js/{example}")) + extra;
    Server::start(&write_config(dir, &config), &dir.join("data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_counter_counts_through_its_worker_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("counter", dir.path());
    assert!(
        server.log().contains("(esbuild and componentize-js)"),
        "the build says what it built: {}",
        server.log()
    );
    for expected in ["1", "2", "3"] {
        let (status, body) = get(&client, &server.url("/")).await;
        assert_eq!((status, body.as_str()), (200, expected));
    }
    // Any path reaches the same counter: the worker forwards to "my-counter".
    let (status, body) = send(&client, "POST", &server.url("/anything?x=1"), "ignored").await;
    assert_eq!((status, body.as_str()), (200, "4"));
    drop(server);

    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let (status, body) = get(&client, &server.url("/")).await;
    assert_eq!((status, body.as_str()), (200, "5"));
}

/// Sends `count` requests with a 60 KB header to the counter example through
/// its worker; each must count up from 1.
async fn count_with_big_headers(server: &Server, count: usize) {
    let client = client();
    let big = "x".repeat(60_000);
    for n in 1..=count {
        let (status, body) =
            send_with_headers(&client, "GET", &server.url("/"), &[("x-big", &big)], "").await;
        assert_eq!(
            (status, body),
            (200, n.to_string()),
            "request {n}; {}",
            server.log()
        );
    }
}

/// The counter example's worker forwards each request with `stub.fetch`, whose
/// arguments componentize-js's glue copies into the worker's memory. 400
/// requests with a 60 KB header each pass through it: before the glue gave
/// that memory back, the worker kept every copy, about 400 KB a request,
/// and trapped on its 128 MiB limit about 300 requests in (now it would be
/// replaced near its limit instead, which the log tells).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_worker_gives_back_the_memory_of_what_it_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_js("counter", dir.path());
    count_with_big_headers(&server, 400).await;
    let log = server.log();
    assert!(!log.contains("memory grew"), "{log}");
}

/// A JavaScript guest's memory grows by some 100 KB with every request
/// that has a 60 KB header, and its engine never gives that back, in the
/// worker and the object alike. With a 32 MiB limit, a host that kept its
/// instances trapped 14 times in these 600 requests; this one replaces each
/// instance between events once its memory passes three quarters of the
/// limit, so all 600 count up, the object's count carried over in storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_instances_near_their_memory_limit_are_replaced_between_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_js_with(
        "counter",
        dir.path(),
        "\n[limits]\nmemory_bytes = 33554432\n",
    );
    count_with_big_headers(&server, 600).await;
    let log = server.log();
    for instance in ["a worker instance's memory", "the object's memory"] {
        assert!(
            log.contains(&format!("{instance} grew to ")) && log.contains("of its 32 MiB limit"),
            "{instance}: {log}"
        );
    }
    assert!(!log.contains("trapped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_tour_answers_as_cloudflare_would() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("api", dir.path());
    let url = |route: &str| server.url(&format!("/API/tour/{route}"));

    let who = get_json(&client, &url("whoami")).await;
    assert_eq!(who["name"], "tour");
    assert_eq!(who["activations"], 1);
    assert_eq!(who["greeting"], "hello from [vars]");
    assert_eq!(who["missing"], Value::Null);
    assert!(who["id"].as_str().unwrap().len() == 64, "{who}");

    let (status, echo) = send_json(&client, "PUT", &url("echo?a=1&b=two"), "the body").await;
    assert_eq!(status, 201);
    assert_eq!(
        echo,
        json!({"method": "PUT", "path": "/echo", "query": {"a": "1", "b": "two"},
               "contentType": null, "custom": null, "body": "the body"})
    );

    // Handed on unchanged (by number), or changed (as a record): the peer
    // sees what the client sent, or what was set; the client what was marked.
    for (query, custom, marked) in [
        ("", "sent", None),
        ("?set", "set on the way", None),
        ("?mark", "sent", Some("yes")),
    ] {
        let passon = url(&format!("passon{query}"));
        let request = http::Request::put(&passon)
            .header("x-custom", "sent")
            .body(http_body_util::Full::new(bytes::Bytes::from("the body")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 201, "{passon}");
        let headers = response.headers().clone();
        assert_eq!(headers.get("x-echo").unwrap(), "yes", "{passon}");
        assert_eq!(
            headers.get("x-handed-on").map(|v| v.to_str().unwrap()),
            marked,
            "{passon}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (
                &echo["method"],
                &echo["path"],
                &echo["custom"],
                &echo["body"]
            ),
            (
                &json!("PUT"),
                &json!("/passon"),
                &json!(custom),
                &json!("the body")
            ),
            "{passon}"
        );
    }

    let (status, text) = send(&client, "PUT", &url("text"), "grüße 🦀").await;
    assert_eq!((status, text.as_str()), (200, "ключ 🔑 = grüße 🦀 ✓ ☃"));
    let (status, text) = get(&client, &url("responses")).await;
    assert_eq!((status, text.as_str()), (418, "short and stout"));
    let (status, text) = get(&client, &url("responses?read")).await;
    assert_eq!(status, 500, "{text}");
    assert!(text.contains("TypeError"), "{text}");

    let kv = get_json(&client, &url("kv")).await;
    assert_eq!(
        kv,
        json!({
            "one": 42,
            "absent": "undefined",
            "many": {"a:1": "one", "a:3": null, "b:1": false},
            "all": ["a:1", "a:2", "a:3", "activations", "b:1", "n"],
            "prefix": {"a:1": "one", "a:2": {"nested": [1, 2, {"deep": true}]}, "a:3": null},
            "range": ["a:2", "a:3", "activations"],
            "startAfter": ["a:3"],
            "reverse": ["n", "b:1"],
            "deleted": true,
            "deletedAgain": false,
            "deletedMany": 2,
            "after": ["a:3", "activations", "b:1"],
        })
    );

    let txn = get_json(&client, &url("transaction")).await;
    assert_eq!(
        txn,
        json!({"committed": "committed", "thrown": "changed my mind", "sync": "sync result", "balance": 70})
    );

    let sql = get_json(&client, &url("sql")).await;
    assert_eq!(sql["written"], 2);
    assert_eq!(
        sql["rows"],
        json!([
            {"id": 1, "i": "9007199254740993n", "r": 2.25, "s": "héllo", "b": [0, 1, 255], "n": null},
            {"id": 2, "i": -7, "r": 0.5, "s": "two", "b": null, "n": null},
        ])
    );
    assert_eq!(sql["columnNames"], json!(["id", "s"]));
    assert_eq!(sql["iterated"], json!(["héllo", "two"]));
    assert_eq!(sql["raw"], json!([[1, "héllo"], [2, "two"]]));
    assert_eq!(sql["one"], json!({"c": 2}));
    assert!(
        sql["none"].as_str().unwrap().contains("no results"),
        "{sql}"
    );
    assert_eq!(sql["constraint"]["isSqlError"], true);
    assert_eq!(
        sql["constraint"]["code"], 1555,
        "SQLITE_CONSTRAINT_PRIMARYKEY: {sql}"
    );
    assert_eq!(sql["rowsRead"], 2);
    assert_eq!(sql["databaseSize"], true);

    let errors = get_json(&client, &url("errors")).await;
    assert_eq!(errors["tooLarge"]["isStorageError"], true);
    assert_eq!(errors["tooLarge"]["kind"], "value-too-large");
    assert!(
        errors["tooLarge"]["message"]
            .as_str()
            .unwrap()
            .contains("131072"),
        "{errors}"
    );
    assert_eq!(errors["function"]["name"], "DataCloneError", "{errors}");
    assert_eq!(
        errors["function"]["message"],
        "cannot store the value under \"function\": function run could not be cloned"
    );

    let stubs = get_json(&client, &url("stubs")).await;
    assert_eq!(stubs["uniqueIsHex"], true);
    assert_eq!(stubs["roundTrip"], true);
    assert_eq!(stubs["sameName"], true);
    assert_eq!(stubs["sum"], 5);
    assert_eq!(stubs["manyIds"], 300);
    assert_eq!(stubs["sumAfterMany"], 42);
    assert_eq!(
        stubs["structured"],
        json!({"got": {"list": [1, 2], "text": "t"}, "by": "other"})
    );
    assert_eq!(stubs["otherFetch"]["query"], json!({"from": "stub"}));
    assert_eq!(stubs["otherFetch"]["body"], "hi");
    assert_eq!(stubs["unknown"]["isCallError"], true);
    assert_eq!(stubs["unknown"]["remote"], true);
    assert!(
        stubs["unknown"]["message"]
            .as_str()
            .unwrap()
            .contains("noSuchMethod"),
        "{stubs}"
    );
    assert_eq!(stubs["thrown"]["remote"], true);
    assert!(
        stubs["thrown"]["message"]
            .as_str()
            .unwrap()
            .contains("on purpose")
    );
    assert!(
        stubs["badId"].as_str().unwrap().contains("not-an-id"),
        "{stubs}"
    );

    // The alarm: set, read back, deleted; then one that fires.
    let (_, set) = send_json(&client, "POST", &url("alarm?in=3600000"), "").await;
    assert!(set["alarm"].as_f64().unwrap() > 0.0, "{set}");
    let (_, deleted) = send_json(&client, "DELETE", &url("alarm"), "").await;
    assert_eq!(deleted["alarm"], Value::Null);
    send_json(&client, "POST", &url("alarm?in=0"), "").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = get_json(&client, &url("alarm")).await;
        if state["fired"] == 1 {
            assert_eq!(state["alarm"], Value::Null);
            assert_eq!(state["info"], json!({"retryCount": 0, "isRetry": false}));
            break;
        }
        assert!(Instant::now() < deadline, "the alarm never fired: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, stack) = get(&client, &url("stack")).await;
    assert_eq!(status, 200);
    assert!(stack.starts_with("errorAfterAwait@"), "{stack}");
    assert!(
        !stack.contains("async*"),
        "async stacks were recorded: {stack}"
    );

    let (status, body) = get(&client, &url("nowhere")).await;
    assert_eq!((status, body.as_str()), (404, "no route /nowhere"));
    // An exception from the object's code becomes a 500 naming it, and the
    // object goes on.
    let (status, body) = get(&client, &url("throw")).await;
    assert_eq!(status, 500);
    assert!(body.contains("TypeError: thrown from fetch"), "{body}");
    assert_eq!(get_json(&client, &url("whoami")).await["activations"], 1);
    // So does one from the constructor, thrown or from the work it blocks on.
    for (name, thrown) in [
        ("refuses", "Error: refused in the constructor"),
        ("refuses-later", "Error: refused in blockConcurrencyWhile"),
    ] {
        let (status, body) = get(&client, &server.url(&format!("/API/{name}/whoami"))).await;
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains(&format!("class Api failed to construct: {thrown}")),
            "{body}"
        );
    }
    assert_eq!(get_json(&client, &url("whoami")).await["activations"], 1);

    let wiped = get_json(&client, &url("wipe")).await;
    assert_eq!(wiped, json!({"keys": 0, "alarm": null}));

    // A new activation runs the constructor again, which counts from zero.
    drop(server);
    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let who = get_json(&client, &server.url("/API/tour/whoami")).await;
    assert_eq!(who["activations"], 1, "deleteAll removed the count: {who}");
    let who = get_json(&client, &server.url("/API/tour/whoami")).await;
    assert_eq!(who["activations"], 1, "one activation per instance: {who}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_kv_abort_rpc_targets_and_the_accepted_options_work_as_on_cloudflare() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("api", dir.path());
    let url = |route: &str| server.url(&format!("/API/rest/{route}"));

    let kv = get_json(&client, &url("synckv")).await;
    assert_eq!(kv["get"], json!({"n": 1}));
    assert_eq!(kv["asyncGet"], json!({"n": 1}));
    assert_eq!(kv["missing"], true);
    assert_eq!(
        kv["listed"],
        json!([["sync:a", {"n": 1}], ["sync:b", [["x", 2]]], ["sync:c", 3]])
    );
    assert_eq!(kv["deleted"], json!([true, false]));

    let before = get_json(&client, &url("self")).await;
    assert_eq!(before["activations"], 1);
    assert_eq!(before["props"], json!({}));
    assert_eq!(before["jurisdictionSameIds"], true);
    assert_eq!(before["locationHint"], 201);
    assert_eq!(before["uniqueInJurisdiction"], true);
    assert_eq!(before["exports"], json!(["Api"]));
    assert_eq!(before["exportsIsEnv"], true);
    // abort: the event fails with the reason, its write is dropped, and the
    // next event finds a new instance.
    let (status, body) = get(&client, &url("abort?reason=stale%20state")).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("the object called abort and was reset: stale state"),
        "{body}"
    );
    let after = get_json(&client, &url("self")).await;
    assert_eq!(after["activations"], 2, "{after}");
    assert_eq!(after["writtenBeforeAbort"], false, "{after}");

    let failures = get_json(&client, &url("fetcherrors")).await;
    assert_eq!(
        failures,
        json!({
            "refused": {"name": "TypeError", "kind": "refused"},
            "invalid": {"name": "TypeError", "kind": "invalid"},
            "aborted": {"name": "AbortError", "kind": null},
        })
    );

    // RpcTargets and functions by reference (examples/js/api route_targets).
    let targets = get_json(&client, &url("targets")).await;
    let disposed = "Error: Attempted to use an RPC stub after it was disposed";
    assert_eq!(
        targets,
        json!({
            "counted": ["rest-peer: 12", "rest-peer: 15"],
            "tripled": 18,
            "calls": 3,
            "dropped": format!("CallError: {disposed}"),
            "kept": "kept b",
            "disposed": disposed,
            "stored": "DataCloneError: cannot store the value under \"target\": Counter, an RpcTarget (only RPC passes one, by reference), could not be cloned",
            "echoed": 15,
            "afterReset": "CallError: the RpcTarget or function stub was disposed, or the object that passed it was reset or left memory since",
        })
    );

    let options = get_json(&client, &url("options")).await;
    assert_eq!(options["read"], 1);
    assert_eq!(options["uniqueIdsMatch"], true);
    assert_eq!(options["uniqueAnswers"], 5);
    assert_eq!(options["stubName"], "named");
    assert_eq!(options["moduleEnv"], "hello from [vars]");
    assert_eq!(
        options["platform"],
        json!({
            "textCoding": "héllo",
            "base64": ["aGk=", "hi"],
            "subtleSha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "aborted": [true, "stopped", "stopped"],
            "structuredClone": true,
            "uuid": true,
            "randomValues": 8,
            "webcrypto": true,
            "globalBuffer": "6869",
            "bareBuffer": true,
            "globalProcess": ["function", "{}"],
        })
    );

    let node = get_json(&client, &url("node")).await;
    assert_eq!(
        node,
        json!({
            "base64": "aGVsbG8sIHdvcmxk",
            "hex": "0102ff",
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha1": "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=",
            "hmac": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
            "randomBytes": 16,
            "timingSafeEqual": true,
            "heard": "heard",
            "assertion": "AssertionError",
            "format": "cart has 3 items",
            "inspect": "{ nested: { list: [ 1, 2 ] } }",
            "join": "/a/c/d.txt",
            "extname": ".gz",
            "globalBuffer": true,
        })
    );
}

/// Streamed bodies (wit/body.wit): server-sent events leave as the object
/// writes them, each after the storage write it reports; another object's
/// stream is handed on unread, or read (in JavaScript and in Rust); a source that fails cuts the
/// connection; a client that leaves makes the writer's next write fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_objects_stream_server_sent_events_as_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
         [limits]\nwall_ms = 1000\n",
        crate::support::guests().probe
    );
    let server = serve_js_with("api", dir.path(), &extra);
    let client = client();
    let event = |i: u32| format!("id: {i}\ndata: {{\"i\":{i},\"stored\":{i}}}\n\n");

    // The first event comes alone, while the object sleeps before the next;
    // the stream outlives the event's wall-clock limit (1 s here), as a
    // request with a connected client does on Cloudflare.
    let mut response = get_streaming(&client, &server.url("/API/sse/stream?n=3&ms=600")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.body_mut();
    assert_eq!(next_chunk(body).await.unwrap().unwrap(), event(1));
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = String::new();
        while let Some(chunk) = next_chunk(body).await {
            rest += &chunk.unwrap();
        }
        rest
    })
    .await
    .expect("the stream ends");
    assert_eq!(rest, event(2) + &event(3));
    let end = get_json(&client, &server.url("/API/sse/stream_end")).await;
    assert_eq!(end, json!({"end": "closed", "streamed": 3}));

    // Another object's stream, handed on as it is, and read in the object.
    let (status, text) = get(&client, &server.url("/API/relay/handon?n=2")).await;
    assert_eq!((status, text), (200, event(1) + &event(2)));
    let read = get_json(&client, &server.url("/API/relay2/handon?n=2&read")).await;
    assert_eq!(read["type"], "text/event-stream");
    assert_eq!(read["chunks"], 2);
    assert_eq!(read["text"], event(1) + &event(2));
    // A Rust object reads it too.
    let (status, text) = get(
        &client,
        &server.url("/PROBE/p/fetch-from/API/rust-reads/stream?n=2&ms=5"),
    )
    .await;
    assert_eq!((status, text), (200, event(1) + &event(2)));

    // A source that fails: the client never gets a body that looks whole.
    let request = http::Request::get(server.url("/API/fails/stream_fails"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let cut = match client.request(request).await {
        Err(_) => true,
        Ok(mut response) => {
            let mut cut = false;
            while let Some(chunk) = next_chunk(response.body_mut()).await {
                cut |= chunk.is_err();
            }
            cut
        }
    };
    assert!(cut, "a failed stream must not end like a whole body");

    // A client that leaves after the first event: the writer's next write
    // fails with an error that says so, and the object goes on serving.
    let mut response = get_streaming(&client, &server.url("/API/gone/stream?n=100&ms=50")).await;
    assert_eq!(
        next_chunk(response.body_mut()).await.unwrap().unwrap(),
        event(1)
    );
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = get_json(&client, &server.url("/API/gone/stream_end")).await;
        if let Some(end) = state["end"].as_str() {
            assert_eq!(
                end,
                "TypeError: the body's reader went away (the client closed its connection)"
            );
            assert!(state["streamed"].as_u64().unwrap() < 100, "{state}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never noticed: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_patterns_work_in_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("patterns", dir.path());
    let url = |path: &str| server.url(path);

    // In-memory cache: a write fills the map; a new instance reads storage.
    let alice = json!({"name": "Alice", "email": "alice@example.com"});
    let (status, body) = send_json(
        &client,
        "PUT",
        &url("/users/dir/user/alice"),
        &alice.to_string(),
    )
    .await;
    assert_eq!((status, &body), (200, &alice));
    let (status, body) = send_json(
        &client,
        "PUT",
        &url("/users/dir/user/alice"),
        r#"{"email":"a@x.org"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"name": "Alice", "email": "a@x.org"}))
    );
    let got = get_json(&client, &url("/users/dir/user/alice")).await;
    assert_eq!(
        got,
        json!({"user": {"name": "Alice", "email": "a@x.org"}, "from": "memory"})
    );
    let (status, _) = get(&client, &url("/users/dir/user/bob")).await;
    assert_eq!(status, 404);

    // Initialisation pattern: the constructor loads the value once.
    for expected in 1..=3 {
        let (status, body) = send_json(&client, "POST", &url("/counter/c/increment"), "").await;
        assert_eq!((status, body), (200, json!(expected)));
    }

    // Write coalescing: both puts of a transfer land, or neither.
    send_json(&client, "POST", &url("/accounts/bank/deposit/alice"), "100").await;
    let (status, body) = send_json(
        &client,
        "POST",
        &url("/accounts/bank/transfer"),
        r#"{"from":"alice","to":"bob","amount":30}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"alice": 70, "bob": 30})));
    let (status, body) = send_json(
        &client,
        "POST",
        &url("/accounts/bank/transfer"),
        r#"{"from":"bob","to":"alice","amount":31}"#,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bob has 30"),
        "{body}"
    );

    // Cleanup: deleteAlarm and deleteAll leave nothing.
    let (_, body) = send_json(&client, "PUT", &url("/session/s1/keys/token"), "abc").await;
    assert_eq!(body, json!({"keys": 1}));
    let (_, body) = send_json(&client, "PUT", &url("/session/s1/keys/user"), "alice").await;
    assert_eq!(body, json!({"keys": 2}));
    let contents = get_json(&client, &url("/session/s1/contents")).await;
    assert_eq!(contents["keys"], json!({"token": "abc", "user": "alice"}));
    assert!(contents["alarm"].is_number(), "{contents}");
    let (status, _) = send_json(&client, "POST", &url("/session/s1/cleanup"), "").await;
    assert_eq!(status, 200);

    // After a restart: each pattern's state is durable.
    drop(server);
    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let url = |path: &str| server.url(path);
    let got = get_json(&client, &url("/users/dir/user/alice")).await;
    assert_eq!(got["from"], "storage");
    let got = get_json(&client, &url("/users/dir/user/alice")).await;
    assert_eq!(got["from"], "memory");
    let (_, body) = send_json(&client, "POST", &url("/counter/c/increment"), "").await;
    assert_eq!(body, json!(4));
    let balances = get_json(&client, &url("/accounts/bank/balances")).await;
    assert_eq!(balances, json!({"alice": 70, "bob": 30}));
    let contents = get_json(&client, &url("/session/s1/contents")).await;
    assert_eq!(contents, json!({"keys": {}, "alarm": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_and_alarm_patterns_work_in_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("patterns", dir.path());
    let url = |path: &str| server.url(path);

    // Schema migration: the first activation creates version 1...
    let schema = get_json(&client, &url("/migration/db/schema")).await;
    assert_eq!(schema, json!({"version": 1, "columns": ["id", "name"]}));
    let (status, rows) = send_json(
        &client,
        "POST",
        &url("/migration/db/users"),
        r#"{"name":"ann"}"#,
    )
    .await;
    assert_eq!((status, rows), (200, json!([{"id": 1, "name": "ann"}])));

    // Rate limiter: three calls in the window, the fourth refused.
    for allowed in [true, true, true, false] {
        let (status, body) = send_json(
            &client,
            "POST",
            &url("/limits/api/check/k1?limit=3&window=60000"),
            "",
        )
        .await;
        assert_eq!(body, json!({"allowed": allowed}));
        assert_eq!(status, if allowed { 200 } else { 429 });
    }
    let (_, body) = send_json(
        &client,
        "POST",
        &url("/limits/api/check/k2?limit=3&window=60000"),
        "",
    )
    .await;
    assert_eq!(
        body,
        json!({"allowed": true}),
        "another key has its own window"
    );

    // Batch processing: items wait in memory until the alarm, 5 s after the
    // first, writes them in one statement.
    for item in ["a", "b", "c"] {
        let (status, _) = send_json(&client, "POST", &url("/batch/jobs/items"), item).await;
        assert_eq!(status, 202);
    }
    let status = get_json(&client, &url("/batch/jobs/status")).await;
    assert_eq!(status, json!({"processed": [], "pending": ["a", "b", "c"]}));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get_json(&client, &url("/batch/jobs/status")).await;
        if status["processed"] == json!(["a", "b", "c"]) {
            assert_eq!(status["pending"], json!([]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch was never processed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // ...and the next activation, after a restart, migrates it to version 2.
    drop(server);
    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let url = |path: &str| server.url(path);
    let schema = get_json(&client, &url("/migration/db/schema")).await;
    assert_eq!(
        schema,
        json!({"version": 2, "columns": ["id", "name", "email"]})
    );
    let (_, rows) = send_json(
        &client,
        "POST",
        &url("/migration/db/users"),
        r#"{"name":"bob","email":"bob@example.com"}"#,
    )
    .await;
    assert_eq!(
        rows,
        json!([{"id": 1, "name": "ann", "email": null}, {"id": 2, "name": "bob", "email": "bob@example.com"}])
    );
    let status = get_json(&client, &url("/batch/jobs/status")).await;
    assert_eq!(status, json!({"processed": ["a", "b", "c"], "pending": []}));
}

/// A Document's name, text and version, as either language describes it.
fn document_summary(doc: &Value) -> (Option<&str>, Option<&str>, Option<u64>) {
    (
        doc["name"].as_str(),
        doc["text"].as_str(),
        doc["version"].as_u64(),
    )
}

/// Creates the document `name` in the JavaScript Workspace `workspace` and
/// returns its id.
async fn create_js_document(
    client: &crate::support::HttpClient,
    server: &Server,
    workspace: &str,
    name: &str,
) -> String {
    let (status, body) = send_json(
        client,
        "POST",
        &server.url(&format!("/workspaces/{workspace}/documents")),
        name,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_workspace_coordinates_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let server = serve_js("patterns", dir.path());
    let plan = create_js_document(&client, &server, "acme", "The plan").await;
    let notes = create_js_document(&client, &server, "acme", "Notes").await;
    assert_ne!(plan, notes);
    let listed = get_json(&client, &server.url("/workspaces/acme/documents")).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["The plan", "Notes"]);
    assert_eq!(listed[0]["id"], plan.as_str());

    let doc_url = server.url(&format!("/workspaces/acme/documents/{plan}"));
    let (status, body) = send_json(&client, "PUT", &doc_url, "first draft").await;
    assert_eq!((status, body), (200, json!({"version": 1})));
    let doc = get_json(&client, &doc_url).await;
    assert_eq!(
        document_summary(&doc),
        (Some("The plan"), Some("first draft"), Some(1))
    );
    assert!(
        doc["object_name"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{plan}")),
        "{doc}"
    );

    // Another workspace has its own documents.
    let other = get_json(&client, &server.url("/workspaces/other/documents")).await;
    assert_eq!(other, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_rust_objects_call_each_other_and_read_each_others_values() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let rust_objects = workspace().join("examples/workspace/objects");
    let js_patterns = workspace().join("examples/js/patterns/patterns.js");
    let data = dir.path().join("data");
    js_examples_built();

    // JavaScript -> Rust: the JS Workspace creates Rust Documents over RPC.
    let js_first = with_component(
        &example_config("examples/js/patterns"),
        "DOCUMENT",
        &rust_objects,
    );
    let config = write_config(dir.path(), &js_first);
    let server = Server::start(&config, &dir.path().join("data-js-first"));
    let id = create_js_document(&client, &server, "mixed", "From JS").await;
    let doc = get_json(
        &client,
        &server.url(&format!("/workspaces/mixed/documents/{id}")),
    )
    .await;
    assert_eq!(
        doc["name"], "From JS",
        "the Rust Document answers the JS worker: {doc}"
    );
    assert_eq!(doc["version"], 0);
    drop(server);

    // Rust -> JavaScript: the Rust Workspace (and its worker) with
    // JavaScript Documents.
    let rust_config = example_config("examples/workspace");
    let with_js = with_component(&rust_config, "DOCUMENT", &js_patterns);
    let config = write_config(dir.path(), &with_js);
    let server = Server::start(&config, &data);
    let docs = server.url("/workspaces/acme/documents");
    let (status, body) =
        send_json(&client, "POST", &docs, r#"{"id":"plan","name":"The plan"}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "The plan");
    let (status, body) = send_json(&client, "PUT", &format!("{docs}/plan"), "written by JS").await;
    assert_eq!((status, body), (200, json!({"version": 1})));
    drop(server);

    // The same Documents served by Rust read what JavaScript stored...
    let config = write_config(dir.path(), &rust_config);
    let server = Server::start(&config, &data);
    let doc = get_json(&client, &server.url("/workspaces/acme/documents/plan")).await;
    assert_eq!(
        document_summary(&doc),
        (Some("The plan"), Some("written by JS"), Some(1)),
        "{doc}"
    );
    assert!(
        doc["created_at"].as_i64().unwrap() > 1_600_000_000_000,
        "{doc}"
    );
    let (_, body) = send_json(
        &client,
        "PUT",
        &server.url("/workspaces/acme/documents/plan"),
        "written by Rust",
    )
    .await;
    assert_eq!(body, json!({"version": 2}));
    drop(server);

    // ...and JavaScript reads what Rust stored.
    let config = write_config(dir.path(), &with_js);
    let server = Server::start(&config, &data);
    let doc = get_json(&client, &server.url("/workspaces/acme/documents/plan")).await;
    assert_eq!(
        document_summary(&doc),
        (Some("The plan"), Some("written by Rust"), Some(2)),
        "{doc}"
    );
}

/// Runs `dohost build TARGET` in `dir` with `env` set; its success and stderr.
fn dohost_build(dir: &std::path::Path, target: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .arg("build")
        .arg(target)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run dohost build");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dohost_build_installs_the_tools_once_then_builds_a_package_folder_offline() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("greeter");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name": "greeter", "private": true, "main": "src/greeter.js"}"#,
    )
    .unwrap();
    std::fs::write(
        app.join("src/greeter.js"),
        r#"import { DurableObject } from "cloudflare:workers";
export class Greeter extends DurableObject {
  async fetch(request) {
    const seen = ((await this.ctx.storage.get("seen")) ?? 0) + 1;
    await this.ctx.storage.put("seen", seen);
    return new Response(`${this.env.GREETING}, ${this.ctx.id.name} (${seen})`);
  }
}
"#,
    )
    .unwrap();
    write_config(
        dir.path(),
        "[[durable_objects.bindings]]\nname = \"GREETER\"\nclass_name = \"Greeter\"\ncomponent = \"greeter\"\n\
         [vars]\nGREETING = \"hello\"\n",
    );

    // The first build installs the tools into the package, saying so.
    let (ok, log) = dohost_build(dir.path(), ".", &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains("installing the JavaScript build tools into") && log.contains("greeter"),
        "{log}"
    );
    assert!(
        app.join("node_modules/@bytecodealliance/componentize-js")
            .is_dir()
    );
    let manifest = std::fs::read_to_string(app.join("package.json")).unwrap();
    assert!(
        manifest.contains("componentize-js"),
        "recorded in package.json: {manifest}"
    );

    // The next build needs no network: npm would fail with this registry.
    std::fs::write(
        app.join("src/greeter.js"),
        std::fs::read_to_string(app.join("src/greeter.js"))
            .unwrap()
            .replace("${seen}", "seen ${seen}"),
    )
    .unwrap();
    let offline = [
        ("npm_config_registry", "http://127.0.0.1:9/"),
        ("npm_config_offline", "true"),
    ];
    let (ok, log) = dohost_build(dir.path(), ".", &offline);
    assert!(ok, "{log}");
    assert!(!log.contains("installing"), "{log}");
    let (ok, log) = dohost_build(dir.path(), ".", &offline);
    assert!(
        ok && log.contains("unchanged since the last build"),
        "{log}"
    );

    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let (status, body) = get(&client(), &server.url("/GREETER/ada/")).await;
    assert_eq!((status, body.as_str()), (200, "hello, ada (seen 1)"));
}

/// A folder holding only dohost.toml and a module, with no package.json
/// above it: `dohost build dohost.toml` installs the tools beside
/// dohost.toml, and the relative folder (the empty path, as the file's
/// parent) still names it once node runs in the project's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dohost_build_in_its_folder_builds_a_bare_module_beside_its_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.js"),
        r#"import { DurableObject } from "dohost";
export class Hello extends DurableObject {
  async fetch() {
    return new Response(`hello from ${this.ctx.id.name}`);
  }
}
"#,
    )
    .unwrap();
    write_config(
        dir.path(),
        "[[durable_objects.bindings]]\nname = \"HELLO\"\nclass_name = \"Hello\"\ncomponent = \"hello.js\"\n",
    );

    let (ok, log) = dohost_build(dir.path(), "dohost.toml", &[]);
    assert!(ok, "{log}");
    assert!(
        dir.path()
            .join("node_modules/@bytecodealliance/componentize-js")
            .is_dir(),
        "{log}"
    );

    let server = Server::start(&dir.path().join("dohost.toml"), &dir.path().join("data"));
    let (status, body) = get(&client(), &server.url("/HELLO/ada/")).await;
    assert_eq!((status, body.as_str()), (200, "hello from ada"));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message on `ws`, within 10 seconds.
async fn next(ws: &mut Ws) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer within 10 s")
        .expect("the socket is open")
        .expect("a message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_sockets_have_tags_binary_messages_closes_and_the_auto_response() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let server = serve_js_with(
        "api",
        dir.path(),
        "[websockets]\nmax_message_bytes = 4096\n",
    );
    let connect = |query: &str| {
        let url = format!("ws://{}/API/sockets/socket?{query}", server.addr());
        async move {
            tokio_tungstenite::connect_async(&url)
                .await
                .expect("upgrade")
                .0
        }
    };
    let mut red = connect("tag=red&tag=warm").await;
    let mut blue = connect("tag=blue").await;
    let mut also_red = connect("tag=red").await;

    // The host answers the auto-response without the object.
    red.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut red).await, Message::text("pong"));
    red.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut red).await, Message::binary(vec![3u8, 2, 1]));
    red.send(Message::text("info")).await.unwrap();
    let Message::Text(info) = next(&mut red).await else {
        panic!("a text message")
    };
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["tags"], json!(["red", "warm"]));
    assert_eq!(info["sameTag"], 2);
    assert_eq!(info["all"], 3);
    assert_eq!(info["autoResponse"], json!(["ping", "pong"]));
    assert_eq!(info["pinged"], true);

    // The object closes one; the client closes another.
    blue.send(Message::text("close")).await.unwrap();
    match next(&mut blue).await {
        Message::Close(Some(frame)) => {
            assert_eq!(
                (u16::from(frame.code), frame.reason.as_str()),
                (4001, "asked to")
            );
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    also_red.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        red.send(Message::text("info")).await.unwrap();
        let Message::Text(info) = next(&mut red).await else {
            panic!("a text message")
        };
        let info: Value = serde_json::from_str(&info).unwrap();
        if info["all"] == 1 && info["closes"].as_array().is_some_and(|c| !c.is_empty()) {
            assert_eq!(info["closes"][0][0], 1005, "{info}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closes never arrived: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A message over the limit closes its socket with 1009, and the object
    // hears of it in webSocketError.
    let mut big = connect("tag=big").await;
    big.send(Message::binary(vec![0u8; 5000])).await.unwrap();
    match next(&mut big).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected a close frame, got {other:?}"),
    }
    loop {
        red.send(Message::text("info")).await.unwrap();
        let Message::Text(info) = next(&mut red).await else {
            panic!("a text message")
        };
        let info: Value = serde_json::from_str(&info).unwrap();
        if let Some(error) = info["errors"][0].as_str() {
            assert!(error.contains("larger than the limit"), "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "the error never arrived: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
