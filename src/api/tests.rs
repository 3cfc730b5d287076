//! The API's tests, and the helpers the other API modules' tests use.

use axum::http::HeaderMap;
use serde_json::json;

use super::dashboard::DASHBOARD_HTML;
use super::*;
use crate::continuity::window::{Status, Window};
use crate::journal::JournalRecord;
use crate::reading::Medium;
use crate::report::ReportFilter;
use crate::service::Pipeline;
use crate::time::parse_time;
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
