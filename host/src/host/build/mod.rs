//! Building guest components: `dohost build` and the build step of
//! `dohost serve`.
//!
//! A component in the configuration may be a Rust guest crate directory or
//! a JavaScript module (see [`build_js_guest`]). A crate is built with
//! `cargo build --release --target wasm32-wasip2`, and the `wasm32-wasip2`
//! target is added with rustup first when it is missing (as cargo-component
//! does), saying so. Cargo decides what is stale, so an up-to-date guest
//! costs one no-op cargo run.

mod js;
mod types;

pub use js::{JS_BUILD_PACKAGES, JsBuild, JsRole, MODULE_EXTENSIONS, build_js_guest, js_module};
pub use types::{TYPES_FILE, uses_workers_types, worker_types};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::config::{ComponentSource, Config};
use crate::error::{Error, ErrorKind, Result};

/// The Rust target guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

fn build_error(message: String) -> Error {
    Error::new(ErrorKind::Build, message)
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
/// [`ErrorKind::Build`] when cargo fails (its diagnostics are printed to
/// stderr) or produces no `.wasm` for the crate.
pub fn build_rust_guest(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let output = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| build_error(format!("cannot run cargo to build {}: {e}", dir.display())))?;
    if !output.status.success() {
        return Err(build_error(format!(
            "building the guest crate {} failed; see cargo's errors above",
            dir.display()
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
    artifact.ok_or_else(|| {
        build_error(format!(
            "cargo built {} but produced no .wasm; give the crate `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        ))
    })
}

/// Builds every guest crate and JavaScript module of `config` and points
/// the configuration at the built components. `progress` gets a line or two
/// per guest.
///
/// # Errors
///
/// As [`build_rust_guest`], [`ensure_guest_target`] and [`build_js_guest`].
pub fn build_config(config: &mut Config, progress: &mut dyn FnMut(&str)) -> Result<()> {
    // `dohost.toml` alone has the empty path as its parent.
    let config_dir = config
        .path
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut sources: Vec<(String, JsRole, &mut ComponentSource)> = config
        .bindings
        .iter_mut()
        .map(|b| {
            (
                format!("binding {}", b.name),
                JsRole::Objects,
                &mut b.component,
            )
        })
        .collect();
    if let Some(main) = config.main.as_mut() {
        sources.push(("main worker".to_owned(), JsRole::Worker, main));
    }
    let mut target_checked = false;
    // One module may serve several bindings (one per class) and the main
    // worker: build it once per role.
    let mut js_built: std::collections::HashMap<(PathBuf, JsRole), PathBuf> =
        std::collections::HashMap::new();
    for (what, role, source) in sources {
        let started = Instant::now();
        let wasm = match source {
            ComponentSource::RustCrate(dir) => {
                if !target_checked {
                    ensure_guest_target(progress)?;
                    target_checked = true;
                }
                progress(&format!("building {what} from {}", dir.display()));
                let wasm = build_rust_guest(dir)?;
                progress(&format!(
                    "built {what}: {} ({:.1} s)",
                    wasm.display(),
                    started.elapsed().as_secs_f64()
                ));
                wasm
            }
            ComponentSource::JavaScript(module) => {
                if let Some(wasm) = js_built.get(&(module.clone(), role)) {
                    *source = ComponentSource::File(wasm.clone());
                    continue;
                }
                progress(&format!(
                    "building {what} from {} (JavaScript)",
                    module.display()
                ));
                let built = build_js_guest(module, role, &config_dir, progress)?;
                progress(&format!(
                    "built {what}: {} ({:.1} MB, {})",
                    built.wasm.display(),
                    built.bytes as f64 / 1e6,
                    if built.cached {
                        "unchanged since the last build".to_owned()
                    } else {
                        format!("{:.1} s", started.elapsed().as_secs_f64())
                    }
                ));
                js_built.insert((module.clone(), role), built.wasm.clone());
                built.wasm
            }
            ComponentSource::File(_) | ComponentSource::Bytes(_) => continue,
        };
        *source = ComponentSource::File(wasm);
    }
    Ok(())
}
