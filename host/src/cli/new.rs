//! `dohost new NAME`: a counter project that `dohost serve` runs at once.
//!
//! Each language's template (`host/templates/new/<lang>/`) is embedded in
//! the binary: a configuration, the Counter object, an entry worker that
//! forwards to it, a test that starts `dohost serve` and checks that the
//! counter counts, and a README naming the commands. `{{name}}` in a
//! template becomes the project's name, and `{{sdk}}` (Rust) the path of
//! the Rust SDK in the checkout this binary was built from: `dohost-sdk` is
//! not on crates.io.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The languages a project can start in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Two Rust crates built for wasm32-wasip2; `cargo test`.
    Rust,
    /// One JavaScript module; `npm test`.
    Js,
    /// One TypeScript module; `npm test`.
    Ts,
    /// One Python module; `python3 -m unittest`.
    Python,
}

/// Embeds the template file `path` (below `host/templates/new/`), written
/// to the project as `path` without its language folder.
macro_rules! template {
    ($lang:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../../templates/new/", $lang, "/", $path)),
        )
    };
}

const RUST: [(&str, &str); 8] = [
    template!("rust", "README.md"),
    template!("rust", "dohost.toml"),
    template!("rust", "Cargo.toml"),
    template!("rust", "counter/Cargo.toml"),
    template!("rust", "counter/src/lib.rs"),
    template!("rust", "worker/Cargo.toml"),
    template!("rust", "worker/src/lib.rs"),
    template!("rust", "tests/counter.rs"),
];

const JS: [(&str, &str); 5] = [
    template!("js", "README.md"),
    template!("js", "dohost.toml"),
    template!("js", "package.json"),
    template!("js", "src/index.js"),
    template!("js", "test/counter.test.mjs"),
];

const TS: [(&str, &str); 6] = [
    template!("ts", "README.md"),
    template!("ts", "dohost.toml"),
    template!("ts", "package.json"),
    template!("ts", "tsconfig.json"),
    template!("ts", "src/index.ts"),
    // The same test as JavaScript's: it runs the served project.
    template!("js", "test/counter.test.mjs"),
];

const PYTHON: [(&str, &str); 6] = [
    template!("python", "README.md"),
    template!("python", "dohost.toml"),
    template!("python", "pyproject.toml"),
    template!("python", "src/counter.py"),
    template!("python", "tests/__init__.py"),
    template!("python", "tests/test_counter.py"),
];

/// The `.gitignore` of each language: build outputs and the data directory.
/// (Stored as `gitignore`: a `.gitignore` in the template folder would
/// apply to this repository.)
const GITIGNORE: [(Lang, &str); 4] = [
    (
        Lang::Rust,
        include_str!("../../templates/new/rust/gitignore"),
    ),
    (Lang::Js, include_str!("../../templates/new/js/gitignore")),
    (Lang::Ts, include_str!("../../templates/new/js/gitignore")),
    (
        Lang::Python,
        include_str!("../../templates/new/python/gitignore"),
    ),
];

/// The longest project name: it names a folder, a cargo package and an npm
/// package (npm allows 214 characters; this is plenty).
const MAX_NAME_CHARS: usize = 64;

/// Checks that `name` can name the folder, the cargo packages and the npm
/// package: lowercase ASCII letters, digits and `-`, starting with a
/// letter, at most [`MAX_NAME_CHARS`].
fn check_name(name: &str) -> Result<()> {
    let valid = name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} cannot name a project: use lowercase letters, digits and `-`, starting with a letter and not ending with `-`, at most {MAX_NAME_CHARS} characters (it names the folder and the cargo, npm or Python package)"
        );
    }
    Ok(())
}

/// The Rust SDK in the checkout this binary was built from.
fn sdk_path() -> PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/rust");
    std::fs::canonicalize(&sdk).unwrap_or(sdk)
}

/// Writes the `lang` counter project `name` into `dir` (which must not
/// exist, or be empty), and returns a line or two saying what to run next.
pub fn create(dir: &Path, name: &str, lang: Lang) -> Result<String> {
    check_name(name)?;
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; `dohost new` writes only into a new or empty folder (choose another name, or remove the folder)",
                dir.display()
            );
        }
    } else if dir.exists() {
        bail!("{} exists and is not a folder", dir.display());
    }
    let sdk = sdk_path();
    let files: &[(&str, &str)] = match lang {
        Lang::Rust => &RUST,
        Lang::Js => &JS,
        Lang::Ts => &TS,
        Lang::Python => &PYTHON,
    };
    let gitignore = GITIGNORE
        .iter()
        .find(|(l, _)| *l == lang)
        .map_or("", |(_, text)| text);
    let sdk_text = sdk.display().to_string();
    for (path, text) in files.iter().copied().chain([(".gitignore", gitignore)]) {
        let text = text.replace("{{name}}", name).replace("{{sdk}}", &sdk_text);
        write(&dir.join(path), &text)?;
    }
    if lang == Lang::Ts {
        // Editors and tsc see Env and the runtime's types at once.
        let config_path = dir.join("dohost.toml");
        let config = dohost::Config::load(&config_path)?;
        let out = dir.join(dohost::build::TYPES_FILE);
        write(&out, &dohost::build::worker_types(&config, &out, false))?;
    }
    let test = match lang {
        Lang::Rust => "cargo test",
        Lang::Js | Lang::Ts => "npm test",
        Lang::Python => "python3 -m unittest",
    };
    let mut next = format!(
        "created {name} in {}; run `cd {} && dohost dev`, then `curl localhost:8787/`; `{test}` runs its test",
        dir.display(),
        dir.display()
    );
    if lang == Lang::Rust {
        if !sdk.join("Cargo.toml").is_file() {
            next.push_str(&format!(
                "\nwarning: the Rust SDK is not at {} any more; point dohost-sdk in {} at a dohost checkout's guests/rust",
                sdk.display(),
                dir.join("Cargo.toml").display()
            ));
        } else {
            next.push_str(&format!(
                "\nthe Rust SDK comes from this dohost checkout ({}), as a path dependency",
                sdk.display()
            ));
        }
    }
    Ok(next)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
