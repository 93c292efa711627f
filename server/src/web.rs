//! The phone app (a PWA, built from `web/src` into `web/dist`), embedded in the binary so that
//! a deployment is one file: `/` and the app's own files, the service worker at the root (its
//! scope is the whole app), and every other page path answered with the app (it routes by
//! `#/…`). The API and `/sync` are never shadowed: an unknown `/api/…` path stays a JSON 404.

use axum::Router;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::AppError;

struct Asset {
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: concat!("/", $path),
            bytes: include_bytes!(concat!("../../web/dist/", $path)),
            content_type: $type,
        }
    };
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: [Asset; 6] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("sw.js", "text/javascript; charset=utf-8"),
    asset!("automerge.wasm", "application/wasm"),
    asset!("manifest.webmanifest", "application/manifest+json"),
    asset!("icon.svg", "image/svg+xml"),
];

/// Scripts only from here (and automerge's wasm compiled), connections only to here (the API
/// and `/sync`), never framed.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self'; img-src 'self' data:; style-src 'self'; worker-src 'self'; \
    manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<AppState> {
    let mut router = Router::new().route("/", get(|| async { serve(&INDEX) }));
    for asset in &ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    // Checked again on every load: the service worker (which must be, to update at all) and
    // the rest, which the worker keeps for offline use anyway.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if asset.path == "/index.html" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

/// Unknown paths: the app for a page the browser asks for (a link into `#/…` routes, a
/// reload), a JSON 404 for everything else, the API and `/sync` above all.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let ours = path == "/sync" || path == "/api" || path.starts_with("/api/");
    if method == Method::GET && !ours && !path.contains('.') {
        return serve(&INDEX);
    }
    AppError::NotFound("no such route").into_response()
}
