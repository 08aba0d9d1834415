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

mod error;
mod files;
mod progress;
mod record;
pub use error::IntakeError;
pub use files::{DocumentSource, LocalFiles, NoFiles};
pub use progress::Progress;
pub use record::{AppealData, EntityChange, ReplacedDocument};

/// A document read from a `file` and checked, not yet stored.
struct LoadedDocument {
    index: usize,
    bytes: Bytes,
    content_type: crate::domain::document::ContentType,
    name: Option<String>,
}

/// What a successful submission answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    pub ticket: TicketNumber,
    pub state: String,
    pub version: i64,
    /// The earlier appeal this one superseded, if any.
    pub superseded: Option<String>,
    /// Screening's rejection, with guidance, when the scenario is inapplicable.
    pub screening: Option<String>,
    pub replayed: bool,
}

/// The entity-change request a reviewer links to a deregistered enterprise's appeal.
#[derive(Debug, Clone, Copy)]
pub struct EntityLink<'a> {
    /// The entity-change request's ticket reference.
    pub entity_ticket: &'a str,
    /// The directory account, verified as the new company, that filed it.
    pub account: &'a str,
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

    /// Checks one document's content: its type from its bytes, then inside it (images
    /// decode completely under the pixel limit, PDFs carry nothing active). The parsers
    /// run on the blocking pool, at most as many at once as there are cores, so a burst
    /// of uploads cannot hold more decoded images in memory than that.
    pub async fn examine(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        bytes: Bytes,
    ) -> Result<ContentType, DocumentError> {
        let permit = self.inspecting.clone().acquire_owned().await.expect("the inspection semaphore is never closed");
        self.examine_now(kind, file_name, bytes, permit).await
    }

    /// [`Intake::examine`] for a staged upload, read only once it is its turn.
    pub async fn examine_file(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        path: &std::path::Path,
    ) -> Result<Result<ContentType, DocumentError>, IntakeError> {
        let permit = self.inspecting.clone().acquire_owned().await.expect("the inspection semaphore is never closed");
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| BlobError::Io(format!("reading the staged upload {}: {e}", path.display())))?;
        Ok(self.examine_now(kind, file_name, Bytes::from(bytes), permit).await)
    }

    /// The permit travels with the work: an inspection whose request went away still
    /// counts until it ends (the sandbox's child is killed with the request).
    async fn examine_now(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        bytes: Bytes,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<ContentType, DocumentError> {
        let content = check_content(kind, file_name, &bytes, &self.limits)?;
        if let (ContentType::Pdf, Some(sandbox)) = (content, &self.pdf_sandbox) {
            let verdict = sandbox.inspect(&bytes).await;
            drop(permit);
            verdict.map_err(|problem| DocumentError { kind, problem })?;
            return Ok(content);
        }
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inspect(kind, content, &bytes, &limits)
        })
        .await
        .unwrap_or(Err(DocumentError { kind, problem: DocumentProblem::Undecodable }))?;
        Ok(content)
    }

    /// Parses PDFs in a sandboxed child process (the server always does; without it,
    /// in this process).
    pub fn with_pdf_sandbox(mut self, sandbox: crate::adapters::pdf_sandbox::PdfSandbox) -> Self {
        self.pdf_sandbox = Some(sandbox);
        self
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

    /// Reads and checks every `file` document (and that every `sha256` document was
    /// uploaded); refuses them all together. Writes nothing.
    async fn check_documents(
        &self,
        draft: &Draft,
        files: &dyn DocumentSource,
    ) -> Result<Vec<LoadedDocument>, IntakeError> {
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
        if !problems.is_empty() {
            return Err(IntakeError::Invalid(problems));
        }
        Ok(loaded)
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

    /// The account's open appeal after its overdue timers have fired (a window that
    /// closed while no worker ran is closed before anything is decided about it).
    async fn open_appeal(&self, account: &str) -> Result<Option<AppealRecord>, IntakeError> {
        match self.engine.store().open_appeal_for(account).await? {
            Some(open) => {
                let open = self.engine.catch_up(open).await?;
                Ok(open.outcome.is_none().then_some(open))
            }
            None => Ok(None),
        }
    }

    /// Validates everything at once, stores the documents, supersedes an appeal waiting
    /// in its resubmission window, creates the appeal, and screens it.
    pub async fn submit(
        &self,
        input: DraftInput,
        files: &dyn DocumentSource,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let mut draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        let checklist = evaluate(&self.rules, &account, &draft);
        if !checklist.ready() {
            return Err(IntakeError::Incomplete(Box::new(checklist)));
        }
        let loaded = self.check_documents(&draft, files).await?;
        Self::address_documents(&mut draft, &loaded);

        let applicant = Actor::new("applicant", Role::Applicant);
        let data = AppealData {
            draft,
            case: checklist.case.clone(),
            changes_secure_phone: checklist.changes_secure_phone,
            entity_change: EntityChange { required: checklist.requires_entity_change_ticket, ..Default::default() },
            previous_documents: vec![],
        };
        let new = NewAppeal {
            account: account.name.clone(),
            data: serde_json::to_value(&data).expect("appeal data serialises"),
        };

        // A repeat of a keyed submission answers as the first did, whatever is open now.
        if let Some(key) = idempotency_key
            && let Some(first) = self.engine.replay_create(key, &new, &applicant).await?
        {
            return self.submitted(first, None).await;
        }
        // Nothing is stored when another appeal is open (one waiting in its window is
        // superseded, in the same commit as the new appeal is created).
        let open = self.open_appeal(&account.name).await?;
        let window = self.engine.workflow().bindings();
        let supersedes = open.as_ref().filter(|o| {
            self.engine.workflow().transition(&window.supersede).is_some_and(|t| t.from.contains(&o.state))
        });
        if let Some(open) = &open
            && supersedes.is_none()
        {
            return Err(EngineError::OpenAppeal {
                account: account.name.clone(),
                ticket: open.ticket.to_string(),
                state: open.state.clone(),
            }
            .into());
        }
        self.store_documents(loaded).await?;

        // Supersede, create and screen: one unit of work, all or nothing.
        let mut commands = Vec::new();
        if let Some(open) = supersedes {
            let mut cmd = Fire::new(window.supersede.clone());
            cmd.reasons = vec![format!("superseded by a new appeal for account {}", account.name)];
            commands.push(Command::new(Target::Ticket(open.ticket.clone()), cmd, Actor::system()));
        }
        let primary = commands.len();
        let mut creation = Fire::new(window.submit.clone());
        creation.payload = face_evidence(&data.draft);
        commands.push(Command::new(Target::New(new.clone()), creation, applicant.clone()));
        commands.extend(self.screening(&account, &checklist));
        let keyed = idempotency_key.map(|k| Engine::create_keyed(k, &new, &applicant));
        let created = self.engine.execute(commands, primary, UnitOfWork::default(), keyed).await?;
        let superseded = created.also.iter().find(|o| o.transition == window.supersede).map(|o| o.ticket.to_string());
        self.submitted(created, superseded).await
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

    async fn submitted(&self, created: CommandOutcome, superseded: Option<String>) -> Result<Submitted, IntakeError> {
        let record = self
            .engine
            .store()
            .appeal_by_ticket(&created.ticket)
            .await?
            .ok_or_else(|| EngineError::NotFound(created.ticket.to_string()))?;
        let history = self.engine.store().history(&record.id).await?;
        let screening_transition = &self.engine.workflow().bindings().screening;
        let screening = history
            .iter()
            .rev()
            .find(|e| &e.transition == screening_transition)
            .and_then(|e| e.reasons.first().cloned());
        Ok(Submitted {
            ticket: created.ticket,
            state: record.state,
            version: record.version,
            superseded,
            screening,
            replayed: created.replayed,
        })
    }

    async fn load(&self, ticket: &TicketNumber) -> Result<AppealRecord, IntakeError> {
        Ok(self
            .engine
            .store()
            .appeal_by_ticket(ticket)
            .await?
            .ok_or_else(|| EngineError::NotFound(ticket.to_string()))?)
    }

    /// Continues a rejected appeal within its window with modified or added documents.
    pub async fn resubmit(
        &self,
        ticket: &TicketNumber,
        input: DraftInput,
        files: &dyn DocumentSource,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, IntakeError> {
        let record = self.engine.catch_up(self.load(ticket).await?).await?;
        let wf = self.engine.workflow();
        let b = wf.bindings();
        if record.state != b.window_state {
            let terminal = wf.state(&record.state).is_some_and(|s| s.terminal);
            let awaiting_notice = wf.transition(&b.notice_delivered).is_some_and(|t| t.from.contains(&record.state));
            let why = match (record.outcome.as_deref(), terminal, awaiting_notice) {
                (Some(outcome), true, _) if Some(outcome) == wf.window_expiry_outcome() => {
                    "the 3 calendar days to continue have passed".to_string()
                }
                (Some(outcome), true, _) => format!("it is {} ({outcome})", record.state),
                (_, _, true) => "the rejection notice has not been delivered yet; try again shortly".to_string(),
                _ => format!("it is {}, not rejected", record.state),
            };
            // A keyed repeat of a resubmission that went through answers as it did.
            if let Some(key) = idempotency_key
                && let Some(rec) = self.engine.store().idempotency(key).await?
                && let Ok(first) = serde_json::from_value::<CommandOutcome>(rec.response)
                && first.ticket == *ticket
                && first.transition == b.resubmit
            {
                return Ok(CommandOutcome { replayed: true, ..first });
            }
            return Err(IntakeError::NotResubmittable { ticket: ticket.to_string(), why });
        }
        let mut draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        if account.name != record.account {
            return Err(IntakeError::Invalid(vec![FieldError::new(
                "entry_point",
                format!("the draft locates account {:?}, but appeal {ticket} is for another account", account.name),
            )]));
        }
        let checklist = evaluate(&self.rules, &account, &draft);
        if !checklist.ready() {
            return Err(IntakeError::Incomplete(Box::new(checklist)));
        }
        let loaded = self.check_documents(&draft, files).await?;
        Self::address_documents(&mut draft, &loaded);
        self.store_documents(loaded).await?;
        let previous = AppealData::from_record(&record)?;
        let now = self.engine.now();
        let mut replaced = previous.previous_documents.clone();
        for old in &previous.draft.documents {
            let kept = draft.documents.iter().any(|d| d.kind == old.kind && d.sha256 == old.sha256);
            if !kept {
                replaced.push(ReplacedDocument { document: old.clone(), replaced_at: now });
            }
        }
        let data = AppealData {
            draft,
            case: checklist.case.clone(),
            changes_secure_phone: checklist.changes_secure_phone,
            entity_change: EntityChange {
                required: checklist.requires_entity_change_ticket,
                ..previous.entity_change.clone()
            },
            previous_documents: replaced,
        };
        let value = serde_json::to_value(&data).expect("appeal data serialises");
        let mut cmd = Fire::new(b.resubmit.clone());
        cmd.payload = face_evidence(&data.draft);
        cmd.payload["record"] = serde_json::json!(digest(&value));
        let update = move |_: &AppealRecord| Ok(value.clone());
        let applicant = Actor::new("applicant", Role::Applicant);
        let keyed = idempotency_key.map(|key| Keyed {
            key: key.to_string(),
            basis: serde_json::json!({ "op": "fire", "ticket": ticket.as_str(), "cmd": cmd, "actor": applicant }),
        });
        let mut commands = vec![Command {
            target: Target::Ticket(ticket.clone()),
            fire: cmd,
            actor: applicant,
            update: Some(&update),
        }];
        commands.extend(self.screening(&account, &checklist));
        Ok(self.engine.execute(commands, 0, UnitOfWork::default(), keyed).await?)
    }

    /// Links the entity-change ticket filed from an account verified as the new company.
    pub async fn link_entity_change(
        &self,
        ticket: &TicketNumber,
        link: &EntityLink<'_>,
        actor: &Actor,
        expect_version: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, IntakeError> {
        let (entity_ticket, new_company_account) = (link.entity_ticket, link.account);
        let record = self.load(ticket).await?;
        // Checked first so a stale read hears so (and not some rule it no longer meets);
        // the engine checks again in the commit.
        if let Some(refusal) = crate::app::stale_read(expect_version, &record) {
            return Err(EngineError::Refused(refusal).into());
        }
        let data = AppealData::from_record(&record)?;
        if !data.entity_change.required {
            return Err(IntakeError::Refused(format!(
                "appeal {ticket} does not change the verified entity; there is nothing to link"
            )));
        }
        let entity_ticket = entity_ticket.trim().to_string();
        if entity_ticket.is_empty() || entity_ticket.chars().count() > 64 {
            return Err(IntakeError::Invalid(vec![FieldError::new(
                "entity_ticket",
                "the entity-change request's ticket reference (1 to 64 characters)",
            )]));
        }
        let company = data.draft.new_company.as_ref().map(|c| c.name.clone()).unwrap_or_default();
        let linked = self.directory.by_name(new_company_account).await?.ok_or_else(|| {
            IntakeError::Invalid(vec![FieldError::new(
                "account",
                format!("no account named {new_company_account:?} in the directory"),
            )])
        })?;
        let verified_as_company = linked.verification == VerificationType::Enterprise
            && linked.enterprise_status == Some(crate::domain::EnterpriseStatus::Active)
            && linked.enterprise_name.as_deref() == Some(company.as_str());
        if !verified_as_company {
            return Err(IntakeError::Refused(format!(
                "account {new_company_account:?} is not verified as the new company {company:?}: the entity-change \
                 request must come from an account verified with the new company's identity"
            )));
        }
        let now = self.engine.now();
        let mut cmd = Fire::new(self.engine.workflow().bindings().link_entity_change.clone());
        cmd.expect_version = expect_version;
        cmd.payload = serde_json::json!({ "entity_ticket": entity_ticket, "account": new_company_account });
        let actor_name = actor.name.clone();
        let update = move |current: &AppealRecord| {
            let mut data = AppealData::from_record(current)?;
            data.entity_change.ticket = Some(entity_ticket.clone());
            data.entity_change.account = Some(linked.name.clone());
            data.entity_change.linked_by = Some(actor_name.clone());
            data.entity_change.linked_at = Some(now);
            Ok(serde_json::to_value(&data).expect("appeal data serialises"))
        };
        Ok(self.engine.fire_updating(ticket, &cmd, actor, idempotency_key, Some(&update)).await?)
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
