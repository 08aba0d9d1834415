//! Check the result (ticket + contact phone): the stage in words, the deadlines in the
//! workflow's time zone, a rejection's reasons in words naming the documents (kept after
//! the window closed), the time left to add documents and continue, and the reminder a
//! deregistered enterprise needs. An unknown ticket and a wrong phone get one answer,
//! under the same limits as the API's progress query.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{draft_ticket, failed, held_draft, held_ticket, nav, see_other};
use crate::app::intake::{NoFiles, Progress};
use crate::domain::rejection;
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, shell};

fn title(lang: Lang) -> &'static str {
    lang.t("Check the result of an appeal", "查询申诉结果")
}

fn query_form(lang: Lang, ticket: Option<&str>, wrong: bool) -> Markup {
    html! {
        @if wrong {
            div.notice.error role="alert" { p { (lang.t(
                "No appeal matches this ticket number and phone number. Check both and try again.",
                "没有与该工单号和手机号匹配的申诉。请核对后重试。")) } }
        }
        form method="post" action="/progress" {
            div.field {
                label for="ticket" { (lang.t("Ticket number", "工单号")) }
                input #ticket type="text" name="ticket" value=[ticket] required autocomplete="off";
            }
            div.field {
                label for="phone" { (lang.t("Contact phone given with the appeal", "申诉时填写的联系手机")) }
                input #phone type="tel" name="phone" required autocomplete="tel";
            }
            button #check type="submit" { (lang.t("Check", "查询")) }
        }
    }
}

pub async fn page(lang: Lang) -> Markup {
    shell(lang, title(lang), &nav(lang), query_form(lang, None, false))
}

/// `POST /progress`.
pub async fn check(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    lang: Lang,
    f: Form,
) -> Result<Response, Page> {
    let ticket = f.get("ticket").unwrap_or("");
    match state.progress_query(peer.ip(), ticket, f.get("phone").unwrap_or("")).await {
        Ok(progress) => {
            let holds = held_ticket(&state, &headers).await.is_some_and(|t| t.to_string() == progress.ticket);
            Ok(shell(lang, title(lang), &nav(lang), result(&state, lang, &progress, holds)).into_response())
        }
        Err(e) => super::guess_refused(
            lang,
            title(lang),
            e,
            query_form(lang, Some(ticket), true),
            ("Too many queries: wait a minute and try again.", "查询过于频繁，请一分钟后再试。"),
            "progress",
        ),
    }
}

fn result(state: &Shared, lang: Lang, p: &Progress, holds_draft: bool) -> Markup {
    let tz = state.engine().workflow().calendar.time_zone;
    let stage = lang.state(&p.stage);
    html! {
        dl.progress {
            dt { (lang.t("Ticket", "工单号")) } dd { (p.ticket) }
            dt { (lang.t("Stage", "当前状态")) } dd #stage data-stage=(p.stage) { strong { (stage) } }
            @if let Some(outcome) = &p.outcome { dt { (lang.t("Outcome", "结果")) } dd #outcome { (lang.outcome(outcome)) } }
            dt { (lang.t("Received", "受理时间")) } dd { (lang.when_text(tz, &p.received_at)) }
            @if let Some(due) = &p.review_due_at {
                dt { (lang.t("Review due by", "审核截止")) } dd #review-due { (lang.when_text(tz, due)) }
            }
        }
        @if !p.reasons.is_empty() {
            section.reasons {
                h2 { (lang.t("Why the appeal was rejected", "申诉未通过的原因")) }
                ul #reasons { @for r in &p.reasons { li { (rejection::in_words(r, lang.locale())) } } }
            }
        }
        @if let Some(until) = &p.continue_until {
            section.continue {
                p { (lang.t("You may add documents and continue until", "您可以在以下时间前补充材料并继续申诉：")) " "
                    strong #continue-until { (lang.when_text(tz, until)) } }
                @if holds_draft {
                    p { a.button #add-documents href="/appeal/documents" { (lang.t("Add documents", "补充材料")) } }
                    form method="post" action="/appeal/continue" {
                        input type="hidden" name="ticket" value=(p.ticket);
                        input type="hidden" name="key" value=(crate::app::access::new_secret("web_"));
                        button #continue-appeal type="submit" { (lang.t("Continue the appeal with the documents added", "提交补充材料，继续申诉")) }
                    }
                } @else {
                    p.hint { (lang.t(
                        "Open this page in the browser the appeal was submitted from to add documents.",
                        "请在提交申诉时使用的浏览器中打开本页面以补充材料。")) }
                }
            }
        }
        @if p.entity_change_required {
            p.notice.warning { (lang.t(
                "Your enterprise is deregistered: file the entity-change request from the new company's account, so the reviewer can link it to this appeal.",
                "您的企业已注销：请从新公司的账号提交实名认证主体变更申请，以便审核人员将其与本申诉关联。")) }
        }
        @if p.stage == "closed" && p.outcome.as_deref() == Some("completed") {
            p.notice.ok #done { (lang.t("The account changes you asked for are done.", "您申请的账号变更已完成。")) }
        }
    }
}

/// `POST /appeal/continue`: the rejected appeal continues with the draft's documents.
pub async fn resubmit(State(state): State<Shared>, headers: HeaderMap, lang: Lang, f: Form) -> Result<Response, Page> {
    let Some(draft) = held_draft(&state, &headers).await else { return Ok(see_other("/progress")) };
    let ticket = crate::app::parse_ticket(f.get("ticket").unwrap_or("")).map_err(|e| failed(lang, &e))?;
    if draft_ticket(&draft).as_ref() != Some(&ticket) {
        return Ok(see_other("/progress"));
    }
    state.drafts.resubmit(&draft, &ticket, f.get("key"), &NoFiles).await.map_err(|e| failed(lang, &e))?;
    let body = html! {
        div.notice.ok role="status" {
            p { (lang.t("Your appeal continues with the documents added. Ticket:", "申诉已继续审核。工单号：")) " " strong { (ticket.to_string()) } }
        }
        p { a.button href="/progress" { (lang.t("Check the result", "查询申诉结果")) } }
    };
    Ok(shell(lang, lang.t("Appeal continued", "申诉已继续"), &nav(lang), body).into_response())
}
