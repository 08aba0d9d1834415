//! What the store reads back: appeals, their history and timers, the worker's rows,
//! tokens, staff sessions and drafts. Each row type maps itself (`FromRow`), once for both backends;
//! timestamps go through [`Stamp`](super::codec::Stamp), JSON columns through `Json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::StoreError;
use super::codec::{MaybeStamp, Stamp};
use crate::domain::{AppealItem, Role, TicketNumber};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct AppealRecord {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub ticket: TicketNumber,
    pub workflow: String,
    pub workflow_version: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    pub assignee: Option<String>,
    /// The account the appeal is about (its name in the account directory).
    pub account: String,
    /// The appeal's record as submitted (validated at the edge).
    #[sqlx(json)]
    pub data: serde_json::Value,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "Stamp")]
    pub updated_at: DateTime<Utc>,
}

/// One row of an appeal's append-only history. `seq` equals the appeal's version after
/// the commit that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct EventRecord {
    pub seq: i64,
    pub transition: String,
    #[sqlx(rename = "from_state")]
    pub from: Option<String>,
    #[sqlx(rename = "to_state")]
    pub to: String,
    pub outcome: Option<String>,
    pub actor: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(json)]
    pub reasons: Vec<String>,
    #[sqlx(json)]
    pub payload: serde_json::Value,
    #[sqlx(try_from = "Stamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct TimerRecord {
    pub id: i64,
    pub appeal_id: String,
    #[sqlx(try_from = "String")]
    pub ticket: TicketNumber,
    pub name: String,
    /// Increases each time the same timer is armed again on the same appeal.
    pub generation: i64,
    #[sqlx(try_from = "Stamp")]
    pub due_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub status: TimerStatus,
    #[sqlx(try_from = "Stamp")]
    pub armed_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeStamp")]
    pub settled_at: Option<DateTime<Utc>>,
}

/// An effect row an earlier version left in the outbox (the outbox is no longer
/// written; rows not yet carried out are adopted once at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct LegacyEffect {
    pub id: i64,
    pub appeal_id: String,
    pub event_seq: i64,
    pub effect: String,
    pub template: Option<String>,
    pub recipient: Option<String>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A hash of the command the key was first used with.
    pub fingerprint: String,
    /// What the first execution answered, replayed to repeats.
    #[sqlx(json)]
    pub response: serde_json::Value,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
}

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name { $(#[serde(rename = $text)] $variant),* }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(StoreError::Corrupt(format!(concat!("unknown ", stringify!($name), " {:?}"), other))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so a width in a format string lines columns up.
                f.pad(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = StoreError;
            fn try_from(s: String) -> Result<Self, StoreError> {
                $name::parse(&s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).map_err(|_| format!(
                    "unknown value {s:?} (one of: {})",
                    [$($text),*].join(", ")
                ))
            }
        }
    };
}

status_enum!(
    /// Where a timer stands: armed until it fires or is cancelled.
    TimerStatus { Armed = "armed", Fired = "fired", Cancelled = "cancelled" }
);

status_enum!(
    /// Where a notification stands.
    NotificationStatus { Pending = "pending", Held = "held", Sent = "sent", Failed = "failed", Skipped = "skipped" }
);

status_enum!(
    /// Where a post-approval action stands.
    ActionStatus { Pending = "pending", Succeeded = "succeeded", Failed = "failed" }
);

status_enum!(
    /// Where a job stands in apalis's table, spelled as apalis stores it.
    JobStatus { Pending = "Pending", Queued = "Queued", Running = "Running", Done = "Done", Failed = "Failed", Killed = "Killed" }
);

impl JobStatus {
    /// Not finished: waiting, queued or running (a failed job may still be retried; see
    /// [`JobRecord::dead`]).
    pub fn is_open(self) -> bool {
        match self {
            JobStatus::Pending | JobStatus::Queued | JobStatus::Running => true,
            JobStatus::Done | JobStatus::Failed | JobStatus::Killed => false,
        }
    }
}

impl PartialEq<&str> for JobStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct ActionRecord {
    pub id: i64,
    pub appeal_id: String,
    #[sqlx(try_from = "String")]
    pub ticket: TicketNumber,
    pub action: String,
    /// `{appeal_id}:{action}`: the same on every attempt, on every worker.
    pub idempotency_key: String,
    pub manual: bool,
    /// Failed means for good: the appeal needs attention.
    #[sqlx(try_from = "String")]
    pub status: ActionStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[sqlx(json(nullable))]
    pub result: Option<serde_json::Value>,
    pub done_by: Option<String>,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "Stamp")]
    pub updated_at: DateTime<Utc>,
}

/// What the built-in directory's ledger says about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct AppliedChange {
    pub account: String,
    pub action: String,
    #[sqlx(json)]
    pub before: serde_json::Value,
    #[sqlx(json)]
    pub after: serde_json::Value,
    #[sqlx(try_from = "Stamp")]
    pub applied_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct NotificationRecord {
    pub id: i64,
    pub appeal_id: Option<String>,
    pub idempotency_key: String,
    pub template: String,
    pub channel: String,
    pub locale: String,
    /// The full address, needed to deliver; shown only masked.
    #[serde(skip_serializing)]
    pub recipient: String,
    pub recipient_masked: String,
    pub body: String,
    #[sqlx(try_from = "String")]
    pub status: NotificationStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeStamp")]
    pub sent_at: Option<DateTime<Utc>>,
    pub chain: Option<String>,
    pub position: i64,
    pub on_delivered: Option<String>,
    pub on_undeliverable: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkFilter {
    pub appeal_id: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// A row of the job queue's table (apalis's, in the same database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    pub id: String,
    pub queue: String,
    pub status: JobStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Dead: no attempt will follow (attempts used up, or aborted).
    pub dead: bool,
    pub run_at: DateTime<Utc>,
    pub last_result: Option<String>,
    /// The job's arguments (IDs only): free-form, each queue's own.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub dead_only: bool,
    pub queue: Option<String>,
    pub limit: Option<i64>,
}

/// An API token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[serde(skip_serializing)]
    pub token_hash: String,
    /// Where a lead's SLA warnings and breaches go.
    pub email: Option<String>,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeStamp")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A staff member's web-console session as stored: `id` is the SHA-256 of the session's
/// secret, never the secret itself.
#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub token_id: String,
    pub csrf: String,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "Stamp")]
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, however active the session is.
    #[sqlx(try_from = "Stamp")]
    pub expires_at: DateTime<Utc>,
}

/// The CSRF value stays out of logs: it is half of what a forged form would need.
impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("token_id", &self.token_id)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session with the staff member its token names.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StaffSessionRecord {
    #[sqlx(flatten)]
    pub session: SessionRecord,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

/// An applicant's draft as stored (the secret only as a hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct DraftRecord {
    pub id: String,
    #[serde(skip_serializing)]
    pub secret_hash: String,
    #[sqlx(json)]
    pub data: serde_json::Value,
    /// Set once the draft was submitted.
    pub ticket: Option<String>,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "Stamp")]
    pub updated_at: DateTime<Utc>,
}

/// What `/metrics` reports, counted by the database rather than by loading rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gauges {
    pub appeals_by_state: Vec<(String, i64)>,
    pub jobs_by_status: Vec<(String, i64)>,
    pub dead_jobs: i64,
    /// Review SLA timers that fired: deadlines passed without a decision.
    pub sla_breaches: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AppealFilter {
    pub state: Option<String>,
    pub limit: Option<i64>,
}

/// Which part of the review queue to read ([`AppealStore::review_queue`]): open appeals
/// in `states`, ordered by review deadline (earliest first, so breached first; none
/// last), then by when they were created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub states: Vec<String>,
    /// Only appeals that ask for this item.
    pub item: Option<AppealItem>,
    /// Only appeals of this scenario (as the draft spells it, e.g. `deregistered`).
    pub scenario: Option<String>,
    pub assignee: AssigneeMatch,
    /// Start after this place in the queue's order (keyset paging); `offset` is then
    /// not used.
    pub after: Option<QueueKey>,
    pub offset: i64,
    pub limit: i64,
    /// The states to count (under the filters other than `states`).
    pub count_states: Vec<String>,
    /// Counts stop here: a state holding more says so rather than how many.
    pub count_cap: i64,
}

/// A place in the review queue's order: a row's review deadline (none sorts last),
/// creation instant and id. A page that starts after it reads the queue index from
/// there, however deep into the queue it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKey {
    pub review_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub id: String,
}

/// Who holds the claim, as the queue filters it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AssigneeMatch {
    #[default]
    Any,
    /// Nobody holds a claim.
    Unclaimed,
    /// This reviewer holds it.
    Named(String),
}

/// One page of the review queue, with the counts per open state that the filters
/// other than the states leave (the total of the page's states is their sum).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSlice {
    pub rows: Vec<QueueRow>,
    /// Each of `count_states`: how many appeals match (at most the cap), and whether
    /// more than the cap do.
    pub counts: Vec<(String, i64, bool)>,
}

/// An appeal as the review queue lists it: the row's own columns and the copies kept
/// for the queue (`review_*`, `items`, `scenario`), written by each commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct QueueRow {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub ticket: TicketNumber,
    pub account: String,
    pub state: String,
    pub version: i64,
    pub assignee: Option<String>,
    /// The latest review SLA timer that was not cancelled: its deadline, whether it
    /// fired, and its warning's instant (none when the warning was not armed).
    #[sqlx(try_from = "MaybeStamp")]
    pub review_due_at: Option<DateTime<Utc>>,
    pub review_fired: bool,
    #[sqlx(try_from = "MaybeStamp")]
    pub review_warn_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub items: ItemList,
    pub scenario: Option<String>,
    #[sqlx(try_from = "Stamp")]
    pub created_at: DateTime<Utc>,
}

impl QueueRow {
    /// This row's place in the queue's order.
    pub fn key(&self) -> QueueKey {
        QueueKey { review_due_at: self.review_due_at, created_at: self.created_at, id: self.id.clone() }
    }
}

/// The appeal items as the `items` column keeps them: `,item,item,` (empty for none),
/// so one item is matched with `LIKE '%,item,%'` on both backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemList(pub Vec<AppealItem>);

impl ItemList {
    /// The items of an appeal's record (`draft.items`); names appealflow does not know
    /// are kept out (the record was validated when it was written).
    pub fn of_record(data: &serde_json::Value) -> ItemList {
        let items = data.pointer("/draft/items").and_then(serde_json::Value::as_array);
        ItemList(
            items
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .filter_map(|s| AppealItem::ALL.into_iter().find(|i| i.as_str() == s))
                .collect(),
        )
    }

    /// The column's text.
    pub fn text(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.0.iter().map(|i| i.as_str()).collect();
        format!(",{},", names.join(","))
    }

    /// The `LIKE` pattern (with `\` as its escape character) that matches a column holding `item`.
    pub fn pattern(item: AppealItem) -> String {
        format!("%,{},%", item.as_str().replace('_', "\\_"))
    }
}

impl TryFrom<String> for ItemList {
    type Error = StoreError;
    fn try_from(text: String) -> Result<Self, StoreError> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                AppealItem::ALL
                    .into_iter()
                    .find(|i| i.as_str() == s)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown appeal item {s:?} in the queue columns")))
            })
            .collect::<Result<_, _>>()
            .map(ItemList)
    }
}

/// The scenario of an appeal's record (`draft.scenario`), as the record spells it.
pub fn scenario_of_record(data: &serde_json::Value) -> Option<String> {
    data.pointer("/draft/scenario").and_then(serde_json::Value::as_str).map(str::to_string)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, FromRow)]
pub struct RowCounts {
    pub appeals: i64,
    pub events: i64,
    pub timers: i64,
    pub notifications: i64,
    pub actions: i64,
    pub jobs: i64,
    pub idempotency: i64,
}
