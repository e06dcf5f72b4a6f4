//! The fullstack example (`examples/fullstack`): Cloudflare's counter with
//! a Vite + React front end, a TypeScript worker and a wrangler.jsonc,
//! served by `dohost serve` as it is, and used in a real browser (Debian's
//! chromium): the page loads, a click increments the count, a reload keeps
//! it.

use std::process::Command;
use std::sync::OnceLock;

use fantoccini::Locator;

use crate::browser::{browser, chromedriver, wait_for};
use crate::support::{Server, client, get, send, send_with_headers, workspace};

/// Installs the example's npm packages (once, with `npm ci`) and builds
/// its front end into `dist/` (`npm run build`), once per test process.
fn front_end_built() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let example = workspace().join("examples/fullstack");
            let npm = |args: &[&str]| {
                let status = Command::new("npm")
                    .args(args)
                    .current_dir(&example)
                    .status()
                    .unwrap_or_else(|e| panic!("npm {args:?}: {e}; install Node.js and npm"));
                assert!(
                    status.success(),
                    "npm {args:?} failed in {}",
                    example.display()
                );
            };
            if !example.join("node_modules/vite/package.json").is_file() {
                npm(&["ci", "--no-audit", "--no-fund"]);
            }
            npm(&["run", "build"]);
            example
        })
        .clone()
}

/// Serves the example's wrangler.jsonc as it is, with its data in `data`.
fn serve(data: &std::path::Path) -> Server {
    Server::start(&front_end_built().join("wrangler.jsonc"), data)
}

#[tokio::test]
async fn the_counter_app_counts_in_a_browser_and_keeps_its_count() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    assert!(
        server
            .log()
            .contains("wrangler.jsonc: observability: a Cloudflare deployment or build setting"),
        "{}",
        server.log()
    );
    let driver = chromedriver().await;
    let page = browser(&driver).await;
    page.goto(&server.url("/")).await.unwrap();
    wait_for(&page, "#count", |t| t == ["0"]).await;
    for expected in ["1", "2"] {
        page.find(Locator::Css("#increment"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&page, "#count", |t| t == [expected]).await;
    }
    page.refresh().await.unwrap();
    wait_for(&page, "#count", |t| t == ["2"]).await;
    // A route of the app, opened directly, gets the app.
    page.goto(&server.url("/stats/today")).await.unwrap();
    wait_for(&page, "#count", |t| t == ["2"]).await;
    page.close().await.unwrap();

    let client = client();
    // `run_worker_first = ["/api/*"]`: the API is the worker's; an unknown
    // path that is not a page navigation goes to the worker too, which
    // answers 404 as the guide's does.
    let (status, body) = send(&client, "POST", &server.url("/api/counter"), "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"value":3}"#));
    let (status, body) = get(&client, &server.url("/missing.js")).await;
    assert_eq!((status, body.as_str()), (404, "Not found"));
    let (status, body) = send_with_headers(
        &client,
        "GET",
        &server.url("/stats/today"),
        &[("sec-fetch-mode", "navigate")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("<div id=\"root\">"), "{body}");
}
