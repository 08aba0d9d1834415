//! The review queue: open appeals by review deadline (breached first, those without one
//! last, then oldest first), filtered by state, item, scenario and claim, one page at a
//! time (by number to page 100, then after a cursor), with how many each open state
//! holds under the same filters (capped at [`COUNT_CAP`]). Index range reads of the
//! appeal rows in one snapshot (`AppealStore::review_queue`), whatever the queue's size.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::draft::Scenario;
use crate::domain::{AppealItem, FieldError, check_text};
use crate::engine::{Engine, EngineError};
use crate::store::{AssigneeMatch, QueueFilter, QueueKey, QueueRow};

/// Items a queue page holds at most.
pub const MAX_PER_PAGE: i64 = 100;

/// How deep into the queue page numbers reach: a numbered page reads and skips every
/// row before it, so past this one a page is read with `after` (the previous page's
/// `next`), which enters the queue index where the last page ended, however deep.
pub const MAX_PAGE: i64 = 100;

/// Where a state's count stops: past it the queue says "more than this" rather than
/// counting every match, so a page costs the same in a queue of any size. (`/metrics`
/// has the exact counts per state.)
pub const COUNT_CAP: i64 = 1_000;

/// Which part of the queue to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueQuery {
    /// Open states to list; empty: where the review SLA runs.
    pub states: Vec<String>,
    /// From 1 to [`MAX_PAGE`]. With `after`, the page's number as the reader counts it
    /// (it moves nothing; the console's pager may take it past [`MAX_PAGE`], the API
    /// keeps it to 1..=100).
    pub page: i64,
    /// 1 to [`MAX_PER_PAGE`].
    pub per_page: i64,
    /// Only appeals that ask for this item.
    pub item: Option<AppealItem>,
    /// Only appeals of this scenario.
    pub scenario: Option<Scenario>,
    /// Only appeals someone (or no one, or this reviewer) holds.
    pub assignee: AssigneeFilter,
    /// Start after this cursor: a page's `next`.
    pub after: Option<String>,
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
            after: None,
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
    /// The matches, at most [`COUNT_CAP`].
    pub count: i64,
    /// More than `count` match: the count stopped at its cap.
    pub capped: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuePage {
    pub states: Vec<String>,
    pub page: i64,
    pub per_page: i64,
    /// Appeals in the asked states under every filter (the sum of their counts).
    pub total: usize,
    /// Some asked state's count stopped at its cap: more than `total` match.
    pub total_capped: bool,
    pub items: Vec<QueueItem>,
    /// Every open state, in the workflow's order, with its count under the filters other
    /// than the states (so a state not asked for shows what asking for it would list).
    pub counts: Vec<StateCount>,
    /// The page after this one: pass it as `after` (with the same filters). `null` on the
    /// last page.
    pub next: Option<String>,
}

/// A queue cursor: a row's place in the queue's order as text, `DUE.CREATED.ID` (the
/// instants in microseconds since the epoch, `-` for no deadline).
pub fn cursor(key: &QueueKey) -> String {
    let due = key.review_due_at.map_or("-".to_string(), |d| d.timestamp_micros().to_string());
    format!("{due}.{}.{}", key.created_at.timestamp_micros(), key.id)
}

/// A cursor back into a place in the queue's order, or the rule naming the field.
pub fn parse_cursor(raw: &str) -> Result<QueueKey, FieldError> {
    let bad = || FieldError::new("after", "a queue page's `next` cursor, as it gave it");
    // 1 to 18 digits, as the API's schema says: no sign, no wider numbers.
    let micros = |s: &str| {
        (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
    };
    let mut parts = raw.splitn(3, '.');
    let (due, created, id) = match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(c), Some(i)) => (d, c, i),
        _ => return Err(bad()),
    };
    let review_due_at = if due == "-" { None } else { Some(micros(due).ok_or_else(bad)?) };
    let created_at = micros(created).ok_or_else(bad)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad());
    }
    Ok(QueueKey { review_due_at, created_at, id: id.to_string() })
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
    } else if query.after.is_none() && query.page > MAX_PAGE {
        problems.push(FieldError::new(
            "page",
            format!("an integer from 1 to {MAX_PAGE}; read further with `after` (the previous page's `next`)"),
        ));
    }
    if !(1..=MAX_PER_PAGE).contains(&query.per_page) {
        problems.push(FieldError::new("per_page", format!("an integer from 1 to {MAX_PER_PAGE}")));
    }
    let after = match query.after.as_deref().map(parse_cursor).transpose() {
        Ok(after) => after,
        Err(e) => {
            problems.push(e);
            None
        }
    };
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
        offset: if after.is_some() { 0 } else { (query.page - 1).saturating_mul(query.per_page) },
        // One more than the page, to know whether a next page exists.
        limit: query.per_page + 1,
        after,
        count_states: open.iter().map(|s| s.to_string()).collect(),
        count_cap: COUNT_CAP,
    };
    let mut slice = engine.store().review_queue(&filter).await?;
    let more = slice.rows.len() > usize::try_from(query.per_page).unwrap_or(0);
    slice.rows.truncate(usize::try_from(query.per_page).unwrap_or(0));
    let next = if more { slice.rows.last().map(|r| cursor(&r.key())) } else { None };
    let counts: Vec<StateCount> =
        slice.counts.into_iter().map(|(state, count, capped)| StateCount { state, count, capped }).collect();
    let asked = counts.iter().filter(|c| states.contains(&c.state));
    let total = asked.clone().map(|c| c.count).sum::<i64>();
    let total_capped = asked.clone().any(|c| c.capped);
    let now = engine.now();
    let warns = wf.review_sla().warning.is_some();
    let items = slice.rows.into_iter().map(|r| item(r, now, warns)).collect::<Result<_, _>>()?;
    Ok(QueuePage {
        states,
        page: query.page,
        per_page: query.per_page,
        total: usize::try_from(total).unwrap_or(0),
        total_capped,
        items,
        counts,
        next,
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
