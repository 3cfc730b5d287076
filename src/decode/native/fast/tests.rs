//! The fast path against the `Value` path, over a generated corpus.

use super::decode_fast;
use crate::decode::testutil::*;
use crate::decode::{decode_with, Ctx, DecodeConfig, Decoded, Format, Path, Rejection};

/// The reading every variation starts from, as `(key, raw JSON)`.
const BASE: [(&str, &str); 7] = [
    ("meter_id", r#""HZ-000123""#),
    ("medium", r#""heat""#),
    ("register", r#""energy""#),
    ("unit", r#""kWh""#),
    ("value", r#""1234.567""#),
    ("ts", r#""2022-07-25T00:15:00Z""#),
    ("seq", "17"),
];

/// Per field: raw JSON values to put there (`None`: leave the key out).
fn field_variants() -> Vec<(&'static str, Vec<Option<&'static str>>)> {
    let common = [
        None,
        Some("null"),
        Some("true"),
        Some("[1]"),
        Some(r#"{"a":1}"#),
    ];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<Option<&'static str>> = common.to_vec();
        v.extend(extra.iter().map(|s| Some(*s)));
        v
    };
    vec![
        (
            "meter_id",
            with(&[
                r#""W-1""#,
                r#""has space""#,
                r#""""#,
                "123",
                r#""HZ\u002d000123""#,
                r#""HZ\/1""#,
                r#""\ud800""#,
                r#""\ud83d\ude00""#,
                r#""é""#,
            ]),
        ),
        (
            "medium",
            with(&[
                r#""water""#,
                r#""warm_water""#,
                r#""gas""#,
                r#""Heat""#,
                r#""cold water""#,
                "1",
                r#""he\u0061t""#,
                r#""heat\n""#,
            ]),
        ),
        (
            "register",
            with(&[
                r#""total""#,
                r#""Energy""#,
                r#""""#,
                "1",
                r#""a_b1""#,
                r#""en\u0065rgy""#,
                r#""energy\t""#,
            ]),
        ),
        (
            "unit",
            with(&[
                r#""m3""#,
                r#""m³""#,
                r#""m\u00b3""#,
                r#""KWH""#,
                r#"" kWh ""#,
                r#""furlong""#,
                "3",
                r#""k\u0057h""#,
            ]),
        ),
        (
            "value",
            with(&[
                "1234.567",
                "1.50",
                "0",
                "-0",
                "-1.5",
                "1E3",
                "1e3",
                "1e+3",
                "1E-3",
                "15e-1",
                "-1.5E+2",
                "1e40",
                "1e-10",
                "0.0000000001",
                "12345678901234567890.123456789",
                "18446744073709551616",
                r#""1E3""#,
                r#""NaN""#,
                r#""Infinity""#,
                r#""""#,
                r#""1,5""#,
                r#""+1.5""#,
                r#""1\u002e5""#,
                r#""1.5 ""#,
            ]),
        ),
        (
            "ts",
            with(&[
                r#""2022-07-25T02:15:00+02:00""#,
                r#""2022-07-25T00:15:00.123456789Z""#,
                r#""2022-07-25t00:15:00z""#,
                r#""2022-07-25 00:15:00Z""#,
                r#""2022-07-25T00:15:60Z""#,
                r#""2127-01-01T00:00:00Z""#,
                r#""2026-07-12T10:50:30Z""#,
                r#""2026-07-12T10:50:31Z""#,
                r#""1999-06-01T00:00:00Z""#,
                r#""1999-12-31T23:00:00-01:00""#,
                r#""2022-07-25""#,
                r#""2022-07-25T00:15:00""#,
                r#""2022-02-30T00:00:00Z""#,
                "1658708100",
                r#""2022-07-25T00:15:00\u005a""#,
            ]),
        ),
        (
            "seq",
            with(&[
                "0",
                "-0",
                "-1",
                "1.5",
                "17.0",
                "1e2",
                "1E2",
                r#""17""#,
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775809",
            ]),
        ),
        (
            "kind",
            with(&[
                r#""measured""#,
                r#""set_date""#,
                r#""estimated""#,
                r#""set\u005fdate""#,
                "1",
            ]),
        ),
    ]
}

/// Fields added beside the reading's own.
fn extras() -> Vec<(String, String)> {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_obj = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let mut v: Vec<(String, String)> = [
        ("extra", r#"{"ignored":true}"#),
        ("extra", r#"[1,2.5e3,"x",null,{"y":[]}]"#),
        ("extra", "1E400"),
        ("extra", r#""\ud800""#),
        ("extra", r#""\ud800\udc00""#),
        ("extra", r#"["a\"]b"]"#),
        ("extra", r#"{"s":"\\u005b[["}"#),
        ("_", r#""telegram""#),
        ("_", r#""status""#),
        ("deviceInfo", "{}"),
        ("deduplicationId", r#""x""#),
        ("end_device_ids", "{}"),
        ("uplink_message", "{}"),
        ("meter\\u005fid", r#""X-9""#),
        ("unit\\u0020", r#""furlong""#),
        ("Value", "1"),
        ("", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Around serde_json's nesting limit (128 with the payload itself).
    for n in [124, 125, 126, 127] {
        v.push(("deep".into(), deep(n)));
        v.push(("deep".into(), deep_obj(n)));
    }
    v
}

/// One object from `(key, raw)` pairs, in whitespace style `ws`.
fn object(fields: &[(&str, &str)], ws: usize) -> String {
    let (open, colon, comma, close) = match ws % 4 {
        0 => ("{", ":", ",", "}"),
        1 => ("{ ", ": ", ", ", " }"),
        2 => ("{\n\t", " :\t", ",\n\t", "\n}"),
        _ => ("\r\n{\r\n  ", " : ", " ,\r\n  ", "\r\n}\r\n"),
    };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\"{colon}{v}"))
        .collect();
    format!("{open}{}{close}", body.join(comma))
}

fn base() -> Vec<(&'static str, &'static str)> {
    BASE.to_vec()
}

/// `base` with `key` set to `raw` (in place, else appended) or removed.
fn set<'a>(
    mut fields: Vec<(&'a str, &'a str)>,
    key: &'a str,
    raw: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    match (fields.iter().position(|(k, _)| *k == key), raw) {
        (Some(i), Some(r)) => fields[i].1 = r,
        (Some(i), None) => {
            fields.remove(i);
        }
        (None, Some(r)) => fields.push((key, r)),
        (None, None) => {}
    }
    fields
}

/// Reading objects (as field lists) covering every variation.
fn objects() -> Vec<Vec<(String, String)>> {
    let own = |f: Vec<(&str, &str)>| -> Vec<(String, String)> {
        f.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let variants = field_variants();
    let mut out = vec![own(base())];
    // One field changed.
    for (key, raws) in &variants {
        for raw in raws {
            out.push(own(set(base(), key, *raw)));
        }
    }
    // Two fields changed: which error comes first.
    let bad: Vec<(&str, Option<&str>)> = vec![
        ("meter_id", Some("123")),
        ("meter_id", Some(r#""has space""#)),
        ("medium", Some(r#""gas""#)),
        ("medium", None),
        ("register", Some("1")),
        ("unit", Some(r#""furlong""#)),
        ("value", Some("true")),
        ("value", Some(r#""NaN""#)),
        ("ts", Some("1")),
        ("ts", Some(r#""2127-01-01T00:00:00Z""#)),
        ("seq", Some("-1")),
        ("kind", Some(r#""estimated""#)),
        ("kind", Some(r#""set_date""#)),
    ];
    for (i, (k1, r1)) in bad.iter().enumerate() {
        for (k2, r2) in &bad[i + 1..] {
            if k1 != k2 {
                out.push(own(set(set(base(), k1, *r1), k2, *r2)));
            }
        }
    }
    // Extra fields, after and before the reading's own.
    for (k, v) in extras() {
        let mut after = own(base());
        after.push((k.clone(), v.clone()));
        out.push(after);
        let mut before = own(base());
        before.insert(0, (k, v));
        out.push(before);
    }
    // Duplicate keys: the last one counts.
    for (key, raws) in &variants {
        for raw in raws.iter().flatten().take(6) {
            let good = BASE.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
            let mut first = own(base());
            first.insert(0, (key.to_string(), raw.to_string()));
            out.push(first);
            if let Some(good) = good {
                let mut last = own(set(base(), key, Some(good)));
                last.push((key.to_string(), raw.to_string()));
                out.push(last);
            }
        }
    }
    out
}

/// Payloads: each object alone and inside arrays, plus odd shapes.
fn payloads() -> Vec<String> {
    let good = object(&base(), 0);
    let future_set_date = object(
        &set(
            set(base(), "kind", Some(r#""set_date""#)),
            "ts",
            Some(r#""2127-07-01T00:00:00Z""#),
        ),
        0,
    );
    let mut out = Vec::new();
    for (i, fields) in objects().iter().enumerate() {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let obj = object(&pairs, i);
        out.push(format!("[{good},{obj}]"));
        if i % 3 == 0 {
            out.push(format!(" [ {obj} , {good} ]\n"));
            out.push(format!("[{future_set_date},{obj}]"));
        }
        out.push(obj);
    }
    for s in [
        "[]",
        " [ ] ",
        "[1]",
        "[null]",
        "[[]]",
        "[{}]",
        "{}",
        "17",
        "null",
        r#""text""#,
        r#"{"meter_id":null}"#,
        r#"{"meter_id":"x"}"#,
    ] {
        out.push(s.to_owned());
    }
    for s in [
        format!("[{good},]"),
        format!("[{good}] x"),
        format!("{good}{good}"),
        format!("[[{good}]]"),
        format!("[{good},[{good}]]"),
        format!("[{good},{good},{future_set_date}]"),
        format!("[{future_set_date}]"),
        future_set_date.clone(),
        format!("[{future_set_date},{future_set_date}]"),
        format!("\u{a0}{good}"),
        format!("\u{c}{good}"),
        format!("{good}\u{c}"),
        good[..good.len() - 1].to_owned(),
        good.replace("17}", "17,}"),
        good.replace(':', "::"),
        good.replace("\"seq\":17", "\"seq\":017"),
        good.replace("\"seq\":17", "\"seq\":1."),
        good.replace("\"seq\":17", "\"seq\":1e"),
        good.replace("\"seq\":17", "\"seq\":NaN"),
        good.replace("\"seq\":17", "\"seq\":\"a\tb\""),
    ] {
        out.push(s);
    }
    out
}

/// `Result<Decoded, Rejection>` made comparable.
fn key(r: Result<Decoded, Rejection>) -> Result<(Format, String, Vec<String>), Rejection> {
    r.map(|d| (d.format, format!("{:?}", d.readings), d.notes))
}

#[test]
fn fast_path_matches_value_path() {
    let recv = us(RECV);
    let unpinned = DecodeConfig::default();
    let pinned = DecodeConfig {
        pinned: vec![("native/#".into(), Format::Native)],
        ..DecodeConfig::default()
    };
    let ctx = Ctx {
        received_at: recv,
        max_future_skew: unpinned.max_future_skew_micros,
    };
    let payloads = payloads();
    assert!(payloads.len() > 700, "{}", payloads.len());
    let (mut fast, mut fast_ok, mut fast_err) = (0, 0, 0);
    for payload in &payloads {
        for (topic, cfg, detect) in [("t", &unpinned, true), ("native/x", &pinned, false)] {
            let want = key(decode_with(
                topic,
                payload.as_bytes(),
                recv,
                cfg,
                Path::Tree,
            ));
            let got = key(decode_with(
                topic,
                payload.as_bytes(),
                recv,
                cfg,
                Path::Fast,
            ));
            assert_eq!(got, want, "topic {topic}, payload: {payload}");
            if let Some(r) = decode_fast(payload, &ctx, detect) {
                // What the fast path settles is native's to settle.
                assert!(
                    matches!(&want, Ok((Format::Native, ..)))
                        || matches!(&want, Err(r) if r.format == Some(Format::Native)),
                    "{payload}"
                );
                fast += 1;
                if r.is_ok() {
                    fast_ok += 1;
                } else {
                    fast_err += 1;
                }
            }
        }
    }
    // The comparison is not vacuous: most messages take the fast path,
    // accepted and rejected ones alike.
    let total = 2 * payloads.len();
    assert!(fast * 10 > total * 7, "{fast} of {total} on the fast path");
    assert!(
        fast_ok > 300 && fast_err > 300,
        "{fast_ok} accepted, {fast_err} rejected"
    );
}

#[test]
fn fast_path_takes_the_common_shapes() {
    let ctx = Ctx {
        received_at: us(RECV),
        max_future_skew: 86_400_000_000,
    };
    let good = object(&base(), 0);
    for payload in [
        good.clone(),
        object(&base(), 2),
        format!("[{good},{good}]"),
        object(&set(base(), "value", Some("1E3")), 0),
        object(&set(base(), "meter_id", Some(r#""HZ\u002d1""#)), 0),
        object(&set(base(), "medium", Some(r#""gas""#)), 0),
        object(&set(base(), "seq", Some("null")), 0),
        "[]".to_owned(),
    ] {
        assert!(decode_fast(&payload, &ctx, true).is_some(), "{payload}");
    }
    for payload in [
        // Other formats, and what only the Value path can judge.
        r#"{"_":"telegram","meter_id":"x"}"#.to_owned(),
        object(&set(base(), "meter_id", None), 0),
        object(&set(base(), "value", Some("[1]")), 0),
        object(&set(base(), "meter_id", Some(r#""\ud800""#)), 0),
        "{".to_owned(),
        "17".to_owned(),
    ] {
        assert!(decode_fast(&payload, &ctx, true).is_none(), "{payload}");
    }
    let r = decode_fast(&object(&set(base(), "value", Some("1E3")), 0), &ctx, true);
    assert_eq!(r.unwrap().unwrap().readings[0].value.as_str(), "1e+3");
}

/// `seq` and `value` follow `serde_json::Number`'s own accessors
/// (`as_u64`, `as_str`), which the rules were first written against.
#[test]
fn seq_and_value_follow_serde_json_number() {
    use crate::reading::Decimal;
    use serde_json::Value;
    let variants = field_variants();
    for field in ["seq", "value"] {
        let raws = &variants.iter().find(|(k, _)| *k == field).unwrap().1;
        for raw in raws {
            let payload = object(&set(base(), field, *raw), 0);
            let v: Value = match serde_json::from_str(&payload) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let got = dec("t", &payload);
            match (field, &v[field]) {
                ("seq", Value::Number(n)) => match n.as_u64() {
                    Some(seq) => assert_eq!(got.unwrap().readings[0].seq, Some(seq)),
                    None => {
                        assert_eq!(got.unwrap_err().reason, "seq must be an unsigned integer")
                    }
                },
                ("value", Value::Number(n)) => match Decimal::parse(n.as_str()) {
                    Ok(d) => assert_eq!(got.unwrap().readings[0].value, d),
                    Err(why) => {
                        assert_eq!(got.unwrap_err().reason, format!("field \"value\": {why}"))
                    }
                },
                ("value", Value::String(s)) => match Decimal::parse(s) {
                    Ok(d) => assert_eq!(got.unwrap().readings[0].value, d),
                    Err(why) => {
                        assert_eq!(got.unwrap_err().reason, format!("field \"value\": {why}"))
                    }
                },
                _ => {}
            }
        }
    }
}

#[test]
fn number_text_matches_serde_json() {
    for lit in [
        "0",
        "-0",
        "1.50",
        "1e3",
        "1E3",
        "1e+3",
        "1E+3",
        "1e-3",
        "1E-3",
        "-2.5E10",
        "123456789012345678901234567890",
    ] {
        let v: serde_json::Value = serde_json::from_str(lit).unwrap();
        assert_eq!(
            super::number_text(lit),
            v.as_number().unwrap().as_str(),
            "{lit}"
        );
    }
}

#[test]
fn nesting_depth_skips_strings() {
    assert_eq!(super::nesting_depth(b"1"), 0);
    assert_eq!(super::nesting_depth(b"[1,[2]]"), 2);
    assert_eq!(super::nesting_depth(br#"{"a":"[[\"{"}"#), 1);
    assert_eq!(super::nesting_depth(br#"["\\",[[]]]"#), 3);
}
