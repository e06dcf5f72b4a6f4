//! # dohost-test-postgres
//!
//! A real, throwaway PostgreSQL server for dohost's tests.
//!
//! Tests of code that stores data in PostgreSQL start their own server
//! rather than mock one or expect one to be running: a mock cannot show
//! what the real server does with a transaction, a conflict or a crash, and
//! a shared server makes tests depend on each other and on the machine.
//! [`Postgres::start`] runs `initdb` in a fresh temporary directory and
//! starts the server on a free loopback port with `fsync` on (tests check
//! what survives a crash); [`Postgres::database`] hands each test an empty
//! database of its own. The server is stopped and its files removed when
//! the [`Postgres`] is dropped.
//!
//! The server is driven only through PostgreSQL's own programs (`initdb`,
//! `pg_ctl`, `createdb` or `psql`), so this crate chooses no driver for the
//! code under test. They are looked for on `PATH`, then in Debian's
//! `/usr/lib/postgresql/<version>/bin`; `.ci/run` installs Debian's
//! `postgresql` package when they are missing.
//!
//! `initdb` and the server refuse to run as root. When the tests do, the
//! programs are run as the `postgres` user (which Debian's package creates)
//! through `runuser`, and the temporary directory is given to that user.
//!
//! ```no_run
//! let postgres = dohost_test_postgres::Postgres::start();
//! let url = postgres.database(); // postgres://postgres@127.0.0.1:PORT/t1
//! // ... connect to `url` with the code under test ...
//! postgres.stop();
//! ```

use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::{env, fs};

use tempfile::TempDir;

/// How many ports [`Postgres::start`] tries when another process takes the
/// free port it picked before the server binds it.
const PORT_ATTEMPTS: u32 = 5;

/// The user the programs run as when the tests run as root.
const SERVER_USER: &str = "postgres";

const NOT_INSTALLED: &str = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: \
     install Debian's `postgresql` package (`apt-get install postgresql`); .ci/run does this";

/// A PostgreSQL server of its own for a test: a fresh cluster in a
/// temporary directory, listening on a loopback port, with trust
/// authentication for the `postgres` superuser.
///
/// Dropping it stops the server at once (`pg_ctl stop -m immediate`) and
/// removes its files; [`Postgres::stop`] stops it cleanly instead. It is
/// `Sync`: tests may share one server and each take their own database.
#[derive(Debug)]
pub struct Postgres {
    /// The temporary directory: `data` (the cluster), `log` (the server's
    /// log) and the server's Unix socket.
    dir: TempDir,
    port: u16,
    /// The number of the last database [`Postgres::database`] made.
    databases: AtomicU32,
    /// False once [`Postgres::stop`] has stopped the server.
    running: bool,
}

impl Postgres {
    /// Starts a fresh server on a free loopback port.
    ///
    /// Panics with a clear message when it cannot: when PostgreSQL is not
    /// installed, or with the server's log when it does not start.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("dohost-postgres-")
            .tempdir_in(env::temp_dir())
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for PostgreSQL: {e}"));
        if as_root() {
            // The server's user must be able to write the directory (the
            // log and the socket live next to the cluster).
            run(
                Command::new("chown")
                    .arg(format!("{SERVER_USER}:"))
                    .arg(dir.path()),
                "chown the temporary directory to the postgres user",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut postgres = Postgres {
            dir,
            port: 0,
            databases: AtomicU32::new(0),
            running: false,
        };
        postgres.init();
        postgres.listen();
        postgres
    }

    /// Makes a new, empty database and returns a URL to connect to it, like
    /// `postgres://postgres@127.0.0.1:PORT/t1`.
    ///
    /// Each call makes another database (`t1`, `t2`, ...). Panics when the
    /// server does not create it.
    pub fn database(&self) -> String {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::Relaxed) + 1);
        let port = self.port.to_string();
        let connection = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        let bin = binaries();
        let mut command = match &bin.createdb {
            Some(createdb) => {
                let mut command = self.program(createdb);
                command.args(connection).arg(&name);
                command
            }
            None => {
                let mut command = self.program(&bin.psql);
                command
                    .args(connection)
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c"])
                    .arg(format!("CREATE DATABASE {name}"));
                command
            }
        };
        if let Err(e) = run(&mut command, &format!("create database {name}")) {
            panic!("{e}\n{}", self.log());
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port the server listens on (at 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`), waiting until it
    /// has exited and released its port, and removes its files.
    ///
    /// Panics with the server's log when `pg_ctl` fails.
    pub fn stop(mut self) {
        if let Err(e) = self.pg_ctl_stop("fast") {
            panic!("{e}\n{}", self.log());
        }
        self.running = false;
    }

    /// Runs `initdb` into `data`.
    fn init(&self) {
        let mut command = self.program(&binaries().initdb);
        command.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut command, "initdb").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server on a free port, trying another one when a port is
    /// taken between picking it and the server binding it.
    fn listen(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            let options = format!(
                "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
                self.port,
                self.dir.path().display()
            );
            let mut command = self.program(&binaries().pg_ctl);
            command
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log_path())
                .arg("-o")
                .arg(options)
                .args(["-w", "start"]);
            match run(&mut command, "pg_ctl start") {
                Ok(_) => {
                    self.running = true;
                    return;
                }
                Err(e) => {
                    let log = self.log();
                    if attempt == PORT_ATTEMPTS || !port_taken(&log) {
                        panic!("PostgreSQL did not start: {e}\n{log}");
                    }
                    // The next attempt's log starts afresh.
                    let _ = fs::remove_file(self.log_path());
                }
            }
        }
    }

    /// `pg_ctl stop` in the given mode, waiting for the server to exit.
    fn pg_ctl_stop(&self, mode: &str) -> Result<Output, String> {
        let mut command = self.program(&binaries().pg_ctl);
        command
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"]);
        run(&mut command, "pg_ctl stop")
    }

    /// A command running one of PostgreSQL's programs: as the `postgres`
    /// user when the tests run as root, in the temporary directory (that
    /// user may not be able to enter the tests' working directory), and
    /// without the caller's `PG*` variables (which would change where the
    /// programs connect and how).
    fn program(&self, program: &Path) -> Command {
        let mut command = if as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVER_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path());
        for (name, _) in env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"PG") {
                command.env_remove(name);
            }
        }
        command
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The server's log, for a panic's message.
    fn log(&self) -> String {
        match fs::read_to_string(self.log_path()) {
            Ok(log) => format!("server log ({}):\n{log}", self.log_path().display()),
            Err(e) => format!("no server log ({}): {e}", self.log_path().display()),
        }
    }
}

impl Drop for Postgres {
    /// Stops the server at once (`pg_ctl stop -m immediate`, as a crash
    /// would) and removes its files. Never panics.
    fn drop(&mut self) {
        if self.running
            && let Err(e) = self.pg_ctl_stop("immediate")
        {
            eprintln!(
                "dohost-test-postgres: cannot stop PostgreSQL on port {}: {e}",
                self.port
            );
        }
        // `dir` removes the files when it is dropped after this.
    }
}

/// Where PostgreSQL's programs are.
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    /// `createdb` next to `initdb`, if there is one; else `psql` makes
    /// databases.
    createdb: Option<PathBuf>,
    psql: PathBuf,
}

/// PostgreSQL's programs, found once: the first directory on `PATH` with
/// `initdb`, else the highest version's `/usr/lib/postgresql/*/bin`. The
/// other programs are taken from the directory `initdb` really is in
/// (Debian links `/usr/local/bin/initdb` or `/usr/bin/psql` elsewhere:
/// `/usr/bin/psql` is a wrapper choosing among installed clusters).
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| (version(&entry.file_name()), entry.path().join("bin")))
            .collect();
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        env::split_paths(&path)
            .chain(versions.into_iter().map(|(_, bin)| bin))
            .find_map(|dir| binaries_in(&dir))
            .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
    })
}

/// The programs, when `dir` has `initdb` and `pg_ctl` is next to it
/// (next to the file `initdb` links to, or else in `dir`).
fn binaries_in(dir: &Path) -> Option<Binaries> {
    let initdb = dir.join("initdb");
    if !initdb.is_file() {
        return None;
    }
    let real = fs::canonicalize(&initdb).ok()?;
    let bin = real.parent()?;
    let bin = if bin.join("pg_ctl").is_file() {
        bin
    } else {
        dir
    };
    let pg_ctl = bin.join("pg_ctl");
    if !pg_ctl.is_file() {
        return None;
    }
    let createdb = Some(bin.join("createdb")).filter(|p| p.is_file());
    let psql = bin.join("psql");
    if createdb.is_none() && !psql.is_file() {
        panic!(
            "PostgreSQL's createdb and psql are not next to {}: install Debian's `postgresql` package",
            initdb.display()
        );
    }
    Some(Binaries {
        initdb: real,
        pg_ctl,
        createdb,
        psql,
    })
}

/// A version directory's name as numbers (`15`, `9.6`), for sorting; names
/// that are not versions sort first, so last when the highest is wanted.
fn version(name: &OsStr) -> Vec<u32> {
    name.to_str()
        .and_then(|name| name.split('.').map(|part| part.parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether the tests run as root (effective user id 0): `/proc/self`
/// belongs to the process's effective user, else `id -u` says.
fn as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| match fs::metadata("/proc/self") {
        Ok(proc) => proc.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0"),
    })
}

/// A loopback port nothing listens on now (the system's choice for port 0).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
        .port()
}

/// Whether a server's log says it could not bind its port.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind")
}

/// Runs a command to its end, its output captured; an error names `what`
/// and shows the output when it fails or cannot start.
fn run(command: &mut Command, what: &str) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {what} ({command:?}): {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {command:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Instant;

    /// The rows `query` returns in `database`, through `psql`.
    fn query(postgres: &Postgres, database: &str, query: &str) -> String {
        let port = postgres.port().to_string();
        let mut command = postgres.program(&binaries().psql);
        command
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                query,
            ]);
        let output = run(&mut command, "psql").unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    #[test]
    fn starts_a_server_with_databases_of_their_own() {
        let started = Instant::now();
        let postgres = Postgres::start();
        eprintln!("Postgres::start took {:?}", started.elapsed());

        let first = postgres.database();
        let second = postgres.database();
        let prefix = format!("postgres://postgres@127.0.0.1:{}/", postgres.port());
        assert_eq!(first, format!("{prefix}t1"));
        assert_eq!(second, format!("{prefix}t2"));
        TcpStream::connect((Ipv4Addr::LOCALHOST, postgres.port()))
            .expect("the server's port accepts connections");

        if binaries().psql.is_file() {
            assert_eq!(query(&postgres, "t1", "select 1"), "1");
            query(&postgres, "t1", "create table only_in_t1 (x int)");
            let tables = "select count(*) from pg_tables where tablename = 'only_in_t1'";
            assert_eq!(query(&postgres, "t1", tables), "1");
            assert_eq!(
                query(&postgres, "t2", tables),
                "0",
                "the databases are distinct"
            );
            assert_eq!(query(&postgres, "t1", "show fsync"), "on");
        }
    }

    #[test]
    fn stop_releases_the_port_and_the_files() {
        let postgres = Postgres::start();
        let port = postgres.port();
        let dir = postgres.dir.path().to_path_buf();
        let started = Instant::now();
        postgres.stop();
        eprintln!("Postgres::stop took {:?}", started.elapsed());

        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "nothing listens after stop"
        );
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free after stop");
        assert!(!dir.exists(), "stop removes the server's files");
    }

    #[test]
    fn drop_stops_the_server() {
        let postgres = Postgres::start();
        let port = postgres.port();
        let dir = postgres.dir.path().to_path_buf();
        let started = Instant::now();
        drop(postgres);
        eprintln!("dropping Postgres took {:?}", started.elapsed());

        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "nothing listens after drop"
        );
        assert!(!dir.exists(), "drop removes the server's files");
    }

    #[test]
    fn versions_sort_by_number() {
        let mut names = ["9.6", "15", "notaversion", "10"].map(|n| version(OsStr::new(n)));
        names.sort();
        assert_eq!(names, [vec![], vec![9, 6], vec![10], vec![15]]);
    }
}
