//! Admins' routes: jobs (dead ones retried), the loaded workflow, the calendars. The
//! rules live in `app::admin`; these translate.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Shared;
use super::error::{ApiError, ApiResult};
use super::extractors::{Admin, NoBody, Params, Preconditions, QueryPairs};
use crate::app::admin::{self, CalendarView, DEFAULT_JOB_LIMIT, JobQuery, MAX_JOB_LIMIT};
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
    Json(Calendars { calendars: admin::calendars(state.engine().workflow()) })
}

// -------------------------------------------------------------------------- openapi
