//! The record stored with a submitted appeal: the draft as submitted, the documents it
//! replaced, the entity-change link.

use super::*;

/// The entity-change request a deregistered enterprise's appeal waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntityChange {
    pub required: bool,
    pub ticket: Option<String>,
    pub account: Option<String>,
    pub linked_by: Option<String>,
    pub linked_at: Option<DateTime<Utc>>,
}

/// A document replaced or removed at resubmission: kept, never deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplacedDocument {
    pub document: DraftDocument,
    pub replaced_at: DateTime<Utc>,
}

/// The record stored with a submitted appeal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppealData {
    pub draft: Draft,
    pub case: Option<String>,
    pub changes_secure_phone: bool,
    pub entity_change: EntityChange,
    #[serde(default)]
    pub previous_documents: Vec<ReplacedDocument>,
    /// How the account was verified when the appeal was (re)submitted: what the
    /// four-eyes rules read as `enterprise_account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationType>,
    /// A first approval waiting for a second approver (four-eyes), once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_approval: Option<crate::workflow::FirstApproval>,
    /// A change waiting out its cooling-off (the stop code's salted hash), while one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<crate::workflow::PendingChange>,
    /// The account holder stopped an approval of this appeal: kept for good, through
    /// resubmissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disputed: Option<crate::workflow::Dispute>,
}

impl AppealData {
    pub fn from_record(record: &AppealRecord) -> Result<AppealData, EngineError> {
        serde_json::from_value(record.data.clone())
            .map_err(|e| EngineError::Store(StoreError::Corrupt(format!("appeal {} record: {e}", record.ticket))))
    }
}
