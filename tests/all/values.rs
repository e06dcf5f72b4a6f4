//! Values as structured clone keeps them: the JavaScript API tour stores
//! every type Cloudflare's structured clone keeps (with shared references
//! and a cycle) and reads it back, in the event, after the object left
//! memory and after a restart; then a Rust object reads what JavaScript
//! stored through serde.

use serde_json::{Value, json};

use crate::support::{
    Server, client, example_config, get_json, guests, js_examples_built, write_config,
};

/// The names of the checks in `checks` (the tour's `cloneChecks`, 15 of
/// them) that did not hold.
fn failed(checks: &Value) -> Vec<&String> {
    let checks = checks.as_object().expect("an object of checks");
    assert_eq!(checks.len(), 15, "{checks:?}");
    checks
        .iter()
        .filter(|(_, ok)| **ok != json!(true))
        .map(|(name, _)| name)
        .collect()
}

/// Every check of the tour's `/clone` route holds: through storage, and
/// through RPC both ways.
fn all_hold(answer: &Value) {
    for through in ["checks", "rpcArguments", "rpcResult"] {
        let failed = failed(&answer[through]);
        assert!(
            failed.is_empty(),
            "{through}: these did not come back as they were: {failed:?}"
        );
    }
    assert_eq!(answer["many"], json!([true, true, true]), "{answer}");
    assert_eq!(answer["rpcUndefined"], true);
    assert_eq!(
        answer["rpcResponse"],
        json!([true, 202, "yes", "answered 202"])
    );
    assert_eq!(
        answer["rpcRequest"],
        json!({"method": "POST", "url": "http://peer/asked?x=1", "header": "please", "body": "question"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_structured_clone_type_round_trips_through_storage_and_reads_in_rust() {
    js_examples_built();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = client();
    let api = write_config(
        dir.path(),
        &(example_config("examples/js/api") + "[limits]\nidle_timeout_ms = 200\n"),
    );
    let server = Server::start(&api, &data);
    all_hold(&get_json(&client, &server.url("/API/c/clone?write=1")).await);
    // From the storage layer's cache in a later event, then from disk once
    // the object has left memory.
    all_hold(&get_json(&client, &server.url("/API/c/clone")).await);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    all_hold(&get_json(&client, &server.url("/API/c/clone")).await);
    drop(server);
    let server = Server::start(&api, &data);
    all_hold(&get_json(&client, &server.url("/API/c/clone")).await);
    drop(server);

    // The same objects, now run by the Rust probe (the class renamed), read
    // what JavaScript stored into Rust types.
    let rust = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"API\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [[migrations]]\ntag = \"api-to-probe\"\nrenamed_classes = [{{ from = \"Api\", to = \"Probe\" }}]\n",
            guests().probe
        ),
    );
    let server = Server::start(&rust, &data);
    let read = get_json(&client, &server.url("/API/c/from-js")).await;
    assert_eq!(
        read,
        json!({
            "date": 1700000000.123,
            "map": {"a": 1, "b": 2},
            "numbers": {"7": "seven"},
            "set": [3, 1, 2],
            "big": "12345678901234567890",
            "bytes": [1, 2, 3],
            "pixels": [255, 0],
            "missing": null,
            "nan": true,
            "negative_zero": true,
            "pattern": ["a+b", "g"],
            "error": ["Error", "TypeError", "bad input", read["error"][3]],
        })
    );
}
