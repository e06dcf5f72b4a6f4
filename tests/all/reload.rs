//! Code updates: a component swapped in while the host runs. A running
//! event finishes on the old code, the next one runs the new code on a
//! fresh instance over the same storage, and a component that no longer
//! fits is refused while the old code keeps serving.

use std::path::Path;
use std::time::Duration;

use crate::support::{Server, client, get, guests, request, text, write_config};

/// Puts `component` where the host reads its GREETER component, the way a
/// build would: a new file moved into place.
fn install(component: &Path, at: &Path) {
    let tmp = at.with_extension("new");
    std::fs::copy(component, &tmp).unwrap();
    std::fs::rename(&tmp, at).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_code_between_events() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let wasm = dir.path().join("greeter.wasm");
    install(&g.probe, &wasm);
    let host = dohost::Host::builder()
        .data_dir(dir.path().join("data"))
        .binding("GREETER", "Greeter", &wasm)
        .build()
        .unwrap();
    let stub = host.namespace("GREETER").unwrap().get_by_name("g");
    assert_eq!(
        text(&stub.fetch(request("GET", "/", "")).await.unwrap()),
        "hi #1 from Greeter"
    );

    // An event running on the old code while the new code comes in.
    let running = tokio::spawn({
        let stub = stub.clone();
        async move { stub.fetch(request("GET", "/?spin=800", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    install(&g.advanced, &wasm);
    let reloading = host.clone();
    tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text(&running.await.unwrap().unwrap()),
        "hi #2 from Greeter",
        "the running event finished on the old code"
    );
    assert_eq!(
        text(&stub.fetch(request("GET", "/", "")).await.unwrap()),
        "greetings, v2 #3",
        "the next event runs the new code over the same storage"
    );
    // Instances of the old code were made ahead of new objects when "g"
    // activated; a new object must not get one.
    let fresh = host.namespace("GREETER").unwrap().get_by_name("g2");
    assert_eq!(
        text(&fresh.fetch(request("GET", "/", "")).await.unwrap()),
        "greetings, v2 #1",
        "an object activated after the reload runs the new code"
    );

    // A component without the class is refused; v2 keeps serving.
    install(&g.counter, &wasm);
    let reloading = host.clone();
    let err = tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::Config);
    assert!(
        err.message().contains(
            "binding GREETER: the new component does not export class Greeter (it exports Counter)"
        ),
        "{err}"
    );
    assert_eq!(
        text(&stub.fetch(request("GET", "/", "")).await.unwrap()),
        "greetings, v2 #4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_watch_reloads_a_changed_component() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    let wasm = dir.path().join("greeter.wasm");
    install(&g.probe, &wasm);
    let config = write_config(
        dir.path(),
        "[[durable_objects.bindings]]\nname = \"GREETER\"\nclass_name = \"Greeter\"\ncomponent = \"greeter.wasm\"\n",
    );
    let server = Server::start_with(&config, &dir.path().join("data"), &["--watch"]);
    let http = client();
    assert_eq!(
        get(&http, &server.url("/GREETER/g/")).await,
        (200, "hi #1 from Greeter".to_owned())
    );

    install(&g.advanced, &wasm);
    let mut answer = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = get(&http, &server.url("/GREETER/g/")).await;
        assert_eq!(status, 200, "{body}");
        answer = body;
        if answer.starts_with("greetings, v2") {
            break;
        }
    }
    assert!(
        answer.starts_with("greetings, v2"),
        "never reloaded: {answer}\n{}",
        server.log()
    );
    assert!(server.log().contains("reloaded"), "{}", server.log());

    // A broken file is refused and the running code stays.
    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    std::fs::rename(dir.path().join("broken.wasm"), &wasm).unwrap();
    let mut log = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = server.log();
        if log.contains("not reloaded") {
            break;
        }
    }
    assert!(
        log.contains("not reloaded, the running code stays")
            && log.contains("not a valid component"),
        "{log}"
    );
    let (status, body) = get(&http, &server.url("/GREETER/g/")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("greetings, v2"), "{body}");
}

/// `Host::reload_from`: a build that writes its component under a new name
/// (as a JavaScript build does) is reloaded from there, later reloads read
/// the new place, and a configuration with other bindings is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_from_takes_components_at_new_paths() {
    let dir = tempfile::tempdir().unwrap();
    let g = guests();
    install(&g.probe, &dir.path().join("v1.wasm"));
    install(&g.advanced, &dir.path().join("v2.wasm"));
    let load = |component: &str, binding: &str| {
        let path = write_config(
            dir.path(),
            &format!(
                "[[durable_objects.bindings]]\nname = \"{binding}\"\nclass_name = \"Greeter\"\ncomponent = \"{component}\"\n"
            ),
        );
        dohost::Config::load(&path).unwrap()
    };
    let host =
        dohost::Host::from_config(&load("v1.wasm", "GREETER"), dir.path().join("data")).unwrap();
    let stub = host.namespace("GREETER").unwrap().get_by_name("g");
    assert_eq!(
        text(&stub.fetch(request("GET", "/", "")).await.unwrap()),
        "hi #1 from Greeter"
    );

    // The old output is gone, as after a JavaScript build.
    std::fs::remove_file(dir.path().join("v1.wasm")).unwrap();
    let (reloading, v2) = (host.clone(), load("v2.wasm", "GREETER"));
    tokio::task::spawn_blocking(move || reloading.reload_from(&v2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text(&stub.fetch(request("GET", "/", "")).await.unwrap()),
        "greetings, v2 #2"
    );
    let reloading = host.clone();
    tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .unwrap()
        .expect("a later reload reads the new component");

    let (reloading, other) = (host.clone(), load("v2.wasm", "OTHER"));
    let err = tokio::task::spawn_blocking(move || reloading.reload_from(&other))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), dohost::ErrorKind::Config);
    assert!(err.message().contains("restart"), "{err}");
}
