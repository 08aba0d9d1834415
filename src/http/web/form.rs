//! A posted form (`application/x-www-form-urlencoded`) as its list of name/value pairs:
//! a multi-select sends one pair per choice, which a struct extractor cannot hold.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

/// Largest form accepted (the longest field is the supplementary text).
const MAX_FORM: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty()).collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn parse(bytes: &[u8]) -> Form {
        Form(form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = (StatusCode, &'static str);

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let urlencoded = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the form as application/x-www-form-urlencoded"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| (StatusCode::BAD_REQUEST, "unreadable form"))?;
        if bytes.len() > MAX_FORM {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"));
        }
        Ok(Form::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_names_are_all_kept() {
        let f = super::Form::parse(b"items=a&items=b&name=+Li+Si+&empty=");
        assert_eq!(f.all("items"), vec!["a", "b"]);
        assert_eq!(f.get("name"), Some("Li Si"));
        assert_eq!(f.get("empty"), None);
        assert!(!f.checked("missing"));
    }
}
