//! The web UI (SPEC §9): the files in `dashboard/`, compiled into the binary
//! so nothing is read from disk at run time and no Node build is needed.
//!
//! The table is explicit rather than a directory macro (no extra crate); a
//! test fails when a file in `dashboard/` is missing from it.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/", $path)) as &[u8])),*]
    };
}

/// (path under `dashboard/`, contents)
static ASSETS: &[(&str, &[u8])] = assets![
    "index.html",
    "style.css",
    "favicon.svg",
    "app.js",
    "api.js",
    "dom.js",
    "render.js",
    "mcp.js",
    "edits.js",
    "views/approve-extras.js",
    "views/detail.js",
    "views/grants.js",
    "views/history.js",
    "views/login.js",
    "views/mcp.js",
    "views/pending.js",
    "views/policy.js",
    "views/widgets.js",
];

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Response {
    match ASSETS.iter().find(|(p, _)| *p == path) {
        Some((p, body)) => {
            let mut resp = (*body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(p)),
            );
            // Revalidate on every load: the binary may have been upgraded.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        None => ApiError::not_found("asset").into_response(),
    }
}

/// `GET /`.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /assets/{*path}`.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files(&entry.path(), &format!("{name}/"), out);
            } else if !name.ends_with(".test.mjs") {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_dashboard_file_is_embedded() {
        let mut on_disk = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard"),
            "",
            &mut on_disk,
        );
        for f in on_disk {
            assert!(
                ASSETS.iter().any(|(p, _)| *p == f),
                "dashboard/{f} is not embedded: add it to ASSETS"
            );
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("views/pending.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
    }
}
