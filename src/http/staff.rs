//! Reviewers', leads' and admins' routes: the queue, appeal detail, decisions, documents,
//! reassignment, dead jobs, the loaded workflow and calendars. Also the one table of
//! every route of the API ([`API`]): it builds this module's router, the OpenAPI
//! document served at `/openapi.json`, and the route check in `tests/http_staff.rs`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::auth::{JsonBody, Staff};
use super::error::{ApiError, ApiResult};
use crate::app::intake::{AppealData, EntityChange, EntityLink};
use crate::app::work::ManualTaskError;
use crate::app::{AppealView, parse_json, parse_ticket};
use crate::domain::document::{ContentType, DocumentKind};
use crate::domain::draft::DraftDocument;
use crate::domain::{Actor, AppealItem, FieldError, Role, TicketNumber, check_text};
use crate::engine::{CommandOutcome, EngineError};
use crate::store::{AppealFilter, AppealRecord, IdempotencyRecord, JobFilter, TimerStatus, WorkFilter};
use crate::workflow::Fire;
use crate::workflow::graph::{GraphFormat, render};

// ------------------------------------------------------------------ the route table

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, metrics, the progress query, creating a draft, this document).
    Public,
    /// An applicant presenting the draft's secret (`X-Draft-Secret`).
    Applicant,
    /// The facial-recognition provider, by HMAC signature.
    Provider,
    /// A bearer token with one of these roles.
    Staff(&'static [Role]),
}

/// What a route reads from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// Nothing, or an empty JSON object.
    Empty,
    /// A JSON document of this component schema.
    Json(&'static str),
    /// A `multipart/form-data` upload with one `file` part.
    Multipart,
}

/// What a route answers with on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// JSON of this component schema.
    Json(&'static str),
    /// Plain text (health, Prometheus exposition).
    Text,
    /// A document's bytes, with the stored content type.
    Document,
}

/// A query parameter: name, JSON-schema type, description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParam {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: &'static str,
}

/// One route of the API. `path` uses the `{name}` template syntax that axum and OpenAPI
/// share, so the same string is routed and documented.
#[derive(Debug, Clone, Copy)]
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub query: &'static [QueryParam],
    pub body: Body,
    pub reply: Reply,
    /// Takes `If-Match: <version>` (optimistic concurrency on the appeal).
    pub if_match: bool,
    /// The success status (200, or 201 for what creates a resource).
    pub status: u16,
    /// For a POST that does not take `Idempotency-Key`: why repeating it is safe (or
    /// what a repeat does), as documented instead.
    pub unkeyed: Option<&'static str>,
    /// Success answers besides `status` (e.g. 200 for a repeated upload).
    pub also: &'static [(u16, &'static str)],
    /// Problem statuses the route answers besides the generic ones.
    pub errors: &'static [u16],
    /// The handler, for the routes this module serves; the others live in `http/mod.rs`
    /// and `http/applicant.rs` and are only described here.
    handler: Option<fn() -> MethodRouter<Shared>>,
}

const STAFF: &[Role] = &[Role::Reviewer, Role::Lead, Role::Admin];
const LEADS: &[Role] = &[Role::Lead, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];

const fn route(method: &'static str, path: &'static str, operation: &'static str) -> ApiRoute {
    ApiRoute {
        method,
        path,
        operation,
        summary: "",
        access: Access::Public,
        query: &[],
        body: Body::None,
        reply: Reply::Text,
        if_match: false,
        status: 200,
        errors: &[],
        unkeyed: None,
        also: &[],
        handler: None,
    }
}

impl ApiRoute {
    const fn summary(mut self, s: &'static str) -> Self {
        self.summary = s;
        self
    }
    const fn access(mut self, a: Access) -> Self {
        self.access = a;
        self
    }
    const fn query(mut self, q: &'static [QueryParam]) -> Self {
        self.query = q;
        self
    }
    const fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }
    const fn reply(mut self, r: Reply) -> Self {
        self.reply = r;
        self
    }
    /// A POST that takes no `Idempotency-Key`, and what a repeat does instead.
    const fn unkeyed(mut self, why: &'static str) -> Self {
        self.unkeyed = Some(why);
        self
    }
    const fn also(mut self, answers: &'static [(u16, &'static str)]) -> Self {
        self.also = answers;
        self
    }
    const fn created(mut self) -> Self {
        self.status = 201;
        self
    }
    const fn errors(mut self, e: &'static [u16]) -> Self {
        self.errors = e;
        self
    }
    /// A staff decision: If-Match, Idempotency-Key, the decision answer.
    const fn decision(mut self, handler: fn() -> MethodRouter<Shared>) -> Self {
        self.if_match = true;
        self.reply = Reply::Json("Decision");
        self.errors = &[403, 404, 409, 422];
        self.handler = Some(handler);
        self
    }
    const fn serve(mut self, handler: fn() -> MethodRouter<Shared>) -> Self {
        self.handler = Some(handler);
        self
    }
}

const QUEUE_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "state",
        kind: "string",
        description: "Open states to list, comma-separated or repeated (default: submitted,under_review)",
    },
    QueryParam { name: "page", kind: "integer", description: "Page number, from 1 (default 1)" },
    QueryParam { name: "per_page", kind: "integer", description: "Items per page, 1 to 100 (default 20)" },
];

const JOBS_QUERY: &[QueryParam] = &[
    QueryParam { name: "dead", kind: "boolean", description: "Only dead jobs (attempts used up, or aborted)" },
    QueryParam { name: "queue", kind: "string", description: "Only this queue" },
    QueryParam { name: "limit", kind: "integer", description: "At most this many, 1 to 1000 (default 100)" },
];

/// Every route of the API, in the order the OpenAPI document lists them.
pub const API: &[ApiRoute] = &[
    // Service.
    route("GET", "/healthz", "healthz").summary("Liveness"),
    route("GET", "/readyz", "readyz").summary("Readiness: database reachable, migrations applied").errors(&[503]),
    route("GET", "/metrics", "metrics")
        .summary("Prometheus metrics, for operators: an admin's token or the metrics token (--metrics-token)")
        .access(Access::Staff(ADMINS)),
    route("GET", "/openapi.json", "openapi")
        .summary("This document")
        .reply(Reply::Json("OpenApi"))
        .serve(|| get(openapi)),
    route("POST", "/v1/progress", "progress")
        .summary("Progress of an appeal by ticket and contact phone (the phone never goes in a URL)")
        .body(Body::Json("ProgressQuery"))
        .reply(Reply::Json("Progress"))
        .unkeyed("A query: a repeat changes nothing (it counts against the rate limit)")
        .errors(&[404, 422, 429]),
    // Applicants.
    route("POST", "/v1/drafts", "create_draft")
        .summary("Create a draft: its id and its secret (shown once)")
        .body(Body::Json("DraftInput"))
        .reply(Reply::Json("DraftCreated"))
        .created()
        .unkeyed(
            "A repeat creates another draft: the secret is shown once and kept only as a hash, so it cannot be \
             replayed. A draft never submitted changes nothing.",
        )
        .errors(&[422, 429]),
    route("GET", "/v1/drafts/{id}", "get_draft")
        .summary("A draft")
        .access(Access::Applicant)
        .reply(Reply::Json("Draft"))
        .errors(&[404]),
    route("PUT", "/v1/drafts/{id}", "put_draft")
        .summary("Replace a draft's content")
        .access(Access::Applicant)
        .body(Body::Json("DraftInput"))
        .reply(Reply::Json("Draft"))
        .errors(&[404, 422]),
    route("POST", "/v1/drafts/{id}/documents", "add_document")
        .summary("Upload a document to a draft")
        .access(Access::Applicant)
        .body(Body::Multipart)
        .reply(Reply::Json("Draft"))
        .created()
        .also(&[(200, "The same document was already in the draft: its entry, with `repeated: true`")])
        .unkeyed("A repeat of the same file as the same document answers 200 with the entry already there")
        .errors(&[404, 413, 422]),
    route("PUT", "/v1/drafts/{id}/documents/{index}", "replace_document")
        .summary("Replace a draft's document")
        .access(Access::Applicant)
        .body(Body::Multipart)
        .reply(Reply::Json("Draft"))
        .errors(&[404, 413, 422]),
    route("DELETE", "/v1/drafts/{id}/documents/{index}", "remove_document")
        .summary("Remove a draft's document")
        .access(Access::Applicant)
        .reply(Reply::Json("Draft"))
        .errors(&[404]),
    route("GET", "/v1/drafts/{id}/checklist", "draft_checklist")
        .summary("What each document is for, what is missing, every other problem")
        .access(Access::Applicant)
        .reply(Reply::Json("Checklist"))
        .errors(&[404, 422]),
    route("POST", "/v1/facial-recognition", "facial_recognition")
        .summary("The facial-recognition provider's callback (HMAC-SHA256 signed)")
        .access(Access::Provider)
        .body(Body::Json("FacialRecognitionResult"))
        .reply(Reply::Json("Draft"))
        .unkeyed("A repeat of the same signed result records the same result again")
        .errors(&[404, 422]),
    route("POST", "/v1/drafts/{id}/submit", "submit_draft")
        .summary("Submit a draft: the ticket number")
        .access(Access::Applicant)
        .reply(Reply::Json("Submitted"))
        .created()
        .errors(&[404, 409, 422]),
    route("POST", "/v1/appeals/{ticket}/resubmit", "resubmit")
        .summary("Continue a rejected appeal within its window")
        .access(Access::Applicant)
        .body(Body::Json("Resubmission"))
        .reply(Reply::Json("Decision"))
        .errors(&[404, 409, 422]),
    route("POST", "/v1/appeals/{ticket}/withdraw", "withdraw")
        .summary("Withdraw an appeal")
        .access(Access::Applicant)
        .reply(Reply::Json("Decision"))
        .errors(&[404, 409, 422]),
    // Reviewers, leads, admins.
    route("GET", "/v1/queue", "queue")
        .summary("Open appeals by review deadline, breached first")
        .access(Access::Staff(STAFF))
        .query(QUEUE_QUERY)
        .reply(Reply::Json("QueuePage"))
        .errors(&[422])
        .serve(|| get(queue)),
    route("GET", "/v1/appeals/{ticket}", "appeal")
        .summary("An appeal: state, history, checklist case, documents, actions, notifications")
        .access(Access::Staff(STAFF))
        .reply(Reply::Json("AppealDetail"))
        .errors(&[404, 422])
        .serve(|| get(appeal)),
    route("GET", "/v1/appeals/{ticket}/documents/{sha256}", "document")
        .summary("A document of the appeal (reviewers: only while they hold it); every download is logged")
        .access(Access::Staff(STAFF))
        .reply(Reply::Document)
        .errors(&[403, 404, 422])
        .serve(|| get(document)),
    route("POST", "/v1/appeals/{ticket}/claim", "claim")
        .summary("Claim the appeal from the queue")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(claim)),
    route("POST", "/v1/appeals/{ticket}/release", "release")
        .summary("Give the claim back")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(release)),
    route("POST", "/v1/appeals/{ticket}/approve", "approve")
        .summary("Approve the appeal")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(approve)),
    route("POST", "/v1/appeals/{ticket}/reject", "reject")
        .summary("Reject the appeal with reasons")
        .access(Access::Staff(STAFF))
        .body(Body::Json("Rejection"))
        .decision(|| post(reject)),
    route("POST", "/v1/appeals/{ticket}/link-entity-change", "link_entity_change")
        .summary("Link the entity-change ticket filed from an account verified as the new company")
        .access(Access::Staff(STAFF))
        .body(Body::Json("EntityChangeLink"))
        .decision(|| post(link_entity_change)),
    route("POST", "/v1/appeals/{ticket}/task-done", "task_done")
        .summary("Mark the manual task (the \"other\" item) done")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(task_done)),
    route("POST", "/v1/appeals/{ticket}/reassign", "reassign")
        .summary("Hand the appeal (claimed or not) to a reviewer, with a whole claim period, in one commit")
        .access(Access::Staff(LEADS))
        .body(Body::Json("Reassignment"))
        .decision(|| post(reassign)),
    route("GET", "/v1/admin/jobs", "jobs")
        .summary("The job queue's rows, newest first")
        .access(Access::Staff(ADMINS))
        .query(JOBS_QUERY)
        .reply(Reply::Json("Jobs"))
        .errors(&[422])
        .serve(|| get(jobs)),
    route("POST", "/v1/admin/jobs/{id}/retry", "retry_job")
        .summary("Put a dead job back in its queue with fresh attempts")
        .access(Access::Staff(ADMINS))
        .body(Body::Empty)
        .reply(Reply::Json("JobRetried"))
        .errors(&[404, 409, 422])
        .serve(|| post(retry_job)),
    route("GET", "/v1/admin/workflow", "workflow")
        .summary("The loaded workflow definition and its state diagram (mermaid)")
        .access(Access::Staff(ADMINS))
        .reply(Reply::Json("WorkflowDocument"))
        .serve(|| get(workflow)),
    route("GET", "/v1/admin/calendars", "calendars")
        .summary("Business-day calendars: names, time zones, published years")
        .access(Access::Staff(ADMINS))
        .reply(Reply::Json("Calendars"))
        .serve(|| get(calendars)),
];

/// The routes this module serves, built from [`API`].
pub fn routes() -> Router<Shared> {
    API.iter().fold(Router::new(), |router, r| match r.handler {
        Some(handler) => router.route(r.path, handler()),
        None => router,
    })
}

// ----------------------------------------------------------------------- extractors

/// A path's parameters; a malformed one is a problem document, not axum's text.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Params(v))
            .map_err(|e| ApiError::field("path", e.body_text()))
    }
}

/// The query string as name/value pairs (repeated names kept), checked against `known`.
struct QueryPairs(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryPairs(v))
            .map_err(|e| ApiError::field("query", e.body_text()))
    }
}

impl QueryPairs {
    fn check_known(&self, known: &[&str]) -> ApiResult<()> {
        let unknown: Vec<FieldError> = self
            .0
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, _)| {
                FieldError::new(
                    format!("query.{}", k.chars().take(40).collect::<String>()),
                    format!("unknown parameter (known: {})", known.join(", ")),
                )
            })
            .collect();
        if unknown.is_empty() { Ok(()) } else { Err(ApiError::invalid(unknown)) }
    }

    fn one(&self, name: &str) -> ApiResult<Option<&str>> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::field(&format!("query.{name}"), "give it once"));
        }
        Ok(first)
    }

    fn number(&self, name: &str, default: i64, min: i64, max: i64) -> ApiResult<i64> {
        match self.one(name)? {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(&format!("query.{name}"), format!("an integer from {min} to {max}"))),
            },
        }
    }
}

/// `Idempotency-Key` and `If-Match` of a POST.
pub struct Preconditions {
    pub key: Option<String>,
    pub if_match: Option<i64>,
}

const MAX_KEY_CHARS: usize = 200;

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Preconditions::from_headers(&parts.headers)
    }
}

impl Preconditions {
    fn from_headers(headers: &HeaderMap) -> ApiResult<Self> {
        let mut problems = Vec::new();
        let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
            None => None,
            Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_KEY_CHARS && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(k.to_string())
            }
            Some(_) => {
                problems.push(FieldError::new(
                    "Idempotency-Key",
                    format!("1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID, say)"),
                ));
                None
            }
        };
        let if_match = match headers.get(header::IF_MATCH).map(|v| v.to_str()) {
            None => None,
            Some(raw) => {
                let version = raw
                    .ok()
                    .map(|r| r.trim().trim_start_matches("W/").trim_matches('"'))
                    .and_then(|v| v.parse::<i64>().ok().filter(|n| *n >= 1 && v.bytes().all(|b| b.is_ascii_digit())));
                if version.is_none() {
                    problems.push(FieldError::new("If-Match", "the appeal's version, a positive integer (e.g. \"3\")"));
                }
                version
            }
        };
        if problems.is_empty() { Ok(Preconditions { key, if_match }) } else { Err(ApiError::invalid(problems)) }
    }
}

/// The body of a command that takes none: nothing, or `{}` (as JSON).
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", e.body_text())
            } else {
                ApiError::field("body", e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        if !content_type.starts_with("application/json") {
            return Err(ApiError::field("content-type", "send no body, or {} as application/json"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::field("body", "not UTF-8"))?;
        match parse_json::<Value>(text) {
            Ok(Value::Object(fields)) => match fields.keys().next() {
                None => Ok(NoBody),
                Some(k) => Err(ApiError::field(
                    "body",
                    format!("unknown field `{}`: this request takes no fields", k.chars().take(40).collect::<String>()),
                )),
            },
            Ok(_) => Err(ApiError::field("body", "invalid type: expected nothing or an empty JSON object")),
            Err(crate::engine::EngineError::Invalid(errors)) => Err(ApiError::invalid(errors)),
            Err(other) => Err(ApiError::field("body", other.to_string())),
        }
    }
}

/// A leader's or an admin's token: checked before the body is read.
pub struct LeadOrAdmin(pub Actor);

impl FromRequestParts<Shared> for LeadOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let staff = Staff::from_request_parts(parts, state).await?;
        staff.require(LEADS)?;
        Ok(LeadOrAdmin(staff.0))
    }
}

/// An admin's token.
pub struct Admin(pub Actor);

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let staff = Staff::from_request_parts(parts, state).await?;
        staff.require(ADMINS)?;
        Ok(Admin(staff.0))
    }
}

fn ticket(raw: &str) -> ApiResult<TicketNumber> {
    Ok(parse_ticket(raw)?)
}

async fn load(state: &Shared, ticket: &TicketNumber) -> ApiResult<AppealRecord> {
    state
        .engine()
        .store()
        .appeal_by_ticket(ticket)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no appeal with ticket {ticket}")))
}

fn appeal_data(record: &AppealRecord) -> ApiResult<AppealData> {
    Ok(AppealData::from_record(record)?)
}

// --------------------------------------------------------------------------- queue

#[derive(Debug, Serialize)]
struct QueueItem {
    ticket: String,
    account: String,
    state: String,
    version: i64,
    assignee: Option<String>,
    /// The review SLA's deadline (armed, or already fired).
    review_due_at: Option<String>,
    breached: bool,
}

#[derive(Debug, Serialize)]
struct QueuePage {
    states: Vec<String>,
    page: i64,
    per_page: i64,
    total: usize,
    items: Vec<QueueItem>,
}

const REVIEW_SLA: &str = "review_sla";

/// The states the queue shows by default: where the review SLA runs.
fn default_queue_states(state: &Shared) -> Vec<String> {
    match state.engine().workflow().timer(REVIEW_SLA) {
        Some(t) => t.states.clone(),
        None => vec!["submitted".into(), "under_review".into()],
    }
}

async fn queue(State(state): State<Shared>, _staff: Staff, query: QueryPairs) -> ApiResult<Json<QueuePage>> {
    query.check_known(&["state", "page", "per_page"])?;
    let wf = state.engine().workflow();
    let open: Vec<&str> = wf.def.states.iter().filter(|s| !s.terminal).map(|s| s.name.as_str()).collect();
    let mut states: Vec<String> = query
        .0
        .iter()
        .filter(|(k, _)| k == "state")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = states.iter().find(|s| !open.contains(&s.as_str())) {
        return Err(ApiError::field(
            "query.state",
            format!("{:?} is not an open state (open: {})", bad.chars().take(40).collect::<String>(), open.join(", ")),
        ));
    }
    if states.is_empty() {
        states = default_queue_states(&state);
    }
    states.sort();
    states.dedup();
    let page = query.number("page", 1, 1, 1_000_000)?;
    let per_page = query.number("per_page", 20, 1, 100)?;

    let store = state.engine().store();
    let mut records = Vec::new();
    for s in &states {
        records.extend(store.list_appeals(&AppealFilter { state: Some(s.clone()), limit: None }).await?);
    }
    // The latest review SLA of each appeal that is still running or has fired.
    let mut due: HashMap<String, (i64, chrono::DateTime<chrono::Utc>, TimerStatus)> = HashMap::new();
    for t in store.timers(None).await? {
        if t.name != REVIEW_SLA || t.status == TimerStatus::Cancelled {
            continue;
        }
        let newer = due.get(&t.appeal_id).is_none_or(|(generation, ..)| t.generation > *generation);
        if newer {
            due.insert(t.appeal_id.clone(), (t.generation, t.due_at, t.status));
        }
    }
    let now = state.engine().now();
    let mut rows: Vec<(Option<chrono::DateTime<chrono::Utc>>, QueueItem, chrono::DateTime<chrono::Utc>)> = records
        .into_iter()
        .map(|r| {
            let sla = due.get(&r.id);
            let breached = sla.is_some_and(|(_, at, status)| *status == TimerStatus::Fired || *at <= now);
            let item = QueueItem {
                ticket: r.ticket.to_string(),
                account: r.account,
                state: r.state,
                version: r.version,
                assignee: r.assignee,
                review_due_at: sla.map(|(_, at, _)| at.to_rfc3339()),
                breached,
            };
            (sla.map(|(_, at, _)| *at), item, r.created_at)
        })
        .collect();
    // Earliest deadline first (so breached first); appeals without one last.
    rows.sort_by(|a, b| (a.0.is_none(), a.0, a.2, &a.1.ticket).cmp(&(b.0.is_none(), b.0, b.2, &b.1.ticket)));
    let total = rows.len();
    let skip = usize::try_from((page - 1) * per_page).unwrap_or(usize::MAX);
    let items = rows.into_iter().skip(skip).take(per_page as usize).map(|(_, item, _)| item).collect();
    Ok(Json(QueuePage { states, page, per_page, total, items }))
}

// -------------------------------------------------------------------- appeal detail

#[derive(Debug, Serialize)]
struct DocumentView {
    kind: DocumentKind,
    sha256: Option<String>,
    size: Option<u64>,
    content_type: Option<&'static str>,
    file_name: Option<String>,
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

#[derive(Debug, Serialize)]
struct PreviousDocumentView {
    #[serde(flatten)]
    document: DocumentView,
    replaced_at: String,
}

#[derive(Debug, Serialize)]
struct ActionView {
    id: i64,
    action: String,
    manual: bool,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    done_by: Option<String>,
    created_at: String,
    updated_at: String,
}

/// A notification as reviewers see it: the recipient only masked.
#[derive(Debug, Serialize)]
struct NotificationView {
    id: i64,
    template: String,
    channel: String,
    locale: String,
    recipient_masked: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: String,
    sent_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct AppealDetail {
    #[serde(flatten)]
    appeal: AppealView,
    /// The checklist's case (which document rules applied).
    case: Option<String>,
    items: Vec<AppealItem>,
    changes_secure_phone: bool,
    documents: Vec<DocumentView>,
    previous_documents: Vec<PreviousDocumentView>,
    entity_change: EntityChange,
    actions: Vec<ActionView>,
    notifications: Vec<NotificationView>,
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("a number is a valid header value")
}

async fn appeal(State(state): State<Shared>, _staff: Staff, Params(raw): Params<String>) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let record = load(&state, &ticket).await?;
    let view = crate::app::show(state.engine(), &ticket).await?;
    let data = appeal_data(&record)?;
    let store = state.engine().store();
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
    let version = view.version;
    let detail = AppealDetail {
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
        actions,
        notifications,
    };
    let mut response = Json(detail).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    Ok(response)
}

// ------------------------------------------------------------------------ documents

fn sha256_param(raw: &str) -> ApiResult<String> {
    let sha = raw.trim().to_ascii_lowercase();
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(ApiError::field("sha256", "a document's SHA-256: 64 hex characters"))
    }
}

/// `attachment; filename="..."` with anything outside plain ASCII replaced.
/// The name a download is saved under, chosen by appealflow: ticket, kind, position
/// and the extension of the type sniffed from the bytes — never the applicant's name,
/// which could say `.html` or `.hta` over an image.
fn download_name(ticket: &TicketNumber, kind: DocumentKind, index: usize, content: Option<ContentType>) -> String {
    let ext = content.map_or("bin", |c| c.extensions()[0]);
    format!("{}-{}-{}.{ext}", ticket.as_str(), kind.as_str(), index + 1)
}

async fn document(
    State(state): State<Shared>,
    staff: Staff,
    Params((raw_ticket, raw_sha)): Params<(String, String)>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw_ticket)?;
    let sha = sha256_param(&raw_sha)?;
    let record = load(&state, &ticket).await?;
    let actor = &staff.0;
    if actor.role == Role::Reviewer && record.assignee.as_deref() != Some(actor.name.as_str()) {
        return Err(ApiError::forbidden("reviewers download an appeal's documents while they hold its claim"));
    }
    let data = appeal_data(&record)?;
    let (index, doc) = data
        .draft
        .documents
        .iter()
        .chain(data.previous_documents.iter().map(|p| &p.document))
        .enumerate()
        .find(|(_, d)| d.sha256.as_deref() == Some(sha.as_str()))
        .ok_or_else(|| ApiError::not_found(format!("appeal {ticket} has no document with this sha256")))?;
    let bytes = read_document(&state, &sha).await?;
    tracing::info!(actor = %actor.name, role = %actor.role, ticket = %ticket, sha256 = %sha, kind = %doc.kind,
                   "document downloaded");
    // The type is what the bytes are, whatever was recorded or claimed.
    let content = ContentType::sniff(&bytes);
    let content_type = content.map_or("application/octet-stream", |c| c.mime());
    let name = download_name(&ticket, doc.kind, index, content);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .expect("digits, a kind name and an extension"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Opened in a browser anyway, the document may run nothing and load nothing.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

/// The document's bytes from the blob store, verified against their digest. A document
/// the appeal names but the store lacks (or holds corrupt) is a fault here, not the
/// caller's: logged in full, answered 500.
async fn read_document(state: &Shared, sha: &str) -> ApiResult<Bytes> {
    state.intake.blobs().get(sha).await.map_err(ApiError::internal)
}

// ------------------------------------------------------------------------ decisions

fn decided(outcome: &impl Serialize, version: i64) -> Response {
    let mut response = Json(outcome).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

async fn fire(
    state: &Shared,
    actor: &Actor,
    raw: &str,
    transition: &str,
    reasons: Vec<String>,
    pre: &Preconditions,
) -> ApiResult<Response> {
    let ticket = ticket(raw)?;
    let mut cmd = Fire::new(transition);
    cmd.reasons = reasons;
    cmd.expect_version = pre.if_match;
    let outcome = state.engine().fire(&ticket, &cmd, actor, pre.key.as_deref()).await?;
    Ok(decided(&outcome, outcome.version))
}

async fn claim(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, "claim", vec![], &pre).await
}

async fn release(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, "release", vec![], &pre).await
}

async fn approve(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, "approve", vec![], &pre).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    reasons: Vec<String>,
}

async fn reject(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<Rejection>,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, "reject", body.reasons, &pre).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityChangeLink {
    entity_ticket: String,
    account: String,
}

async fn link_entity_change(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<EntityChangeLink>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let link = EntityLink { entity_ticket: &body.entity_ticket, account: &body.account };
    let outcome = state.intake.link_entity_change(&ticket, &link, &staff.0, pre.if_match, pre.key.as_deref()).await?;
    Ok(decided(&outcome, outcome.version))
}

async fn task_done(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let done = state.work.complete_manual(&ticket, &staff.0, pre.if_match).await.map_err(|e| match e {
        ManualTaskError::NotFound(_) => ApiError::from(EngineError::NotFound(ticket.to_string())),
        ManualTaskError::NoTask { ref state, version, .. } => ApiError {
            extra: Some(json!({ "state": state, "version": version })),
            ..ApiError::new(StatusCode::CONFLICT, "no-manual-task", "No manual task", e.to_string())
        },
        ManualTaskError::Stale(refusal) => ApiError::from(EngineError::Refused(refusal)),
        ManualTaskError::NotAllowed(why) => ApiError::forbidden(why),
        ManualTaskError::Work(w) => ApiError::internal(w),
    })?;
    let after = load(&state, &ticket).await?;
    let outcome = CommandOutcome {
        ticket,
        transition: "task_done".into(),
        from: Some(done.from),
        state: after.state,
        outcome: after.outcome,
        version: after.version,
        replayed: done.replayed,
        also: vec![],
    };
    Ok(decided(&outcome, outcome.version))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reassignment {
    to: String,
}

#[derive(Debug, Serialize)]
struct Reassigned {
    #[serde(flatten)]
    outcome: CommandOutcome,
    assignee: String,
}

async fn reassign(
    State(state): State<Shared>,
    LeadOrAdmin(lead): LeadOrAdmin,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<Reassignment>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let to = body.to.trim().to_string();
    if to.is_empty() || to.chars().count() > 100 {
        return Err(ApiError::field("to", "the reviewer's name (1 to 100 characters)"));
    }
    check_text("to", &to, false).map_err(|e| ApiError::invalid(vec![e]))?;
    let store = state.engine().store();
    let is_reviewer =
        store.tokens().await?.iter().any(|t| t.revoked_at.is_none() && t.role == Role::Reviewer && t.name == to);
    if !is_reviewer {
        return Err(ApiError::field("to", "no reviewer with an active token has this name"));
    }
    // One command: the claim passes to `to` (with a whole claim period) in one commit.
    let mut cmd = Fire::new("reassign");
    cmd.expect_version = pre.if_match;
    cmd.payload = json!({ "to": to });
    let outcome = state.engine().fire(&ticket, &cmd, &lead, pre.key.as_deref()).await?;
    let version = outcome.version;
    Ok(decided(&Reassigned { outcome, assignee: to }, version))
}

// ---------------------------------------------------------------------------- admin

async fn jobs(State(state): State<Shared>, _admin: Admin, query: QueryPairs) -> ApiResult<Response> {
    query.check_known(&["dead", "queue", "limit"])?;
    let dead_only = match query.one("dead")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("query.dead", "true or false")),
    };
    let queue = match query.one("queue")? {
        None => None,
        Some(q) if crate::jobs::QUEUES.contains(&q) => Some(q.to_string()),
        Some(_) => {
            return Err(ApiError::field("query.queue", format!("one of {}", crate::jobs::QUEUES.join(", "))));
        }
    };
    let limit = query.number("limit", 100, 1, 1000)?;
    let jobs = state.engine().store().jobs(&JobFilter { dead_only, queue, limit: Some(limit) }).await?;
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

async fn retry_job(
    State(state): State<Shared>,
    Admin(admin): Admin,
    Params(id): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    let store = state.engine().store();
    // A keyed retry is recorded beside the appeal commands' keys, in its own namespace.
    let keyed = pre.key.as_ref().map(|k| (format!("jobs.retry/{k}"), crate::app::access::hash_secret(&id)));
    let replay = async |keyed: &Option<(String, String)>| -> ApiResult<Option<Response>> {
        let Some((key, fingerprint)) = keyed else { return Ok(None) };
        match store.idempotency(key).await? {
            Some(r) if &r.fingerprint == fingerprint => Ok(Some(Json(r.response).into_response())),
            Some(_) => Err(ApiError::from(EngineError::IdempotencyMismatch { key: key.clone() })),
            None => Ok(None),
        }
    };
    if let Some(answer) = replay(&keyed).await? {
        return Ok(answer);
    }
    let job = store
        .jobs(&JobFilter::default())
        .await?
        .into_iter()
        .find(|j| j.id == id)
        .ok_or_else(|| ApiError::not_found("no job with this id"))?;
    let not_dead = || ApiError {
        extra: Some(json!({ "job_status": job.status, "attempts": job.attempts })),
        ..ApiError::new(StatusCode::CONFLICT, "not-dead", "Job not dead", "only a dead job can be retried")
    };
    // An unkeyed repeat finds the job queued, no longer dead (409); a keyed one that
    // lost the race to its twin replays the twin's answer.
    if !job.dead || !store.retry_job(&job.id).await? {
        return match replay(&keyed).await? {
            Some(answer) => Ok(answer),
            None => Err(not_dead()),
        };
    }
    tracing::info!(actor = %admin.name, job = %job.id, queue = %job.queue, "dead job retried");
    let answer = json!({ "id": job.id, "queue": job.queue, "retried": true });
    if let Some((key, fingerprint)) = keyed {
        let record = IdempotencyRecord { key, fingerprint, response: answer.clone(), created_at: state.engine().now() };
        store.remember_idempotency(&record).await?;
    }
    Ok(Json(answer).into_response())
}

async fn workflow(State(state): State<Shared>, _admin: Admin) -> Json<Value> {
    let wf = state.engine().workflow();
    Json(json!({
        "name": wf.name(),
        "version": wf.def.workflow.version,
        "calendar": wf.calendar.name,
        "definition": wf.def,
        "mermaid": render(&wf.def, GraphFormat::Mermaid),
    }))
}

async fn calendars(State(state): State<Shared>, _admin: Admin) -> Json<Value> {
    let wf = state.engine().workflow();
    let describe = |c: &crate::calendar::Calendar| {
        json!({
            "name": c.name,
            "description": c.description,
            "time_zone": c.time_zone.name(),
            "published": { "first_year": c.published.first_year, "last_year": c.published.last_year },
            "years": (c.published.first_year..=c.published.last_year).collect::<Vec<_>>(),
            "beyond_published": c.beyond_published,
            "recurring_holidays": c.recurring_holidays,
            "in_use": c.name == wf.calendar.name,
        })
    };
    // The calendars beside the workflow's directory, as `startup::load_workflow` reads them.
    let mut found: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(dir) = wf.dir.parent().map(|p| p.join("calendars")) {
        for name in crate::calendar::Calendar::names(&dir) {
            match crate::calendar::Calendar::load(&dir, &name) {
                Ok(c) => {
                    found.insert(name, describe(&c));
                }
                Err(e) => tracing::warn!(calendar = %name, error = %e, "calendar not listed"),
            }
        }
    }
    found.entry(wf.calendar.name.clone()).or_insert_with(|| describe(&wf.calendar));
    Json(json!({ "calendars": found.into_values().collect::<Vec<_>>() }))
}

// -------------------------------------------------------------------------- openapi

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

fn problem_response(status: u16) -> (String, Value) {
    let description = match status {
        401 => "No token, or an unknown or revoked one",
        403 => "The role, or the claim, does not allow it",
        404 => "Not found",
        409 => "Conflict: the appeal's current state and version are in the problem",
        413 => "Body too large",
        422 => "Invalid input: the fields at fault are in `errors`",
        429 => "Too many requests (see Retry-After)",
        503 => "Not ready",
        _ => "Problem",
    };
    (
        status.to_string(),
        json!({
            "description": description,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
        }),
    )
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let description = match name {
                "ticket" => "The appeal's ticket number (20 digits; '-' or spaces may separate groups)",
                "sha256" => "The document's SHA-256 (64 hex characters)",
                "id" => "The draft's or job's id",
                "index" => "The document's position in the draft, from 0",
                _ => "",
            };
            let schema =
                if name == "index" { json!({ "type": "integer", "minimum": 0 }) } else { json!({ "type": "string" }) };
            json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
        })
        .collect()
}

fn operation(r: &ApiRoute) -> Value {
    let mut parameters = path_parameters(r.path);
    for q in r.query {
        parameters.push(json!({
            "name": q.name, "in": "query", "required": false, "description": q.description,
            "schema": { "type": q.kind }
        }));
    }
    if r.method == "POST" && r.unkeyed.is_none() {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A repeat with the same key answers as the first request did (`replayed: true`)",
            "schema": { "type": "string", "maxLength": MAX_KEY_CHARS }
        }));
    }
    if r.if_match {
        parameters.push(json!({
            "name": "If-Match", "in": "header", "required": false,
            "description": "The appeal's version the decision was made on; a stale one gets 409",
            "schema": { "type": "string" }
        }));
    }
    if r.access == Access::Applicant && !r.path.contains("{id}") {
        parameters.push(json!({
            "name": "X-Draft-Id", "in": "header", "required": true,
            "description": "The draft the appeal was submitted from", "schema": { "type": "string" }
        }));
    }
    if r.access == Access::Applicant {
        parameters.push(json!({
            "name": "X-Draft-Secret", "in": "header", "required": true,
            "description": "The draft's secret, as returned when it was created", "schema": { "type": "string" }
        }));
    }
    let schema_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let ok = match r.reply {
        Reply::Json(name) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": schema_ref(name) } } })
        }
        Reply::Text => json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } }),
        Reply::Document => json!({
            "description": "The document, with its stored content type",
            "content": {
                "image/jpeg": { "schema": { "type": "string", "format": "binary" } },
                "image/png": { "schema": { "type": "string", "format": "binary" } },
                "application/pdf": { "schema": { "type": "string", "format": "binary" } }
            }
        }),
    };
    let mut responses = serde_json::Map::new();
    responses.insert(r.status.to_string(), ok);
    let mut statuses: Vec<u16> = r.errors.to_vec();
    match r.access {
        Access::Staff(roles) => {
            statuses.push(401);
            if roles != STAFF {
                statuses.push(403);
            }
        }
        Access::Applicant | Access::Provider => statuses.push(401),
        Access::Public => {}
    }
    if !matches!(r.body, Body::None) {
        statuses.extend([413, 422]);
    }
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let (k, v) = problem_response(status);
        responses.insert(k, v);
    }
    let tag = match r.access {
        Access::Staff(roles) if roles == ADMINS => "admin",
        Access::Staff(_) => "reviewers",
        Access::Applicant | Access::Provider => "applicants",
        Access::Public if r.path.starts_with("/v1/drafts") => "applicants",
        Access::Public => "service",
    };
    let mut op = json!({
        "operationId": r.operation,
        "summary": r.summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(why) = r.unkeyed {
        op["x-repeat"] = json!(why);
    }
    for (status, description) in r.also {
        op["responses"][status.to_string()] = json!({ "description": description });
    }
    match r.access {
        Access::Staff(roles) => {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-roles"] = json!(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        }
        Access::Provider => op["security"] = json!([{ "providerSignature": [] }]),
        Access::Applicant | Access::Public => op["security"] = json!([]),
    }
    match r.body {
        Body::None => {}
        Body::Empty => {
            op["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": { "type": "object", "maxProperties": 0 } } }
            });
        }
        Body::Json(name) => {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": schema_ref(name) } } });
        }
        Body::Multipart => {
            op["requestBody"] = json!({
                "required": true,
                "content": { "multipart/form-data": { "schema": {
                    "type": "object", "required": ["file"],
                    "properties": {
                        "kind": { "type": "string", "enum": DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() },
                        "file": { "type": "string", "format": "binary" }
                    }
                } } }
            });
        }
    }
    op
}

fn schemas() -> Value {
    let object = |description: &str| json!({ "type": "object", "description": description });
    let string = json!({ "type": "string" });
    let nullable_string = json!({ "type": ["string", "null"] });
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `code` is stable (also the last segment of `type`)",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": string, "status": { "type": "integer" }, "detail": string, "code": string,
                "errors": { "type": "array", "items": {
                    "type": "object", "properties": { "field": string, "rule": string } } },
                "state": string, "version": { "type": "integer" }
            }
        },
        "Decision": {
            "type": "object",
            "required": ["ticket", "transition", "from", "state", "outcome", "version", "replayed"],
            "properties": {
                "ticket": string, "transition": string, "from": nullable_string, "state": string,
                "outcome": nullable_string, "version": { "type": "integer" }, "replayed": { "type": "boolean" },
                "assignee": { "type": "string", "description": "reassign only: who holds the claim now" }
            }
        },
        "QueuePage": {
            "type": "object",
            "properties": {
                "states": { "type": "array", "items": string },
                "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" },
                "items": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "ticket": string, "account": string, "state": string, "version": { "type": "integer" },
                        "assignee": nullable_string,
                        "review_due_at": { "type": ["string", "null"], "format": "date-time" },
                        "breached": { "type": "boolean" }
                    }
                } }
            }
        },
        "AppealDetail": object("The appeal (state, version, timers, history) with its checklist case, documents \
            (metadata only), previous documents, actions, notifications (recipients masked) and entity-change link"),
        "Rejection": {
            "type": "object", "required": ["reasons"], "additionalProperties": false,
            "properties": { "reasons": { "type": "array", "minItems": 1, "items": string,
                "description": "documents_not_meeting_requirements, inapplicable_scenario, missing_documents, other (each may say `: detail`)" } }
        },
        "EntityChangeLink": {
            "type": "object", "required": ["entity_ticket", "account"], "additionalProperties": false,
            "properties": { "entity_ticket": string, "account": string }
        },
        "Reassignment": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "properties": { "to": { "type": "string", "description": "A reviewer's name (as on their token)" } }
        },
        "Jobs": { "type": "object", "properties": { "jobs": { "type": "array", "items": object("A job-queue row") } } },
        "JobRetried": {
            "type": "object",
            "properties": { "id": string, "queue": string, "retried": { "type": "boolean" } }
        },
        "WorkflowDocument": {
            "type": "object",
            "properties": {
                "name": string, "version": { "type": "integer" }, "calendar": string,
                "definition": object("The loaded workflow definition"), "mermaid": string
            }
        },
        "Calendars": { "type": "object", "properties": { "calendars": { "type": "array", "items": {
            "type": "object",
            "properties": {
                "name": string, "description": string, "time_zone": string,
                "published": object("first_year and last_year"),
                "years": { "type": "array", "items": { "type": "integer" } },
                "in_use": { "type": "boolean" }
            }
        } } } },
        "OpenApi": object("This OpenAPI 3.1 document"),
        "ProgressQuery": {
            "type": "object", "required": ["ticket", "phone"], "additionalProperties": false,
            "properties": { "ticket": string, "phone": string }
        },
        "Progress": {
            "type": "object",
            "properties": {
                "ticket": string, "stage": string, "outcome": nullable_string,
                "reasons": { "type": "array", "items": string }, "continue_until": nullable_string,
                "received_at": string, "updated_at": string
            }
        },
        "DraftInput": object("A draft's content: entry point, items, scenario, operator, contact, documents"),
        "DraftCreated": {
            "type": "object",
            "properties": { "id": string, "secret": { "type": "string", "description": "Shown once" } }
        },
        "Draft": object("A draft as stored (ID numbers only masked)"),
        "Checklist": object("What each document is for, what is missing, and every other problem"),
        "FacialRecognitionResult": object("The provider's result for a draft"),
        "Submitted": {
            "type": "object",
            "properties": {
                "ticket": string, "state": string, "version": { "type": "integer" },
                "superseded": nullable_string, "screening": nullable_string, "replayed": { "type": "boolean" }
            }
        },
        "Resubmission": object("The draft to continue the appeal with"),
    })
}

/// The OpenAPI 3.1 document of the whole API, from [`API`].
pub fn openapi_document() -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in API {
        paths.entry(r.path).or_default().insert(r.method.to_ascii_lowercase(), operation(r));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "appealflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Account appeals: applicants' drafts and submissions, reviewers' queue and decisions, \
                            admins' jobs, workflow and calendars. Errors are RFC 9457 problem documents."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                            "description": "A reviewer's, lead's or admin's token (appealflow tokens create)" },
                "providerSignature": { "type": "apiKey", "in": "header", "name": "X-Appealflow-Signature",
                                       "description": "HMAC-SHA256 with the provider's secret, over the \
                                                       X-Appealflow-Timestamp header and the body" }
            }
        }
    })
}
