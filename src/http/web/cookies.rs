//! The pages' cookies: the applicant's draft (its id and secret), the visitor's language
//! and the staff session. All HttpOnly and SameSite=Strict; Secure when served over TLS.

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

pub const DRAFT: &str = "af_draft";
pub const LANG: &str = "af_lang";
pub const SESSION: &str = "af_session";

/// The value of the named cookie the request carries.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value; `max_age` `None` is a session cookie, `Some(0)` removes it.
pub fn set(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((name.to_string(), value.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build();
    if let Some(secs) = max_age {
        c.set_max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.to_string()).expect("cookie values are ASCII without control characters")
}

pub fn clear(name: &str, secure: bool) -> HeaderValue {
    set(name, "", Some(0), secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_set_strict() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; af_draft=d1~s2; b=3"));
        assert_eq!(get(&headers, DRAFT).as_deref(), Some("d1~s2"));
        assert_eq!(get(&headers, SESSION), None);
        let v = set(SESSION, "x", None, true);
        let v = v.to_str().unwrap();
        for part in ["af_session=x", "HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
        assert!(clear(DRAFT, false).to_str().unwrap().contains("Max-Age=0"));
    }
}
