//! Continuity over the real pipeline: readings published to a real
//! Mosquitto, stored by the real service, then `gapless report` and
//! `gapless gaps` over the sealed Parquet.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const QUARTER: i64 = 900;

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn reading(meter: &str, t: i64, value: f64, seq: u64) -> String {
    format!(
        r#"{{"meter_id":"{meter}","medium":"heat","register":"energy","unit":"kWh","value":"{value:.3}","ts":"{}","seq":{seq}}}"#,
        iso(t)
    )
}

/// Five meters that between them show every status over the window
/// [t0 + 4 h, t0 + 8 h), plus a registry meter that never sends. Readings
/// every 15 min from t0 to t0 + 12 h, each meter's message per quarter hour
/// published in time order, except M-LATE's window readings, published
/// last (a gateway forwarding its buffer after the others).
#[test]
fn report_over_the_real_pipeline_shows_every_status() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let registry = tmp.path().join("registry.csv");
    std::fs::write(
        &registry,
        "meter_id,medium,expected_interval_s,group,installed_at,removed_at\n\
         M-COMPLETE,heat,900,b1,,\nM-BRIDGED,heat,900,b1,,\nM-OPEN,heat,900,b1,,\n\
         M-SILENT,heat,900,b1,,\nM-ANOMALOUS,heat,900,b1,,\nM-LATE,heat,900,b1,,\n\
         M-NEVER,heat,900,b2,,\n",
    )
    .unwrap();
    let r = registry.display().to_string();
    let mut g = Gapless::start(&broker.url(), &data, &["--registry", &r]);

    // Recent times, so that no reading is rejected as too old or too new.
    let now = chrono::Utc::now().timestamp();
    let t0 = now - now.rem_euclid(QUARTER) - 13 * 3600;
    let (w1, w2) = (t0 + 4 * 3600, t0 + 8 * 3600);
    let mut msgs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut late: Vec<(String, Vec<u8>)> = Vec::new();
    for k in 0..=48 {
        let t = t0 + k * QUARTER;
        let v = 1000.0 + k as f64 * 1.25;
        let in_window = t >= w1 && t < w2;
        let mut push = |meter: &str, value: f64, to_late: bool| {
            let m = (
                format!("meters/{meter}"),
                reading(meter, t, value, k as u64 % 256).into_bytes(),
            );
            if to_late {
                late.push(m)
            } else {
                msgs.push(m)
            }
        };
        push("M-COMPLETE", v, false);
        if !in_window {
            push("M-BRIDGED", v, false);
        }
        if t < w1 + 2 * 3600 {
            push("M-OPEN", v, false);
        }
        if t < w1 {
            push("M-SILENT", v, false);
        }
        // One reading in the window goes backwards.
        let glitch = if t == w1 + 3600 { -7.5 } else { 0.0 };
        push("M-ANOMALOUS", v + glitch, false);
        push("M-LATE", v, in_window);
    }
    // The late readings come once the rest is sealed: the live engine has
    // found M-LATE's gap by then, and the late readings must close it.
    publish_all(broker.port, &msgs);
    g.wait_readings(msgs.len() as u64, Duration::from_secs(60));
    publish_all(broker.port, &late);
    g.wait_readings((msgs.len() + late.len()) as u64, Duration::from_secs(60));
    let d = data.display().to_string();
    let (from, to) = (iso(w1), iso(w2));
    let (code, out, err) = run_gapless(
        &[
            "report",
            "--data",
            &d,
            "--registry",
            &r,
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    let by_meter: HashMap<&str, &Value> = rep["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["meter_id"].as_str().unwrap(), m))
        .collect();
    let field = |m: &str, f: &str| by_meter[m][f].clone();
    // (meter, status, received, missing)
    for (meter, status, received, missing) in [
        ("M-COMPLETE", "complete", 16, 0),
        ("M-LATE", "complete", 16, 0),
        ("M-BRIDGED", "bridged", 0, 16),
        ("M-OPEN", "open", 8, 8),
        ("M-SILENT", "silent", 0, 16),
        ("M-ANOMALOUS", "anomalous", 16, 0),
        ("M-NEVER", "silent", 0, 16),
    ] {
        assert_eq!(
            field(meter, "status"),
            status,
            "{meter}: {}",
            by_meter[meter]
        );
        assert_eq!(field(meter, "expected"), 16, "{meter}");
        assert_eq!(field(meter, "received"), received, "{meter}");
        assert_eq!(field(meter, "missing"), missing, "{meter}");
        assert_eq!(field(meter, "interval_source"), "registry", "{meter}");
    }
    // Bridged: consumption across the window is exact, to the digit.
    assert_eq!(field("M-BRIDGED", "opening_value"), "1018.750");
    assert_eq!(field("M-BRIDGED", "closing_value"), "1040.000");
    assert_eq!(field("M-BRIDGED", "consumption"), "21.250");
    assert_eq!(field("M-BRIDGED", "consumption_exact"), true);
    assert_eq!(field("M-BRIDGED", "seq_missing"), 16);
    assert_eq!(field("M-OPEN", "consumption"), Value::Null);
    assert_eq!(field("M-ANOMALOUS", "consumption_exact"), false);
    assert!(field("M-ANOMALOUS", "notes")[0]
        .as_str()
        .unwrap()
        .contains("register went down from 1023.750 to 1017.500"));
    assert_eq!(field("M-NEVER", "register"), Value::Null);
    let s = &rep["summary"];
    assert_eq!(
        (
            s["meters"].as_u64(),
            s["complete"].as_u64(),
            s["bridged"].as_u64()
        ),
        (Some(7), Some(2), Some(1))
    );
    assert_eq!(
        (
            s["open"].as_u64(),
            s["silent"].as_u64(),
            s["anomalous"].as_u64()
        ),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(s["expected"], 7 * 16);

    // The same report, as written to Parquet, read back with the real reader.
    assert!(rep["files"][0]
        .as_str()
        .unwrap()
        .contains("/reports/report_"));
    let batches = read_table(&data, "reports");
    let report_rows = rows(&batches);
    assert_eq!(report_rows.len(), 7);
    for row in &report_rows {
        let json = by_meter[row["meter_id"].as_str()];
        assert_eq!(row["status"], json["status"].as_str().unwrap());
        assert_eq!(row["missing"], json["missing"].to_string());
    }

    // Gaps: the bridged meter's closed gap and the open ones.
    let (code, out, err) = run_gapless(
        &[
            "gaps",
            "--data",
            &d,
            "--registry",
            &r,
            "--to",
            &iso(t0 + 12 * 3600 + 1),
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let gaps: Value = serde_json::from_str(&out).unwrap();
    let gaps = gaps.as_array().unwrap();
    let of = |m: &str| {
        gaps.iter()
            .filter(|g| g["meter_id"] == m)
            .collect::<Vec<_>>()
    };
    let b = of("M-BRIDGED");
    assert_eq!(b.len(), 1, "{gaps:?}");
    assert_eq!(
        (b[0]["open"].as_bool(), b[0]["missing"].as_u64()),
        (Some(false), Some(16))
    );
    assert_eq!(b[0]["from"], iso(w1 - QUARTER));
    assert_eq!(b[0]["to"], iso(w2));
    let o = of("M-OPEN");
    assert_eq!((o.len(), o[0]["open"].as_bool()), (1, Some(true)));
    assert!(of("M-COMPLETE").is_empty() && of("M-LATE").is_empty());

    // The live engine's gaps, as sealed in the `gaps` table (found minus
    // superseded), equal the batch pass's closed gaps.
    let table = rows(&read_table(&data, "gaps"));
    let key = |m: &str, f: &str, t: &str, n: &str| format!("{m} {f} {t} {n}");
    let mut live: Vec<String> = Vec::new();
    for row in table.iter().filter(|r| r["event"] == "found") {
        let k = key(
            &row["meter_id"],
            &row["gap_from"],
            &row["gap_to"],
            &row["missing"],
        );
        let superseded = table.iter().any(|s| {
            s["event"] == "superseded"
                && key(&s["meter_id"], &s["gap_from"], &s["gap_to"], &s["missing"]) == k
        });
        if !superseded {
            live.push(k);
        }
    }
    let mut batch: Vec<String> = gaps
        .iter()
        .filter(|g| g["open"] == false)
        .map(|g| {
            key(
                g["meter_id"].as_str().unwrap(),
                g["from"].as_str().unwrap(),
                g["to"].as_str().unwrap(),
                &g["missing"].to_string(),
            )
        })
        .collect();
    live.sort();
    batch.sort();
    assert_eq!(live, batch, "live gaps table vs batch gaps");
    assert!(
        table
            .iter()
            .any(|r| r["meter_id"] == "M-LATE" && r["event"] == "superseded"),
        "M-LATE's gap was found, then closed by the late readings: {table:?}"
    );

    // CSV, with estimates for the bridged meter's gap: separate rows, flagged,
    // between the real reads, adding up to the real total.
    let (code, csv, err) = run_gapless(
        &[
            "report",
            "--data",
            &d,
            "--registry",
            &r,
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "csv",
            "--estimate",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["meter_id", "register", "medium"]);
    let status_col = header.iter().position(|h| *h == "status").unwrap();
    let csv_rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(csv_rows.len(), 7);
    assert!(csv_rows
        .iter()
        .any(|row| row[0] == "M-BRIDGED" && row[status_col] == "bridged"));
    let est_files: Vec<_> = std::fs::read_dir(data.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".estimates.parquet"))
        .collect();
    assert_eq!(est_files.len(), 1, "{est_files:?}");
    let file = std::fs::File::open(&est_files[0]).unwrap();
    let est: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let est = rows(&est);
    assert_eq!(est.len(), 16, "one estimate per missing reading");
    assert!(est.iter().all(|e| e["meter_id"] == "M-BRIDGED"
        && e["quality"] == "estimated"
        && e["method"] == "linear_interpolation"));
    let values: Vec<f64> = est.iter().map(|e| e["value"].parse().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    assert!(values[0] > 1018.75 && values[15] < 1040.0, "{values:?}");
    assert!(est
        .iter()
        .all(|e| e["value"].split('.').nth(1).map(str::len) == Some(3)));

    // Bad parameters: exit 2 with the flag named.
    for (args, needle) in [
        (
            vec!["report", "--data", &d, "--from", "soon", "--to", &to],
            "--from",
        ),
        (
            vec!["report", "--data", &d, "--from", &to, "--to", &from],
            "--to must be after --from",
        ),
        (
            vec![
                "report", "--data", &d, "--from", &from, "--to", &to, "--medium", "gas",
            ],
            "--medium",
        ),
        (
            vec![
                "report", "--data", &d, "--from", &from, "--to", &to, "--status", "lost",
            ],
            "--status",
        ),
    ] {
        let (code, _, err) = run_gapless(&args, Duration::from_secs(30));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    g.terminate();
}

/// The README's first command, small: the in-process broker, the simulated
/// fleet with its outage, the real pipeline, and a report with every status.
#[test]
fn demo_runs_end_to_end_and_shows_every_status() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let d = data.display().to_string();
    let (code, out, err) = run_gapless(
        &["demo", "--meters", "600", "--data", &d, "--log", "warn"],
        Duration::from_secs(240),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("counters balance"), "{err}");
    for status in ["complete", "bridged", "open", "silent", "anomalous"] {
        assert!(out.contains(status), "no {status} in:\n{out}");
    }
    let (code, json, err) = run_gapless(
        &[
            "report",
            "--data",
            &d,
            "--registry",
            &format!("{d}/registry.csv"),
            "--from",
            "2022-07-23",
            "--to",
            "2022-07-24",
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let rep: Value = serde_json::from_str(&json).unwrap();
    let s = &rep["summary"];
    for status in ["complete", "bridged", "open", "silent", "anomalous"] {
        assert!(s[status].as_u64().unwrap() > 0, "no {status}: {s}");
    }
    assert!(
        s["late"].as_u64().unwrap() > 0,
        "forwarded buffers are late: {s}"
    );
    // Every stored reading came from the simulation, once.
    let stats = stats(&data);
    assert_eq!(stats["balanced"], true, "{stats}");
    assert_eq!(stats["readings"]["duplicate"], 0, "{stats}");
}

fn native(meter: &str, medium: &str, unit: &str, t: i64, value: f64, kind: &str) -> String {
    format!(
        r#"{{"meter_id":"{meter}","medium":"{medium}","register":"r","unit":"{unit}","value":"{value:.1}","ts":"{}","kind":"{kind}"}}"#,
        iso(t)
    )
}

/// `gapless gaps` lists what the live engine sealed; the report judges the
/// stored readings in batch. Over the real service, with intervals that
/// must be inferred (no registry, no configured intervals) and HCA resets
/// explained by set dates the meters report, both say the same: the same
/// interval, the same closed gaps and missing readings, the same longest
/// gap and the same plausibility.
#[test]
fn gaps_equal_the_report_with_inferred_intervals_and_reported_set_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);

    let now = chrono::Utc::now().timestamp();
    let day0 = now - now.rem_euclid(86_400) - 40 * 86_400;
    let mut msgs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut later: Vec<(String, Vec<u8>)> = Vec::new();
    let msg = |meter: &str, body: String| (format!("meters/{meter}"), body.into_bytes());
    // Three heat cost allocators read daily at 06:00, reset after day 15
    // (not the configured 12-31), nothing read on days 14 and 15: a gap
    // across the reset. HCA-SD reports its set date with the reset,
    // HCA-LATE only at the end, HCA-NONE never (a register_regression).
    let set_day = day0 + 15 * 86_400;
    for meter in ["HCA-SD", "HCA-LATE", "HCA-NONE"] {
        for d in (0..30).filter(|d| !(14..=15).contains(d)) {
            let t = day0 + d * 86_400 + 6 * 3600;
            let v = if d < 16 {
                100.0 + 5.0 * d as f64
            } else {
                2.0 + 5.0 * (d - 16) as f64
            };
            let m = native(meter, "hca", "units", t, v, "measured");
            let body = match (meter, d) {
                ("HCA-SD", 16) => format!(
                    "[{},{m}]",
                    native(meter, "hca", "units", set_day, 0.0, "set_date")
                ),
                _ => m,
            };
            msgs.push(msg(meter, body));
        }
    }
    later.push(msg(
        "HCA-LATE",
        native("HCA-LATE", "hca", "units", set_day, 0.0, "set_date"),
    ));
    // A water meter read every 4 minutes (built in: hourly) for 4 hours:
    // readings 30..=35 lost, 33 forwarded late; after the gap the register
    // jumps (implausible consumption across 33 → 36).
    let w0 = now - now.rem_euclid(240) - 6 * 3600;
    let mut v = 500.0;
    for k in 0..60 {
        v += if k == 36 { 60.0 } else { 1.5 };
        let m = msg(
            "W-INF",
            native("W-INF", "water", "m3", w0 + k * 240, v, "measured"),
        );
        match k {
            33 => later.push(m),
            30..=35 => {}
            _ => msgs.push(m),
        }
    }
    // The issue's case: a commissioning burst (9 readings 4 minutes apart)
    // then hourly readings. The interval is the first readings' (the live
    // pass used it; the batch pass once took the whole series' hour).
    let b0 = now - now.rem_euclid(3600) - 30 * 3600;
    for k in 0..9 {
        let t = b0 + k * 240;
        msgs.push(msg(
            "W-BURST",
            native("W-BURST", "water", "m3", t, 10.0 + k as f64, "measured"),
        ));
    }
    for h in 1..24 {
        let t = b0 + h * 3600;
        msgs.push(msg(
            "W-BURST",
            native("W-BURST", "water", "m3", t, 20.0 + h as f64, "measured"),
        ));
    }
    publish_all(broker.port, &msgs);
    // Each message holds one measured reading, HCA-SD's reset message a set
    // date too.
    g.wait_readings(msgs.len() as u64 + 1, Duration::from_secs(60));
    publish_all(broker.port, &later);
    g.wait_readings(
        (msgs.len() + later.len()) as u64 + 1,
        Duration::from_secs(60),
    );

    let d = data.display().to_string();
    let (from, to) = (iso(day0), iso(now + 60));
    let run = |args: &[&str]| {
        let (code, out, err) = run_gapless(args, Duration::from_secs(60));
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let rep = run(&[
        "report", "--data", &d, "--from", &from, "--to", &to, "--format", "json",
    ]);
    let gaps = run(&[
        "gaps", "--data", &d, "--from", &from, "--to", &to, "--format", "json",
    ]);
    let gaps = gaps.as_array().unwrap();
    let meters = rep["meters"].as_array().unwrap();
    assert_eq!(meters.len(), 5, "{rep}");
    for row in meters {
        let meter = row["meter_id"].as_str().unwrap();
        let listed: Vec<&Value> = gaps.iter().filter(|g| g["meter_id"] == meter).collect();
        let closed = listed.iter().filter(|g| g["open"] == false).count();
        let missing: u64 = listed.iter().map(|g| g["missing"].as_u64().unwrap()).sum();
        let longest = listed
            .iter()
            .map(|g| g["duration_s"].as_u64().unwrap())
            .max()
            .unwrap_or(0);
        let implausible = listed.iter().any(|g| g["implausible"] == true);
        let noted = row["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("implausible"));
        assert_eq!(row["gaps"], closed, "{meter}: {row} vs {listed:?}");
        assert_eq!(row["missing"], missing, "{meter}: {row} vs {listed:?}");
        assert_eq!(
            row["longest_gap_s"], longest,
            "{meter}: {row} vs {listed:?}"
        );
        assert_eq!(implausible, noted, "{meter}: {row} vs {listed:?}");
        for g in &listed {
            assert_eq!(g["interval_s"], row["interval_s"], "{meter}: {g}");
            assert_eq!(g["interval_source"], row["interval_source"], "{meter}: {g}");
        }
    }
    let of = |m: &str| -> Vec<&Value> {
        gaps.iter()
            .filter(|g| g["meter_id"] == m && g["open"] == false)
            .collect()
    };
    // The water meter's interval was inferred (4 minutes, not the built-in
    // hour); the late reading split its gap in two.
    let w = of("W-INF");
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (
            w[0]["interval_s"].as_u64(),
            w[0]["interval_source"].as_str()
        ),
        (Some(240), Some("inferred"))
    );
    assert_eq!(
        (w[0]["missing"].as_u64(), w[1]["missing"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (w[0]["implausible"].as_bool(), w[1]["implausible"].as_bool()),
        (Some(false), Some(true))
    );
    let b = of("W-BURST");
    assert_eq!(b.len(), 23, "every hour is a gap at 4 minutes: {b:?}");
    let missing: Vec<u64> = b.iter().map(|g| g["missing"].as_u64().unwrap()).collect();
    assert_eq!(
        (b[0]["interval_s"].as_u64(), &missing[..2]),
        (Some(240), &[6, 14][..])
    );
    // Across a reported set date the reset is explained: consumption counts
    // from zero (whether the set date came with the reset or later);
    // without one, the register went down for no known reason.
    for m in ["HCA-SD", "HCA-LATE"] {
        let h = of(m);
        assert_eq!(h.len(), 1, "{m}: {h:?}");
        assert_eq!(
            (h[0]["missing"].as_u64(), h[0]["consumption"].as_str()),
            (Some(2), Some("2.0")),
            "{m}"
        );
        assert_eq!(h[0]["interval_source"], "inferred");
    }
    assert_eq!(of("HCA-NONE")[0]["consumption"], Value::Null);
    // The documented DuckDB query over the `gaps` table (schemas/tables.md)
    // gives the closed gaps `gapless gaps` lists: HCA-LATE's gap was found,
    // superseded and found again with the same ends.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tables.md"),
    )
    .unwrap();
    let sql = doc
        .split("```sql\n-- Gaps that stand (DuckDB)")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the query in schemas/tables.md")
        .replace("DIR", &d);
    let script = "import duckdb, sys\n\
        q = sys.stdin.read().strip().rstrip(';')\n\
        for m, f, t, c in duckdb.sql(f'SELECT meter_id, epoch(gap_from)::BIGINT, \
        epoch(gap_to)::BIGINT, consumption FROM ({q}) ORDER BY ALL').fetchall():\n    \
        print(m, f, t, c)\n";
    let mut child = std::process::Command::new(python_with(&["duckdb"]))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("-- Gaps that stand{sql}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut listed: Vec<String> = gaps
        .iter()
        .filter(|g| g["open"] == false)
        .map(|g| {
            let secs = |k: &str| {
                chrono::DateTime::parse_from_rfc3339(g[k].as_str().unwrap())
                    .unwrap()
                    .timestamp()
            };
            format!(
                "{} {} {} {}",
                g["meter_id"].as_str().unwrap(),
                secs("from"),
                secs("to"),
                g["consumption"].as_str().unwrap_or("None")
            )
        })
        .collect();
    listed.sort();
    let mut queried: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    queried.sort();
    assert_eq!(queried, listed);
    assert!(listed.iter().any(|l| l.starts_with("HCA-LATE")));

    // The live pass raised a register_regression for HCA-NONE only (its
    // set date came with HCA-SD's reset).
    let alerts = rows(&read_table(&data, "alerts"));
    let regressions: Vec<&str> = alerts
        .iter()
        .filter(|a| a["kind"] == "register_regression")
        .map(|a| a["meter_id"].as_str())
        .collect();
    assert!(regressions.contains(&"HCA-NONE"), "{alerts:?}");
    assert!(!regressions.contains(&"HCA-SD"), "{alerts:?}");
}
