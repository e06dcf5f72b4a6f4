//! `dohost`: serve Durable Objects over HTTP, or build their components.
//!
//! ```text
//! dohost new NAME [--lang rust|js|ts|python]
//! dohost dev [--config dohost.toml] [--listen 127.0.0.1:8787] [--data DIR]
//! dohost serve [--config dohost.toml] [--listen 127.0.0.1:8787] [--data DIR] [--watch] [--dev]
//! dohost build [DIR]
//! dohost types [--config wrangler.jsonc] [--out worker-configuration.d.ts]
//! dohost check [--config dohost.toml | --data DIR]
//! dohost objects list [BINDING] [--config dohost.toml | --data DIR]
//! dohost objects show BINDING NAME|id:ID [--config dohost.toml | --data DIR]
//! dohost objects delete BINDING NAME|id:ID [--config dohost.toml | --data DIR]
//! dohost objects restore BINDING NAME|id:ID --at BOOKMARK|TIME|AGO [--config dohost.toml | --data DIR]
//! dohost objects export BINDING NAME|id:ID [--out FILE] [--config dohost.toml | --data DIR]
//! dohost objects import [FILE] [--binding B] [--as NAME|id:ID] [--replace] [--config dohost.toml | --data DIR]
//! dohost backup DIR [--url http://127.0.0.1:8787] [--token TOKEN] [--config dohost.toml | --data DIR]
//! ```
//!
//! The data directory is `.dohost` beside the configuration file unless
//! `--data` says otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

mod cli;

use cli::console::console;

// Every request allocates small buffers on several threads; mimalloc's
// thread-local free lists measurably beat glibc malloc here (see bench/).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dohost",
    version,
    about = "A host for Durable Objects as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `serve` and `dev` serve, and where.
#[derive(clap::Args)]
struct Serving {
    /// The configuration file: a dohost.toml, wrangler.toml,
    /// wrangler.jsonc or wrangler.json; by default the first of those
    /// in the current folder.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The data directory (database and compiled-component cache);
    /// by default `.dohost` beside the configuration file.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Start a project: a counter object, an entry worker, a test and a
    /// README in a new folder, which `dohost dev` serves at once.
    New {
        /// The project's folder (a new or empty one); its last part names
        /// the project: lowercase letters, digits and `-`.
        #[arg(value_name = "NAME")]
        path: PathBuf,
        /// The language of the object and the worker.
        #[arg(long, value_enum, default_value = "js")]
        lang: cli::new::Lang,
    },
    /// Serve for development: `serve --watch --dev`. Components are rebuilt
    /// and reloaded when their sources change, an error response carries
    /// the whole error (a trap's message, the guest's last output), and the
    /// object browser (/_dohost/ui) is on, with a token made for the run
    /// when the configuration has none.
    Dev {
        #[command(flatten)]
        serving: Serving,
    },
    /// Serve the objects of a dohost.toml or wrangler configuration over HTTP
    /// (building guests first when needed).
    Serve {
        #[command(flatten)]
        serving: Serving,
        /// Reload components when their files change (rebuilding Rust guest
        /// crates first): running events finish on the old code, objects
        /// restart on the new.
        #[arg(long)]
        watch: bool,
        /// Development mode: error responses carry the whole error (a trap's
        /// backtrace, the guest's output, the configured bindings), as
        /// `[server] debug_errors = true` does, and the object browser is on
        /// (with a token made for the run if `[admin] token` is not set).
        #[arg(long)]
        dev: bool,
    },
    /// Build the guest components a configuration points at.
    Build {
        /// A configuration file, or the directory holding one (dohost.toml,
        /// wrangler.json, wrangler.jsonc or wrangler.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Write TypeScript declarations for the project, as `wrangler types`
    /// does: the Env of the configuration's bindings and vars, and the
    /// runtime types of the JavaScript SDK (only its "dohost" module when the
    /// tsconfig.json's types name @cloudflare/workers-types).
    Types {
        /// The configuration file; by default the first of dohost.toml,
        /// wrangler.json, wrangler.jsonc and wrangler.toml here.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write; by default worker-configuration.d.ts beside the
        /// configuration.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify the data directory of a stopped server: the file's structure
    /// and the checksum of every stored value and SQL page. Exits 1 if
    /// anything is damaged.
    Check {
        /// The data directory; by default `.dohost` beside the configuration
        /// file.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The configuration file whose data directory to check.
        #[arg(long, default_value = "dohost.toml")]
        config: PathBuf,
    },
    /// The cluster a configuration's `[cluster]` names: its nodes, their
    /// heartbeats and shards, and the shards without an owner.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        /// The configuration file with the `[cluster]` table.
        #[arg(long, global = true, default_value = "dohost.toml")]
        config: PathBuf,
    },
    /// List, inspect, export, import, restore or delete the objects of a stopped server's data
    /// directory (a running server answers the same on its admin HTTP API),
    /// or list and inspect those of the cluster a configuration's
    /// `[cluster]` names.
    Objects {
        #[command(subcommand)]
        action: ObjectsAction,
        /// The data directory; by default `.dohost` beside the configuration
        /// file.
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        /// The configuration file whose data directory to use.
        #[arg(long, global = true, default_value = "dohost.toml")]
        config: PathBuf,
    },
    /// Copy a running server's database into DIR while it serves (a
    /// consistent snapshot, which `dohost serve --data DIR` opens), through
    /// its admin API; with no server answering, copy the stopped data
    /// directory. A cluster's PostgreSQL database is backed up with
    /// pg_dump instead.
    Backup {
        /// The folder to write dohost.redb into (created if needed; an
        /// existing dohost.redb there is refused).
        dir: PathBuf,
        /// The running server's address.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        url: String,
        /// The admin token; by default the configuration's `[admin] token`.
        #[arg(long)]
        token: Option<String>,
        /// The data directory to copy when no server runs; by default
        /// `.dohost` beside the configuration file.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The server's configuration file.
        #[arg(long, default_value = "dohost.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Show the nodes, how many shards each owns and when its leases
    /// expire, read from the cluster's PostgreSQL database.
    Status,
}

#[derive(Subcommand)]
enum ObjectsAction {
    /// List the objects that have stored something: binding, class, id, name.
    List {
        /// Only the objects of this binding.
        binding: Option<String>,
    },
    /// Show an object's KV keys, SQL tables and alarm, as JSON.
    Show {
        /// The binding, e.g. COUNTER.
        binding: String,
        /// The object's name (as given to idFromName), or `id:` and its id.
        name_or_id: String,
    },
    /// Bring an object's storage, SQL database and alarm back to an earlier
    /// point (needs `[storage] history`); prints the bookmark that undoes
    /// it. A deleted object comes back.
    Restore {
        /// The binding, e.g. COUNTER.
        binding: String,
        /// The object's name (as given to idFromName), or `id:` and its id.
        name_or_id: String,
        /// A bookmark (16 hex digits), a time (RFC 3339 such as
        /// 2026-12-07T10:30:00Z, or ms since the epoch), or how long ago
        /// (10m, 2h).
        #[arg(long)]
        at: String,
    },
    /// Delete an object's storage, SQL database and alarm, in one commit.
    Delete {
        /// The binding, e.g. COUNTER.
        binding: String,
        /// The object's name (as given to idFromName), or `id:` and its id.
        name_or_id: String,
    },
    /// Write an object's KV entries, SQL database and alarm as a portable
    /// export (JSON Lines, docs/export.md).
    Export {
        /// The binding, e.g. COUNTER.
        binding: String,
        /// The object's name (as given to idFromName), or `id:` and its id.
        name_or_id: String,
        /// The file to write; by default stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write an export into an object, in one commit. The object is the
    /// one --as names, else the export's name, else its id if this
    /// namespace minted it.
    Import {
        /// The export; stdin when absent or `-`.
        file: Option<PathBuf>,
        /// The binding to import into; by default the export's.
        #[arg(long)]
        binding: Option<String>,
        /// The object to write: a name, or `id:` and an id of the binding.
        #[arg(long = "as", value_name = "NAME|id:ID")]
        target: Option<String>,
        /// Replace an object that already holds data.
        #[arg(long)]
        replace: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let export = match init_logging(&cli) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let result = run(cli);
    if let Some(export) = export {
        export.shutdown();
    }
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Installs the log and progress rendering, with the OTLP export of the
/// event spans when the configuration `serve` or `dev` runs names an
/// `[observability] otlp_endpoint` (that configuration is read again, and
/// its errors reported, by `run`).
fn init_logging(cli: &Cli) -> Result<Option<dohost::telemetry::OtlpExport>> {
    let config = match &cli.command {
        Command::Serve { serving, .. } | Command::Dev { serving } => serving.config.clone(),
        _ => return Ok(cli::console::init_tracing(None)?),
    };
    let endpoint = config_or_found(config)
        .ok()
        .and_then(|path| dohost::Config::load(&path).ok())
        .and_then(|config| config.observability.otlp_endpoint);
    Ok(cli::console::init_tracing(endpoint.as_deref())?)
}

/// `.dohost` beside the configuration file `config`, as wrangler keeps its
/// local state beside wrangler.toml: each application its own data.
fn default_data_dir(config: &Path) -> PathBuf {
    folder_of(config).join(dohost::DEFAULT_DATA_DIR)
}

/// The folder of the configuration file `config` (`.` for a bare name).
fn folder_of(config: &Path) -> &Path {
    config
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The configuration file given, else the one found in the current folder.
fn config_or_found(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(config) => Ok(config),
        None => Ok(dohost::config::find_config(Path::new("."))?),
    }
}

/// How long a stopping server waits for running events and commits.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn progress(line: &str) {
    console().line(line);
}

/// The configuration as written, and as built (Rust crates replaced by
/// their components).
fn load_and_build(config_path: &Path) -> Result<(dohost::Config, dohost::Config)> {
    let written = dohost::Config::load(config_path)?;
    for warning in &written.warnings {
        progress(&format!("warning: {warning}"));
    }
    let mut built = written.clone();
    dohost::build::build_config(&mut built, &mut progress)?;
    Ok((written, built))
}

fn no_such_object(binding: &str, name_or_id: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{binding} has no object {name_or_id:?} (it has never stored anything, or was deleted)"
    )
}

/// `dohost objects`: works on the data directory directly.
fn objects(action: ObjectsAction, dir: &dohost::DataDir) -> Result<()> {
    match action {
        ObjectsAction::List { binding } => {
            let objects = dir.objects(binding.as_deref())?;
            for o in &objects {
                println!(
                    "{}\t{}\t{}\t{}",
                    o.binding,
                    o.class,
                    o.id,
                    o.name.as_deref().unwrap_or("-")
                );
            }
            progress(&format!("{} object(s)", objects.len()));
        }
        ObjectsAction::Show {
            binding,
            name_or_id,
        } => match dir.object(&binding, &name_or_id)? {
            Some(details) => println!("{}", serde_json::to_string_pretty(&details)?),
            None => return Err(no_such_object(&binding, &name_or_id)),
        },
        ObjectsAction::Restore {
            binding,
            name_or_id,
            at,
        } => {
            let restored = dir.restore_object(&binding, &name_or_id, at.parse()?)?;
            println!("{}", serde_json::to_string(&restored)?);
            progress(&format!(
                "restored {binding} object {name_or_id:?} to bookmark {}; to undo it: dohost objects restore {binding} {name_or_id:?} --at {}",
                restored.bookmark, restored.undo
            ));
        }
        ObjectsAction::Delete {
            binding,
            name_or_id,
        } => {
            if !dir.delete_object(&binding, &name_or_id)? {
                return Err(no_such_object(&binding, &name_or_id));
            }
            progress(&format!(
                "deleted {binding} object {name_or_id:?}: its storage, SQL database and alarm"
            ));
        }
        ObjectsAction::Export {
            binding,
            name_or_id,
            out,
        } => cli::transfer::export(dir, &binding, &name_or_id, out.as_deref())?,
        ObjectsAction::Import {
            file,
            binding,
            target,
            replace,
        } => {
            let mut options = dohost::ImportOptions::default().replace(replace);
            if let Some(binding) = binding {
                options = options.binding(binding);
            }
            if let Some(target) = target {
                options = options.target(target);
            }
            cli::transfer::import(dir, file.as_deref(), &options)?;
        }
    }
    Ok(())
}

/// `dohost check`: prints what it verified and what is damaged.
fn check(data: &Path) -> Result<()> {
    let report = dohost::check_data_dir(data)?;
    println!("{}", report.structure);
    println!(
        "verified {} values, {} SQL pages and {} alarms",
        report.values, report.pages, report.alarms
    );
    for (object, what) in &report.damaged {
        println!("damaged: {object}: {}", what.join(", "));
    }
    if report.is_clean() && report.structure.ends_with("intact") {
        progress(&format!("{} is intact", data.display()));
        Ok(())
    } else {
        anyhow::bail!(
            "{} is damaged: restore it from a backup; until then the objects named above fail the reads of what is damaged",
            data.display()
        )
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Types { config, out } => {
            let config = config_or_found(config)?;
            let loaded = dohost::Config::load(&config)?;
            let dir = folder_of(&config);
            let out = out.unwrap_or_else(|| dir.join(dohost::build::TYPES_FILE));
            let workers_types = dohost::build::uses_workers_types(dir);
            std::fs::write(
                &out,
                dohost::build::worker_types(&loaded, &out, workers_types),
            )
            .with_context(|| format!("cannot write {}", out.display()))?;
            progress(&format!(
                "wrote {} ({})",
                out.display(),
                if workers_types {
                    "Env, and the \"dohost\" module over @cloudflare/workers-types"
                } else {
                    "Env, and the runtime types of the dohost SDK"
                }
            ));
            Ok(())
        }
        Command::Check { data, config } => {
            check(&data.unwrap_or_else(|| default_data_dir(&config)))
        }
        Command::Cluster {
            action: ClusterAction::Status,
            config,
        } => {
            let loaded = dohost::Config::load(&config)?;
            let Some(cluster) = &loaded.cluster else {
                anyhow::bail!("{}: there is no [cluster] table", config.display());
            };
            print!("{}", dohost::cluster_status(cluster)?);
            Ok(())
        }
        Command::Objects {
            action,
            data,
            config,
        } => {
            let cluster = config
                .is_file()
                .then(|| dohost::Config::load(&config))
                .transpose()?
                .and_then(|c| c.cluster);
            let dir = match cluster {
                Some(cluster) => dohost::DataDir::open_postgres(&cluster.database)?,
                None => dohost::DataDir::open(data.unwrap_or_else(|| default_data_dir(&config)))?,
            };
            objects(action, &dir)
        }
        Command::Backup {
            dir,
            url,
            token,
            data,
            config,
        } => {
            let loaded = config
                .is_file()
                .then(|| dohost::Config::load(&config))
                .transpose()?;
            if loaded.as_ref().is_some_and(|c| c.cluster.is_some()) {
                anyhow::bail!(
                    "{} names a [cluster]: its state is in its PostgreSQL database; back it up with PostgreSQL's tools (pg_dump, or a base backup with WAL archiving)",
                    config.display()
                );
            }
            let token = token.or_else(|| loaded.and_then(|c| c.admin_token));
            let data = data.unwrap_or_else(|| default_data_dir(&config));
            cli::transfer::backup(&dir, &url, token.as_deref(), &data)
        }
        Command::Build { dir } => {
            let path = if dir.is_dir() {
                dohost::config::find_config(&dir)?
            } else {
                dir
            };
            load_and_build(&path)?;
            Ok(())
        }
        Command::New { path, lang } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for line in cli::new::create(&path, &name, lang)?.lines() {
                progress(line);
            }
            Ok(())
        }
        Command::Dev { serving } => serve(serving, true, true),
        Command::Serve {
            serving,
            watch,
            dev,
        } => serve(serving, watch, dev),
    }
}

/// `dohost serve`, and `dohost dev` (`watching` and `dev`).
fn serve(serving: Serving, watching: bool, dev: bool) -> Result<()> {
    let Serving {
        config,
        listen,
        data,
    } = serving;
    let config = config_or_found(config)?;
    let data = data.unwrap_or_else(|| default_data_dir(&config));
    let (written, mut config) = load_and_build(&config)?;
    // Development: the object browser is on even without [admin] token,
    // with a token made for this run (printed below).
    let dev_token =
        (dev && config.admin_token.is_none()).then(|| format!("{:032x}", rand::random::<u128>()));
    if let Some(token) = &dev_token {
        config.admin_token = Some(token.clone());
    }
    let mut server = config.server.clone();
    server.debug_errors |= dev;
    raise_descriptor_limit();
    // GET /_dohost/metrics serves them (behind the admin token).
    dohost::metrics::install()?;
    if let Some(endpoint) = &config.observability.otlp_endpoint {
        progress(&format!(
            "exporting the event spans to {endpoint}/v1/traces (OTLP/HTTP)"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.worker_threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let host = dohost::Host::from_config(&config, &data)?;
        let stop_watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if watching {
            cli::watch::start(host.clone(), written, stop_watching.clone())?;
            progress("watching the components' sources for changes (--watch)");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        progress(&format!(
            "serving {} on http://{addr} (data in {})",
            describe(&config),
            data.display()
        ));
        if let Some(token) = &dev_token {
            progress(&format!(
                "the object browser is at http://{addr}/_dohost/ui; log in with the admin token made for this run: {token}"
            ));
        }
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        tokio::spawn(exit_if_storage_fails(host.clone()));
        dohost::server::serve(host.clone(), listener, server, shutdown).await?;
        stop_watching.store(true, std::sync::atomic::Ordering::Relaxed);
        // Let running events finish and their writes commit; open
        // keep-alive connections may hold the host, so wait a while.
        // A node of a cluster also hands its shards over and answers what
        // it forwards meanwhile (up to twice the lease).
        let grace = SHUTDOWN_GRACE + config.cluster.as_ref().map_or(std::time::Duration::ZERO, |c| c.lease * 2);
        if tokio::time::timeout(grace, host.shutdown())
            .await
            .is_err()
        {
            progress("stopping with connections still open");
        }
        progress("stopped");
        Ok(())
    })
}

/// Exits the process when the storage layer cannot go on (its committer
/// panicked, or the database cannot be opened again after a failed
/// commit), so a supervisor restarts the server on what is durable instead
/// of it answering every write with an error.
async fn exit_if_storage_fails(host: dohost::Host) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        ticks.tick().await;
        if let dohost::Health::Failed(reason) = host.health() {
            eprintln!(
                "dohost: the storage layer cannot go on ({reason}); exiting so the server can be restarted on what is durable"
            );
            std::process::exit(EXIT_STORAGE_FAILED);
        }
    }
}

/// The exit code when the storage layer cannot go on (EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;

/// Raises the soft limit on open files to the hard one, as servers do: each
/// connection needs a descriptor. The server stays below whatever limit
/// results.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

fn describe(config: &dohost::Config) -> String {
    let bindings: Vec<String> = config
        .bindings
        .iter()
        .map(|b| format!("{} ({})", b.name, b.class_name))
        .collect();
    let worker = if config.main.is_some() {
        " behind the main worker"
    } else {
        ""
    };
    format!("{}{worker}", bindings.join(", "))
}
