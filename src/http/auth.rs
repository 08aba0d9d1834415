//! Who is calling: reviewers, leads and admins by bearer token (stored only as a
//! hash); applicants by their draft's secret (header `X-Draft-Secret`). Also the JSON
//! extractor whose rejections use the API's problem shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::Shared;
use super::error::{ApiError, DRAFT_CHALLENGE};
use crate::domain::{Actor, FieldError, Role};
use crate::store::DraftRecord;

/// A reviewer, lead or admin, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Staff(pub Actor);

impl Staff {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs one of the roles: {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    }
}

impl FromRequestParts<Shared> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        staff_by_token(state, token).await
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token> (appealflow tokens create)"))?;
    header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be: Bearer <token>"))
}

/// The staff member a token belongs to, unless it is unknown or revoked.
pub async fn staff_by_token(state: &Shared, token: &str) -> Result<Staff, ApiError> {
    crate::app::access::staff_by_token(state.engine(), token)
        .await?
        .map(Staff)
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
}

/// Checks a draft's secret; the same answer for an unknown draft and a wrong secret.
pub async fn draft_access(state: &Shared, id: &str, secret: Option<&str>) -> Result<DraftRecord, ApiError> {
    let secret =
        secret.ok_or_else(|| ApiError::challenge(DRAFT_CHALLENGE, "send the draft's secret in X-Draft-Secret"))?;
    Ok(state.drafts.open(id, secret).await?)
}

/// The applicant's draft secret header.
pub struct DraftSecret(pub Option<String>);

impl FromRequestParts<Shared> for DraftSecret {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Shared) -> Result<Self, Self::Rejection> {
        Ok(DraftSecret(parts.headers.get("x-draft-secret").and_then(|v| v.to_str().ok()).map(str::to_string)))
    }
}

/// Whether a Content-Type is `application/json`, exactly, with or without parameters
/// (`application/json; charset=utf-8`); `application/jsonx` is not.
pub fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// JSON body whose rejections are problem documents naming what is wrong (without
/// repeating the offending value).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::field("content-type", "send the body as application/json"));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", e.body_text())
            } else {
                ApiError::field("body", e.body_text())
            }
        })?;
        crate::app::parse_json::<T>(std::str::from_utf8(&bytes).map_err(|_| ApiError::field("body", "not UTF-8"))?)
            .map(JsonBody)
            .map_err(|e| match e {
                crate::engine::EngineError::Invalid(errors) => ApiError::invalid(errors),
                other => ApiError::invalid(vec![FieldError::new("body", other.to_string())]),
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_is_matched_exactly_with_parameters() {
        for yes in ["application/json", "application/json; charset=utf-8", "Application/JSON ;charset=UTF-8"] {
            assert!(super::is_json(yes), "{yes}");
        }
        for no in ["application/jsonx", "application/json-seq", "text/json", "", "application/x-json"] {
            assert!(!super::is_json(no), "{no}");
        }
    }
}
