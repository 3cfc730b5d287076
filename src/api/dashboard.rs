//! The dashboard: one self-contained page (no network but this API),
//! under a Content-Security-Policy that lets only its own script and
//! style run.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The dashboard: one self-contained page (no network but this API).
pub(super) const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The SHA-256 of the text of the page's one `<tag>` element, as CSP wants
/// it (`'sha256-…'`): only that script and that style run.
pub(super) fn inline_hash(html: &str, tag: &str) -> String {
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
pub(super) static DASHBOARD_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(DASHBOARD_HTML, "script"),
        inline_hash(DASHBOARD_HTML, "style"),
    )
});

pub(super) async fn get_dashboard() -> Response {
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
