//! The counter example, end to end through `dohost serve` and its worker:
//! three requests count 1, 2, 3, and a restart keeps the count; its `/sql`
//! route (the SQL benchmark's request) counts rows apart from the counter.

use crate::support::{Server, client, get, guests, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_through_the_worker_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let config = write_config(
        dir.path(),
        &format!(
            "name = \"counter\"\nmain = {:?}\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n",
            g.worker, g.counter
        ),
    );
    let data = dir.path().join("data");
    let http = client();

    let server = Server::start(&config, &data);
    for expected in ["1", "2", "3"] {
        assert_eq!(
            get(&http, &server.url("/")).await,
            (200, expected.to_owned())
        );
    }
    // Any path reaches the same object: the worker forwards to "my-counter".
    assert_eq!(
        get(&http, &server.url("/some/other/path")).await,
        (200, "4".to_owned())
    );
    drop(server);

    let server = Server::start(&config, &data);
    assert_eq!(get(&http, &server.url("/")).await, (200, "5".to_owned()));
    assert!(
        data.join("cache").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "cwasm")),
        "compiled components are cached in the data dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_router_addresses_objects_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::router_config(dir.path());
    let server = Server::start(&config, &dir.path().join("data"));
    let http = client();
    assert_eq!(
        get(&http, &server.url("/COUNTER/a/")).await,
        (200, "1".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/a/x/y")).await,
        (200, "2".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/b")).await,
        (200, "1".to_owned())
    );

    let (status, body) = get(&http, &server.url("/NOPE/a/")).await;
    assert_eq!(status, 404);
    // It names the binding asked for, not the configured ones (only
    // `--dev` lists those).
    assert!(body.contains("NOPE") && !body.contains("COUNTER"), "{body}");
    let (status, body) = get(&http, &server.url("/")).await;
    assert_eq!(status, 404);
    assert!(body.contains("/<BINDING>/<object-name>"), "{body}");

    // The object sees the rest of the path, its name, class and the vars.
    let (status, body) = get(&http, &server.url("/PROBE/some%20name/whoami")).await;
    assert_eq!(status, 200);
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["name"], "some name");
    assert_eq!(who["class"], "Probe");
    assert_eq!(who["id"].as_str().unwrap().len(), 64);
    assert_eq!(
        get(&http, &server.url("/PROBE/x/var/GREETING")).await,
        (200, "hello".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_route_counts_its_rows_durably_apart_from_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::router_config(dir.path());
    let data = dir.path().join("data");
    let http = client();

    let server = Server::start(&config, &data);
    for expected in ["1", "2"] {
        assert_eq!(
            get(&http, &server.url("/COUNTER/a/sql")).await,
            (200, expected.to_owned())
        );
    }
    assert_eq!(
        get(&http, &server.url("/COUNTER/a/")).await,
        (200, "1".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/COUNTER/b/sql")).await,
        (200, "1".to_owned())
    );
    drop(server);

    let server = Server::start(&config, &data);
    assert_eq!(
        get(&http, &server.url("/COUNTER/a/x/sql")).await,
        (200, "3".to_owned())
    );
}
