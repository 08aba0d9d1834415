//! The headers every page carries, and the refusal of form posts from other sites.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// No inline script or style, nothing from elsewhere, never framed. Documents shown to
/// reviewers are same-origin frames (PDFs) and images.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                       frame-ancestors 'none'";

pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A form post whose `Origin` (or, without one, `Sec-Fetch-Site`) says it came from
/// another site is refused before any handler runs: the cookies are SameSite=Strict and
/// the console's forms carry a CSRF token besides; this also covers the sign-in form,
/// which has no session yet.
pub async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD && !same_origin(&request) {
        return (StatusCode::FORBIDDEN, "this form was posted from another site; open the page here and send it again")
            .into_response();
    }
    next.run(request).await
}

fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    // Browsers that send Sec-Fetch-Site say where the post came from outright.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        // "null" is an opaque origin (a sandboxed frame, a file): never this site.
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        return !host.is_empty() && origin_host.eq_ignore_ascii_case(host);
    }
    // Neither header: not a browser's cross-site post (curl, a test client).
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::post("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).expect("a request")
    }

    #[test]
    fn posts_from_another_origin_are_not_same_origin() {
        assert!(same_origin(&post(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&post(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&post(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        assert!(!same_origin(&post(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&post(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&post(&[("sec-fetch-site", "same-site"), ("origin", "http://127.0.0.1:8080")])));
        assert!(same_origin(&post(&[])));
    }
}
