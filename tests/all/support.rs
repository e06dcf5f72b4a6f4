//! Shared test support: guest components built once from source, a real
//! `dohost serve` process on loopback, and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Component files built from the repository's guest crates.
pub struct Guests {
    pub counter: PathBuf,
    pub worker: PathBuf,
    pub probe: PathBuf,
    /// `AdvancedCounter`: the counter example's Counter, renamed.
    pub advanced: PathBuf,
    /// Imports `test:stray/clock`, which dohost does not provide.
    pub stray: PathBuf,
}

/// Builds the guests once per test process (cargo decides what is stale).
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        dohost::build::ensure_guest_target(&mut |line| eprintln!("{line}")).expect("guest target");
        let build = |dir: &str| {
            dohost::build::build_rust_guest(&workspace().join(dir)).expect("guest builds")
        };
        Guests {
            counter: build("examples/counter/counter"),
            worker: build("examples/counter/worker"),
            probe: build("tests/guests/probe"),
            advanced: build("tests/guests/advanced"),
            stray: build("tests/guests/stray"),
        }
    })
}

/// Writes a dohost.toml into `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("dohost.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A config with the counter (COUNTER) and the probe (PROBE) and no worker.
pub fn router_config(dir: &Path) -> PathBuf {
    let g = guests();
    write_config(
        dir,
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n\
             [[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [vars]\nGREETING = \"hello\"\n",
            g.counter, g.probe
        ),
    )
}

/// Runs the probe's storage operations (`POST /ops`, see
/// tests/guests/probe/src/ops.rs) in one event of probe `name` through the
/// server's default router: one `{"ok": ..}` or `{"err": ".."}` each.
pub async fn server_ops(
    http: &HttpClient,
    server: &Server,
    name: &str,
    ops: &serde_json::Value,
) -> serde_json::Value {
    let (status, body) = send(
        http,
        "POST",
        &server.url(&format!("/PROBE/{name}/ops")),
        &ops.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/ops answers JSON")
}

/// Appends to the configuration at `config` a `[cluster]` table making the
/// server one node (`n1`, 16 shards) of a cluster on `database`.
pub fn add_cluster(config: &Path, database: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    let mut text = std::fs::read_to_string(config).expect("read config");
    text.push_str(&format!(
        "[cluster]\ndatabase = {database:?}\nnode = \"n1\"\nadvertise = \"127.0.0.1:{port}\"\n\
         secret = \"a secret of the one-node test cluster\"\nshards = 16\n"
    ));
    std::fs::write(config, text).expect("write config");
}

/// Serves a copy of the dohost.toml of `example` (a directory under the
/// workspace, e.g. `examples/sql-patterns`), written into `dir` with its
/// component and `main` paths made absolute and the `[vars]` in `vars` set to other
/// values.
pub fn serve_example_with_vars(
    example: &str,
    dir: &Path,
    data: &Path,
    vars: &[(&str, &str)],
) -> Server {
    let mut text = example_config(example);
    for (name, value) in vars {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("the example's [vars] have no {name}"))
            .to_owned();
        text = text.replace(&line, &format!("{name} = {value:?}"));
    }
    Server::start(&write_config(dir, &text), data)
}

/// The text of the dohost.toml of `example` (a directory under the
/// workspace), with its component and `main` paths made absolute.
pub fn example_config(example: &str) -> String {
    example_config_file(example, "dohost.toml")
}

/// As [`example_config`], for the configuration file `file` of `example`.
pub fn example_config_file(example: &str, file: &str) -> String {
    let example_dir = workspace().join(example);
    let mut text = std::fs::read_to_string(example_dir.join(file))
        .unwrap_or_else(|e| panic!("the example's {file}: {e}"));
    let paths: Vec<(&str, String)> = text
        .lines()
        .filter_map(|line| {
            ["component = ", "main = "]
                .into_iter()
                .find_map(|field| Some((field, line.strip_prefix(field)?.to_owned())))
        })
        .collect();
    for (field, quoted) in paths {
        let relative: String = serde_json::from_str(&quoted).expect("a quoted component path");
        let absolute = example_dir.join(relative);
        text = text.replace(
            &format!("{field}{quoted}"),
            &format!("{field}{:?}", absolute.to_str().expect("a UTF-8 path")),
        );
    }
    text
}

/// `config` (a dohost.toml's text) with the component of `binding` set to
/// `component`.
pub fn with_component(config: &str, binding: &str, component: &Path) -> String {
    let start = config
        .find(&format!("name = {binding:?}"))
        .unwrap_or_else(|| panic!("no binding {binding}"));
    let line_start = start
        + config[start..]
            .find("component = ")
            .expect("the binding has a component");
    let line_end = line_start
        + config[line_start..]
            .find('\n')
            .unwrap_or(config.len() - line_start);
    format!(
        "{}component = {:?}{}",
        &config[..line_start],
        component.to_str().expect("a UTF-8 path"),
        &config[line_end..]
    )
}

/// Builds the JavaScript examples once per test process, so the servers
/// the tests start find their components built (the first build installs
/// the build tools into examples/js with npm).
pub fn js_examples_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for example in [
            "examples/js/counter",
            "examples/js/patterns",
            "examples/js/api",
            "examples/js/quotes",
        ] {
            let path = workspace().join(example).join("dohost.toml");
            let mut config = dohost::Config::load(&path).expect("the example's dohost.toml");
            dohost::build::build_config(&mut config, &mut |line| eprintln!("{line}"))
                .unwrap_or_else(|e| panic!("{example} builds: {e}"));
        }
    });
}

/// A running `dohost serve` process.
pub struct Server {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `dohost serve` on a free loopback port and waits until it serves.
    pub fn start(config: &Path, data: &Path) -> Server {
        Server::start_with(config, data, &[])
    }

    /// As [`Server::start`], with more arguments for `dohost serve`.
    pub fn start_with(config: &Path, data: &Path, args: &[&str]) -> Server {
        Server::spawn(
            Command::new(env!("CARGO_BIN_EXE_dohost")),
            config,
            data,
            args,
        )
    }

    /// `dohost dev` (serve with `--watch` and `--dev`) on a free loopback
    /// port, waiting until it serves.
    pub fn start_dev(config: &Path, data: &Path) -> Server {
        Server::spawn_command(
            Command::new(env!("CARGO_BIN_EXE_dohost")),
            "dev",
            config,
            data,
            &[],
        )
    }

    /// As [`Server::start`], in a process that may open at most
    /// `descriptors` files (`ulimit -n`, soft and hard).
    pub fn start_with_descriptors(config: &Path, data: &Path, descriptors: u32) -> Server {
        let mut shell = Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_dohost"),
        ]);
        Server::spawn(shell, config, data, &[])
    }

    fn spawn(command: Command, config: &Path, data: &Path, args: &[&str]) -> Server {
        Server::spawn_command(command, "serve", config, data, args)
    }

    fn spawn_command(
        mut command: Command,
        subcommand: &str,
        config: &Path,
        data: &Path,
        args: &[&str],
    ) -> Server {
        let mut child = command
            .args([subcommand, "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dohost");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        // A first JavaScript build (npm install, two componentize-js runs,
        // two 13 MB components compiled to native code) takes minutes on a
        // busy 2-core machine.
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(addr) => Server {
                child,
                base: format!("http://{addr}"),
                log,
            },
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "dohost serve did not start; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    /// The server's address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The server's resident memory now, in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits up to 10 s for the server to print `needle`; what it printed.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops the server with SIGTERM, as a supervisor would, and waits
    /// for it to exit: it closes its database cleanly.
    pub fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.child.wait().expect("wait");
    }

    /// Waits up to `limit` for the server to exit on its own: its exit
    /// status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends the server `signal` (`"STOP"`, `"CONT"`, ...).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Kills the server with SIGKILL (no shutdown work at all).
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dohost` with `args`: whether it succeeded, and its stderr. Kills it
/// and fails the test if it is still running after `limit` (e.g. a server
/// that started when it should have refused to).
pub fn run_dohost(args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dohost");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait for dohost").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("dohost output");
            panic!(
                "dohost {args:?} still ran after {limit:?}; its log:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("dohost output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `dohost serve` on `config` and `data`, which must refuse to start;
/// returns its stderr.
pub fn serve_refused(config: &Path, data: &Path) -> String {
    let (ok, stderr) = run_dohost(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("a UTF-8 path"),
            "--data",
            data.to_str().expect("a UTF-8 path"),
        ],
        Duration::from_secs(120),
    );
    assert!(
        !ok,
        "dohost serve started with {}:\n{}",
        config.display(),
        std::fs::read_to_string(config).unwrap_or_default()
    );
    stderr
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request; returns (status, body text).
pub async fn send(client: &HttpClient, method: &str, url: &str, body: &str) -> (u16, String) {
    send_with_headers(client, method, url, &[], body).await
}

/// Sends one request with `headers`; returns (status, body text).
pub async fn send_with_headers(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GETs `url` and returns the response with its body unread, to read as
/// it arrives ([`next_chunk`]).
pub async fn get_streaming(
    client: &HttpClient,
    url: &str,
) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The next piece of `body` as text: `None` at its end, an error if the
/// connection was cut before it.
pub async fn next_chunk(body: &mut hyper::body::Incoming) -> Option<Result<String, String>> {
    loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(String::from_utf8_lossy(&data).into_owned()));
                }
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// Sends a request and parses the response body as JSON.
pub async fn send_json(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = send(client, method, url, body).await;
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"));
    (status, value)
}

pub async fn get(client: &HttpClient, url: &str) -> (u16, String) {
    send(client, "GET", url, "").await
}

/// GETs `url`, which must answer 200 with JSON; the JSON.
pub async fn get_json(client: &HttpClient, url: &str) -> serde_json::Value {
    let (status, body) = get(client, url).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// The answer to `GET path` of the admin API with the admin token
/// `token`, which must be 200.
pub async fn admin_get(server: &Server, token: &str, path: &str) -> String {
    let auth = format!("Bearer {token}");
    let (status, body) = send_with_headers(
        &client(),
        "GET",
        &server.url(path),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The server's counters (`GET /_dohost/stats`, with admin token `token`).
pub async fn admin_stats(server: &Server, token: &str) -> serde_json::Value {
    let body = admin_get(server, token, "/_dohost/stats").await;
    serde_json::from_str(&body).expect("stats are JSON")
}

/// A library host over the counter and probe components, with small limits
/// so many tests can hold one at once.
pub fn library_host(data: &Path) -> dohost::HostBuilder {
    let g = guests();
    dohost::Host::builder()
        .data_dir(data)
        .binding("COUNTER", "Counter", &g.counter)
        .binding("PROBE", "Probe", &g.probe)
        .settings(dohost::Settings {
            max_live_objects: 64,
            ..dohost::Settings::default()
        })
}

/// The probe object named `name` on `host`.
pub fn probe_stub(host: &dohost::Host, name: &str) -> dohost::Stub {
    host.namespace("PROBE")
        .expect("the PROBE binding")
        .id_from_name(name)
        .get()
}

/// A GET request for the library API.
pub fn request(method: &str, path: &str, body: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .body(Bytes::from(body.to_owned()))
        .expect("request")
}

pub fn text(response: &http::Response<Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

/// Runs storage operations in one event of the probe object behind `stub`
/// (`POST /ops`, see tests/guests/probe/src/ops.rs): one `{"ok": ..}` or
/// `{"err": ".."}` per operation.
pub async fn run_ops(
    stub: &dohost::Stub,
    ops: &serde_json::Value,
) -> dohost::Result<Vec<serde_json::Value>> {
    let response = stub
        .fetch(request("POST", "/ops", &ops.to_string()))
        .await?;
    assert_eq!(response.status(), 200, "/ops failed: {}", text(&response));
    Ok(serde_json::from_slice(response.body()).expect("/ops answers JSON"))
}
