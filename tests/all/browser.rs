//! A real browser for the tests of web pages: Debian's headless chromium,
//! driven through chromedriver with fantoccini.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// chromedriver on a free port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, installing Debian's chromium and chromium-driver
/// first when they are missing (as `.ci/run` does).
pub async fn chromedriver() -> Driver {
    if !std::path::Path::new("/usr/bin/chromedriver").exists() {
        eprintln!("installing chromium and chromium-driver with apt-get for the browser test");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (as root)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver {
        child: Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

/// A headless chromium session.
pub async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// The texts of the elements `css` matches, read in one script: the page
/// replaces its lists as messages arrive, so elements found one call
/// earlier may be gone.
pub async fn texts(page: &Client, css: &str) -> Vec<String> {
    let found = page
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(found).expect("a list of texts")
}

/// Waits until the elements `css` matches have texts that satisfy `check`.
pub async fn wait_for(page: &Client, css: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    for _ in 0..200 {
        let found = texts(page, css).await;
        if check(&found) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never matched; it holds {:?}", texts(page, css).await);
}
