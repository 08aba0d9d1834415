//! Application queries and commands shared by the CLI (and later the HTTP API): they
//! turn raw input into domain types and engine results into views.

pub mod access;
pub mod admin;
pub mod desk;
pub mod drafts;
pub mod effects;
pub mod health;
pub mod idempotent;
pub mod intake;
pub mod janitor;
pub mod limits;
pub mod problem;
pub mod review;
pub mod sessions;
pub mod whatif;
pub mod work;

use serde::Serialize;

use crate::domain::{FieldError, TicketNumber};
use crate::engine::{Engine, EngineError};
use crate::store::{AppealFilter, AppealRecord, EventRecord, TimerRecord};

/// A refusal by an app service beyond the engine's own: the caller may not, the thing is
/// not there, or it is not in a state that allows it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("only a dead job can be retried (this one is {status}, {attempts} attempts)")]
    NotDead { status: String, attempts: i64 },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::Engine(e.into())
    }
}

/// Parses JSON input, reporting where it is wrong without repeating the offending value
/// (it may be a phone or an identity number, which never go into an error message).
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, EngineError> {
    serde_json::from_str(text).map_err(|e| {
        EngineError::Invalid(vec![FieldError::new(
            format!("json (line {}, column {})", e.line(), e.column()),
            redact_json_error(&e),
        )])
    })
}

/// serde_json quotes a wrong value between backticks ("invalid type: integer `138...`,
/// expected a string"); field names (`unknown field`, `missing field`) are kept.
fn redact_json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_string();
    let hides_value =
        ["invalid type:", "invalid value:", "unknown variant", "invalid length"].iter().any(|p| message.starts_with(p));
    if !hides_value {
        return message;
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    // Only the first backticked segment is the value; later ones are expected names.
    if let Some(start) = rest.find('`')
        && let Some(len) = rest[start + 1..].find('`')
    {
        out.push_str(&rest[..start]);
        out.push_str("(value not shown)");
        rest = &rest[start + 1 + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The refusal for a command made from a read of `expected` when the appeal is at another
/// version; `None` when there is no expectation or it holds.
pub fn stale_read(expected: Option<i64>, record: &crate::store::AppealRecord) -> Option<crate::workflow::Refusal> {
    expected.filter(|v| *v != record.version).map(|expected| crate::workflow::Refusal::StaleVersion {
        expected,
        current: record.version,
        state: record.state.clone(),
    })
}

pub fn parse_ticket(raw: &str) -> Result<TicketNumber, EngineError> {
    TicketNumber::parse(raw).map_err(|e| EngineError::Invalid(vec![FieldError::new("ticket", e.to_string())]))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub seq: i64,
    pub transition: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<String>,
    pub actor: String,
    pub role: String,
    pub reasons: Vec<String>,
    pub at: String,
}

impl From<&EventRecord> for HistoryView {
    fn from(e: &EventRecord) -> Self {
        HistoryView {
            seq: e.seq,
            transition: e.transition.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            outcome: e.outcome.clone(),
            actor: e.actor.clone(),
            role: e.role.to_string(),
            reasons: e.reasons.clone(),
            at: e.at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimerView {
    pub name: String,
    pub generation: i64,
    pub due_at: String,
    pub status: String,
}

impl From<&TimerRecord> for TimerView {
    fn from(t: &TimerRecord) -> Self {
        TimerView {
            name: t.name.clone(),
            generation: t.generation,
            due_at: t.due_at.to_rfc3339(),
            status: t.status.as_str().to_string(),
        }
    }
}

/// What `appeal show` prints.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppealView {
    pub ticket: String,
    pub account: String,
    /// The workflow the appeal runs on, and its version (the one it started on, or the
    /// one a migration moved it to).
    pub workflow: String,
    pub workflow_version: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    pub assignee: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// When the review SLA falls due, while it runs.
    pub review_due_at: Option<String>,
    pub timers: Vec<TimerView>,
    pub history: Vec<HistoryView>,
}

/// The appeal's history, oldest first.
pub async fn history(engine: &Engine, ticket: &TicketNumber) -> Result<Vec<EventRecord>, EngineError> {
    let record = review::load(engine, ticket).await?;
    Ok(engine.store().history(&record.id).await?)
}

pub async fn show(engine: &Engine, ticket: &TicketNumber) -> Result<AppealView, EngineError> {
    let record =
        engine.store().appeal_by_ticket(ticket).await?.ok_or_else(|| EngineError::NotFound(ticket.to_string()))?;
    let history = engine.store().history(&record.id).await?;
    let timers = engine.store().timers(Some(&record.id)).await?;
    Ok(view(&engine.workflow().bindings().review_sla, &record, &history, &timers))
}

fn view(review_sla: &str, record: &AppealRecord, history: &[EventRecord], timers: &[TimerRecord]) -> AppealView {
    let review_due_at = timers
        .iter()
        .find(|t| t.name == review_sla && t.status == crate::store::TimerStatus::Armed)
        .map(|t| t.due_at.to_rfc3339());
    AppealView {
        ticket: record.ticket.to_string(),
        account: record.account.clone(),
        workflow: record.workflow.clone(),
        workflow_version: record.workflow_version,
        state: record.state.clone(),
        outcome: record.outcome.clone(),
        version: record.version,
        assignee: record.assignee.clone(),
        created_at: record.created_at.to_rfc3339(),
        updated_at: record.updated_at.to_rfc3339(),
        review_due_at,
        timers: timers.iter().map(TimerView::from).collect(),
        history: history.iter().map(HistoryView::from).collect(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppealSummary {
    pub ticket: String,
    pub account: String,
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    pub assignee: Option<String>,
    pub updated_at: String,
}

pub async fn list(engine: &Engine, state: Option<String>) -> Result<Vec<AppealSummary>, EngineError> {
    if let Some(s) = &state
        && engine.workflow().state(s).is_none()
    {
        let known: Vec<&str> = engine.workflow().def.states.iter().map(|s| s.name.as_str()).collect();
        return Err(EngineError::Invalid(vec![FieldError::new(
            "state",
            format!("unknown state {s:?} (known: {})", known.join(", ")),
        )]));
    }
    let records = engine.store().list_appeals(&AppealFilter { state, limit: None }).await?;
    Ok(records
        .iter()
        .map(|r| AppealSummary {
            ticket: r.ticket.to_string(),
            account: r.account.clone(),
            state: r.state.clone(),
            outcome: r.outcome.clone(),
            version: r.version,
            assignee: r.assignee.clone(),
            updated_at: r.updated_at.to_rfc3339(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Phone {
        phone: String,
    }

    #[test]
    fn json_errors_never_repeat_the_offending_value() {
        let err = parse_json::<Phone>(r#"{"phone": 13812345678}"#).unwrap_err().to_string();
        assert!(!err.contains("13812345678"), "{err}");
        assert!(err.contains("invalid type: integer (value not shown), expected a string"), "{err}");
        let err = parse_json::<Phone>(r#"{"phnoe": "x"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `phnoe`"), "{err}");
    }
}
