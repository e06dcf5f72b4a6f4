//! examples/workspace through `dohost serve`: a worker forwards to a
//! Workspace by name; the Workspace creates Document children over RPC,
//! records them in SQL and lists them, and asks them all at once for their
//! contents.

use serde_json::{Value, json};

use crate::support::{client, get, send, serve_example_with_vars};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_creates_lists_and_reaches_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_example_with_vars("examples/workspace", dir.path(), &data, &[]);
    let client = client();
    let docs = server.url("/workspaces/acme/documents");

    let (status, body) = get(&client, &docs).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let mut object_ids = Vec::new();
    for (id, name) in [("plan", "The plan"), ("notes", "Meeting notes")] {
        let (status, body) = send(
            &client,
            "POST",
            &docs,
            &json!({"id": id, "name": name}).to_string(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (created["id"].as_str(), created["name"].as_str()),
            (Some(id), Some(name))
        );
        object_ids.push(created["object_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(object_ids[0], object_ids[1]);

    // The same id again is refused; a bad body gets a 400.
    let (status, body) = send(&client, "POST", &docs, r#"{"id":"plan","name":"x"}"#).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = send(&client, "POST", &docs, "not json").await;
    assert_eq!(status, 400);

    let (status, body) = get(&client, &docs).await;
    assert_eq!(status, 200);
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["notes", "plan"]);
    for doc in &listed {
        assert!(object_ids.contains(&doc["object_id"].as_str().unwrap().to_owned()));
    }

    // Each document is its own object, named "<workspace-id>:<doc-id>".
    let (status, body) = send(&client, "PUT", &format!("{docs}/plan"), "first draft").await;
    assert_eq!((status, body.as_str()), (200, r#"{"version":1}"#));
    let (status, body) = get(&client, &format!("{docs}/plan")).await;
    assert_eq!(status, 200);
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["name"], json!("The plan"));
    assert_eq!(plan["text"], json!("first draft"));
    assert_eq!(plan["version"], json!(1));
    let object_name = plan["object_name"].as_str().unwrap();
    let (workspace_id, doc) = object_name.split_once(':').unwrap();
    assert_eq!((workspace_id.len(), doc), (64, "plan"));
    let (_, body) = get(&client, &format!("{docs}/notes")).await;
    let notes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (notes["version"].clone(), notes["text"].clone()),
        (json!(0), json!(""))
    );

    // Every document's own view, asked of all children at once.
    let (status, body) = get(&client, &server.url("/workspaces/acme/contents")).await;
    assert_eq!(status, 200, "{body}");
    let contents: Vec<(String, Value)> = serde_json::from_str(&body).unwrap();
    let texts: Vec<(&str, &str)> = contents
        .iter()
        .map(|(id, doc)| (id.as_str(), doc["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts.contains(&("plan", "first draft")), "{texts:?}");
    assert!(texts.contains(&("notes", "")), "{texts:?}");

    // Two creates of one id at once: the Workspace takes the second while
    // the first awaits its child, and exactly one of them records it.
    let racing = [0, 1].map(|_| {
        let (client, docs) = (client.clone(), docs.clone());
        tokio::spawn(
            async move { send(&client, "POST", &docs, r#"{"id":"race","name":"Race"}"#).await },
        )
    });
    let mut statuses = Vec::new();
    for task in racing {
        statuses.push(task.await.unwrap().0);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);

    // Another workspace has its own documents, even with the same ids.
    let other = server.url("/workspaces/globex/documents");
    let (status, body) = get(&client, &format!("{other}/plan")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = send(&client, "POST", &other, r#"{"id":"plan","name":"Other"}"#).await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert!(!object_ids.contains(&created["object_id"].as_str().unwrap().to_owned()));

    // The worker answers what it does not route with a 404.
    let (status, body) = get(&client, &server.url("/elsewhere")).await;
    assert_eq!(status, 404);
    assert!(body.contains("/workspaces/<workspace>"), "{body}");

    // Everything is still there after a restart.
    drop(server);
    let server = serve_example_with_vars("examples/workspace", dir.path(), &data, &[]);
    let (_, body) = get(&client, &server.url("/workspaces/acme/documents")).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 3);
    let (_, body) = get(&client, &server.url("/workspaces/acme/documents/plan")).await;
    assert!(body.contains("first draft"), "{body}");
}
