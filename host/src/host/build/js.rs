//! Building JavaScript guests with componentize-js.
//!
//! A JavaScript guest is an ES module (`component = "src/counter.js"`), in
//! JavaScript or TypeScript (`.ts`, `.mts`, `.tsx`: esbuild strips the
//! types, nothing is type-checked), or a folder with a `package.json` whose
//! `main` names the module. Its project is
//! the nearest folder at or above the module with a `package.json` (or the
//! configuration's folder, where one is created). The first build installs
//! the npm packages it needs into that project with `npm install`, reporting
//! npm's output as progress; later builds run offline.
//!
//! A build writes the JavaScript SDK and the WIT contract, both embedded in
//! dohost so they always match this host, under
//! `node_modules/.cache/dohost/`, and runs `build.mjs` there with node: it
//! bundles the module with the SDK (esbuild; `import ... from "dohost"` and
//! `"cloudflare:workers"` both resolve to the SDK) and turns the bundle into
//! a component (componentize-js, which pre-initialises the engine with
//! Wizer). The component's name is a hash of the bundle, so an unchanged
//! guest is not built again.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    Role, WIT_FILES, build_error, first_module, lock_project, project_of, run_tool, write_files,
};
use crate::error::Result;
use crate::progress::Task;

/// The npm packages a JavaScript build needs, at the versions dohost is
/// tested with: the tools, and the polyfills of the `node:` modules.
/// componentize-js 0.23.0 imports `@bytecodealliance/preview2-shim` without
/// declaring it, so it is named here; without it a fresh install cannot
/// build.
pub const JS_BUILD_PACKAGES: [&str; 9] = [
    "@bytecodealliance/componentize-js@0.23.0",
    "@bytecodealliance/preview2-shim@0.25.0",
    "esbuild@0.28.2",
    // The `node:` modules of nodejs_compat (see build.mjs).
    "@noble/hashes@2.4.0",
    "assert@2.1.0",
    "buffer@6.0.3",
    "events@3.3.0",
    "path-browserify@1.0.1",
    "util@0.12.5",
];

/// The SDK's files (`guests/js/src`), embedded so a build always uses the
/// SDK of this host.
const SDK_FILES: [(&str, &str); 16] = [
    (
        "node/crypto.js",
        include_str!("../../../../guests/js/src/node/crypto.js"),
    ),
    (
        "node/globals.js",
        include_str!("../../../../guests/js/src/node/globals.js"),
    ),
    (
        "node/process.js",
        include_str!("../../../../guests/js/src/node/process.js"),
    ),
    ("base.js", include_str!("../../../../guests/js/src/base.js")),
    (
        "clone.js",
        include_str!("../../../../guests/js/src/clone.js"),
    ),
    ("env.js", include_str!("../../../../guests/js/src/env.js")),
    (
        "errors.js",
        include_str!("../../../../guests/js/src/errors.js"),
    ),
    ("http.js", include_str!("../../../../guests/js/src/http.js")),
    (
        "index.js",
        include_str!("../../../../guests/js/src/index.js"),
    ),
    ("ops.js", include_str!("../../../../guests/js/src/ops.js")),
    (
        "sockets.js",
        include_str!("../../../../guests/js/src/sockets.js"),
    ),
    (
        "storage.js",
        include_str!("../../../../guests/js/src/storage.js"),
    ),
    (
        "streams.js",
        include_str!("../../../../guests/js/src/streams.js"),
    ),
    (
        "targets.js",
        include_str!("../../../../guests/js/src/targets.js"),
    ),
    (
        "websocket.js",
        include_str!("../../../../guests/js/src/websocket.js"),
    ),
    (
        "worker.js",
        include_str!("../../../../guests/js/src/worker.js"),
    ),
];

const BUILD_SCRIPT: &str = include_str!("build.mjs");

/// The extensions of the modules a build takes: JavaScript, and TypeScript
/// (esbuild strips the types; nothing is type-checked).
pub const MODULE_EXTENSIONS: [&str; 6] = ["js", "mjs", "cjs", "ts", "mts", "tsx"];

/// The module a JavaScript component source names: `path` itself when it
/// is a JavaScript or TypeScript file (see [`MODULE_EXTENSIONS`]), or the `main` of the `package.json` in the
/// folder `path` (else its `src/index.js` or `index.js`). `None` when
/// `path` is neither.
///
/// # Errors
///
/// A message saying what is wrong when `path` is a folder with a
/// `package.json` that names no module that exists.
pub fn js_module(path: &Path) -> std::result::Result<Option<PathBuf>, String> {
    if path.is_file() {
        let is_js = path
            .extension()
            .is_some_and(|e| MODULE_EXTENSIONS.iter().any(|m| e == *m));
        return Ok(is_js.then(|| path.to_path_buf()));
    }
    let manifest = path.join("package.json");
    if !manifest.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", manifest.display()))?;
    let candidates: Vec<String> = match package["main"].as_str() {
        Some(main) => vec![main.to_owned()],
        None => ["src/index.ts", "src/index.js", "index.ts", "index.js"]
            .map(str::to_owned)
            .to_vec(),
    };
    first_module(
        path,
        &manifest,
        &candidates,
        "set \"main\" to the module that exports the classes",
    )
}

fn tools_installed(project: &Path) -> bool {
    JS_BUILD_PACKAGES.iter().all(|spec| {
        let name = &spec[..spec.rfind('@').unwrap_or(spec.len())];
        project
            .join("node_modules")
            .join(name)
            .join("package.json")
            .is_file()
    })
}

/// Installs [`JS_BUILD_PACKAGES`] into `project` with npm when they are
/// missing, as a [`Task`].
fn ensure_tools(project: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    if tools_installed(project) {
        return Ok(());
    }
    if !project.join("package.json").is_file() {
        progress(&format!(
            "creating {} to hold the JavaScript build tools",
            project.join("package.json").display()
        ));
        std::fs::write(project.join("package.json"), "{\n  \"private\": true\n}\n").map_err(
            |e| {
                build_error(format!(
                    "cannot create package.json in {}: {e}",
                    project.display()
                ))
            },
        )?;
    }
    let task = Task::start(format!(
        "installing the JavaScript build tools into {} with npm ({}; once per project, then builds run offline)",
        project.display(),
        JS_BUILD_PACKAGES.join(", ")
    ));
    let run = run_tool(
        Command::new(npm())
            // No install scripts: none of the tools needs one (esbuild finds
            // its binary package without its postinstall check).
            .args(["install", "--save-dev", "--save-exact", "--no-audit", "--no-fund", "--ignore-scripts"])
            .args(JS_BUILD_PACKAGES)
            .current_dir(project),
        &task,
        false,
    )
    .map_err(|e| {
        build_error(format!(
            "cannot run npm to install the JavaScript build tools ({e}); install Node.js 18 or later (with npm), or build the component yourself and point `component` at the .wasm"
        ))
    })?;
    if !run.status.success() || !tools_installed(project) {
        return Err(build_error(format!(
            "`npm install` in {} failed ({}); run `npm install --save-dev {}` there by hand; npm said:\n{}",
            project.display(),
            run.status,
            JS_BUILD_PACKAGES.join(" "),
            run.tail
        )));
    }
    task.finish(format!(
        "installed the JavaScript build tools into {}",
        project.display()
    ));
    Ok(())
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

/// What [`build_js_guest`] produced.
#[derive(Debug, Clone)]
pub struct JsBuild {
    /// The component file.
    pub wasm: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// True when the module had not changed since a previous build, whose
    /// component was reused.
    pub cached: bool,
}

/// Builds the JavaScript module `module` into a component for `role`.
/// `fallback_project` is where the build tools go when no folder above the
/// module has a `package.json` (the configuration's folder).
///
/// # Errors
///
/// [`crate::ErrorKind::Build`] when npm or node cannot run, the packages
/// cannot be installed, or the module does not bundle or componentize (the
/// error ends with the tool's last lines).
pub fn build_js_guest(
    module: &Path,
    role: Role,
    fallback_project: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<JsBuild> {
    let what = format!("the JavaScript guest {}", module.display());
    build_js_guest_as(module, role, fallback_project, progress, &what)
}

/// [`build_js_guest`], reporting the build as building `what`.
pub(super) fn build_js_guest_as(
    module: &Path,
    role: Role,
    fallback_project: &Path,
    progress: &mut dyn FnMut(&str),
    what: &str,
) -> Result<JsBuild> {
    let module = std::fs::canonicalize(module)
        .map_err(|e| build_error(format!("cannot read {}: {e}", module.display())))?;
    // Absolute, because node runs in the project's cache folder: a relative
    // configuration folder (`dohost build .`) would point elsewhere from there.
    let project = project_of(&module, "package.json", fallback_project)?;
    // One build at a time per project: npm install and the output files are
    // shared by every build of the project, also across processes.
    let _lock = lock_project(&project, "js")?;
    ensure_tools(&project, progress)?;
    let work = project.join("node_modules").join(".cache").join("dohost");
    write_files(&work.join("sdk"), &SDK_FILES)?;
    write_files(&work.join("wit"), &WIT_FILES)?;
    write_files(&work, &[("build.mjs", BUILD_SCRIPT)])?;
    let (sdk_file, handler) = match role {
        Role::Objects => ("index.js", "objectHandler"),
        Role::Worker => ("worker.js", "workerHandler"),
    };
    let task = Task::start(format!(
        "building {what} from {} (esbuild and componentize-js)",
        module.display()
    ));
    let output = run_tool(
        Command::new("node")
            .arg(work.join("build.mjs"))
            .arg(&module)
            .arg(work.join("sdk").join(sdk_file))
            .arg(handler)
            .arg(role.world())
            .arg(work.join("wit"))
            .arg(work.join("out"))
            .current_dir(&work),
        &task,
        true,
    )
    .map_err(|e| {
        build_error(format!(
            "cannot run node to build {} ({e}); install Node.js 18 or later",
            module.display()
        ))
    })?;
    if !output.status.success() {
        return Err(build_error(format!(
            "building the JavaScript guest {} failed:\n{}",
            module.display(),
            output.tail
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| build_error(format!("the JavaScript build printed no result: {stdout}")))?;
    let built = JsBuild {
        wasm: PathBuf::from(result["wasm"].as_str().unwrap_or_default()),
        bytes: result["bytes"].as_u64().unwrap_or(0),
        cached: result["cached"].as_bool().unwrap_or(false),
    };
    task.finish(format!(
        "built {what}{}: {}, {:.1} MB",
        if built.cached {
            " (unchanged since the last build)"
        } else {
            ""
        },
        built.wasm.display(),
        built.bytes as f64 / 1e6,
    ));
    Ok(built)
}
