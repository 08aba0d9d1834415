//! One document from the documents page's form (`multipart/form-data`: the declared
//! facts first, the file last), streamed into a staged blob under the document limit and
//! checked with intake's own checks before the draft takes it.

use axum::body::Body;
use axum::http::{HeaderMap, header};

use crate::app::drafts::{DocumentFacts, Received};
use crate::domain::document::{DocumentKind, sanitize_file_name};
use crate::domain::draft::{Attestation, DisposalIssued};
use crate::http::Shared;

/// Why an upload was not taken, in words for the applicant.
pub enum Refused {
    /// The form is wrong (a field named).
    Form(String),
    /// The file is refused: too large, empty, of a wrong type, carrying active content.
    File(String),
    /// Something broke on the server.
    Internal(String),
}

fn choice<T: serde::de::DeserializeOwned>(raw: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(raw.to_string())).ok()
}

pub async fn receive(state: &Shared, headers: &HeaderMap, body: Body) -> Result<Received, Refused> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Refused::Form("send the document with the page's form (multipart/form-data)".into()))?;
    let limits = state.intake.limits();
    let max = limits.max_bytes;
    // The whole form is bounded (the file, its declared facts and the framing), so no
    // part, a text field included, is read past the document limit.
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max.saturating_add(crate::http::upload::MULTIPART_OVERHEAD))
            .per_field(max),
    );
    let mut parts = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut facts = DocumentFacts::default();
    let blobs = state.intake.blobs().clone();
    let mut staged = blobs.stage().await.map_err(|e| Refused::Internal(e.to_string()))?;
    let mut file_name = None;
    let mut got_file = false;
    let mib = max as f64 / (1024.0 * 1024.0);
    let too_large = || Refused::File(format!("the file is larger than the limit of {mib:.0} MiB"));
    let result: Result<(), Refused> = async {
        let framing = |e: multer::Error| match e {
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => too_large(),
            multer::Error::StreamReadFailed(_) => Refused::Form("the upload was interrupted; try again".into()),
            other => Refused::Form(other.to_string()),
        };
        while let Some(mut field) = parts.next_field().await.map_err(framing)? {
            let name = field.name().unwrap_or("").to_string();
            if name == "file" {
                file_name = field.file_name().map(str::to_string).filter(|n| !n.is_empty());
                got_file = file_name.is_some();
                while let Some(chunk) = field.chunk().await.map_err(framing)? {
                    if staged.size() + chunk.len() as u64 > max {
                        return Err(too_large());
                    }
                    staged.write(&chunk).await.map_err(|e| Refused::Internal(e.to_string()))?;
                }
                continue;
            }
            let value = field.text().await.map_err(framing)?;
            let value = value.trim();
            if value.is_empty() || value.len() > 500 {
                continue;
            }
            match name.as_str() {
                "kind" => {
                    facts.kind = Some(value.parse::<DocumentKind>().map_err(|e| Refused::Form(format!("kind: {e}")))?)
                }
                "stamped" => facts.stamped = Some(true),
                "company_name" => facts.company_name = Some(value.to_string()),
                "signatory_share_percent" => {
                    let p = value.parse::<f64>().ok().filter(|p| p.is_finite() && (0.0..=100.0).contains(p));
                    facts.signatory_share_percent =
                        Some(p.ok_or_else(|| {
                            Refused::Form("signatory_share_percent: a percentage from 0 to 100".into())
                        })?);
                }
                "issued" => facts.issued = choice::<DisposalIssued>(value),
                "attestation" => facts.attestation = choice::<Attestation>(value),
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        staged.discard().await;
        return Err(e);
    }
    let Some(kind) = facts.kind else {
        staged.discard().await;
        return Err(Refused::Form("kind: choose which document this is".into()));
    };
    if !got_file {
        staged.discard().await;
        return Err(Refused::File("choose a file to upload".into()));
    }
    let blob = staged.finish().await.map_err(|e| Refused::Internal(e.to_string()))?;
    let name = sanitize_file_name(file_name.as_deref().unwrap_or(kind.as_str()));
    let examined = state.intake.examine_file(kind, Some(&name), staged.path()).await;
    let content_type = match examined {
        Ok(Ok(t)) => t,
        Ok(Err(refused)) => {
            staged.discard().await;
            return Err(Refused::File(refused.to_string()));
        }
        Err(e) => {
            staged.discard().await;
            return Err(Refused::Internal(e.to_string()));
        }
    };
    Ok(Received::new(kind, &facts, content_type, &name, staged, blob))
}
