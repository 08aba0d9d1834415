//! One error type for the HTTP surface: RFC 9457 problem details with a stable `code`
//! (also the last segment of `type`), the fields at fault, and no internals — a 5xx
//! response says only that something failed; the details go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::intake::IntakeError;
use crate::app::problem::{self, Classify, Kind};
use crate::domain::FieldError;
use crate::engine::EngineError;
use crate::store::StoreError;

pub const PROBLEM_BASE: &str = "https://appealflow.dev/problems/";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `invalid-input`, `not-found`, `conflict`, ...
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members (e.g. the appeal's current state and version on a conflict).
    pub extra: Option<serde_json::Value>,
    pub retry_after: Option<u64>,
    /// A 401's `WWW-Authenticate` challenge: how to authenticate.
    pub challenge: Option<&'static str>,
}

/// The challenge of a 401 for staff routes.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"appealflow\"";
/// The challenge of a 401 for an applicant's draft (its secret in `X-Draft-Secret`).
pub const DRAFT_CHALLENGE: &str = "DraftSecret realm=\"appealflow-drafts\"";
/// The challenge of a 401 for the facial-recognition provider's signed callback.
pub const SIGNATURE_CHALLENGE: &str = "HMAC-SHA256 realm=\"appealflow-provider\"";

/// RFC 9457 problem details; `code` is stable (also the last segment of `type`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    #[schema(value_type = Vec<FieldError>)]
    errors: &'a [FieldError],
    /// A conflict's: the appeal's current state.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    state: Option<String>,
    /// A conflict's: the appeal's current version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    version: Option<i64>,
    /// Any other extra members (e.g. readiness's `down`): free-form, so not documented
    /// member by member (the schema allows other members).
    #[serde(flatten)]
    #[schema(ignore)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            errors: vec![],
            extra: None,
            retry_after: None,
            challenge: None,
        }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        ApiError { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input", "Invalid input", detail) }
    }

    pub fn field(field: &str, rule: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, rule)])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A 401 for staff: a bearer token is wanted.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::challenge(BEARER_CHALLENGE, detail)
    }

    /// A 401 answered with this `WWW-Authenticate` challenge.
    pub fn challenge(challenge: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", detail)
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn too_many(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                "slow down and try again later",
            )
        }
    }

    /// A failure inside appealflow: logged in full, answered without details.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "the request could not be completed")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Extra members never shadow the standard ones; a conflict's state and version
        // are members of their own.
        let mut extra = match self.extra {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        extra.retain(|k, _| !["type", "title", "status", "detail", "code", "errors"].contains(&k.as_str()));
        let state = extra.get("state").and_then(serde_json::Value::as_str).map(str::to_string);
        let version = extra.get("version").and_then(serde_json::Value::as_i64);
        if state.is_some() {
            extra.remove("state");
        }
        if version.is_some() {
            extra.remove("version");
        }
        let body = Problem {
            kind: format!("{PROBLEM_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            state,
            version,
            extra,
        };
        let mut response = (self.status, serde_json::to_string(&body).expect("problems serialise")).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl ApiError {
    /// The one mapping of a classified problem to an HTTP answer.
    pub fn from_problem(p: problem::Problem) -> Self {
        let status = match p.kind {
            Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::NotAllowed => StatusCode::FORBIDDEN,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::TooMany { retry_after } => return ApiError::too_many(retry_after),
            Kind::Internal => return ApiError::internal(p.detail),
        };
        ApiError {
            status,
            code: p.code,
            title: p.title,
            detail: p.detail,
            errors: p.errors,
            extra: p.extra,
            retry_after: None,
            challenge: None,
        }
    }

    /// The same problem with its fields named as query parameters (`query.state`).
    pub fn in_query(mut self) -> Self {
        for e in &mut self.errors {
            if !e.field.starts_with("query.") {
                e.field = format!("query.{}", e.field);
            }
        }
        if !self.errors.is_empty() {
            self.detail = self.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        }
        self
    }
}

macro_rules! classified {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                ApiError::from_problem(e.problem())
            }
        }
    )*};
}

classified!(
    EngineError,
    IntakeError,
    StoreError,
    crate::app::ServiceError,
    crate::app::work::ManualTaskError,
    crate::app::limits::LimitError,
    crate::app::drafts::DraftError,
);

pub type ApiResult<T> = Result<T, ApiError>;
