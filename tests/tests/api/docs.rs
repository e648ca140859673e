//! `/docs`: the API reference page and the Redoc bundle it loads, both served
//! by the server itself (no CDN), to anyone, under a strict
//! Content-Security-Policy. Whether Redoc renders under that policy is checked
//! by hand in a browser (see command-api/assets/README.md).

use crate::support::*;
use reqwest::Method;

/// The bundle as vendored: the server must serve exactly these bytes.
fn vendored_bundle() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../command-api/assets/redoc.standalone.js"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of `attribute="…"` in the first tag opening with `tag`.
fn attribute(html: &str, tag: &str, attribute: &str) -> String {
    let start = html
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag} in {html}"));
    let end = start + html[start..].find('>').expect("tag end");
    let open = format!(" {attribute}=\"");
    let at = start
        + html[start..end]
            .find(&open)
            .unwrap_or_else(|| panic!("{tag} has no {attribute}: {html}"))
        + open.len();
    html[at..at + html[at..].find('"').expect("closing quote")].to_owned()
}

/// A link on the page at `/docs`, as the browser resolves it.
fn resolve(link: &str) -> String {
    if link.starts_with('/') {
        link.to_owned()
    } else {
        format!("/{link}")
    }
}

/// One directive of a policy, e.g. `script-src` → `'self'`.
fn directive<'a>(policy: &'a str, name: &str) -> Option<&'a str> {
    policy
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name)?.strip_prefix(' '))
}

fn assert_strict_headers(r: &Resp) {
    let policy = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{}: no Content-Security-Policy", r.what));
    assert_eq!(
        directive(&policy, "default-src"),
        Some("'none'"),
        "{policy}"
    );
    assert_eq!(directive(&policy, "script-src"), Some("'self'"), "{policy}");
    assert_eq!(
        directive(&policy, "connect-src"),
        Some("'self'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    for name in ["base-uri", "form-action", "frame-ancestors"] {
        assert_eq!(directive(&policy, name), Some("'none'"), "{policy}");
    }
    // No CDN, no host at all: only 'self', 'none', 'unsafe-inline' and data:.
    for source in policy.split(';').flat_map(|d| d.split_whitespace().skip(1)) {
        assert!(
            ["'self'", "'none'", "'unsafe-inline'", "data:"].contains(&source),
            "{source} in {policy}"
        );
    }
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{}",
        r.what
    );
}

#[tokio::test]
async fn the_reference_page_and_its_bundle_are_served_by_the_server_to_anyone() {
    let app = spawn_app().await;

    let page = app.anon.get("/docs").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_strict_headers(&page);
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//"),
        "the page loads nothing from elsewhere: {html}"
    );
    // Every script is a file of this server: the policy allows no inline one.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    for script in &scripts {
        let (tag, rest) = script.split_once('>').expect("tag end");
        assert!(tag.contains(" src=\""), "inline script: {script}");
        assert!(
            rest.starts_with("</script>"),
            "inline script body: {script}"
        );
    }

    // The document the page renders is public too.
    let spec = app
        .anon
        .get(&resolve(&attribute(&html, "<redoc", "spec-url")))
        .await;
    assert_eq!(spec.status, 200, "{}", spec.what);
    assert_eq!(spec.json()["openapi"], "3.1.0");

    let vendored = vendored_bundle();
    let bundle_path = resolve(&attribute(&html, "<script", "src"));
    let bundle = app.anon.get(&bundle_path).await;
    assert_eq!(bundle.status, 200, "{}", bundle.what);
    assert_eq!(
        bundle.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_strict_headers(&bundle);
    assert_eq!(bundle.bytes.len(), vendored.len(), "{bundle_path}");
    assert!(
        bundle.bytes == vendored,
        "{bundle_path}: the vendored bytes"
    );
    // Cached for good only because the path names the release it serves.
    let head = String::from_utf8_lossy(&vendored[..200]);
    let version = head
        .split("Version: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in the bundle's header: {head}"));
    assert!(
        bundle_path.contains(&format!("/redoc-{version}/")),
        "{bundle_path} names {version}"
    );
    let cache = bundle.header("cache-control").unwrap_or_default();
    assert!(cache.contains("immutable"), "{cache}");
    assert_eq!(
        page.header("cache-control").as_deref(),
        Some("no-cache"),
        "the page is revalidated, so an upgrade's new bundle path is seen"
    );

    // HEAD answers the headers alone.
    let head_page = app.anon.send(Method::HEAD, "/docs", &[], None).await;
    assert_eq!(head_page.status, 200);
    assert!(head_page.bytes.is_empty());
    assert_strict_headers(&head_page);
    let head_bundle = app.anon.send(Method::HEAD, &bundle_path, &[], None).await;
    assert_eq!(head_bundle.status, 200);
    assert_eq!(
        head_bundle.header("content-length"),
        Some(vendored.len().to_string())
    );

    // Credentials change nothing, not even wrong ones.
    let admin = app.admin.get("/docs").await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.bytes, page.bytes);
    let wrong = app
        .anon
        .with_credentials(&[("x-api-key", "no-such-key"), ("x-api-secret", "nope")])
        .get("/docs")
        .await;
    assert_eq!(wrong.status, 200, "{}", wrong.text());
}

#[tokio::test]
async fn reading_the_reference_costs_an_api_key_none_of_its_rate_limit() {
    // A burst of 2 per key: a third limited call would be refused.
    let app = spawn_app_with(&[("EXPEREON_RATE_LIMIT", "1")]).await;
    let org = app.create_org("Reader Ltd").await;
    for _ in 0..6 {
        let r = org.get("/docs").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = org.get("/api/v1/invoices?limit=1").await;
    assert_eq!(r.status, 200, "the key's burst is untouched: {}", r.text());
}
