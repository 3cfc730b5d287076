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
//! Readiness and metrics are in [`ops`].

mod ops;
pub use ops::ScanLimit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::continuity::series::analyze;
use crate::continuity::window::{Status, Window};
use crate::continuity::{Context, SECOND};
use crate::mqtt::ConnectionState;
use crate::reading::{format_fixed, Medium};
use crate::report::coverage::{self, Buckets};
use crate::report::{self, GapFilter, ReportFilter, StoredReadings};
use crate::time::format_micros;
use crate::time::parse_time;
use crate::time::Clock;

mod certificate;

/// Environment variable holding the API's bearer token.
pub const TOKEN_ENV: &str = "GAPLESS_API_TOKEN";
/// Rows per page by default, and at most.
pub const DEFAULT_LIMIT: usize = 1_000;
pub const MAX_LIMIT: usize = 10_000;
/// Coverage buckets per window by default.
pub const DEFAULT_BUCKETS: u32 = 24;
/// Coverage cells (series × buckets) per page at most: `limit` is bounded
/// by it too, so a page stays a few megabytes of JSON.
pub const MAX_COVERAGE_CELLS: usize = 1_000_000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
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

/// The rows of the last report window asked for, with the state of the
/// commit log they were computed from: any report of that window (another
/// medium, status or page; the dashboard asks for ten) is made from them
/// until a new commit lands. One computation at a time: concurrent
/// requests for the window wait for it rather than scan the data again.
#[derive(Default)]
pub struct ReportCache(tokio::sync::Mutex<Option<CachedRows>>);

struct CachedRows {
    window: Window,
    commits: std::time::SystemTime,
    rows: Arc<Vec<crate::continuity::window::MeterRow>>,
}

/// When the commit log last changed (a commit adds a file to it).
fn commits_changed(data: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(data.join(crate::layout::COMMITS_DIR))
        .and_then(|m| m.modified())
        .ok()
}

impl ReportCache {
    async fn rows(
        &self,
        s: &ApiState,
        window: Window,
    ) -> Result<Arc<Vec<crate::continuity::window::MeterRow>>, ApiError> {
        let mut cached = self.0.lock().await;
        let data = s.data.clone();
        let commits = blocking(move || Ok(commits_changed(&data))).await?;
        if let (Some(c), Some(t)) = (cached.as_ref(), commits) {
            if c.window == window && c.commits == t {
                return Ok(c.rows.clone());
            }
        }
        let st = s.clone();
        let rows = Arc::new(
            scan(s, move || {
                let stored = st.stored()?;
                report::window_rows(&stored, &st.ctx, window).map_err(ApiError::internal)
            })
            .await?,
        );
        *cached = commits.map(|commits| CachedRows {
            window,
            commits,
            rows: rows.clone(),
        });
        Ok(rows)
    }
}

impl ApiState {
    /// The sealed readings as of now (reading only the commit manifests and
    /// footers that are new since the last request).
    fn stored(&self) -> Result<StoredReadings, ApiError> {
        let mut cache = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        StoredReadings::load_cached(&self.data, &mut cache).map_err(ApiError::internal)
    }
}

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(param: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("parameter {param}: {why}"),
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api: internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error (logged)".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(ops::RETRY_AFTER_S),
            );
        }
        r
    }
}

/// The whole app.
pub fn router(state: ApiState) -> Router {
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

type Params = Query<HashMap<String, String>>;

fn time_param(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name)
        .map(|v| parse_time(v).map_err(|e| ApiError::bad(name, e)))
        .transpose()
}

fn required_time(p: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    time_param(p, name)?.ok_or_else(|| ApiError::bad(name, "required (RFC 3339 or YYYY-MM-DD)"))
}

/// `from` and `to`: the window `[from, to)`.
fn window_param(p: &HashMap<String, String>) -> Result<Window, ApiError> {
    let window = Window {
        from: required_time(p, "from")?,
        to: required_time(p, "to")?,
    };
    if window.to <= window.from {
        return Err(ApiError::bad("to", "must be after from"));
    }
    Ok(window)
}

fn medium_param(p: &HashMap<String, String>) -> Result<Option<Medium>, ApiError> {
    p.get("medium")
        .map(|m| {
            Medium::parse(m).ok_or_else(|| {
                ApiError::bad(
                    "medium",
                    format!("{m:?} is not heat, cooling, water, warm_water or hca"),
                )
            })
        })
        .transpose()
}

/// `limit` and `offset`: bounded pages.
fn page(p: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let num = |name: &str, default: usize| -> Result<usize, ApiError> {
        p.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::bad(name, format!("{v:?} is not a non-negative integer")))
        })
    };
    let limit = num("limit", DEFAULT_LIMIT)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad("limit", format!("must be 1..={MAX_LIMIT}")));
    }
    Ok((num("offset", 0)?, limit))
}

fn page_json(offset: usize, limit: usize, total: usize) -> serde_json::Value {
    json!({ "offset": offset, "limit": limit, "total": total })
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

/// `medium` and `status`: which rows a report (or a certificate) lists.
fn filter_params(p: &HashMap<String, String>) -> Result<ReportFilter, ApiError> {
    let status = p
        .get("status")
        .map(|v| {
            Status::parse(v).ok_or_else(|| {
                ApiError::bad(
                    "status",
                    format!("{v:?} is not anomalous, silent, open, bridged or complete"),
                )
            })
        })
        .transpose()?;
    Ok(ReportFilter {
        medium: medium_param(p)?,
        status,
    })
}

async fn get_report(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let window = window_param(&p)?;
    let filter = filter_params(&p)?;
    let csv = match p.get("format").map(String::as_str) {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?} is not json or csv"),
            ))
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    let (offset, limit) = page(&p)?;
    let rows = s.reports.rows(&s, window).await?;
    let mut rep = report::filtered_report(window, rows.as_ref().clone(), &filter);
    if csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report::report_csv(&rep),
        )
            .into_response());
    }
    // Only the page becomes JSON (the summary was counted over all rows).
    let total = rep.meters.len();
    rep.meters = rep.meters.drain(..).skip(offset).take(limit).collect();
    let mut body = serde_json::to_value(report::report_json(&rep)).map_err(ApiError::internal)?;
    body["page"] = page_json(offset, limit, total);
    Ok(Json(body).into_response())
}

async fn get_gaps(State(s): State<ApiState>, Query(p): Params) -> Result<Response, ApiError> {
    let open = match p.get("open").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("open", format!("{v:?} is not true or false"))),
    };
    let filter = GapFilter {
        meter: p.get("meter").cloned(),
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
        only_open: open,
        medium: medium_param(&p)?,
    };
    let (offset, limit) = page(&p)?;
    let now = s.clock.now_micros();
    let rows = scan(&s.clone(), move || {
        let stored = s.stored()?;
        report::gaps(&stored, &s.ctx, &filter, now).map_err(ApiError::internal)
    })
    .await?;
    let total = rows.len();
    let end = (offset + limit).min(total);
    let page_rows = rows.get(offset.min(total)..end).unwrap_or(&[]);
    Ok(Json(json!({
        "gaps": report::gaps_json(page_rows),
        "page": page_json(offset, limit, total),
    }))
    .into_response())
}

/// Per series and time bucket, readings received against expected (the
/// dashboard's coverage grid); the series the report lists, in its order.
async fn get_coverage(State(s): State<ApiState>, Query(p): Params) -> Result<Response, ApiError> {
    let window = window_param(&p)?;
    let n = p.get("buckets").map_or(Ok(DEFAULT_BUCKETS), |v| {
        v.parse::<u32>()
            .map_err(|_| ApiError::bad("buckets", format!("{v:?} is not a positive integer")))
    })?;
    let buckets = Buckets::try_new(window, n).map_err(|e| ApiError::bad("buckets", e))?;
    let medium = medium_param(&p)?;
    let (offset, limit) = page(&p)?;
    if limit.saturating_mul(buckets.len()) > MAX_COVERAGE_CELLS {
        return Err(ApiError::bad(
            "limit",
            format!(
                "limit × buckets must be at most {MAX_COVERAGE_CELLS}: with {n} buckets, limit ≤ {}",
                MAX_COVERAGE_CELLS / buckets.len()
            ),
        ));
    }
    let rows = scan(&s.clone(), move || {
        let stored = s.stored()?;
        coverage::coverage(&stored, &s.ctx, &buckets, medium).map_err(ApiError::internal)
    })
    .await?;
    let total = rows.len();
    let end = (offset.saturating_add(limit)).min(total);
    let page_rows = rows.get(offset.min(total)..end).unwrap_or(&[]);
    let mut body = coverage::coverage_json(&buckets, page_rows);
    body["page"] = page_json(offset, limit, total);
    Ok(Json(body).into_response())
}

/// The dashboard: one self-contained page (no network but this API).
const DASHBOARD_HTML: &str = include_str!("api/dashboard.html");

/// The SHA-256 of the text of the page's one `<tag>` element, as CSP wants
/// it (`'sha256-…'`): only that script and that style run.
fn inline_hash(html: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = html.find(&open).map_or(0, |i| i + open.len());
    let end = html[start..].find(&close).map_or(start, |i| start + i);
    let digest = sha2::Sha256::digest(&html.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: its own script and style, requests
/// to this origin only, no frames, no forms, no other source of anything.
static DASHBOARD_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(DASHBOARD_HTML, "script"),
        inline_hash(DASHBOARD_HTML, "style"),
    )
});

async fn get_dashboard() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP.as_str()),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(DASHBOARD_HTML),
    )
        .into_response()
}

/// Alerts as sealed (what device teams were told), newest first.
/// `open=true`: only conditions not yet closed (`meter_silent`,
/// `meter_never_seen`, `group_silent`, `reject_burst`); `kind`, `subject`,
/// `from`/`to` (raised at) filter.
async fn get_alerts(State(s): State<ApiState>, Query(p): Params) -> Result<Response, ApiError> {
    use crate::alerts::AlertKind;
    let open = match p.get("open").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("open", format!("{v:?} is not true or false"))),
    };
    let kind = p
        .get("kind")
        .map(|k| AlertKind::parse_listed(k).map_err(|e| ApiError::bad("kind", e)))
        .transpose()?;
    let filter = crate::alerts::table::AlertFilter {
        open,
        kind,
        subject: p.get("subject").cloned(),
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
    };
    let (offset, limit) = page(&p)?;
    let told =
        blocking(move || crate::alerts::table::read_told(&s.data).map_err(ApiError::internal))
            .await?;
    let mut rows = crate::alerts::table::select(&told, &filter);
    rows.reverse();
    let total = rows.len();
    let end = (offset + limit).min(total);
    let page_rows: Vec<serde_json::Value> = rows
        .get(offset.min(total)..end)
        .unwrap_or(&[])
        .iter()
        .map(|t| serde_json::from_str(&t.json).unwrap_or_else(|_| t.alert.to_json()))
        .collect();
    Ok(Json(json!({
        "alerts": page_rows,
        "page": page_json(offset, limit, total),
    }))
    .into_response())
}

fn valid_meter(id: &str) -> Result<(), ApiError> {
    crate::reading::MeterId::try_new(id)
        .map(|_| ())
        .map_err(|e| ApiError::bad("id", e))
}

/// A meter's state as sealed: per register its interval and source, last
/// reading, the open gap (until now) and its most recent gaps.
async fn get_meter(
    State(s): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    valid_meter(&id)?;
    let now = s.clock.now_micros();
    let meter = id.clone();
    let registers = scan(&s.clone(), move || {
        let stored = s.stored()?;
        stored
            .map_meter(&s.ctx, &meter, |series| {
                let gaps = analyze(series.points, &series.rules, Some(now)).gaps;
                let last = series.points.last();
                json!({
                    "register": series.register,
                    "medium": series.medium.as_str(),
                    "unit": series.unit,
                    "interval_s": series.rules.interval.micros / SECOND,
                    "interval_source": series.rules.interval.source.as_str(),
                    "readings": series.points.len(),
                    "last_reading": last.map(|p| json!({
                        "ts": format_micros(p.ts),
                        "value": format_fixed(p.value, p.decimals),
                    })),
                    "open_gap": gaps.iter().find(|g| g.open).map(|g| json!({
                        "from": format_micros(g.from),
                        "missing": g.missing,
                        "duration_s": g.duration() / SECOND,
                    })),
                    "recent_gaps": gaps.iter().rev().filter(|g| !g.open).take(10).map(|g| json!({
                        "from": format_micros(g.from),
                        "to": format_micros(g.to),
                        "missing": g.missing,
                        "seq_missing": g.seq_missing,
                    })).collect::<Vec<_>>(),
                })
            })
            .map_err(ApiError::internal)
    })
    .await?;
    if registers.is_empty() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no readings of meter {id}"),
        });
    }
    Ok(Json(json!({ "meter_id": id, "registers": registers })).into_response())
}

/// A meter's measured readings (conflicting values left out), by time.
async fn get_readings(
    State(s): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    valid_meter(&id)?;
    let from = time_param(&p, "from")?.unwrap_or(i64::MIN);
    let to = time_param(&p, "to")?.unwrap_or(i64::MAX);
    let (offset, limit) = page(&p)?;
    let rows = scan(&s.clone(), move || {
        let stored = s.stored()?;
        let per_series = stored
            .map_meter(&s.ctx, &id, |series| {
                series
                    .points
                    .iter()
                    .filter(|p| p.ts >= from && p.ts < to)
                    .map(|p| {
                        json!({
                            "register": series.register,
                            "ts": format_micros(p.ts),
                            "value": format_fixed(p.value, p.decimals),
                            "seq": p.seq,
                            "received_at": format_micros(p.received_at),
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(ApiError::internal)?;
        Ok(per_series.into_iter().flatten().collect::<Vec<_>>())
    })
    .await?;
    let total = rows.len();
    let page_rows: Vec<_> = rows.into_iter().skip(offset).take(limit).collect();
    Ok(
        Json(json!({ "readings": page_rows, "page": page_json(offset, limit, total) }))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalRecord;
    use crate::service::Pipeline;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret";

    /// Two water meters, hourly on 2022-07-25; M-2 misses 04:00..07:00.
    pub(super) fn data_set(dir: &std::path::Path) {
        let mut store = Pipeline::for_test(dir, 1_000);
        let mut seq = 0;
        for h in 0..12 {
            for m in ["M-1", "M-2"] {
                if m == "M-2" && (4..7).contains(&h) {
                    continue;
                }
                seq += 1;
                let payload = format!(
                    r#"{{"meter_id":"{m}","medium":"water","unit":"m3","value":"{h}.250","ts":"2022-07-25T{h:02}:00:00Z","seq":{h}}}"#
                );
                store
                    .ingest(&JournalRecord {
                        seq,
                        received_at: 1_658_707_200_000_000 + h * 3_600_000_000,
                        topic: format!("meters/{m}"),
                        payload: payload.into_bytes().into(),
                    })
                    .unwrap();
            }
        }
        store.seal().unwrap();
    }

    pub(super) fn app(dir: &std::path::Path) -> Router {
        router(state(dir))
    }

    pub(super) fn state(dir: &std::path::Path) -> ApiState {
        ApiState {
            data: dir.to_owned(),
            ctx: Context::default(),
            token: TOKEN.into(),
            conn: Arc::default(),
            clock: Clock::manual(crate::time::parse_time("2022-07-25T12:30:00Z").unwrap()).0,
            live: Arc::default(),
            reports: Arc::default(),
            loads: Arc::default(),
            sinks: Arc::default(),
            health: ops::health_from_disk(dir),
            scans: ScanLimit::new(2),
        }
    }

    pub(super) async fn get(
        app: &Router,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, HeaderMap) {
        let mut req = HttpRequest::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    }

    pub(super) const AUTH: (&str, &str) = ("authorization", "Bearer s3cret");

    #[tokio::test]
    async fn every_endpoint_with_auth_errors_and_pages() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let app = app(tmp.path());

        assert_eq!(get(&app, "/healthz", &[]).await.0, StatusCode::OK);
        let (st, body, _) = get(&app, "/readyz", &[]).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not connected to the broker"), "{body}");

        // Auth.
        let q = "/api/v1/report?from=2022-07-25T02:00:00Z&to=2022-07-25T10:00:00Z";
        let (st, _, h) = get(&app, q, &[]).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
        let (st, _, _) = get(&app, q, &[("authorization", "Bearer wrong!")]).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);

        // The report, equal to the CLI's computation.
        let (st, body, _) = get(&app, q, &[AUTH]).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        let stored = StoredReadings::load(tmp.path()).unwrap();
        let window = Window {
            from: parse_time("2022-07-25T02:00:00Z").unwrap(),
            to: parse_time("2022-07-25T10:00:00Z").unwrap(),
        };
        let rep = report::outage_report(
            &stored,
            &Context::default(),
            window,
            &ReportFilter::default(),
        )
        .unwrap();
        let want = serde_json::to_value(report::report_json(&rep)).unwrap();
        assert_eq!(got["summary"], want["summary"]);
        assert_eq!(got["meters"], want["meters"]);
        assert_eq!(got["summary"]["bridged"], 1, "{got}");
        assert_eq!(got["page"]["total"], 2);

        // CSV by Accept header or format=csv; pages.
        let (st, body, h) = get(&app, q, &[AUTH, ("accept", "text/csv")]).await;
        assert_eq!(st, StatusCode::OK);
        assert!(h
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        assert_eq!(body, report::report_csv(&rep));
        let (_, body, _) = get(&app, &format!("{q}&limit=1&offset=1"), &[AUTH]).await;
        let paged: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(paged["meters"].as_array().unwrap().len(), 1);
        assert_eq!(paged["meters"][0]["meter_id"], "M-2");

        // Bad parameters: 400 naming the parameter.
        for (uri, needle) in [
            ("/api/v1/report?from=soon&to=2022-07-26", "parameter from"),
            ("/api/v1/report?from=2022-07-25", "parameter to: required"),
            (
                "/api/v1/report?from=2022-07-26&to=2022-07-25",
                "parameter to: must be after",
            ),
            (
                "/api/v1/report?from=2022-07-25&to=2022-07-26&medium=gas",
                "parameter medium",
            ),
            (
                "/api/v1/report?from=2022-07-25&to=2022-07-26&status=lost",
                "parameter status",
            ),
            (
                "/api/v1/report?from=2022-07-25&to=2022-07-26&format=xml",
                "parameter format",
            ),
            (
                "/api/v1/report?from=2022-07-25&to=2022-07-26&limit=0",
                "parameter limit",
            ),
            ("/api/v1/gaps?open=maybe", "parameter open"),
            ("/api/v1/meters/bad%20id", "parameter id"),
        ] {
            let (st, body, _) = get(&app, uri, &[AUTH]).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert!(body.contains(needle), "{uri}: {body}");
        }

        // Gaps: M-2's closed gap; open gaps until the clock (12:30).
        let (_, body, _) = get(&app, "/api/v1/gaps?meter=M-2", &[AUTH]).await;
        let gaps: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(gaps["gaps"][0]["from"], "2022-07-25T03:00:00Z", "{gaps}");
        assert_eq!(gaps["gaps"][0]["missing"], 3);
        let (_, body, _) = get(
            &app,
            "/api/v1/gaps?open=true&to=2022-07-25T18:00:00Z",
            &[AUTH],
        )
        .await;
        let open: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            open["page"]["total"], 2,
            "both meters silent since 11:00: {open}"
        );

        // Meters.
        let (st, body, _) = get(&app, "/api/v1/meters/M-2", &[AUTH]).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &m["registers"][0];
        assert_eq!(
            (r["register"].as_str(), r["readings"].as_u64()),
            (Some("total"), Some(9))
        );
        assert_eq!(r["last_reading"]["value"], "11.250");
        assert_eq!(r["interval_s"], 3600);
        assert_eq!(r["recent_gaps"][0]["missing"], 3);
        assert_eq!(
            get(&app, "/api/v1/meters/M-9", &[AUTH]).await.0,
            StatusCode::NOT_FOUND
        );
        let (_, body, _) = get(
            &app,
            "/api/v1/meters/M-1/readings?from=2022-07-25T05:00:00Z&to=2022-07-25T08:00:00Z&limit=2",
            &[AUTH],
        )
        .await;
        let rd: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(rd["page"]["total"], 3);
        assert_eq!(rd["readings"].as_array().unwrap().len(), 2);
        assert_eq!(rd["readings"][0]["value"], "5.250");

        // Metrics.
        let (st, body, _) = get(&app, "/metrics", &[]).await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            body.contains("gapless_messages_total{disposition=\"delivered\"} 21"),
            "{body}"
        );
        assert!(body.contains("gapless_mqtt_connected 0"), "{body}");
    }

    /// Reports of one window share one computation until a commit lands:
    /// filters give what the CLI gives, and new data is seen at once.
    #[tokio::test]
    async fn reports_of_a_window_share_rows_until_the_next_commit() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let app = app(tmp.path());
        let window = "from=2022-07-25T00:00:00Z&to=2022-07-26T00:00:00Z";
        let body = |b: &str| serde_json::from_str::<serde_json::Value>(b).unwrap();
        let cli = |medium: Option<Medium>, status: Option<Status>| {
            let stored = StoredReadings::load(tmp.path()).unwrap();
            let w = Window {
                from: parse_time("2022-07-25").unwrap(),
                to: parse_time("2022-07-26").unwrap(),
            };
            let rep = report::outage_report(
                &stored,
                &Context::default(),
                w,
                &ReportFilter { medium, status },
            )
            .unwrap();
            serde_json::to_value(report::report_json(&rep)).unwrap()
        };
        for (q, medium, status) in [
            ("", None, None),
            ("&medium=water", Some(Medium::Water), None),
            ("&medium=heat", Some(Medium::Heat), None),
            ("&status=open", None, Some(Status::Open)),
        ] {
            let (st, b, _) = get(&app, &format!("/api/v1/report?{window}{q}"), &[AUTH]).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            let got = body(&b);
            let want = cli(medium, status);
            assert_eq!(got["summary"], want["summary"], "{q}");
            assert_eq!(got["meters"], want["meters"], "{q}");
        }
        // A third meter is sealed (a new commit): the next report has it.
        let mut store = crate::service::Pipeline::for_test(tmp.path(), 1_000);
        store.ingest(&JournalRecord {
            seq: store.sealed_through() + 1,
            received_at: 1_658_707_200_000_000,
            topic: "meters/M-3".into(),
            payload: br#"{"meter_id":"M-3","medium":"heat","unit":"kWh","value":"1","ts":"2022-07-25T01:00:00Z"}"#
                .to_vec()
                .into(),
        })
.unwrap();
        store.seal().unwrap();
        drop(store);
        let (_, b, _) = get(&app, &format!("/api/v1/report?{window}"), &[AUTH]).await;
        assert_eq!(body(&b)["summary"]["meters"], 3, "{b}");
        assert_eq!(body(&b)["summary"], cli(None, None)["summary"]);
    }

    #[tokio::test]
    async fn coverage_adds_up_to_the_report_and_names_bad_parameters() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let app = app(tmp.path());
        let w = "from=2022-07-25T00:00:00Z&to=2022-07-25T12:00:00Z";
        let (st, _, _) = get(&app, &format!("/api/v1/coverage?{w}"), &[]).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);

        let (st, body, _) = get(&app, &format!("/api/v1/coverage?{w}&buckets=4"), &[AUTH]).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let cov: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(cov["buckets"], 4);
        assert_eq!(cov["edges"][1], "2022-07-25T03:00:00Z");
        assert_eq!(cov["page"]["total"], 2);
        // M-2 misses 04:00, 05:00 and 06:00: the second bucket [03, 06) has
        // one of three, the third [06, 09) two of three.
        let m2 = &cov["series"][1];
        assert_eq!(m2["meter_id"], "M-2");
        assert_eq!(m2["received_by_bucket"], json!([3, 1, 2, 3]));
        assert_eq!(m2["expected_by_bucket"], json!([3, 3, 3, 3]));
        assert_eq!(cov["series"][0]["received_by_bucket"], json!([3, 3, 3, 3]));
        // Each series' totals are its report row's.
        let (_, body, _) = get(&app, &format!("/api/v1/report?{w}"), &[AUTH]).await;
        let rep: serde_json::Value = serde_json::from_str(&body).unwrap();
        for (c, r) in cov["series"]
            .as_array()
            .unwrap()
            .iter()
            .zip(rep["meters"].as_array().unwrap())
        {
            assert_eq!(
                (&c["meter_id"], &c["expected"], &c["received"], &c["status"]),
                (&r["meter_id"], &r["expected"], &r["received"], &r["status"])
            );
        }
        // Pages and the medium filter.
        let (_, body, _) = get(
            &app,
            &format!("/api/v1/coverage?{w}&limit=1&offset=1&medium=water"),
            &[AUTH],
        )
        .await;
        let paged: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(paged["series"].as_array().unwrap().len(), 1);
        assert_eq!(paged["series"][0]["meter_id"], "M-2");
        assert_eq!(paged["buckets"], DEFAULT_BUCKETS);
        let (_, body, _) = get(&app, &format!("/api/v1/coverage?{w}&medium=heat"), &[AUTH]).await;
        let heat: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(heat["page"]["total"], 0, "{heat}");

        for (q, needle) in [
            ("to=2022-07-26", "parameter from: required"),
            (
                "from=2022-07-26&to=2022-07-25",
                "parameter to: must be after",
            ),
            (
                &format!("{w}&buckets=0") as &str,
                "parameter buckets: must be 1..=1000",
            ),
            (
                &format!("{w}&buckets=-3"),
                r#"parameter buckets: \"-3\" is not"#,
            ),
            (&format!("{w}&buckets=50000"), "parameter buckets"),
            (
                "from=2022-07-25T00:00:00Z&to=2022-07-25T00:00:05Z&buckets=6",
                "parameter buckets: 6 buckets would be shorter than a second",
            ),
            (&format!("{w}&medium=gas"), "parameter medium"),
            (
                &format!("{w}&buckets=1000&limit=2000"),
                "parameter limit: limit × buckets",
            ),
            (&format!("{w}&offset=x"), "parameter offset"),
        ] {
            let uri = format!("/api/v1/coverage?{q}");
            let (st, body, _) = get(&app, &uri, &[AUTH]).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert!(body.contains(needle), "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn the_dashboard_is_one_page_whose_script_the_csp_allows() {
        let tmp = tempfile::tempdir().unwrap();
        let app = app(tmp.path());
        let (st, body, h) = get(&app, "/", &[]).await;
        assert_eq!(st, StatusCode::OK);
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(body, DASHBOARD_HTML);
        // One script and one style, each allowed by its hash; nothing else.
        assert_eq!(body.matches("<script").count(), 1);
        assert_eq!(body.matches("<style").count(), 1);
        let csp = h["content-security-policy"].to_str().unwrap();
        let script = &body[body.find("<script>").unwrap() + 8..body.find("</script>").unwrap()];
        let digest = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script))
        };
        assert!(
            csp.contains(&format!("script-src 'sha256-{digest}';")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // No other origin: no http(s) URL the page would load from.
        assert!(!body.contains("http://") && !body.contains("https://"));
        // The token goes in the Authorization header, never in a URL.
        assert!(body.contains(r#""Authorization": "Bearer " + token"#));
        assert!(!body.contains("token=\" +") && !body.contains("set(\"token\""));
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}
