//! Alerts as sealed (the `alerts` table).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{page, page_json, time_param, Params};
use super::{blocking, ApiError, ApiState};

/// Alerts as sealed (what device teams were told), newest first.
/// `open=true`: only conditions not yet closed (`meter_silent`,
/// `meter_never_seen`, `group_silent`, `reject_burst`); `kind`, `subject`,
/// `from`/`to` (raised at) filter.
pub(super) async fn get_alerts(
    State(s): State<ApiState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
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
