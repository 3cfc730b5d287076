//! The outage report, the gap listing and the coverage grid over what is
//! sealed, and the cache of the last report window's rows.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{
    filter_params, medium_param, page, page_json, time_param, window_param, Params,
};
use super::{blocking, scan, ApiError, ApiState, DEFAULT_BUCKETS, MAX_COVERAGE_CELLS};
use crate::continuity::window::Window;
use crate::report::coverage::{self, Buckets};
use crate::report::{self, GapFilter};

/// The rows of the last report window asked for, with the state of the
/// commit log they were computed from: any report of that window (another
/// medium, status or page; the dashboard asks for ten) is made from them
/// until a new commit lands. One computation at a time: concurrent
/// requests for the window wait for it rather than scan the data again.
#[derive(Default)]
pub(crate) struct ReportCache(tokio::sync::Mutex<Option<CachedRows>>);

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
    pub(super) async fn rows(
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

pub(super) async fn get_report(
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

pub(super) async fn get_gaps(
    State(s): State<ApiState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
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
pub(super) async fn get_coverage(
    State(s): State<ApiState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
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
