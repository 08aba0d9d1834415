//! The HTTP API (axum): parsing input at the edge, authentication, mapping errors to
//! problem details. Applicants (who cannot log in) work on drafts guarded by a draft
//! secret; reviewers, leads and admins present bearer tokens. No SQL and no business
//! rules here: everything goes through the app layer.

// Handlers return `Result<_, ApiError>` and the problem document is built once per
// failed request; boxing it would only add indirection on the error path.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod api;
pub mod applicant;
pub mod auth;
pub mod decisions;
pub mod error;
pub mod extractors;
pub mod limit;
pub mod metrics;
mod observe;
pub mod openapi;
mod schemas;
pub mod server;
pub mod staff;
pub mod upload;
pub mod web;

pub use metrics::{metrics_router, serve_metrics};

use crate::app::intake::IntakeError;
use crate::app::limits::Guess;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::app::intake::Intake;
use crate::app::work::Work;
use crate::engine::Engine;
use error::{ApiError, ApiResult};

/// Settings of the HTTP service.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest JSON body accepted.
    pub max_json_bytes: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
    /// Progress queries allowed per client address a minute (process-local).
    pub progress_per_minute: u32,
    /// Wrong progress answers allowed per (ticket, client) and per ticket (shared by
    /// every process on the database).
    pub progress_policy: crate::app::limits::ProgressPolicy,
    /// A wrong progress answer is sent no sooner than this after the query arrived, so
    /// its timing is the floor's, not the work's.
    pub progress_floor: Duration,
    /// Drafts one client address may create an hour (shared by every process).
    pub drafts_per_hour: u32,
    /// Bearer token `/metrics` asks for on the main listener (`None`: admin tokens).
    pub metrics_token: Option<String>,
    /// The facial-recognition provider's callback secret (HMAC-SHA256).
    pub face_secret: Option<Vec<u8>>,
    /// Time limit of one document upload, its whole body included.
    pub upload_timeout: Duration,
    /// Header-read and idle timeouts, and the cap on open connections.
    pub connections: server::ConnectionLimits,
    /// The web pages' settings (cookies, staff sessions, the development face provider).
    pub web: crate::http::web::WebConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_json_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            progress_per_minute: 10,
            progress_policy: crate::app::limits::ProgressPolicy::default(),
            progress_floor: Duration::from_millis(25),
            drafts_per_hour: 20,
            metrics_token: None,
            face_secret: None,
            upload_timeout: Duration::from_secs(120),
            connections: server::ConnectionLimits::default(),
            web: crate::http::web::WebConfig::default(),
        }
    }
}

pub struct AppState {
    pub intake: Arc<Intake>,
    pub drafts: crate::app::drafts::Drafts,
    pub work: Arc<Work>,
    pub config: HttpConfig,
    pub limiter: limit::ClientRate,
    pub limits: crate::app::limits::Limits,
    pub metrics: observe::HttpMetrics,
    /// The last computed gauges and when (served for `GAUGES_TTL`).
    gauges: tokio::sync::Mutex<Option<(Instant, crate::store::Gauges)>>,
}

impl AppState {
    pub fn new(intake: Arc<Intake>, work: Arc<Work>, config: HttpConfig) -> Self {
        let limiter = limit::ClientRate::per_minute(config.progress_per_minute);
        let limits = crate::app::limits::Limits::new(intake.engine(), config.progress_policy);
        let drafts = crate::app::drafts::Drafts::new(intake.clone());
        AppState {
            intake,
            drafts,
            work,
            config,
            limiter,
            limits,
            metrics: observe::HttpMetrics::default(),
            gauges: Default::default(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        self.intake.engine()
    }
}

pub type Shared = Arc<AppState>;

/// The whole API.
pub fn router(state: Shared) -> Router {
    let max_json = state.config.max_json_bytes;
    let max_upload = state.intake.limits().max_bytes;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/progress", post(progress))
        .route("/v1/stop-change", post(stop_change))
        .merge(applicant::routes())
        .merge(api::routes())
        .merge(crate::http::web::routes(max_upload))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_json))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    observe::layers(router, &state).with_state(state)
}

/// A handler that panics answers 500 as a problem document (logged with the panic's
/// message), instead of dropping the connection; the process goes on serving.
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    ApiError::internal(format!("a request handler panicked: {message}")).into_response()
}

/// Every answer is a problem document, an unknown path's and a wrong method's included.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "No such route",
        format!("no route {method} {path} (the routes are listed at /openapi.json)"),
    )
}

/// A known path with a method it does not take (the `Allow` header lists those it does).
async fn wrong_method(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("this path does not take {method}; the Allow header lists the methods it does"),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the schema is current and — with a worker in this process — every worker
/// loop works; otherwise 503 naming what is down (a queue whose worker keeps failing, the
/// timer loop), so an orchestrator stops sending work and an operator knows where to look.
async fn readyz(State(state): State<Shared>) -> Response {
    let down = state.work.health().problems();
    if !down.is_empty() {
        let names: Vec<&str> = down.iter().map(|l| l.name.as_str()).collect();
        tracing::warn!(?names, "not ready: worker loops are down");
        let loops: Vec<serde_json::Value> = down
            .iter()
            .map(|l| {
                serde_json::json!({ "name": l.name, "restarts": l.restarts, "down_secs": l.down_secs, "gave_up": l.gave_up })
            })
            .collect();
        return ApiError {
            extra: Some(serde_json::json!({ "down": loops })),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                format!("the worker cannot work: {} down (restarted with backoff; see the log)", names.join(", ")),
            )
        }
        .into_response();
    }
    match crate::app::review::pending_migrations(state.engine()).await {
        Ok(pending) if pending.is_empty() => (StatusCode::OK, "ready").into_response(),
        Ok(pending) => {
            tracing::warn!(?pending, "not ready: migrations not applied");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                "the database schema is behind this build (run appealflow migrate)",
            )
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", "the database is not reachable")
                .into_response()
        }
    }
}

/// `POST /v1/progress`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProgressQuery {
    /// The ticket number as the applicant has it
    ticket: String,
    /// The contact phone given with the appeal
    phone: String,
}

/// `POST /v1/progress`: the phone travels in the body, never in a URL. The same 404,
/// after the same work and no sooner than the configured floor, for an unknown ticket,
/// a wrong phone and a malformed ticket. Limited per client address (process-local)
/// and, for wrong answers, per ticket and client and per ticket (in the database; see
/// `app::limits` for why the owner cannot be locked out).
async fn progress(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: auth::JsonBody<ProgressQuery>,
) -> ApiResult<Response> {
    let q = body.0;
    Ok(Json(state.progress_query(peer.ip(), &q.ticket, &q.phone).await?).into_response())
}

impl AppState {
    /// The progress query under its limits, as the API and the web page both answer it:
    /// per client address (process-local), then per ticket and client and per ticket for
    /// wrong answers (in the database); a wrong answer (404, the same for an unknown
    /// ticket, a wrong phone and a malformed ticket) no sooner than the configured floor.
    pub async fn progress_query(
        &self,
        peer: std::net::IpAddr,
        ticket: &str,
        phone: &str,
    ) -> ApiResult<crate::app::intake::Progress> {
        self.guessed(peer, Guess::Progress, ticket, self.intake.progress(ticket, phone)).await
    }

    /// A guess (`answer`, about `ticket`) under its limits: per client address
    /// (process-local), then per ticket and client and per ticket for wrong answers (in
    /// the database, each kind of guess its own counters); a wrong answer (one 404,
    /// whatever was wrong) no sooner than the configured floor.
    async fn guessed<T>(
        &self,
        peer: std::net::IpAddr,
        guess: Guess,
        ticket: &str,
        answer: impl std::future::Future<Output = Result<T, IntakeError>>,
    ) -> ApiResult<T> {
        let arrived = Instant::now();
        let client = crate::app::limits::client_key(peer);
        self.limiter.check(peer)?;
        let attempt = self.limits.attempt(guess, ticket, &client).await?;
        match answer.await {
            Ok(right) => {
                self.limits.answered_right(attempt).await?;
                Ok(right)
            }
            Err(wrong @ (IntakeError::NoMatch | IntakeError::NoPendingChange)) => {
                tokio::time::sleep_until((arrived + self.config.progress_floor).into()).await;
                Err(wrong.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `POST /v1/stop-change`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StopChangeQuery {
    /// The ticket number the "not you?" notice names
    ticket: String,
    /// The one-time stop code from the notice
    code: String,
}

/// `POST /v1/stop-change`: the account holder stops a change waiting out its
/// cooling-off, with the one-time code from the "not you?" notice. The same 404, after
/// the same floor, for an unknown ticket, no pending change and a wrong code; limited
/// as the progress query is (its own counters).
async fn stop_change(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: auth::JsonBody<StopChangeQuery>,
) -> ApiResult<Response> {
    let q = body.0;
    Ok(Json(state.stop_change(peer.ip(), &q.ticket, &q.code).await?).into_response())
}

impl AppState {
    /// Stops a pending change under the progress query's limits, as the API and the web
    /// page both do it.
    pub async fn stop_change(
        &self,
        peer: std::net::IpAddr,
        ticket: &str,
        code: &str,
    ) -> ApiResult<crate::app::intake::Stopped> {
        self.guessed(peer, Guess::StopCode, ticket, self.intake.stop_change(ticket, code)).await
    }
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.connections;
    server::serve(listener, router(state), limits, Duration::from_secs(30), shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem_and_the_router_serves_on() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let res = app.clone().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "internal");
        assert!(!problem.to_string().contains("boom"), "no internals in the answer: {problem}");
        let res = app.oneshot(Request::get("/fine").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
