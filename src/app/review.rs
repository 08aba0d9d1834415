//! What the appeal desk reads and the rules around it: the review queue (earliest review
//! deadline first, breached first), an appeal's detail as reviewers see it, a document's
//! bytes (reviewers only while they hold the claim, or may give its waiting second
//! approval), and reassignment to a reviewer who
//! holds an active token. The JSON API and the CLI translate to and from these.

mod queue;

pub use queue::{
    AssigneeFilter, COUNT_CAP, MAX_PAGE, MAX_PER_PAGE, QueueItem, QueuePage, QueueQuery, StateCount, cursor,
    parse_cursor, parse_item, parse_scenario, queue,
};

use serde::Serialize;
use serde_json::json;

use super::intake::{AppealData, EntityChange};
use super::{AppealView, ServiceError};
use crate::adapters::blobs::BlobStore;
use crate::domain::document::{ContentType, DocumentKind};
use crate::domain::draft::DraftDocument;
use crate::domain::{Actor, AppealItem, FieldError, Role, TicketNumber, check_text};
use crate::engine::{CommandOutcome, Engine, EngineError};
use crate::store::{AppealRecord, WorkFilter};
use crate::workflow::{Dispute, Fire, FirstApproval};

/// The appeal with this ticket, or `NotFound`.
pub async fn load(engine: &Engine, ticket: &TicketNumber) -> Result<AppealRecord, EngineError> {
    engine.store().appeal_by_ticket(ticket).await?.ok_or_else(|| EngineError::NotFound(ticket.to_string()))
}

fn appeal_data(record: &AppealRecord) -> Result<AppealData, EngineError> {
    AppealData::from_record(record).map_err(|e| EngineError::Effects(format!("stored appeal does not parse: {e}")))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    pub kind: DocumentKind,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub content_type: Option<&'static str>,
    pub file_name: Option<String>,
}

impl From<&DraftDocument> for DocumentView {
    fn from(d: &DraftDocument) -> Self {
        DocumentView {
            kind: d.kind,
            sha256: d.sha256.clone(),
            size: d.size,
            content_type: d.content_type.map(|c| c.mime()),
            file_name: d.file_name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviousDocumentView {
    #[serde(flatten)]
    pub document: DocumentView,
    pub replaced_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    pub id: i64,
    pub action: String,
    pub manual: bool,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub done_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A notification as reviewers see it: the recipient only masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: i64,
    pub template: String,
    pub channel: String,
    pub locale: String,
    pub recipient_masked: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

/// A change waiting out its cooling-off, as staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingChangeView {
    /// The cooling-off rule that holds.
    pub change: String,
    pub approved_by: String,
    pub since: String,
}

/// An appeal as reviewers see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppealDetail {
    #[serde(flatten)]
    pub appeal: AppealView,
    /// The checklist's case (which document rules applied).
    pub case: Option<String>,
    pub items: Vec<AppealItem>,
    pub changes_secure_phone: bool,
    pub documents: Vec<DocumentView>,
    pub previous_documents: Vec<PreviousDocumentView>,
    pub entity_change: EntityChange,
    /// Four-eyes: the first approval waiting for a second, different staff member
    /// (while the appeal waits in such a state).
    pub first_approval: Option<FirstApproval>,
    /// Cooling-off: the approved change waiting to apply (while the appeal waits; never
    /// its stop code).
    pub pending_change: Option<PendingChangeView>,
    /// The account holder stopped an approval of this appeal (kept for good).
    pub disputed: Option<Dispute>,
    pub actions: Vec<ActionView>,
    pub notifications: Vec<NotificationView>,
}

/// An appeal's detail: the view, the documents as submitted (and those replaced), the
/// post-approval actions and the notifications.
pub async fn detail(engine: &Engine, ticket: &TicketNumber) -> Result<AppealDetail, EngineError> {
    let record = load(engine, ticket).await?;
    let view = super::show(engine, ticket).await?;
    let data = appeal_data(&record)?;
    let wf = engine.workflow_at(record.workflow_version);
    let store = engine.store();
    let filter = WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() };
    let actions = store
        .actions(&filter)
        .await?
        .into_iter()
        .map(|a| ActionView {
            id: a.id,
            action: a.action,
            manual: a.manual,
            status: a.status.to_string(),
            attempts: a.attempts,
            last_error: a.last_error,
            done_by: a.done_by,
            created_at: a.created_at.to_rfc3339(),
            updated_at: a.updated_at.to_rfc3339(),
        })
        .collect();
    let notifications = store
        .notifications(&filter)
        .await?
        .into_iter()
        .map(|n| NotificationView {
            id: n.id,
            template: n.template,
            channel: n.channel,
            locale: n.locale,
            recipient_masked: n.recipient_masked,
            status: n.status.to_string(),
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at.to_rfc3339(),
            sent_at: n.sent_at.map(|t| t.to_rfc3339()),
        })
        .collect();
    Ok(AppealDetail {
        appeal: view,
        case: data.case,
        items: data.draft.items.clone(),
        changes_secure_phone: data.changes_secure_phone,
        documents: data.draft.documents.iter().map(DocumentView::from).collect(),
        previous_documents: data
            .previous_documents
            .iter()
            .map(|p| PreviousDocumentView {
                document: DocumentView::from(&p.document),
                replaced_at: p.replaced_at.to_rfc3339(),
            })
            .collect(),
        entity_change: data.entity_change,
        first_approval: data.first_approval.filter(|_| wf.awaits_second_approval(&record.state)),
        pending_change: data.pending_change.filter(|_| wf.cools_off(&record.state)).map(|p| PendingChangeView {
            change: p.rule,
            approved_by: p.approved_by,
            since: p.since.to_rfc3339(),
        }),
        disputed: data.disputed,
        actions,
        notifications,
    })
}

/// A document of an appeal, ready to download.
#[derive(Debug, Clone)]
pub struct Download {
    pub bytes: bytes::Bytes,
    /// What the bytes are (sniffed, whatever was recorded or claimed).
    pub content_type: &'static str,
    /// The name it is saved under, chosen by appealflow: ticket, kind, position and the
    /// extension of the sniffed type — never the applicant's name, which could say
    /// `.html` or `.hta` over an image.
    pub file_name: String,
}

/// A document's SHA-256 as given by a caller: 64 hex characters, any case.
pub fn parse_sha256(raw: &str) -> Result<String, EngineError> {
    let sha = raw.trim().to_ascii_lowercase();
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(EngineError::Invalid(vec![FieldError::new("sha256", "a document's SHA-256: 64 hex characters")]))
    }
}

/// The bytes of the document `sha` of appeal `ticket`, verified against their digest.
/// Reviewers read an appeal's documents while they hold its claim; leads and admins
/// always. Each read is logged with who read what. A document the appeal names but the
/// blob store lacks (or holds corrupt) is a fault here, not the caller's.
pub async fn document(
    engine: &Engine,
    blobs: &dyn BlobStore,
    ticket: &TicketNumber,
    sha: &str,
    actor: &Actor,
) -> Result<Download, ServiceError> {
    let sha = parse_sha256(sha)?;
    let record = load(engine, ticket).await?;
    let data = appeal_data(&record)?;
    // A reviewer who may give a waiting second approval reads what they confirm.
    let second = engine.workflow_at(record.workflow_version).awaits_second_approval(&record.state)
        && crate::workflow::decide::second_approver(data.first_approval.as_ref(), actor).is_ok();
    if actor.role == Role::Reviewer && record.assignee.as_deref() != Some(actor.name.as_str()) && !second {
        return Err(ServiceError::NotAllowed(
            "reviewers download an appeal's documents while they hold its claim (or may give its second approval)"
                .into(),
        ));
    }
    let (index, doc) = data
        .draft
        .documents
        .iter()
        .chain(data.previous_documents.iter().map(|p| &p.document))
        .enumerate()
        .find(|(_, d)| d.sha256.as_deref() == Some(sha.as_str()))
        .ok_or_else(|| ServiceError::NotFound(format!("appeal {ticket} has no document with this sha256")))?;
    let bytes = blobs.get(&sha).await.map_err(|e| EngineError::Effects(e.to_string()))?;
    tracing::info!(actor = %actor.name, role = %actor.role, ticket = %ticket, sha256 = %sha, kind = %doc.kind,
                   "document downloaded");
    let content = ContentType::sniff(&bytes);
    let ext = content.map_or("bin", |c| c.extensions()[0]);
    Ok(Download {
        content_type: content.map_or("application/octet-stream", |c| c.mime()),
        file_name: format!("{}-{}-{}.{ext}", ticket.as_str(), doc.kind.as_str(), index + 1),
        bytes,
    })
}

/// A reassignment's outcome: the command's, and who holds the claim now.
#[derive(Debug, Clone, Serialize)]
pub struct Reassigned {
    #[serde(flatten)]
    pub outcome: CommandOutcome,
    pub assignee: String,
}

/// A lead hands the appeal to reviewer `to` (who must hold an active reviewer token):
/// one command, the claim passes with a whole claim period in one commit.
pub async fn reassign(
    engine: &Engine,
    ticket: &TicketNumber,
    to: &str,
    lead: &Actor,
    expect_version: Option<i64>,
    key: Option<&str>,
) -> Result<Reassigned, EngineError> {
    let to = to.trim().to_string();
    if to.is_empty() || to.chars().count() > 100 {
        return Err(EngineError::Invalid(vec![FieldError::new("to", "the reviewer's name (1 to 100 characters)")]));
    }
    check_text("to", &to, false).map_err(|e| EngineError::Invalid(vec![e]))?;
    let is_reviewer = engine
        .store()
        .tokens()
        .await?
        .iter()
        .any(|t| t.revoked_at.is_none() && t.role == Role::Reviewer && t.name == to);
    if !is_reviewer {
        return Err(EngineError::Invalid(vec![FieldError::new(
            "to",
            "no reviewer with an active token has this name",
        )]));
    }
    let mut cmd = Fire::new(engine.workflow().bindings().reassign.as_str());
    cmd.expect_version = expect_version;
    cmd.payload = json!({ "to": to });
    let outcome = engine.fire(ticket, &cmd, lead, key).await?;
    Ok(Reassigned { outcome, assignee: to })
}

/// The desk's gauges for metrics: open appeals by state, review deadlines near and past.
pub async fn gauges(engine: &Engine) -> Result<crate::store::Gauges, EngineError> {
    Ok(engine.store().gauges(&engine.workflow().bindings().review_sla).await?)
}

/// Migrations this build has that the database lacks (readiness).
pub async fn pending_migrations(engine: &Engine) -> Result<Vec<i64>, crate::store::StoreError> {
    engine.store().pending_migrations().await
}

/// How many open appeals one staff member holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewerLoad {
    pub reviewer: String,
    pub claimed: i64,
}

/// Each claim holder's open appeals, most first (the lead's view of the desk's load).
pub async fn reviewer_load(engine: &Engine) -> Result<Vec<ReviewerLoad>, EngineError> {
    let rows = engine.store().claims_by_holder().await?;
    Ok(rows.into_iter().map(|(reviewer, claimed)| ReviewerLoad { reviewer, claimed }).collect())
}
