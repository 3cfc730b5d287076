//! LoRaWAN uplinks: ChirpStack v4 (`application/<app>/device/<devEui>/event/up`)
//! and The Things Stack v3 (`v3/<app>@<tenant>/devices/<id>/up`).
//!
//! The network server's envelope gives the meter (device EUI), the time and
//! the frame counter (missing = 0: both omit a zero counter). The readings
//! come from the codec's decoded object (`object` / `decoded_payload`):
//!
//! * native-shaped: `{"readings":[{"medium":"water","unit":"m3","value":"12.5"}]}`
//!   or one reading at top level (`value` + `unit`), `meter_id`, `ts` and
//!   `seq` defaulting to the device's, uplink time and frame counter;
//! * otherwise fields `<base>_<unit>` as wmbusmeters prints them, where the
//!   base is `total`, `total_*`, `volume`, `current_volume`, `energy`,
//!   `index`, `current_consumption`, `consumption` or `heat`, measured at
//!   the uplink time, with the whole field name as the register
//!   (`current_volume_m3`, `total_kwh`). The medium is the object's
//!   `medium`/`media` key, else derived from the units.

use serde_json::{Map, Value};

use super::native::{self, Defaults, Element};
use super::wmbusmeters::register_value;
use super::{
    bad_timestamp, field_list, medium_from_name, medium_from_units, missing, split_register_field,
    Ctx, Out,
};
use crate::reading::{truncate, MeterId, Reading, ReadingKind};
use crate::time::parse_rfc3339;

const CHIRPSTACK_NO_OBJECT: &str =
    "ChirpStack uplink has no decoded object (no codec configured for the device profile)";
const TTS_NO_DECODED: &str = "The Things Stack uplink has no decoded payload (no payload formatter configured for the device)";

/// Measured register bases besides `total` and `total_*`.
const MEASURED: [&str; 7] = [
    "volume",
    "current_volume",
    "energy",
    "index",
    "current_consumption",
    "consumption",
    "heat",
];

pub(super) fn decode_chirpstack(v: &Value, ctx: &Ctx) -> Result<Out, String> {
    let obj = v
        .as_object()
        .ok_or("ChirpStack uplink must be a JSON object")?;
    let info = match obj.get("deviceInfo") {
        Some(Value::Object(info)) => info,
        None | Some(Value::Null) => return Err(missing("deviceInfo")),
        Some(_) => return Err("field \"deviceInfo\" must be a JSON object".into()),
    };
    let dev_eui = match info.get("devEui") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(missing("deviceInfo.devEui")),
        Some(_) => return Err("field \"deviceInfo.devEui\" must be a string".into()),
    };
    let meter_id = MeterId::try_new(dev_eui).map_err(|e| e.to_string())?;
    let time = super::req_str(obj, "time")?;
    let ts = parse_rfc3339(time).map_err(|_| bad_timestamp("time", time))?;
    let seq = frame_counter(obj.get("fCnt"), "fCnt")?;
    let decoded = match obj.get("object") {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => return Err(CHIRPSTACK_NO_OBJECT.into()),
        Some(_) => return Err("field \"object\" must be a JSON object".into()),
    };
    readings_from_decoded(decoded, &meter_id, ts, seq, ctx)
}

pub(super) fn decode_tts(v: &Value, ctx: &Ctx) -> Result<Out, String> {
    let obj = v
        .as_object()
        .ok_or("The Things Stack uplink must be a JSON object")?;
    let ids = match obj.get("end_device_ids") {
        Some(Value::Object(ids)) => ids,
        None | Some(Value::Null) => return Err(missing("end_device_ids")),
        Some(_) => return Err("field \"end_device_ids\" must be a JSON object".into()),
    };
    let id = match (ids.get("dev_eui"), ids.get("device_id")) {
        (Some(Value::String(s)), _) if !s.is_empty() => s,
        (_, Some(Value::String(s))) => s,
        (_, None | Some(Value::Null)) => return Err(missing("end_device_ids.device_id")),
        (_, Some(_)) => return Err("field \"end_device_ids.device_id\" must be a string".into()),
    };
    let meter_id = MeterId::try_new(id).map_err(|e| e.to_string())?;
    let up = match obj.get("uplink_message") {
        Some(Value::Object(up)) => up,
        None | Some(Value::Null) => return Err(missing("uplink_message")),
        Some(_) => return Err("field \"uplink_message\" must be a JSON object".into()),
    };
    let ts = match obj.get("received_at").filter(|v| !v.is_null()) {
        Some(Value::String(s)) => parse_rfc3339(s).map_err(|_| bad_timestamp("received_at", s))?,
        Some(_) => return Err("field \"received_at\" must be a string".into()),
        None => match up.get("received_at").filter(|v| !v.is_null()) {
            Some(Value::String(s)) => {
                parse_rfc3339(s).map_err(|_| bad_timestamp("uplink_message.received_at", s))?
            }
            Some(_) => return Err("field \"uplink_message.received_at\" must be a string".into()),
            None => return Err(missing("received_at")),
        },
    };
    let seq = frame_counter(up.get("f_cnt"), "f_cnt")?;
    let decoded = match up.get("decoded_payload") {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => return Err(TTS_NO_DECODED.into()),
        Some(_) => {
            return Err("field \"uplink_message.decoded_payload\" must be a JSON object".into())
        }
    };
    readings_from_decoded(decoded, &meter_id, ts, seq, ctx)
}

/// A LoRaWAN frame counter: missing (the servers omit a zero) → 0.
fn frame_counter(v: Option<&Value>, name: &str) -> Result<u64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{name} must be an unsigned integer")),
        Some(_) => Err(format!("{name} must be an unsigned integer")),
    }
}

fn is_register_base(base: &str) -> bool {
    base == "total" || base.starts_with("total_") || MEASURED.contains(&base)
}

/// Readings from a codec's decoded object.
fn readings_from_decoded(
    o: &Map<String, Value>,
    meter_id: &MeterId,
    ts: i64,
    seq: u64,
    ctx: &Ctx,
) -> Result<Out, String> {
    let medium_key = ["medium", "media"]
        .into_iter()
        .find_map(|k| o.get(k).filter(|v| !v.is_null()).map(|v| (k, v)));
    let medium = match medium_key {
        None => None,
        Some((_, Value::String(s))) => Some(
            medium_from_name(s).ok_or_else(|| format!("unknown medium {:?}", truncate(s, 40)))?,
        ),
        Some((k, _)) => return Err(format!("field {k:?} must be a string")),
    };
    let defaults = Defaults {
        meter_id: Some(meter_id),
        ts: Some(ts),
        seq: Some(seq),
        medium,
        lenient: true,
    };

    // (a) Native-shaped readings.
    if let Some(list) = o.get("readings") {
        let items = list
            .as_array()
            .ok_or("field \"readings\" must be an array")?;
        if items.is_empty() {
            return Err("no meter register in decoded payload (empty \"readings\" array)".into());
        }
        let out = native::elements(items, &defaults, ctx, "readings element")?;
        if out.readings.is_empty() {
            return Err(format!(
                "no meter register in decoded payload ({})",
                out.notes.join("; ")
            ));
        }
        return Ok(out);
    }
    if o.contains_key("value") && o.contains_key("unit") {
        return match native::reading_from_object(o, &defaults, ctx)? {
            Element::Reading(r) => Ok(Out {
                readings: vec![r],
                notes: Vec::new(),
            }),
            Element::Skipped(why) => Err(format!(
                "no meter register in decoded payload (skipped {why})"
            )),
        };
    }

    // (b) Register fields `<base>_<unit>`.
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for (key, val) in o {
        let Some((base, unit)) = split_register_field(key) else {
            continue;
        };
        match val {
            Value::Null => notes.push(format!("skipped {key}: null value")),
            Value::String(s) if s.is_empty() => notes.push(format!("skipped {key}: empty value")),
            _ if is_register_base(base) => found.push((key, unit, val)),
            _ => notes.push(format!("skipped {key}: not a cumulative register")),
        }
    }
    if found.is_empty() {
        let mut reason = format!(
            "no meter register in decoded payload ({})",
            field_list(o, &[])
        );
        if !notes.is_empty() {
            reason.pop();
            reason.push_str("; ");
            reason.push_str(&notes.join("; "));
            reason.push(')');
        }
        return Err(reason);
    }
    ctx.check_measured(ts)?;
    let medium = medium.unwrap_or_else(|| medium_from_units(found.iter().map(|f| f.1)));
    let mut readings = Vec::with_capacity(found.len());
    for (key, unit, val) in found {
        // The register is the whole field name (`total_m3`, `target_kwh`):
        // one telegram may carry the same base in two units.
        crate::reading::validate_register(key).map_err(|e| format!("field {key:?}: {e}"))?;
        readings.push(Reading {
            meter_id: meter_id.clone(),
            medium,
            register: key.to_owned(),
            unit,
            value: register_value(key, val)?,
            ts_micros: ts,
            seq: Some(seq),
            kind: ReadingKind::Measured,
        });
    }
    Ok(Out { readings, notes })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{decode, DecodeConfig, Format, UNRECOGNISED};
    use super::{CHIRPSTACK_NO_OBJECT, TTS_NO_DECODED};
    use crate::reading::{Medium, ReadingKind, Unit};
    use serde_json::{json, Value};

    const CHIRPSTACK: &str = include_str!("../../tests/fixtures/decode/chirpstack_up.json");
    const TTS: &str = include_str!("../../tests/fixtures/decode/tts_up.json");
    const CS_TOPIC: &str =
        "application/6d1a7c0e-3b55-4c1e-9a57-2f0f5b1e0c11/device/a84041000181c0de/event/up";
    const TTS_TOPIC: &str = "v3/water-meters@acme/devices/wm-0042/up";

    /// `base` (a JSON document) with the value at `path` replaced, or removed
    /// when `None`.
    fn edit(base: &str, path: &[&str], value: Option<Value>) -> String {
        let mut v: Value = serde_json::from_str(base).unwrap();
        let (last, parents) = path.split_last().unwrap();
        let mut cur = &mut v;
        for p in parents {
            cur = cur.get_mut(*p).unwrap();
        }
        let obj = cur.as_object_mut().unwrap();
        match value {
            Some(x) => {
                obj.insert((*last).into(), x);
            }
            None => {
                obj.remove(*last);
            }
        }
        v.to_string()
    }

    /// The first gateway of the uplink: the alert group of its meter.
    #[test]
    fn the_gateway_of_an_uplink() {
        assert_eq!(ok(TTS_TOPIC, TTS).gateway.as_deref(), Some("gw-roof-1"));
        assert_eq!(
            ok(CS_TOPIC, CHIRPSTACK).gateway.as_deref(),
            Some("0016c001f1500a01")
        );
        let none = edit(CHIRPSTACK, &["rxInfo"], None);
        assert_eq!(ok(CS_TOPIC, &none).gateway, None, "no rxInfo");
        let with = edit(
            CHIRPSTACK,
            &["rxInfo"],
            Some(json!([{"gatewayId": "0016c001f153a14c"}, {"gatewayId": "b"}])),
        );
        assert_eq!(
            ok(CS_TOPIC, &with).gateway.as_deref(),
            Some("0016c001f153a14c")
        );
        let odd = edit(CHIRPSTACK, &["rxInfo"], Some(json!([{"gatewayId": 7}])));
        assert_eq!(ok(CS_TOPIC, &odd).gateway, None, "not a string: no group");
    }

    #[test]
    fn chirpstack_fixture() {
        let d = ok(CS_TOPIC, CHIRPSTACK);
        assert_eq!(d.format, Format::Chirpstack);
        assert_eq!(d.readings.len(), 1);
        let r = &d.readings[0];
        assert_eq!(r.meter_id.as_str(), "a84041000181c0de");
        assert_eq!(r.medium, Medium::Water);
        assert_eq!(r.register, "current_volume_m3");
        assert_eq!(r.unit, Unit::M3);
        assert_eq!(r.value.as_str(), "1284.310");
        assert_eq!(r.ts_micros, us("2024-03-03T18:37:00.412345Z"));
        assert_eq!(r.seq, Some(5121));
        assert_eq!(r.kind, ReadingKind::Measured);
        assert_eq!(
            d.notes,
            ["skipped log_volume_m3: not a cumulative register"]
        );
    }

    #[test]
    fn tts_fixture() {
        let d = ok(TTS_TOPIC, TTS);
        assert_eq!(d.format, Format::Tts);
        let mut got: Vec<_> = d
            .readings
            .iter()
            .map(|r| (r.register.as_str(), r.unit, r.value.as_str(), r.medium))
            .collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            [
                ("total_kwh", Unit::KWh, "5210.25", Medium::Heat),
                ("total_volume_m3", Unit::M3, "101.50", Medium::Heat),
            ]
        );
        for r in &d.readings {
            // dev_eui preferred over device_id; top-level received_at.
            assert_eq!(r.meter_id.as_str(), "70B3D5E75E00A1B2");
            assert_eq!(r.ts_micros, us("2024-03-03T18:40:11.873102Z"));
            // No f_cnt in the fixture: the first uplink after a join.
            assert_eq!(r.seq, Some(0));
        }
        let mut notes = d.notes.clone();
        notes.sort();
        assert_eq!(
            notes,
            [
                "skipped delta_1_m3: not a cumulative register",
                "skipped max_power_kwh: not a cumulative register",
            ]
        );
    }

    #[test]
    fn missing_frame_counter_is_zero() {
        let d = ok(CS_TOPIC, &edit(CHIRPSTACK, &["fCnt"], None));
        assert_eq!(d.readings[0].seq, Some(0));
        let d = ok(CS_TOPIC, &edit(CHIRPSTACK, &["fCnt"], Some(Value::Null)));
        assert_eq!(d.readings[0].seq, Some(0));
        let d = ok(CS_TOPIC, &edit(CHIRPSTACK, &["fCnt"], Some(json!(0))));
        assert_eq!(d.readings[0].seq, Some(0));
        let d = ok(
            TTS_TOPIC,
            &edit(TTS, &["uplink_message", "f_cnt"], Some(json!(77))),
        );
        assert!(d.readings.iter().all(|r| r.seq == Some(77)));
        let r = err(CS_TOPIC, &edit(CHIRPSTACK, &["fCnt"], Some(json!(-1))));
        assert_eq!(r.reason, "fCnt must be an unsigned integer");
        let r = err(
            TTS_TOPIC,
            &edit(TTS, &["uplink_message", "f_cnt"], Some(json!("7"))),
        );
        assert_eq!(r.reason, "f_cnt must be an unsigned integer");
    }

    #[test]
    fn envelope_fields() {
        // TTS: device_id when there is no dev_eui; uplink_message.received_at
        // when there is no top-level received_at.
        let p = edit(TTS, &["end_device_ids", "dev_eui"], None);
        let p = edit(&p, &["received_at"], None);
        let d = ok(TTS_TOPIC, &p);
        assert_eq!(d.readings[0].meter_id.as_str(), "wm-0042");
        assert_eq!(d.readings[0].ts_micros, us("2024-03-03T18:40:11.861Z"));
        // ChirpStack time with nanoseconds and an offset.
        let d = ok(
            CS_TOPIC,
            &edit(
                CHIRPSTACK,
                &["time"],
                Some(json!("2024-03-03T19:37:00.999999999+01:00")),
            ),
        );
        assert_eq!(d.readings[0].ts_micros, us("2024-03-03T18:37:00.999999Z"));

        let cases = [
            (
                edit(CHIRPSTACK, &["object"], None),
                Format::Chirpstack,
                CHIRPSTACK_NO_OBJECT,
            ),
            (
                edit(CHIRPSTACK, &["object"], Some(json!("x"))),
                Format::Chirpstack,
                "field \"object\" must be a JSON object",
            ),
            (
                edit(CHIRPSTACK, &["deviceInfo"], None),
                Format::Chirpstack,
                "missing field \"deviceInfo\"",
            ),
            (
                edit(CHIRPSTACK, &["deviceInfo", "devEui"], None),
                Format::Chirpstack,
                "missing field \"deviceInfo.devEui\"",
            ),
            (
                edit(CHIRPSTACK, &["deviceInfo", "devEui"], Some(json!("a8 40"))),
                Format::Chirpstack,
                "invalid meter_id \"a8 40\": character ' ' is not one of A-Za-z0-9._:-",
            ),
            (
                edit(CHIRPSTACK, &["time"], None),
                Format::Chirpstack,
                "missing field \"time\"",
            ),
            (
                edit(CHIRPSTACK, &["time"], Some(json!("yesterday"))),
                Format::Chirpstack,
                "field \"time\" must be an RFC 3339 timestamp with offset, got \"yesterday\"",
            ),
            (
                edit(CHIRPSTACK, &["time"], Some(json!("2030-01-01T00:00:00Z"))),
                Format::Chirpstack,
                "timestamp 2030-01-01T00:00:00Z is more than 86400 s ahead of receive time 2026-07-11T10:50:30Z",
            ),
            (
                edit(CHIRPSTACK, &["object", "current_volume_m3"], Some(json!("1,5"))),
                Format::Chirpstack,
                "field \"current_volume_m3\": invalid value \"1,5\": not a decimal number",
            ),
            (
                edit(CHIRPSTACK, &["object", "medium"], Some(json!("gas"))),
                Format::Chirpstack,
                "unknown medium \"gas\"",
            ),
            (
                edit(CHIRPSTACK, &["object", "media"], Some(json!(4))),
                Format::Chirpstack,
                "field \"media\" must be a string",
            ),
            (
                edit(TTS, &["uplink_message", "decoded_payload"], None),
                Format::Tts,
                TTS_NO_DECODED,
            ),
            (
                edit(TTS, &["end_device_ids"], Some(json!({"dev_eui": ""}))),
                Format::Tts,
                "missing field \"end_device_ids.device_id\"",
            ),
            (
                edit(&edit(TTS, &["received_at"], None), &["uplink_message", "received_at"], None),
                Format::Tts,
                "missing field \"received_at\"",
            ),
            (
                edit(TTS, &["received_at"], Some(json!("1999-12-31T23:59:59Z"))),
                Format::Tts,
                "timestamp 1999-12-31T23:59:59Z is before 2000-01-01",
            ),
        ];
        for (payload, format, reason) in cases {
            let r = err("t", &payload);
            assert_eq!(r.reason, reason, "{payload}");
            assert_eq!(r.format, Some(format));
        }
    }

    #[test]
    fn chirpstack_events_other_than_up_are_named() {
        let join = r#"{"deduplicationId":"c9dfe6f4-7a52-4d25-8d3c-13a3a1a0e3f1","time":"2024-03-03T18:30:00Z","deviceInfo":{"devEui":"a84041000181c0de"},"devAddr":"01b2c3d4"}"#;
        let r = err(
            "application/6d1a7c0e/device/a84041000181c0de/event/join",
            join,
        );
        assert_eq!(
            r.reason,
            "ChirpStack \"join\" event is not an uplink (topic \"application/6d1a7c0e/device/a84041000181c0de/event/join\")"
        );
        assert_eq!(r.format, Some(Format::Chirpstack));
        // Any other topic layout is decoded by content.
        assert_eq!(
            err("gw/a84041000181c0de", join).reason,
            CHIRPSTACK_NO_OBJECT
        );
        assert_eq!(ok("custom/uplinks", CHIRPSTACK).readings.len(), 1);
    }

    #[test]
    fn decoded_register_fields() {
        let obj = |o: Value| edit(CHIRPSTACK, &["object"], Some(o));
        // Medium from units when the object names none.
        let cases = [
            (json!({"total_m3": 1}), Medium::Water),
            (json!({"volume_l": 1500}), Medium::Water),
            (json!({"index_l": 1500}), Medium::Water),
            (json!({"energy_kwh": 1, "volume_m3": 2}), Medium::Heat),
            (json!({"total_mwh": 1}), Medium::Heat),
            (json!({"current_consumption_hca": 3}), Medium::Hca),
            (
                json!({"consumption_hca": 3, "media": "heat cost allocator"}),
                Medium::Hca,
            ),
            (
                json!({"total_m3": 1, "medium": "warm water"}),
                Medium::WarmWater,
            ),
            (
                json!({"total_m3": 1, "medium": "warm_water"}),
                Medium::WarmWater,
            ),
            (
                json!({"energy_kwh": 1, "medium": "cooling"}),
                Medium::Cooling,
            ),
        ];
        for (o, medium) in cases {
            let d = ok(CS_TOPIC, &obj(o.clone()));
            assert!(d.readings.iter().all(|r| r.medium == medium), "{o}: {d:?}");
        }
        // The register is the whole field name: one base in two units
        // gives two registers.
        let d = ok(CS_TOPIC, &obj(json!({"total_kwh": 1, "total_m3": 2})));
        let mut regs: Vec<_> = d
            .readings
            .iter()
            .map(|r| (r.register.as_str(), r.unit))
            .collect();
        regs.sort_by_key(|r| r.0);
        assert_eq!(regs, [("total_kwh", Unit::KWh), ("total_m3", Unit::M3)]);
        // Exact literals survive.
        let p = CHIRPSTACK.replace("1284.310", "1.50");
        assert_eq!(ok(CS_TOPIC, &p).readings[0].value.as_str(), "1.50");

        // Only non-registers: rejected, naming the fields.
        let r = err(
            CS_TOPIC,
            &obj(json!({"log_volume_m3": 5.938, "delta_1_m3": 0, "flow_m3h": 1, "battery": 3.6})),
        );
        assert_eq!(
            r.reason,
            "no meter register in decoded payload (fields: battery, delta_1_m3, flow_m3h, log_volume_m3; \
             skipped delta_1_m3: not a cumulative register; skipped log_volume_m3: not a cumulative register)"
        );
        let r = err(CS_TOPIC, &obj(json!({})));
        assert_eq!(r.reason, "no meter register in decoded payload (no fields)");
        let d = ok(CS_TOPIC, &obj(json!({"total_m3": 2, "volume_m3": null})));
        assert_eq!(d.notes, ["skipped volume_m3: null value"]);
    }

    #[test]
    fn decoded_native_shaped_readings() {
        let obj = |o: Value| edit(CHIRPSTACK, &["object"], Some(o));
        let d = ok(
            CS_TOPIC,
            &obj(json!({"readings": [
                {"medium": "water", "unit": "m3", "value": "12.50"},
                {"medium": "water", "register": "target", "unit": "m3", "value": 11,
                 "ts": "2023-12-31T00:00:00Z", "kind": "set_date"},
                {"meter_id": "sub-meter-2", "medium": "heat", "unit": "kWh", "value": 7, "seq": 9},
                {"unit": "l", "value": 5}
            ]})),
        );
        let r = &d.readings;
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].meter_id.as_str(), "a84041000181c0de");
        assert_eq!(r[0].register, "total");
        assert_eq!(r[0].value.as_str(), "12.50");
        assert_eq!(r[0].ts_micros, us("2024-03-03T18:37:00.412345Z"));
        assert_eq!(r[0].seq, Some(5121));
        assert_eq!(r[1].kind, ReadingKind::SetDate);
        assert_eq!(r[1].ts_micros, us("2023-12-31T00:00:00Z"));
        assert_eq!(r[2].meter_id.as_str(), "sub-meter-2");
        assert_eq!(r[2].seq, Some(9));
        assert_eq!(r[3].medium, Medium::Water);
        assert_eq!(r[3].unit, Unit::Litre);

        // One reading at top level.
        let d = ok(
            CS_TOPIC,
            &obj(json!({"medium": "hot water", "unit": "m3", "value": 3.25, "battery": 3.6})),
        );
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].medium, Medium::WarmWater);
        assert_eq!(d.readings[0].value.as_str(), "3.25");

        // Atomic: one bad element rejects the uplink.
        let r = err(
            CS_TOPIC,
            &obj(json!({"readings": [
                {"medium": "water", "unit": "m3", "value": 1},
                {"medium": "water", "unit": "furlong", "value": 1}
            ]})),
        );
        assert_eq!(r.reason, "readings element 1: unknown unit \"furlong\"");
        let r = err(CS_TOPIC, &obj(json!({"readings": []})));
        assert_eq!(
            r.reason,
            "no meter register in decoded payload (empty \"readings\" array)"
        );
        let r = err(CS_TOPIC, &obj(json!({"readings": {}})));
        assert_eq!(r.reason, "field \"readings\" must be an array");
        let r = err(
            CS_TOPIC,
            &obj(json!({"readings": [{"medium": "water", "unit": "m3", "value": "NaN"}]})),
        );
        assert_eq!(
            r.reason,
            "readings element 0: field \"value\": invalid value \"NaN\": not a decimal number"
        );
        let r = err(
            CS_TOPIC,
            &obj(
                json!({"readings": [{"medium": "water", "unit": "m3", "value": 1,
                "kind": "set_date", "ts": "2127-07-01T00:00:00Z"}]}),
            ),
        );
        assert_eq!(
            r.reason,
            "no meter register in decoded payload (skipped readings element 0, register \"total\": \
             set date 2127-07-01T00:00:00Z is in the future)"
        );
    }

    /// The published ChirpStack / TTS examples, vendored from the shared conformance set (`tests/fixtures/conformance/`).
    #[test]
    fn conformance_samples() {
        let text = include_str!("../../tests/fixtures/conformance/lorawan_samples.json");
        let all: Value = serde_json::from_str(text).unwrap();
        let recv = us("2026-07-11T10:50:30Z");
        let cfg = DecodeConfig::default();
        let cases = [
            (
                "chirpstack_v4_uplink_event",
                Format::Chirpstack,
                CHIRPSTACK_NO_OBJECT.to_string(),
            ),
            (
                "chirpstack_v4_uplink_event_real_first_uplink",
                Format::Chirpstack,
                CHIRPSTACK_NO_OBJECT.to_string(),
            ),
            (
                "tts_v3_uplink_message",
                Format::Tts,
                "no meter register in decoded payload (fields: luminosity, temperature)"
                    .to_string(),
            ),
        ];
        for (name, format, reason) in cases {
            let payload = all[name]["payload"].to_string();
            let r = decode("t", payload.as_bytes(), recv, &cfg).unwrap_err();
            println!("{name}: rejected: {}", r.reason);
            assert_ne!(r.reason, UNRECOGNISED);
            assert_eq!(r.format, Some(format), "{name}");
            assert_eq!(r.reason, reason, "{name}");
        }
        // The Qalcosonic W1 decoded example as a ChirpStack object: the
        // current_volume_m3 register is kept, log/delta/history values noted.
        let mut up = all["chirpstack_v4_uplink_event_real_first_uplink"]["payload"].clone();
        up["object"] = all["lorawan_water_meter_decoded_payload_example"]["decoded"].clone();
        let d = decode("t", up.to_string().as_bytes(), recv, &cfg).unwrap();
        println!(
            "qalcosonic: {:?}, {} notes",
            d.readings
                .iter()
                .map(|r| format!("{}={}{} seq={:?}", r.register, r.value, r.unit, r.seq))
                .collect::<Vec<_>>(),
            d.notes.len()
        );
        assert_eq!(d.readings.len(), 1);
        let r = &d.readings[0];
        assert_eq!(r.register, "current_volume_m3");
        assert_eq!(r.value.as_str(), "6.054");
        assert_eq!(r.medium, Medium::Water);
        assert_eq!(r.meter_id.as_str(), "XXXXXXc161832b12");
        assert_eq!(r.seq, Some(0), "fCnt absent in the first uplink");
        assert_eq!(r.ts_micros, us("2022-09-23T02:02:06.744554Z"));
        assert!(d
            .notes
            .contains(&"skipped history_total_m3: not a cumulative register".to_string()));
        assert_eq!(d.notes.len(), 25, "{:?}", d.notes);
    }
}
