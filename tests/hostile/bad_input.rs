//! Issue 18: each class of bad input, through the real broker and the real
//! binary: every message ends up in the `rejects` table with its raw bytes
//! and the reason expected for its class (read back from the Parquet
//! files), the good messages around them are stored, and the books balance
//! (delivered = stored + duplicate + rejected). The README's bad-input
//! table is this list.

use std::time::Duration;

use crate::support::*;

const TS: &str = "2024-01-01T00:00:00Z";

fn native_value(value: &str) -> Vec<u8> {
    format!(r#"{{"meter_id":"BAD-1","medium":"water","unit":"m3","value":{value},"ts":"{TS}"}}"#)
        .into_bytes()
}

fn native_field(field: &str, text: &str) -> Vec<u8> {
    let mut o =
        serde_json::json!({"meter_id":"BAD-1","medium":"water","unit":"m3","value":"1","ts":TS});
    o[field] = text.into();
    o.to_string().into_bytes()
}

/// (class, expected part of the reason, payload). Keep in step with the
/// README table (/tmp/notes/hostile-readme.md while it is merged).
fn corpus() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let long = "x".repeat(100_000);
    vec![
        ("malformed JSON", "not valid JSON", b"{\"meter_id\":\"X\",".to_vec()),
        ("malformed JSON", "not valid JSON", b"{\"meter_id\" \"X\"}".to_vec()),
        ("malformed JSON", "not valid JSON", native_value("01")),
        ("huge number", "too large", native_value("1e40")),
        ("huge number", "too many digits", native_value(&"9".repeat(5_000))),
        ("huge number", "too large", native_value(&format!("\"{}\"", "9".repeat(35)))),
        ("huge number", "seq must be an unsigned integer", {
            let mut p = native_value("1");
            p.truncate(p.len() - 1);
            p.extend_from_slice(format!(",\"seq\":{}}}", "9".repeat(400)).as_bytes());
            p
        }),
        ("long string", "invalid meter_id", native_field("meter_id", &long)),
        ("long string", "invalid register", native_field("register", &long)),
        ("long string", "unknown unit", native_field("unit", &long)),
        ("long string", "must be an RFC 3339 timestamp", native_field("ts", &long)),
        ("deep nesting", "recursion limit", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
        ("deep nesting", "recursion limit", format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes()),
        ("invalid UTF-8", "not valid UTF-8", {
            let mut p = native_field("meter_id", "BAD-1");
            p[15] = 0xC3; // a lead byte whose continuation is missing
            p
        }),
        ("invalid UTF-8", "not valid UTF-8", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("oversized message", "exceeds the limit", {
            let mut p = native_field("meter_id", "BAD-1");
            p.extend(std::iter::repeat_n(b' ', 300 * 1024));
            p
        }),
        ("unknown register", "invalid register", native_field("register", "Energy-Total")),
        ("unknown register", "no meter register", br#"{"_":"telegram","media":"water","meter":"x","name":"w","id":"12345678","voltage_v":230,"timestamp":"2024-01-01T00:00:00Z"}"#.to_vec()),
        ("hostile exponent", "exponent out of range", native_value("0e200000000")),
        ("hostile exponent", "exponent out of range", native_value("1e-2147483648")),
        ("hostile exponent", "exponent out of range", native_value("\"-0E+99999999999999999999\"")),
        ("hostile exponent", "exponent out of range", native_value(&format!("1e{}", "9".repeat(10_000)))),
    ]
}

#[test]
fn each_class_of_bad_input_is_rejected_with_its_bytes_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    let corpus = corpus();
    let good = |i: usize| {
        format!(
            r#"{{"meter_id":"OK-{i}","medium":"water","unit":"m3","value":"{i}.5","ts":"{TS}"}}"#
        )
        .into_bytes()
    };
    // Good messages between the bad ones, and one duplicate, so that the
    // books have every column to balance.
    let mut msgs: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (_, _, payload)) in corpus.iter().enumerate() {
        msgs.push((format!("meters/bad/{i}"), payload.clone()));
        msgs.push((format!("meters/good/{i}"), good(i)));
    }
    msgs.push(("meters/good/dup".into(), good(0)));
    publish_all(broker.port, &msgs);
    let s = g.wait_sealed(msgs.len() as u64, Duration::from_secs(120));
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(n("delivered"), msgs.len() as u64, "{s}");
    assert_eq!(
        n("delivered"),
        n("stored") + n("duplicate") + n("rejected"),
        "{s}"
    );
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(n("rejected"), corpus.len() as u64, "{s}");
    assert_eq!(n("duplicate"), 1, "{s}");
    assert_eq!(
        n("stored"),
        corpus.len() as u64,
        "every good message is stored: {s}"
    );
    assert!(g.is_alive(), "service alive after the bad input");

    let rejects = rows(&read_table(&data, "rejects"));
    let mut by_topic = std::collections::HashMap::new();
    for r in &rejects {
        by_topic.insert(r["topic"].clone(), r);
    }
    for (i, (class, want, payload)) in corpus.iter().enumerate() {
        let r = by_topic
            .get(&format!("meters/bad/{i}"))
            .unwrap_or_else(|| panic!("{class} #{i} is not in rejects"));
        assert!(
            r["reason"].contains(want),
            "{class} #{i}: reason {:?} should say {want:?}",
            r["reason"]
        );
        assert!(
            r["reason"].len() < 1_000,
            "{class} #{i}: the reason repeats the input: {} bytes",
            r["reason"].len()
        );
        assert!(
            r["payload"] == hex::encode(payload),
            "{class} #{i}: the raw bytes are not kept"
        );
    }
    assert_eq!(g.terminate(), Some(0));
}
