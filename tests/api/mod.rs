//! The HTTP API of the real service over the real broker, checked against
//! `schemas/openapi.yaml` and against the CLI report.

use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "test-token-123";

/// The paths `schemas/openapi.yaml` documents.
fn documented_paths() -> Vec<String> {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.yaml"))
            .unwrap();
    let mut in_paths = false;
    let mut out = Vec::new();
    for line in yaml.lines() {
        if line == "paths:" {
            in_paths = true;
        } else if in_paths && line.starts_with("  /") && line.ends_with(':') {
            out.push(line.trim().trim_end_matches(':').to_owned());
        } else if in_paths && !line.starts_with(' ') && !line.is_empty() {
            in_paths = false;
        }
    }
    out
}

#[test]
fn the_api_serves_what_openapi_documents_and_matches_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");

    // Without a token, --http is refused at start.
    let d = data.display().to_string();
    let (code, _, err) = run_gapless(
        &[
            "serve",
            "--broker",
            &broker.url(),
            "--data",
            &d,
            "--http",
            &addr,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("GAPLESS_API_TOKEN"), "{err}");

    // The service compacts the date once it has two files (its readings
    // come in two batches): the API and the CLI read the compacted run.
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &[
            "--http",
            &addr,
            "--compact-every",
            "0.3",
            "--compact-grace",
            "0",
        ],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    let msgs: Vec<(String, Vec<u8>)> = (0..24)
        .filter(|h| !(8..12).contains(h))
        .map(|h| {
            let ts = chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let p = format!(
                r#"{{"meter_id":"API-1","medium":"water","unit":"m3","value":"{h}.5","ts":"{ts}"}}"#
            );
            ("meters/api".to_string(), p.into_bytes())
        })
        .collect();
    publish_all(broker.port, &msgs[..10]);
    g.wait_readings(10, Duration::from_secs(60));
    publish_all(broker.port, &msgs[10..]);
    g.wait_readings(msgs.len() as u64, Duration::from_secs(60));
    wait_compacted(&data, "2022-07-25", Duration::from_secs(60));
    // The compacted file is in place a moment before its round ends and is
    // counted.
    wait_for(
        "a compaction counted in /metrics",
        Duration::from_secs(10),
        || {
            let (_, metrics) = http_get(port, "/metrics", None);
            let done: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("gapless_compactions_total{result=\"done\"} "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (done >= 1).then_some(())
        },
    );

    assert_eq!(http_get(port, "/healthz", None).0, 200);
    assert_eq!(
        http_get(port, "/readyz", None).0,
        200,
        "connected, journal and ledger writable"
    );
    let q = "/api/v1/report?from=2022-07-25&to=2022-07-25T20:00:00Z";
    assert_eq!(http_get(port, q, None).0, 401);
    let (status, body) = http_get(port, q, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (code, out, err) = run_gapless(
        &[
            "report",
            "--data",
            &d,
            "--from",
            "2022-07-25",
            "--to",
            "2022-07-25T20:00:00Z",
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let cli: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(api["summary"], cli["summary"]);
    assert_eq!(api["meters"], cli["meters"]);
    assert_eq!(api["meters"][0]["status"], "bridged");

    // Every documented path is served (with a token where needed), and
    // nothing undocumented answers.
    let documented = documented_paths();
    assert_eq!(documented.len(), 11, "{documented:?}");
    for path in documented {
        let concrete = path.replace("{id}", "API-1");
        let uri = match concrete.as_str() {
            "/api/v1/report" => q.to_string(),
            "/api/v1/coverage" => q.replace("/report", "/coverage"),
            "/api/v1/certificate" => q.replace("/report", "/certificate"),
            _ => concrete,
        };
        let (status, body) = http_get(port, &uri, Some(TOKEN));
        assert_eq!(status, 200, "{uri}: {body}");
    }
    assert_eq!(http_get(port, "/api/v1/nothing", Some(TOKEN)).0, 404);
    let (_, metrics) = http_get(port, "/metrics", None);
    assert!(metrics.contains("gapless_mqtt_connected 1"), "{metrics}");
    for m in [
        "gapless_meters_known ",
        "gapless_open_gaps ",
        "gapless_open_alerts{kind=\"meter_silent\"} ",
        "gapless_webhook_given_up_total 0",
        "gapless_compactions_total{result=\"failed\"} 0",
    ] {
        assert!(metrics.contains(m), "{m} in {metrics}");
    }
    assert_eq!(g.terminate(), Some(0));
}
