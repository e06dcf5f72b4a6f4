//! `--watch`: rebuild and reload when a component's sources change.
//!
//! The operating system tells of changes (inotify, FSEvents, ...) through
//! the `notify` crate. What is watched is the sources of the configuration
//! as written: a component file, a Rust crate's `Cargo.toml` and `src/`, or
//! the JavaScript, TypeScript and Python files in a module's folder, and
//! the files a module may import or read at build time beside them
//! ([`ASSET_EXTENSIONS`]: a page it serves, `pyproject.toml`). Each
//! folder holding them is watched on its own, without descending into
//! `target/`, `node_modules/` or hidden folders such as the data directory
//! `.dohost/`, so a build's outputs never start another build. A burst of
//! events (an editor's save, a `git checkout`) is one change: the watcher
//! waits until nothing has moved for [`SETTLE`], then rebuilds what needs it
//! and reloads the host's components. Running events finish on the old
//! code; a build or component that fails leaves the old code serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};

use super::console::console;

/// How long a burst of file events must stay quiet before the rebuild.
const SETTLE: Duration = Duration::from_millis(150);

/// Beside the modules in a module's folder, the files whose change may
/// change the component: JSON, text a module imports or reads at build time
/// (the chat example's page), and the Python project's `pyproject.toml`.
const ASSET_EXTENSIONS: [&str; 7] = ["py", "json", "toml", "html", "css", "txt", "svg"];

/// How often the watcher looks at its stop flag while nothing changes.
const STOP_CHECK: Duration = Duration::from_millis(250);

/// The files derived from a configuration's sources, as written, that
/// `--watch` reacts to, and the folders to watch for them.
#[derive(Debug, Default)]
struct Sources {
    /// Component files, each watched through its folder (a build or a copy
    /// replaces the file, which would end a watch on the file itself).
    files: BTreeSet<PathBuf>,
    /// Rust crates: their `Cargo.toml`, and everything under `src/`.
    crates: BTreeSet<PathBuf>,
    /// Folders of JavaScript and Python modules: the modules and the
    /// [`ASSET_EXTENSIONS`] files in them.
    modules: BTreeSet<PathBuf>,
    /// Every folder to watch, each without its subfolders.
    folders: BTreeSet<PathBuf>,
}

impl Sources {
    fn of(config: &dohost::Config) -> Sources {
        let mut sources = Sources::default();
        let components = config.bindings.iter().map(|b| &b.component);
        for source in components.chain(&config.main) {
            match source {
                dohost::ComponentSource::File(path) => {
                    let path = absolute(path);
                    if let Some(dir) = path.parent() {
                        sources.folders.insert(dir.to_path_buf());
                    }
                    sources.files.insert(path);
                }
                dohost::ComponentSource::RustCrate(dir) => {
                    let dir = absolute(dir);
                    sources.folders.insert(dir.clone());
                    walk(&dir.join("src"), &mut sources.folders);
                    sources.crates.insert(dir);
                }
                // A module may import any module beside it or below.
                dohost::ComponentSource::JavaScript(module)
                | dohost::ComponentSource::Python(module) => {
                    if let Some(dir) = absolute(module).parent() {
                        walk(dir, &mut sources.folders);
                        sources.modules.insert(dir.to_path_buf());
                    }
                }
                dohost::ComponentSource::Bytes(_) => {}
            }
        }
        sources
    }

    /// Whether a change to `path` can change a component.
    fn concerns(&self, path: &Path) -> bool {
        if self.files.contains(path) {
            return true;
        }
        if self
            .crates
            .iter()
            .any(|dir| path == dir.join("Cargo.toml") || path.starts_with(dir.join("src")))
        {
            return true;
        }
        let source_file = path.extension().is_some_and(|e| {
            let mut extensions = ASSET_EXTENSIONS
                .iter()
                .chain(&dohost::build::MODULE_EXTENSIONS);
            extensions.any(|known| e == *known)
        }) && path.file_name().is_some_and(|n| {
            // npm's lock file is written by the build's tool install.
            n != "package-lock.json" && !dohost::build::hidden(n)
        });
        source_file
            && self.modules.iter().any(|dir| {
                path.strip_prefix(dir)
                    .is_ok_and(|rest| rest.parent().is_none_or(|folders| !skipped(folders)))
            })
    }
}

/// Whether a relative folder path passes through a folder never looked into.
fn skipped(folders: &Path) -> bool {
    folders.iter().any(dohost::build::skipped_folder)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `dir` and every folder below it, except those no guest's sources are in
/// ([`dohost::build::skipped_folder`]).
fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.insert(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !skipped(Path::new(&entry.file_name())) {
            walk(&entry.path(), out);
        }
    }
}

/// Watches `wanted` and stops watching what is no longer in it. A folder
/// that cannot be watched (it was removed) is left out until it can.
fn update(
    watcher: &mut impl Watcher,
    watching: &mut BTreeSet<PathBuf>,
    wanted: &BTreeSet<PathBuf>,
) {
    for gone in watching.difference(wanted) {
        let _ = watcher.unwatch(gone);
    }
    watching.retain(|dir| wanted.contains(dir));
    for dir in wanted.difference(&watching.clone()) {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watching.insert(dir.clone());
            }
            Err(e) => tracing::debug!("cannot watch {}: {e}", dir.display()),
        }
    }
}

/// Starts watching the sources of `written` (before it returns, so no
/// change after it is missed) and reloads `host` whenever they change, on a
/// thread of its own, until `stop` is set. Prints what changed and whether
/// the reload took.
///
/// # Errors
///
/// When the operating system's file watching cannot start (e.g. no inotify
/// instances left), or the thread cannot.
pub fn start(
    host: dohost::Host,
    written: dohost::Config,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).context("cannot watch the sources' files")?;
    let sources = Sources::of(&written);
    let mut watching = BTreeSet::new();
    update(&mut watcher, &mut watching, &sources.folders);
    std::thread::Builder::new()
        .name("dohost-watch".into())
        .spawn(move || {
            let mut state = (watcher, watching, sources);
            run(&host, &written, &stop, &rx, &mut state);
        })
        .context("starting the --watch thread")?;
    Ok(())
}

/// The watcher, the folders it watches and the sources they hold.
type State = (notify::RecommendedWatcher, BTreeSet<PathBuf>, Sources);

/// The `--watch` loop: see [`start`].
fn run(
    host: &dohost::Host,
    written: &dohost::Config,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
    (watcher, watching, sources): &mut State,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut changed = BTreeSet::new();
        let mut wait = STOP_CHECK;
        // Gather events until a quiet SETTLE after the first that matters.
        loop {
            match rx.recv_timeout(wait) {
                Ok(Ok(event)) => {
                    // Reading a file changes nothing.
                    if matches!(event.kind, EventKind::Access(_)) {
                        continue;
                    }
                    changed.extend(event.paths.into_iter().filter(|p| sources.concerns(p)));
                    if !changed.is_empty() {
                        wait = SETTLE;
                    }
                }
                Ok(Err(e)) => console().line(&format!("watching: {e}")),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if changed.is_empty() {
            continue;
        }
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        console().line(&format!("changed: {}", names.join(", ")));
        let mut built = written.clone();
        let outcome = dohost::build::build_config(&mut built, &mut |line| console().line(line))
            .and_then(|()| host.reload_from(&built));
        match outcome {
            Ok(()) => console().line("reloaded: new events run the new code"),
            Err(e) => console().line(&format!("not reloaded, the running code stays: {e}")),
        }
        // New folders under the sources are watched from now on.
        *sources = Sources::of(written);
        update(watcher, watching, &sources.folders);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_folder_concerns_its_modules_and_assets_but_not_outputs() {
        let dir = std::env::temp_dir().join("dohost-watch-concerns");
        let mut sources = Sources::default();
        sources.modules.insert(dir.clone());
        for changed in [
            "chat.py",
            "page.html",
            "lib/util.ts",
            "pyproject.toml",
            "data.json",
        ] {
            assert!(sources.concerns(&dir.join(changed)), "{changed}");
        }
        for unchanged in [
            "README.md",
            "package-lock.json",
            ".chat.py.swp",
            "__pycache__/chat.cpython-314.pyc",
            "node_modules/x/index.js",
            ".dohost/python/out/page.html",
            "target/debug/x.json",
        ] {
            assert!(!sources.concerns(&dir.join(unchanged)), "{unchanged}");
        }
        assert!(!sources.concerns(Path::new("/elsewhere/chat.py")));
    }
}
