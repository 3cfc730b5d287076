//! For operations: `/readyz` (the truth about every stage) and `/metrics`
//! (Prometheus text from counters in memory: a scrape reads no file, so it
//! costs the same with a day or a year of history), and the bound on
//! concurrent lake scans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{blocking, ApiState};
use crate::health::{BOUNDS, STAGES};

/// What a 429 tells the client to wait (seconds): a scan of the lake takes
/// about this long.
pub(crate) const RETRY_AFTER_S: u64 = 1;

/// `/api/v1` requests in progress at most (a request waiting for another's
/// report of the same window counts): each holds a connection and some
/// memory. Beyond, 429 at once. Health and metrics are not counted.
pub(crate) const MAX_API_REQUESTS: usize = 64;

/// At most `limit` lake scans (report, gaps, coverage, meter, readings) at
/// once. A scan reads Parquet on the blocking pool and holds its rows in
/// memory; the limit keeps a burst of requests from taking every core (and
/// the memory) from ingest. An extra request is answered 429 at once. Also
/// bounds the `/api/v1` requests in progress ([`MAX_API_REQUESTS`]).
#[derive(Debug)]
pub(crate) struct ScanLimit {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
    requests: Arc<tokio::sync::Semaphore>,
}

impl ScanLimit {
    pub fn new(limit: usize) -> Arc<ScanLimit> {
        let limit = limit.max(1);
        Arc::new(ScanLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            requests: Arc::new(tokio::sync::Semaphore::new(MAX_API_REQUESTS)),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A permit if a scan may start now.
    pub(crate) fn try_acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// Answers 429 when [`MAX_API_REQUESTS`] `/api/v1` requests are in
/// progress; else runs the request holding one permit.
pub(super) async fn limit_requests(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = s.scans.requests.clone().try_acquire_owned() else {
        s.health.bound_hit(crate::health::Bound::ApiScans);
        return super::ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{MAX_API_REQUESTS} API requests are in progress; retry in {RETRY_AFTER_S} s"
            ),
        }
        .into_response();
    };
    next.run(req).await
}

/// Ready: no stage dead, failing or stalled; connected to the broker; the
/// journal and ledger directories writable (probed on the blocking pool).
/// 503 names each failing stage.
pub(super) async fn get_ready(State(s): State<ApiState>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let mut failing: Vec<&'static str> = Vec::new();
    for p in s.health.problems() {
        failing.push(p.stage.as_str());
        problems.push(p.to_string());
    }
    if !s.conn.connected.load(Ordering::Relaxed) {
        failing.push("mqtt");
        problems.push("mqtt: not connected to the broker".to_string());
    }
    let data = s.data.clone();
    let probes = blocking(move || {
        let mut out = Vec::new();
        for dir in [crate::layout::JOURNAL_DIR, crate::layout::LEDGER_DIR] {
            let probe = data.join(dir).join(".ready-probe");
            match std::fs::write(&probe, b"ok") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => out.push(format!("{dir} not writable: {e}")),
            }
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|_| vec!["the readiness probe failed".to_string()]);
    if !probes.is_empty() {
        failing.push("journal");
        problems.extend(probes);
    }
    failing.dedup();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "failing": failing, "problems": problems })),
        )
            .into_response()
    }
}

/// Prometheus text exposition, from memory only.
pub(super) async fn get_metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::with_capacity(8 * 1024);
    let mut metric = |name: &str, help: &str, kind: &str, lines: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let h = &s.health;
    let sealed = &h.sealed;
    metric(
        "gapless_messages_total",
        "Messages sealed, by disposition (delivered = stored + duplicate + rejected).",
        "counter",
        &[
            ("{disposition=\"delivered\"}", g(&sealed.delivered)),
            ("{disposition=\"stored\"}", g(&sealed.stored)),
            ("{disposition=\"duplicate\"}", g(&sealed.duplicate)),
            ("{disposition=\"rejected\"}", g(&sealed.rejected)),
        ],
    );
    metric(
        "gapless_readings_total",
        "Readings sealed, by outcome.",
        "counter",
        &[
            ("{outcome=\"stored\"}", g(&sealed.readings_stored)),
            ("{outcome=\"duplicate\"}", g(&sealed.readings_duplicate)),
            ("{outcome=\"conflict\"}", g(&sealed.readings_conflict)),
        ],
    );
    let durable = g(&h.durable);
    metric(
        "gapless_journal_pending",
        "Journaled messages not yet sealed in Parquet (the store's lag).",
        "gauge",
        &[("", durable.saturating_sub(g(&sealed.through)))],
    );
    metric(
        "gapless_journal_durable_receipt",
        "The last receipt the journal made durable (acks follow it).",
        "gauge",
        &[("", durable)],
    );
    metric(
        "gapless_files_sealed_total",
        "Parquet files sealed by the commit log.",
        "counter",
        &[("", g(&sealed.files))],
    );
    metric(
        "gapless_commits_total",
        "Commits in the commit log.",
        "counter",
        &[("", g(&sealed.commits))],
    );
    metric(
        "gapless_mqtt_connected",
        "1 while connected to the broker.",
        "gauge",
        &[("", u64::from(s.conn.connected.load(Ordering::Relaxed)))],
    );
    let live = &s.live;
    metric(
        "gapless_meters_known",
        "Meters tracked for silence (seen, or in the registry).",
        "gauge",
        &[("", g(&live.meters_known))],
    );
    metric(
        "gapless_open_gaps",
        "Series silent past their gap threshold now (recounted every 10 s).",
        "gauge",
        &[("", g(&live.open_gaps))],
    );
    metric(
        "gapless_ingest_series",
        "Series (meter, register) the ingest stage holds state for.",
        "gauge",
        &[("", g(&live.series))],
    );
    metric(
        "gapless_ingest_state_bytes",
        "Memory of the ingest stage's state (duplicates, continuity, deadlines), approximate.",
        "gauge",
        &[("", g(&live.state_bytes))],
    );
    metric(
        "gapless_ingest_lookups_total",
        "Late readings classified by a lookup in the sealed files since start.",
        "counter",
        &[("", g(&live.lookups))],
    );
    metric(
        "gapless_open_alerts",
        "Alert conditions open, by kind.",
        "gauge",
        &[
            ("{kind=\"meter_silent\"}", g(&live.open_meter_silent)),
            (
                "{kind=\"meter_never_seen\"}",
                g(&live.open_meter_never_seen),
            ),
            ("{kind=\"group_silent\"}", g(&live.open_group_silent)),
            ("{kind=\"reject_burst\"}", g(&live.open_reject_burst)),
        ],
    );
    metric(
        "gapless_alerts_sealed_total",
        "Alerts sealed into the alerts table since start.",
        "counter",
        &[("", g(&live.alerts_sealed))],
    );
    metric(
        "gapless_compactions_total",
        "Dates compacted into one sorted readings file since start, and compactions that failed (retried next round).",
        "counter",
        &[
            ("{result=\"done\"}", g(&live.compactions_done)),
            ("{result=\"failed\"}", g(&live.compactions_failed)),
        ],
    );
    metric(
        "gapless_witness_failures_total",
        "Witness requests that failed since start (serve --witness; each retried with backoff).",
        "counter",
        &[("", g(&live.witness_failures))],
    );
    metric(
        "gapless_witness_cosigned_size",
        "The newest ledger tree size that every witness has cosigned.",
        "gauge",
        &[("", g(&live.witness_cosigned_size))],
    );
    let sk = &s.sinks;
    metric(
        "gapless_alerts_delivered_total",
        "Alerts delivered since start, by sink.",
        "counter",
        &[
            ("{sink=\"mqtt\"}", g(&sk.mqtt_delivered)),
            ("{sink=\"webhook\"}", g(&sk.webhook_delivered)),
        ],
    );
    metric(
        "gapless_webhook_given_up_total",
        "Alerts the webhook gave up on (attempts exhausted or queue full).",
        "counter",
        &[("", g(&sk.webhook_given_up))],
    );
    metric(
        "gapless_webhook_failed_attempts_total",
        "Webhook attempts that failed (each retried until given up).",
        "counter",
        &[("", g(&sk.webhook_failed_attempts))],
    );
    metric(
        "gapless_webhook_queue",
        "Alerts waiting for the webhook.",
        "gauge",
        &[("", g(&sk.webhook_queued))],
    );
    metric(
        "gapless_mqtt_delivered_total",
        "Messages delivered by the broker since start (before journaling).",
        "counter",
        &[("", g(&s.conn.delivered))],
    );
    metric(
        "gapless_mqtt_acked_total",
        "Messages acknowledged to the broker since start (each durable in the journal first).",
        "counter",
        &[("", g(&s.conn.acked))],
    );
    let bounds: Vec<(String, u64)> = BOUNDS
        .iter()
        .map(|b| (format!("{{bound=\"{}\"}}", b.as_str()), h.bound_hits(*b)))
        .collect();
    let bounds: Vec<(&str, u64)> = bounds.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "gapless_backpressure_total",
        "Times a bound was reached since start; the stage before it waited (nothing is dropped; api_scans: a 429).",
        "counter",
        &bounds,
    );
    let problems = h.problems();
    let stages: Vec<(String, u64, u64)> = STAGES
        .iter()
        .map(|st| {
            (
                format!("{{stage=\"{}\"}}", st.as_str()),
                u64::from(!problems.iter().any(|p| p.stage == *st)),
                h.beat_age(*st).as_secs(),
            )
        })
        .collect();
    let up: Vec<(&str, u64)> = stages.iter().map(|(l, u, _)| (l.as_str(), *u)).collect();
    let age: Vec<(&str, u64)> = stages.iter().map(|(l, _, a)| (l.as_str(), *a)).collect();
    metric(
        "gapless_stage_up",
        "1 while the stage is neither dead, failing nor stalled (see /readyz).",
        "gauge",
        &up,
    );
    metric(
        "gapless_stage_heartbeat_age_seconds",
        "Seconds since the stage's last heartbeat (an idle stage beats when it starts waiting).",
        "gauge",
        &age,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Health with the sealed counters of the commit log in `dir`, as the
/// service publishes them at start (for tests of the router alone).
#[cfg(test)]
pub(super) fn health_from_disk(dir: &std::path::Path) -> Arc<crate::health::Health> {
    let h = crate::health::Health::default();
    let manifests = crate::store::commit::read_all(dir).unwrap_or_default();
    for m in &manifests {
        h.sealed.add_commit(m.files.len());
    }
    if let Some(m) = manifests.last() {
        m.totals.publish(&h.sealed, m.last_seq);
        h.durable.store(m.last_seq, Ordering::Relaxed);
    }
    Arc::new(h)
}

#[cfg(test)]
mod tests {
    use super::super::router;
    use super::super::tests::{data_set, get, state, AUTH};
    use crate::health::Stage;
    use axum::http::StatusCode;

    /// A dead stage makes /readyz 503 naming it, and /metrics says which.
    #[tokio::test]
    async fn readyz_names_a_dead_stage() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let st = state(tmp.path());
        st.conn
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for s in crate::health::STAGES {
            st.health.idle(s);
        }
        std::fs::create_dir_all(tmp.path().join(crate::layout::JOURNAL_DIR)).unwrap();
        let app = router(st.clone());
        let (code, body, _) = get(&app, "/readyz", &[]).await;
        assert_eq!(code, StatusCode::OK, "{body}");

        st.health
            .die(Stage::Store, "panicked: fault injection: seal-panic");
        let (code, body, _) = get(&app, "/readyz", &[]).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["failing"], serde_json::json!(["store"]), "{v}");
        assert!(
            v["problems"][0]
                .as_str()
                .unwrap()
                .starts_with("store: dead: panicked"),
            "{v}"
        );
        let (_, body, _) = get(&app, "/metrics", &[]).await;
        assert!(
            body.contains("gapless_stage_up{stage=\"store\"} 0"),
            "{body}"
        );
        assert!(
            body.contains("gapless_stage_up{stage=\"journal\"} 1"),
            "{body}"
        );
    }

    /// With every scan permit taken, a report is 429 with Retry-After at
    /// once; a permit freed, the same request is served.
    #[tokio::test]
    async fn a_scan_beyond_the_limit_is_429_with_retry_after() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let mut st = state(tmp.path());
        st.scans = super::ScanLimit::new(1);
        let app = router(st.clone());
        let q = "/api/v1/report?from=2022-07-25T00:00:00Z&to=2022-07-26T00:00:00Z";
        let held = st.scans.try_acquire().unwrap();
        for uri in [q, "/api/v1/gaps", "/api/v1/meters/M-1"] {
            let (code, body, h) = get(&app, uri, &[AUTH]).await;
            assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{uri}: {body}");
            assert_eq!(h.get("retry-after").unwrap(), "1", "{uri}");
            assert!(body.contains("--max-scans"), "{body}");
        }
        let (_, body, _) = get(&app, "/metrics", &[]).await;
        assert!(
            body.contains("gapless_backpressure_total{bound=\"api_scans\"} 3"),
            "{body}"
        );
        drop(held);
        let (code, body, _) = get(&app, q, &[AUTH]).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    /// A lake scan runs off the async worker: on a runtime with one
    /// thread, a task beside a 300 ms scan still runs every 10 ms (the MQTT
    /// keep-alive and the acks are such tasks). Run on the worker, the
    /// scan would hold it, and the ticker would not tick at all meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_scan_leaves_the_async_worker_free() {
        let tmp = tempfile::tempdir().unwrap();
        let st = state(tmp.path());
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(10));
            loop {
                every.tick().await;
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        super::super::scan(&st, || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(())
        })
        .await
        .unwrap();
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        ticker.abort();
        assert!(during >= 10, "the ticker ticked {during} times in 300 ms");
    }

    /// With MAX_API_REQUESTS in progress, one more /api/v1 request is 429;
    /// health and metrics are still answered.
    #[tokio::test]
    async fn api_requests_in_progress_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let st = state(tmp.path());
        let app = router(st.clone());
        let held: Vec<_> = (0..super::MAX_API_REQUESTS)
            .map(|_| st.scans.requests.clone().try_acquire_owned().unwrap())
            .collect();
        let (code, body, h) = get(&app, "/api/v1/gaps", &[AUTH]).await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(h.get("retry-after").unwrap(), "1");
        assert_eq!(get(&app, "/metrics", &[]).await.0, StatusCode::OK);
        assert_eq!(get(&app, "/healthz", &[]).await.0, StatusCode::OK);
        drop(held);
        assert_eq!(get(&app, "/api/v1/gaps", &[AUTH]).await.0, StatusCode::OK);
    }

    /// /metrics reads no file: with the data directory gone it answers the
    /// same counters (the O(1) scrape; its cost is measured by
    /// `tools/metrics-scrape`).
    #[tokio::test]
    async fn metrics_come_from_memory_not_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        data_set(tmp.path());
        let app = router(state(tmp.path()));
        let (_, before, _) = get(&app, "/metrics", &[]).await;
        assert!(
            before.contains("gapless_messages_total{disposition=\"delivered\"} 21"),
            "{before}"
        );
        std::fs::remove_dir_all(tmp.path()).unwrap();
        let (code, after, _) = get(&app, "/metrics", &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(before, after);
    }
}
