//! Static assets (`[assets]`), through a real server: files found as
//! Cloudflare finds them (`html_handling`), their ETags, ranges and
//! types, the not-found handling, and the default router still reaching
//! the objects beside them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::support::{Server, client, guests, write_config};

/// Status, headers and body of one request with `headers`.
async fn fetch(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client()
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A site: an index, a page, a folder's index, a script, a 404 page in a
/// folder and one at the top.
fn site(dir: &std::path::Path) -> std::path::PathBuf {
    let site = dir.join("site");
    for (path, text) in [
        ("index.html", "<h1>home</h1>"),
        ("about.html", "<h1>about</h1>"),
        ("blog/index.html", "<h1>blog</h1>"),
        ("blog/404.html", "no such post"),
        ("404.html", "no such page"),
        ("app.js", "console.log('0123456789');"),
        ("data/config.json", "{\"a\":1}"),
    ] {
        let file = site.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    std::fs::write(dir.join("secret.txt"), "outside the site").unwrap();
    site
}

fn serve(dir: &std::path::Path, assets: &str) -> Server {
    site(dir);
    let config = format!(
        "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
         [assets]\ndirectory = \"site\"\n{assets}",
        guests().probe
    );
    Server::start(&write_config(dir, &config), &dir.join("data"))
}

#[tokio::test]
async fn files_are_served_with_types_etags_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "not_found_handling = \"404-page\"\n");

    let (status, headers, body) = fetch(&server.url("/"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (200, "<h1>home</h1>"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=0, must-revalidate"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = fetch(&server.url("/"), "GET", &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    let (status, ..) = fetch(&server.url("/"), "GET", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, 200);

    let (status, headers, body) = fetch(&server.url("/app.js"), "GET", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(body.len(), 26);
    let (status, headers, body) =
        fetch(&server.url("/app.js"), "GET", &[("range", "bytes=13-22")]).await;
    assert_eq!((status, body.as_str()), (206, "0123456789"));
    assert_eq!(headers["content-range"], "bytes 13-22/26");
    let (status, headers, _) =
        fetch(&server.url("/app.js"), "GET", &[("range", "bytes=26-")]).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */26");
    let (status, headers, body) = fetch(&server.url("/app.js"), "HEAD", &[]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["content-length"], "26");
    let (_, headers, _) = fetch(&server.url("/data/config.json"), "GET", &[]).await;
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");

    // html_handling = "auto-trailing-slash": one canonical path each.
    let (status, _, body) = fetch(&server.url("/about"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (200, "<h1>about</h1>"));
    for (from, to) in [
        ("/about.html?x=1", "/about?x=1"),
        ("/about/", "/about"),
        ("/blog", "/blog/"),
        ("/blog/index.html", "/blog/"),
        ("/index.html", "/"),
    ] {
        let (status, headers, _) = fetch(&server.url(from), "GET", &[]).await;
        assert_eq!(status, 307, "{from}");
        assert_eq!(headers["location"], to, "{from}");
    }
    let (status, _, body) = fetch(&server.url("/blog/"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (200, "<h1>blog</h1>"));

    // The nearest 404.html, with 404; nothing outside the folder.
    let (status, _, body) = fetch(&server.url("/blog/missing"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (404, "no such post"));
    let (status, _, body) = fetch(&server.url("/nothing/here"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (404, "no such page"));
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"] {
        let (status, _, body) = fetch(&server.url(escape), "GET", &[]).await;
        assert_ne!(body, "outside the site", "{escape}");
        assert_ne!(status, 200, "{escape}");
    }

    // The default router still reaches the objects beside the assets, and
    // a POST is not an asset.
    let (status, _, body) = fetch(&server.url("/PROBE/a/list"), "GET", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, ..) = fetch(&server.url("/about"), "POST", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_single_page_application_gets_its_index_for_every_unknown_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        "not_found_handling = \"single-page-application\"\nhtml_handling = \"none\"\n",
    );
    for path in ["/", "/settings/profile", "/about"] {
        let (status, _, body) = fetch(&server.url(path), "GET", &[]).await;
        assert_eq!((status, body.as_str()), (200, "<h1>home</h1>"), "{path}");
    }
    // html_handling = "none": files at their own paths only.
    let (status, _, body) = fetch(&server.url("/about.html"), "GET", &[]).await;
    assert_eq!((status, body.as_str()), (200, "<h1>about</h1>"));
}
