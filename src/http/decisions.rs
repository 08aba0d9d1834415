//! Reviewers' and leads' decisions on an appeal: claim, release, approve, reject, confirm
//! or send back a first approval (four-eyes), link an entity change, mark a manual task
//! done, reassign. Each takes `If-Match` and
//! `Idempotency-Key` and answers the outcome with the new version as its ETag.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::auth::{JsonBody, Staff};
use super::error::{ApiError, ApiResult};
use super::extractors::{LeadOrAdmin, NoBody, Params, Preconditions, ticket};
use super::staff::etag;
use crate::app::intake::EntityLink;
use crate::app::review;
use crate::domain::{Actor, TicketNumber};
use crate::engine::CommandOutcome;
use crate::workflow::{Bindings, Fire};

/// What a decision answers: the command's outcome, with the new version as the ETag.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Decision {
    #[serde(flatten)]
    outcome: CommandOutcome,
    /// reassign only: who holds the claim now
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    assignee: Option<String>,
}

fn decided(outcome: CommandOutcome, assignee: Option<String>) -> Response {
    let version = outcome.version;
    let mut response = Json(Decision { outcome, assignee }).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// Fires the transition the workflow binds to `bound` (claim, release, ...); a binding
/// the workflow may leave out (four-eyes: `confirm_approval`, `send_back`) is a 404 when
/// it does.
async fn fire(
    state: &Shared,
    actor: &Actor,
    raw: &str,
    bound: fn(&Bindings) -> Option<&String>,
    reasons: Vec<String>,
    pre: &Preconditions,
) -> ApiResult<Response> {
    let ticket = ticket(raw)?;
    let Some(name) = bound(state.engine().workflow().bindings()).cloned() else {
        return Err(ApiError::not_found("this workflow has no four-eyes approval (no second approvals to give)"));
    };
    let mut cmd = Fire::new(name);
    cmd.reasons = reasons;
    cmd.expect_version = pre.if_match;
    let outcome = state.engine().fire(&ticket, &cmd, actor, pre.key.as_deref()).await?;
    Ok(decided(outcome, None))
}

pub(super) async fn claim(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| Some(&b.claim), vec![], &pre).await
}

pub(super) async fn release(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| Some(&b.release), vec![], &pre).await
}

pub(super) async fn approve(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| Some(&b.approve), vec![], &pre).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Rejection {
    #[schema(schema_with = super::schemas::rejection_reasons)]
    reasons: Vec<String>,
}

pub(super) async fn reject(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<Rejection>,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| Some(&b.reject), body.reasons, &pre).await
}

pub(super) async fn confirm_approval(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| b.confirm_approval.as_ref(), vec![], &pre).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendBack {
    #[schema(schema_with = super::schemas::send_back_reasons)]
    reasons: Vec<String>,
}

pub(super) async fn send_back(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<SendBack>,
) -> ApiResult<Response> {
    fire(&state, &staff.0, &raw, |b| b.send_back.as_ref(), body.reasons, &pre).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EntityChangeLink {
    /// The entity-change appeal's ticket (parsed by hand: a malformed one is refused with 422)
    #[schema(value_type = TicketNumber)]
    entity_ticket: String,
    /// The account the new entity's appeal was filed from
    account: String,
}

pub(super) async fn link_entity_change(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<EntityChangeLink>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let link = EntityLink { entity_ticket: &body.entity_ticket, account: &body.account };
    let outcome = state.intake.link_entity_change(&ticket, &link, &staff.0, pre.if_match, pre.key.as_deref()).await?;
    Ok(decided(outcome, None))
}

pub(super) async fn task_done(
    State(state): State<Shared>,
    staff: Staff,
    Params(raw): Params<String>,
    pre: Preconditions,
    _: NoBody,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let done = state.work.complete_manual(&ticket, &staff.0, pre.if_match).await?;
    let after = review::load(state.engine(), &ticket).await?;
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
    Ok(decided(outcome, None))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reassignment {
    #[schema(schema_with = super::schemas::reviewer_name)]
    to: String,
}

pub(super) async fn reassign(
    State(state): State<Shared>,
    LeadOrAdmin(lead): LeadOrAdmin,
    Params(raw): Params<String>,
    pre: Preconditions,
    JsonBody(body): JsonBody<Reassignment>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw)?;
    let done = review::reassign(state.engine(), &ticket, &body.to, &lead, pre.if_match, pre.key.as_deref()).await?;
    Ok(decided(done.outcome, Some(done.assignee)))
}
