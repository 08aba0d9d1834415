//! Applicants' routes: drafts, documents, the facial-recognition callback, submission,
//! resubmission and withdrawal. Applicants cannot log in: every call on a draft carries
//! its secret (`X-Draft-Secret`), and an unknown draft and a wrong secret answer alike.
//! The rules live in `app::drafts`; these translate requests and answers.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Shared;
use super::auth::{DraftSecret, JsonBody, draft_access};
use super::error::{ApiError, ApiResult, DRAFT_CHALLENGE, SIGNATURE_CHALLENGE};
use super::extractors::IdempotencyKey;
use super::upload::{drain, query_kind, receive_document};
use crate::adapters::notify::sign;
use crate::app::access::same_hash;
use crate::app::drafts::DraftError;
use crate::app::intake::NoFiles;
use crate::app::limits::Budget;
use crate::domain::draft::{DraftDocument, FaceResult, FacialRecognition};
use crate::domain::rules::Checklist;
use crate::domain::{Actor, Role};
use crate::engine::EngineError;
use crate::store::DraftRecord;
use crate::workflow::Fire;

/// A provider callback older (or newer) than this is refused: it may be a replay.
const CALLBACK_TOLERANCE_SECS: i64 = 5 * 60;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/drafts", post(create_draft))
        .route("/v1/drafts/{id}", get(show_draft).put(replace_draft))
        .route("/v1/drafts/{id}/checklist", get(draft_checklist))
        // Uploads are read from the raw body and counted against the configured document
        // limit as they stream in (the JSON body limit does not apply to them).
        .route("/v1/drafts/{id}/documents", post(add_document))
        .route("/v1/drafts/{id}/documents/{index}", put(replace_document).delete(remove_document))
        .route("/v1/drafts/{id}/submit", post(submit))
        .route("/v1/facial-recognition", post(facial_recognition))
        .route("/v1/appeals/{ticket}/resubmit", post(resubmit))
        .route("/v1/appeals/{ticket}/withdraw", post(withdraw))
}

// ------------------------------------------------------------------------- drafts

/// `GET /v1/drafts/{id}`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Draft {
    draft_id: String,
    /// The draft as stored (ID numbers only protected and masked): the applicant's own
    /// JSON, free-form here.
    #[schema(value_type = Object)]
    data: Value,
    #[schema(required = true)]
    ticket: Option<String>,
    /// null when the account can no longer be located
    #[schema(required = true)]
    checklist: Option<Checklist>,
    /// RFC 3339 in the workflow's time zone, with its offset (`+08:00` for cn-mainland).
    #[schema(format = DateTime)]
    created_at: String,
    /// As `created_at`.
    #[schema(format = DateTime)]
    updated_at: String,
}

/// `PUT /v1/drafts/{id}`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DraftReplaced {
    draft_id: String,
    /// The draft as stored: the applicant's own JSON, free-form here.
    #[schema(value_type = Object)]
    data: Value,
    checklist: Checklist,
}

/// `DELETE /v1/drafts/{id}/documents/{index}`'s answer: the documents left.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Documents {
    /// The entries as the draft stores them, in `DraftDocument`'s shape.
    #[schema(value_type = Vec<DraftDocument>)]
    documents: Value,
}

/// `POST /v1/drafts`: the draft's fields (no documents) → its id, its secret (shown
/// once; only the hash is kept) and its checklist.
async fn create_draft(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let per_hour = Budget::per(state.config.drafts_per_hour, std::time::Duration::from_secs(3600));
    state.limits.take(&format!("drafts:{}", crate::app::limits::client_key(peer.ip())), per_hour).await?;
    let created = state.drafts.create(body).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/drafts/{id}`: the draft as stored, its ticket once submitted, and its
/// checklist (null when the account can no longer be located).
async fn show_draft(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let checklist = state.drafts.checklist_if_any(&draft).await?;
    // Shown to the applicant: in the workflow's time zone, as the progress answer.
    let calendar = &state.intake.engine().workflow().calendar;
    Ok(Json(Draft {
        draft_id: draft.id,
        data: draft.data,
        ticket: draft.ticket,
        checklist,
        created_at: calendar.local_rfc3339(draft.created_at),
        updated_at: calendar.local_rfc3339(draft.updated_at),
    })
    .into_response())
}

/// `PUT /v1/drafts/{id}`: replaces every field but the documents; refused as a whole,
/// with every problem, when the result is not a valid draft for an account that may appeal.
async fn replace_draft(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let (data, checklist) = state.drafts.replace(&draft, body).await?;
    Ok(Json(DraftReplaced { draft_id: draft.id, data, checklist }).into_response())
}

/// `GET /v1/drafts/{id}/checklist`.
async fn draft_checklist(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    Ok(Json(state.drafts.checklist(&draft).await?).into_response())
}

// ------------------------------------------------------------------------- documents

/// `POST /v1/drafts/{id}/documents?kind=KIND`: one multipart file part → the
/// document's index in the draft.
async fn add_document(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    // A full draft, or one full of this kind, is refused before a byte of the upload is read.
    let kind = query_kind(&uri)?;
    if let Err(full) = state.drafts.room_for(&draft, kind) {
        drain(&mut body.into_data_stream(), state.intake.limits().max_bytes).await;
        return Err(full.into());
    }
    let received = receive_document(&state, &uri, &headers, body).await?;
    let added = state.drafts.add_document(&draft, received).await?;
    let status = if added.repeated { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(added)).into_response())
}

/// `PUT /v1/drafts/{id}/documents/{index}`: replaces one document with a new upload.
async fn replace_document(
    State(state): State<Shared>,
    Path((id, index)): Path<(String, String)>,
    DraftSecret(secret): DraftSecret,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    state.drafts.has_document(&draft, &index)?;
    let received = receive_document(&state, &uri, &headers, body).await?;
    Ok(Json(state.drafts.replace_document(&draft, &index, received).await?).into_response())
}

/// `DELETE /v1/drafts/{id}/documents/{index}`: the remaining documents (later ones
/// move up by one).
async fn remove_document(
    State(state): State<Shared>,
    Path((id, index)): Path<(String, String)>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let documents = state.drafts.remove_document(&draft, &index).await?;
    Ok(Json(Documents { documents }).into_response())
}

// ------------------------------------------------------------------------- callback

/// The provider's result for a draft.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FacialRecognitionResult {
    draft_id: String,
    result: FaceResult,
    provider: String,
    reference: String,
}

/// `POST /v1/facial-recognition`'s answer: the result as recorded on the draft.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct FaceRecorded {
    draft_id: String,
    facial_recognition: FacialRecognition,
}

/// `POST /v1/facial-recognition`: the provider's result for a draft's operator,
/// authenticated by an HMAC-SHA256 signature over `timestamp.body`.
async fn facial_recognition(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Some(secret) = state.config.face_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-configured",
            "Not configured",
            "facial-recognition callbacks are not configured (APPEALFLOW_FACE_SECRET)",
        ));
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", e.body_text())
        } else {
            ApiError::field("body", e.body_text())
        }
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header("x-appealflow-timestamp")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or_else(|| ApiError::challenge(SIGNATURE_CHALLENGE, "send X-Appealflow-Timestamp (unix seconds)"))?;
    if (state.engine().now().timestamp() - timestamp).abs() > CALLBACK_TOLERANCE_SECS {
        return Err(ApiError::challenge(SIGNATURE_CHALLENGE, "the timestamp is more than 5 minutes from now"));
    }
    let given = header("x-appealflow-signature")
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| ApiError::challenge(SIGNATURE_CHALLENGE, "send X-Appealflow-Signature: sha256=<hex>"))?;
    if !same_hash(&given, &sign(secret, timestamp, &body)) {
        return Err(ApiError::challenge(SIGNATURE_CHALLENGE, "the signature does not match"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("body", "not UTF-8"))?;
    let callback = crate::app::parse_json::<FacialRecognitionResult>(text).map_err(|e| match e {
        EngineError::Invalid(errors) => ApiError::invalid(errors),
        other => ApiError::field("body", other.to_string()),
    })?;
    let recorded = state
        .drafts
        .record_face_result(&callback.draft_id, callback.result, &callback.provider, &callback.reference)
        .await
        .map_err(|e| match e {
            DraftError::Denied => ApiError::not_found("no draft has this id"),
            other => other.into(),
        })?;
    Ok(Json(FaceRecorded { draft_id: callback.draft_id, facial_recognition: recorded }).into_response())
}

// ------------------------------------------------------------------------- appeals

/// `POST /v1/drafts/{id}/submit`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Submitted {
    ticket: String,
    state: String,
    /// Screening's rejection, with guidance
    #[schema(required = true)]
    screening: Option<String>,
    /// The earlier appeal this one closed
    #[schema(required = true)]
    superseded: Option<String>,
}

/// `POST /v1/appeals/{ticket}/resubmit`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Resubmitted {
    ticket: String,
    state: String,
    #[schema(required = true)]
    outcome: Option<String>,
    version: i64,
}

/// `POST /v1/appeals/{ticket}/withdraw`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Withdrawn {
    state: String,
    #[schema(required = true)]
    outcome: Option<String>,
    version: i64,
}

/// `POST /v1/drafts/{id}/submit` → the ticket. Refused with every problem at once.
async fn submit(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let submitted = state.drafts.submit(&draft, key.as_deref()).await?;
    let answer = Submitted {
        ticket: submitted.ticket.to_string(),
        state: submitted.state,
        screening: submitted.screening,
        superseded: submitted.superseded,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The draft named by `X-Draft-Id` + `X-Draft-Secret`, if it created appeal `ticket`;
/// the same 404 otherwise.
async fn appeal_access(
    state: &Shared,
    ticket: &str,
    headers: &HeaderMap,
) -> ApiResult<(DraftRecord, crate::domain::TicketNumber)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("x-draft-id")
        .ok_or_else(|| ApiError::challenge(DRAFT_CHALLENGE, "send X-Draft-Id and X-Draft-Secret"))?;
    let secret = header("x-draft-secret")
        .ok_or_else(|| ApiError::challenge(DRAFT_CHALLENGE, "send the draft's secret in X-Draft-Secret"))?;
    state.drafts.of_appeal(id, secret, ticket).await.map_err(|e| match e {
        DraftError::Denied => ApiError::not_found("no appeal matches this ticket and draft"),
        other => other.into(),
    })
}

/// `POST /v1/appeals/{ticket}/resubmit`: continues a rejected appeal within its window
/// with the draft's current content.
async fn resubmit(
    State(state): State<Shared>,
    Path(ticket): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (draft, ticket) = appeal_access(&state, &ticket, &headers).await?;
    let outcome = state.drafts.resubmit(&draft, &ticket, key.as_deref(), &NoFiles).await?;
    Ok(Json(Resubmitted {
        ticket: outcome.ticket.to_string(),
        state: outcome.state,
        outcome: outcome.outcome,
        version: outcome.version,
    })
    .into_response())
}

/// `POST /v1/appeals/{ticket}/withdraw`.
async fn withdraw(
    State(state): State<Shared>,
    Path(ticket): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (_, ticket) = appeal_access(&state, &ticket, &headers).await?;
    let actor = Actor::new("applicant", Role::Applicant);
    let outcome = state
        .engine()
        .fire(&ticket, &Fire::new(state.engine().workflow().bindings().withdraw.as_str()), &actor, key.as_deref())
        .await?;
    Ok(Json(Withdrawn { state: outcome.state, outcome: outcome.outcome, version: outcome.version }).into_response())
}
