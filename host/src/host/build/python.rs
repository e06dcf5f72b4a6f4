//! Building Python guests with componentize-py.
//!
//! A Python guest is a module (`component = "counter.py"`) or a folder with
//! a `pyproject.toml`, whose `[tool.dohost] main` names the module (else
//! `src/entry.py`, `src/main.py`, `entry.py` or `main.py`, the first that
//! exists). Its project is the nearest folder at or above the module with a
//! `pyproject.toml` (or the configuration's folder).
//!
//! The first build makes a virtual environment under the project's
//! `.dohost/python/` with `python3 -m venv` and installs componentize-py
//! into it with pip, reporting pip's output as progress. The packages the
//! guest itself runs (the SDK's CBOR library, and the pyproject's
//! `dependencies`) are installed as pure-Python wheels into a folder of
//! their own, named after what was asked for; later builds run offline.
//!
//! A build writes the Python SDK and the WIT contract, both embedded in
//! dohost so they always match this host, and an entry module that exports
//! both handlers for the user's module, then runs componentize-py for the
//! `guest` world: one component serves the module's objects and its entry
//! worker. The
//! component is named after a hash of everything that goes into it (the
//! files beside and below the module, the SDK, the contract, the
//! packages), so an unchanged guest is not built again. The module's top
//! level runs at build time, so it may read files beside it (a page it
//! serves) into the component; at run time a guest has no files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    WIT_FILES, build_error, first_module, hidden, lock_project, project_of, run_tool,
    skipped_folder, write_files,
};
use crate::error::Result;
use crate::progress::Task;

/// The build tool, installed into the project's virtual environment.
pub const PYTHON_BUILD_PACKAGES: [&str; 1] = ["componentize-py==0.25.1"];

/// The packages every Python guest runs with (the SDK's CBOR codec, for
/// the value format of docs/values.md), installed as pure-Python wheels.
const GUEST_PACKAGES: [&str; 1] = ["cbor2==5.9.0"];

/// The Python inside componentize-py 0.25.1's components, which the
/// guest's packages are chosen for.
const GUEST_PYTHON: &str = "3.14";

/// The SDK's files (`guests/python`), embedded so a build always uses the
/// SDK of this host.
const SDK_FILES: [(&str, &str); 14] = [
    (
        "dohost/__init__.py",
        include_str!("../../../../guests/python/dohost/__init__.py"),
    ),
    (
        "dohost/_loop.py",
        include_str!("../../../../guests/python/dohost/_loop.py"),
    ),
    (
        "dohost/_names.py",
        include_str!("../../../../guests/python/dohost/_names.py"),
    ),
    (
        "dohost/_object.py",
        include_str!("../../../../guests/python/dohost/_object.py"),
    ),
    (
        "dohost/_worker.py",
        include_str!("../../../../guests/python/dohost/_worker.py"),
    ),
    (
        "dohost/env.py",
        include_str!("../../../../guests/python/dohost/env.py"),
    ),
    (
        "dohost/errors.py",
        include_str!("../../../../guests/python/dohost/errors.py"),
    ),
    (
        "dohost/http.py",
        include_str!("../../../../guests/python/dohost/http.py"),
    ),
    (
        "dohost/ops.py",
        include_str!("../../../../guests/python/dohost/ops.py"),
    ),
    (
        "dohost/storage.py",
        include_str!("../../../../guests/python/dohost/storage.py"),
    ),
    (
        "dohost/targets.py",
        include_str!("../../../../guests/python/dohost/targets.py"),
    ),
    (
        "dohost/values.py",
        include_str!("../../../../guests/python/dohost/values.py"),
    ),
    (
        "dohost/websocket.py",
        include_str!("../../../../guests/python/dohost/websocket.py"),
    ),
    (
        "workers/__init__.py",
        include_str!("../../../../guests/python/workers/__init__.py"),
    ),
];

/// The modules a folder with a `pyproject.toml` is looked in for, when its
/// `[tool.dohost] main` names none.
const MAIN_CANDIDATES: [&str; 4] = ["src/entry.py", "src/main.py", "entry.py", "main.py"];

/// The module a Python component source names: `path` itself when it is a
/// `.py` file, or the main module of the folder `path` with a
/// `pyproject.toml`. `None` when `path` is neither.
///
/// # Errors
///
/// A message saying what is wrong when `path` is a folder whose
/// `pyproject.toml` cannot be read or names no module that exists.
pub fn python_module(path: &Path) -> std::result::Result<Option<PathBuf>, String> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "py")
            .then(|| path.to_path_buf()));
    }
    let manifest = path.join("pyproject.toml");
    if !manifest.is_file() {
        return Ok(None);
    }
    let pyproject = read_pyproject(&manifest)?;
    let candidates: Vec<String> = match pyproject
        .get("tool")
        .and_then(|t| t.get("dohost"))
        .and_then(|d| d.get("main"))
    {
        Some(toml::Value::String(main)) => vec![main.clone()],
        Some(other) => {
            return Err(format!(
                "{}: [tool.dohost] main must be a string naming the module, not {other}",
                manifest.display()
            ));
        }
        None => MAIN_CANDIDATES.map(str::to_owned).to_vec(),
    };
    first_module(
        path,
        &manifest,
        &candidates,
        "set [tool.dohost] main to the module that defines the classes",
    )
}

fn read_pyproject(manifest: &Path) -> std::result::Result<toml::Table, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {e}", manifest.display()))
}

/// The `[project] dependencies` of the `pyproject.toml` in `project`, if any.
fn dependencies(project: &Path) -> Result<Vec<String>> {
    let manifest = project.join("pyproject.toml");
    if !manifest.is_file() {
        return Ok(Vec::new());
    }
    let pyproject = read_pyproject(&manifest).map_err(build_error)?;
    let Some(list) = pyproject.get("project").and_then(|p| p.get("dependencies")) else {
        return Ok(Vec::new());
    };
    let items = list.as_array().ok_or_else(|| {
        build_error(format!(
            "{}: [project] dependencies must be a list of requirement strings",
            manifest.display()
        ))
    })?;
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                build_error(format!(
                    "{}: [project] dependencies must be strings, not {item}",
                    manifest.display()
                ))
            })
        })
        .collect()
}

/// What [`build_python_guest`] produced.
#[derive(Debug, Clone)]
pub struct PyBuild {
    /// The component file.
    pub wasm: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// True when nothing that goes into it had changed since a previous
    /// build, whose component was reused.
    pub cached: bool,
}

fn python() -> &'static str {
    if cfg!(windows) { "python" } else { "python3" }
}

/// The virtual environment's program `name`.
fn venv_program(venv: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    }
}

/// Makes the virtual environment `venv` with componentize-py in it, as a
/// [`Task`], when it is not there.
fn ensure_tools(venv: &Path) -> Result<()> {
    if venv_program(venv, "componentize-py").is_file() {
        return Ok(());
    }
    let task = Task::start(format!(
        "installing the Python build tools into {} ({}; once per project, then builds run offline)",
        venv.display(),
        PYTHON_BUILD_PACKAGES.join(", ")
    ));
    let run = run_tool(
        Command::new(python()).args(["-m", "venv"]).arg(venv),
        &task,
        false,
    )
    .map_err(|e| {
        build_error(format!(
            "cannot run {} to make the Python build environment ({e}); install Python 3.10 or later, or build the component yourself and point `component` at the .wasm",
            python()
        ))
    })?;
    if !run.status.success() {
        return Err(build_error(format!(
            "`{} -m venv {}` failed ({}); on Debian or Ubuntu install python3-venv; it said:\n{}",
            python(),
            venv.display(),
            run.status,
            run.tail
        )));
    }
    pip(
        venv,
        &task,
        &["install", "--quiet"],
        &PYTHON_BUILD_PACKAGES.map(str::to_owned),
    )?;
    task.finish(format!(
        "installed the Python build tools into {}",
        venv.display()
    ));
    Ok(())
}

/// Runs the environment's pip with `args` and then `packages`.
fn pip(venv: &Path, task: &Task, args: &[&str], packages: &[String]) -> Result<()> {
    let run = run_tool(
        Command::new(venv_program(venv, "python"))
            .args(["-m", "pip", "--disable-pip-version-check"])
            .args(args)
            .args(packages),
        task,
        false,
    )
    .map_err(|e| build_error(format!("cannot run pip in {}: {e}", venv.display())))?;
    if !run.status.success() {
        return Err(build_error(format!(
            "`pip {} {}` failed ({}); pip said:\n{}",
            args.join(" "),
            packages.join(" "),
            run.status,
            run.tail
        )));
    }
    Ok(())
}

/// Installs `packages` for the guest into a folder under `tools` named
/// after them, as pure-Python wheels (a component cannot load the host's
/// native extensions), when it is not there; its path.
fn ensure_guest_packages(tools: &Path, venv: &Path, packages: &[String]) -> Result<PathBuf> {
    let name = blake3::hash(packages.join("\n").as_bytes()).to_hex();
    let site = tools.join(format!("site-{}", &name[..16]));
    if site.join(".complete").is_file() {
        return Ok(site);
    }
    let task = Task::start(format!(
        "installing the Python guest's packages ({}) as pure-Python wheels",
        packages.join(", ")
    ));
    let _ = std::fs::remove_dir_all(&site);
    let target = site.to_string_lossy().into_owned();
    pip(
        venv,
        &task,
        &[
            "install",
            "--quiet",
            "--target",
            &target,
            "--only-binary=:all:",
            "--platform",
            "any",
            "--implementation",
            "py",
            "--python-version",
            GUEST_PYTHON,
        ],
        packages,
    )
    .map_err(|e| {
        build_error(format!(
            "{e}\n(a Python guest runs pure-Python packages only: a package with native code needs a build for wasm32-wasi)"
        ))
    })?;
    std::fs::write(site.join(".complete"), b"")
        .map_err(|e| build_error(format!("cannot write in {}: {e}", site.display())))?;
    task.finish(format!(
        "installed the Python guest's packages into {}",
        site.display()
    ));
    Ok(site)
}

/// Feeds every file at or below `dir` (and its path below `base`) to
/// `hasher`, in a fixed order: the `.py` files, and what the module's top
/// level may read when it runs at build time (a page it serves). Hidden
/// files (an editor's swap file) and [`skipped_folder`]s are left out.
fn hash_sources(base: &Path, dir: &Path, hasher: &mut blake3::Hasher) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| build_error(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.is_dir() {
            if !skipped_folder(name) {
                hash_sources(base, &path, hasher)?;
            }
        } else if path.is_file() && !hidden(name) {
            let text = std::fs::read(&path)
                .map_err(|e| build_error(format!("cannot read {}: {e}", path.display())))?;
            let relative = path.strip_prefix(base).unwrap_or(&path);
            hasher.update(relative.as_os_str().as_encoded_bytes());
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(&text);
        }
    }
    Ok(())
}

/// The entry module componentize-py builds: it imports the user's module
/// `app` and exports both handlers for it. The module's top level runs at
/// build time; the import leaves no bytecode caches in the user's folders.
fn entry_module(app: &str) -> String {
    format!(
        "import sys\nsys.dont_write_bytecode = True\nimport {app} as _app\nfrom dohost._object import handler_class\nfrom dohost._worker import worker_handler_class\n\nHandler = handler_class(_app)\nWorkerHandler = worker_handler_class(_app)\n"
    )
}

/// The entry module's name.
const ENTRY: &str = "dohost_entry";

/// Builds the Python module `module` into a component for the `guest`
/// world: one component serves both the module's Durable Object classes
/// and its entry worker (the host links the interfaces only objects have
/// as traps in a worker). `fallback_project` is where the build tools go
/// when no folder above the module has a `pyproject.toml` (the
/// configuration's folder).
///
/// # Errors
///
/// [`crate::ErrorKind::Build`] when Python or pip cannot run, the packages
/// cannot be installed, or componentize-py fails (the error ends with its
/// last lines).
pub fn build_python_guest(module: &Path, fallback_project: &Path) -> Result<PyBuild> {
    let what = format!("the Python guest {}", module.display());
    build_python_guest_as(module, fallback_project, &what)
}

/// [`build_python_guest`], reporting the build as building `what`.
pub(super) fn build_python_guest_as(
    module: &Path,
    fallback_project: &Path,
    what: &str,
) -> Result<PyBuild> {
    let module = std::fs::canonicalize(module)
        .map_err(|e| build_error(format!("cannot read {}: {e}", module.display())))?;
    let app = module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if app.is_empty()
        || app.starts_with(|c: char| c.is_ascii_digit())
        || !app.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(build_error(format!(
            "{}: a Python module's name must be an identifier (letters, digits, _), e.g. counter.py",
            module.display()
        )));
    }
    let source_dir = module.parent().unwrap_or(Path::new("/")).to_path_buf();
    let project = project_of(&module, "pyproject.toml", fallback_project)?;
    // One build at a time per project: the environment and the output
    // files are shared by every build of the project, also across
    // processes.
    let _lock = lock_project(&project, "python")?;
    let tools = project.join(".dohost").join("python");
    let venv = tools.join("venv");
    ensure_tools(&venv)?;
    let mut packages: Vec<String> = GUEST_PACKAGES.map(str::to_owned).to_vec();
    packages.extend(dependencies(&project)?);
    let site = ensure_guest_packages(&tools, &venv, &packages)?;
    let sdk = tools.join("sdk");
    let wit = tools.join("wit");
    write_files(&sdk, &SDK_FILES)?;
    write_files(&wit, &WIT_FILES)?;
    let entry_text = entry_module(&app);
    let entry = tools.join("entry");
    write_files(&entry, &[(&format!("{ENTRY}.py"), &entry_text)])?;

    let mut hasher = blake3::Hasher::new();
    for (name, text) in SDK_FILES.iter().chain(&WIT_FILES) {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.update(PYTHON_BUILD_PACKAGES.join("\n").as_bytes());
    hasher.update(packages.join("\n").as_bytes());
    hasher.update(entry_text.as_bytes());
    hash_sources(&source_dir, &source_dir, &mut hasher)?;
    let out_dir = tools.join("out");
    let wasm = out_dir.join(format!("{}.wasm", &hasher.finalize().to_hex()[..16]));
    if let Ok(meta) = std::fs::metadata(&wasm) {
        Task::start(format!("building {what}")).finish(format!(
            "built {what} (unchanged since the last build): {}, {:.1} MB",
            wasm.display(),
            meta.len() as f64 / 1e6
        ));
        return Ok(PyBuild {
            wasm,
            bytes: meta.len(),
            cached: true,
        });
    }
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| build_error(format!("cannot create {}: {e}", out_dir.display())))?;
    let partial = wasm.with_extension("wasm.partial");
    let task = Task::start(format!(
        "building {what} from {} (componentize-py)",
        module.display()
    ));
    let output = run_tool(
        Command::new(venv_program(&venv, "componentize-py"))
            .arg("-d")
            .arg(&wit)
            .args(["-w", "guest", "componentize"])
            .arg("-p")
            .arg(&entry)
            .arg("-p")
            .arg(&source_dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-p")
            .arg(&site)
            .arg(ENTRY)
            .arg("-o")
            .arg(&partial)
            .current_dir(&tools),
        &task,
        false,
    )
    .map_err(|e| {
        build_error(format!(
            "cannot run componentize-py in {}: {e}",
            venv.display()
        ))
    })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(build_error(format!(
            "building the Python guest {} failed:\n{}",
            module.display(),
            output.tail
        )));
    }
    std::fs::rename(&partial, &wasm)
        .map_err(|e| build_error(format!("cannot write {}: {e}", wasm.display())))?;
    let bytes = std::fs::metadata(&wasm).map_or(0, |m| m.len());
    task.finish(format!(
        "built {what}: {}, {:.1} MB",
        wasm.display(),
        bytes as f64 / 1e6
    ));
    Ok(PyBuild {
        wasm,
        bytes,
        cached: false,
    })
}
