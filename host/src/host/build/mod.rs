//! Building guest components: `dohost build` and the build step of
//! `dohost serve`.
//!
//! A component in the configuration may be a Rust guest crate directory, a
//! JavaScript module (see [`build_js_guest`]) or a Python module (see
//! [`build_python_guest`]). A crate is built with
//! `cargo build --release --target wasm32-wasip2`, and the `wasm32-wasip2`
//! target is added with rustup first when it is missing (as cargo-component
//! does), saying so. Cargo decides what is stale, so an up-to-date guest
//! costs one no-op cargo run.
//!
//! Each long step is reported as a [`crate::progress::Task`] (what it does,
//! the tool's output line by line, what it produced and how long it took);
//! when a tool fails, the error repeats the last lines it printed.

mod js;
mod python;
mod types;

use js::build_js_guest_as;
pub use js::{JS_BUILD_PACKAGES, JsBuild, MODULE_EXTENSIONS, build_js_guest, js_module};
use python::build_python_guest_as;
pub use python::{PYTHON_BUILD_PACKAGES, PyBuild, build_python_guest, python_module};
pub use types::{TYPES_FILE, uses_workers_types, worker_types};

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

use crate::config::{ComponentSource, Config};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Task;

/// The Rust target guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

fn build_error(message: String) -> Error {
    Error::new(ErrorKind::Build, message)
}

/// How many of a failed tool's last output lines its error repeats: enough
/// for a compiler's first errors, short enough to read.
const TOOL_TAIL_LINES: usize = 40;

/// What [`run_tool`] saw of a tool that ran.
struct ToolRun {
    status: ExitStatus,
    /// Its standard output, when that is its result (cargo's JSON messages,
    /// build.mjs's answer).
    stdout: Vec<u8>,
    /// Its last [`TOOL_TAIL_LINES`] lines of output.
    tail: String,
}

/// Runs `command` as part of `task`: every line it prints is reported with
/// [`Task::line`] (and the last ones kept for an error), except standard
/// output when `stdout_is_result`, which is collected instead.
fn run_tool(
    command: &mut Command,
    task: &Task,
    stdout_is_result: bool,
) -> std::io::Result<ToolRun> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the tool's output pipes are missing"));
    };
    let tail = Mutex::new(VecDeque::with_capacity(TOOL_TAIL_LINES));
    let forward = |reader: &mut dyn Read| {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        // Byte lines: a tool may print something that is not UTF-8, and a
        // reader that stopped would leave the tool blocked on a full pipe.
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            line.clear();
            task.line(&text);
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == TOOL_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    };
    let mut result = Vec::new();
    std::thread::scope(|scope| {
        let forward = &forward;
        scope.spawn(move || {
            let mut stderr = stderr;
            forward(&mut stderr);
        });
        let mut stdout = stdout;
        if stdout_is_result {
            // An error here shows as a missing result below.
            let _ = stdout.read_to_end(&mut result);
        } else {
            forward(&mut stdout);
        }
    });
    let status = child.wait()?;
    let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(ToolRun {
        status,
        stdout: result,
        tail: Vec::from(tail).join("\n"),
    })
}

/// Which export a guest's component provides: a JavaScript module is
/// built once per role it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The module's Durable Object classes (the `durable-object` world).
    Objects,
    /// The module's entry worker (the `worker` world).
    Worker,
}

impl Role {
    /// The WIT world the role's component targets.
    pub fn world(self) -> &'static str {
        match self {
            Role::Objects => "durable-object",
            Role::Worker => "worker",
        }
    }
}

/// The WIT contract (`wit/`), embedded so a guest build always uses the
/// contract of this host.
const WIT_FILES: [(&str, &str); 13] = [
    ("alarm.wit", include_str!("../../../../wit/alarm.wit")),
    ("body.wit", include_str!("../../../../wit/body.wit")),
    ("context.wit", include_str!("../../../../wit/context.wit")),
    ("events.wit", include_str!("../../../../wit/events.wit")),
    ("handler.wit", include_str!("../../../../wit/handler.wit")),
    (
        "namespace.wit",
        include_str!("../../../../wit/namespace.wit"),
    ),
    ("outbound.wit", include_str!("../../../../wit/outbound.wit")),
    ("sql.wit", include_str!("../../../../wit/sql.wit")),
    ("storage.wit", include_str!("../../../../wit/storage.wit")),
    ("targets.wit", include_str!("../../../../wit/targets.wit")),
    ("types.wit", include_str!("../../../../wit/types.wit")),
    (
        "websocket.wit",
        include_str!("../../../../wit/websocket.wit"),
    ),
    ("worlds.wit", include_str!("../../../../wit/worlds.wit")),
];

/// An exclusive lock on `project`'s `language` builds, held until dropped.
/// The lock file lives in the system's temp folder, named after the
/// project's path.
fn lock_project(project: &Path, language: &str) -> Result<std::fs::File> {
    let name = blake3::hash(project.as_os_str().as_encoded_bytes()).to_hex();
    let path = std::env::temp_dir().join(format!("dohost-{language}-build-{}.lock", &name[..16]));
    let file = std::fs::File::create(&path).map_err(|e| {
        build_error(format!(
            "cannot create the build lock {}: {e}",
            path.display()
        ))
    })?;
    file.lock()
        .map_err(|e| build_error(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Writes `files` (paths below `dir`) into `dir`, leaving files that already
/// hold the same text alone.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (name, text) in files {
        let path = dir.join(name);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| build_error(format!("cannot create {}: {e}", parent.display())))?;
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        std::fs::write(&path, text)
            .map_err(|e| build_error(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// The project a module's build belongs to, absolute: the nearest folder
/// at or above the module with a file `manifest` (`package.json`,
/// `pyproject.toml`), else `fallback` (the configuration's folder). Its
/// build tools and outputs are shared by every module of the project.
fn project_of(module: &Path, manifest: &str, fallback: &Path) -> Result<PathBuf> {
    let dir = module
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(manifest).is_file())
        .unwrap_or(fallback);
    std::path::absolute(dir)
        .map_err(|e| build_error(format!("cannot resolve {}: {e}", dir.display())))
}

/// The first of `candidates` (paths below `folder`) that is a file: the
/// module a folder's `manifest` names. An error naming the manifest, the
/// paths looked for and `fix` when none is.
fn first_module(
    folder: &Path,
    manifest: &Path,
    candidates: &[String],
    fix: &str,
) -> std::result::Result<Option<PathBuf>, String> {
    candidates
        .iter()
        .map(|candidate| folder.join(candidate))
        .find(|module| module.is_file())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{} names no module that exists (looked for {}); {fix}",
                manifest.display(),
                candidates.join(", ")
            )
        })
}

/// Whether a folder called `name` holds no sources of a guest: a hidden
/// one (the data directory `.dohost/`, `.git/`), build outputs (`target/`,
/// `__pycache__/`) or installed packages (`node_modules/`). Builds and
/// `--watch` do not look into them.
pub fn skipped_folder(name: &std::ffi::OsStr) -> bool {
    hidden(name)
        || ["target", "node_modules", "__pycache__"]
            .iter()
            .any(|skipped| name == *skipped)
}

/// Whether the file or folder `name` is hidden (`.dohost/`, an editor's
/// `.counter.py.swp`): never a guest's source, for builds or `--watch`.
pub fn hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Adds the [`GUEST_TARGET`] with rustup when it is not installed.
///
/// # Errors
///
/// [`ErrorKind::Build`] when the target is missing and rustup cannot add it.
pub fn ensure_guest_target(progress: &mut dyn FnMut(&str)) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == GUEST_TARGET)
            {
                return Ok(());
            }
        }
        _ => {
            // No rustup: trust the toolchain; cargo will say if the target
            // is missing.
            return Ok(());
        }
    }
    progress(&format!(
        "adding the {GUEST_TARGET} target with rustup (needed to build guests; once per toolchain)"
    ));
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .map_err(|e| build_error(format!("cannot run rustup to add {GUEST_TARGET}: {e}")))?;
    if !status.success() {
        return Err(build_error(format!(
            "`rustup target add {GUEST_TARGET}` failed ({status}); run it by hand and retry"
        )));
    }
    Ok(())
}

/// Builds the Rust guest crate in `dir` and returns the component's path.
///
/// # Errors
///
/// [`ErrorKind::Build`] when cargo fails (the error ends with its last
/// lines) or produces no `.wasm` for the crate.
pub fn build_rust_guest(dir: &Path) -> Result<PathBuf> {
    build_rust_guest_as(dir, &format!("the guest crate {}", dir.display()))
}

/// [`build_rust_guest`], reporting the step as building `what`.
fn build_rust_guest_as(dir: &Path, what: &str) -> Result<PathBuf> {
    let task = Task::start(format!(
        "building {what} with cargo for {GUEST_TARGET} (the first build compiles the SDK too)"
    ));
    let manifest = dir.join("Cargo.toml");
    let output = run_tool(
        Command::new(cargo())
            .args([
                "build",
                "--release",
                "--target",
                GUEST_TARGET,
                "--message-format=json-render-diagnostics",
                "--manifest-path",
            ])
            .arg(&manifest),
        &task,
        true,
    )
    .map_err(|e| build_error(format!("cannot run cargo to build {}: {e}", dir.display())))?;
    if !output.status.success() {
        return Err(build_error(format!(
            "building the guest crate {} failed; cargo said:\n{}",
            dir.display(),
            output.tail
        )));
    }
    let manifest = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let mut artifact = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || Path::new(msg["manifest_path"].as_str().unwrap_or("")) != manifest
        {
            continue;
        }
        let files = msg["filenames"].as_array().into_iter().flatten();
        if let Some(wasm) = files
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            artifact = Some(PathBuf::from(wasm));
        }
    }
    if let Some(wasm) = &artifact {
        task.finish(format!("built {what}: {}", wasm.display()));
    }
    artifact.ok_or_else(|| {
        build_error(format!(
            "cargo built {} but produced no .wasm; give the crate `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        ))
    })
}

/// Builds every guest crate, JavaScript module and Python module of
/// `config` and points the configuration at the built components. Each
/// build is a
/// [`crate::progress::Task`]; `progress` gets the notes between them (a
/// target added, a package.json created).
///
/// # Errors
///
/// As [`build_rust_guest`], [`ensure_guest_target`], [`build_js_guest`]
/// and [`build_python_guest`].
pub fn build_config(config: &mut Config, progress: &mut dyn FnMut(&str)) -> Result<()> {
    // `dohost.toml` alone has the empty path as its parent.
    let config_dir = config
        .path
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut sources: Vec<(String, Role, &mut ComponentSource)> = config
        .bindings
        .iter_mut()
        .map(|b| {
            (
                format!("binding {}", b.name),
                Role::Objects,
                &mut b.component,
            )
        })
        .collect();
    if let Some(main) = config.main.as_mut() {
        sources.push(("main worker".to_owned(), Role::Worker, main));
    }
    let mut target_checked = false;
    // One module may serve several bindings (one per class) and the main
    // worker: build it once per role (a Python module once).
    let mut built: std::collections::HashMap<(PathBuf, Role), PathBuf> =
        std::collections::HashMap::new();
    for (what, role, source) in sources {
        let wasm = match source {
            ComponentSource::RustCrate(dir) => {
                if !target_checked {
                    ensure_guest_target(progress)?;
                    target_checked = true;
                }
                build_rust_guest_as(dir, &format!("{what} from {}", dir.display()))?
            }
            ComponentSource::JavaScript(module) => match built.entry((module.clone(), role)) {
                Entry::Occupied(done) => done.get().clone(),
                Entry::Vacant(slot) => slot
                    .insert(build_js_guest_as(module, role, &config_dir, progress, &what)?.wasm)
                    .clone(),
            },
            // One component serves both roles.
            ComponentSource::Python(module) => match built.entry((module.clone(), Role::Objects)) {
                Entry::Occupied(done) => done.get().clone(),
                Entry::Vacant(slot) => slot
                    .insert(build_python_guest_as(module, &config_dir, &what)?.wasm)
                    .clone(),
            },
            ComponentSource::File(_) | ComponentSource::Bytes(_) => continue,
        };
        *source = ComponentSource::File(wasm);
    }
    Ok(())
}
