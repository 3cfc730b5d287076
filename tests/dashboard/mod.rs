//! The dashboard (`GET /`) in a real headless browser (Debian's
//! `chromium`) against the real service over the real broker: the numbers
//! the page shows are the ones `/api/v1/report`, `/api/v1/gaps` and
//! `/api/v1/coverage` return for the same window, and a screenshot is kept
//! under the target directory's `test-artifacts/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "dash-token-7f3a";
const FROM: &str = "2022-07-25T00:00:00Z";
const TO: &str = "2022-07-26T00:00:00Z";
/// The page's coverage buckets for a one-day window (hourly).
const DAY_BUCKETS: u32 = 24;

/// The browser: `GAPLESS_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("GAPLESS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "the dashboard test runs the page in a headless browser, and {} does not exist. \
         Install Debian's Chromium: `apt-get install -y --no-install-recommends chromium` \
         (or point GAPLESS_CHROMIUM at a Chromium or Chrome binary).",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=PATH`) and a private profile; returns its stdout.
fn run_chromium(profile: &Path, mode: &str, url: &str) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--window-size=1400,1500",
        // Virtual time stands still while requests are pending: the
        // page has loaded everything before the DOM is taken.
        "--virtual-time-budget=20000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(mode)
    .arg(url);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(120), &format!("chromium {mode}"));
    assert!(
        status.success(),
        "chromium {mode} failed ({status}):\n{err}"
    );
    out
}

/// The attribute `attr` of the element with `id="id"` in serialised HTML.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!(" id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    attr_in(&dom[start..end], attr)
}

fn attr_in(tag: &str, attr: &str) -> Option<String> {
    let key = format!(" {attr}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(tag[i..i + j].replace("&amp;", "&"))
}

/// A number the page shows in `data-value` of element `id`.
fn shown(dom: &str, id: &str) -> u64 {
    let v = attr_of(dom, id, "data-value")
        .unwrap_or_else(|| panic!("the page has no number #{id}:\n{}", excerpt(dom)));
    v.parse()
        .unwrap_or_else(|_| panic!("#{id} shows {v:?}, not a count"))
}

/// (meter, register, status) of every row of the attention list.
fn attention_rows(dom: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("<tr data-meter=\"") {
        let end = i + rest[i..].find('>').unwrap();
        let tag = &rest[i..end];
        out.push((
            attr_in(tag, "data-meter").unwrap(),
            attr_in(tag, "data-register").unwrap(),
            attr_in(tag, "data-status").unwrap(),
        ));
        rest = &rest[end..];
    }
    out
}

/// The page's message box and state, for failure messages.
fn excerpt(dom: &str) -> String {
    let state = dom
        .find("<body")
        .and_then(|i| attr_in(&dom[i..i + dom[i..].find('>').unwrap_or(0)], "data-state"));
    let message = dom
        .find("id=\"message\"")
        .map(|i| &dom[i..(i + 400).min(dom.len())])
        .unwrap_or("");
    format!("state {state:?}; {message}")
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path, Some(TOKEN));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Width and height from a PNG's header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_dashboard_in_a_browser_shows_what_the_api_reports() {
    chromium(); // fail first, and clearly, without a browser
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Alerts judged at once: the 2022 meters are silent by today's clock,
    // so the page has open alerts to show.
    let cfg = tmp.path().join("gapless.toml");
    std::fs::write(&cfg, "[alerts]\nstartup_grace_s = 0\n").unwrap();
    let cfg = cfg.display().to_string();
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &["--http", &addr, "--config", &cfg],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    let msgs = known_day(false);
    publish_all(broker.port, &msgs);
    g.wait_readings(msgs.len() as u64, Duration::from_secs(120));
    let open_alerts = wait_for("an open alert per meter", Duration::from_secs(30), || {
        let a = get_json(port, "/api/v1/alerts?open=true");
        (a["page"]["total"].as_u64() == Some(7)).then_some(a)
    });

    // What the API says for the window.
    let window = format!("from={FROM}&to={TO}");
    let report = get_json(port, &format!("/api/v1/report?{window}&limit=10000"));
    let summary = &report["summary"];
    let rows = report["meters"].as_array().unwrap();
    assert_eq!(report["page"]["total"].as_u64(), Some(rows.len() as u64));
    let statuses: BTreeMap<&str, &str> = rows
        .iter()
        .map(|r| {
            (
                r["meter_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("H-1", "open"),
            ("H-2", "silent"),
            ("H-3", "anomalous"),
            ("HKV-1", "complete"),
            ("W-1", "complete"),
            ("W-2", "bridged"),
            ("WW-1", "complete"),
        ]),
        "the data set has every status"
    );
    let gaps = get_json(port, &format!("/api/v1/gaps?open=true&{window}"));
    let started = Instant::now();
    let coverage = get_json(
        port,
        &format!("/api/v1/coverage?{window}&buckets={DAY_BUCKETS}"),
    );
    let coverage_ms = started.elapsed().as_millis();

    // The page, with the token (and the window) in the fragment only.
    let profile = tmp.path().join("chromium-profile");
    let url = format!("http://127.0.0.1:{port}/#token={TOKEN}&from={FROM}&to={TO}");
    let started = Instant::now();
    let dom = run_chromium(&profile, "--dump-dom", &url);
    let page_ms = started.elapsed().as_millis();
    assert_eq!(
        attr_in(&dom[dom.find("<body").unwrap()..], "data-state").as_deref(),
        Some("loaded"),
        "the page did not load: {}",
        excerpt(&dom)
    );

    // 1. The summary by status, and by medium.
    for field in [
        "meters",
        "complete",
        "bridged",
        "open",
        "silent",
        "anomalous",
        "expected",
        "received",
        "late",
        "missing",
    ] {
        assert_eq!(
            Some(shown(&dom, &format!("sum-{field}"))),
            summary[field].as_u64(),
            "summary {field}"
        );
    }
    // By medium, counted here from the report's rows (the page asks the API
    // for each medium's summary: two ways, one answer).
    for medium in ["heat", "cooling", "water", "warm_water", "hca"] {
        let of: Vec<&Value> = rows.iter().filter(|r| r["medium"] == medium).collect();
        let count = |st: &str| of.iter().filter(|r| r["status"] == st).count() as u64;
        let sum = |f: &str| of.iter().map(|r| r[f].as_u64().unwrap()).sum::<u64>();
        let want = [
            ("meters", of.len() as u64),
            ("complete", count("complete")),
            ("bridged", count("bridged")),
            ("open", count("open")),
            ("silent", count("silent")),
            ("anomalous", count("anomalous")),
            ("expected", sum("expected")),
            ("received", sum("received")),
            ("late", sum("late")),
            ("missing", sum("missing")),
        ];
        for (field, n) in want {
            assert_eq!(
                shown(&dom, &format!("medium-{medium}-{field}")),
                n,
                "{medium} {field}"
            );
        }
    }

    // 2. The meters needing attention: every row not complete, worst first,
    // and the open gaps at the window's end.
    let needing: Vec<&Value> = rows.iter().filter(|r| r["status"] != "complete").collect();
    assert_eq!(shown(&dom, "attention-total"), needing.len() as u64);
    assert_eq!(
        Some(shown(&dom, "open-gaps-total")),
        gaps["page"]["total"].as_u64()
    );
    assert_eq!(gaps["page"]["total"], 2, "H-1 and H-2: {gaps}");
    let listed = attention_rows(&dom);
    let want: Vec<(String, String, String)> = ["anomalous", "silent", "open", "bridged"]
        .iter()
        .flat_map(|st| needing.iter().filter(move |r| r["status"] == *st))
        .map(|r| {
            (
                r["meter_id"].as_str().unwrap().to_owned(),
                r["register"].as_str().unwrap_or("").to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, want, "{}", excerpt(&dom));
    for r in &needing {
        let m = r["meter_id"].as_str().unwrap();
        let at = dom.find(&format!("<tr data-meter=\"{m}\"")).unwrap();
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        let missing = row
            .find("data-field=\"missing\"")
            .and_then(|i| attr_in(&row[i - 4..], "data-value"))
            .unwrap();
        assert_eq!(missing, r["missing"].to_string(), "{m}: {row}");
    }
    for g in gaps["gaps"].as_array().unwrap() {
        let m = g["meter_id"].as_str().unwrap();
        let at = dom.find(&format!("<tr data-meter=\"{m}\"")).unwrap();
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        assert!(
            row.contains(g["from"].as_str().unwrap()),
            "{m}'s open gap since {} is shown: {row}",
            g["from"]
        );
    }

    // 3. The coverage grid: every series, hourly, totals and the cells with
    // readings missing equal to the API's. A meter due less often than a
    // bucket is judged over spans of round(interval / bucket) buckets (the
    // daily HKV-1 over the day: its reading at 03:17 is not where the
    // slot-based expected count puts it).
    let series = coverage["series"].as_array().unwrap();
    let short_cells = |s: &Value, per_bucket: bool| -> u64 {
        let num = |k: &str| -> Vec<u64> {
            s[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        let (exp, rec) = (num("expected_by_bucket"), num("received_by_bucket"));
        let span = if per_bucket {
            1
        } else {
            (s["interval_s"].as_f64().unwrap() / 3600.0)
                .round()
                .max(1.0) as usize
        };
        exp.chunks(span)
            .zip(rec.chunks(span))
            .filter(|(e, r)| r.iter().sum::<u64>() < e.iter().sum::<u64>())
            .map(|(e, _)| e.len() as u64)
            .sum()
    };
    let short: u64 = series.iter().map(|s| short_cells(s, false)).sum();
    // W-2: 4 hours; H-1: 6 hours (18:00 half); H-2: 24 hours. H-3 is
    // complete (only its register is wrong), and so is HKV-1, whose
    // reading is in another hour than its expected slot.
    assert_eq!(short, 4 + 6 + 24, "{coverage}");
    let hkv = series.iter().find(|s| s["meter_id"] == "HKV-1").unwrap();
    assert_eq!(
        short_cells(hkv, true),
        1,
        "per bucket it would look short: {hkv}"
    );
    let cov = |attr: &str| {
        attr_of(&dom, "coverage", attr)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("#coverage {attr}: {}", excerpt(&dom)))
    };
    assert_eq!(cov("data-buckets"), u64::from(DAY_BUCKETS));
    assert_eq!(Some(cov("data-series")), summary["meters"].as_u64());
    assert_eq!(Some(cov("data-received")), summary["received"].as_u64());
    assert_eq!(Some(cov("data-expected")), summary["expected"].as_u64());
    assert_eq!(cov("data-short-cells"), short);

    // 4. The open alerts, as the API lists them, newest first.
    assert_eq!(shown(&dom, "alerts-total"), 7);
    let listed: Vec<String> = dom
        .match_indices("data-kind=\"meter_silent\" data-subject=\"")
        .map(|(i, m)| {
            let rest = &dom[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    let want: Vec<String> = open_alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, want, "{}", excerpt(&dom));

    // A wrong token: the page says so instead of showing numbers.
    let wrong = format!("http://127.0.0.1:{port}/#token=wrong&from={FROM}&to={TO}");
    let dom = run_chromium(&profile, "--dump-dom", &wrong);
    assert!(dom.contains("data-state=\"error\""), "{}", excerpt(&dom));
    assert!(dom.contains("refused the token (401)"), "{}", excerpt(&dom));
    assert!(attr_of(&dom, "sum-meters", "data-value").is_none());

    // The screenshot, kept as an artifact.
    let shot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(&profile, &format!("--screenshot={}", shot.display()), &url);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&png), (1400, 1500));
    println!(
        "dashboard: {} readings; /api/v1/coverage in {coverage_ms} ms; the page in Chromium, \
         from start to its DOM, in {page_ms} ms; screenshot: {}",
        msgs.len(),
        shot.display()
    );
    assert_eq!(g.terminate(), Some(0));
}
