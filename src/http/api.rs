//! The one table of every route of the API ([`API`]): it builds the staff and admin
//! router, the OpenAPI document served at `/openapi.json` (see `openapi.rs`), and the
//! route check in the tests.

use axum::Router;
use axum::routing::{MethodRouter, get, post};

use super::Shared;
use super::schemas::{SchemaOf, schema};
use super::{admin, applicant, decisions};
use crate::app::admin::JobRetried;
use crate::app::drafts::{DocumentAdded, DraftCreated};
use crate::app::intake::Progress;
use crate::app::review::{AppealDetail, QueuePage};
use crate::domain::Role;
use crate::domain::draft::DraftInput;
use crate::domain::rules::Checklist;

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
#[derive(Clone, Copy)]
pub enum Body {
    None,
    /// Nothing, or an empty JSON object.
    Empty,
    /// A JSON document of this type (its schema is a component of the document).
    Json(SchemaOf),
    /// A `multipart/form-data` upload with one `file` part.
    Multipart,
}

/// What a route answers with on success.
#[derive(Clone, Copy)]
pub enum Reply {
    /// JSON of this type (its schema is a component of the document).
    Json(SchemaOf),
    /// Plain text (health, Prometheus exposition).
    Text,
    /// A document's bytes, with the stored content type.
    Document,
}

/// A query parameter: name, JSON-schema type, description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParam {
    pub name: &'static str,
    /// The parameter's JSON schema, as JSON text (type, and its range or values).
    pub schema: &'static str,
    pub description: &'static str,
    pub required: bool,
}

/// One route of the API. `path` uses the `{name}` template syntax that axum and OpenAPI
/// share, so the same string is routed and documented.
#[derive(Clone, Copy)]
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
    /// The handler, for the routes this table's router serves (staff, decisions, admin,
    /// this document); the others are routed in `http/mod.rs` and `http/applicant.rs` and
    /// only described here.
    handler: Option<fn() -> MethodRouter<Shared>>,
}

pub(super) const STAFF: &[Role] = &[Role::Reviewer, Role::Lead, Role::Admin];
pub(super) const LEADS: &[Role] = &[Role::Lead, Role::Admin];
pub(super) const ADMINS: &[Role] = &[Role::Admin];

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
        self.reply = Reply::Json(schema::<decisions::Decision>);
        self.errors = &[403, 404, 409, 422];
        self.handler = Some(handler);
        self
    }
    const fn serve(mut self, handler: fn() -> MethodRouter<Shared>) -> Self {
        self.handler = Some(handler);
        self
    }
}

const fn param(name: &'static str, schema: &'static str, description: &'static str) -> QueryParam {
    QueryParam { name, schema, description, required: false }
}

const QUEUE_QUERY: &[QueryParam] = &[
    param(
        "state",
        r#"{"type": "string", "pattern": "^[a-z_]+(,[a-z_]+)*$"}"#,
        "Open states to list, comma-separated or repeated (default: where the review SLA runs)",
    ),
    param(
        "page",
        r#"{"type": "integer", "minimum": 1, "maximum": 100}"#,
        "Page number, 1 to 100 (default 1); past page 100, read on with `after`",
    ),
    param("per_page", r#"{"type": "integer", "minimum": 1, "maximum": 100}"#, "Items per page, 1 to 100 (default 20)"),
    param(
        "item",
        r#"{"type": "string", "enum": ["retrieve_username", "reset_password", "change_secure_phone", "change_security_email", "detach_mfa", "clear_security_questions", "clear_ip_logon_mask", "other"]}"#,
        "Only appeals that ask for this item",
    ),
    param(
        "scenario",
        r#"{"type": "string", "enum": ["active", "name_changed", "deregistered"]}"#,
        "Only appeals of this scenario",
    ),
    param(
        "assignee",
        r#"{"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"}"#,
        "Only appeals this reviewer holds (a name, 1 to 100 characters)",
    ),
    param("unclaimed", r#"{"type": "boolean"}"#, "Only appeals nobody holds (not with assignee)"),
    param(
        "after",
        r#"{"type": "string", "pattern": "^(-|[0-9]{1,18})\\.[0-9]{1,18}\\.[A-Za-z0-9-]{1,64}$"}"#,
        "Start after this cursor: a page's `next` (same filters); any depth, read from where that page ended",
    ),
];

const JOBS_QUERY: &[QueryParam] = &[
    param("dead", r#"{"type": "boolean"}"#, "Only dead jobs (attempts used up, or aborted)"),
    param(
        "queue",
        r#"{"type": "string", "enum": ["appealflow.notifications", "appealflow.actions"]}"#,
        "Only this queue",
    ),
    param(
        "limit",
        r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
        "At most this many, 1 to 1000 (default 100)",
    ),
];

/// What an upload says about its document besides the content.
const UPLOAD_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "kind",
        schema: r#"{"type": "string", "pattern": "^[a-z_]+$"}"#,
        description: "The document's kind (one of the checklist's kinds)",
        required: true,
    },
    param("stamped", r#"{"type": "boolean"}"#, "The letter bears the company's official seal"),
    param(
        "company_name",
        r#"{"type": "string", "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}"#,
        "The company the document names (no control characters)",
    ),
    param(
        "signatory_share_percent",
        r#"{"type": "number", "minimum": 0, "maximum": 100}"#,
        "The signatory's declared share of the company, in percent",
    ),
    param(
        "issued",
        r#"{"type": "string", "enum": ["before_deregistration", "after_deregistration"]}"#,
        "How a disposal document was issued",
    ),
    param(
        "attestation",
        r#"{"type": "string", "enum": ["company_seal", "shareholder_signatures"]}"#,
        "What the document attests",
    ),
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
        .reply(Reply::Json(schema::<super::openapi::OpenApi>))
        .serve(|| get(super::openapi::openapi)),
    route("POST", "/v1/progress", "progress")
        .summary("Progress of an appeal by ticket and contact phone (the phone never goes in a URL)")
        .body(Body::Json(schema::<super::ProgressQuery>))
        .reply(Reply::Json(schema::<Progress>))
        .unkeyed("A query: a repeat changes nothing (it counts against the rate limit)")
        .errors(&[404, 422, 429]),
    route("POST", "/v1/stop-change", "stop_change")
        .summary(
            "The account holder stops a change waiting out its cooling-off, with the one-time code from the \
             \"not you?\" notice: the appeal returns to review, flagged disputed",
        )
        .body(Body::Json(schema::<super::StopChangeQuery>))
        .reply(Reply::Json(schema::<crate::app::intake::Stopped>))
        .unkeyed("The code works once: a repeat finds no pending change (404) and changes nothing")
        .errors(&[404, 422, 429]),
    // Applicants.
    route("POST", "/v1/drafts", "create_draft")
        .summary("Create a draft: its id and its secret (shown once)")
        .body(Body::Json(schema::<DraftInput>))
        .reply(Reply::Json(schema::<DraftCreated>))
        .created()
        .unkeyed(
            "A repeat creates another draft: the secret is shown once and kept only as a hash, so it cannot be \
             replayed. A draft never submitted changes nothing.",
        )
        .errors(&[422, 429]),
    route("GET", "/v1/drafts/{id}", "get_draft")
        .summary("A draft")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<applicant::Draft>))
        .errors(&[404]),
    route("PUT", "/v1/drafts/{id}", "put_draft")
        .summary("Replace a draft's content")
        .access(Access::Applicant)
        .body(Body::Json(schema::<DraftInput>))
        .reply(Reply::Json(schema::<applicant::DraftReplaced>))
        .errors(&[404, 409, 422]),
    route("POST", "/v1/drafts/{id}/documents", "add_document")
        .summary("Upload a document to a draft")
        .access(Access::Applicant)
        .query(UPLOAD_QUERY)
        .body(Body::Multipart)
        .reply(Reply::Json(schema::<DocumentAdded>))
        .created()
        .also(&[(200, "The same document was already in the draft: its entry, with `repeated: true`")])
        .unkeyed("A repeat of the same file as the same document answers 200 with the entry already there")
        .errors(&[404, 409, 413, 422]),
    route("PUT", "/v1/drafts/{id}/documents/{index}", "replace_document")
        .summary("Replace a draft's document")
        .access(Access::Applicant)
        .query(UPLOAD_QUERY)
        .body(Body::Multipart)
        .reply(Reply::Json(schema::<DocumentAdded>))
        .errors(&[404, 409, 413, 422]),
    route("DELETE", "/v1/drafts/{id}/documents/{index}", "remove_document")
        .summary("Remove a draft's document")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<applicant::Documents>))
        .errors(&[404, 409]),
    route("GET", "/v1/drafts/{id}/checklist", "draft_checklist")
        .summary("What each document is for, what is missing, every other problem")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<Checklist>))
        .errors(&[404, 422]),
    route("POST", "/v1/facial-recognition", "facial_recognition")
        .summary("The facial-recognition provider's callback (HMAC-SHA256 signed)")
        .access(Access::Provider)
        .body(Body::Json(schema::<applicant::FacialRecognitionResult>))
        .reply(Reply::Json(schema::<applicant::FaceRecorded>))
        .unkeyed("A repeat of the same signed result records the same result again")
        .errors(&[404, 422]),
    route("POST", "/v1/drafts/{id}/submit", "submit_draft")
        .summary("Submit a draft: the ticket number")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<applicant::Submitted>))
        .created()
        .errors(&[404, 409, 422]),
    route("POST", "/v1/appeals/{ticket}/resubmit", "resubmit")
        .summary("Continue a rejected appeal within its window")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<applicant::Resubmitted>))
        .errors(&[404, 409, 422]),
    route("POST", "/v1/appeals/{ticket}/withdraw", "withdraw")
        .summary("Withdraw an appeal")
        .access(Access::Applicant)
        .reply(Reply::Json(schema::<applicant::Withdrawn>))
        .errors(&[404, 409, 422]),
    // Reviewers, leads, admins.
    route("GET", "/v1/queue", "queue")
        .summary("Open appeals by review deadline, breached first; filtered, paged, with counts per open state")
        .access(Access::Staff(STAFF))
        .query(QUEUE_QUERY)
        .reply(Reply::Json(schema::<QueuePage>))
        .errors(&[422])
        .serve(|| get(super::staff::queue)),
    route("GET", "/v1/appeals/{ticket}", "appeal")
        .summary("An appeal: state, history, checklist case, documents, actions, notifications")
        .access(Access::Staff(STAFF))
        .reply(Reply::Json(schema::<AppealDetail>))
        .errors(&[404, 422])
        .serve(|| get(super::staff::appeal)),
    route("GET", "/v1/appeals/{ticket}/documents/{sha256}", "document")
        .summary("A document of the appeal (reviewers: only while they hold it); every download is logged")
        .access(Access::Staff(STAFF))
        .reply(Reply::Document)
        .errors(&[403, 404, 422])
        .serve(|| get(super::staff::document)),
    route("POST", "/v1/appeals/{ticket}/claim", "claim")
        .summary("Claim the appeal from the queue")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(super::decisions::claim)),
    route("POST", "/v1/appeals/{ticket}/release", "release")
        .summary("Give the claim back")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(super::decisions::release)),
    route("POST", "/v1/appeals/{ticket}/approve", "approve")
        .summary("Approve the appeal")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(super::decisions::approve)),
    route("POST", "/v1/appeals/{ticket}/reject", "reject")
        .summary("Reject the appeal with reasons")
        .access(Access::Staff(STAFF))
        .body(Body::Json(schema::<decisions::Rejection>))
        .decision(|| post(super::decisions::reject)),
    route("POST", "/v1/appeals/{ticket}/confirm-approval", "confirm_approval")
        .summary("Give the second approval of a high-risk approval (four-eyes): never the first approver or the claimer")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(super::decisions::confirm_approval)),
    route("POST", "/v1/appeals/{ticket}/send-back", "send_back")
        .summary("Send a first approval back to the queue with a reason (four-eyes): never the first approver or the claimer")
        .access(Access::Staff(STAFF))
        .body(Body::Json(schema::<decisions::SendBack>))
        .decision(|| post(super::decisions::send_back)),
    route("POST", "/v1/appeals/{ticket}/link-entity-change", "link_entity_change")
        .summary("Link the entity-change ticket filed from an account verified as the new company")
        .access(Access::Staff(STAFF))
        .body(Body::Json(schema::<decisions::EntityChangeLink>))
        .decision(|| post(super::decisions::link_entity_change)),
    route("POST", "/v1/appeals/{ticket}/task-done", "task_done")
        .summary("Mark the manual task (the \"other\" item) done")
        .access(Access::Staff(STAFF))
        .body(Body::Empty)
        .decision(|| post(super::decisions::task_done)),
    route("POST", "/v1/appeals/{ticket}/reassign", "reassign")
        .summary("Hand the appeal (claimed or not) to a reviewer, with a whole claim period, in one commit")
        .access(Access::Staff(LEADS))
        .body(Body::Json(schema::<decisions::Reassignment>))
        .decision(|| post(super::decisions::reassign)),
    route("GET", "/v1/admin/jobs", "jobs")
        .summary("The job queue's rows, newest first")
        .access(Access::Staff(ADMINS))
        .query(JOBS_QUERY)
        .reply(Reply::Json(schema::<admin::Jobs>))
        .errors(&[422])
        .serve(|| get(super::admin::jobs)),
    route("POST", "/v1/admin/jobs/{id}/retry", "retry_job")
        .summary("Put a dead job back in its queue with fresh attempts")
        .access(Access::Staff(ADMINS))
        .body(Body::Empty)
        .reply(Reply::Json(schema::<JobRetried>))
        .errors(&[404, 409, 422])
        .serve(|| post(super::admin::retry_job)),
    route("GET", "/v1/admin/workflow", "workflow")
        .summary("The loaded workflow definition and its state diagram (mermaid)")
        .access(Access::Staff(ADMINS))
        .reply(Reply::Json(schema::<admin::WorkflowDocument<'static>>))
        .serve(|| get(super::admin::workflow)),
    route("GET", "/v1/admin/calendars", "calendars")
        .summary("Business-day calendars: names, time zones, published years")
        .access(Access::Staff(ADMINS))
        .reply(Reply::Json(schema::<admin::Calendars>))
        .serve(|| get(super::admin::calendars)),
];

/// The routes this module serves, built from [`API`].
pub fn routes() -> Router<Shared> {
    API.iter().fold(Router::new(), |router, r| match r.handler {
        Some(handler) => router.route(r.path, handler()),
        None => router,
    })
}
