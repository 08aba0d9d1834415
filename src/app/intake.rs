//! Appeal intake: turning a draft into a submitted appeal, and everything the help
//! page says around it — locating the account, who may appeal, the document checklist,
//! document content checks, screening, one open appeal per account, resubmission within
//! the window, linking the entity-change ticket, and the progress query.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adapters::accounts::AccountDirectory;
use crate::adapters::blobs::{BlobError, BlobStore};
use crate::domain::document::{
    ContentType, DocumentError, DocumentKind, DocumentLimits, DocumentProblem, check_content, inspect,
};
use crate::domain::draft::{Draft, DraftDocument, DraftInput, EntryPoint};
use crate::domain::rules::{Checklist, Ineligible, Rules, eligibility, evaluate};
use crate::domain::{Account, Actor, FieldError, IdHasher, Role, TicketNumber, VerificationType};
use crate::engine::{Command, CommandOutcome, Engine, EngineError, Keyed, NewAppeal, Target};
use crate::store::{AppealRecord, StoreError, UnitOfWork};
use crate::workflow::Fire;

mod entity_link;
mod error;
mod examine;
mod files;
mod progress;
mod record;
mod resubmit;
mod stop;
mod submit;
pub use entity_link::EntityLink;
pub use error::IntakeError;
pub use files::{DocumentSource, LocalFiles, NoFiles};
pub use progress::Progress;
pub use record::{AppealData, EntityChange, ReplacedDocument};
pub use stop::{ACCOUNT_HOLDER, Stopped};
pub use submit::Submitted;

/// A document read from a `file` and checked, not yet stored.
struct LoadedDocument {
    index: usize,
    bytes: Bytes,
    content_type: crate::domain::document::ContentType,
    name: Option<String>,
}

pub struct Intake {
    engine: Arc<Engine>,
    directory: Arc<dyn AccountDirectory>,
    rules: Arc<Rules>,
    blobs: Arc<dyn BlobStore>,
    hasher: IdHasher,
    limits: DocumentLimits,
    decoy: std::sync::OnceLock<AppealRecord>,
    inspecting: Arc<tokio::sync::Semaphore>,
    pdf_sandbox: Option<crate::adapters::pdf_sandbox::PdfSandbox>,
}

fn digest(value: &impl Serialize) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(value).expect("drafts serialise")))
}

impl Intake {
    pub fn new(
        engine: Arc<Engine>,
        directory: Arc<dyn AccountDirectory>,
        rules: Arc<Rules>,
        blobs: Arc<dyn BlobStore>,
        hasher: IdHasher,
        limits: DocumentLimits,
    ) -> Self {
        Intake {
            engine,
            directory,
            rules,
            blobs,
            hasher,
            limits,
            decoy: std::sync::OnceLock::new(),
            inspecting: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            pdf_sandbox: None,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn hasher(&self) -> &IdHasher {
        &self.hasher
    }

    /// Where documents are stored (uploads go straight here).
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn limits(&self) -> DocumentLimits {
        self.limits
    }

    pub fn parse(&self, input: DraftInput) -> Result<Draft, IntakeError> {
        input.parse(&self.hasher).map_err(IntakeError::Invalid)
    }

    /// Locates the draft's account and checks it may appeal at all.
    pub async fn resolve(&self, draft: &Draft) -> Result<Account, IntakeError> {
        let entry = draft
            .entry_point
            .as_ref()
            .ok_or_else(|| IntakeError::Invalid(vec![FieldError::new("entry_point", "required")]))?;
        let (found, what) = match entry {
            EntryPoint::ForgotUsername { lookup, value } => {
                (self.directory.by_key(*lookup, value).await?, format!("{} {value:?}", lookup.as_str()))
            }
            EntryPoint::ForgotPassword { account } | EntryPoint::SecurityPage { account } => {
                (self.directory.by_name(account).await?, format!("account name {account:?}"))
            }
        };
        let account = found.ok_or(IntakeError::Ineligible(Ineligible::NoAccount { what }))?;
        eligibility(entry, &account).map_err(IntakeError::Ineligible)?;
        Ok(account)
    }

    /// The checklist for a draft: what each document is for, what is missing, and
    /// every other problem.
    pub async fn checklist(&self, input: DraftInput) -> Result<Checklist, IntakeError> {
        let draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        Ok(evaluate(&self.rules, &account, &draft))
    }

    /// The checklist for a draft with its documents' content examined as submission
    /// would: each `file` read from `files` and checked (empty, too large, not a JPEG,
    /// PNG or PDF, damaged, active content...), each `sha256` looked up, the draft's byte
    /// budget counted. Every refusal is one more problem, so the checklist is ready only
    /// when submission would accept the documents. Writes nothing.
    pub async fn checklist_with_files(
        &self,
        input: DraftInput,
        files: &dyn DocumentSource,
    ) -> Result<Checklist, IntakeError> {
        let draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        let mut checklist = evaluate(&self.rules, &account, &draft);
        checklist.problems.extend(self.document_problems(&draft, files).await?);
        Ok(checklist)
    }

    /// What submission would refuse in a draft's documents' content (see
    /// [`Intake::checklist_with_files`]), each problem naming the document's field and
    /// kind and the rule in words; empty when every document would be accepted.
    pub async fn document_problems(
        &self,
        draft: &Draft,
        files: &dyn DocumentSource,
    ) -> Result<Vec<FieldError>, IntakeError> {
        Ok(self.read_documents(draft, files).await?.1)
    }

    /// Reads and checks every `file` document (and that every `sha256` document was
    /// uploaded); refuses them all together. Writes nothing.
    async fn check_documents(
        &self,
        draft: &Draft,
        files: &dyn DocumentSource,
    ) -> Result<Vec<LoadedDocument>, IntakeError> {
        let (loaded, problems) = self.read_documents(draft, files).await?;
        if !problems.is_empty() {
            return Err(IntakeError::Invalid(problems));
        }
        Ok(loaded)
    }

    /// The documents read and checked, and every problem found doing so.
    async fn read_documents(
        &self,
        draft: &Draft,
        files: &dyn DocumentSource,
    ) -> Result<(Vec<LoadedDocument>, Vec<FieldError>), IntakeError> {
        let mut problems = Vec::new();
        let mut loaded = Vec::new();
        for (i, doc) in draft.documents.iter().enumerate() {
            let field = format!("documents[{i}]");
            if let Some(file) = &doc.file {
                let bytes = match files.read(file) {
                    Ok(b) => b,
                    Err(e) => {
                        problems.push(FieldError::new(format!("{field}.file"), format!("{}: {e}", doc.kind)));
                        continue;
                    }
                };
                let name = doc
                    .file_name
                    .clone()
                    .or_else(|| std::path::Path::new(file).file_name().map(|n| n.to_string_lossy().into_owned()));
                let bytes = Bytes::from(bytes);
                match self.examine(doc.kind, name.as_deref(), bytes.clone()).await {
                    Ok(content_type) => loaded.push(LoadedDocument { index: i, bytes, content_type, name }),
                    Err(e) => problems.push(FieldError::new(field, e.to_string())),
                }
            } else if let Some(sha) = &doc.sha256
                && !self.blobs.exists(sha).await?
            {
                problems.push(FieldError::new(
                    format!("{field}.sha256"),
                    format!("{}: no uploaded document has this sha256; upload it first", doc.kind),
                ));
            }
        }
        // The draft's byte budget, now that the local files' sizes are known.
        let sizes = draft.documents.iter().enumerate().map(|(i, d)| {
            let read = loaded.iter().find(|l| l.index == i).map(|l| l.bytes.len() as u64);
            (d.kind, read.or(d.size).unwrap_or(0))
        });
        problems.extend(self.limits.check_collection(sizes));
        Ok((loaded, problems))
    }

    /// Points the draft's documents at their content addresses (no I/O).
    fn address_documents(draft: &mut Draft, loaded: &[LoadedDocument]) {
        for d in loaded {
            let doc = &mut draft.documents[d.index];
            doc.file = None;
            doc.sha256 = Some(hex::encode(Sha256::digest(&d.bytes)));
            doc.size = Some(d.bytes.len() as u64);
            doc.content_type = Some(d.content_type);
            doc.file_name = d.name.as_deref().map(crate::domain::document::sanitize_file_name);
        }
    }

    /// Stores checked documents, content-addressed.
    async fn store_documents(&self, loaded: Vec<LoadedDocument>) -> Result<(), IntakeError> {
        for d in loaded {
            self.blobs.put(d.bytes).await?;
        }
        Ok(())
    }

    /// Screening, on every submission and resubmission: an account that never completed
    /// identity verification is rejected as an inapplicable scenario, with guidance.
    fn screening(&self, account: &Account, checklist: &Checklist) -> Option<Command<'static>> {
        if account.verification != VerificationType::None {
            return None;
        }
        let mut cmd = Fire::new(self.engine.workflow().bindings().screening.clone());
        cmd.reasons = vec![checklist.screening.clone().unwrap_or_else(|| "inapplicable_scenario".into())];
        Some(Command::new(Target::Same, cmd, Actor::system()))
    }

    async fn load(&self, ticket: &TicketNumber) -> Result<AppealRecord, IntakeError> {
        Ok(self
            .engine
            .store()
            .appeal_by_ticket(ticket)
            .await?
            .ok_or_else(|| EngineError::NotFound(ticket.to_string()))?)
    }
}

/// The facial-recognition result the provider's signed callback recorded on the draft,
/// as the submission's event payload: the history says which check, by whom, vouched
/// for the operator.
fn face_evidence(draft: &Draft) -> serde_json::Value {
    let face = draft.operator.as_ref().and_then(|op| op.facial_recognition.as_ref());
    match face {
        Some(f) => serde_json::json!({ "facial_recognition": f }),
        None => serde_json::json!({}),
    }
}
