//! Ingest: MQTT → journal → Parquet, with nothing lost.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

mod restart;

const MIN: Duration = Duration::from_secs(60);

fn native(meter: &str, value: &str, ts: &str, seq: u64) -> Vec<u8> {
    format!(
        r#"{{"meter_id":"{meter}","medium":"water","register":"total","unit":"m3","value":"{value}","ts":"{ts}","seq":{seq}}}"#
    )
    .into_bytes()
}

/// `n` single-reading native messages spread over `meters` meters (topic
/// `meters/<tag>/<meter>`), each reading a distinct (meter, time) with a
/// distinct value.
pub(crate) fn stream(n: usize, meters: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let meter = format!("{tag}-{:03}", i % meters);
            let payload = native(
                &meter,
                &format!("{i}.25"),
                &ts_of(i / meters),
                i as u64 % 256,
            );
            (format!("meters/{tag}/{meter}"), payload)
        })
        .collect()
}

fn ts_of(i: usize) -> String {
    let t = chrono::DateTime::from_timestamp(1_658_707_200 + (i as i64) * 900, 0).unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every reading key (meter|register|ts) in `readings`, with its count.
pub(crate) fn reading_keys(data: &Path) -> HashMap<String, usize> {
    let b = read_table(data, "readings");
    let m = column_strings(&b, "meter_id");
    let r = column_strings(&b, "register");
    let t = column_strings(&b, "ts");
    let mut out = HashMap::new();
    for i in 0..m.len() {
        *out.entry(format!("{}|{}|{}", m[i], r[i], t[i]))
            .or_insert(0) += 1;
    }
    out
}

/// Receipt numbers are 1..=n with no hole and no repeat.
fn assert_receipts_contiguous(data: &Path, delivered: u64) {
    let b = read_table(data, "receipts");
    let mut seqs: Vec<u64> = column_strings(&b, "receipt_seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs.len() as u64,
        delivered,
        "one receipt per delivered message"
    );
    assert_eq!(
        seqs,
        (1..=delivered).collect::<Vec<_>>(),
        "receipt numbers have a hole or repeat"
    );
}

pub(crate) fn assert_balanced(s: &serde_json::Value) {
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(
        n("delivered"),
        n("stored") + n("duplicate") + n("rejected"),
        "{s}"
    );
    assert_eq!(s["balanced"], true, "{s}");
}

#[test]
fn each_payload_format_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &["--topic", "#"]);
    let msgs: Vec<(String, Vec<u8>)> = vec![
        (
            "meters/heat/HZ-000123".into(),
            br#"{"meter_id":"HZ-000123","medium":"heat","register":"energy","unit":"kWh","value":"1234.567","ts":"2022-07-25T00:15:00Z","seq":17}"#.to_vec(),
        ),
        (
            "meters/water".into(),
            br#"[{"meter_id":"WZ-1","medium":"water","unit":"m3","value":326.069,"ts":"2022-07-25T00:00:00Z"},
                 {"meter_id":"WZ-1","medium":"water","unit":"m3","value":"326.070","ts":"2022-07-25T01:00:00+02:00"}]"#.to_vec(),
        ),
        (
            "wmbusmeters/I".into(),
            br#"{"_":"telegram","media":"water","meter":"istawater","name":"I","id":"22705729","target_date":"2024-09-30","target_m3":326.062,"timestamp":"2024-10-02T08:00:00Z","total_m3":326.069}"#.to_vec(),
        ),
        (
            "application/app1/device/0101010101010101/event/up".into(),
            br#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2024-05-01T10:00:00.123456+00:00","deviceInfo":{"tenantId":"t","applicationId":"a","deviceName":"w1","devEui":"0101010101010101"},"fPort":1,"data":"qg==","object":{"total_m3":12.345}}"#.to_vec(),
        ),
        (
            "v3/app1@ttn/devices/dev1/up".into(),
            br#"{"end_device_ids":{"device_id":"dev1","application_ids":{"application_id":"app1"},"dev_eui":"0004A30B001C0530"},"received_at":"2024-05-01T10:05:00Z","uplink_message":{"f_cnt":7,"decoded_payload":{"total_m3":99.10}}}"#.to_vec(),
        ),
    ];
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(5, MIN);
    assert_balanced(&s);
    assert_eq!(s["stored"], 5, "{s}\n{}", g.log_text());

    let rows = rows(&read_table(&data, "readings"));
    let find = |meter: &str, register: &str| {
        rows.iter()
            .filter(|r| r["meter_id"] == meter && r["register"] == register)
            .collect::<Vec<_>>()
    };
    // native: value digit for digit, seq, register
    let hz = find("HZ-000123", "energy");
    assert_eq!(hz.len(), 1);
    assert_eq!(hz[0]["value"], "1234.567");
    assert_eq!(hz[0]["value_decimal"], "1234.567000000");
    assert_eq!(hz[0]["unit"], "kWh");
    assert_eq!(hz[0]["medium"], "heat");
    assert_eq!(hz[0]["seq"], "17");
    assert_eq!(hz[0]["ts"], "2022-07-25T00:15:00Z");
    assert_eq!(hz[0]["kind"], "measured");
    assert_eq!(hz[0]["format"], "native");
    // native array: JSON number keeps its literal; offset converted to UTC
    let wz = find("WZ-1", "total");
    let vals: BTreeSet<_> = wz
        .iter()
        .map(|r| (r["ts"].clone(), r["value"].clone()))
        .collect();
    assert_eq!(
        vals,
        BTreeSet::from([
            ("2022-07-24T23:00:00Z".to_string(), "326.070".to_string()),
            ("2022-07-25T00:00:00Z".to_string(), "326.069".to_string()),
        ])
    );
    // wmbusmeters: measured register and set-date value at its own date;
    // the register is the whole field name (LoRaWAN too)
    let total = find("22705729", "total_m3");
    assert_eq!(total.len(), 1);
    assert_eq!(total[0]["value"], "326.069");
    assert_eq!(total[0]["ts"], "2024-10-02T08:00:00Z");
    assert_eq!(total[0]["format"], "wmbusmeters");
    let target = find("22705729", "target_m3");
    assert_eq!(target.len(), 1);
    assert_eq!(target[0]["kind"], "set_date");
    assert_eq!(target[0]["ts"], "2024-09-30T00:00:00Z");
    assert_eq!(target[0]["value"], "326.062");
    // ChirpStack: devEui, missing fCnt = 0
    let cs = find("0101010101010101", "total_m3");
    assert_eq!(cs.len(), 1, "{rows:?}");
    assert_eq!(cs[0]["seq"], "0");
    assert_eq!(cs[0]["value"], "12.345");
    assert_eq!(cs[0]["ts"], "2024-05-01T10:00:00.123456Z");
    assert_eq!(cs[0]["format"], "chirpstack");
    // TTS: f_cnt, trailing zero kept
    let tts = find("0004A30B001C0530", "total_m3");
    assert_eq!(tts.len(), 1, "{rows:?}");
    assert_eq!(tts[0]["seq"], "7");
    assert_eq!(tts[0]["value"], "99.10");
    assert_eq!(tts[0]["format"], "tts");

    // Lineage: every reading points at a stored receipt with its topic.
    let receipts = rows_by(&read_table(&data, "receipts"), "receipt_seq");
    for r in &rows {
        let rc = &receipts[&r["receipt_seq"]];
        assert_eq!(rc["disposition"], "stored");
        assert_eq!(rc["format"], r["format"]);
    }
    // Hive partitioning by UTC date of the reading.
    assert!(data.join("readings/date=2022-07-25").is_dir());
    assert!(data.join("readings/date=2024-09-30").is_dir());
    assert_eq!(g.terminate(), Some(0), "{}", g.log_text());
}

fn rows_by(b: &[arrow_array::RecordBatch], key: &str) -> HashMap<String, HashMap<String, String>> {
    rows(b).into_iter().map(|r| (r[key].clone(), r)).collect()
}

#[test]
fn duplicates_are_counted_and_conflicts_kept_and_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    let a = native("M-1", "10.5", "2022-07-25T00:00:00Z", 1);
    let same_value_other_spelling = native("M-1", "10.50", "2022-07-25T00:00:00Z", 1);
    let conflict = native("M-1", "11", "2022-07-25T00:00:00Z", 1);
    let msgs = vec![
        ("meters/a".to_string(), a.clone()),
        ("meters/a".to_string(), a),
        ("meters/a".to_string(), same_value_other_spelling),
        ("meters/a".to_string(), conflict.clone()),
        ("meters/a".to_string(), conflict),
    ];
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(5, MIN);
    assert_balanced(&s);
    assert_eq!(
        (s["stored"].as_u64(), s["duplicate"].as_u64()),
        (Some(2), Some(3)),
        "{s}"
    );
    assert_eq!(s["readings"]["conflict"], 1, "{s}");
    let rows = rows(&read_table(&data, "readings"));
    assert_eq!(rows.len(), 2);
    let flagged: Vec<_> = rows
        .iter()
        .map(|r| (r["value"].as_str(), r["conflict"].as_str()))
        .collect();
    assert!(flagged.contains(&("10.5", "false")), "{flagged:?}");
    assert!(flagged.contains(&("11", "true")), "{flagged:?}");
    g.terminate();
}

/// Issue 2, test 2: SIGKILL at random moments while 20,000 readings are
/// published; afterwards every reading is stored exactly once.
#[test]
fn crash_safety_sigkill_during_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    // Messages: 5,000 single readings and 1,500 arrays of 10 = 20,000 readings.
    let mut msgs = stream(5_000, 50, "S");
    for j in 0..1_500 {
        let meter = format!("A-{:03}", j % 30);
        let arr: Vec<String> = (0..10)
            .map(|k| {
                let slot = (j / 30) * 10 + k;
                String::from_utf8(native(
                    &meter,
                    &format!("{slot}.5"),
                    &ts_of(slot),
                    slot as u64,
                ))
                .unwrap()
            })
            .collect();
        msgs.push((
            format!("meters/array/{}", j % 30),
            format!("[{}]", arr.join(",")).into_bytes(),
        ));
    }
    let expected_readings = 20_000;

    let mut g = Gapless::start(&broker.url(), &data, &["--seal-max-rows", "700"]);

    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let port = broker.port;
        let done = done.clone();
        let msgs = msgs.clone();
        std::thread::spawn(move || {
            for chunk in msgs.chunks(250) {
                publish_all(port, chunk);
                std::thread::sleep(Duration::from_millis(40));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seed = Instant::now().elapsed().as_nanos() as u64
        ^ std::process::id() as u64
        ^ 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut kills = 0;
    while kills < 5 || !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rand(150, 900)));
        g.kill();
        kills += 1;
        std::thread::sleep(Duration::from_millis(rand(0, 300)));
        g.restart();
        assert!(kills < 200, "publisher never finished");
    }
    publisher.join().unwrap();
    eprintln!("crash test: {kills} SIGKILLs");
    assert!(kills >= 5);

    let s = g.wait_readings(expected_readings as u64, 3 * MIN);
    assert_balanced(&s);
    let keys = reading_keys(&data);
    let twice: Vec<_> = keys.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "readings stored more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(
        keys.len(),
        expected_readings,
        "every published reading stored\n{s}"
    );
    assert_eq!(s["readings"]["stored"], expected_readings as u64, "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_receipts_contiguous(&data, s["delivered"].as_u64().unwrap());
    assert_eq!(g.terminate(), Some(0));
}

/// Issue 2, test 3: the broker restarts in the middle of a stream.
#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    let msgs = stream(4_000, 40, "R");
    let publisher = {
        let port = broker.port;
        let msgs = msgs.clone();
        std::thread::spawn(move || {
            for chunk in msgs.chunks(100) {
                publish_all(port, chunk);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    broker.stop();
    std::thread::sleep(Duration::from_millis(1500));
    broker.restart();
    publisher.join().unwrap();
    let s = g.wait_readings(msgs.len() as u64, 2 * MIN);
    assert_balanced(&s);
    let keys = reading_keys(&data);
    assert_eq!(keys.len(), msgs.len(), "{s}\n{}", g.log_text());
    assert!(keys.values().all(|&n| n == 1));
    assert!(
        g.log_text().matches("mqtt: connected").count() >= 2,
        "gapless reconnected"
    );
    assert_eq!(g.terminate(), Some(0));
}

/// Issue 2, test 4: what is published while gapless is down is stored
/// when it comes back (persistent session, broker queues).
#[test]
fn readings_published_while_down_are_stored_after_start() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    assert_eq!(g.terminate(), Some(0));
    // More than Mosquitto's default max_queued_messages (1000): the test
    // broker is configured without that cap, as the README requires.
    let msgs = stream(2_500, 10, "D");
    publish_all(broker.port, &msgs);
    g.restart();
    let s = g.wait_readings(msgs.len() as u64, 2 * MIN);
    assert_balanced(&s);
    assert_eq!(reading_keys(&data).len(), msgs.len(), "{s}");
    assert!(
        g.log_text().contains("session_present=true"),
        "resumed the same session"
    );
    assert_eq!(g.terminate(), Some(0));
}

/// Issue 2, test 5: a corpus of malformed payloads, each rejected with its
/// reason and its raw bytes, the service alive throughout.
#[test]
fn malformed_payloads_are_rejected_with_reason_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &["--max-payload-bytes", "2048"]);
    let ok = r#"{"meter_id":"OK-1","medium":"water","unit":"m3","value":"1","ts":"2024-01-01T00:00:00Z"}"#;
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("exceeds the limit", vec![b' '; 4096]),
        ("UTF-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("not valid JSON", b"{\"meter_id\":".to_vec()),
        ("not valid JSON", br#"{"meter_id":"X","medium":"water","unit":"m3","value":NaN,"ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("NaN", br#"{"meter_id":"X","medium":"water","unit":"m3","value":"NaN","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("Infinity", br#"{"meter_id":"X","medium":"water","unit":"m3","value":"Infinity","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("missing field \"unit\"", br#"{"meter_id":"X","medium":"water","value":"1","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("value", br#"{"meter_id":"X","medium":"water","unit":"m3","value":true,"ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("unknown medium", br#"{"meter_id":"X","medium":"gas","unit":"m3","value":"1","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("unknown unit", br#"{"meter_id":"X","medium":"water","unit":"furlong","value":"1","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("ahead of receive time", br#"{"meter_id":"X","medium":"water","unit":"m3","value":"1","ts":"2127-01-01T00:00:00Z"}"#.to_vec()),
        ("before 2000", br#"{"meter_id":"X","medium":"water","unit":"m3","value":"1","ts":"1999-12-31T23:59:59Z"}"#.to_vec()),
        ("meter_id", br#"{"meter_id":"bad id!","medium":"water","unit":"m3","value":"1","ts":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("ts", br#"{"meter_id":"X","medium":"water","unit":"m3","value":"1","ts":"yesterday"}"#.to_vec()),
        ("unrecognised", br#"{"hello":"world"}"#.to_vec()),
        ("empty", Vec::new()),
        ("element 1", format!(r#"[{ok},{{"meter_id":"X","medium":"water","unit":"m3","value":"1"}}]"#).into_bytes()),
    ];
    let mut msgs: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .enumerate()
        .map(|(i, (_, p))| (format!("meters/bad/{i}"), p.clone()))
        .collect();
    msgs.push(("meters/good".into(), ok.as_bytes().to_vec()));
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(msgs.len() as u64, MIN);
    assert_balanced(&s);
    assert_eq!(s["rejected"], corpus.len() as u64, "{s}");
    assert_eq!(
        s["stored"], 1,
        "the good message after the bad ones is stored: {s}"
    );
    assert!(g.is_alive(), "service alive after the corpus");

    let rejects = rows_by(&read_table(&data, "rejects"), "topic");
    for (i, (want, payload)) in corpus.iter().enumerate() {
        let r = rejects
            .get(&format!("meters/bad/{i}"))
            .unwrap_or_else(|| panic!("corpus entry {i} ({want}) not in rejects"));
        assert!(
            r["reason"].to_lowercase().contains(&want.to_lowercase()),
            "entry {i}: reason {:?} should mention {want:?}",
            r["reason"]
        );
        assert_eq!(
            r["payload"],
            hex::encode(payload),
            "entry {i}: raw bytes kept"
        );
    }
    // The receipts say the same.
    let receipts = rows(&read_table(&data, "receipts"));
    assert_eq!(
        receipts
            .iter()
            .filter(|r| r["disposition"] == "rejected")
            .count(),
        corpus.len()
    );
    assert!(receipts
        .iter()
        .filter(|r| r["disposition"] == "rejected")
        .all(|r| r["reason"] != "NULL"));
    assert_eq!(g.terminate(), Some(0));
}

/// Issue 2, test 6: wmbusmeters samples over the real broker: every line
/// yields readings or a precise rejection: our own samples and the shared
/// conformance set (vendored in `tests/fixtures/conformance/`).
#[test]
fn wmbusmeters_samples_yield_readings_or_precise_rejections() {
    let ours = include_str!("../fixtures/decode/wmbusmeters_samples.jsonl");
    let shared = include_str!("../fixtures/conformance/wmbusmeters_samples.jsonl");
    let mut lines: Vec<String> = ours
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let ours_n = lines.len();
    // The harness placeholder stands for the receive time.
    lines.extend(
        shared
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace("1111-11-11T11:11:11Z", "2026-07-11T10:50:30Z")),
    );
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &["--max-future-skew", "999999999"]);
    let msgs: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("wmbusmeters/line{i:03}"), l.clone().into_bytes()))
        .collect();
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(msgs.len() as u64, MIN);
    assert_balanced(&s);
    let receipts = rows_by(&read_table(&data, "receipts"), "topic");
    let mut summary = Vec::new();
    for (i, _) in lines.iter().enumerate() {
        let r = &receipts[&format!("wmbusmeters/line{i:03}")];
        let d = r["disposition"].as_str();
        assert!(
            d == "stored" || d == "rejected" || d == "duplicate",
            "{r:?}"
        );
        if d == "rejected" {
            assert!(
                !r["reason"].contains("unrecognised"),
                "line {i}: vague rejection {:?}",
                r["reason"]
            );
            assert_eq!(r["format"], "wmbusmeters", "line {i}");
        } else {
            assert_eq!(r["format"], "wmbusmeters");
        }
        summary.push(format!(
            "{i:3} {d:9} stored={} {}",
            r["readings_stored"], r["reason"]
        ));
    }
    eprintln!("{}", summary.join("\n"));
    let stored_ours = (0..ours_n)
        .filter(|i| receipts[&format!("wmbusmeters/line{i:03}")]["disposition"] == "stored")
        .count();
    assert!(stored_ours >= ours_n - 2, "our own samples mostly decode");
    assert_eq!(g.terminate(), Some(0));
}

/// Clean shutdown on SIGTERM: everything received is sealed, exit 0.
#[test]
fn sigterm_seals_everything_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    // Seal only at shutdown: nothing is due by age or size before it.
    let mut g = Gapless::start(
        &broker.url(),
        &data,
        &["--seal-max-age", "3600", "--seal-max-rows", "1000000"],
    );
    let msgs = stream(300, 1, "T");
    publish_all(broker.port, &msgs);
    // Acked by the broker is not yet received by gapless: wait for the journal.
    wait_for("journal to hold all", MIN, || {
        let s = stats(&data);
        (s["journal_pending"].as_u64() >= Some(300)).then_some(())
    });
    assert_eq!(stats(&data)["commits"], 0, "nothing sealed before shutdown");
    assert_eq!(g.terminate(), Some(0), "{}", g.log_text());
    let s = stats(&data);
    assert_eq!(s["journal_pending"], 0, "{s}");
    assert_eq!(s["stored"], 300, "{s}");
    assert_balanced(&s);
}

#[test]
fn bad_flags_unreachable_broker_and_unwritable_data_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let d = data.to_str().unwrap();
    let (code, _, err) = run_gapless(&["serve", "--broker", "http://x:1", "--data", d], MIN);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--broker"), "{err}");
    let (code, _, err) = run_gapless(&["serve", "--no-such-flag"], MIN);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_gapless(&["serve", "--topic", "a/#/b", "--data", d], MIN);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--topic"), "{err}");
    for days in ["0", "3651"] {
        let (code, _, err) = run_gapless(&["serve", "--gap-memory-days", days, "--data", d], MIN);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--gap-memory-days"), "{err}");
    }

    let closed = format!("mqtt://127.0.0.1:{}", free_port());
    let (code, _, err) = run_gapless(
        &[
            "serve",
            "--broker",
            &closed,
            "--data",
            d,
            "--connect-attempts",
            "2",
        ],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the MQTT broker"), "{err}");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("data");
    let (code, _, err) = run_gapless(
        &[
            "serve",
            "--broker",
            &closed,
            "--data",
            under_file.to_str().unwrap(),
        ],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("data directory"), "{err}");

    let (code, _, err) = run_gapless(
        &["stats", "--data", tmp.path().join("nope").to_str().unwrap()],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
}

#[test]
fn second_instance_on_same_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    let (code, _, err) = run_gapless(
        &[
            "serve",
            "--broker",
            &broker.url(),
            "--data",
            data.to_str().unwrap(),
        ],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use"), "{err}");
    // Issue 18: the refusal names the holder.
    assert!(err.contains(&format!("pid {} on ", g.pid())), "{err}");
    assert_eq!(g.terminate(), Some(0));
}

/// The files open as they are in DuckDB and pyarrow (an auditor's tools,
/// nothing of ours): values digit for digit, reject bytes byte for byte.
/// Needs a Python with `pyarrow` and `duckdb` (`GAPLESS_PYTHON`, else
/// `python3`); `tools/test.sh` provides one, and without one this fails.
#[test]
fn duckdb_and_pyarrow_read_the_files_as_they_are() {
    let python = python_with(&["pyarrow", "duckdb"]);
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    let mut msgs = Vec::new();
    let mut want = Vec::new();
    for (i, v) in [
        "326.070",
        "0.000000001",
        "1234567890123456789.5",
        "-3",
        "42",
    ]
    .iter()
    .enumerate()
    {
        let ts = ts_of(i * 100); // spread over several days (partitions)
        msgs.push(("meters/p".to_string(), native("P-1", v, &ts, i as u64)));
        want.push(serde_json::json!(["P-1", "total", ts, v]));
    }
    let bad = b"\x00\xff not json".to_vec();
    msgs.push(("meters/bad".to_string(), bad.clone()));
    publish_all(broker.port, &msgs);
    g.wait_sealed(msgs.len() as u64, MIN);
    g.terminate();
    let expected = tmp.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({"readings": want, "rejects": [["meters/bad", hex::encode(&bad)]]})
            .to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/check_tables.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&data)
        .arg(&expected)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
}

/// `mqtts://` with `--ca-file`, a user name, and the password from
/// GAPLESS_MQTT_PASSWORD; a wrong password is a clear start-up failure.
#[test]
fn tls_with_ca_file_and_password_from_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_tls(tmp.path());
    let tls = broker.tls.as_ref().unwrap();
    let url = format!("mqtts://localhost:{}", tls.port);
    let ca = tls.ca.to_str().unwrap().to_string();
    let data = tmp.path().join("data");
    let mut g = Gapless::start_env(
        &url,
        &data,
        &["--ca-file", &ca, "--username", &tls.username],
        &[("GAPLESS_MQTT_PASSWORD", &tls.password)],
    );
    // Gateways publish on the plain listener; gapless reads over TLS.
    let msgs = stream(50, 5, "TLS");
    publish_all(broker.port, &msgs);
    let s = g.wait_readings(50, MIN);
    assert_balanced(&s);
    assert_eq!(g.terminate(), Some(0), "{}", g.log_text());

    let d = tmp.path().join("data2");
    let (code, _, err) = run_gapless_env(
        &[
            "serve",
            "--broker",
            &url,
            "--ca-file",
            &ca,
            "--username",
            &tls.username,
            "--data",
            d.to_str().unwrap(),
            "--connect-attempts",
            "2",
        ],
        &[("GAPLESS_MQTT_PASSWORD", "wrong")],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused"), "{err}");
    eprintln!("wrong password: {err}");

    // Without our CA the server certificate is not trusted.
    let (code, _, err) = run_gapless_env(
        &[
            "serve",
            "--broker",
            &url,
            "--username",
            &tls.username,
            "--data",
            d.to_str().unwrap(),
            "--connect-attempts",
            "2",
        ],
        &[("GAPLESS_MQTT_PASSWORD", &tls.password)],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the MQTT broker"), "{err}");
    assert!(
        err.contains("certificate"),
        "names the certificate problem: {err}"
    );
    eprintln!("unknown CA: {err}");
}

/// Issue 16: a duplicate of a reading 20 days old (its date compacted, the
/// service restarted: nothing of it in memory) is counted `duplicate`, not
/// stored twice; another value at that time is a `conflict`. Checked in the
/// real Parquet.
#[test]
fn late_duplicates_of_any_age_are_found_in_the_sealed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let flags = ["--compact-every", "0.3", "--compact-grace", "0"];
    let mut g = Gapless::start(&broker.url(), &data, &flags);
    // 25 days of 6-hourly readings of two meters.
    let day0 = 1_658_707_200; // 2022-07-25
    let at = |k: i64| ts(day0 + k * 6 * 3600);
    let mut msgs = Vec::new();
    for k in 0..100 {
        for m in ["L-1", "L-2"] {
            let v = format!("{}.5", 100 + k);
            msgs.push((
                format!("meters/l/{m}"),
                native(m, &v, &at(k), k as u64 % 256),
            ));
        }
    }
    // Two rounds, so that each date has two files to compact into one.
    let (even, odd): (Vec<_>, Vec<_>) = msgs.into_iter().enumerate().partition(|(i, _)| i % 4 < 2);
    publish_all(
        broker.port,
        &even.into_iter().map(|m| m.1).collect::<Vec<_>>(),
    );
    g.wait_sealed(100, MIN);
    publish_all(
        broker.port,
        &odd.into_iter().map(|m| m.1).collect::<Vec<_>>(),
    );
    g.wait_sealed(200, MIN);
    wait_compacted(&data, "2022-07-26", MIN);
    g.terminate();
    let mut g = Gapless::start(&broker.url(), &data, &flags);
    // k = 6 is 2022-07-26T12:00Z: 23 days before the newest reading.
    let late = vec![
        (
            "meters/l/L-1".to_string(),
            native("L-1", "106.5", &at(6), 6),
        ),
        (
            "meters/l/L-1".to_string(),
            native("L-1", "106.50", &at(6), 6),
        ),
        ("meters/l/L-1".to_string(), native("L-1", "999", &at(6), 6)),
        ("meters/l/L-2".to_string(), native("L-2", "999", &at(6), 6)),
        ("meters/l/L-2".to_string(), native("L-2", "999", &at(6), 6)),
    ];
    publish_all(broker.port, &late);
    let s = g.wait_sealed(205, MIN);
    assert_balanced(&s);
    assert_eq!(s["readings"]["stored"], 202, "{s}");
    assert_eq!(s["readings"]["duplicate"], 3, "{s}");
    assert_eq!(s["readings"]["conflict"], 2, "{s}");
    g.terminate();
    let keys = reading_keys(&data);
    let count = |m: &str| {
        keys.iter()
            .find(|(k, _)| k.starts_with(&format!("{m}|total|2022-07-26")) && k.contains("12:00"))
            .map(|(_, n)| *n)
    };
    assert_eq!(count("L-1"), Some(2), "the first value and the conflict");
    assert_eq!(count("L-2"), Some(2), "the first value and the conflict");
    assert_eq!(
        keys.values().filter(|&&n| n > 1).count(),
        2,
        "nothing else twice"
    );
    let rows = rows(&read_table(&data, "readings"));
    let flagged: Vec<_> = rows
        .iter()
        .filter(|r| r["conflict"] == "true")
        .map(|r| (r["meter_id"].as_str(), r["value"].as_str()))
        .collect();
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    assert!(flagged.iter().all(|f| f.1 == "999"), "{flagged:?}");
}

/// Issue 16: past `--max-registers-per-meter` distinct registers, a message
/// that adds one more is rejected with its reason and bytes; the meter's
/// known registers go on.
#[test]
fn a_meter_past_its_register_bound_is_rejected_with_reason_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &["--max-registers-per-meter", "2"]);
    let reading = |reg: &str, ts: &str| {
        format!(
            r#"{{"meter_id":"R-1","medium":"heat","register":"{reg}","unit":"kWh","value":"1","ts":"{ts}"}}"#
        )
    };
    let two = format!(
        "[{},{}]",
        reading("energy", "2022-07-25T00:00:00Z"),
        reading("volume", "2022-07-25T00:00:00Z")
    );
    let third = format!(
        "[{},{}]",
        reading("energy", "2022-07-25T01:00:00Z"),
        reading("power", "2022-07-25T01:00:00Z")
    );
    let known = reading("volume", "2022-07-25T01:00:00Z");
    let msgs = vec![
        ("meters/r".to_string(), two.into_bytes()),
        ("meters/r".to_string(), third.clone().into_bytes()),
        ("meters/r".to_string(), known.into_bytes()),
    ];
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(3, MIN);
    assert_balanced(&s);
    assert_eq!(
        (s["stored"].as_u64(), s["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    g.terminate();
    let rejects = rows(&read_table(&data, "rejects"));
    assert_eq!(rejects.len(), 1);
    let reason = &rejects[0]["reason"];
    assert!(
        reason.contains("R-1") && reason.contains("\"power\"") && reason.contains("limit of 2"),
        "{reason}"
    );
    let payload = column_strings(&read_table(&data, "rejects"), "payload");
    assert_eq!(
        payload,
        vec![hex::encode(third.as_bytes())],
        "the bytes as received"
    );
    assert_eq!(
        reading_keys(&data).len(),
        3,
        "energy, volume at 00:00; volume at 01:00"
    );
}

/// A topic filter added to the configuration is subscribed even though the
/// broker kept the session (it holds only the old filters): readings on it
/// are not silently never delivered. Restarting with the same filters does
/// not subscribe again (no replay of retained messages).
#[test]
fn a_filter_added_while_the_session_is_kept_is_subscribed() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &["--topic", "site-a/#"]);
    g.terminate();
    let both = ["--topic", "site-a/#", "--topic", "site-b/#"];
    let mut g = Gapless::start(&broker.url(), &data, &both);
    wait_for("the new filter subscribed", MIN, || {
        g.log_text().contains("topic=site-b/#").then_some(())
    });
    publish_all(
        broker.port,
        &[
            (
                "site-a/M-1".to_string(),
                native("M-1", "1", "2022-07-25T00:00:00Z", 1),
            ),
            (
                "site-b/M-2".to_string(),
                native("M-2", "2", "2022-07-25T00:00:00Z", 1),
            ),
        ],
    );
    let s = g.wait_readings(2, MIN);
    assert_balanced(&s);
    g.terminate();
    let subscribed = |g: &Gapless| g.log_text().matches("mqtt: subscribed").count();
    let before = subscribed(&g);
    let mut g = Gapless::start(&broker.url(), &data, &both);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        subscribed(&g),
        before,
        "same filters, kept session: no new SUBSCRIBE"
    );
    g.terminate();
}
