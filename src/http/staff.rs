//! Reviewers' and leads' reading routes: the queue, appeal detail and documents. The
//! rules live in `app::review`; these translate query strings, headers and answers.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::auth::Staff;
use super::error::{ApiError, ApiResult};
use super::extractors::{Params, QueryPairs, ticket};
use crate::app::review::{self, AssigneeFilter, QueuePage, QueueQuery};
use crate::domain::FieldError;

/// `If-Match`'s counterpart: the appeal's version as an entity tag.
pub(super) fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("a number is a valid header value")
}

/// `GET /v1/queue?state=...&page=...&per_page=...&item=...&scenario=...&assignee=...&unclaimed=true&after=...`.
pub(super) async fn queue(State(state): State<Shared>, _staff: Staff, query: QueryPairs) -> ApiResult<Json<QueuePage>> {
    query.check_known(&["state", "page", "per_page", "item", "scenario", "assignee", "unclaimed", "after"])?;
    // Each `state` value names one or more open states, comma-separated; every name,
    // an empty one included, is checked by the queue.
    let states: Vec<String> =
        query.0.iter().filter(|(k, _)| k == "state").flat_map(|(_, v)| v.split(',')).map(str::to_string).collect();
    let in_query = |e: FieldError| ApiError::invalid(vec![e]).in_query();
    let item = query.one("item")?.map(review::parse_item).transpose().map_err(in_query)?;
    let scenario = query.one("scenario")?.map(review::parse_scenario).transpose().map_err(in_query)?;
    let unclaimed = match query.one("unclaimed")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("query.unclaimed", "true or false")),
    };
    let assignee = match (query.one("assignee")?, unclaimed) {
        (Some(_), true) => {
            return Err(ApiError::field("query.assignee", "either a reviewer's name or unclaimed=true, not both"));
        }
        (Some(name), false) => AssigneeFilter::Named(name.to_string()),
        (None, true) => AssigneeFilter::Unclaimed,
        (None, false) => AssigneeFilter::Any,
    };
    let asked = QueueQuery {
        states,
        page: query.number("page", 1, 1, review::MAX_PAGE)?,
        after: query.one("after")?.map(str::to_string),
        per_page: query.number("per_page", 20, 1, review::MAX_PER_PAGE)?,
        item,
        scenario,
        assignee,
    };
    let page = review::queue(state.engine(), asked).await.map_err(|e| ApiError::from(e).in_query())?;
    Ok(Json(page))
}

/// `GET /v1/appeals/{ticket}`: the detail, its version as the ETag.
pub(super) async fn appeal(
    State(state): State<Shared>,
    _staff: Staff,
    Params(raw): Params<String>,
) -> ApiResult<Response> {
    let detail = review::detail(state.engine(), &ticket(&raw)?).await?;
    let version = detail.appeal.version;
    let mut response = Json(detail).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    Ok(response)
}

/// `GET /v1/appeals/{ticket}/documents/{sha256}`: the bytes as an attachment that may
/// run nothing and load nothing, even opened in a browser.
pub(super) async fn document(
    State(state): State<Shared>,
    staff: Staff,
    Params((raw_ticket, raw_sha)): Params<(String, String)>,
) -> ApiResult<Response> {
    let ticket = ticket(&raw_ticket)?;
    let sha = review::parse_sha256(&raw_sha)?;
    let download = review::document(state.engine(), state.intake.blobs().as_ref(), &ticket, &sha, &staff.0).await?;
    let mut response = download.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(download.content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", download.file_name))
            .expect("digits, a kind name and an extension"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}
