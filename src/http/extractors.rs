//! Extractors shared by the JSON API's handlers: path parameters, query pairs, the
//! `Idempotency-Key` and `If-Match` headers, an empty body, and role-checked tokens.
//! Each header is parsed here and nowhere else.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Shared;
use super::api::{ADMINS, LEADS};
use super::auth::Staff;
use super::error::{ApiError, ApiResult};
use crate::app::{parse_json, parse_ticket};
use crate::domain::{Actor, FieldError, TicketNumber};

/// A path's parameters; a malformed one is a problem document, not axum's text.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Params(v))
            .map_err(|e| ApiError::field("path", e.body_text()))
    }
}

/// The query string as name/value pairs (repeated names kept), checked against `known`.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryPairs(v))
            .map_err(|e| ApiError::field("query", e.body_text()))
    }
}

impl QueryPairs {
    pub fn check_known(&self, known: &[&str]) -> ApiResult<()> {
        let unknown: Vec<FieldError> = self
            .0
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, _)| {
                FieldError::new(
                    format!("query.{}", k.chars().take(40).collect::<String>()),
                    format!("unknown parameter (known: {})", known.join(", ")),
                )
            })
            .collect();
        if unknown.is_empty() { Ok(()) } else { Err(ApiError::invalid(unknown)) }
    }

    pub fn one(&self, name: &str) -> ApiResult<Option<&str>> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::field(&format!("query.{name}"), "give it once"));
        }
        Ok(first)
    }

    pub fn number(&self, name: &str, default: i64, min: i64, max: i64) -> ApiResult<i64> {
        match self.one(name)? {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(&format!("query.{name}"), format!("an integer from {min} to {max}"))),
            },
        }
    }
}

/// The `Idempotency-Key` header: absent, or 1 to [`MAX_KEY_CHARS`] visible ASCII
/// characters. Parsed here only, for every route that takes it.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, FieldError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            FieldError::new("Idempotency-Key", format!("1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID, say)"))
        })
}

/// `Idempotency-Key` alone (the applicant's commands, which take no `If-Match`).
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        idempotency_key(&parts.headers).map(IdempotencyKey).map_err(|e| ApiError::invalid(vec![e]))
    }
}

/// `Idempotency-Key` and `If-Match` of a POST.
pub struct Preconditions {
    pub key: Option<String>,
    pub if_match: Option<i64>,
}

pub const MAX_KEY_CHARS: usize = 200;

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Preconditions::from_headers(&parts.headers)
    }
}

impl Preconditions {
    fn from_headers(headers: &HeaderMap) -> ApiResult<Self> {
        let mut problems = Vec::new();
        let key = idempotency_key(headers).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        let if_match = match headers.get(header::IF_MATCH).map(|v| v.to_str()) {
            None => None,
            Some(raw) => {
                let version = raw
                    .ok()
                    .map(|r| r.trim().trim_start_matches("W/").trim_matches('"'))
                    .and_then(|v| v.parse::<i64>().ok().filter(|n| *n >= 1 && v.bytes().all(|b| b.is_ascii_digit())));
                if version.is_none() {
                    problems.push(FieldError::new("If-Match", "the appeal's version, a positive integer (e.g. \"3\")"));
                }
                version
            }
        };
        if problems.is_empty() { Ok(Preconditions { key, if_match }) } else { Err(ApiError::invalid(problems)) }
    }
}

/// The body of a command that takes none: nothing, or `{}` (as JSON).
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", e.body_text())
            } else {
                ApiError::field("body", e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        if !content_type.starts_with("application/json") {
            return Err(ApiError::field("content-type", "send no body, or {} as application/json"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::field("body", "not UTF-8"))?;
        match parse_json::<Value>(text) {
            Ok(Value::Object(fields)) => match fields.keys().next() {
                None => Ok(NoBody),
                Some(k) => Err(ApiError::field(
                    "body",
                    format!("unknown field `{}`: this request takes no fields", k.chars().take(40).collect::<String>()),
                )),
            },
            Ok(_) => Err(ApiError::field("body", "invalid type: expected nothing or an empty JSON object")),
            Err(crate::engine::EngineError::Invalid(errors)) => Err(ApiError::invalid(errors)),
            Err(other) => Err(ApiError::field("body", other.to_string())),
        }
    }
}

/// A leader's or an admin's token: checked before the body is read.
pub struct LeadOrAdmin(pub Actor);

impl FromRequestParts<Shared> for LeadOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let staff = Staff::from_request_parts(parts, state).await?;
        staff.require(LEADS)?;
        Ok(LeadOrAdmin(staff.0))
    }
}

/// An admin's token.
pub struct Admin(pub Actor);

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let staff = Staff::from_request_parts(parts, state).await?;
        staff.require(ADMINS)?;
        Ok(Admin(staff.0))
    }
}

pub fn ticket(raw: &str) -> ApiResult<TicketNumber> {
    Ok(parse_ticket(raw)?)
}
