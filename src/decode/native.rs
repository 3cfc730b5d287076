//! gapless' own JSON format (documented by `schemas/reading.schema.json`):
//! one reading object, or a non-empty array of them.
//!
//! ```json
//! {"meter_id":"HZ-000123","medium":"heat","register":"energy","unit":"kWh",
//!  "value":"1234.567","ts":"2022-07-25T00:15:00Z","seq":17}
//! ```
//!
//! Also used for native-shaped readings inside a LoRaWAN decoded payload,
//! where `meter_id`, `ts`, `seq` (and `medium`) default to the device's.
//!
//! Two ways in, one set of rules: [`decode`] reads a parsed
//! [`serde_json::Value`] (the reference path, also used by LoRaWAN), and
//! [`decode_fast`] reads the payload text directly, borrowing field text
//! from it instead of building a `Value` tree. Both reduce a reading object
//! to [`Fields`] and validate it with [`reading_from_fields`], so they
//! accept the same readings and give the same reasons. The fast path gives up
//! (`None`) on anything it cannot classify exactly as `Value` would, and the
//! caller then takes the `Value` path.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{bad_timestamp, medium_from_name, missing, Ctx, Out};
use crate::reading::{
    truncate, validate_register, Decimal, Medium, MeterId, Reading, ReadingKind, Unit,
};
use crate::time::parse_rfc3339;

/// Decodes a native payload: an object or a non-empty array of objects.
pub(super) fn decode(v: &Value, ctx: &Ctx) -> Result<Out, String> {
    let top = Defaults::default();
    match v {
        Value::Object(obj) => single(reading_from_object(obj, &top, ctx)),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(EMPTY_ARRAY.into());
            }
            array_out(elements(items, &top, ctx, "element")?)
        }
        _ => Err("native payload must be a JSON object or an array of objects".into()),
    }
}

/// Rejection of a top-level `[]`.
const EMPTY_ARRAY: &str = "no meter register in payload (empty array)";

/// A single-object message: its reading, or a rejection.
fn single(element: Result<Element, String>) -> Result<Out, String> {
    match element? {
        Element::Reading(r) => Ok(Out {
            readings: vec![r],
            notes: Vec::new(),
        }),
        Element::Skipped(why) => Err(format!("no meter register in payload (skipped {why})")),
    }
}

/// A non-empty array message whose elements all validated: rejected when
/// every element was skipped.
fn array_out(out: Out) -> Result<Out, String> {
    if out.readings.is_empty() {
        return Err(format!(
            "no meter register in payload ({})",
            out.notes.join("; ")
        ));
    }
    Ok(out)
}

/// Adds element `i`'s outcome to `out`; errors and notes name `"{what} {i}"`.
fn push_element(
    out: &mut Out,
    element: Result<Element, String>,
    what: &str,
    i: usize,
) -> Result<(), String> {
    match element.map_err(|e| format!("{what} {i}: {e}"))? {
        Element::Reading(r) => out.readings.push(r),
        Element::Skipped(why) => out.notes.push(format!("skipped {what} {i}, {why}")),
    }
    Ok(())
}

/// Decodes an array of reading objects; errors and notes name `"{what} {i}"`
/// (0-based index).
pub(super) fn elements(
    items: &[Value],
    defaults: &Defaults<'_>,
    ctx: &Ctx,
    what: &str,
) -> Result<Out, String> {
    let mut out = Out {
        readings: Vec::with_capacity(items.len()),
        notes: Vec::new(),
    };
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(format!("{what} {i}: must be a JSON object"));
        };
        push_element(&mut out, reading_from_object(obj, defaults, ctx), what, i)?;
    }
    Ok(out)
}

/// Values a reading object may leave out (LoRaWAN: the device's).
#[derive(Default)]
pub(super) struct Defaults<'a> {
    pub meter_id: Option<&'a MeterId>,
    pub ts: Option<i64>,
    pub seq: Option<u64>,
    pub medium: Option<Medium>,
    /// Accept wmbusmeters-style medium names and derive a missing medium
    /// from the unit (codec output); native proper is strict.
    pub lenient: bool,
}

/// One reading object's outcome.
pub(super) enum Element {
    Reading(Reading),
    /// A set-date value whose date is out of range: `register "x": why`.
    Skipped(String),
}

/// One field of a reading object, as far as validation cares.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum Field<'a> {
    /// Not there, or `null`.
    #[default]
    Absent,
    /// A string (unescaped).
    Str(Cow<'a, str>),
    /// A number, as `serde_json::Number::as_str` gives it (the literal, with
    /// an exponent written `e+N`/`e-N`).
    Num(Cow<'a, str>),
    /// `true`, `false`, an array or an object.
    Other,
}

impl<'a> Field<'a> {
    fn of_value(v: Option<&'a Value>) -> Field<'a> {
        match v {
            None | Some(Value::Null) => Field::Absent,
            Some(Value::String(s)) => Field::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => Field::Num(Cow::Borrowed(n.as_str())),
            Some(_) => Field::Other,
        }
    }

    /// The field from its raw JSON text, or `None` when only the `Value`
    /// path can tell (arrays and objects: their depth counts towards the
    /// parser's recursion limit; strings with escapes `Value` would refuse).
    fn of_raw(raw: &'a RawValue) -> Option<Field<'a>> {
        let s = raw.get();
        Some(match s.as_bytes()[0] {
            b'n' => Field::Absent,
            b't' | b'f' => Field::Other,
            b'"' => {
                let inner = &s[1..s.len() - 1];
                if inner.contains('\\') {
                    Field::Str(Cow::Owned(serde_json::from_str::<String>(s).ok()?))
                } else {
                    Field::Str(Cow::Borrowed(inner))
                }
            }
            b'-' | b'0'..=b'9' => Field::Num(number_text(s)),
            _ => return None,
        })
    }
}

/// A JSON number literal as serde_json (`arbitrary_precision`) keeps it: the
/// literal itself, except that an exponent is written `e` with an explicit
/// sign (`1E3` → `1e+3`).
fn number_text(literal: &str) -> Cow<'_, str> {
    let Some(i) = literal.find(['e', 'E']) else {
        return Cow::Borrowed(literal);
    };
    let (mantissa, exp) = (&literal[..i], &literal[i + 1..]);
    if literal.as_bytes()[i] == b'e' && exp.starts_with(['+', '-']) {
        return Cow::Borrowed(literal);
    }
    let sign = if exp.starts_with(['+', '-']) { "" } else { "+" };
    Cow::Owned(format!("{mantissa}e{sign}{exp}"))
}

/// The fields of one reading object that validation reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Fields<'a> {
    pub meter_id: Field<'a>,
    pub medium: Field<'a>,
    pub register: Field<'a>,
    pub unit: Field<'a>,
    pub value: Field<'a>,
    pub ts: Field<'a>,
    pub seq: Field<'a>,
    pub kind: Field<'a>,
}

impl<'a> Fields<'a> {
    fn of_map(obj: &'a Map<String, Value>) -> Fields<'a> {
        let get = |k: &str| Field::of_value(obj.get(k));
        Fields {
            meter_id: get("meter_id"),
            medium: get("medium"),
            register: get("register"),
            unit: get("unit"),
            value: get("value"),
            ts: get("ts"),
            seq: get("seq"),
            kind: get("kind"),
        }
    }
}

/// Validates one reading object. `null` counts as absent.
pub(super) fn reading_from_object(
    obj: &Map<String, Value>,
    defaults: &Defaults<'_>,
    ctx: &Ctx,
) -> Result<Element, String> {
    reading_from_fields(&Fields::of_map(obj), defaults, ctx)
}

/// Validates one reading object's fields (checked in this order: meter_id,
/// medium, register, unit, value, ts, seq, kind, then the time range).
pub(super) fn reading_from_fields(
    f: &Fields<'_>,
    defaults: &Defaults<'_>,
    ctx: &Ctx,
) -> Result<Element, String> {
    let meter_id = match &f.meter_id {
        Field::Str(s) => MeterId::try_new(s)?,
        Field::Absent => match defaults.meter_id {
            Some(m) => m.clone(),
            None => return Err(missing("meter_id")),
        },
        _ => return Err("field \"meter_id\" must be a string".into()),
    };
    let medium = match &f.medium {
        Field::Str(s) => {
            let m = if defaults.lenient {
                medium_from_name(s)
            } else {
                Medium::parse(s)
            };
            Some(m.ok_or_else(|| format!("unknown medium {:?}", truncate(s, 40)))?)
        }
        Field::Absent => defaults.medium,
        _ => return Err("field \"medium\" must be a string".into()),
    };
    let register = match &f.register {
        Field::Str(s) => {
            validate_register(s)?;
            String::from(&**s)
        }
        Field::Absent => "total".to_owned(),
        _ => return Err("field \"register\" must be a string".into()),
    };
    let unit = match &f.unit {
        Field::Str(s) => {
            Unit::parse(s).ok_or_else(|| format!("unknown unit {:?}", truncate(s, 40)))?
        }
        Field::Absent => return Err(missing("unit")),
        _ => return Err("field \"unit\" must be a string".into()),
    };
    let medium = match medium {
        Some(m) => m,
        None if defaults.lenient => super::medium_from_units([unit]),
        None => return Err(missing("medium")),
    };
    let value = match &f.value {
        Field::Str(s) | Field::Num(s) => {
            Decimal::parse(s).map_err(|why| format!("field \"value\": {why}"))?
        }
        Field::Other => return Err("field \"value\" must be a number or decimal string".into()),
        Field::Absent => return Err(missing("value")),
    };
    let ts = match &f.ts {
        Field::Str(s) => parse_rfc3339(s).map_err(|_| bad_timestamp("ts", s))?,
        Field::Absent => match defaults.ts {
            Some(ts) => ts,
            None => return Err(missing("ts")),
        },
        _ => return Err("field \"ts\" must be a string".into()),
    };
    let seq = match &f.seq {
        // `serde_json::Number::as_u64` with `arbitrary_precision`.
        Field::Num(n) => Some(n.parse().map_err(|_| "seq must be an unsigned integer")?),
        Field::Absent => defaults.seq,
        _ => return Err("seq must be an unsigned integer".into()),
    };
    let kind = match &f.kind {
        Field::Str(s) => match &**s {
            "measured" => ReadingKind::Measured,
            "set_date" => ReadingKind::SetDate,
            _ => {
                return Err(format!(
                    "unknown kind {:?} (expected \"measured\" or \"set_date\")",
                    truncate(s, 40)
                ))
            }
        },
        Field::Absent => ReadingKind::Measured,
        _ => return Err("field \"kind\" must be a string".into()),
    };
    match kind {
        ReadingKind::Measured => ctx.check_measured(ts)?,
        ReadingKind::SetDate => {
            if let Some(why) = ctx.set_date_problem(ts, &super::fmt_micros(ts)) {
                return Ok(Element::Skipped(format!("register {register:?}: {why}")));
            }
        }
    }
    Ok(Element::Reading(Reading {
        meter_id,
        medium,
        register,
        unit,
        value,
        ts_micros: ts,
        seq,
        kind,
    }))
}

// ---------------------------------------------------------------------------
// Fast path: straight from the payload text.

/// Decodes a native payload without building a `Value` tree.
///
/// `Some(result)` is exactly what [`decode`] would give for the same
/// payload; `None` means "take the `Value` path" (the payload is not valid
/// JSON, not an object or array of objects, has a field this path cannot
/// classify exactly, or, with `detect`, may be another format: it lacks
/// `meter_id` or has a key auto-detection looks at before `meter_id`).
pub(super) fn decode_fast(text: &str, ctx: &Ctx, detect: bool) -> Option<Result<Out, String>> {
    let json_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = text.as_bytes().iter().position(|b| !json_ws(b))?;
    let first = text.as_bytes()[start];
    // Cheap shortcut for the other formats, whose first key is usually one
    // auto-detection looks at (`"_"`, `"deduplicationId"`, ...); the visitor
    // below catches the rest.
    if detect && first == b'{' {
        let rest = text[start + 1..].trim_start_matches([' ', '\t', '\n', '\r']);
        if let Some(key) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            if DETECTION_KEYS.contains(&key) {
                return None;
            }
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let out = match first {
        b'{' => {
            let obj = ObjectSeed { detect, level: 1 }.deserialize(&mut de).ok()?;
            de.end().ok()?;
            if detect && !obj.has_meter_id {
                return None;
            }
            single(reading_from_fields(&obj.fields, &Defaults::default(), ctx))
        }
        b'[' => {
            let capacity = (text.len() / MIN_READING_JSON_BYTES).clamp(1, 4096);
            let arr = ArraySeed { ctx, capacity }.deserialize(&mut de).ok()?;
            de.end().ok()?;
            match arr {
                ArrayOutcome::Empty => Err(EMPTY_ARRAY.into()),
                ArrayOutcome::Failed(reason) => Err(reason),
                ArrayOutcome::Done(out) => array_out(out),
            }
        }
        _ => return None,
    };
    Some(out)
}

/// Top-level keys that auto-detection checks before `meter_id`: an object
/// with any of them goes the `Value` path (which detects the format).
const DETECTION_KEYS: [&str; 5] = [
    "_",
    "deviceInfo",
    "deduplicationId",
    "end_device_ids",
    "uplink_message",
];

/// serde_json's nesting limit: a container at nesting level 128 (the
/// top-level value being level 1) fails with "recursion limit exceeded".
const MAX_LEVEL: usize = 127;

/// An object key, classified.
enum Key {
    MeterId,
    Medium,
    Register,
    Unit,
    Value,
    Ts,
    Seq,
    Kind,
    Detection,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match k {
            "meter_id" => Key::MeterId,
            "medium" => Key::Medium,
            "register" => Key::Register,
            "unit" => Key::Unit,
            "value" => Key::Value,
            "ts" => Key::Ts,
            "seq" => Key::Seq,
            "kind" => Key::Kind,
            _ if DETECTION_KEYS.contains(&k) => Key::Detection,
            _ => Key::Other,
        })
    }
}

/// A reading object read by the fast path.
struct RawObject<'a> {
    fields: Fields<'a>,
    /// `meter_id` is a key (even with `null`): auto-detection's native rule.
    has_meter_id: bool,
}

/// Reads one reading object whose `{` is at nesting `level`.
struct ObjectSeed {
    detect: bool,
    level: usize,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = RawObject<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// The error that sends a message to the `Value` path (never shown).
fn give_up<E: de::Error>() -> E {
    E::custom("native fast path: use the Value path")
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reading object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        let mut has_meter_id = false;
        while let Some(key) = map.next_key::<Key>()? {
            // Duplicate keys: the last one wins, as in `serde_json::Map`.
            let slot = match key {
                Key::MeterId => {
                    has_meter_id = true;
                    &mut fields.meter_id
                }
                Key::Medium => &mut fields.medium,
                Key::Register => &mut fields.register,
                Key::Unit => &mut fields.unit,
                Key::Value => &mut fields.value,
                Key::Ts => &mut fields.ts,
                Key::Seq => &mut fields.seq,
                Key::Kind => &mut fields.kind,
                Key::Detection if self.detect => return Err(give_up()),
                Key::Detection | Key::Other => {
                    let raw: &'de RawValue = map.next_value()?;
                    if !ignorable(raw.get(), self.level) {
                        return Err(give_up());
                    }
                    continue;
                }
            };
            let raw: &'de RawValue = map.next_value()?;
            *slot = Field::of_raw(raw).ok_or_else(give_up)?;
        }
        Ok(RawObject {
            fields,
            has_meter_id,
        })
    }
}

/// Whether an ignored field's raw value (inside an object at nesting
/// `level`) is one the `Value` path would also have parsed: within the
/// nesting limit, and with escapes that make valid strings (the raw scan
/// lets lone UTF-16 surrogates through, `Value` does not).
fn ignorable(raw: &str, level: usize) -> bool {
    let b = raw.as_bytes();
    if matches!(b[0], b'[' | b'{') && level + nesting_depth(b) > MAX_LEVEL {
        return false;
    }
    !raw.contains('\\') || serde_json::from_str::<Value>(raw).is_ok()
}

/// Deepest container nesting in valid JSON text (`1` for `[1]`, `0` for a
/// scalar).
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_str = false;
    let mut escaped = false;
    for &c in json {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    max
}

/// A top-level array read by the fast path; elements are validated as they
/// are read.
enum ArrayOutcome {
    Empty,
    /// The first element's rejection (`element i: why`).
    Failed(String),
    Done(Out),
}

struct ArraySeed<'c> {
    ctx: &'c Ctx,
    /// Readings to make room for up front (JSON does not say how many
    /// elements follow; growing one at a time reallocated the vector six
    /// times for a message of 50).
    capacity: usize,
}

/// The shortest native reading object is about this long, so a payload of
/// n bytes holds at most about n / this readings.
const MIN_READING_JSON_BYTES: usize = 80;

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = ArrayOutcome;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = ArrayOutcome;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of reading objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let top = Defaults::default();
        let mut out = Out {
            readings: Vec::with_capacity(self.capacity),
            notes: Vec::new(),
        };
        let mut failed = None;
        let mut n = 0;
        let elem = || ObjectSeed {
            detect: false,
            level: 2,
        };
        while let Some(obj) = seq.next_element_seed(elem())? {
            // After a rejection the rest is still read: a later element the
            // fast path cannot handle (or invalid JSON) sends the whole
            // message to the Value path, which may fail it differently.
            if failed.is_none() {
                let element = reading_from_fields(&obj.fields, &top, self.ctx);
                if let Err(reason) = push_element(&mut out, element, "element", n) {
                    failed = Some(reason);
                }
            }
            n += 1;
        }
        Ok(match failed {
            Some(reason) => ArrayOutcome::Failed(reason),
            None if n == 0 => ArrayOutcome::Empty,
            None => ArrayOutcome::Done(out),
        })
    }
}

#[cfg(test)]
mod tests {
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
            serde_json::from_str(include_str!("../../schemas/reading.schema.json")).unwrap();
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
}

/// The fast path against the `Value` path, over a generated corpus.
#[cfg(test)]
mod fast_path_tests {
    use super::super::testutil::*;
    use super::super::{decode_with, Ctx, DecodeConfig, Decoded, Format, Path, Rejection};
    use super::decode_fast;

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
}
