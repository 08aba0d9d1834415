//! Applicants' routes: drafts, documents, the facial-recognition callback, submission,
//! resubmission and withdrawal.

use axum::Router;

use super::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
}
