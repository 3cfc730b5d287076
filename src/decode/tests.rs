//! The decode stage's tests over every format: detection, pinning by
//! topic, the time bounds, the reasons.

use super::testutil::*;
use super::*;
use crate::reading::ReadingKind;

const NATIVE: &str = r#"{"meter_id":"HZ-000123","medium":"heat","register":"energy","unit":"kWh","value":"1234.567","ts":"2022-07-25T00:15:00Z","seq":17}"#;

#[test]
fn envelope_rejections_in_order() {
    let cfg = DecodeConfig {
        max_payload_bytes: 10,
        ..DecodeConfig::default()
    };
    let recv = us(RECV);
    // Size is checked before UTF-8 and JSON.
    let r = decode("t", &[0xff; 11], recv, &cfg).unwrap_err();
    assert_eq!(
        r.reason,
        "payload of 11 bytes exceeds the limit of 10 bytes"
    );
    assert_eq!(r.format, None);
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty payload"),
        (b"  \n", "empty payload (only whitespace)"),
        (b"{\"a\":\xff}", "payload is not valid UTF-8 (at byte 5)"),
        (b"\xc3", "payload is not valid UTF-8 (at byte 0)"),
    ];
    for (payload, reason) in cases {
        let r = decode("t", payload, recv, &cfg).unwrap_err();
        assert_eq!(&r.reason, reason, "{payload:?}");
        assert_eq!(r.format, None);
    }
    let cfg = DecodeConfig::default();
    for bad in [
        "{",
        "NaN",
        "[1, NaN]",
        r#"{"value": Infinity}"#,
        "{'a':1}",
        "[] x",
    ] {
        let r = decode("t", bad.as_bytes(), recv, &cfg).unwrap_err();
        assert!(
            r.reason.starts_with("payload is not valid JSON: "),
            "{bad}: {}",
            r.reason
        );
    }
}

#[test]
fn payload_exactly_at_the_limit_is_read() {
    let cfg = DecodeConfig {
        max_payload_bytes: NATIVE.len(),
        ..DecodeConfig::default()
    };
    assert!(decode("t", NATIVE.as_bytes(), us(RECV), &cfg).is_ok());
}

#[test]
fn unrecognised_shapes() {
    for payload in [
        "{}",
        r#"{"temperature": 21.5}"#,
        "42",
        r#""text""#,
        "null",
        r#"{"_":"status","id":"1"}"#,
    ] {
        let r = err("t", payload);
        assert_eq!(r.reason, UNRECOGNISED, "{payload}");
        assert_eq!(r.format, None);
    }
}

#[test]
fn auto_detection() {
    let cases = [
        (NATIVE, Format::Native),
        (&format!("[{NATIVE}]") as &str, Format::Native),
        (
            r#"{"_":"telegram","media":"water","meter":"x","id":"1","total_m3":1,"timestamp":"2024-03-03T18:37:00Z"}"#,
            Format::Wmbusmeters,
        ),
        (
            r#"{"media":"water","meter":"x","id":"1","total_m3":1,"timestamp":"2024-03-03T18:37:00Z"}"#,
            Format::Wmbusmeters,
        ),
        (
            r#"{"deviceInfo":{"devEui":"0101010101010101"},"time":"2024-03-03T18:37:00Z","object":{"total_m3":1}}"#,
            Format::Chirpstack,
        ),
        (
            r#"{"end_device_ids":{"device_id":"dev1"},"received_at":"2024-03-03T18:37:00Z","uplink_message":{"decoded_payload":{"total_m3":1}}}"#,
            Format::Tts,
        ),
    ];
    for (payload, format) in cases {
        assert_eq!(ok("t", payload).format, format, "{payload}");
    }
    // Recognised but invalid: the rejection names the format.
    assert_eq!(
        err("t", r#"{"deduplicationId":"x"}"#).format,
        Some(Format::Chirpstack)
    );
    assert_eq!(
        err("t", r#"{"end_device_ids":{},"uplink_message":{}}"#).format,
        Some(Format::Tts)
    );
    assert_eq!(err("t", r#"{"meter_id":"x"}"#).format, Some(Format::Native));
    assert_eq!(
        err("t", r#"{"_":"telegram"}"#).format,
        Some(Format::Wmbusmeters)
    );
}

#[test]
fn pinned_format_wins_and_first_match_wins() {
    let cfg = DecodeConfig {
        pinned: vec![
            ("wmbusmeters/#".into(), Format::Wmbusmeters),
            ("+/water/+".into(), Format::Native),
            ("plant/#".into(), Format::Native),
        ],
        ..DecodeConfig::default()
    };
    let recv = us(RECV);
    // A native payload on a wmbusmeters-pinned topic is decoded as wmbusmeters.
    let r = decode("wmbusmeters/kitchen", NATIVE.as_bytes(), recv, &cfg).unwrap_err();
    assert_eq!(r.format, Some(Format::Wmbusmeters));
    assert_eq!(r.reason, "missing field \"id\"");
    // Pinned topics report their format even for envelope failures.
    let r = decode("wmbusmeters/kitchen", b"{", recv, &cfg).unwrap_err();
    assert_eq!(r.format, Some(Format::Wmbusmeters));
    // Unpinned topics auto-detect.
    let d = decode("other/topic", NATIVE.as_bytes(), recv, &cfg).unwrap();
    assert_eq!(d.format, Format::Native);
    let d = decode("plant/a/b", NATIVE.as_bytes(), recv, &cfg).unwrap();
    assert_eq!(d.format, Format::Native);
    // An unrecognisable object on a native-pinned topic gets native's reasons.
    let r = decode("plant/x", br#"{"temperature":1}"#, recv, &cfg).unwrap_err();
    assert_eq!(r.format, Some(Format::Native));
    assert_eq!(r.reason, "missing field \"meter_id\"");
    // Pinned native: a wmbusmeters telegram is not read as one.
    let wm = r#"{"_":"telegram","media":"water","meter":"x","id":"1","total_m3":1,"timestamp":"2024-03-03T18:37:00Z"}"#;
    let r = decode("plant/x", wm.as_bytes(), recv, &cfg).unwrap_err();
    assert_eq!(r.reason, "missing field \"meter_id\"");
    // First match wins: "x/water/y" matches "+/water/+" (native).
    let r = decode("x/water/y", wm.as_bytes(), recv, &cfg).unwrap_err();
    assert_eq!(r.format, Some(Format::Native));
}

#[test]
fn topic_filters() {
    let cases = [
        ("a/b", "a/b", true),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/#", "a/b/c", true),
        ("a/#", "a", true),
        ("#", "x/y", true),
        ("+/+", "a/b", true),
        ("a/b", "a/c", false),
        ("a", "a/b", false),
    ];
    for (f, t, want) in cases {
        assert_eq!(topic_matches(f, t), want, "{f} vs {t}");
    }
}

#[test]
fn timestamp_bounds() {
    let recv = us(RECV);
    let ctx = Ctx {
        received_at: recv,
        max_future_skew: 86_400_000_000,
    };
    assert!(ctx.check_measured(MIN_TS_MICROS).is_ok());
    assert!(ctx.check_measured(recv + 86_400_000_000).is_ok());
    assert_eq!(
        ctx.check_measured(recv + 86_400_000_001).unwrap_err(),
        "timestamp 2026-07-12T10:50:30.000001Z is more than 86400 s ahead of receive time 2026-07-11T10:50:30Z"
    );
    assert_eq!(
        ctx.check_measured(MIN_TS_MICROS - 1).unwrap_err(),
        "timestamp 1999-12-31T23:59:59.999999Z is before 2000-01-01"
    );
    let ctx = Ctx {
        received_at: recv,
        max_future_skew: 1_500_000,
    };
    assert!(ctx
        .check_measured(recv + 2_000_000)
        .unwrap_err()
        .contains("more than 1.5 s ahead"));
    // No overflow at the extremes.
    let ctx = Ctx {
        received_at: i64::MAX,
        max_future_skew: i64::MAX,
    };
    assert!(ctx.check_measured(i64::MAX).is_ok());
}

#[test]
fn future_and_ancient_timestamps_reject_the_message() {
    let future = NATIVE.replace("2022-07-25T00:15:00Z", "2127-01-01T00:00:00Z");
    let r = err("t", &future);
    assert_eq!(
        r.reason,
        "timestamp 2127-01-01T00:00:00Z is more than 86400 s ahead of receive time 2026-07-11T10:50:30Z"
    );
    assert_eq!(r.format, Some(Format::Native));
    let ancient = NATIVE.replace("2022-07-25T00:15:00Z", "1999-12-31T23:00:00-01:00");
    // -01:00 makes it 2000-01-01T00:00:00Z: accepted.
    assert!(dec("t", &ancient).is_ok());
    let ancient = NATIVE.replace("2022-07-25T00:15:00Z", "1999-12-31T23:59:59Z");
    assert_eq!(
        err("t", &ancient).reason,
        "timestamp 1999-12-31T23:59:59Z is before 2000-01-01"
    );
    // A configurable skew.
    let cfg = DecodeConfig {
        max_future_skew_micros: 0,
        ..DecodeConfig::default()
    };
    let soon = NATIVE.replace("2022-07-25T00:15:00Z", "2026-07-11T10:50:31Z");
    let r = decode("t", soon.as_bytes(), us(RECV), &cfg).unwrap_err();
    assert!(r.reason.contains("more than 0 s ahead"), "{}", r.reason);
}

#[test]
fn set_dates() {
    let cases = [
        ("2024-09-30", Some("2024-09-30T00:00:00Z")),
        ("2022-01-30 02:30", Some("2022-01-30T00:00:00Z")),
        ("2022-10-08 21:16:14", Some("2022-10-08T00:00:00Z")),
        ("2022-10-08T21:16:14", Some("2022-10-08T00:00:00Z")),
        ("2127-07-01", Some("2127-07-01T00:00:00Z")),
        ("1999-11-30", Some("1999-11-30T00:00:00Z")),
        ("2020-02-29", Some("2020-02-29T00:00:00Z")),
        ("2021-02-29", None),
        ("2000-00-00", None),
        ("2021-1-01", None),
        ("2021-01-01 1:00", None),
        ("2021-01-01 10:00x", None),
        ("2021-01-01Z", None),
        ("", None),
        ("22-31 days", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_set_date(s), want.map(us), "{s:?}");
    }
}

#[test]
fn register_suffixes_match_unit_parse() {
    for (suffix, unit) in REGISTER_SUFFIXES {
        assert_eq!(Unit::parse(suffix), Some(unit), "{suffix}");
    }
    let cases = [
        ("total_m3", Some(("total", Unit::M3))),
        (
            "total_energy_consumption_kwh",
            Some(("total_energy_consumption", Unit::KWh)),
        ),
        (
            "current_consumption_hca",
            Some(("current_consumption", Unit::Hca)),
        ),
        ("total_gj", Some(("total", Unit::GJ))),
        ("total_MWh", Some(("total", Unit::MWh))),
        ("volume_l", Some(("volume", Unit::Litre))),
        ("volume_flow_m3h", None),
        ("power_kw", None),
        ("flow_temperature_c", None),
        ("forward_energy_m3c", None),
        ("_m3", None),
        ("m3", None),
        ("status", None),
    ];
    for (key, want) in cases {
        assert_eq!(split_register_field(key), want, "{key}");
    }
}

#[test]
fn media_names() {
    let cases = [
        ("water", Some(Medium::Water)),
        ("cold water", Some(Medium::Water)),
        ("Cold Water", Some(Medium::Water)),
        ("warm water", Some(Medium::WarmWater)),
        ("hot water", Some(Medium::WarmWater)),
        ("warm_water", Some(Medium::WarmWater)),
        ("heat", Some(Medium::Heat)),
        ("HEAT", Some(Medium::Heat)),
        ("heat volume at inlet", Some(Medium::Heat)),
        ("heat volume at outlet", Some(Medium::Heat)),
        ("heat/cooling load", Some(Medium::Heat)),
        ("cooling", Some(Medium::Cooling)),
        ("cooling load volume at outlet", Some(Medium::Cooling)),
        ("cooling load volume at inlet", Some(Medium::Cooling)),
        ("heat cost allocation", Some(Medium::Hca)),
        ("heat cost allocator", Some(Medium::Hca)),
        ("hca", Some(Medium::Hca)),
        ("gas", None),
        ("electricity", None),
        ("dual register (hot/cold) water meter", None),
        ("", None),
    ];
    for (s, want) in cases {
        assert_eq!(medium_from_name(s), want, "{s:?}");
    }
}

#[test]
fn decimals_keep_their_literal() {
    for (json, text) in [
        ("326.069", "326.069"),
        ("1.50", "1.50"),
        ("\"1.50\"", "1.50"),
        ("6371.666667", "6371.666667"),
        // serde_json normalises an exponent to `e+`/`e-`; the value is exact.
        ("1e3", "1e+3"),
        ("-0", "-0"),
        ("80000", "80000"),
    ] {
        let v: Value = serde_json::from_str(json).unwrap();
        let d = decimal_of(&v).ok().unwrap();
        assert_eq!(d.as_str(), text);
    }
    for json in ["true", "null", "[]", "{}"] {
        let v: Value = serde_json::from_str(json).unwrap();
        assert!(
            matches!(decimal_of(&v), Err(ValueError::WrongType)),
            "{json}"
        );
    }
    for json in ["\"NaN\"", "\"Infinity\"", "\"\"", "1e99", "0.0000000001"] {
        let v: Value = serde_json::from_str(json).unwrap();
        assert!(
            matches!(decimal_of(&v), Err(ValueError::Invalid(_))),
            "{json}"
        );
    }
}

#[test]
fn native_happy_path_through_decode() {
    let d = ok("meters/hz", NATIVE);
    assert_eq!(d.format, Format::Native);
    assert!(d.notes.is_empty());
    assert_eq!(d.readings.len(), 1);
    let r = &d.readings[0];
    assert_eq!(r.meter_id.as_str(), "HZ-000123");
    assert_eq!(r.medium, Medium::Heat);
    assert_eq!(r.register, "energy");
    assert_eq!(r.unit, Unit::KWh);
    assert_eq!(r.value.as_str(), "1234.567");
    assert_eq!(r.ts_micros, us("2022-07-25T00:15:00Z"));
    assert_eq!(r.seq, Some(17));
    assert_eq!(r.kind, ReadingKind::Measured);
}
