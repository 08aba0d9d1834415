//! Stop a change (ticket + the one-time code from the "not you?" notice): the account
//! holder stops an approved change while it waits out its cooling-off. An unknown
//! ticket, no pending change and a wrong code get one answer, under the same limits as
//! the API's `POST /v1/stop-change`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::nav;
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, shell};

fn title(lang: Lang) -> &'static str {
    lang.t("Stop a change to your account", "阻止对您账号的变更")
}

fn stop_form(lang: Lang, ticket: Option<&str>, wrong: bool) -> Markup {
    html! {
        p { (lang.t(
            "If you got a \"not you?\" notice about an account appeal you did not make, enter the ticket number and the code from the notice. Nothing has been changed yet; stopping sends the appeal back to our reviewers.",
            "如果您收到了“非本人操作？”通知，而您并未提出该账号申诉，请输入通知中的工单号和验证码。目前尚未做任何更改；阻止后申诉将退回审核。")) }
        @if wrong {
            div.notice.error role="alert" { p { (lang.t(
                "No pending change matches this ticket number and code. Check both and try again.",
                "没有与该工单号和验证码匹配的待生效变更。请核对后重试。")) } }
        }
        form method="post" action="/stop" {
            div.field {
                label for="ticket" { (lang.t("Ticket number", "工单号")) }
                input #ticket type="text" name="ticket" value=[ticket] required autocomplete="off";
            }
            div.field {
                label for="code" { (lang.t("Code from the notice", "通知中的验证码")) }
                input #code type="text" name="code" required autocomplete="one-time-code" inputmode="numeric";
            }
            button #stop type="submit" { (lang.t("Stop the change", "阻止变更")) }
        }
    }
}

pub async fn page(lang: Lang) -> Markup {
    shell(lang, title(lang), &nav(lang), stop_form(lang, None, false))
}

/// `POST /stop`.
pub async fn stop(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    lang: Lang,
    f: Form,
) -> Result<Response, Page> {
    let ticket = f.get("ticket").unwrap_or("");
    match state.stop_change(peer.ip(), ticket, f.get("code").unwrap_or("")).await {
        Ok(stopped) => {
            let body = html! {
                div.notice.ok #stopped role="status" {
                    p { (lang.t("The change is stopped. Nothing was changed on your account.",
                                "变更已阻止，您的账号未做任何更改。")) }
                    p { (lang.t("Appeal", "申诉")) " " strong #stopped-ticket { (stopped.ticket) } " "
                        (lang.t("is back with our reviewers, flagged for a security review.",
                                "已退回审核，并标记为需安全复核。")) }
                }
            };
            Ok(shell(lang, title(lang), &nav(lang), body).into_response())
        }
        Err(e) => super::guess_refused(
            lang,
            title(lang),
            e,
            stop_form(lang, Some(ticket), true),
            ("Too many attempts: wait a minute and try again.", "尝试过于频繁，请一分钟后再试。"),
            "stop-change",
        ),
    }
}
