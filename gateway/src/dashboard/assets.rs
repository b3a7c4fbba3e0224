//! The dashboard's files, embedded in the binary at build time (no CDN, no files to deploy):
//! `GET /` is `dashboard/index.html`, `GET /dashboard/{name}` the other files.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::edge::reply;
use crate::error::GatewayError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../../dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../dashboard/app.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../dashboard/charts.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../../dashboard/style.css"),
    },
];

/// Everything the page loads comes from this origin; the socket is `ws(s)://` to it.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   style-src 'self' 'unsafe-inline'; script-src 'self'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'none'";

fn serve(asset: &Asset) -> Response {
    let mut resp = (StatusCode::OK, asset.body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Small files; always revalidated so an upgraded gateway never serves a stale page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `GET /` (and `GET /dashboard`, `/dashboard/`).
pub async fn index() -> Response {
    find("index.html")
        .map(serve)
        .unwrap_or_else(|| not_found("/"))
}

/// `GET /dashboard/{name}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match find(&name) {
        Some(asset) => serve(asset),
        None => not_found(&format!("/dashboard/{name}")),
    }
}

/// `GET /favicon.ico`: the page declares its icon inline; answer browsers that ask anyway.
pub async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn not_found(path: &str) -> Response {
    reply::error(&GatewayError::NotFound(path.chars().take(200).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_page_references_only_them() {
        let page = find("index.html").unwrap().body;
        for a in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        // Whatever the page loads from /dashboard/ must be one of the embedded files.
        for part in page.split("/dashboard/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-' || *c == '_')
                .collect();
            assert!(
                find(&name).is_some(),
                "index.html loads /dashboard/{name}, not embedded"
            );
        }
        for external in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "href='http",
            "@import",
        ] {
            assert!(
                !page.contains(external),
                "index.html loads something external"
            );
        }
    }
}
