//! The library API: a host built in code, objects reached by name.

use crate::support::{guests, library_host, request, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_host_counts_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let host = library_host(dir.path()).build().unwrap();
    {
        let counter = host.namespace("COUNTER").unwrap();
        for expected in ["1", "2"] {
            let response = counter
                .id_from_name("x")
                .get()
                .fetch(request("GET", "/", ""))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(text(&response), expected);
        }
        let id = counter.id_from_name("x");
        assert_eq!(
            id.to_string(),
            counter.id_from_name("x").to_string(),
            "ids are deterministic"
        );
        assert_ne!(id.to_string(), counter.id_from_name("y").to_string());
        let by_id = counter.id_from_string(&id.to_string()).unwrap();
        assert_eq!(
            text(&by_id.get().fetch(request("GET", "/", "")).await.unwrap()),
            "3"
        );

        let err = host.namespace("MISSING").unwrap_err();
        assert_eq!(err.kind(), dohost::ErrorKind::NotFound);
        assert!(err.message().contains("COUNTER"), "{err}");
        assert_eq!(
            counter.id_from_string("xyz").unwrap_err().kind(),
            dohost::ErrorKind::BadRequest
        );
    }
    // While it runs, the data directory is locked against a second host.
    assert_eq!(
        library_host(dir.path()).build().unwrap_err().kind(),
        dohost::ErrorKind::Storage
    );
    // After shutdown, a new host on the same data dir keeps ids and counts.
    host.shutdown().await;
    let host = library_host(dir.path()).build().unwrap();
    let response = host
        .namespace("COUNTER")
        .unwrap()
        .id_from_name("x")
        .get()
        .fetch(request("GET", "/", ""))
        .await
        .unwrap();
    assert_eq!(text(&response), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_vars_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let config = dohost::Config::parse(
        &format!(
            "main = {:?}\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n[vars]\nN = 3\n",
            g.worker, g.counter
        ),
        &dir.path().join("dohost.toml"),
    )
    .unwrap();
    assert_eq!(config.vars.get("N").map(String::as_str), Some("3"));
    let host = dohost::Host::from_config(&config, dir.path().join("data")).unwrap();
    let response = host.fetch(request("GET", "/anything", "")).await.unwrap();
    assert_eq!(text(&response), "1");
    let direct = host
        .namespace("COUNTER")
        .unwrap()
        .id_from_name("my-counter")
        .get();
    assert_eq!(
        text(&direct.fetch(request("GET", "/", "")).await.unwrap()),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_component_exports_several_classes() {
    let dir = tempfile::tempdir().unwrap();
    let probe = &guests().probe;
    // A class the component does not export is refused before any object
    // runs, naming the classes it does export.
    let err = dohost::Host::builder()
        .data_dir(dir.path())
        .binding("PROBE", "Probe", probe)
        .binding("GHOST", "Ghost", probe)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::Config);
    assert!(
        err.message().contains("binding GHOST: class_name = \"Ghost\" is not exported by its component, which exports Probe, Greeter"),
        "{err}"
    );

    let host = dohost::Host::builder()
        .data_dir(dir.path())
        .binding("PROBE", "Probe", probe)
        .binding("GREETER", "Greeter", probe)
        .var("GREETING", "hello")
        .build()
        .unwrap();
    let greeter = host.namespace("GREETER").unwrap().id_from_name("g").get();
    assert_eq!(
        text(&greeter.fetch(request("GET", "/", "")).await.unwrap()),
        "hello #1 from Greeter"
    );
    assert_eq!(
        text(&greeter.fetch(request("GET", "/", "")).await.unwrap()),
        "hello #2 from Greeter"
    );
    // Same name, other class and namespace: its own object.
    let probe = host.namespace("PROBE").unwrap().id_from_name("g").get();
    assert_eq!(
        text(&probe.fetch(request("GET", "/count", "")).await.unwrap()),
        "1 1"
    );
}
