//! The API reference at `GET /docs`: Redoc rendering `GET /api/v1/openapi.json`.
//!
//! Redoc's bundle is vendored (`assets/`, see its README) and compiled into
//! the binary, so the reference works with no network and the page's
//! Content-Security-Policy can refuse every origin but this server's. Both
//! routes are public: they show only what `openapi.json` already shows.

use super::Route;
use axum::http::header;
use axum::response::IntoResponse;

/// The vendored Redoc release. The bundle's path carries it, so browsers may
/// keep the bundle for good and still fetch the next release's.
pub const REDOC_VERSION: &str = "3.0.1";

/// `assets/redoc.standalone.js`, byte for byte as the npm package ships it.
pub const REDOC_BUNDLE: &[u8] = include_bytes!("../../assets/redoc.standalone.js");

/// Only what Redoc was seen to need in a browser, everything else refused:
/// - `script-src 'self'`: the bundle, and no inline script (the page has none);
/// - `style-src 'unsafe-inline'`: Redoc's styled-components write `<style>`
///   elements and `style` attributes at run time; it loads no stylesheet;
/// - `font-src data:`: its icon font is a `data:` URL inside those styles;
/// - `img-src data:`: the page's empty favicon (spares a 404 per visit);
/// - `connect-src 'self'`: fetching `openapi.json`. Redoc's telemetry (off
///   through `disable-telemetry` anyway) and its "API docs by" logo, which
///   point at Redocly's servers, stay blocked: nothing leaves the network;
/// - `default-src 'none'` refuses the rest (workers, frames, media);
///   `base-uri`, `form-action` and `frame-ancestors` do not fall back to it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Links are relative, so the page also works behind a proxy that serves
/// the API under a path prefix.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Expereon API reference</title>
<link rel="icon" href="data:,">
</head>
<body>
<noscript>The API reference needs JavaScript. The OpenAPI document itself is at <a href="api/v1/openapi.json">api/v1/openapi.json</a>.</noscript>
<redoc spec-url="api/v1/openapi.json" disable-telemetry="true"></redoc>
<script type="module" src="docs/redoc-3.0.1/redoc.standalone.js"></script>
</body>
</html>
"#;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::GET_OPEN_API_DOCUMENT, crate::openapi::serve),
        Route::new(&operations::GET_API_REFERENCE, page),
        Route::new(&operations::GET_API_REFERENCE_SCRIPT, bundle),
    ]
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidated: after an upgrade the page names the new bundle.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page links out (Redocly, the assistants Redoc offers): the
            // server's address is no business of theirs.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}

async fn bundle() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // Its path names its version: these bytes never change under it.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        REDOC_BUNDLE,
    )
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use crate::openapi::prelude::*;

    pub const GET_OPEN_API_DOCUMENT: Op = Op {
        path: "/api/v1/openapi.json",
        operation_id: "getOpenApiDocument",
        tag: SYSTEM,
        summary: "This OpenAPI 3.1 document",
        description: "No credentials needed.",
        success: Success::Json("OpenApiDocument"),
        ..BASE
    };

    pub const GET_API_REFERENCE: Op = Op {
        path: "/docs",
        operation_id: "getApiReference",
        tag: SYSTEM,
        summary: "This document, browsable",
        description: "An HTML page rendering this document with Redoc, whose script the server itself serves (`/docs/redoc-3.0.1/redoc.standalone.js`): it works offline, and its `Content-Security-Policy` lets it load nothing from elsewhere. No credentials needed.",
        success: Success::Text("text/html"),
        ..BASE
    };

    pub const GET_API_REFERENCE_SCRIPT: Op = Op {
        path: "/docs/redoc-3.0.1/redoc.standalone.js",
        operation_id: "getApiReferenceScript",
        tag: SYSTEM,
        summary: "The API reference's script",
        description: "Redoc 3.0.1's standalone bundle, as published (MIT), for `/docs`. Its path names its version, so it may be cached for good (`Cache-Control: immutable`). No credentials needed.",
        success: Success::Text("text/javascript"),
        ..BASE
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route and the page must change with the bundle, or browsers keep
    /// the old one under the new name's cache rules.
    #[test]
    fn the_bundle_is_the_release_its_path_names() {
        let head = String::from_utf8_lossy(&REDOC_BUNDLE[..200]);
        assert!(
            head.contains(&format!("Version: {REDOC_VERSION}\n")),
            "assets/redoc.standalone.js is not Redoc {REDOC_VERSION}: {head}"
        );
        let path = format!("docs/redoc-{REDOC_VERSION}/redoc.standalone.js");
        assert!(PAGE.contains(&format!("src=\"{path}\"")), "{PAGE}");
        assert_eq!(
            operations::GET_API_REFERENCE_SCRIPT.path,
            format!("/{path}"),
            "the bundle's route names {REDOC_VERSION}"
        );
    }

    #[test]
    fn the_page_runs_no_inline_script_and_loads_nothing_from_elsewhere() {
        let scripts: Vec<&str> = PAGE.split("<script").skip(1).collect();
        assert_eq!(scripts.len(), 1, "{PAGE}");
        for script in scripts {
            let tag = &script[..script.find('>').unwrap_or(script.len())];
            assert!(tag.contains(" src=\""), "inline script: {script}");
            assert!(script.contains("</script>"), "{script}");
            let body = &script[script.find('>').unwrap() + 1..script.find("</script>").unwrap()];
            assert!(body.trim().is_empty(), "inline script: {script}");
        }
        assert!(!PAGE.contains("http:") && !PAGE.contains("https:") && !PAGE.contains("//"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    }
}
