//! Reviewers', leads' and admins' routes: the queue, appeal detail, decisions, documents,
//! reassignment, dead jobs, the loaded workflow and calendars.

use axum::Router;

use super::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
}
