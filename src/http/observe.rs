//! What every request goes through on its way in and out: a request id (tower-http's
//! `SetRequestId`/`PropagateRequestId`, an incoming `X-Request-Id` kept only when it is
//! a short token), a span and a log line per request (tower-http's `TraceLayer`: method
//! and path, status and latency — never bodies, secrets or phone numbers), a time limit
//! answered as a 503 problem, and the HTTP metrics, recorded through the `metrics`
//! facade into this server's own Prometheus recorder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, info_span};

use super::Shared;
use super::error::ApiError;

const REQUESTS: &str = "appealflow_http_requests_total";
const SERVER_ERRORS: &str = "appealflow_http_server_errors_total";
const DURATION: &str = "appealflow_http_request_duration_seconds";
/// The duration histogram's buckets, in seconds.
const BUCKETS: [f64; 6] = [0.005, 0.01, 0.025, 0.1, 0.5, 2.5];
/// Histogram samples are folded into their buckets at least this often (and at every scrape).
const UPKEEP_EVERY: u64 = 1024;

/// One server's HTTP metrics: a Prometheus recorder of its own, so several servers in one
/// process (the tests) never share counts.
pub struct HttpMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    recorded: AtomicU64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), &BUCKETS)
            .expect("the duration buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(REQUESTS, "HTTP requests answered");
            metrics::describe_counter!(SERVER_ERRORS, "HTTP requests answered with a 5xx status");
            metrics::describe_histogram!(DURATION, metrics::Unit::Seconds, "Time to answer an HTTP request");
            metrics::counter!(REQUESTS).absolute(0);
            metrics::counter!(SERVER_ERRORS).absolute(0);
        });
        HttpMetrics { recorder, handle, recorded: AtomicU64::new(0) }
    }
}

impl HttpMetrics {
    fn record(&self, elapsed: Duration, status: StatusCode) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(REQUESTS).increment(1);
            if status.is_server_error() {
                metrics::counter!(SERVER_ERRORS).increment(1);
            }
            metrics::histogram!(DURATION).record(elapsed.as_secs_f64());
        });
        if self.recorded.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// The Prometheus exposition of the HTTP metrics.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Wraps `router` in the request id, trace, time-limit and metrics layers.
pub(super) fn layers(router: Router<Shared>, state: &Shared) -> Router<Shared> {
    router
        .layer(middleware::from_fn_with_state(state.clone(), limit_and_measure))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
}

/// A client's `X-Request-Id` is kept only when it is 1 to 64 letters, digits and dashes
/// (it goes into every log line); otherwise a fresh one is made.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !usable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// The time limit (an upload's body may take longer than a request's, never unboundedly
/// long) and the metrics.
async fn limit_and_measure(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let upload = request.uri().path().contains("/documents") && request.method() != axum::http::Method::GET;
    let timeout = if upload { state.config.upload_timeout } else { state.config.request_timeout };
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(r) => r,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out", "try again").into_response()
        }
    };
    state.metrics.record(start.elapsed(), response.status());
    response
}
