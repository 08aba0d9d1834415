//! Applicants' routes: drafts, documents, the facial-recognition callback, submission,
//! resubmission and withdrawal. Applicants cannot log in: every call on a draft carries
//! its secret (`X-Draft-Secret`), and an unknown draft and a wrong secret answer alike.
//! Every change to a draft is parsed as a whole draft before it is stored, so a refused
//! request stores nothing.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::auth::{DraftSecret, JsonBody, draft_access};
use super::error::{ApiError, ApiResult};
use crate::adapters::notify::sign;
use crate::app::access::{hash_secret, new_secret, same_hash};
use crate::app::intake::NoFiles;
use crate::app::limits::Budget;
use crate::domain::document::{DocumentKind, sanitize_file_name};
use crate::domain::draft::{Attestation, DisposalIssued, DraftInput, FaceResult};
use crate::domain::{Actor, FieldError, Role, TicketNumber};
use crate::engine::EngineError;
use crate::store::DraftRecord;
use crate::workflow::Fire;

/// Room for the multipart framing (boundaries and part headers) around one document.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// A provider callback older (or newer) than this is refused: it may be a replay.
const CALLBACK_TOLERANCE_SECS: i64 = 5 * 60;
const MAX_IDEMPOTENCY_KEY: usize = 200;

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

#[derive(Serialize)]
struct Created {
    draft_id: String,
    secret: String,
    checklist: crate::domain::rules::Checklist,
}

/// `POST /v1/drafts`: the draft's fields (no documents) → its id, its secret (shown
/// once; only the hash is kept) and its checklist.
async fn create_draft(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let per_hour = Budget::per(state.config.drafts_per_hour, Duration::from_secs(3600));
    state.limits.take(&format!("drafts:{}", crate::app::limits::client_key(peer.ip())), per_hour).await?;
    let data = protect_id_number(&state, draft_fields(body, Vec::new())?)?;
    let input = to_input(&data)?;
    let draft = state.intake.parse(input.clone())?;
    state.intake.resolve(&draft).await?;
    let checklist = state.intake.checklist(input).await?;
    let secret = new_secret("afd_");
    let now = state.engine().now();
    let record = DraftRecord {
        id: uuid::Uuid::new_v4().to_string(),
        secret_hash: hash_secret(&secret),
        data,
        ticket: None,
        created_at: now,
        updated_at: now,
    };
    state.engine().store().insert_draft(&record).await?;
    Ok((StatusCode::CREATED, Json(Created { draft_id: record.id, secret, checklist })).into_response())
}

/// `GET /v1/drafts/{id}`: the draft as stored, its ticket once submitted, and its
/// checklist (null when the account can no longer be located).
async fn show_draft(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let checklist = match state.intake.checklist(to_input(&draft.data)?).await {
        Ok(c) => Some(c),
        Err(e) if e.class() == crate::engine::ErrorClass::Internal => return Err(e.into()),
        Err(_) => None,
    };
    Ok(Json(json!({
        "draft_id": draft.id,
        "data": draft.data,
        "ticket": draft.ticket,
        "checklist": checklist,
        "created_at": draft.created_at.to_rfc3339(),
        "updated_at": draft.updated_at.to_rfc3339(),
    }))
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
    let documents = draft.data.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut data = protect_id_number(&state, draft_fields(body, documents)?)?;
    keep_provider_result(&draft.data, &mut data);
    let parsed = state.intake.parse(to_input(&data)?)?;
    state.intake.resolve(&parsed).await?;
    store_data(&state, &draft, &data).await?;
    let checklist = state.intake.checklist(to_input(&data)?).await?;
    Ok(Json(json!({ "draft_id": draft.id, "data": data, "checklist": checklist })).into_response())
}

/// `GET /v1/drafts/{id}/checklist`.
async fn draft_checklist(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    Ok(Json(state.intake.checklist(to_input(&draft.data)?).await?).into_response())
}

/// The applicant's fields with the given documents: documents only change through
/// their own routes, where the content is checked.
fn draft_fields(body: Value, documents: Vec<Value>) -> ApiResult<Value> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::field("body", "a draft is a JSON object"));
    };
    match fields.remove("documents") {
        None => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(ApiError::field(
                "documents",
                "documents are uploaded one by one: POST /v1/drafts/{id}/documents?kind=KIND",
            ));
        }
    }
    fields.insert("documents".into(), Value::Array(documents));
    let data = Value::Object(fields);
    // Identity numbers are stored only protected: keep the keyed hash and the masked
    // form, never the clear number (and never accept a "protected" one from outside).
    if data.pointer("/operator/id").is_some() {
        return Err(ApiError::field("operator.id", "send the operator's id_number; appealflow keeps it protected"));
    }
    // Verification results are never the applicant's to assert: only the provider's
    // signed callback (POST /v1/facial-recognition) writes them.
    if data.pointer("/operator/facial_recognition").is_some() {
        return Err(ApiError::field(
            "operator.facial_recognition",
            "set only by the facial-recognition provider's signed callback, never by the applicant",
        ));
    }
    // Shape errors (unknown fields, wrong types) before field rules, without the values.
    crate::app::parse_json::<DraftInput>(&data.to_string()).map_err(shape_error)?;
    Ok(data)
}

/// Carries the provider's facial-recognition result from the stored draft into its
/// replacement while the operator is the same person (same name, same protected ID
/// number); a change of operator drops it, since the check was of someone else.
fn keep_provider_result(stored: &Value, replacement: &mut Value) {
    let Some(result) = stored.pointer("/operator/facial_recognition") else { return };
    let same = |field: &str| {
        let pointer = format!("/operator/{field}");
        stored.pointer(&pointer) == replacement.pointer(&pointer)
    };
    if !same("name") || !same("id/hash") {
        return;
    }
    if let Some(op) = replacement.get_mut("operator").and_then(Value::as_object_mut) {
        op.insert("facial_recognition".into(), result.clone());
    }
}

/// Replaces the operator's clear `id_number` with its protected form.
fn protect_id_number(state: &Shared, mut data: Value) -> ApiResult<Value> {
    let Some(op) = data.get_mut("operator").and_then(Value::as_object_mut) else { return Ok(data) };
    // An invalid number is left for the full parse, which reports it with every other
    // problem; such a draft is refused, so the clear value is never stored.
    let valid = op.get("id_number").and_then(Value::as_str).and_then(|raw| crate::domain::IdNumber::parse(raw).ok());
    if let Some(id) = valid {
        op.remove("id_number");
        op.insert("id".into(), serde_json::to_value(state.intake.hasher().protect(&id)).expect("serialises"));
    }
    Ok(data)
}

fn shape_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Invalid(errors) => ApiError::invalid(errors),
        other => ApiError::field("body", other.to_string()),
    }
}

/// A stored draft as intake input. Stored drafts were checked when written, so a
/// failure here means the row was changed behind the API's back.
fn to_input(data: &Value) -> ApiResult<DraftInput> {
    serde_json::from_value(data.clone()).map_err(|e| ApiError::internal(format!("stored draft does not parse: {e}")))
}

/// Writes the draft if nobody changed it since it was read; a concurrent change (two
/// uploads at once, say) gets 409 instead of being silently lost.
async fn store_data(state: &Shared, draft: &DraftRecord, data: &Value) -> ApiResult<()> {
    let stored =
        state.engine().store().update_draft(&draft.id, data, None, draft.updated_at, state.engine().now()).await?;
    if stored { Ok(()) } else { Err(draft_changed()) }
}

fn draft_changed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "draft-changed",
        "The draft changed",
        "the draft was changed by another request meanwhile; read it again and repeat the change",
    )
}

// ------------------------------------------------------------------------- documents

/// What an upload says about its document besides the content (`?kind=...&stamped=...`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentQuery {
    kind: String,
    stamped: Option<bool>,
    company_name: Option<String>,
    signatory_share_percent: Option<f64>,
    issued: Option<DisposalIssued>,
    attestation: Option<Attestation>,
}

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
    let limits = state.intake.limits();
    let held = collection(&draft.data);
    let kind = query_kind(&uri)?;
    let of_kind = held.iter().filter(|(k, _)| *k == kind).count();
    let full = if held.len() >= limits.max_per_draft {
        Some(format!("a draft holds at most {} documents; remove one before adding another", limits.max_per_draft))
    } else if of_kind >= limits.max_per_kind {
        Some(format!(
            "{kind}: a draft holds at most {} of this kind; remove one before adding another",
            limits.max_per_kind
        ))
    } else {
        None
    };
    if let Some(why) = full {
        drain(&mut body.into_data_stream(), limits.max_bytes).await;
        return Err(ApiError::field("documents", why));
    }
    let received = receive_document(&state, &uri, &headers, body).await?;
    let entry = received.entry.clone();
    let mut data = draft.data.clone();
    let documents = documents_mut(&mut data)?;
    // A repeated upload (a client retry) of the same file as the same document is
    // answered with the entry already there instead of adding it twice.
    if let Some(index) = documents.iter().position(|d| *d == entry) {
        return Ok(
            (StatusCode::OK, Json(json!({ "index": index, "document": entry, "repeated": true }))).into_response()
        );
    }
    documents.push(entry.clone());
    let index = documents.len() - 1;
    keep_document(&state, &draft, &data, received).await?;
    Ok((StatusCode::CREATED, Json(json!({ "index": index, "document": entry }))).into_response())
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
    let index = document_index(&draft.data, &index)?;
    let received = receive_document(&state, &uri, &headers, body).await?;
    let entry = received.entry.clone();
    let mut data = draft.data.clone();
    documents_mut(&mut data)?[index] = entry.clone();
    keep_document(&state, &draft, &data, received).await?;
    Ok(Json(json!({ "index": index, "document": entry })).into_response())
}

/// `DELETE /v1/drafts/{id}/documents/{index}`: the remaining documents (later ones
/// move up by one).
async fn remove_document(
    State(state): State<Shared>,
    Path((id, index)): Path<(String, String)>,
    DraftSecret(secret): DraftSecret,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let index = document_index(&draft.data, &index)?;
    let mut data = draft.data.clone();
    documents_mut(&mut data)?.remove(index);
    check_and_store(&state, &draft, &data).await?;
    Ok(Json(json!({ "documents": data["documents"] })).into_response())
}

fn documents_mut(data: &mut Value) -> ApiResult<&mut Vec<Value>> {
    data.get_mut("documents")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ApiError::internal("stored draft has no documents array"))
}

fn document_index(data: &Value, raw: &str) -> ApiResult<usize> {
    let count = data.get("documents").and_then(Value::as_array).map_or(0, Vec::len);
    raw.parse::<usize>()
        .ok()
        .filter(|i| *i < count)
        .ok_or_else(|| ApiError::not_found(format!("the draft has {count} document(s), numbered from 0")))
}

/// The kind and size of each document of a stored draft.
fn collection(data: &Value) -> Vec<(DocumentKind, u64)> {
    let documents = data.get("documents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    documents
        .iter()
        .filter_map(|d| {
            let kind = d.get("kind")?.as_str()?.parse().ok()?;
            Some((kind, d.get("size").and_then(Value::as_u64).unwrap_or(0)))
        })
        .collect()
}

/// The `kind` an upload's query names, read before its body.
fn query_kind(uri: &Uri) -> ApiResult<DocumentKind> {
    let query = Query::<DocumentQuery>::try_from_uri(uri).map_err(|e| ApiError::field("query", e.body_text()))?.0;
    query.kind.parse::<DocumentKind>().map_err(|e| ApiError::field("kind", e.to_string()))
}

/// Puts a received document into the draft: the change is checked against the draft's
/// limits (refused only when it grows a draft past one) and as a whole draft, then the
/// file is adopted into the blob store and the draft written. A refused change keeps no
/// file (the staged upload is dropped).
async fn keep_document(state: &Shared, draft: &DraftRecord, data: &Value, received: Received) -> ApiResult<()> {
    let problems = state.intake.limits().check_change(&collection(&draft.data), &collection(data));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    state.intake.parse(to_input(data)?)?;
    state.intake.blobs().adopt(received.staged, &received.blob).await.map_err(ApiError::internal)?;
    store_data(state, draft, data).await
}

/// Parses the whole changed draft, then stores it.
async fn check_and_store(state: &Shared, draft: &DraftRecord, data: &Value) -> ApiResult<()> {
    state.intake.parse(to_input(data)?)?;
    store_data(state, draft, data).await
}

/// Reads the query and the upload, checks the content and stores it in the blob store
/// (content-addressed); answers the document entry to put in the draft.
async fn receive_document(state: &Shared, uri: &Uri, headers: &HeaderMap, body: Body) -> ApiResult<Received> {
    let query = Query::<DocumentQuery>::try_from_uri(uri).map_err(|e| ApiError::field("query", e.body_text()))?.0;
    if let Some(p) = query.signatory_share_percent
        && !(p.is_finite() && (0.0..=100.0).contains(&p))
    {
        return Err(ApiError::field("signatory_share_percent", "a finite percentage from 0 to 100"));
    }
    let kind = query.kind.parse::<DocumentKind>().map_err(|e| ApiError::field("kind", e.to_string()))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let limits = state.intake.limits();
    let blobs = state.intake.blobs().clone();
    let mut staged = blobs.stage().await.map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let upload = match read_upload(&mut stream, content_type, kind, limits.max_bytes, &mut staged).await {
        Ok(u) => u,
        Err(e) => {
            staged.discard().await;
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                // Reading on (discarding) lets the client finish sending and see the answer.
                drain(&mut stream, limits.max_bytes).await;
            }
            return Err(e);
        }
    };
    // Always named: intake would otherwise name it after the staged file at submission,
    // and a keyed retry of the submission would no longer match the first.
    let file_name = sanitize_file_name(upload.file_name.as_deref().unwrap_or(kind.as_str()));
    let named = upload.file_name.as_deref().map(|_| file_name.as_str());
    let examined = match state.intake.examine_file(kind, named, staged.path()).await {
        Ok(examined) => examined,
        Err(e) => {
            staged.discard().await;
            return Err(e.into());
        }
    };
    let content_type = match examined {
        Ok(t) => t,
        Err(e) => {
            staged.discard().await;
            return Err(ApiError::field("file", e.to_string()));
        }
    };
    let blob = upload.blob;
    let size = blob.size;
    let sha256 = blob.sha256.clone();
    let mut entry = json!({
        "kind": kind.as_str(),
        "sha256": sha256,
        "size": size,
        "content_type": content_type,
        "file_name": file_name,
    });
    if let Some(v) = query.stamped {
        entry["stamped"] = json!(v);
    }
    if let Some(v) = query.company_name {
        entry["company_name"] = json!(v);
    }
    if let Some(v) = query.signatory_share_percent {
        entry["signatory_share_percent"] = json!(v);
    }
    if let Some(v) = query.issued {
        entry["issued"] = json!(v);
    }
    if let Some(v) = query.attestation {
        entry["attestation"] = json!(v);
    }
    Ok(Received { entry, staged, blob })
}

/// A checked upload, staged: its draft entry, the staged file and what it holds.
struct Received {
    entry: Value,
    staged: crate::adapters::blobs::Staged,
    blob: crate::adapters::blobs::BlobRef,
}

// ------------------------------------------------------------------------- multipart

struct Upload {
    file_name: Option<String>,
    blob: crate::adapters::blobs::BlobRef,
}

fn malformed(why: impl std::fmt::Display) -> ApiError {
    ApiError::field("body", format!("multipart/form-data with one file part: {why}"))
}

fn too_large(kind: DocumentKind, max: u64) -> ApiError {
    let mib = max as f64 / (1024.0 * 1024.0);
    ApiError {
        errors: vec![FieldError::new("file", format!("{kind}: the file is larger than the limit of {mib:.0} MiB"))],
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Body too large",
            format!("{kind}: the file is larger than the limit of {mib:.0} MiB — upload a smaller scan"),
        )
    }
}

fn boundary_of(content_type: &str) -> ApiResult<String> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(ApiError::field("content-type", "send the document as multipart/form-data"));
    }
    multer::parse_boundary(content_type)
        .ok()
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or_else(|| ApiError::field("content-type", "multipart/form-data needs a boundary (1 to 70 characters)"))
}

/// What a multipart framing error means to the applicant.
fn multipart_error(e: multer::Error, kind: DocumentKind, max: u64) -> ApiError {
    use multer::Error as M;
    match e {
        M::FieldSizeExceeded { .. } | M::StreamSizeExceeded { .. } => too_large(kind, max),
        M::StreamReadFailed(_) => malformed("the upload was interrupted"),
        M::IncompleteStream | M::IncompleteFieldData { .. } => malformed("the body ended inside the file part"),
        M::IncompleteHeaders | M::ReadHeaderFailed(_) => malformed("the part headers are incomplete or malformed"),
        M::DecodeHeaderName { .. } | M::DecodeHeaderValue { .. } => malformed("a part header cannot be read"),
        other => malformed(other),
    }
}

/// Streams the one file part of a multipart body (parsed by `multer`) into a staged
/// file, refusing (413) as soon as its content exceeds `max`: one chunk is held at a time.
async fn read_upload(
    stream: &mut BodyDataStream,
    content_type: &str,
    kind: DocumentKind,
    max: u64,
    staged: &mut crate::adapters::blobs::Staged,
) -> ApiResult<Upload> {
    let boundary = boundary_of(content_type)?;
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max.saturating_add(MULTIPART_OVERHEAD)).per_field(max));
    let mut parts = multer::Multipart::with_constraints(&mut *stream, boundary, limits);
    let fail = |e| multipart_error(e, kind, max);
    let mut field = parts.next_field().await.map_err(fail)?.ok_or_else(|| malformed("there is no file part"))?;
    let file_name = field.file_name().map(str::to_string).filter(|n| !n.is_empty());
    while let Some(chunk) = field.chunk().await.map_err(fail)? {
        if staged.size() + chunk.len() as u64 > max {
            return Err(too_large(kind, max));
        }
        staged.write(&chunk).await.map_err(ApiError::internal)?;
    }
    drop(field);
    if parts.next_field().await.map_err(fail)?.is_some() {
        return Err(malformed("send exactly one part, the file"));
    }
    let blob = staged.finish().await.map_err(ApiError::internal)?;
    Ok(Upload { file_name, blob })
}

/// Reads and discards what is left of a refused body (up to `budget` bytes, for a few
/// seconds at most), so the client is not cut off before it reads the refusal.
async fn drain(stream: &mut BodyDataStream, budget: u64) {
    let mut left = budget;
    let reading = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let n = chunk.len() as u64;
            if n > left {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), reading).await;
}

// ------------------------------------------------------------------------- callback

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaceCallback {
    draft_id: String,
    result: FaceResult,
    provider: String,
    reference: String,
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
        .ok_or_else(|| ApiError::unauthorized("send X-Appealflow-Timestamp (unix seconds)"))?;
    if (state.engine().now().timestamp() - timestamp).abs() > CALLBACK_TOLERANCE_SECS {
        return Err(ApiError::unauthorized("the timestamp is more than 5 minutes from now"));
    }
    let given = header("x-appealflow-signature")
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| ApiError::unauthorized("send X-Appealflow-Signature: sha256=<hex>"))?;
    if !same_hash(&given, &sign(secret, timestamp, &body)) {
        return Err(ApiError::unauthorized("the signature does not match"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("body", "not UTF-8"))?;
    let callback = crate::app::parse_json::<FaceCallback>(text).map_err(shape_error)?;
    let draft = state
        .engine()
        .store()
        .draft(&callback.draft_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no draft has this id"))?;
    let mut data = draft.data.clone();
    let result = json!({ "result": callback.result, "provider": callback.provider, "reference": callback.reference });
    match data.get_mut("operator") {
        Some(Value::Object(op)) => {
            op.insert("facial_recognition".into(), result);
        }
        _ => data["operator"] = json!({ "facial_recognition": result }),
    }
    check_and_store(&state, &draft, &data).await?;
    Ok(Json(json!({ "draft_id": draft.id, "facial_recognition": data["operator"]["facial_recognition"] }))
        .into_response())
}

// ------------------------------------------------------------------------- appeals

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            ApiError::field("Idempotency-Key", format!("1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"))
        })
}

/// `POST /v1/drafts/{id}/submit` → the ticket. Refused with every problem at once.
async fn submit(
    State(state): State<Shared>,
    Path(id): Path<String>,
    DraftSecret(secret): DraftSecret,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let draft = draft_access(&state, &id, secret.as_deref()).await?;
    let key = idempotency_key(&headers)?;
    let submitted = state.intake.submit(to_input(&draft.data)?, &NoFiles, key.as_deref()).await?;
    let ticket = submitted.ticket.to_string();
    // The appeal exists now: record its ticket on the draft, on its latest version if a
    // concurrent edit slipped in (that edit changes nothing already submitted).
    let store = state.engine().store();
    let mut current = draft.clone();
    for _ in 0..5 {
        if store
            .update_draft(&current.id, &current.data, Some(&ticket), current.updated_at, state.engine().now())
            .await?
        {
            break;
        }
        match store.draft(&current.id).await? {
            Some(d) => current = d,
            None => break,
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "ticket": ticket,
            "state": submitted.state,
            "screening": submitted.screening,
            "superseded": submitted.superseded,
        })),
    )
        .into_response())
}

/// The draft named by `X-Draft-Id` + `X-Draft-Secret`, if it created appeal `ticket`;
/// the same 404 otherwise.
async fn appeal_access(state: &Shared, ticket: &str, headers: &HeaderMap) -> ApiResult<(DraftRecord, TicketNumber)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("x-draft-id").ok_or_else(|| ApiError::unauthorized("send X-Draft-Id and X-Draft-Secret"))?;
    let denied = || ApiError::not_found("no appeal matches this ticket and draft");
    let draft = draft_access(state, id, header("x-draft-secret"))
        .await
        .map_err(|e| if e.status == StatusCode::NOT_FOUND { denied() } else { e })?;
    let ticket = TicketNumber::parse(ticket).map_err(|_| denied())?;
    let created = draft.ticket.as_deref().and_then(|t| TicketNumber::parse(t).ok());
    if created.as_ref() != Some(&ticket) {
        return Err(denied());
    }
    Ok((draft, ticket))
}

/// `POST /v1/appeals/{ticket}/resubmit`: continues a rejected appeal within its window
/// with the draft's current content.
async fn resubmit(State(state): State<Shared>, Path(ticket): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let (draft, ticket) = appeal_access(&state, &ticket, &headers).await?;
    let key = idempotency_key(&headers)?;
    let outcome = state.intake.resubmit(&ticket, to_input(&draft.data)?, &NoFiles, key.as_deref()).await?;
    Ok(Json(json!({
        "ticket": outcome.ticket.to_string(),
        "state": outcome.state,
        "outcome": outcome.outcome,
        "version": outcome.version,
    }))
    .into_response())
}

/// `POST /v1/appeals/{ticket}/withdraw`.
async fn withdraw(State(state): State<Shared>, Path(ticket): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let (_, ticket) = appeal_access(&state, &ticket, &headers).await?;
    let key = idempotency_key(&headers)?;
    let actor = Actor::new("applicant", Role::Applicant);
    let outcome = state.engine().fire(&ticket, &Fire::new("withdraw"), &actor, key.as_deref()).await?;
    Ok(Json(json!({ "state": outcome.state, "outcome": outcome.outcome, "version": outcome.version })).into_response())
}
