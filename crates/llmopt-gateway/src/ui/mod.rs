//! `GET /ui`: the dashboard, a few static files embedded in the binary.
//!
//! Plain HTML, CSS and JavaScript with no build step (the files under `ui/` are what the
//! browser gets), and one vendored chart library, uPlot (MIT, `ui/vendor/uplot/`). The pages
//! hold no data: they ask for a key or token, keep it in the tab's `sessionStorage`, and read
//! everything through the authenticated JSON API and `/api/stream`, so a client key sees its own
//! tenant only and the admin's buttons work with the admin token alone, exactly as the API
//! decides. That is why these routes need no key.
//!
//! Every answer carries a Content-Security-Policy that allows scripts and connections to this
//! origin only (styles also inline, which uPlot sets on its elements), and is never cached
//! without revalidation, so a new binary's dashboard is picked up at the next load.

use axum::{
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::error::ApiError;

/// (path under `/ui/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../ui/index.html")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../ui/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/app.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../ui/favicon.svg")),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../ui/vendor/uplot/LICENSE"),
    ),
];

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded file at `path` (relative to `/ui/`), if any.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|(name, _, _)| *name == path).map(|(_, kind, bytes)| (*kind, *bytes))
}

fn serve(path: &str) -> Response {
    let Some((content_type, bytes)) = asset(path) else {
        return ApiError::not_found(format!("no dashboard file `/ui/{path}`")).into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /ui` and `GET /ui/`: the dashboard's page (its sections are `#/…` fragments).
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{*path}`: the page's scripts, styles and the chart library.
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_files_that_are_embedded() {
        let page = std::str::from_utf8(asset("index.html").unwrap().1).unwrap();
        let mut named = 0;
        for attribute in ["src=\"/ui/", "href=\"/ui/"] {
            for (index, _) in page.match_indices(attribute) {
                let rest = &page[index + attribute.len()..];
                let path = &rest[..rest.find('"').unwrap()];
                assert!(
                    asset(path).is_some(),
                    "index.html names /ui/{path}, which is not embedded"
                );
                named += 1;
            }
        }
        assert!(named >= 4, "the page loads its script, styles and uPlot: {named} files named");
    }

    #[test]
    fn the_vendored_chart_library_keeps_its_licence_and_version() {
        let licence = std::str::from_utf8(asset("vendor/uplot/LICENSE").unwrap().1).unwrap();
        assert!(licence.starts_with("The MIT License"));
        let library = asset("vendor/uplot/uPlot.iife.min.js").unwrap().1;
        assert!(library.starts_with(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
    }
}
