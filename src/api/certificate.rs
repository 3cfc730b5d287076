//! `GET /api/v1/certificate`: the outage certificate (one printable HTML
//! page per registry group, `report::certificate`) for the window, with
//! the report's parameters plus `group`.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{filter_params, inline_hash, scan, window_param, ApiError, ApiState, Params};
use crate::report::certificate::{CertificateError, CertificateRequest};

pub(super) async fn get_certificate(
    State(s): State<ApiState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let window = window_param(&p)?;
    let req = CertificateRequest {
        filter: filter_params(&p)?,
        group: p.get("group").cloned(),
        ..CertificateRequest::default()
    };
    let now = s.clock.now_micros();
    // A lake scan like the report's: under the same limit.
    let st = s.clone();
    let html = scan(&s, move || {
        let stored = st.stored()?;
        crate::report::certificate_document(&st.data, &stored, &st.ctx, window, req, now).map_err(
            |e| match e {
                CertificateError::NoSuchGroup(_) | CertificateError::TooLarge { .. } => {
                    ApiError::bad("group", e)
                }
                CertificateError::Window(_) => ApiError::bad("to", e),
                e => ApiError::internal(e),
            },
        )
    })
    .await?;
    // Its one style and nothing else: no script, no request, no frame.
    let csp = format!(
        "default-src 'none'; style-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(&html, "style")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::REFERRER_POLICY, "no-referrer".into()),
            (header::CACHE_CONTROL, "no-store".into()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        ],
        html,
    )
        .into_response())
}
