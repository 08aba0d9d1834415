//! Staff sessions in the browser: the sign-in page (a staff token exchanged for a
//! session cookie: HttpOnly, SameSite=Strict, Secure behind TLS), the extractor every
//! console page starts with, the CSRF check of every form, sign-out.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use crate::app::sessions::{self, SessionPolicy, StaffSession};
use crate::domain::{Actor, Role};
use crate::http::Shared;
use crate::http::web::cookies;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::shell;
use crate::http::web::see_other;

/// A signed-in staff member.
pub struct Console {
    pub session: StaffSession,
    pub lang: Lang,
    /// The session cookie's value (sign-out ends this session).
    secret: String,
}

impl Console {
    pub fn actor(&self) -> &Actor {
        &self.session.actor
    }

    /// The hidden field every console form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="_csrf" value=(self.session.csrf); }
    }

    /// Refuses a post without this session's CSRF token (403, nothing changed).
    pub fn check_csrf(&self, form: &Form) -> Result<(), Response> {
        match form.get("_csrf") {
            Some(t) if sessions::csrf_matches(&self.session, t) => Ok(()),
            _ => Err(self.refusal(
                StatusCode::FORBIDDEN,
                self.lang.t(
                    "This form is out of date or did not come from the console: nothing was changed. Reload the page and try again.",
                    "表单已过期或并非来自控制台：未做任何更改。请刷新页面后重试。",
                ),
            )),
        }
    }

    /// Refuses a staff member without one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Response> {
        if roles.contains(&self.actor().role) {
            Ok(())
        } else {
            Err(self.refusal(
                StatusCode::FORBIDDEN,
                self.lang.t("Your role does not open this page.", "您的角色无权访问此页面。"),
            ))
        }
    }

    pub fn page(&self, title: &str, body: Markup) -> Markup {
        let nav = super::nav(self.lang, self.actor().role);
        let body = html! {
            p.who {
                (self.lang.t("Signed in as", "当前用户")) " " strong { (self.actor().name) } " (" (self.actor().role.as_str()) ") "
                form.inline method="post" action="/console/sign-out" {
                    (self.csrf_field())
                    button.link #sign-out type="submit" { (self.lang.t("Sign out", "退出登录")) }
                }
            }
            (body)
        };
        shell(self.lang, title, &nav, body)
    }

    pub fn refusal(&self, status: StatusCode, message: &str) -> Response {
        let body = html! { div.notice.error role="alert" { p { (message) } } p { a href="/console" { (self.lang.t("Back to the queue", "返回待审队列")) } } };
        (status, self.page(self.lang.t("Not done", "未完成"), body)).into_response()
    }
}

pub fn policy(state: &Shared) -> SessionPolicy {
    SessionPolicy { idle: state.config.web.session_idle, absolute: state.config.web.session_absolute }
}

impl FromRequestParts<Shared> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_request_parts(parts, state).await.unwrap_or_default();
        let Some(secret) = cookies::get(&parts.headers, cookies::SESSION) else {
            return Err(see_other("/console/sign-in"));
        };
        match sessions::session(state.engine(), &secret, state.engine().now(), policy(state)).await {
            Ok(Some(session)) => Ok(Console { session, lang, secret }),
            Ok(None) => {
                let mut r = see_other("/console/sign-in?expired=1");
                r.headers_mut()
                    .insert(header::SET_COOKIE, cookies::clear(cookies::SESSION, state.config.web.secure_cookies));
                Err(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "reading a staff session failed");
                Err((StatusCode::SERVICE_UNAVAILABLE, "the console cannot read sessions now; try again")
                    .into_response())
            }
        }
    }
}

fn sign_in_form(lang: Lang, notice: Option<&str>) -> Markup {
    shell(
        lang,
        lang.t("Console sign-in", "控制台登录"),
        &[],
        html! {
            @if let Some(n) = notice { div.notice.error role="alert" { p { (n) } } }
            form method="post" action="/console/sign-in" {
                div.field {
                    label for="token" { (lang.t("Staff token", "员工令牌")) }
                    input #token type="password" name="token" required autocomplete="off";
                    p.hint { (lang.t("The token an admin created for you (appealflow tokens create).", "管理员为您创建的令牌（appealflow tokens create）。")) }
                }
                button #sign-in type="submit" { (lang.t("Sign in", "登录")) }
            }
        },
    )
}

pub async fn sign_in_page(lang: Lang, uri: axum::http::Uri) -> Markup {
    let expired = uri.query().is_some_and(|q| q.contains("expired=1"));
    let notice = expired.then(|| lang.t("Your session ended. Sign in again.", "会话已结束，请重新登录。"));
    sign_in_form(lang, notice)
}

pub async fn sign_in(State(state): State<Shared>, lang: Lang, f: Form) -> Response {
    let token = f.get("token").unwrap_or("");
    match sessions::sign_in(state.engine(), token, state.engine().now(), policy(&state)).await {
        Ok(new) => {
            tracing::info!(actor = %new.actor.name, role = %new.actor.role, "console sign-in");
            let mut r = see_other("/console");
            r.headers_mut().insert(
                header::SET_COOKIE,
                cookies::set(cookies::SESSION, &new.secret, None, state.config.web.secure_cookies),
            );
            r
        }
        Err(sessions::SessionError::BadToken) => (
            StatusCode::UNAUTHORIZED,
            sign_in_form(lang, Some(lang.t("Unknown or revoked token.", "令牌无效或已被吊销。"))),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console sign-in failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                sign_in_form(lang, Some(lang.t("Try again in a minute.", "请稍后再试。"))),
            )
                .into_response()
        }
    }
}

pub async fn sign_out(State(state): State<Shared>, console: Console, f: Form) -> Response {
    if let Err(refused) = console.check_csrf(&f) {
        return refused;
    }
    if let Err(e) = sessions::sign_out(state.engine(), &console.secret).await {
        tracing::error!(error = %e, "sign-out failed");
    }
    let mut r = see_other("/console/sign-in");
    r.headers_mut().insert(header::SET_COOKIE, cookies::clear(cookies::SESSION, state.config.web.secure_cookies));
    r
}
