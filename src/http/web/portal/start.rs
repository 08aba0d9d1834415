//! Start: how the applicant reached the appeal (forgot username, with a domain, an
//! ICP-filed domain or an enterprise email domain; forgot password; the Account Security
//! page), and the help page's "who cannot appeal" answers as pages of their own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::json;

use super::{draft_cookie, failed, nav, see_other};
use crate::app::drafts::DraftError;
use crate::app::intake::IntakeError;
use crate::app::limits::{Budget, client_key};
use crate::domain::FieldError;
use crate::domain::rules::Ineligible;
use crate::http::Shared;
use crate::http::web::cookies;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, field_errors, shell};

pub async fn page(State(state): State<Shared>, lang: Lang) -> Response {
    let mut response = shell(lang, lang.t("Account appeal", "账号申诉"), &nav(lang), form(lang, &Form::default(), &[]))
        .into_response();
    // The language chosen by a link is kept for the next pages.
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookies::set(cookies::LANG, lang.code(), Some(365 * 24 * 3600), state.config.web.secure_cookies),
    );
    response
}

fn form(lang: Lang, f: &Form, errors: &[FieldError]) -> Markup {
    let kind = f.get("entry").unwrap_or("forgot_password");
    let lookup = f.get("lookup").unwrap_or("domain");
    html! {
        p.lead { (lang.t(
            "If you cannot verify your identity online, appeal with documents. The appeal has three steps: prepare the documents, submit the appeal, check the result. The review takes about 3 business days.",
            "如果您无法在线完成身份验证，可以提交材料进行申诉。申诉分三步：准备申诉材料、提交申诉、查询申诉结果。审核约需 3 个工作日。")) }
        @if !errors.is_empty() {
            div.notice.error role="alert" { ul { @for e in errors { li { (e.rule) } } } }
        }
        form method="post" action="/appeal/start" {
            fieldset {
                legend { (lang.t("How did you reach the appeal?", "您从哪里进入申诉？")) }
                @for (value, en, zh) in [
                    ("forgot_username", "I forgot my username", "忘记登录名"),
                    ("forgot_password", "I forgot my password", "忘记密码"),
                    ("security_page", "I am logged on: Account Security page (change phone number)", "已登录：账号安全页面（修改手机号）"),
                ] {
                    div.choice {
                        input type="radio" name="entry" id={ "entry-" (value) } value=(value) checked[kind == value];
                        label for={ "entry-" (value) } { (lang.t(en, zh)) }
                    }
                }
            }
            fieldset {
                legend { (lang.t("Forgot username: find the account by", "忘记登录名：通过以下信息查找账号")) }
                label for="lookup" { (lang.t("Look up by", "查找方式")) }
                select #lookup name="lookup" {
                    @for (value, en, zh) in [
                        ("domain", "A domain name of the account", "账号下的域名"),
                        ("icp_domain", "An ICP-filed domain name", "已备案域名"),
                        ("email_domain", "The enterprise email domain", "企业邮箱域名"),
                    ] {
                        option value=(value) selected[lookup == value] { (lang.t(en, zh)) }
                    }
                }
                label for="lookup-value" { (lang.t("Domain name", "域名")) }
                input #lookup-value type="text" name="value" value=[f.get("value")] autocomplete="off"
                    aria-describedby="lookup-value-err";
                (errs("lookup-value-err", &field_errors(errors, "entry_point.value")))
            }
            fieldset {
                legend { (lang.t("Forgot password or logged on: the account", "忘记密码或已登录：账号")) }
                label for="account" { (lang.t("Account name", "账号名")) }
                input #account type="text" name="account" value=[f.get("account")] autocomplete="username"
                    aria-describedby="account-err";
                (errs("account-err", &field_errors(errors, "entry_point.account")))
            }
            button #start type="submit" { (lang.t("Start the appeal", "开始申诉")) }
        }
        p { a href="/help/cannot-appeal" { (lang.t("Who cannot appeal?", "哪些情况不能申诉？")) } }
        p { a href="/progress" { (lang.t("Already appealed? Check the result with your ticket number and phone.", "已提交申诉？用工单号和手机号查询结果。")) } }
    }
}

pub(super) fn errs(id: &str, messages: &[&str]) -> Markup {
    html! {
        @if !messages.is_empty() {
            span.field-error id=(id) role="alert" { @for m in messages { (m) " " } }
        }
    }
}

/// `POST /appeal/start`: a new draft for the located account, or the page that says why
/// this account cannot appeal.
pub async fn begin(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    lang: Lang,
    f: Form,
) -> Result<Response, Page> {
    let entry = match f.get("entry") {
        Some("forgot_username") => json!({
            "kind": "forgot_username", "lookup": f.get("lookup").unwrap_or("domain"), "value": f.get("value").unwrap_or("")
        }),
        Some(kind @ ("forgot_password" | "security_page")) => {
            json!({ "kind": kind, "account": f.get("account").unwrap_or("") })
        }
        _ => json!({ "kind": "" }),
    };
    let per_hour = Budget::per(state.config.drafts_per_hour, std::time::Duration::from_secs(3600));
    state.limits.take(&format!("drafts:{}", client_key(peer.ip())), per_hour).await.map_err(|e| failed(lang, &e))?;
    match state.drafts.create(json!({ "entry_point": entry, "locale": lang.code() })).await {
        Ok(created) => {
            let mut r = see_other("/appeal/prepare");
            r.headers_mut().insert(header::SET_COOKIE, draft_cookie(&state, &created.draft_id, &created.secret));
            Ok(r)
        }
        Err(DraftError::Intake(IntakeError::Ineligible(why))) => Ok(ineligible(lang, &why).into_response()),
        Err(DraftError::Intake(IntakeError::Invalid(errors))) => {
            let body = form(lang, &f, &errors);
            Ok((
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                shell(lang, lang.t("Account appeal", "账号申诉"), &nav(lang), body),
            )
                .into_response())
        }
        Err(e) => Err(failed(lang, &e)),
    }
}

/// Why this account cannot appeal, and what to do instead: a page, not an error.
fn ineligible(lang: Lang, why: &Ineligible) -> Markup {
    let (title, text) = match why {
        Ineligible::NoAccount { .. } => (
            lang.t("No account found", "未找到账号"),
            lang.t(
                "No account matches what you entered. Check the spelling, or try another domain name of the account.",
                "没有与您填写的信息匹配的账号。请检查拼写，或尝试该账号下的其他域名。",
            ),
        ),
        Ineligible::NoAssociations => (
            lang.t("This account cannot be located", "无法定位该账号"),
            lang.t(
                "The account has no associated phone number, domain name, ICP-filed domain name, enterprise email domain or issued invoices, so it cannot be found to appeal for a forgotten username.",
                "该账号未关联手机号、域名、已备案域名、企业邮箱域名或已开发票，因此无法通过“忘记登录名”找到账号并申诉。",
            ),
        ),
        Ineligible::DeregisteredLoggedIn => (
            lang.t("Change the verified entity instead", "请改为变更实名认证主体"),
            lang.t(
                "The enterprise this account was verified with is deregistered. While you can log on, change the account's verified entity to another enterprise, or unregister the account, instead of appealing.",
                "该账号认证的企业已注销。您仍可登录，请直接将账号的实名认证主体变更为其他企业，或注销账号，无需申诉。",
            ),
        ),
    };
    shell(
        lang,
        title,
        &nav(lang),
        html! {
            div.notice role="status" { p { (text) } }
            p { a href="/help/cannot-appeal" { (lang.t("Who cannot appeal?", "哪些情况不能申诉？")) } }
            p { a href="/" { (lang.t("Back to the start", "返回首页")) } }
        },
    )
}

/// The help page's "Scenarios where you cannot submit an appeal".
pub async fn cannot_appeal(lang: Lang) -> Markup {
    shell(
        lang,
        lang.t("Who cannot appeal", "哪些情况不能申诉"),
        &nav(lang),
        html! {
            section {
                h2 { (lang.t("The account cannot be located", "无法定位账号")) }
                p { (lang.t(
                    "You forgot your username and cannot log on, and the account has no associated phone number, domain name, ICP-filed domain name, enterprise email domain name or issued invoices: the identity verification page cannot be reached, so no appeal can be submitted.",
                    "您忘记了登录名且无法登录，而账号未关联手机号、域名、已备案域名、企业邮箱域名或已开发票：无法进入身份验证页面，因此不能提交申诉。")) }
            }
            section {
                h2 { (lang.t("The account has not completed identity verification", "账号未完成实名认证")) }
                p { (lang.t(
                    "Without identity verification the account's ownership cannot be determined and the appeal will be rejected. If the account holds domain names or products with ICP filings, transfer them offline first. If you can still log on, complete identity verification first.",
                    "未完成实名认证的账号无法确定归属，申诉将被驳回。如果账号下有已备案的域名或产品，请先进行线下过户；如果您仍可登录，请先完成实名认证。")) }
            }
            section {
                h2 { (lang.t("A deregistered enterprise's account you can still log on to", "仍可登录的已注销企业账号")) }
                p { (lang.t(
                    "Change the account's verified entity to another enterprise, or unregister the account, instead of appealing.",
                    "请直接变更账号的实名认证主体或注销账号，无需申诉。")) }
            }
            p { a href="/" { (lang.t("Back to the start", "返回首页")) } }
        },
    )
}
