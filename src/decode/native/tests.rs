//! The native format's decode tests (both paths, through `decode`).

use super::super::testutil::*;
use super::super::{decode, DecodeConfig, Format, UNRECOGNISED};
use crate::reading::{Medium, ReadingKind, Unit};
use serde_json::{json, Value};

/// A valid native object with `field` replaced (or removed when `None`).
fn with(field: &str, value: Option<Value>) -> String {
    let mut v = json!({
        "meter_id": "HZ-000123", "medium": "heat", "register": "energy",
        "unit": "kWh", "value": "1234.567", "ts": "2022-07-25T00:15:00Z", "seq": 17
    });
    let obj = v.as_object_mut().unwrap();
    match value {
        Some(x) => {
            obj.insert(field.into(), x);
        }
        None => {
            obj.remove(field);
        }
    }
    v.to_string()
}

#[test]
fn happy_path_single_object() {
    let d = ok("t", &with("extra_field", Some(json!({"ignored": true}))));
    assert_eq!(d.format, Format::Native);
    let r = &d.readings[0];
    assert_eq!(
        (r.meter_id.as_str(), r.medium, r.register.as_str(), r.unit),
        ("HZ-000123", Medium::Heat, "energy", Unit::KWh)
    );
    assert_eq!(r.value.as_str(), "1234.567");
    assert_eq!(r.value.scaled(), 1_234_567_000_000);
    assert_eq!(r.ts_micros, us("2022-07-25T00:15:00Z"));
    assert_eq!(r.seq, Some(17));
    assert_eq!(r.kind, ReadingKind::Measured);
}

#[test]
fn values_are_kept_digit_for_digit() {
    // Raw JSON text, so the number literal reaches the decoder untouched.
    let cases = [
        (r#""326.069""#, "326.069"),
        ("326.069", "326.069"),
        (r#""1.50""#, "1.50"),
        ("1.50", "1.50"),
        ("1.500000000", "1.500000000"),
        ("0", "0"),
        (
            "12345678901234567890.123456789",
            "12345678901234567890.123456789",
        ),
        // serde_json normalises the exponent marker (value unchanged).
        ("1E3", "1e+3"),
        ("15e-1", "15e-1"),
    ];
    for (json_value, text) in cases {
        let payload = format!(
            r#"{{"meter_id":"W-1","medium":"water","unit":"m3","value":{json_value},"ts":"2024-03-03T18:37:00Z"}}"#
        );
        let d = ok("t", &payload);
        assert_eq!(d.readings[0].value.as_str(), text, "{json_value}");
    }
}

#[test]
fn defaults_and_optional_fields() {
    let d = ok("t", &with("register", None));
    assert_eq!(d.readings[0].register, "total");
    let d = ok("t", &with("seq", None));
    assert_eq!(d.readings[0].seq, None);
    let d = ok("t", &with("seq", Some(Value::Null)));
    assert_eq!(d.readings[0].seq, None);
    let d = ok("t", &with("seq", Some(json!(0))));
    assert_eq!(d.readings[0].seq, Some(0));
    let d = ok("t", &with("seq", Some(json!(u64::MAX))));
    assert_eq!(d.readings[0].seq, Some(u64::MAX));
    let d = ok("t", &with("kind", Some(json!("measured"))));
    assert_eq!(d.readings[0].kind, ReadingKind::Measured);
    let d = ok("t", &with("kind", Some(json!("set_date"))));
    assert_eq!(d.readings[0].kind, ReadingKind::SetDate);
    // Offsets are converted to UTC; sub-microsecond digits truncated.
    let d = ok("t", &with("ts", Some(json!("2022-07-25T02:15:00+02:00"))));
    assert_eq!(d.readings[0].ts_micros, us("2022-07-25T00:15:00Z"));
    let d = ok(
        "t",
        &with("ts", Some(json!("2022-07-25T00:15:00.123456789Z"))),
    );
    assert_eq!(d.readings[0].ts_micros, us("2022-07-25T00:15:00.123456Z"));
    // Units parse leniently, store canonically.
    let d = ok("t", &with("unit", Some(json!("m³"))));
    assert_eq!(d.readings[0].unit, Unit::M3);
    let d = ok("t", &with("unit", Some(json!("KWH"))));
    assert_eq!(d.readings[0].unit, Unit::KWh);
    for medium in ["heat", "cooling", "water", "warm_water", "hca"] {
        let d = ok("t", &with("medium", Some(json!(medium))));
        assert_eq!(d.readings[0].medium.as_str(), medium);
    }
}

#[test]
fn field_rejections() {
    let cases: Vec<(String, &str)> = vec![
        (with("medium", None), "missing field \"medium\""),
        (with("unit", None), "missing field \"unit\""),
        (with("value", None), "missing field \"value\""),
        (with("ts", None), "missing field \"ts\""),
        (with("unit", Some(Value::Null)), "missing field \"unit\""),
        (
            with("meter_id", Some(json!("has space"))),
            "invalid meter_id \"has space\": character ' ' is not one of A-Za-z0-9._:-",
        ),
        (
            with("meter_id", Some(json!(""))),
            "invalid meter_id \"\": must be 1-128 characters",
        ),
        (with("meter_id", Some(json!(123))), "field \"meter_id\" must be a string"),
        (with("medium", Some(json!("gas"))), "unknown medium \"gas\""),
        // Native is strict: wmbusmeters spellings are not accepted here.
        (with("medium", Some(json!("cold water"))), "unknown medium \"cold water\""),
        (with("medium", Some(json!("Heat"))), "unknown medium \"Heat\""),
        (with("unit", Some(json!("furlong"))), "unknown unit \"furlong\""),
        (with("unit", Some(json!(3))), "field \"unit\" must be a string"),
        (
            with("register", Some(json!("Energy"))),
            "invalid register \"Energy\": must be 1-64 characters of a-z0-9_",
        ),
        (with("register", Some(json!(1))), "field \"register\" must be a string"),
        (
            with("value", Some(json!(true))),
            "field \"value\" must be a number or decimal string",
        ),
        (
            with("value", Some(json!([1]))),
            "field \"value\" must be a number or decimal string",
        ),
        (
            with("value", Some(json!("NaN"))),
            "field \"value\": invalid value \"NaN\": not a decimal number",
        ),
        (
            with("value", Some(json!("Infinity"))),
            "field \"value\": invalid value \"Infinity\": not a decimal number",
        ),
        (
            with("value", Some(json!("-inf"))),
            "field \"value\": invalid value \"-inf\": not a decimal number",
        ),
        (
            with("value", Some(json!("1,5"))),
            "field \"value\": invalid value \"1,5\": not a decimal number",
        ),
        (
            with("value", Some(json!(""))),
            "field \"value\": invalid value \"\": empty",
        ),
        (
            with("value", Some(json!("0.0000000001"))),
            "field \"value\": invalid value \"0.0000000001\": more than 9 decimal places",
        ),
        (
            with("ts", Some(json!("2022-07-25T00:15:00"))),
            "field \"ts\" must be an RFC 3339 timestamp with offset, got \"2022-07-25T00:15:00\"",
        ),
        (
            with("ts", Some(json!("2022-07-25"))),
            "field \"ts\" must be an RFC 3339 timestamp with offset, got \"2022-07-25\"",
        ),
        (with("ts", Some(json!(1658708100))), "field \"ts\" must be a string"),
        (with("seq", Some(json!(-1))), "seq must be an unsigned integer"),
        (with("seq", Some(json!(1.5))), "seq must be an unsigned integer"),
        (with("seq", Some(json!("17"))), "seq must be an unsigned integer"),
        (
            with("kind", Some(json!("estimated"))),
            "unknown kind \"estimated\" (expected \"measured\" or \"set_date\")",
        ),
        (
            with("ts", Some(json!("2127-01-01T00:00:00Z"))),
            "timestamp 2127-01-01T00:00:00Z is more than 86400 s ahead of receive time 2026-07-11T10:50:30Z",
        ),
        (
            with("ts", Some(json!("1999-06-01T00:00:00Z"))),
            "timestamp 1999-06-01T00:00:00Z is before 2000-01-01",
        ),
    ];
    for (payload, reason) in cases {
        let r = err("t", &payload);
        assert_eq!(r.reason, reason, "{payload}");
        assert_eq!(r.format, Some(Format::Native));
    }
    // Without meter_id the payload is not recognisably native, unless pinned.
    assert_eq!(err("t", &with("meter_id", None)).reason, UNRECOGNISED);
    let cfg = DecodeConfig {
        pinned: vec![("native/#".into(), Format::Native)],
        ..DecodeConfig::default()
    };
    let r = decode(
        "native/x",
        with("meter_id", None).as_bytes(),
        us(RECV),
        &cfg,
    )
    .unwrap_err();
    assert_eq!(r.reason, "missing field \"meter_id\"");
    assert_eq!(r.format, Some(Format::Native));
    let r = decode("native/x", b"17", us(RECV), &cfg).unwrap_err();
    assert_eq!(
        r.reason,
        "native payload must be a JSON object or an array of objects"
    );
    // seq beyond u64.
    let big = with("seq", Some(json!(1))).replace("\"seq\":1", "\"seq\":18446744073709551616");
    assert_eq!(err("t", &big).reason, "seq must be an unsigned integer");
    // A number literal the decimal column cannot hold.
    let huge = with("value", Some(json!(1))).replace("\"value\":1", "\"value\":1e40");
    assert_eq!(
        err("t", &huge).reason,
        "field \"value\": invalid value \"1e+40\": too large"
    );
}

#[test]
fn arrays_are_atomic_and_name_the_element() {
    let good = with("seq", Some(json!(1)));
    let gas = with("medium", Some(json!("gas")));
    let payload = format!("[{good},{good},{good},{gas}]");
    let r = err("t", &payload);
    assert_eq!(r.reason, "element 3: unknown medium \"gas\"");
    assert_eq!(r.format, Some(Format::Native));
    let payload = format!("[{good}, 42]");
    assert_eq!(
        err("t", &payload).reason,
        "element 1: must be a JSON object"
    );
    let payload = format!("[{good}, {}]", with("unit", None));
    assert_eq!(
        err("t", &payload).reason,
        "element 1: missing field \"unit\""
    );

    let r = err("t", "[]");
    assert_eq!(r.reason, "no meter register in payload (empty array)");
    assert_eq!(r.format, Some(Format::Native));

    let payload = format!("[{good},{}]", with("seq", Some(json!(18))));
    let d = ok("t", &payload);
    assert_eq!(d.readings.len(), 2);
    assert_eq!(d.readings[1].seq, Some(18));
}

#[test]
fn scalar_payloads_are_not_native() {
    // Unpinned scalars are unrecognised; pinned native says what it wants.
    assert_eq!(err("t", "17").reason, UNRECOGNISED);
}

/// `schemas/reading.schema.json` documents what this decoder does.
#[test]
fn schema_matches_the_decoder() {
    let schema: Value =
        serde_json::from_str(include_str!("../../../schemas/reading.schema.json")).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let reading = &schema["$defs"]["reading"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        strings(&reading["required"]),
        ["meter_id", "medium", "unit", "value", "ts"]
    );
    assert_eq!(
        strings(&reading["properties"]["medium"]["enum"]),
        Medium::ALL.map(Medium::as_str)
    );
    assert_eq!(
        strings(&reading["properties"]["kind"]["enum"]),
        [
            ReadingKind::Measured.as_str(),
            ReadingKind::SetDate.as_str()
        ]
    );
    assert_eq!(reading["properties"]["register"]["default"], "total");
    for unit in Unit::ALL {
        assert!(
            reading["properties"]["unit"]["description"]
                .as_str()
                .unwrap()
                .contains(unit.as_str()),
            "{unit}"
        );
    }
    let examples = schema["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2);
    for example in examples {
        let d = ok("t", &example.to_string());
        assert_eq!(d.format, Format::Native);
        assert!(d.notes.is_empty());
    }
}

#[test]
fn out_of_range_set_dates_are_skipped_with_a_note() {
    let sentinel = with("kind", Some(json!("set_date")))
        .replace("2022-07-25T00:15:00Z", "2127-07-01T00:00:00Z");
    let good = with("kind", Some(json!("set_date")));
    let d = ok("t", &format!("[{good},{sentinel}]"));
    assert_eq!(d.readings.len(), 1);
    assert_eq!(
        d.notes,
        ["skipped element 1, register \"energy\": set date 2127-07-01T00:00:00Z is in the future"]
    );
    let r = err("t", &sentinel);
    assert_eq!(
        r.reason,
        "no meter register in payload (skipped register \"energy\": set date 2127-07-01T00:00:00Z is in the future)"
    );
    let old = with("kind", Some(json!("set_date")))
        .replace("2022-07-25T00:15:00Z", "1999-11-30T00:00:00Z");
    let r = err("t", &format!("[{old}]"));
    assert_eq!(
        r.reason,
        "no meter register in payload (skipped element 0, register \"energy\": set date 1999-11-30T00:00:00Z is before 2000-01-01)"
    );
}
