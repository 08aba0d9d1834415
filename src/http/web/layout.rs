//! The page shell (language switch, navigation, the scripts and the style sheet) and the
//! error page: an app error becomes a page in the visitor's language that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::i18n::Lang;
use crate::app::problem::{Classify, Kind, Problem};

/// The whole page around `body`. `nav` are the header's links (href, text).
pub fn shell(lang: Lang, title: &str, nav: &[(&str, &str)], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx: no eval, no inline indicator styles (the CSP allows neither).
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " — appealflow" }
                link rel="stylesheet" href=(assets::url("app.css"));
                script src=(assets::url("htmx.min.js")) defer {}
                script src=(assets::url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { (lang.t("Skip to content", "跳到正文")) }
                header.top {
                    span.brand { "appealflow" }
                    nav aria-label=(lang.t("Site", "站点")) {
                        @for (href, text) in nav {
                            a href=(href) { (text) }
                        }
                        a href={ "?lang=" (lang.other().code()) } hreflang=(lang.other().code()) lang=(lang.other().code()) {
                            (lang.other().own_name())
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

/// A failed request as a page.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub body: Markup,
}

impl Page {
    pub fn new(status: StatusCode, body: Markup) -> Self {
        Page { status, body }
    }

    /// An app error in words: what is wrong (each field named) and what to do.
    pub fn problem(lang: Lang, problem: &Problem, nav: &[(&str, &str)]) -> Self {
        let status = match problem.kind {
            Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::NotAllowed => StatusCode::FORBIDDEN,
            Kind::Conflict | Kind::Refused => StatusCode::CONFLICT,
            Kind::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let title = match problem.kind {
            Kind::Invalid => lang.t("Please check what you entered", "请检查填写的内容"),
            Kind::NotFound => lang.t("Not found", "未找到"),
            Kind::NotAllowed => lang.t("Not allowed", "无权操作"),
            Kind::Conflict => lang.t("It changed meanwhile", "内容已被他人更改"),
            Kind::Refused => lang.t("This cannot be done now", "当前无法进行此操作"),
            Kind::TooMany { .. } => lang.t("Too many attempts", "尝试次数过多"),
            Kind::Internal => lang.t("Something went wrong on our side", "系统出现问题"),
        };
        let detail = if problem.kind == Kind::Internal {
            lang.t("Please try again in a few minutes.", "请稍后再试。").to_string()
        } else {
            problem.detail.clone()
        };
        let body = html! {
            div.notice.error role="alert" {
                p { (detail) }
                @if !problem.errors.is_empty() {
                    ul { @for e in &problem.errors { li { code { (e.field) } ": " (e.rule) } } }
                }
                @if let Kind::TooMany { retry_after } = problem.kind {
                    p { (lang.t("Try again after", "请在以下时间后重试：")) " " (retry_after) " s" }
                }
            }
            p { a href="/" { (lang.t("Back to the start", "返回首页")) } }
        };
        Page::new(status, shell(lang, title, nav, body))
    }

    pub fn from_error(lang: Lang, e: &impl Classify, nav: &[(&str, &str)]) -> Self {
        let problem = e.problem();
        if problem.kind == Kind::Internal {
            tracing::error!(detail = %problem.detail, "a page failed");
        }
        Page::problem(lang, &problem, nav)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (self.status, self.body).into_response()
    }
}

/// A field's errors, for the form control they belong to.
pub fn field_errors<'a>(errors: &'a [crate::domain::FieldError], field: &str) -> Vec<&'a str> {
    errors
        .iter()
        .filter(|e| e.field == field || e.field.starts_with(&format!("{field}.")))
        .map(|e| e.rule.as_str())
        .collect()
}
