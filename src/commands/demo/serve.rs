//! `gapless demo --serve`: after the run, the API and the dashboard
//! (`api::router`, as `serve --http` serves them) on the demo's data, with
//! a token made up for this run, until Ctrl-C or SIGTERM. It prints the
//! dashboard's link with the token and the outage window in the fragment
//! (never sent to the server), so one click shows the outage.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{router, ApiState};
use crate::continuity::window::Window;
use crate::continuity::Context;
use crate::time::format_micros;
use crate::time::Clock;

/// Where `--serve` listens without `--http`.
pub(crate) const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// A bearer token: 128 random bits, hex.
fn new_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the API token")?;
    Ok(hex::encode(bytes))
}

/// Binds `--http` (HOST:PORT; port 0 picks a free one).
pub async fn bind(http: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("--http {http}"))
}

/// Serves `data` on `listener` until a signal; `group` is the one whose
/// certificate the printed example fetches.
pub async fn serve(
    listener: tokio::net::TcpListener,
    data: &Path,
    ctx: Context,
    clock: Clock,
    outage: Window,
    group: &str,
) -> anyhow::Result<()> {
    let token = new_token()?;
    let state = ApiState {
        data: data.to_owned(),
        ctx,
        token: token.as_str().into(),
        conn: Arc::default(),
        clock,
        live: Arc::default(),
        reports: Arc::default(),
        loads: Arc::default(),
        sinks: Arc::default(),
        health: Arc::new(crate::health::Health::new(std::time::Duration::from_secs(
            crate::health::DEFAULT_STALL_LIMIT_S,
        ))),
        scans: crate::api::ScanLimit::new(crate::config::DEFAULT_MAX_SCANS),
    };
    let addr = listener.local_addr()?;
    let mut stop = crate::service::shutdown_on_signals()?;
    let (from, to) = (format_micros(outage.from), format_micros(outage.to));
    let base = format!("http://{addr}");
    println!(
        "\nServing the API and the dashboard on the demo's data at {base} (API token {token}); Ctrl-C stops.\n\
         The outage on the dashboard:\n  {base}/#token={token}&from={from}&to={to}\n\
         The report, as JSON:\n  curl -H 'Authorization: Bearer {token}' '{base}/api/v1/report?from={from}&to={to}'\n\
         The outage certificate of group {group} (printable HTML):\n  curl -H 'Authorization: Bearer {token}' \
         '{base}/api/v1/certificate?from={from}&to={to}&group={group}' > certificate.html"
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("serving the API")?;
    eprintln!("demo: stopped serving");
    Ok(())
}
