//! One error type for the HTTP surface: RFC 9457 problem details with a stable `code`
//! (also the last segment of `type`), the fields at fault, and no internals — a 5xx
//! response says only that something failed; the details go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::intake::IntakeError;
use crate::domain::FieldError;
use crate::engine::{EngineError, ErrorClass};
use crate::store::StoreError;
use crate::workflow::Refusal;

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
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, title, detail: detail.into(), errors: vec![], extra: None, retry_after: None }
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

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", detail)
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
        // Extra members never shadow the standard ones.
        let extra = self.extra.as_ref().map(|e| match e {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter(|(k, _)| !["type", "title", "status", "detail", "code", "errors"].contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        });
        let body = Problem {
            kind: format!("{PROBLEM_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            extra: extra.as_ref(),
        };
        let mut response = (self.status, serde_json::to_string(&body).expect("problems serialise")).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::NotFound(_) => ApiError::not_found(e.to_string()),
            EngineError::Invalid(errors) => ApiError::invalid(errors.clone()),
            EngineError::Conflict { state, version } => ApiError {
                extra: Some(serde_json::json!({ "state": state, "version": version })),
                ..ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", e.to_string())
            },
            EngineError::Refused(Refusal::StaleVersion { current, state, .. }) => ApiError {
                extra: Some(serde_json::json!({ "state": state, "version": current })),
                ..ApiError::new(StatusCode::CONFLICT, "stale-version", "Stale version", e.to_string())
            },
            EngineError::Refused(Refusal::WrongState { state, version, .. }) => ApiError {
                extra: Some(serde_json::json!({ "state": state, "version": version })),
                ..ApiError::new(StatusCode::CONFLICT, "wrong-state", "Not allowed in this state", e.to_string())
            },
            EngineError::Refused(Refusal::WrongRole { .. }) => ApiError::forbidden(e.to_string()),
            EngineError::Refused(Refusal::UnknownTransition { .. }) => ApiError::not_found(e.to_string()),
            EngineError::Refused(Refusal::GuardFailed { guard, .. }) if guard == "holds_claim" => {
                ApiError::forbidden(e.to_string())
            }
            EngineError::Refused(Refusal::GuardFailed { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", "Refused by a rule", e.to_string())
            }
            EngineError::IdempotencyMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                e.to_string(),
            ),
            EngineError::OpenAppeal { ticket, state, .. } => ApiError {
                extra: Some(serde_json::json!({ "open_ticket": ticket, "state": state })),
                ..ApiError::new(StatusCode::CONFLICT, "open-appeal", "An appeal is already open", e.to_string())
            },
            EngineError::Stale(_) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", e.to_string()),
            EngineError::Refused(Refusal::Calendar(_)) | EngineError::Effects(_) | EngineError::Store(_) => {
                ApiError::internal(&e)
            }
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Invalid(errors) => ApiError::invalid(errors),
            IntakeError::Incomplete(checklist) => ApiError {
                extra: Some(serde_json::json!({ "missing": checklist.missing })),
                ..ApiError::invalid(checklist.problems.clone())
            },
            IntakeError::Ineligible(why) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "ineligible", "Cannot appeal", why.to_string())
            }
            IntakeError::NotResubmittable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not-resubmittable", "Cannot be continued", e.to_string())
            }
            IntakeError::Refused(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", "Refused by a rule", m)
            }
            IntakeError::NoMatch => ApiError::not_found(e.to_string()),
            IntakeError::Engine(e) => e.into(),
            IntakeError::Blob(b) => match e_class(&b) {
                ErrorClass::BadInput => ApiError::field("sha256", b.to_string()),
                _ => ApiError::internal(b),
            },
        }
    }
}

fn e_class(b: &crate::adapters::blobs::BlobError) -> ErrorClass {
    match b {
        crate::adapters::blobs::BlobError::NotFound { .. }
        | crate::adapters::blobs::BlobError::InvalidDigest { .. } => ErrorClass::BadInput,
        _ => ErrorClass::Internal,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::app::limits::LimitError> for ApiError {
    fn from(e: crate::app::limits::LimitError) -> Self {
        match e {
            crate::app::limits::LimitError::Limited(l) => ApiError::too_many(l.retry_after_secs),
            crate::app::limits::LimitError::Store(e) => ApiError::internal(e),
        }
    }
}
