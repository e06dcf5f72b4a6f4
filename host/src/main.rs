//! `dohost`: serve Durable Objects over HTTP, or build their components.
//!
//! ```text
//! dohost serve [--config dohost.toml] [--listen 127.0.0.1:8787] [--data DIR]
//! dohost build [DIR]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

#[derive(Subcommand)]
enum Command {
    /// Serve the objects of a dohost.toml over HTTP (building guests first when needed).
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "dohost.toml")]
        config: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// The data directory (database and compiled-component cache).
        #[arg(long, default_value = dohost::DEFAULT_DATA_DIR)]
        data: PathBuf,
    },
    /// Build the guest components a dohost.toml points at.
    Build {
        /// A dohost.toml, or the directory holding one.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// How long a stopping server waits for running events and commits.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn progress(line: &str) {
    eprintln!("dohost: {line}");
}

fn load_and_build(config_path: &Path) -> Result<dohost::Config> {
    let mut config = dohost::Config::load(config_path)?;
    dohost::build::build_config(&mut config, &mut progress)?;
    Ok(config)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build { dir } => {
            let path = if dir.is_dir() {
                dir.join("dohost.toml")
            } else {
                dir
            };
            load_and_build(&path)?;
            Ok(())
        }
        Command::Serve {
            config,
            listen,
            data,
        } => {
            let config = load_and_build(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let host = dohost::Host::from_config(&config, &data)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let addr = listener.local_addr()?;
                eprintln!(
                    "dohost: serving {} on http://{addr} (data in {})",
                    describe(&config),
                    data.display()
                );
                let shutdown = async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("installing the SIGTERM handler");
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                };
                dohost::server::serve(host.clone(), listener, shutdown).await?;
                // Let running events finish and their writes commit; open
                // keep-alive connections may hold the host, so wait a while.
                if tokio::time::timeout(SHUTDOWN_GRACE, host.shutdown())
                    .await
                    .is_err()
                {
                    eprintln!("dohost: stopping with connections still open");
                }
                eprintln!("dohost: stopped");
                Ok(())
            })
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
