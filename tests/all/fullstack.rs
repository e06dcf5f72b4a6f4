//! The fullstack example (`examples/fullstack`): Cloudflare's counter with
//! a Vite + React front end, a TypeScript worker and a wrangler.jsonc,
//! served by `dohost serve` as it is, and used in a real browser (Debian's
//! chromium): the page loads, a click increments the count, a reload keeps
//! it. And TypeScript projects type-check against the SDK's declarations
//! (`dohost types`), alone or over `@cloudflare/workers-types`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::Locator;

use crate::browser::{browser, chromedriver, wait_for};
use crate::support::{Server, client, get, run_dohost, send, send_with_headers, workspace};

/// Runs npm with `args` in the example, which must succeed.
fn npm(example: &Path, args: &[&str]) {
    let status = Command::new("npm")
        .args(args)
        .current_dir(example)
        .status()
        .unwrap_or_else(|e| panic!("npm {args:?}: {e}; install Node.js and npm"));
    assert!(
        status.success(),
        "npm {args:?} failed in {}",
        example.display()
    );
}

/// A lock on the example's npm work, held until dropped: nextest runs
/// each test in a process of its own, and two `npm ci` at once in one
/// folder break each other.
fn lock_example() -> std::fs::File {
    let lock = std::fs::File::create(std::env::temp_dir().join("dohost-test-fullstack.lock"))
        .expect("create the lock file");
    lock.lock().expect("lock the example");
    lock
}

/// The example, with its npm packages installed (once, with `npm ci`).
fn installed() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let example = workspace().join("examples/fullstack");
            let _lock = lock_example();
            if !example.join("node_modules/vite/package.json").is_file() {
                npm(&example, &["ci", "--no-audit", "--no-fund"]);
            }
            example
        })
        .clone()
}

/// The example with its front end built into `dist/` (`npm run build`),
/// once per test process.
fn front_end_built() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let example = installed();
            let _lock = lock_example();
            npm(&example, &["run", "build"]);
            example
        })
        .clone()
}

/// Runs the TypeScript compiler of the example's packages on the project
/// in `dir`: whether it type-checks, and what it said.
fn tsc(dir: &Path) -> (bool, String) {
    let out = Command::new("node")
        .arg(installed().join("node_modules/typescript/bin/tsc"))
        .args(["--noEmit", "-p", "."])
        .current_dir(dir)
        .output()
        .expect("run node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Serves the example's wrangler.jsonc as it is, with its data in `data`.
fn serve(data: &Path) -> Server {
    Server::start(&front_end_built().join("wrangler.jsonc"), data)
}

#[tokio::test]
async fn the_counter_app_counts_in_a_browser_and_keeps_its_count() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    assert!(
        server
            .log()
            .contains("wrangler.jsonc: observability.enabled: Cloudflare's Workers Logs settings"),
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

#[test]
fn typescript_projects_type_check_against_the_sdk() {
    // The example's worker-configuration.d.ts is what `dohost types` writes
    // from its wrangler.jsonc, and the worker type-checks against it. The
    // configuration names the built front end (`assets.directory`), so it
    // must be built: on a fresh clone, nothing else may have built it yet.
    let example = front_end_built();
    let declarations = example.join("worker-configuration.d.ts");
    let committed = std::fs::read_to_string(&declarations).unwrap();
    let config = example.join("wrangler.jsonc");
    let (ok, log) = run_dohost(
        &["types", "--config", config.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(ok, "{log}");
    assert!(log.contains("the runtime types of the dohost SDK"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&declarations).unwrap(),
        committed,
        "run `dohost types` in examples/fullstack and commit the result"
    );
    let (ok, out) = tsc(&example);
    assert!(ok, "{out}");

    // A project that takes its runtime types from @cloudflare/workers-types
    // gets the Env and the "dohost" module over them.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        example.join("node_modules"),
        dir.path().join("node_modules"),
    )
    .unwrap();
    for (file, text) in [
        (
            "tsconfig.json",
            "{\n  // as Cloudflare's docs set it up\n  \"compilerOptions\": {\"target\": \"ES2022\", \"module\": \"ESNext\", \"moduleResolution\": \"bundler\", \"strict\": true, \"lib\": [\"ES2022\"], \"types\": [\"@cloudflare/workers-types\"],},\n  \"include\": [\"*.ts\"]\n}\n",
        ),
        (
            "wrangler.jsonc",
            r#"{ "main": "index.ts", "durable_objects": { "bindings": [{ "name": "COUNTER", "class_name": "Counter" }] }, "vars": { "GREETING": "hi" } }"#,
        ),
        ("index.ts", TYPED_WORKER),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let config = dir.path().join("wrangler.jsonc");
    let (ok, log) = run_dohost(
        &["types", "--config", config.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        ok && log.contains("over @cloudflare/workers-types"),
        "{log}"
    );
    let (ok, out) = tsc(dir.path());
    assert!(ok, "{out}");
    // And the types are checked: a method the class lacks is an error.
    std::fs::write(
        dir.path().join("index.ts"),
        TYPED_WORKER.replace(".increment(1)", ".incremnt(1)"),
    )
    .unwrap();
    let (ok, out) = tsc(dir.path());
    assert!(
        !ok && out.contains("Property 'incremnt' does not exist"),
        "{out}"
    );
}

/// A worker and class typed against the "dohost" module and the `Env` that
/// `dohost types` writes.
const TYPED_WORKER: &str = r#"import { CallError, DurableObject, StorageError } from "dohost";

export class Counter extends DurableObject<Env> {
  async increment(by: number): Promise<number> {
    const value = ((await this.ctx.storage.get<number>("value")) ?? 0) + by;
    await this.ctx.storage.put("value", value);
    const rows = this.ctx.storage.sql.exec<{ n: number }>("SELECT 1 AS n").toArray();
    return value + rows.length - 1;
  }
}

export default {
  async fetch(request, env): Promise<Response> {
    try {
      const value: number = await env.COUNTER.getByName("a").increment(1);
      return new Response(`${env.GREETING} ${value} ${request.url}`);
    } catch (e) {
      if (e instanceof CallError && e.retryable) return new Response("retry", { status: 503 });
      if (e instanceof StorageError) return new Response(e.kind, { status: 500 });
      throw e;
    }
  },
} satisfies ExportedHandler<Env>;
"#;
