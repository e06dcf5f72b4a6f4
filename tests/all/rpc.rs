//! Object-to-object calls: ids, stubs, typed RPC, error flags, calls back,
//! timeouts, overload and fan-out (issue 6). The probe's RPC methods are in
//! tests/guests/probe/src/rpc.rs.

use std::collections::HashSet;
use std::time::Duration;

use dohost::ErrorKind;
use serde_json::{Value, json};

use crate::support::{
    Server, client, get, guests, library_host, probe_stub, request, text, write_config,
};

fn settings(change: impl FnOnce(&mut dohost::Settings)) -> dohost::Settings {
    let mut settings = dohost::Settings {
        max_live_objects: 64,
        ..dohost::Settings::default()
    };
    change(&mut settings);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_names_are_stable_across_restarts_and_differ_between_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let probes = host.namespace("PROBE").unwrap();
    let counters = host.namespace("COUNTER").unwrap();
    let before = probes.id_from_name("alice").to_string();
    assert_eq!(before.len(), 64);
    assert!(
        before
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_ne!(before, counters.id_from_name("alice").to_string());
    assert_ne!(before, probes.id_from_name("bob").to_string());
    // The object itself and a guest minting the id agree with the host.
    let alice = probe_stub(&host, "alice");
    let (id, name): (String, Option<String>) = alice.call("whoami", &()).await.unwrap();
    assert_eq!(
        (id.as_str(), name.as_deref()),
        (before.as_str(), Some("alice"))
    );
    let minted: Value = alice.call("ids", &("PROBE", "alice")).await.unwrap();
    assert_eq!(minted["from_name"], json!(before));
    assert_eq!(minted["again"], json!(before));
    host.shutdown().await;

    let host = library_host(dir.path()).build().unwrap();
    let probes = host.namespace("PROBE").unwrap();
    assert_eq!(probes.id_from_name("alice").to_string(), before);
    let count: u64 = probe_stub(&host, "alice")
        .call("increment", &())
        .await
        .unwrap();
    assert_eq!(count, 1);
    let by_id = probes.id_from_string(&before).unwrap();
    assert_eq!(by_id.get().call::<u64>("increment", &()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_ids_never_repeat_and_only_their_namespace_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let probes = host.namespace("PROBE").unwrap();
    let counters = host.namespace("COUNTER").unwrap();
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        assert!(
            seen.insert(probes.new_unique_id().to_string()),
            "a unique id repeated"
        );
    }
    for name in ["", "a", "alice", "0", "unique"] {
        assert!(!seen.contains(&probes.id_from_name(name).to_string()));
    }
    for id in seen.iter().take(1000) {
        assert_eq!(probes.id_from_string(id).unwrap().to_string(), *id);
        let upper = probes.id_from_string(&id.to_ascii_uppercase()).unwrap();
        assert_eq!(upper.to_string(), *id);
        let err = counters.id_from_string(id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(err.message().contains("another namespace"), "{err}");
    }
    let counter_id = counters.id_from_name("alice");
    let err = probes.get(&counter_id).unwrap_err();
    assert!(
        err.message().contains("namespace COUNTER, not PROBE"),
        "{err}"
    );
    assert!(counters.get(&counter_id).is_ok());
    let named = counter_id.to_string();
    let err = probes.id_from_string(&named).unwrap_err();
    assert!(
        err.message().contains("not an id of namespace PROBE"),
        "{err}"
    );
    let mut flipped = named.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(
        counters.id_from_string(&flipped).unwrap_err().kind(),
        ErrorKind::BadRequest
    );
    assert!(counters.id_from_string(&named[..63]).is_err());

    // A unique id reaches its object, which has no name.
    let id = probes.new_unique_id();
    let stub = id.get();
    assert_eq!(stub.call::<u64>("add", &7).await.unwrap(), 7);
    let (own, name): (String, Option<String>) = stub.call("whoami", &()).await.unwrap();
    assert_eq!((own, name), (id.to_string(), None));

    // Guests mint and check ids through the same rules.
    let guest = probe_stub(&host, "minter");
    let minted: Value = guest.call("ids", &("COUNTER", "x")).await.unwrap();
    assert_eq!(
        minted["from_name"],
        json!(counters.id_from_name("x").to_string())
    );
    let unique = minted["unique"].as_str().unwrap().to_owned();
    assert_ne!(unique, minted["from_name"].as_str().unwrap());
    assert!(counters.id_from_string(&unique).is_ok());
    let checked: String = guest.call("check_id", &("COUNTER", &unique)).await.unwrap();
    assert_eq!(checked, unique);
    let err = guest
        .call::<String>("check_id", &("PROBE", &unique))
        .await
        .unwrap_err();
    assert!(err.is_remote(), "the guest's own error: {err}");
    assert!(err.message().contains("another namespace"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_methods_take_and_return_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "typed");
    assert_eq!(stub.call::<u64>("increment", &()).await.unwrap(), 1);
    assert_eq!(stub.call::<u64>("increment", &()).await.unwrap(), 2);
    assert_eq!(stub.call::<u64>("add", &5).await.unwrap(), 7);
    assert_eq!(stub.call::<u64>("add", &(5,)).await.unwrap(), 12);
    let value = json!({"list": [1, 2, 3], "nested": {"s": "ü", "n": null}});
    assert_eq!(stub.call::<Value>("echo", &(&value,)).await.unwrap(), value);
    assert_eq!(stub.call_json("echo", "[[1,2]]").await.unwrap(), "[1,2]");
    assert_eq!(
        stub.call::<()>("fail", &"x").await.unwrap_err().message(),
        "x"
    );
    // The count was stored like any write: a new host sees it.
    host.shutdown().await;
    let host = library_host(dir.path()).build().unwrap();
    let stub = probe_stub(&host, "typed");
    assert_eq!(stub.call::<u64>("increment", &()).await.unwrap(), 13);

    // Mistakes get errors that say what is wrong.
    let err = stub.call::<u64>("decrement", &()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GuestError);
    assert!(
        err.message()
            .contains("Probe has no RPC method \"decrement\""),
        "{err}"
    );
    assert!(
        err.message().contains("increment"),
        "the known methods are listed: {err}"
    );
    let err = stub.call::<u64>("add", &(1, 2)).await.unwrap_err();
    assert!(
        err.message()
            .contains("add takes 1 argument, but the call passed 2"),
        "{err}"
    );
    let err = stub.call::<u64>("add", &"many").await.unwrap_err();
    assert!(
        err.message().contains("argument 1 of add does not fit"),
        "{err}"
    );
    let err = stub.call::<String>("increment", &()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(
        err.message().contains("does not fit the expected type"),
        "{err}"
    );
    let err = stub.call_json("increment", "{}").await.unwrap_err();
    assert!(err.message().contains("must be an array"), "{err}");

    // Between objects: a forwards to b, with the same JSON.
    let a = probe_stub(&host, "a");
    let answer: Value = a
        .call("forward", &("PROBE", "b", "add", [3]))
        .await
        .unwrap();
    assert_eq!(answer, json!({"ok": 3}));
    let answer: Value = a
        .call("forward", &("PROBE", "b", "whoami", json!([])))
        .await
        .unwrap();
    assert_eq!(answer["ok"][1], json!("b"));
    let count: u64 = probe_stub(&host, "b").call("increment", &()).await.unwrap();
    assert_eq!(count, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_remote_retryable_and_overloaded_and_a_trap_resets_only_the_callee() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(settings(|s| s.mailbox_capacity = 1))
        .build()
        .unwrap();
    let caller = probe_stub(&host, "caller");
    let forward = |method: &'static str, args: Value| {
        let caller = caller.clone();
        async move {
            caller
                .call::<Value>("forward", &("PROBE", "callee", method, args))
                .await
                .unwrap()
        }
    };

    // The callee's own error: remote, not retryable.
    let err = forward("fail", json!(["no such thing"])).await;
    assert_eq!(
        err["err"],
        json!({"message": "no such thing", "remote": true, "retryable": false, "overloaded": false})
    );

    // A trap in the callee resets the callee only.
    assert_eq!(caller.call::<u64>("memory", &()).await.unwrap(), 1);
    assert_eq!(forward("memory", json!([])).await, json!({"ok": 1}));
    assert_eq!(forward("memory", json!([])).await, json!({"ok": 2}));
    let trapped = forward("panic", json!([])).await;
    assert_eq!(trapped["err"]["remote"], json!(true));
    assert_eq!(trapped["err"]["retryable"], json!(true));
    assert_eq!(trapped["err"]["overloaded"], json!(false));
    let message = trapped["err"]["message"].as_str().unwrap();
    assert!(message.contains("trapped and was reset"), "{message}");
    assert!(
        message.contains("probe panic in an RPC method"),
        "{message}"
    );
    assert_eq!(
        forward("memory", json!([])).await,
        json!({"ok": 1}),
        "a fresh callee"
    );
    assert_eq!(
        caller.call::<u64>("memory", &()).await.unwrap(),
        2,
        "the caller lives on"
    );

    // The library sees the same flags.
    let callee = probe_stub(&host, "callee");
    let err = callee.call::<()>("panic", &()).await.unwrap_err();
    assert!(err.is_remote() && err.is_retryable() && !err.is_overloaded());
    let err = callee.call::<()>("fail", &"x").await.unwrap_err();
    assert!(err.is_remote() && !err.is_retryable() && !err.is_overloaded());

    // A full mailbox: overloaded, not remote, not retryable.
    let busy = probe_stub(&host, "busy");
    let mut spins = Vec::new();
    for _ in 0..3 {
        let busy = busy.clone();
        spins.push(tokio::spawn(async move {
            busy.call::<i64>("spin", &1500).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer: Value = caller
        .call("forward", &("PROBE", "busy", "increment", json!([])))
        .await
        .unwrap();
    let err = &answer["err"];
    assert_eq!(
        (&err["remote"], &err["retryable"], &err["overloaded"]),
        (&json!(false), &json!(false), &json!(true)),
        "{answer}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("overloaded"),
        "{answer}"
    );
    let mut refused = 0;
    for spin in spins {
        match spin.await.unwrap() {
            Ok(ms) => assert_eq!(ms, 1500),
            Err(e) => {
                assert!(e.is_overloaded(), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 1,
        "three calls into a mailbox of one: at least one refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_back_into_a_waiting_object_run_and_only_a_blocked_cycle_fails() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let a = probe_stub(&host, "a");
    let visited: Vec<String> = a.call("relay", &(["b", "c"],)).await.unwrap();
    assert_eq!(visited, ["a", "b", "c"]);

    // A → B → A, A → A and B → C → B: an object that awaits a call takes
    // other events meanwhile (Cloudflare's input gate), the call back in
    // included.
    let visited: Vec<String> = a.call("relay", &(["b", "a"],)).await.unwrap();
    assert_eq!(visited, ["a", "b", "a"]);
    let visited: Vec<String> = a.call("relay", &(["a"],)).await.unwrap();
    assert_eq!(visited, ["a", "a"]);
    let visited: Vec<String> = a.call("relay", &(["b", "c", "b"],)).await.unwrap();
    assert_eq!(visited, ["a", "b", "c", "b"]);

    // Inside blockConcurrencyWhile A takes no other event: B's call back is
    // refused at once, naming the cycle, not hung until the call timeout.
    let err = a
        .call::<Vec<String>>("relay_blocked", &(["b", "a"],))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("call cycle PROBE:a → PROBE:b → PROBE:a"),
        "{err}"
    );
    assert!(!err.message().contains("timeout"), "{err}");
    // Every object of the cycle serves the next event.
    for name in ["a", "b", "c"] {
        let visited: Vec<String> = probe_stub(&host, name)
            .call("relay", &(Vec::<String>::new(),))
            .await
            .unwrap();
        assert_eq!(visited, [name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_fails_and_a_queued_call_it_left_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(settings(|s| s.call_timeout = Duration::from_millis(300)))
        .build()
        .unwrap();
    let slow = probe_stub(&host, "slow");
    let queued = {
        let slow = slow.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            slow.call::<u64>("increment", &()).await
        })
    };
    let err = slow.call::<i64>("spin", &1500).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.http_status(), 504);
    assert!(
        err.message()
            .contains("PROBE:slow did not answer within the call timeout (300 ms)"),
        "{err}"
    );
    assert!(!err.is_remote() && !err.is_retryable() && !err.is_overloaded());
    let err = queued.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Once the spin is over the object answers again, and the increment
    // whose caller gave up while it waited in the mailbox did not run.
    let mut count = None;
    for _ in 0..50 {
        match slow.call::<u64>("increment", &()).await {
            Ok(n) => {
                count = Some(n);
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout, "{e}"),
        }
    }
    assert_eq!(count, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fan_out_to_a_thousand_objects() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path())
        .settings(settings(|s| s.max_live_objects = 1100))
        .build()
        .unwrap();
    let hub = probe_stub(&host, "hub");
    assert_eq!(
        hub.call::<u64>("fan_out", &("leaf-", 1000)).await.unwrap(),
        1000
    );
    assert_eq!(
        hub.call::<u64>("fan_out", &("leaf-", 1000)).await.unwrap(),
        2000
    );
    let probes = host.namespace("PROBE").unwrap();
    assert!(probes.live_objects() >= 1001, "{}", probes.live_objects());
    for i in [0, 499, 999] {
        let leaf = probe_stub(&host, &format!("leaf-{i}"));
        assert_eq!(leaf.call::<u64>("increment", &()).await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_to_one_object_gets_503_beyond_its_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let config = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [limits]\nmailbox_capacity = 4\n",
            g.probe
        ),
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let client = client();
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/PROBE/hot/spin/100");
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in flood {
        let (status, body) = request.await.unwrap();
        if status == 503 {
            assert!(body.contains("overloaded"), "{body}");
        }
        statuses.push(status);
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(served + refused, 40, "only 200 or 503: {statuses:?}");
    assert!(refused > 0 && served > 0, "{statuses:?}");
    // The object and the server serve on.
    let (status, _) = get(&client, &server.url("/PROBE/hot/count")).await;
    assert_eq!(status, 200);
    let (status, _) = get(&client, &server.url("/PROBE/cold/count")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_fetches_and_calls_the_same_object() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    let stub = host.namespace("PROBE").unwrap().get_by_name("both");
    assert_eq!(stub.name(), Some("both"));
    assert_eq!(stub.call::<u64>("increment", &()).await.unwrap(), 1);
    let response = stub.fetch(request("GET", "/whoami", "")).await.unwrap();
    assert!(text(&response).contains("\"both\""));
}
