//! The review queue: open appeals by review deadline (breached first, those without one
//! last, then oldest first), filtered by state, item, scenario and claim, one page at a
//! time, with how many each open state holds under the same filters. One indexed read
//! of the appeal rows (`AppealStore::review_queue`), whatever the queue's size.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::draft::Scenario;
use crate::domain::{AppealItem, FieldError, check_text};
use crate::engine::{Engine, EngineError};
use crate::store::{AssigneeMatch, QueueFilter, QueueRow};

/// Items a queue page holds at most.
pub const MAX_PER_PAGE: i64 = 100;

/// Which part of the queue to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueQuery {
    /// Open states to list; empty: where the review SLA runs.
    pub states: Vec<String>,
    /// From 1.
    pub page: i64,
    /// 1 to [`MAX_PER_PAGE`].
    pub per_page: i64,
    /// Only appeals that ask for this item.
    pub item: Option<AppealItem>,
    /// Only appeals of this scenario.
    pub scenario: Option<Scenario>,
    /// Only appeals someone (or no one, or this reviewer) holds.
    pub assignee: AssigneeFilter,
}

impl Default for QueueQuery {
    fn default() -> Self {
        QueueQuery {
            states: Vec::new(),
            page: 1,
            per_page: 20,
            item: None,
            scenario: None,
            assignee: AssigneeFilter::Any,
        }
    }
}

/// Whose claim the queue lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Claimed or not.
    #[default]
    Any,
    /// Nobody holds a claim.
    Unclaimed,
    /// This reviewer holds the claim.
    Named(String),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    pub ticket: String,
    pub account: String,
    pub state: String,
    pub version: i64,
    pub assignee: Option<String>,
    /// The review SLA's deadline (armed, or already fired).
    #[schema(format = DateTime)]
    pub review_due_at: Option<String>,
    pub breached: bool,
    /// The review SLA's warning is due (its instant has passed, or the SLA fired).
    pub warning: bool,
    pub items: Vec<AppealItem>,
    pub scenario: Option<Scenario>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// How many open appeals a state holds under the query's filters other than its states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuePage {
    pub states: Vec<String>,
    pub page: i64,
    pub per_page: i64,
    /// Appeals in the asked states under every filter (the sum of their counts).
    pub total: usize,
    pub items: Vec<QueueItem>,
    /// Every open state, in the workflow's order, with its count under the filters other
    /// than the states (so a state not asked for shows what asking for it would list).
    pub counts: Vec<StateCount>,
}

/// An appeal item by its name (`detach_mfa`), or the rule naming the field.
pub fn parse_item(raw: &str) -> Result<AppealItem, FieldError> {
    AppealItem::ALL.into_iter().find(|i| i.as_str() == raw).ok_or_else(|| {
        let names: Vec<&str> = AppealItem::ALL.iter().map(|i| i.as_str()).collect();
        FieldError::new("item", format!("one of: {}", names.join(", ")))
    })
}

/// A scenario by its name (`deregistered`), or the rule naming the field.
pub fn parse_scenario(raw: &str) -> Result<Scenario, FieldError> {
    serde_json::from_value(serde_json::Value::String(raw.to_string()))
        .map_err(|_| FieldError::new("scenario", "one of: active, name_changed, deregistered"))
}

fn scenario_name(s: Scenario) -> Option<String> {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string))
}

/// The review queue: the appeals in the asked open states, earliest review deadline
/// first (so breached first), those without one last, then oldest first, paged.
pub async fn queue(engine: &Engine, query: QueueQuery) -> Result<QueuePage, EngineError> {
    let wf = engine.workflow();
    let open = wf.open_states();
    let mut problems = Vec::new();
    if let Some(bad) = query.states.iter().find(|s| !open.contains(&s.as_str())) {
        problems.push(FieldError::new(
            "state",
            format!("{:?} is not an open state (open: {})", bad.chars().take(40).collect::<String>(), open.join(", ")),
        ));
    }
    if query.page < 1 {
        problems.push(FieldError::new("page", "an integer from 1"));
    }
    if !(1..=MAX_PER_PAGE).contains(&query.per_page) {
        problems.push(FieldError::new("per_page", format!("an integer from 1 to {MAX_PER_PAGE}")));
    }
    let assignee = match query.assignee {
        AssigneeFilter::Any => AssigneeMatch::Any,
        AssigneeFilter::Unclaimed => AssigneeMatch::Unclaimed,
        AssigneeFilter::Named(name) => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 100 {
                problems.push(FieldError::new("assignee", "a reviewer's name (1 to 100 characters)"));
            } else if let Err(e) = check_text("assignee", &name, false) {
                problems.push(e);
            }
            AssigneeMatch::Named(name)
        }
    };
    if !problems.is_empty() {
        return Err(EngineError::Invalid(problems));
    }
    let mut states = query.states;
    if states.is_empty() {
        states = wf.review_states().to_vec();
    }
    states.sort();
    states.dedup();

    let filter = QueueFilter {
        states: states.clone(),
        item: query.item,
        scenario: query.scenario.and_then(scenario_name),
        assignee,
        offset: (query.page - 1).saturating_mul(query.per_page),
        limit: query.per_page,
    };
    let slice = engine.store().review_queue(&filter).await?;
    let counted = |state: &str| slice.counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let counts: Vec<StateCount> = open.iter().map(|s| StateCount { state: s.to_string(), count: counted(s) }).collect();
    let total = states.iter().map(|s| counted(s.as_str())).sum::<i64>();
    let now = engine.now();
    let warns = wf.review_sla().warning.is_some();
    let items = slice.rows.into_iter().map(|r| item(r, now, warns)).collect::<Result<_, _>>()?;
    Ok(QueuePage {
        states,
        page: query.page,
        per_page: query.per_page,
        total: usize::try_from(total).unwrap_or(0),
        items,
        counts,
    })
}

/// A row as the queue shows it at `now`; `warns`: the review SLA has a warning.
fn item(r: QueueRow, now: DateTime<Utc>, warns: bool) -> Result<QueueItem, EngineError> {
    let breached = r.review_fired || r.review_due_at.is_some_and(|at| at <= now);
    // No warning armed with a deadline that has one: it fell at or before the start.
    let warning = warns && r.review_due_at.is_some() && (breached || r.review_warn_at.is_none_or(|at| at <= now));
    let scenario = match r.scenario.as_deref().map(parse_scenario).transpose() {
        Ok(s) => s,
        Err(e) => {
            return Err(EngineError::Store(crate::store::StoreError::Corrupt(format!(
                "appeal {}: queue scenario: {e}",
                r.ticket
            ))));
        }
    };
    Ok(QueueItem {
        ticket: r.ticket.to_string(),
        account: r.account,
        state: r.state,
        version: r.version,
        assignee: r.assignee,
        review_due_at: r.review_due_at.map(|at| at.to_rfc3339()),
        breached,
        warning,
        items: r.items.0,
        scenario,
        created_at: r.created_at.to_rfc3339(),
    })
}
