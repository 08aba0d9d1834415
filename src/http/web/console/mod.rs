//! The reviewers' console: sign-in with a staff token exchanged for a session (kept in
//! the database, so every `serve` process on it knows it, and revoking the token ends
//! it), the queue, an appeal with its documents and decisions, the lead's view and the
//! admin's. Every form carries the session's CSRF token; a post without the right one
//! changes nothing.

mod admin;
mod appeal;
mod lead;
mod queue;
mod session;

use axum::Router;
use axum::routing::{get, post};

use crate::domain::Role;
use crate::http::web::i18n::Lang;

pub use session::Console;

pub fn routes() -> Router<crate::http::Shared> {
    Router::new()
        .route("/console", get(queue::page))
        .route("/console/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/appeals/{ticket}", get(appeal::page))
        .route("/console/appeals/{ticket}/decide", post(appeal::decide))
        .route("/console/appeals/{ticket}/documents/{sha256}", get(appeal::document))
        .route("/console/lead", get(lead::page))
        .route("/console/lead/reassign", post(lead::reassign))
        .route("/console/admin", get(admin::page))
        .route("/console/admin/jobs/{id}/retry", post(admin::retry_job))
        .route("/console/admin/actions/{id}/retry", post(admin::retry_action))
        .route("/console/admin/tokens/{id}/revoke", post(admin::revoke_token))
}

/// The console's header links for this staff member's role.
fn nav(lang: Lang, role: Role) -> Vec<(&'static str, &'static str)> {
    let mut links = vec![("/console", lang.t("Queue", "待审队列"))];
    if matches!(role, Role::Lead | Role::Admin) {
        links.push(("/console/lead", lang.t("SLA and load", "时效与负载")));
    }
    if role == Role::Admin {
        links.push(("/console/admin", lang.t("Operations", "运维")));
    }
    links
}
