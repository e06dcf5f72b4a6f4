//! Several `dohost serve` nodes sharing one real PostgreSQL (started by the
//! test): any node serves any object by forwarding to the shard's owner, a
//! node killed with `kill -9` has its objects served by the others once its
//! lease expires without losing or repeating an acknowledged increment, and
//! a node paused past its lease serves no stale data when it wakes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dohost_test_postgres::Postgres;

use crate::support::{Server, client, get, guests, write_config};

/// The admin token of the test nodes.
const TOKEN: &str = "cluster-test-token";

/// The lease of the test clusters: short, so a dead node's objects move
/// quickly.
const LEASE_MS: u64 = 1500;

/// One node's configuration: the counter and the probe, `[cluster]` with
/// `node` on a free loopback port, in its own directory under `root`.
fn node_config(root: &Path, database: &str, node: &str) -> (PathBuf, PathBuf) {
    let dir = root.join(node);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = guests();
    let config = write_config(
        &dir,
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [cluster]\ndatabase = {database:?}\nnode = {node:?}\nadvertise = \"127.0.0.1:{port}\"\n\
             secret = \"a secret shared by the test nodes\"\nshards = 32\nlease_ms = {LEASE_MS}\n\
             [admin]\ntoken = \"{TOKEN}\"\n",
            g.counter, g.probe
        ),
    );
    (config, dir.join("data"))
}

/// What `dohost cluster status` prints for the cluster of node `node`'s
/// configuration under `root`.
fn status(root: &Path, node: &str) -> String {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["cluster", "status", "--config"])
        .arg(root.join(node).join("dohost.toml"))
        .output()
        .expect("dohost cluster status");
    let stdout = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    stdout
}

/// The node that owns object `name` of `binding` now, as `status` shows
/// it (the object's id, read through the admin API of `via`, gives its
/// shard).
async fn owner_of(root: &Path, via: &Server, binding: &str, name: &str) -> String {
    let details =
        crate::support::admin_get(via, TOKEN, &format!("/_dohost/objects/{binding}/{name}")).await;
    let details: serde_json::Value = serde_json::from_str(&details).expect("object details");
    let id = hex::decode(details["id"].as_str().expect("an id")).unwrap();
    let shard = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) % 32;
    let status = status(root, "n2");
    status
        .lines()
        .find_map(|line| {
            let (node, shards) = line.split_once(" owns shards: ")?;
            shards
                .split(' ')
                .any(|s| s == shard.to_string())
                .then(|| node.to_owned())
        })
        .unwrap_or_else(|| panic!("no owner of shard {shard} in {status}"))
}

/// Starts node `node`.
fn start(root: &Path, database: &str, node: &str) -> Server {
    let (config, data) = node_config(root, database, node);
    Server::start(&config, &data)
}

/// The count `server` answers for counter `name`, retrying 503s (a shard
/// that is moving) for up to 10 s.
async fn count(http: &crate::support::HttpClient, server: &Server, name: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(http, &server.url(&format!("/COUNTER/{name}/"))).await;
        if status == 200 {
            return body.parse().unwrap_or_else(|_| panic!("a count: {body}"));
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "still 503 after 10 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_object_through_its_owner() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let n1 = start(root.path(), &database, "n1");
    let n2 = start(root.path(), &database, "n2");
    let http = client();
    // Both nodes settle on half the shards each; every counter counts once
    // per request whichever node the request reaches.
    for round in 1..=3u64 {
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let via = if round % 2 == 0 { &n1 } else { &n2 };
            assert_eq!(count(&http, via, name).await, round, "counter {name}");
        }
    }
    // The node that joined second takes its shards within a few beats.
    let wanted = [
        "n1 owns shards",
        "n2 owns shards",
        "32 shards, 2 nodes",
        "every shard has an owner",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status(root.path(), "n1");
        if wanted.iter().all(|line| status.contains(line)) {
            break;
        }
        assert!(Instant::now() < deadline, "{wanted:?} in {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The admin API of either node deletes any object (forwarded to its
    // owner), and `dohost objects` lists the cluster's objects.
    let auth = format!("Bearer {TOKEN}");
    for (name, via) in [("a", &n1), ("b", &n1), ("c", &n2), ("d", &n2)] {
        let (code, body) = crate::support::send_with_headers(
            &http,
            "DELETE",
            &via.url(&format!("/_dohost/objects/COUNTER/{name}")),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(code, 200, "delete {name}: {body}");
        assert_eq!(count(&http, &n2, name).await, 1, "{name} starts again");
    }
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["objects", "list", "COUNTER", "--config"])
        .arg(root.path().join("n1").join("dohost.toml"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), 8, "{listed}");
    n1.stop();
    n2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_calls_cross_nodes_with_their_call_chain() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let n1 = start(root.path(), &database, "n1");
    let n2 = start(root.path(), &database, "n2");
    let http = client();
    // Sixteen probes spread over both nodes: a chain through all of them
    // crosses from node to node, stub call by stub call.
    let names: Vec<String> = (0..16).map(|i| format!("s{i}")).collect();
    let expected: Vec<&str> = names.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(
            &http,
            &n1.url(&format!(
                "/PROBE/{}/relay/{}",
                names[0],
                names[1..].join(",")
            )),
        )
        .await;
        if status == 200 {
            let visited: Vec<String> = serde_json::from_str(&body).unwrap();
            assert_eq!(visited, expected);
            break;
        }
        // While n2 takes its shards, a call may find none yet.
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A chain that comes back to an object waiting in it works as on one
    // node (the object takes other events while it awaits a call)...
    let (status, body) = get(&http, &n2.url("/PROBE/s3/relay/s9,s3,s12")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&body).unwrap(),
        ["s3", "s9", "s3", "s12"]
    );
    // ...and the chain's depth is checked across nodes: 17 objects deep
    // is past the limit of 16.
    let deep: Vec<String> = (0..17).map(|i| format!("d{i}")).collect();
    let (status, body) = get(
        &http,
        &n2.url(&format!("/PROBE/{}/relay/{}", deep[0], deep[1..].join(","))),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("calls deep"), "{body}");
    n1.stop();
    n2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_acknowledged_increment() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Server> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| start(root.path(), &database, n))
        .collect();
    let http = client();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Six clients hammer one counter through all three nodes; a request
    // that fails (the node died, or the shard is moving) is not
    // acknowledged.
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (http, acks, stop) = (http.clone(), acks.clone(), stop.clone());
            let urls: Vec<String> = nodes.iter().map(|n| n.url("/COUNTER/hot/")).collect();
            tokio::spawn(async move {
                let mut i = c;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let url = &urls[i % urls.len()];
                    let request = http::Request::get(url)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    let Ok(response) = http.request(request).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let ok = response.status() == 200;
                    let Ok(body) = http_body_util::BodyExt::collect(response.into_body()).await
                    else {
                        continue;
                    };
                    if ok {
                        let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                        acks.lock().unwrap().push(text.parse::<u64>().unwrap());
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acks.lock().unwrap().len();
    assert!(before > 0, "nothing was acknowledged before the kill");
    // Kill the node that owns the counter.
    let owner = owner_of(root.path(), &nodes[1], "COUNTER", "hot").await;
    let victim = ["n1", "n2", "n3"].iter().position(|n| *n == owner).unwrap();
    nodes.remove(victim).kill9();
    // Within the lease (and a beat) the others serve the counter again.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 3)).await;
    let after_kill = acks.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() > after_kill,
        "the surviving nodes served nothing after the kill"
    );
    let mut seen = HashSet::new();
    for value in &acks {
        assert!(seen.insert(*value), "count {value} was acknowledged twice");
    }
    let highest = *acks.iter().max().unwrap();
    // The next count is above every acknowledged one.
    let next = count(&http, &nodes[0], "hot").await;
    assert!(
        next > highest,
        "count {next} after the kill, but {highest} was acknowledged"
    );
    for node in nodes {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_serves_no_stale_count() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let n1 = start(root.path(), &database, "n1");
    let n2 = start(root.path(), &database, "n2");
    let http = client();
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for name in &names {
        assert_eq!(count(&http, &n1, name).await, 1);
    }
    // n1 sleeps past its lease; n2 takes every shard and counts on.
    n1.signal("STOP");
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    for name in &names {
        assert_eq!(count(&http, &n2, name).await, 2, "{name} through n2");
    }
    n1.signal("CONT");
    // Woken, n1 must not answer from what it cached before: every answer
    // is the next count, or a retryable 503 while it catches up.
    for name in &names {
        assert_eq!(
            count(&http, &n1, name).await,
            3,
            "{name} through n1 after its pause"
        );
    }
    n1.stop();
    n2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_answers_every_request() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let names = ["n1", "n2", "n3"];
    let mut nodes: Vec<Server> = names
        .iter()
        .map(|n| start(root.path(), &database, n))
        .collect();
    let urls = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
    ));
    let http = client();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Clients count eight counters through every node, as a load balancer
    // would: a node that refuses the connection (it is stopping) is skipped;
    // every answer a node gives must be a count.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (http, urls, answered, failures, stop) = (
                http.clone(),
                urls.clone(),
                answered.clone(),
                failures.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut i = c;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let base = {
                        let urls = urls.lock().unwrap();
                        urls[i % urls.len()].clone()
                    };
                    let name = format!("r{}", i % 8);
                    let request = http::Request::get(format!("{base}/COUNTER/{name}/"))
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    let Ok(response) = http.request(request).await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let status = response.status().as_u16();
                    let Ok(body) = http_body_util::BodyExt::collect(response.into_body()).await
                    else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                    if status == 200 {
                        answered
                            .lock()
                            .unwrap()
                            .push((name, text.parse::<u64>().unwrap()));
                    } else {
                        failures.lock().unwrap().push(format!("{status}: {text}"));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (i, name) in names.iter().enumerate() {
        nodes.remove(i).stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = start(root.path(), &database, name);
        urls.lock().unwrap()[i] = again.base.clone();
        nodes.insert(i, again);
        tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 100, "only {} answers", answered.len());
    let mut seen = HashSet::new();
    for pair in &answered {
        assert!(seen.insert(pair.clone()), "{pair:?} was answered twice");
    }
    for node in nodes {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_of_a_killed_node_fire_on_another_once() {
    let postgres = Postgres::start();
    let database = postgres.database();
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Server> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| start(root.path(), &database, n))
        .collect();
    let http = client();
    let objects: Vec<String> = (0..6).map(|i| format!("alarm{i}")).collect();
    let set = serde_json::json!([{"op": "set_alarm", "in_ms": 2500}]).to_string();
    for (i, name) in objects.iter().enumerate() {
        let via = &nodes[i % 3];
        let (status, body) =
            crate::support::send(&http, "POST", &via.url(&format!("/PROBE/{name}/ops")), &set)
                .await;
        assert_eq!(status, 200, "{body}");
    }
    // Kill the owner of the first object before any alarm is due.
    let owner = owner_of(root.path(), &nodes[0], "PROBE", "alarm0").await;
    let victim = ["n1", "n2", "n3"].iter().position(|n| *n == owner).unwrap();
    nodes.remove(victim).kill9();
    // Due after 2.5 s; the dead node's shards move within the lease.
    let read = serde_json::json!([{"op": "get", "key": "alarm-log"}]).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    for name in &objects {
        let log: Vec<serde_json::Value> = loop {
            let (status, body) = crate::support::send(
                &http,
                "POST",
                &nodes[0].url(&format!("/PROBE/{name}/ops")),
                &read,
            )
            .await;
            if status == 200 {
                let results: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
                if let Some(text) = results[0]["ok"].as_str() {
                    break serde_json::from_str(text).unwrap();
                }
            } else {
                assert_eq!(status, 503, "{body}");
            }
            assert!(Instant::now() < deadline, "the alarm of {name} never ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            log.len(),
            1,
            "{name} ran its alarm {} times: {log:?}",
            log.len()
        );
    }
    // And not again later.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    for name in &objects {
        let (_, body) = crate::support::send(
            &http,
            "POST",
            &nodes[1].url(&format!("/PROBE/{name}/ops")),
            &read,
        )
        .await;
        let results: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let log: Vec<serde_json::Value> =
            serde_json::from_str(results[0]["ok"].as_str().unwrap()).unwrap();
        assert_eq!(log.len(), 1, "{name}: {log:?}");
    }
    for node in nodes {
        node.stop();
    }
}
