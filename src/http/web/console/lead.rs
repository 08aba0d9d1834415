//! The lead's view: the review SLA's breaches and warnings, each reviewer's load, and
//! reassignment of an appeal to a reviewer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::Console;
use crate::app::problem::Classify;
use crate::app::review::{self, QueueQuery};
use crate::domain::Role;
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::see_other;

const LEADS: [Role; 2] = [Role::Lead, Role::Admin];

pub async fn page(State(state): State<Shared>, console: Console) -> Response {
    if let Err(r) = console.require(&LEADS) {
        return r;
    }
    let lang = console.lang;
    let tz = state.engine().workflow().calendar.time_zone;
    // The queue is ordered breached first, then by deadline: the SLA's trouble is on top.
    let first =
        review::queue(state.engine(), QueueQuery { per_page: review::MAX_PER_PAGE, ..Default::default() }).await;
    let load = review::reviewer_load(state.engine()).await;
    let (first, load) = match (first, load) {
        (Ok(f), Ok(l)) => (f, l),
        (Err(e), _) | (_, Err(e)) => return console.refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.problem().detail),
    };
    let at_risk: Vec<_> = first.items.iter().filter(|i| i.breached || i.warning).collect();
    let breached = at_risk.iter().filter(|i| i.breached).count();
    let body = html! {
        section aria-labelledby="sla-title" {
            h2 #sla-title { (lang.t("Review SLA", "审核时效")) }
            p #sla-counts {
                span.badge.breached { (breached) " " (lang.t("breached", "已超时")) } " "
                span.badge.warning { (at_risk.len() - breached) " " (lang.t("due today", "即将超时")) }
            }
            @if !at_risk.is_empty() {
                table #at-risk {
                    caption.visually-hidden { (lang.t("Appeals past or near their review deadline", "已超时或即将超时的申诉")) }
                    thead { tr {
                        th scope="col" { (lang.t("Ticket", "工单号")) }
                        th scope="col" { (lang.t("Review due", "审核截止")) }
                        th scope="col" { (lang.t("Claimed by", "认领人")) }
                    } }
                    tbody { @for i in &at_risk { tr {
                        td { a href={ "/console/appeals/" (i.ticket) } { (i.ticket) } }
                        td { @if let Some(d) = &i.review_due_at { (lang.when_text(tz, d)) } " "
                             @if i.breached { span.badge.breached { (lang.t("breached", "已超时")) } }
                             @else { span.badge.warning { (lang.t("due today", "即将超时")) } } }
                        td { (i.assignee.as_deref().unwrap_or("—")) }
                    } } }
                }
            }
        }
        section aria-labelledby="load-title" {
            h2 #load-title { (lang.t("Reviewer load", "审核人员负载")) }
            table #load {
                caption.visually-hidden { (lang.t("Open appeals claimed by each reviewer", "各审核人员认领的申诉数")) }
                thead { tr { th scope="col" { (lang.t("Reviewer", "审核人员")) } th scope="col" { (lang.t("Claimed", "认领数")) } } }
                tbody { @for l in &load { tr { td { (l.reviewer) } td { (l.claimed) } } } }
            }
        }
        section aria-labelledby="reassign-title" {
            h2 #reassign-title { (lang.t("Reassign an appeal", "重新分配申诉")) }
            form method="post" action="/console/lead/reassign" {
                (console.csrf_field())
                div.field { label for="ra-ticket" { (lang.t("Ticket", "工单号")) } input #ra-ticket type="text" name="ticket" required; }
                div.field { label for="ra-to" { (lang.t("To reviewer", "分配给")) } input #ra-to type="text" name="to" required; }
                button #reassign type="submit" { (lang.t("Reassign", "重新分配")) }
            }
        }
    };
    console.page(lang.t("SLA and reviewer load", "时效与负载"), body).into_response()
}

pub async fn reassign(State(state): State<Shared>, console: Console, f: Form) -> Response {
    if let Err(r) = console.require(&LEADS).and_then(|_| console.check_csrf(&f)) {
        return r;
    }
    let ticket = match crate::app::parse_ticket(f.get("ticket").unwrap_or("")) {
        Ok(t) => t,
        Err(e) => return console.refusal(StatusCode::UNPROCESSABLE_ENTITY, &e.problem().detail),
    };
    match review::reassign(state.engine(), &ticket, f.get("to").unwrap_or(""), console.actor(), None, None).await {
        Ok(_) => see_other(&format!("/console/appeals/{}", ticket.as_str())),
        Err(e) => console.refusal(StatusCode::UNPROCESSABLE_ENTITY, &e.problem().detail),
    }
}
