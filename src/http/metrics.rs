//! `/metrics` for operators: Prometheus exposition of the desk's gauges (cached for a
//! few seconds), the worker loops' health and the HTTP metrics (see `observe.rs`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiResult;
use super::{Shared, auth};

/// `GET /metrics` on the main listener: for operators only — the metrics token
/// (`--metrics-token`) or an admin's token. `--metrics-listen` serves it without
/// credentials on an address of its own (a private network, for the scraper).
pub(super) async fn metrics(State(state): State<Shared>, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    let token = auth::bearer(&headers)?;
    let by_metrics_token =
        state.config.metrics_token.as_deref().is_some_and(|t| crate::app::access::same_hash(t, token));
    if !by_metrics_token {
        auth::staff_by_token(&state, token).await?.require(&[crate::domain::Role::Admin])?;
    }
    render_metrics(&state).await
}

/// Serves `/metrics` alone, without credentials, on `listener` (`--metrics-listen`)
/// until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state)).with_graceful_shutdown(shutdown).await
}

/// The metrics router for `--metrics-listen`: `/metrics` without credentials.
pub fn metrics_router(state: Shared) -> Router {
    Router::new()
        .route("/metrics", get(|State(state): State<Shared>| async move { render_metrics(&state).await }))
        .with_state(state)
}

/// How long computed gauges are served before they are counted again.
const GAUGES_TTL: Duration = Duration::from_secs(5);

pub(super) async fn render_metrics(state: &Shared) -> ApiResult<Response> {
    use std::fmt::Write;
    let g = {
        let mut cached = state.gauges.lock().await;
        match &*cached {
            Some((at, g)) if at.elapsed() < GAUGES_TTL => g.clone(),
            _ => {
                let g = crate::app::review::gauges(state.engine()).await?;
                *cached = Some((Instant::now(), g.clone()));
                g
            }
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE appealflow_appeals gauge");
    for s in &state.engine().workflow().def.states {
        let n = g.appeals_by_state.iter().find(|(name, _)| *name == s.name).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "appealflow_appeals{{state=\"{}\"}} {n}", s.name);
    }
    let _ = writeln!(out, "# TYPE appealflow_jobs gauge");
    for status in crate::store::JobStatus::ALL.iter().map(|s| s.as_str()) {
        let n = g.jobs_by_status.iter().find(|(name, _)| name == status).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "appealflow_jobs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(out, "appealflow_jobs_dead {}", g.dead_jobs);
    let loops = state.work.health().statuses();
    if !loops.is_empty() {
        let _ = writeln!(out, "# TYPE appealflow_worker_loop_up gauge");
        for l in &loops {
            let _ = writeln!(out, "appealflow_worker_loop_up{{loop=\"{}\"}} {}", l.name, u8::from(l.up));
        }
        let _ = writeln!(out, "# TYPE appealflow_worker_loop_restarts_total counter");
        for l in &loops {
            let _ = writeln!(out, "appealflow_worker_loop_restarts_total{{loop=\"{}\"}} {}", l.name, l.restarts);
        }
    }
    let _ =
        writeln!(out, "# TYPE appealflow_sla_breaches_total counter\nappealflow_sla_breaches_total {}", g.sla_breaches);
    out.push_str(&state.metrics.render());
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
