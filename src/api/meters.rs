//! One meter: its registers' state, and its readings.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{page, page_json, time_param, Params};
use super::{scan, ApiError, ApiState};
use crate::continuity::series::analyze;
use crate::continuity::SECOND;
use crate::reading::format_fixed;
use crate::time::format_micros;

fn valid_meter(id: &str) -> Result<(), ApiError> {
    crate::reading::MeterId::try_new(id)
        .map(|_| ())
        .map_err(|e| ApiError::bad("id", e))
}

/// A meter's state as sealed: per register its interval and source, last
/// reading, the open gap (until now) and its most recent gaps.
pub(super) async fn get_meter(
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
pub(super) async fn get_readings(
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
