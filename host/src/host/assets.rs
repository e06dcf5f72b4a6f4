//! Static assets (`[assets]`, wrangler's Workers Static Assets): the files
//! of a folder, served before the worker as Cloudflare serves them.
//!
//! A request's head decides ([`Assets::route`]): a `GET` or `HEAD` whose
//! path names a file is answered with it, unless `run_worker_first` sends
//! the path to the worker; a path with no file goes to the worker, or
//! without one gets `not_found_handling`'s page (`index.html` for a
//! single-page application, the nearest `404.html`). `html_handling`
//! decides how `/about`, `/about/` and `/about.html` find `about.html` or
//! `about/index.html`, redirecting (307) to the one canonical path.
//!
//! Files are read from disk for each request, so a front end rebuilt
//! while the server runs is served at once. Each answer carries a
//! `Content-Type` by extension, an `ETag` (the file's modification time
//! and size), `Cache-Control: public, max-age=0, must-revalidate` as
//! Cloudflare's, and honours `If-None-Match` (304) and one `Range` (206,
//! or 416).

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

/// `[assets]` of the configuration.
#[derive(Debug, Clone)]
pub struct AssetsConfig {
    /// The folder served (`directory`).
    pub directory: PathBuf,
    /// `binding`: the name under which a worker would reach the assets
    /// (`env.ASSETS.fetch(request)`); not available yet, so code that uses
    /// it gets an error naming it.
    pub binding: Option<String>,
    /// What a request that matches no file gets.
    pub not_found_handling: NotFoundHandling,
    /// How paths find HTML files.
    pub html_handling: HtmlHandling,
    /// Which requests go to the worker before the assets.
    pub run_worker_first: RunWorkerFirst,
}

/// `not_found_handling`: what a request that matches no file gets when no
/// worker takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundHandling {
    /// A 404 (`"none"`, the default).
    None,
    /// `/index.html` with 200 (`"single-page-application"`); with a worker,
    /// for navigation requests (`Sec-Fetch-Mode: navigate`) only.
    SinglePageApplication,
    /// The nearest `404.html` above the path, with 404 (`"404-page"`).
    Page404,
}

/// `html_handling`: how a path finds an HTML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HtmlHandling {
    /// `/file` for `file.html`, `/folder/` for `folder/index.html` (the
    /// default); the other spellings redirect there.
    AutoTrailingSlash,
    /// `/file/` and `/folder/`.
    ForceTrailingSlash,
    /// `/file` and `/folder`.
    DropTrailingSlash,
    /// Only the files' own paths (`/file.html`, `/folder/index.html`).
    None,
}

/// `run_worker_first`: which requests go to the worker before the assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunWorkerFirst {
    /// None: a file is served without the worker (`false`, the default).
    Never,
    /// All (`true`): every request goes to the worker.
    Always,
    /// The paths matching these patterns (`*` any characters), unless they
    /// match one of the patterns that start with `!`.
    Patterns(Vec<String>),
}

/// The most bytes of one asset: Cloudflare's limit per file (25 MiB).
pub const MAX_ASSET_BYTES: u64 = 25 << 20;

/// What [`Assets::route`] made of a request's head.
#[derive(Debug)]
pub(crate) enum AssetRoute {
    /// Answer with this file, with this status (200, or 404 for a 404 page).
    File(PathBuf, StatusCode),
    /// Redirect (307) to this path and query.
    Redirect(String),
    /// No asset: the worker or the default router takes the request.
    Pass,
}

/// The assets of a host.
#[derive(Debug)]
pub(crate) struct Assets {
    config: AssetsConfig,
}

/// What a path names in the folder.
enum Found {
    File(PathBuf),
    Redirect(String),
}

impl Assets {
    pub(crate) fn new(config: AssetsConfig) -> Assets {
        Assets { config }
    }

    /// Places a request by its head. `worker` says whether something else
    /// would take a request that matches no file (the entry worker, or the
    /// default router for a binding's path).
    pub(crate) fn route(&self, head: &http::request::Parts, worker: bool) -> AssetRoute {
        if head.method != Method::GET && head.method != Method::HEAD {
            return AssetRoute::Pass;
        }
        let path = head.uri.path();
        if worker && self.worker_first(path) {
            return AssetRoute::Pass;
        }
        self.find(head, worker)
    }

    fn find(&self, head: &http::request::Parts, worker: bool) -> AssetRoute {
        let Some(path) = clean_path(head.uri.path()) else {
            return AssetRoute::Pass;
        };
        match self.resolve(&path) {
            Some(Found::File(file)) => return AssetRoute::File(file, StatusCode::OK),
            Some(Found::Redirect(to)) => {
                let to = match head.uri.query() {
                    Some(query) => format!("{to}?{query}"),
                    None => to,
                };
                return AssetRoute::Redirect(to);
            }
            None => {}
        }
        let navigation = head
            .headers
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode == "navigate");
        match self.config.not_found_handling {
            NotFoundHandling::SinglePageApplication if !worker || navigation => self
                .file("index.html")
                .map_or(AssetRoute::Pass, |f| AssetRoute::File(f, StatusCode::OK)),
            NotFoundHandling::Page404 if !worker => {
                let mut dir = path.trim_end_matches('/');
                loop {
                    dir = &dir[..dir.rfind('/').unwrap_or(0)];
                    if let Some(page) = self.file(&format!("{dir}/404.html")) {
                        return AssetRoute::File(page, StatusCode::NOT_FOUND);
                    }
                    if dir.is_empty() {
                        return AssetRoute::Pass;
                    }
                }
            }
            _ => AssetRoute::Pass,
        }
    }

    /// Whether `run_worker_first` sends `path` to the worker.
    fn worker_first(&self, path: &str) -> bool {
        match &self.config.run_worker_first {
            RunWorkerFirst::Never => false,
            RunWorkerFirst::Always => true,
            RunWorkerFirst::Patterns(patterns) => {
                let excluded = patterns
                    .iter()
                    .filter_map(|p| p.strip_prefix('!'))
                    .any(|p| glob_match(p, path));
                !excluded
                    && patterns
                        .iter()
                        .filter(|p| !p.starts_with('!'))
                        .any(|p| glob_match(p, path))
            }
        }
    }

    /// The file at `relative` (a path below the folder) if it is one, and
    /// within the folder once links are followed.
    fn file(&self, relative: &str) -> Option<PathBuf> {
        let path = self.config.directory.join(relative.trim_start_matches('/'));
        if !path.is_file() {
            return None;
        }
        let root = std::fs::canonicalize(&self.config.directory).ok()?;
        let real = std::fs::canonicalize(&path).ok()?;
        real.starts_with(&root).then_some(real)
    }

    /// What `path` (decoded, without `.` or `..`) names under
    /// `html_handling`.
    fn resolve(&self, path: &str) -> Option<Found> {
        let html = self.config.html_handling;
        if html == HtmlHandling::None {
            return self.file(path).map(Found::File);
        }
        let redirect = |to: String| Some(Found::Redirect(to));
        if path == "/" {
            return self.file("index.html").map(Found::File);
        }
        if let Some(dir) = path.strip_suffix("/index.html") {
            // folder/index.html: at /folder/ (or /folder when dropping).
            self.file(path)?;
            return match html {
                HtmlHandling::DropTrailingSlash if !dir.is_empty() => redirect(dir.to_owned()),
                _ => redirect(format!("{dir}/")),
            };
        }
        if let Some(stem) = path.strip_suffix(".html") {
            // file.html: at /file (or /file/ when forcing).
            if stem.is_empty() || stem.ends_with('/') {
                return self.file(path).map(Found::File);
            }
            self.file(path)?;
            return match html {
                HtmlHandling::ForceTrailingSlash => redirect(format!("{stem}/")),
                _ => redirect(stem.to_owned()),
            };
        }
        if let Some(stem) = path.strip_suffix('/') {
            let index = self.file(&format!("{stem}/index.html"));
            let page = self.file(&format!("{stem}.html"));
            return match html {
                HtmlHandling::DropTrailingSlash if index.is_some() || page.is_some() => {
                    redirect(stem.to_owned())
                }
                HtmlHandling::AutoTrailingSlash if index.is_none() && page.is_some() => {
                    redirect(stem.to_owned())
                }
                _ => index.or(page).map(Found::File),
            };
        }
        if let Some(file) = self.file(path) {
            return Some(Found::File(file));
        }
        let page = self.file(&format!("{path}.html"));
        let index = self.file(&format!("{path}/index.html"));
        match html {
            HtmlHandling::ForceTrailingSlash if index.is_some() || page.is_some() => {
                redirect(format!("{path}/"))
            }
            HtmlHandling::AutoTrailingSlash if page.is_none() && index.is_some() => {
                redirect(format!("{path}/"))
            }
            _ => page.or(index).map(Found::File),
        }
    }
}

/// The request path percent-decoded, or `None` when it could reach outside
/// the folder (`..`, a backslash, a NUL) or is not UTF-8.
fn clean_path(raw: &str) -> Option<String> {
    let path = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    if !path.starts_with('/') || path.contains(['\\', '\0']) {
        return None;
    }
    let safe = Path::new(&path)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    (safe && !path.split('/').any(|s| s == "." || s == "..")).then_some(path)
}

/// Whether `path` matches `pattern`, where `*` stands for any characters
/// (wrangler's `run_worker_first` patterns).
fn glob_match(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Answers `head` with `file` (status 200 or 404), honouring
/// `If-None-Match` and `Range`.
pub(crate) async fn serve_file(
    head: &http::request::Parts,
    file: PathBuf,
    status: StatusCode,
) -> http::Response<Bytes> {
    let meta = match tokio::fs::metadata(&file).await {
        Ok(meta) => meta,
        Err(e) => return plain(StatusCode::NOT_FOUND, format!("asset not found: {e}\n")),
    };
    if meta.len() > MAX_ASSET_BYTES {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the asset {} is {} bytes; the limit is {MAX_ASSET_BYTES}\n",
                file.display(),
                meta.len()
            ),
        );
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{modified:x}-{:x}\"", meta.len());
    let mut response = http::Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type(&file));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=0, must-revalidate"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::OK && none_match(head, &etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    *response.status_mut() = status;
    let len = meta.len();
    let range = match head.headers.get(header::RANGE) {
        Some(range) if status == StatusCode::OK && if_range_holds(head, &etag) => {
            match byte_range(range.to_str().unwrap_or_default(), len) {
                Ok(range) => range,
                Err(()) => {
                    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        response.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    return response;
                }
            }
        }
        _ => None,
    };
    let (start, end) = range.unwrap_or((0, len));
    if let Some((start, end)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    if head.method == Method::HEAD {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        return response;
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let bytes = Bytes::from(bytes);
            let end = usize::try_from(end).unwrap_or(usize::MAX).min(bytes.len());
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
            *response.body_mut() = bytes.slice(start..end);
            response
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the asset {}: {e}\n", file.display()),
        ),
    }
}

/// A redirect (307) to `location`.
pub(crate) fn redirect(location: &str) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::new());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn plain(status: StatusCode, text: String) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The file's type by its extension; text in UTF-8.
fn content_type(file: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    let value = if text && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// Whether `If-None-Match` names `etag` (or is `*`), weak or strong.
fn none_match(head: &http::request::Parts, etag: &str) -> bool {
    head.headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Whether a `Range` is to be honoured: no `If-Range`, or one naming the
/// current `etag`.
fn if_range_holds(head: &http::request::Parts, etag: &str) -> bool {
    head.headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag))
}

/// The one byte range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of
/// `len` bytes, as `[start, end)`. `Ok(None)` for what is served whole (a
/// range of another unit, or several ranges); `Err` when unsatisfiable.
fn byte_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len)
        }
        (start, "") => (start.parse().map_err(|_| ())?, len),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            if end < start {
                return Err(());
            }
            (start, (end + 1).min(len))
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_and_exclusions() {
        assert!(glob_match("/api/*", "/api/counter"));
        assert!(glob_match("/api/*", "/api/"));
        assert!(!glob_match("/api/*", "/apis"));
        assert!(glob_match("/*.js", "/assets/app.js"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact/more"));
        assert!(glob_match("/a/*/c/*", "/a/b/c/d"));
        let assets = Assets::new(AssetsConfig {
            directory: PathBuf::from("."),
            binding: None,
            not_found_handling: NotFoundHandling::None,
            html_handling: HtmlHandling::AutoTrailingSlash,
            run_worker_first: RunWorkerFirst::Patterns(vec!["/*".into(), "!/static/*".into()]),
        });
        assert!(assets.worker_first("/api"));
        assert!(!assets.worker_first("/static/app.js"));
    }

    #[test]
    fn ranges_are_read_as_http_has_them() {
        assert_eq!(byte_range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(byte_range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(byte_range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(byte_range("bytes=-200", 100), Ok(Some((0, 100))));
        assert_eq!(byte_range("bytes=50-500", 100), Ok(Some((50, 100))));
        assert_eq!(byte_range("bytes=100-", 100), Err(()));
        assert_eq!(byte_range("bytes=5-1", 100), Err(()));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(byte_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn paths_that_could_leave_the_folder_are_refused() {
        assert_eq!(clean_path("/a/b.html").as_deref(), Some("/a/b.html"));
        assert_eq!(clean_path("/caf%C3%A9").as_deref(), Some("/café"));
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a\\b",
            "/a%00",
            "/%ff",
            "/./a",
        ] {
            assert_eq!(clean_path(bad), None, "{bad}");
        }
    }
}
