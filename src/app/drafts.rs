//! Applicants' drafts: an appeal being prepared by someone who cannot log in. A draft
//! is reached by its id and secret (only the secret's hash is kept; an unknown draft
//! and a wrong secret answer alike). Every operation is parsed as a whole draft before
//! it is stored, so a refused change stores nothing; identity numbers are kept only
//! protected (keyed hash and masked form); the facial-recognition result is written
//! only by the provider's signed callback; and a write made from a stale read is
//! refused (`DraftError::Changed`) instead of silently overwriting another.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::access::{hash_secret, new_secret, same_hash};
use super::intake::{DocumentSource, Intake, IntakeError, NoFiles, Submitted};
use super::problem::{Classify, Kind, Problem};
use crate::adapters::blobs::{BlobRef, Staged};
use crate::domain::document::{ContentType, DocumentKind};
use crate::domain::draft::{Attestation, DisposalIssued, DraftDocument, DraftInput, FaceResult, FacialRecognition};
use crate::domain::rules::Checklist;
use crate::domain::{FieldError, IdNumber, TicketNumber};
use crate::engine::{CommandOutcome, EngineError};
use crate::store::{DraftRecord, StoreError};

/// Why a draft operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// No draft with this id and secret (the same for both).
    #[error("no draft matches this id and secret")]
    Denied,
    /// The draft was changed by another request between read and write.
    #[error("the draft was changed by another request meanwhile; read it again and repeat the change")]
    Changed,
    #[error("the draft has {count} document(s), numbered from 0")]
    NoSuchDocument { count: usize },
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl From<EngineError> for DraftError {
    fn from(e: EngineError) -> Self {
        DraftError::Intake(e.into())
    }
}

impl From<StoreError> for DraftError {
    fn from(e: StoreError) -> Self {
        DraftError::Intake(e.into())
    }
}

fn invalid(field: &str, rule: impl Into<String>) -> DraftError {
    DraftError::Intake(IntakeError::Invalid(vec![FieldError::new(field, rule)]))
}

impl Classify for DraftError {
    fn problem(&self) -> Problem {
        match self {
            DraftError::Denied | DraftError::NoSuchDocument { .. } => Problem::not_found(self.to_string()),
            DraftError::Changed => Problem::new(Kind::Conflict, "draft-changed", "The draft changed", self.to_string()),
            DraftError::Intake(e) => e.problem(),
        }
    }
}

/// A new draft: its id, its secret (shown once) and its checklist.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DraftCreated {
    pub draft_id: String,
    /// Shown once
    pub secret: String,
    pub checklist: Checklist,
}

/// What an upload says about its document besides the content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentFacts {
    pub kind: Option<DocumentKind>,
    pub stamped: Option<bool>,
    pub company_name: Option<String>,
    pub signatory_share_percent: Option<f64>,
    pub issued: Option<DisposalIssued>,
    pub attestation: Option<Attestation>,
}

/// A checked upload, staged in the blob store: its draft entry, the staged file and
/// what it holds. Adopted into the store only when the draft holding it is written.
pub struct Received {
    pub entry: Value,
    pub staged: Staged,
    pub blob: BlobRef,
}

impl Received {
    /// The entry a draft keeps for a checked file.
    pub fn new(
        kind: DocumentKind,
        facts: &DocumentFacts,
        content_type: ContentType,
        file_name: &str,
        staged: Staged,
        blob: BlobRef,
    ) -> Self {
        let mut entry = json!({
            "kind": kind.as_str(),
            "sha256": blob.sha256,
            "size": blob.size,
            "content_type": content_type,
            "file_name": file_name,
        });
        if let Some(v) = facts.stamped {
            entry["stamped"] = json!(v);
        }
        if let Some(v) = &facts.company_name {
            entry["company_name"] = json!(v);
        }
        if let Some(v) = facts.signatory_share_percent {
            entry["signatory_share_percent"] = json!(v);
        }
        if let Some(v) = facts.issued {
            entry["issued"] = json!(v);
        }
        if let Some(v) = facts.attestation {
            entry["attestation"] = json!(v);
        }
        Received { entry, staged, blob }
    }
}

/// Where an added document went.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DocumentAdded {
    pub index: usize,
    /// The document's entry: kind, sha256, size, content type, file name and what the
    /// query said (kept as the JSON the draft stores, in `DraftDocument`'s shape).
    #[schema(value_type = DraftDocument)]
    pub document: Value,
    /// The same file as the same document was already there (a client's retry).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

/// The drafts service.
pub struct Drafts {
    intake: Arc<Intake>,
}

impl Drafts {
    pub fn new(intake: Arc<Intake>) -> Self {
        Drafts { intake }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.intake.engine().now()
    }

    /// A new draft from the applicant's fields (no documents): checked as a whole draft
    /// for an account that may appeal.
    pub async fn create(&self, fields: Value) -> Result<DraftCreated, DraftError> {
        let data = self.protect_id_number(draft_fields(fields, Vec::new())?);
        let input = to_input(&data)?;
        let draft = self.intake.parse(input.clone())?;
        self.intake.resolve(&draft).await?;
        let checklist = self.intake.checklist(input).await?;
        let secret = new_secret("afd_");
        let now = self.now();
        let record = DraftRecord {
            id: uuid::Uuid::new_v4().to_string(),
            secret_hash: hash_secret(&secret),
            data,
            ticket: None,
            created_at: now,
            updated_at: now,
        };
        self.intake.engine().store().insert_draft(&record).await?;
        Ok(DraftCreated { draft_id: record.id, secret, checklist })
    }

    /// The draft with this id and secret; the same refusal for an unknown id and a wrong secret.
    pub async fn open(&self, id: &str, secret: &str) -> Result<DraftRecord, DraftError> {
        let draft = self.intake.engine().store().draft(id).await?.ok_or(DraftError::Denied)?;
        if !same_hash(&draft.secret_hash, &hash_secret(secret)) {
            return Err(DraftError::Denied);
        }
        Ok(draft)
    }

    /// The draft's checklist; `None` when its account can no longer be located.
    pub async fn checklist_if_any(&self, draft: &DraftRecord) -> Result<Option<Checklist>, DraftError> {
        match self.intake.checklist(to_input(&draft.data)?).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.problem().kind == Kind::Internal => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// The draft's checklist.
    pub async fn checklist(&self, draft: &DraftRecord) -> Result<Checklist, DraftError> {
        Ok(self.intake.checklist(to_input(&draft.data)?).await?)
    }

    /// Replaces every field but the documents (and the provider's result while the
    /// operator stays the same person); the new data and its checklist.
    pub async fn replace(&self, draft: &DraftRecord, fields: Value) -> Result<(Value, Checklist), DraftError> {
        let documents = draft.data.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut data = self.protect_id_number(draft_fields(fields, documents)?);
        keep_provider_result(&draft.data, &mut data);
        let parsed = self.intake.parse(to_input(&data)?)?;
        self.intake.resolve(&parsed).await?;
        self.write(draft, &data).await?;
        let checklist = self.intake.checklist(to_input(&data)?).await?;
        Ok((data, checklist))
    }

    /// Refuses an upload of `kind` before a byte of it is read when the draft is full, or
    /// full of this kind.
    pub fn room_for(&self, draft: &DraftRecord, kind: DocumentKind) -> Result<(), DraftError> {
        let limits = self.intake.limits();
        let held = collection(&draft.data);
        let of_kind = held.iter().filter(|(k, _)| *k == kind).count();
        if held.len() >= limits.max_per_draft {
            return Err(invalid(
                "documents",
                format!("a draft holds at most {} documents; remove one before adding another", limits.max_per_draft),
            ));
        }
        if of_kind >= limits.max_per_kind {
            return Err(invalid(
                "documents",
                format!(
                    "{kind}: a draft holds at most {} of this kind; remove one before adding another",
                    limits.max_per_kind
                ),
            ));
        }
        Ok(())
    }

    /// Adds a received document. A repeated upload (a client's retry) of the same file as
    /// the same document is answered with the entry already there instead of adding it twice.
    pub async fn add_document(&self, draft: &DraftRecord, received: Received) -> Result<DocumentAdded, DraftError> {
        let entry = received.entry.clone();
        let mut data = draft.data.clone();
        let documents = documents_mut(&mut data)?;
        if let Some(index) = documents.iter().position(|d| *d == entry) {
            received.staged.discard().await;
            return Ok(DocumentAdded { index, document: entry, repeated: true });
        }
        documents.push(entry.clone());
        let index = documents.len() - 1;
        self.keep_document(draft, &data, received).await?;
        Ok(DocumentAdded { index, document: entry, repeated: false })
    }

    /// Replaces document `index` with a received one.
    pub async fn replace_document(
        &self,
        draft: &DraftRecord,
        index: &str,
        received: Received,
    ) -> Result<DocumentAdded, DraftError> {
        let index = match document_index(&draft.data, index) {
            Ok(i) => i,
            Err(e) => {
                received.staged.discard().await;
                return Err(e);
            }
        };
        let entry = received.entry.clone();
        let mut data = draft.data.clone();
        documents_mut(&mut data)?[index] = entry.clone();
        self.keep_document(draft, &data, received).await?;
        Ok(DocumentAdded { index, document: entry, repeated: false })
    }

    /// Checks that `index` names a document of the draft (before an upload is read).
    pub fn has_document(&self, draft: &DraftRecord, index: &str) -> Result<usize, DraftError> {
        document_index(&draft.data, index)
    }

    /// Removes document `index` (later ones move up by one); the remaining documents.
    pub async fn remove_document(&self, draft: &DraftRecord, index: &str) -> Result<Value, DraftError> {
        let index = document_index(&draft.data, index)?;
        let mut data = draft.data.clone();
        documents_mut(&mut data)?.remove(index);
        self.check_and_write(draft, &data).await?;
        Ok(data["documents"].clone())
    }

    /// Records the facial-recognition provider's result for the draft's operator (the
    /// caller has verified the provider's signature); the result as stored.
    pub async fn record_face_result(
        &self,
        draft_id: &str,
        result: FaceResult,
        provider: &str,
        reference: &str,
    ) -> Result<FacialRecognition, DraftError> {
        let draft = self.intake.engine().store().draft(draft_id).await?.ok_or(DraftError::Denied)?;
        let mut data = draft.data.clone();
        let recorded = FacialRecognition { result, provider: provider.into(), reference: reference.into() };
        let result = serde_json::to_value(&recorded).expect("a result serialises");
        match data.get_mut("operator") {
            Some(Value::Object(op)) => {
                op.insert("facial_recognition".into(), result);
            }
            _ => data["operator"] = json!({ "facial_recognition": result }),
        }
        self.check_and_write(&draft, &data).await?;
        Ok(recorded)
    }

    /// Submits the draft as an appeal and records its ticket on the draft.
    pub async fn submit(&self, draft: &DraftRecord, key: Option<&str>) -> Result<Submitted, DraftError> {
        let submitted = self.intake.submit(to_input(&draft.data)?, &NoFiles, key).await?;
        let ticket = submitted.ticket.to_string();
        // The appeal exists now: record its ticket on the draft, on its latest version if
        // a concurrent edit slipped in (that edit changes nothing already submitted).
        let store = self.intake.engine().store();
        let mut current = draft.clone();
        for _ in 0..5 {
            if store.update_draft(&current.id, &current.data, Some(&ticket), current.updated_at, self.now()).await? {
                break;
            }
            match store.draft(&current.id).await? {
                Some(d) => current = d,
                None => break,
            }
        }
        Ok(submitted)
    }

    /// The draft (by id and secret) that created appeal `ticket`; the same refusal otherwise.
    pub async fn of_appeal(
        &self,
        id: &str,
        secret: &str,
        ticket: &str,
    ) -> Result<(DraftRecord, TicketNumber), DraftError> {
        let draft = self.open(id, secret).await?;
        let ticket = TicketNumber::parse(ticket).map_err(|_| DraftError::Denied)?;
        let created = draft.ticket.as_deref().and_then(|t| TicketNumber::parse(t).ok());
        if created.as_ref() != Some(&ticket) {
            return Err(DraftError::Denied);
        }
        Ok((draft, ticket))
    }

    /// Continues a rejected appeal within its window with the draft's current content.
    pub async fn resubmit(
        &self,
        draft: &DraftRecord,
        ticket: &TicketNumber,
        key: Option<&str>,
        files: &dyn DocumentSource,
    ) -> Result<CommandOutcome, DraftError> {
        Ok(self.intake.resubmit(ticket, to_input(&draft.data)?, files, key).await?)
    }

    /// Puts a changed document collection into the draft: checked against the draft's
    /// limits (refused only when it grows a draft past one) and as a whole draft, then
    /// the file is adopted into the blob store and the draft written. A refused change
    /// keeps no file (the staged upload is dropped).
    async fn keep_document(&self, draft: &DraftRecord, data: &Value, received: Received) -> Result<(), DraftError> {
        let problems = self.intake.limits().check_change(&collection(&draft.data), &collection(data));
        if !problems.is_empty() {
            received.staged.discard().await;
            return Err(IntakeError::Invalid(problems).into());
        }
        if let Err(e) = to_input(data).and_then(|input| Ok(self.intake.parse(input)?)) {
            received.staged.discard().await;
            return Err(e);
        }
        self.intake
            .blobs()
            .adopt(received.staged, &received.blob)
            .await
            .map_err(|e| EngineError::Effects(format!("blob store: {e}")))?;
        self.write(draft, data).await
    }

    async fn check_and_write(&self, draft: &DraftRecord, data: &Value) -> Result<(), DraftError> {
        self.intake.parse(to_input(data)?)?;
        self.write(draft, data).await
    }

    /// Writes the draft if nobody changed it since it was read.
    async fn write(&self, draft: &DraftRecord, data: &Value) -> Result<(), DraftError> {
        let store = self.intake.engine().store();
        if store.update_draft(&draft.id, data, None, draft.updated_at, self.now()).await? {
            Ok(())
        } else {
            Err(DraftError::Changed)
        }
    }

    /// Replaces the operator's clear `id_number` with its protected form.
    fn protect_id_number(&self, mut data: Value) -> Value {
        let Some(op) = data.get_mut("operator").and_then(Value::as_object_mut) else { return data };
        // An invalid number is left for the full parse, which reports it with every other
        // problem; such a draft is refused, so the clear value is never stored.
        let valid = op.get("id_number").and_then(Value::as_str).and_then(|raw| IdNumber::parse(raw).ok());
        if let Some(id) = valid {
            op.remove("id_number");
            op.insert("id".into(), serde_json::to_value(self.intake.hasher().protect(&id)).expect("serialises"));
        }
        data
    }
}

/// The applicant's fields with the given documents: documents only change through
/// their own operations, where the content is checked.
fn draft_fields(body: Value, documents: Vec<Value>) -> Result<Value, DraftError> {
    let Value::Object(mut fields) = body else {
        return Err(invalid("body", "a draft is a JSON object"));
    };
    match fields.remove("documents") {
        None => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(invalid(
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
        return Err(invalid("operator.id", "send the operator's id_number; appealflow keeps it protected"));
    }
    // Verification results are never the applicant's to assert: only the provider's
    // signed callback writes them.
    if data.pointer("/operator/facial_recognition").is_some() {
        return Err(invalid(
            "operator.facial_recognition",
            "set only by the facial-recognition provider's signed callback, never by the applicant",
        ));
    }
    // Shape errors (unknown fields, wrong types) before field rules, without the values.
    super::parse_json::<DraftInput>(&data.to_string()).map_err(shape_error)?;
    Ok(data)
}

fn shape_error(e: EngineError) -> DraftError {
    match e {
        EngineError::Invalid(errors) => IntakeError::Invalid(errors).into(),
        other => invalid("body", other.to_string()),
    }
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

/// A stored draft as intake input. Stored drafts were checked when written, so a
/// failure here means the row was changed behind appealflow's back.
pub fn to_input(data: &Value) -> Result<DraftInput, DraftError> {
    serde_json::from_value(data.clone())
        .map_err(|e| EngineError::Effects(format!("stored draft does not parse: {e}")).into())
}

fn documents_mut(data: &mut Value) -> Result<&mut Vec<Value>, DraftError> {
    data.get_mut("documents")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| EngineError::Effects("stored draft has no documents array".into()).into())
}

fn document_index(data: &Value, raw: &str) -> Result<usize, DraftError> {
    let count = data.get("documents").and_then(Value::as_array).map_or(0, Vec::len);
    raw.parse::<usize>().ok().filter(|i| *i < count).ok_or(DraftError::NoSuchDocument { count })
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
