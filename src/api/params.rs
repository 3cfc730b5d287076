//! The query parameters the handlers share, each checked with an error
//! naming it.

use std::collections::HashMap;

use axum::extract::Query;
use serde_json::json;

use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::continuity::window::{Status, Window};
use crate::reading::Medium;
use crate::report::ReportFilter;
use crate::time::parse_time;

pub(super) type Params = Query<HashMap<String, String>>;

pub(super) fn time_param(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name)
        .map(|v| parse_time(v).map_err(|e| ApiError::bad(name, e)))
        .transpose()
}

pub(super) fn required_time(p: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    time_param(p, name)?.ok_or_else(|| ApiError::bad(name, "required (RFC 3339 or YYYY-MM-DD)"))
}

/// `from` and `to`: the window `[from, to)`.
pub(super) fn window_param(p: &HashMap<String, String>) -> Result<Window, ApiError> {
    let window = Window {
        from: required_time(p, "from")?,
        to: required_time(p, "to")?,
    };
    if window.to <= window.from {
        return Err(ApiError::bad("to", "must be after from"));
    }
    Ok(window)
}

pub(super) fn medium_param(p: &HashMap<String, String>) -> Result<Option<Medium>, ApiError> {
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
pub(super) fn page(p: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
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

pub(super) fn page_json(offset: usize, limit: usize, total: usize) -> serde_json::Value {
    json!({ "offset": offset, "limit": limit, "total": total })
}

/// `medium` and `status`: which rows a report (or a certificate) lists.
pub(super) fn filter_params(p: &HashMap<String, String>) -> Result<ReportFilter, ApiError> {
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
