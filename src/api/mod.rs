//! The HTTP API (`gapless serve --http ADDR`): the outage report, gaps,
//! meters and coverage over what is sealed, for billing teams' own tools;
//! the dashboard (`/`, a page that reads this API with the same token);
//! health, readiness and Prometheus metrics for operations.
//! `schemas/openapi.yaml` describes it.
//!
//! `router(state)` returns the whole app, so tests call it without a
//! socket. `/api/v1` needs `Authorization: Bearer <token>`. User errors are
//! 400 with a message naming the parameter; internal ones are 500 and
//! logged. Queries read Parquet on the blocking pool, never on the
//! runtime's threads, at most `--max-scans` at once (429 beyond).
//! Readiness and metrics are in `ops`.
//!
//! Here: the state the handlers share, the router, the token check, and
//! how a query runs (on the blocking pool, under the scan limit). The
//! handlers are per resource: `reports` (report, gaps, coverage),
//! `meters`, `alerts`, `certificate`, `dashboard`; their query
//! parameters in `params`, the error a client sees in `error`.

mod alerts;
mod certificate;
mod dashboard;
mod error;
mod meters;
mod ops;
mod params;
mod reports;

pub(crate) use error::ApiError;
pub(crate) use ops::ScanLimit;
pub(crate) use reports::ReportCache;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::continuity::Context;
use crate::mqtt::ConnectionState;
use crate::report::{self, StoredReadings};
use crate::time::Clock;
use alerts::get_alerts;
use dashboard::{get_dashboard, inline_hash};
use meters::{get_meter, get_readings};
use params::{filter_params, window_param, Params};
use reports::{get_coverage, get_gaps, get_report};

/// Environment variable holding the API's bearer token.
pub(crate) const TOKEN_ENV: &str = "GAPLESS_API_TOKEN";
/// Rows per page by default, and at most.
pub(crate) const DEFAULT_LIMIT: usize = 1_000;
pub(crate) const MAX_LIMIT: usize = 10_000;
/// Coverage buckets per window by default.
pub(crate) const DEFAULT_BUCKETS: u32 = 24;
/// Coverage cells (series × buckets) per page at most: `limit` is bounded
/// by it too, so a page stays a few megabytes of JSON.
pub(crate) const MAX_COVERAGE_CELLS: usize = 1_000_000;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub data: PathBuf,
    pub ctx: Context,
    /// Required on `/api/v1` as `Authorization: Bearer <token>`.
    pub token: Arc<str>,
    /// The broker connection (readiness, metrics).
    pub conn: Arc<ConnectionState>,
    pub clock: Clock,
    /// Gauges the store thread publishes (meters, open gaps, open alerts).
    pub live: Arc<crate::health::LiveStats>,
    /// The rows of the last report window asked for.
    pub reports: Arc<ReportCache>,
    /// The commit log and footers read so far (each request reads only
    /// what is new).
    pub loads: Arc<std::sync::Mutex<report::LoadCache>>,
    pub sinks: Arc<crate::alerts::sink::SinkStats>,
    /// Stage heartbeats and failures (`/readyz`), and the in-memory
    /// counters `/metrics` reports.
    pub health: Arc<crate::health::Health>,
    /// At most this many lake scans at once; the next request gets 429.
    pub scans: Arc<ScanLimit>,
}

impl ApiState {
    /// The sealed readings as of now (reading only the commit manifests and
    /// footers that are new since the last request).
    fn stored(&self) -> Result<StoredReadings, ApiError> {
        let mut cache = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        StoredReadings::load_cached(&self.data, &mut cache).map_err(ApiError::internal)
    }
}

/// The whole app.
pub(crate) fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/report", get(get_report))
        .route("/gaps", get(get_gaps))
        .route("/meters/{id}", get(get_meter))
        .route("/meters/{id}/readings", get(get_readings))
        .route("/coverage", get(get_coverage))
        .route("/certificate", get(certificate::get_certificate))
        .route("/alerts", get(get_alerts))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            ops::limit_requests,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(get_dashboard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ops::get_ready))
        .route("/metrics", get(ops::get_metrics))
        .with_state(state)
}

async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit on the first differing byte.
    let ok = given.is_some_and(|g| {
        g.len() == s.token.len()
            && g.bytes()
                .zip(s.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !ok {
        let mut r = ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "a bearer token is required (Authorization: Bearer <token>)".into(),
        }
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("static header"),
        );
        return r;
    }
    next.run(req).await
}

/// Runs a query on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// Runs a lake scan on the blocking pool if a scan permit is free; else
/// 429 with Retry-After (the work is not queued: each waiting request
/// would hold its memory and its client).
async fn scan<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(permit) = s.scans.try_acquire() else {
        s.health.bound_hit(crate::health::Bound::ApiScans);
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{} lake scans are running (serve --max-scans); retry in {} s",
                s.scans.limit(),
                ops::RETRY_AFTER_S
            ),
        });
    };
    let r = blocking(f).await;
    drop(permit);
    r
}

#[cfg(test)]
mod tests;
