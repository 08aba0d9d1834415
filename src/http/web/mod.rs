//! The web pages: the applicant's appeal pages at `/` (zh-CN and en) and the reviewers'
//! console at `/console`. Server-rendered HTML (maud, checked at compile time), enhanced
//! by htmx where a browser runs scripts and whole without it. The pages call the app
//! services only; they share nothing with the JSON API's handlers but the app layer and
//! the server state.

// Handlers answer `Result<_, Page>`: an error is a whole page, built once per failed request.
#![allow(clippy::result_large_err)]

mod assets;
mod console;
mod cookies;
mod deadline;
mod dev_face;
mod form;
mod i18n;
mod layout;
mod portal;
mod security;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::http::Shared;

pub use i18n::Lang;
pub use layout::Page;

/// Settings of the web pages.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Cookies carry `Secure` (set when appealflow is served over TLS, directly or behind
    /// a proxy that terminates it).
    pub secure_cookies: bool,
    /// How long a staff session lives without use, and at most.
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// The development facial-recognition provider: its page signs a callback with this
    /// secret and posts it to `callback` (this server's own `/v1/facial-recognition`), as
    /// a real provider would. `None`: applicants are sent to no provider.
    pub dev_face: Option<DevFace>,
}

#[derive(Debug, Clone)]
pub struct DevFace {
    pub secret: Vec<u8>,
    pub callback: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            secure_cookies: false,
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(8 * 3600),
            dev_face: None,
        }
    }
}

/// Every page, under the security headers.
pub fn routes(max_upload: u64) -> Router<Shared> {
    let pages = Router::new()
        .merge(portal::routes())
        .merge(console::routes())
        .merge(dev_face::routes())
        .layer(axum::middleware::from_fn(security::same_origin_posts))
        // An upload is one document plus its form fields.
        .layer(DefaultBodyLimit::max(usize::try_from(max_upload).unwrap_or(usize::MAX).saturating_add(64 * 1024)));
    Router::new().merge(pages).merge(assets::routes()).layer(axum::middleware::from_fn(security::headers))
}

/// A redirect after a post (303 See Other).
fn see_other(to: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = axum::http::StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(to) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    r
}
