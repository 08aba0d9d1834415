//! The static files, compiled into the binary and served under their content hash
//! (`/static/<hash>/<name>`), so a page always loads the script it was rendered with
//! and browsers may cache them for good.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::http::Shared;

struct Asset {
    name: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

/// htmx is the npm package `htmx.org` as published (static/vendor, with its licence).
const ASSETS: [Asset; 4] = [
    Asset { name: "htmx.min.js", mime: "text/javascript", bytes: include_bytes!("../../../static/vendor/htmx.min.js") },
    Asset { name: "htmx.LICENSE", mime: "text/plain", bytes: include_bytes!("../../../static/vendor/htmx.LICENSE") },
    Asset { name: "app.js", mime: "text/javascript", bytes: include_bytes!("../../../static/app.js") },
    Asset { name: "app.css", mime: "text/css", bytes: include_bytes!("../../../static/app.css") },
];

fn hashes() -> &'static [String] {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| ASSETS.iter().map(|a| hex::encode(&Sha256::digest(a.bytes)[..8])).collect())
}

/// The URL of a static file, with its content hash.
pub fn url(name: &str) -> String {
    let i = ASSETS.iter().position(|a| a.name == name).expect("a page names a static file that is compiled in");
    format!("/static/{}/{name}", hashes()[i])
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/static/{hash}/{name}", get(asset))
}

async fn asset(Path((hash, name)): Path<(String, String)>) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let asset = &ASSETS[i];
    let mut response = asset.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    // An old hash still gets the file (a page rendered before a deploy), but not for good.
    let cache = if hash == hashes()[i] { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_carry_the_content_hash() {
        let url = super::url("htmx.min.js");
        assert!(url.starts_with("/static/") && url.ends_with("/htmx.min.js"), "{url}");
        assert_eq!(url.len(), "/static/".len() + 16 + "/htmx.min.js".len(), "{url}");
        assert_ne!(super::url("app.js"), super::url("app.css"));
    }
}
