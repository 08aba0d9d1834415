//! The admin's view: dead jobs (retried by hand), post-approval actions needing a
//! person (retried), the calendars with their published years and what happens past
//! them, and the staff tokens (revoking one ends its console sessions).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::Console;
use crate::app::admin::{self, JobQuery};
use crate::app::problem::Classify;
use crate::domain::Role;
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::see_other;

pub async fn page(State(state): State<Shared>, console: Console) -> Response {
    if let Err(r) = console.require(&[Role::Admin]) {
        return r;
    }
    let lang = console.lang;
    let engine = state.engine();
    let tz = engine.workflow().calendar.time_zone;
    let jobs = admin::jobs(engine, JobQuery { dead_only: true, ..Default::default() }).await;
    let actions = admin::actions(engine, None, true).await;
    let tokens = crate::app::access::tokens(engine).await;
    let (jobs, actions, tokens) = match (jobs, actions, tokens) {
        (Ok(j), Ok(a), Ok(t)) => (j, a, t),
        (Err(e), ..) | (_, Err(e), _) => {
            return console.refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.problem().detail);
        }
        (.., Err(e)) => return console.refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let calendars = admin::calendars(engine.workflow());
    let post = |action: String, label: &str| {
        html! { form.inline method="post" action=(action) { (console.csrf_field()) button type="submit" { (label) } } }
    };
    let body = html! {
        section aria-labelledby="jobs-title" {
            h2 #jobs-title { (lang.t("Dead jobs", "失败的任务")) }
            @if jobs.is_empty() { p #no-dead-jobs { (lang.t("None.", "无。")) } } @else {
                table #dead-jobs {
                    caption.visually-hidden { (lang.t("Jobs with no attempt left", "已无重试次数的任务")) }
                    thead { tr { th scope="col" { "id" } th scope="col" { (lang.t("Queue", "队列")) } th scope="col" { (lang.t("Attempts", "尝试次数")) } th scope="col" { (lang.t("Last result", "最后结果")) } th scope="col" { span.visually-hidden { (lang.t("Retry", "重试")) } } } }
                    tbody { @for j in &jobs { tr {
                        td { code { (j.id) } } td { (j.queue) } td { (j.attempts) "/" (j.max_attempts) }
                        td { (j.last_result.as_deref().unwrap_or("")) }
                        td { (post(format!("/console/admin/jobs/{}/retry", j.id), lang.t("Retry", "重试"))) }
                    } } }
                }
            }
        }
        section aria-labelledby="actions-title" {
            h2 #actions-title { (lang.t("Account changes needing attention", "需要处理的账号变更")) }
            @if actions.is_empty() { p { (lang.t("None.", "无。")) } } @else {
                table #attention {
                    caption.visually-hidden { (lang.t("Post-approval actions that failed", "失败的审批后操作")) }
                    thead { tr { th scope="col" { (lang.t("Ticket", "工单号")) } th scope="col" { (lang.t("Action", "操作")) } th scope="col" { (lang.t("Status", "状态")) } th scope="col" { (lang.t("Last error", "最后错误")) } th scope="col" { span.visually-hidden { (lang.t("Retry", "重试")) } } } }
                    tbody { @for a in &actions { tr {
                        td { a href={ "/console/appeals/" (a.ticket) } { (a.ticket) } } td { (a.action) } td { (a.status.to_string()) }
                        td { (a.last_error.as_deref().unwrap_or("")) }
                        td { (post(format!("/console/admin/actions/{}/retry", a.id), lang.t("Retry", "重试"))) }
                    } } }
                }
            }
        }
        section aria-labelledby="calendars-title" {
            h2 #calendars-title { (lang.t("Calendars", "工作日历")) }
            table #calendars {
                caption.visually-hidden { (lang.t("Business-day calendars", "工作日历")) }
                thead { tr { th scope="col" { (lang.t("Name", "名称")) } th scope="col" { (lang.t("Time zone", "时区")) } th scope="col" { (lang.t("Published years", "已公布年份")) } th scope="col" { (lang.t("Past them", "超出范围时")) } th scope="col" { (lang.t("In use", "使用中")) } } }
                tbody { @for c in &calendars { tr {
                    td { (c.name) } td { (c.time_zone) }
                    td { (c.published.first_year) "–" (c.published.last_year) }
                    td { (format!("{:?}", c.beyond_published).to_lowercase()) " "
                         span.badge.warning { (lang.t("deadlines there are provisional", "超出部分的截止时间为暂定")) } }
                    td { @if c.in_use { (lang.t("yes", "是")) } }
                } } }
            }
        }
        section aria-labelledby="tokens-title" {
            h2 #tokens-title { (lang.t("Staff tokens", "员工令牌")) }
            p.hint { (lang.t("Tokens are created with: appealflow tokens create --role ROLE --name NAME", "使用 appealflow tokens create --role 角色 --name 姓名 创建令牌")) }
            table #tokens {
                caption.visually-hidden { (lang.t("Staff tokens", "员工令牌")) }
                thead { tr { th scope="col" { "id" } th scope="col" { (lang.t("Name", "姓名")) } th scope="col" { (lang.t("Role", "角色")) } th scope="col" { (lang.t("Created", "创建时间")) } th scope="col" { (lang.t("Revoked", "吊销时间")) } th scope="col" { span.visually-hidden { (lang.t("Revoke", "吊销")) } } } }
                tbody { @for t in &tokens { tr {
                    td { code { (t.id) } } td { (t.name) } td { (t.role.as_str()) } td { (lang.when(tz, t.created_at)) }
                    td { @if let Some(r) = t.revoked_at { (lang.when(tz, r)) } }
                    td { @if t.revoked_at.is_none() { (post(format!("/console/admin/tokens/{}/revoke", t.id), lang.t("Revoke", "吊销"))) } }
                } }
            } }
        }
    };
    console.page(lang.t("Operations", "运维"), body).into_response()
}

async fn admin_post(console: &Console, f: &Form) -> Result<(), Response> {
    console.require(&[Role::Admin])?;
    console.check_csrf(f)
}

pub async fn retry_job(State(state): State<Shared>, console: Console, Path(id): Path<String>, f: Form) -> Response {
    if let Err(r) = admin_post(&console, &f).await {
        return r;
    }
    match admin::retry_job(state.engine(), &id, console.actor(), None).await {
        Ok(_) => see_other("/console/admin"),
        Err(e) => console.refusal(StatusCode::CONFLICT, &e.problem().detail),
    }
}

pub async fn retry_action(State(state): State<Shared>, console: Console, Path(id): Path<i64>, f: Form) -> Response {
    if let Err(r) = admin_post(&console, &f).await {
        return r;
    }
    match admin::retry_action(state.engine(), id).await {
        Ok(()) => see_other("/console/admin"),
        Err(e) => console.refusal(StatusCode::CONFLICT, &e.problem().detail),
    }
}

pub async fn revoke_token(State(state): State<Shared>, console: Console, Path(id): Path<String>, f: Form) -> Response {
    if let Err(r) = admin_post(&console, &f).await {
        return r;
    }
    match crate::app::access::revoke_token(state.engine(), &id).await {
        Ok(true) => see_other("/console/admin"),
        Ok(false) => console.refusal(
            StatusCode::NOT_FOUND,
            console.lang.t("No unrevoked token with this id.", "没有该 ID 的有效令牌。"),
        ),
        Err(e) => console.refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
