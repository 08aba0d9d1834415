//! Operating the desk: the job queue (dead jobs retried by hand, a keyed retry answered
//! once), post-approval actions needing attention and their retry, notifications. The
//! admin API and the CLI translate to and from these.

use serde::Serialize;

use crate::calendar::{BeyondPublished, Published, RecurringFile};

use super::ServiceError;
use super::idempotent::Idempotent;
use chrono::{DateTime, Utc};

use crate::domain::{Account, Actor, FieldError, TicketNumber};
use crate::engine::{Engine, EngineError};
use crate::jobs::{ACTIONS_QUEUE, QUEUES};
use crate::store::{
    ActionRecord, ActionStatus, JobFilter, JobRecord, NotificationRecord, StoreError, TimerRecord, WorkFilter,
};

/// Jobs listed at most by default, and at most at all.
pub const DEFAULT_JOB_LIMIT: i64 = 100;
pub const MAX_JOB_LIMIT: i64 = 1000;

/// Which jobs to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only dead jobs (attempts used up, or aborted).
    pub dead_only: bool,
    /// Only this queue (one of [`QUEUES`]).
    pub queue: Option<String>,
    /// 1 to [`MAX_JOB_LIMIT`].
    pub limit: i64,
}

impl Default for JobQuery {
    fn default() -> Self {
        JobQuery { dead_only: false, queue: None, limit: DEFAULT_JOB_LIMIT }
    }
}

/// The jobs of the queue, as asked; an unknown queue or a limit out of range is refused.
pub async fn jobs(engine: &Engine, query: JobQuery) -> Result<Vec<JobRecord>, EngineError> {
    let mut problems = Vec::new();
    if let Some(q) = &query.queue
        && !QUEUES.contains(&q.as_str())
    {
        problems.push(FieldError::new("queue", format!("one of {}", QUEUES.join(", "))));
    }
    if !(1..=MAX_JOB_LIMIT).contains(&query.limit) {
        problems.push(FieldError::new("limit", format!("an integer from 1 to {MAX_JOB_LIMIT}")));
    }
    if !problems.is_empty() {
        return Err(EngineError::Invalid(problems));
    }
    let filter = JobFilter { dead_only: query.dead_only, queue: query.queue, limit: Some(query.limit) };
    Ok(engine.store().jobs(&filter).await?)
}

/// A dead job queued again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobRetried {
    pub id: String,
    pub queue: String,
    pub retried: bool,
}

/// Queues dead job `id` again. Only a dead job can be retried: any other is refused with
/// its status. With `key`, a repeat (or a twin that lost the race) gets the first answer.
pub async fn retry_job(
    engine: &Engine,
    id: &str,
    actor: &Actor,
    key: Option<&str>,
) -> Result<JobRetried, ServiceError> {
    let store = engine.store();
    // A keyed retry is recorded beside the appeal commands' keys, in its own namespace.
    let keyed = key.map(|k| Idempotent::new(engine, "jobs.retry", k, id));
    if let Some(k) = &keyed
        && let Some(answer) = k.replay::<JobRetried>().await?
    {
        return Ok(answer);
    }
    let job = store
        .jobs(&JobFilter::default())
        .await?
        .into_iter()
        .find(|j| j.id == id)
        .ok_or_else(|| ServiceError::NotFound("no job with this id".into()))?;
    // An unkeyed repeat finds the job queued, no longer dead; a keyed one that lost the
    // race to its twin replays the twin's answer.
    if !job.dead || !store.retry_job(&job.id).await? {
        if let Some(k) = &keyed
            && let Some(answer) = k.replay::<JobRetried>().await?
        {
            return Ok(answer);
        }
        return Err(ServiceError::NotDead { status: job.status.as_str().to_string(), attempts: job.attempts });
    }
    tracing::info!(actor = %actor.name, job = %job.id, queue = %job.queue, "dead job retried");
    let answer = JobRetried { id: job.id, queue: job.queue, retried: true };
    if let Some(k) = keyed {
        k.remember(&answer).await?;
    }
    Ok(answer)
}

/// The id of the appeal with this ticket.
async fn appeal_id(engine: &Engine, ticket: &TicketNumber) -> Result<String, EngineError> {
    Ok(super::review::load(engine, ticket).await?.id)
}

/// Post-approval actions, of one appeal or all; with `attention`, only those needing a
/// person: failed for good, or pending with their job dead.
pub async fn actions(
    engine: &Engine,
    ticket: Option<&TicketNumber>,
    attention: bool,
) -> Result<Vec<ActionRecord>, EngineError> {
    let appeal_id = match ticket {
        Some(t) => Some(appeal_id(engine, t).await?),
        None => None,
    };
    let store = engine.store();
    let dead: Vec<i64> = if attention {
        store
            .jobs(&JobFilter { dead_only: true, queue: Some(ACTIONS_QUEUE.into()), limit: None })
            .await?
            .iter()
            .filter_map(|j| j.args.get("action_id").and_then(|v| v.as_i64()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(store
        .actions(&WorkFilter { appeal_id, ..Default::default() })
        .await?
        .into_iter()
        .filter(|a| {
            !attention
                || a.status == ActionStatus::Failed
                || (a.status == ActionStatus::Pending && dead.contains(&a.id))
        })
        .collect())
}

/// Makes failed action `id` pending again and queues it.
pub async fn retry_action(engine: &Engine, id: i64) -> Result<(), ServiceError> {
    if engine.store().retry_action(id, engine.now()).await? {
        Ok(())
    } else {
        Err(ServiceError::Conflict(format!("action {id} has not failed (or does not exist)")))
    }
}

/// Notifications, of one appeal or all, optionally in one status.
pub async fn notifications(
    engine: &Engine,
    ticket: Option<&TicketNumber>,
    status: Option<String>,
) -> Result<Vec<NotificationRecord>, EngineError> {
    let appeal_id = match ticket {
        Some(t) => Some(appeal_id(engine, t).await?),
        None => None,
    };
    Ok(engine.store().notifications(&WorkFilter { appeal_id, status, limit: None }).await?)
}

/// Timers, of one appeal or all.
pub async fn timers(engine: &Engine, ticket: Option<&TicketNumber>) -> Result<Vec<TimerRecord>, EngineError> {
    let appeal_id = match ticket {
        Some(t) => Some(appeal_id(engine, t).await?),
        None => None,
    };
    Ok(engine.store().timers(appeal_id.as_deref()).await?)
}

/// The earliest armed timer due at `at` or before, if any.
pub async fn next_due_timer(engine: &Engine, at: DateTime<Utc>) -> Result<Option<TimerRecord>, EngineError> {
    Ok(engine.store().due_timers(at, 1).await?.into_iter().next())
}

/// Adds or replaces accounts in the directory, all or none: two accounts claiming the
/// same domain, email domain or ICP filing are refused, naming both.
pub async fn import_accounts(engine: &Engine, accounts: &[Account]) -> Result<(), EngineError> {
    engine.store().put_accounts(accounts, engine.now()).await.map_err(|e| match e {
        StoreError::DuplicateAccountKey { .. } => {
            EngineError::Invalid(vec![FieldError::new("accounts", e.to_string())])
        }
        other => other.into(),
    })
}

/// The directory's account with this name.
pub async fn account(engine: &Engine, name: &str) -> Result<Option<Account>, EngineError> {
    Ok(engine.store().account(name).await?)
}

/// A business-day calendar: its published years, what it does past them, and whether the
/// loaded workflow uses it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CalendarView {
    pub name: String,
    pub description: String,
    pub time_zone: String,
    pub published: Published,
    pub years: Vec<i32>,
    pub beyond_published: BeyondPublished,
    pub recurring_holidays: Vec<RecurringFile>,
    pub in_use: bool,
}

/// The calendars beside the workflow's directory (as `startup::load_workflow` reads
/// them) and the one the workflow uses, by name.
pub fn calendars(wf: &crate::workflow::Workflow) -> Vec<CalendarView> {
    use crate::calendar::Calendar;
    let describe = |c: &Calendar| CalendarView {
        name: c.name.clone(),
        description: c.description.clone(),
        time_zone: c.time_zone.name().to_string(),
        published: c.published,
        years: (c.published.first_year..=c.published.last_year).collect(),
        beyond_published: c.beyond_published,
        recurring_holidays: c.recurring_holidays.clone(),
        in_use: c.name == wf.calendar.name,
    };
    let mut found: std::collections::BTreeMap<String, CalendarView> = Default::default();
    if let Some(dir) = wf.dir.parent().map(|p| p.join("calendars")) {
        for name in Calendar::names(&dir) {
            match Calendar::load(&dir, &name) {
                Ok(c) => {
                    found.insert(name, describe(&c));
                }
                Err(e) => tracing::warn!(calendar = %name, error = %e, "calendar not listed"),
            }
        }
    }
    found.entry(wf.calendar.name.clone()).or_insert_with(|| describe(&wf.calendar));
    found.into_values().collect()
}
