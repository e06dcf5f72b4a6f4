//! Objects never see each other's keys, even with identical key names, and
//! the same name in two namespaces is two objects.

use crate::support::{Server, client, get, router_config, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_do_not_share_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&router_config(dir.path()), &dir.path().join("data"));
    let http = client();

    assert_eq!(
        send(&http, "PUT", &server.url("/PROBE/alice/kv/secret"), "A")
            .await
            .0,
        200
    );
    assert_eq!(
        send(&http, "PUT", &server.url("/PROBE/alice/kv/other"), "A2")
            .await
            .0,
        200
    );
    assert_eq!(
        send(&http, "PUT", &server.url("/PROBE/bob/kv/secret"), "B")
            .await
            .0,
        200
    );

    assert_eq!(
        get(&http, &server.url("/PROBE/alice/kv/secret")).await,
        (200, "A".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/PROBE/bob/kv/secret")).await,
        (200, "B".to_owned())
    );
    assert_eq!(get(&http, &server.url("/PROBE/bob/kv/other")).await.0, 404);
    assert_eq!(
        get(&http, &server.url("/PROBE/carol/kv/secret")).await.0,
        404
    );

    assert_eq!(
        get(&http, &server.url("/PROBE/bob/list")).await,
        (200, r#"[["secret","B"]]"#.to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/PROBE/alice/list")).await,
        (200, r#"[["other","A2"],["secret","A"]]"#.to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/PROBE/carol/list")).await,
        (200, "[]".to_owned())
    );

    // Deleting in one object leaves the other's key alone.
    assert_eq!(
        send(&http, "DELETE", &server.url("/PROBE/alice/kv/secret"), "").await,
        (200, "true".to_owned())
    );
    assert_eq!(
        get(&http, &server.url("/PROBE/bob/kv/secret")).await,
        (200, "B".to_owned())
    );

    // Same object name, different namespaces: different ids, different state.
    let alice = get(&http, &server.url("/PROBE/alice/whoami")).await.1;
    let counter_alice = get(&http, &server.url("/COUNTER/alice/")).await.1;
    assert_eq!(counter_alice, "1");
    let again = get(&http, &server.url("/PROBE/alice/whoami")).await.1;
    assert_eq!(alice, again, "ids are stable");
}
