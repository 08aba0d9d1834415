//! Admins' routes: jobs (dead ones retried), the loaded workflow, the calendars. The
//! rules live in `app::admin`; these translate.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Shared;
use super::error::{ApiError, ApiResult};
use super::extractors::{Admin, NoBody, Params, Preconditions, QueryPairs};
use crate::app::admin::{self, DEFAULT_JOB_LIMIT, JobQuery, MAX_JOB_LIMIT};
use crate::calendar::{BeyondPublished, Calendar, Published, RecurringFile};
use crate::store::JobRecord;
use crate::workflow::WorkflowFile;
use crate::workflow::graph::{GraphFormat, render};

/// `GET /v1/admin/jobs`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Jobs {
    jobs: Vec<JobRecord>,
}

/// `GET /v1/admin/workflow`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WorkflowDocument<'a> {
    name: &'a str,
    version: u32,
    calendar: &'a str,
    /// The loaded workflow definition, as its TOML file states it: documented with the
    /// workflow files, free-form here.
    #[schema(value_type = Object)]
    definition: &'a WorkflowFile,
    mermaid: String,
}

/// `GET /v1/admin/calendars`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Calendars {
    calendars: Vec<CalendarView>,
}

/// A business-day calendar: its published years, what it does past them, and whether the
/// loaded workflow uses it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CalendarView {
    name: String,
    description: String,
    time_zone: String,
    published: Published,
    years: Vec<i32>,
    beyond_published: BeyondPublished,
    recurring_holidays: Vec<RecurringFile>,
    in_use: bool,
}

/// `GET /v1/jobs?dead=...&queue=...&limit=...`.
pub(super) async fn jobs(State(state): State<Shared>, _admin: Admin, query: QueryPairs) -> ApiResult<Response> {
    query.check_known(&["dead", "queue", "limit"])?;
    let dead_only = match query.one("dead")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("query.dead", "true or false")),
    };
    let asked = JobQuery {
        dead_only,
        queue: query.one("queue")?.map(str::to_string),
        limit: query.number("limit", DEFAULT_JOB_LIMIT, 1, MAX_JOB_LIMIT)?,
    };
    let jobs = admin::jobs(state.engine(), asked).await.map_err(|e| ApiError::from(e).in_query())?;
    Ok(Json(Jobs { jobs }).into_response())
}

/// `POST /v1/jobs/{id}/retry`: a dead job queued again.
pub(super) async fn retry_job(
    State(state): State<Shared>,
    Admin(admin): Admin,
    Params(id): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    let retried = admin::retry_job(state.engine(), &id, &admin, pre.key.as_deref()).await?;
    Ok(Json(retried).into_response())
}

pub(super) async fn workflow(State(state): State<Shared>, _admin: Admin) -> Response {
    let wf = state.engine().workflow();
    Json(WorkflowDocument {
        name: wf.name(),
        version: wf.def.workflow.version,
        calendar: &wf.calendar.name,
        definition: &wf.def,
        mermaid: render(&wf.def, GraphFormat::Mermaid),
    })
    .into_response()
}

pub(super) async fn calendars(State(state): State<Shared>, _admin: Admin) -> Json<Calendars> {
    let wf = state.engine().workflow();
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
    // The calendars beside the workflow's directory, as `startup::load_workflow` reads them.
    let mut found: BTreeMap<String, CalendarView> = BTreeMap::new();
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
    Json(Calendars { calendars: found.into_values().collect() })
}

// -------------------------------------------------------------------------- openapi
