//! The applicant's pages, in the help page's order: start (how they reached the appeal,
//! and who cannot appeal), prepare (items, account type, operator; the checklist as they
//! choose), documents, facial recognition, submit, and check the result. Applicants
//! cannot log in: the draft's id and secret travel in an HttpOnly cookie, so the same
//! browser can come back to add documents after a rejection.

mod checklist;
mod documents;
mod prepare;
mod progress;
mod start;
mod stop;
mod submit;
mod upload;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};

use super::cookies;
use super::i18n::Lang;
use super::layout::Page;
pub(super) use super::see_other;
use crate::http::Shared;
use crate::store::DraftRecord;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(start::page))
        .route("/help/cannot-appeal", get(start::cannot_appeal))
        .route("/appeal/start", post(start::begin))
        .route("/appeal/prepare", get(prepare::page).post(prepare::save))
        .route("/appeal/prepare/preview", post(prepare::preview))
        .route("/appeal/documents", get(documents::page).post(documents::add))
        .route("/appeal/documents/{index}/remove", post(documents::remove))
        .route("/appeal/face", get(submit::face))
        .route("/appeal/review", get(submit::review))
        .route("/appeal/submit", post(submit::submit))
        .route("/appeal/submitted", get(submit::submitted))
        .route("/progress", get(progress::page).post(progress::check))
        .route("/appeal/continue", post(progress::resubmit))
        .route("/stop", get(stop::page).post(stop::stop))
}

/// The header's links on the applicant's pages.
fn nav(lang: Lang) -> [(&'static str, &'static str); 2] {
    [("/", lang.t("Start an appeal", "发起申诉")), ("/progress", lang.t("Check the result", "查询申诉结果"))]
}

/// The draft this browser holds, if its cookie still opens one.
async fn held_draft(state: &Shared, headers: &HeaderMap) -> Option<DraftRecord> {
    let value = cookies::get(headers, cookies::DRAFT)?;
    let (id, secret) = value.split_once('~')?;
    state.drafts.open(id, secret).await.ok()
}

/// The ticket of the appeal a draft was submitted as.
fn draft_ticket(draft: &DraftRecord) -> Option<crate::domain::TicketNumber> {
    draft.ticket.as_deref().and_then(|t| crate::domain::TicketNumber::parse(t).ok())
}

/// The ticket of the appeal this browser's draft was submitted as.
async fn held_ticket(state: &Shared, headers: &HeaderMap) -> Option<crate::domain::TicketNumber> {
    held_draft(state, headers).await.as_ref().and_then(draft_ticket)
}

/// The held draft, or a redirect to the start.
async fn draft_or_start(state: &Shared, headers: &HeaderMap) -> Result<DraftRecord, Response> {
    held_draft(state, headers).await.ok_or_else(|| see_other("/"))
}

/// The cookie that keeps a new draft's id and secret in this browser (30 days: long
/// enough to come back after a rejection and add documents).
fn draft_cookie(state: &Shared, id: &str, secret: &str) -> HeaderValue {
    cookies::set(cookies::DRAFT, &format!("{id}~{secret}"), Some(30 * 24 * 3600), state.config.web.secure_cookies)
}

/// An app error as the applicant's page.
fn failed(lang: Lang, e: &impl crate::app::problem::Classify) -> Page {
    Page::from_error(lang, e, &nav(lang))
}

/// The page for a refused guess (the progress query, a stop code): a wrong answer shows
/// `again` (the form with its notice) as a 404; too many tries, a page saying to wait
/// (`busy`: its English and Chinese words); anything else, an internal error, logged as
/// `page`'s.
fn guess_refused(
    lang: Lang,
    title: &str,
    e: crate::http::error::ApiError,
    again: maud::Markup,
    busy: (&'static str, &'static str),
    page: &str,
) -> Result<Response, Page> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use crate::app::problem::{Kind, Problem};
    match e.status {
        StatusCode::NOT_FOUND => {
            Ok((StatusCode::NOT_FOUND, super::layout::shell(lang, title, &nav(lang), again)).into_response())
        }
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = Problem::new(
                Kind::TooMany { retry_after: 60 },
                "too-many",
                "Too many requests",
                lang.t(busy.0, busy.1),
            );
            Err(Page::problem(lang, &wait, &nav(lang)))
        }
        status => {
            tracing::error!(%status, "the {page} page failed");
            let broken = Problem::new(Kind::Internal, "internal", "Internal error", String::new());
            Err(Page::problem(lang, &broken, &nav(lang)))
        }
    }
}
