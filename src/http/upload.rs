//! Document uploads: the query naming the document, the one file part of a
//! `multipart/form-data` body streamed into a staged blob (refused as soon as it grows
//! past the limit), and the content checked before the draft takes it.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use futures_util::StreamExt;
use serde::Deserialize;

use super::Shared;
use super::error::{ApiError, ApiResult};
use crate::app::drafts::{DocumentFacts, Received};
use crate::domain::FieldError;
use crate::domain::document::{DocumentKind, sanitize_file_name};
use crate::domain::draft::{Attestation, DisposalIssued};

/// Room for the multipart framing (boundaries and part headers) around one document.
pub(in crate::http) const MULTIPART_OVERHEAD: u64 = 64 * 1024;

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

/// The `kind` an upload's query names, read before its body.
pub(super) fn query_kind(uri: &Uri) -> ApiResult<DocumentKind> {
    let query = Query::<DocumentQuery>::try_from_uri(uri).map_err(|e| ApiError::field("query", e.body_text()))?.0;
    query.kind.parse::<DocumentKind>().map_err(|e| ApiError::field("kind", e.to_string()))
}

/// Reads the query and the upload, checks the content and stores it in the blob store
/// (content-addressed); answers the document entry to put in the draft.
pub(super) async fn receive_document(
    state: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Received> {
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
    let facts = DocumentFacts {
        kind: Some(kind),
        stamped: query.stamped,
        company_name: query.company_name,
        signatory_share_percent: query.signatory_share_percent,
        issued: query.issued,
        attestation: query.attestation,
    };
    Ok(Received::new(kind, &facts, content_type, &file_name, staged, upload.blob))
}

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
pub(super) async fn drain(stream: &mut BodyDataStream, budget: u64) {
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
