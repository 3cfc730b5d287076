//! Decode: payload bytes → validated readings, or a rejection with a reason.
//!
//! Pure: no I/O, the receive time is passed in. One file per format:
//! `native.rs` (gapless' own JSON, `schemas/reading.schema.json`),
//! `wmbusmeters.rs` (one wmbusmeters telegram object) and `lorawan.rs`
//! (ChirpStack v4 and The Things Stack v3 uplinks).
//!
//! A message is atomic: it yields at least one valid reading and no invalid
//! one, or it is rejected as a whole with a reason naming the element/field.
//! Things skipped on purpose (a set-date value with a sentinel date, a `null`
//! register, a historical value without a date) are listed in
//! [`Decoded::notes`], never dropped silently.

use serde_json::{Map, Value};

use crate::reading::{format_scaled, truncate, Decimal, Medium, Reading, Unit};
use crate::time;

mod lorawan;
mod native;
mod wmbusmeters;

/// A payload format gapless understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Native,
    Wmbusmeters,
    Chirpstack,
    Tts,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Wmbusmeters => "wmbusmeters",
            Format::Chirpstack => "chirpstack",
            Format::Tts => "tts",
        }
    }
    pub fn parse(s: &str) -> Option<Format> {
        [
            Format::Native,
            Format::Wmbusmeters,
            Format::Chirpstack,
            Format::Tts,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// What decoding needs to know besides the bytes.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    /// Payloads larger than this are rejected unread.
    pub max_payload_bytes: usize,
    /// A reading time more than this far ahead of the receive time is rejected.
    pub max_future_skew_micros: i64,
    /// Topic filter → format, first match wins; unmatched topics are auto-detected.
    pub pinned: Vec<(String, Format)>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            max_payload_bytes: 256 * 1024,
            max_future_skew_micros: 86_400 * 1_000_000,
            pinned: Vec::new(),
        }
    }
}

/// A successfully decoded message.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub format: Format,
    pub readings: Vec<Reading>,
    /// Things skipped on purpose (a set-date field with a sentinel date, a
    /// null field...): stored in the receipt's `reason` so nothing is silent.
    pub notes: Vec<String>,
    /// The gateway the payload names (LoRaWAN: the first of `rxInfo` /
    /// `rx_metadata`), which alerts use as the meter's group.
    pub gateway: Option<String>,
}

/// Why a message could not be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The format, when it was recognised before the message failed.
    pub format: Option<Format>,
    pub reason: String,
}

/// Reason given when auto-detection recognises none of the formats.
const UNRECOGNISED: &str =
    "unrecognised payload: not native, wmbusmeters, ChirpStack or The Things Stack JSON";

/// Part of every rejection reason for a reading time too far ahead of its
/// receive time: how alerts recognise a meter's clock skew.
pub(crate) const CLOCK_SKEW_MARK: &str = "s ahead of receive time";

/// Earliest accepted reading time: 2000-01-01T00:00:00Z, in µs.
const MIN_TS_MICROS: i64 = 946_684_800 * 1_000_000;

/// Decodes one MQTT message.
///
/// Checks, in order: size limit, empty payload, UTF-8, JSON, format (pinned
/// topic filter, else auto-detection), then the format's own rules. When the
/// topic is pinned, every rejection carries the pinned format.
pub fn decode(
    topic: &str,
    payload: &[u8],
    received_at_micros: i64,
    cfg: &DecodeConfig,
) -> Result<Decoded, Rejection> {
    decode_with(topic, payload, received_at_micros, cfg, Path::Fast)
}

/// Whether [`decode`] may read native messages without a `Value` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The fast native path, falling back to the `Value` tree.
    Fast,
    /// Always the `Value` tree (the reference the fast path is tested against).
    #[cfg_attr(not(test), allow(dead_code))]
    Tree,
}

/// [`decode`], with the native fast path on or off.
fn decode_with(
    topic: &str,
    payload: &[u8],
    received_at_micros: i64,
    cfg: &DecodeConfig,
    path: Path,
) -> Result<Decoded, Rejection> {
    let pinned = cfg
        .pinned
        .iter()
        .find(|(filter, _)| topic_matches(filter, topic))
        .map(|(_, format)| *format);
    let reject = |format: Option<Format>, reason: String| Rejection { format, reason };

    if payload.len() > cfg.max_payload_bytes {
        return Err(reject(
            pinned,
            format!(
                "payload of {} bytes exceeds the limit of {} bytes",
                payload.len(),
                cfg.max_payload_bytes
            ),
        ));
    }
    if payload.is_empty() {
        return Err(reject(pinned, "empty payload".into()));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        reject(
            pinned,
            format!("payload is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(reject(pinned, "empty payload (only whitespace)".into()));
    }
    let ctx = Ctx {
        received_at: received_at_micros,
        max_future_skew: cfg.max_future_skew_micros,
    };
    // Native messages (pinned, or unpinned with a native shape) are read
    // straight from the text; anything the fast path cannot settle exactly
    // (including every other format: it gives up at the first key
    // auto-detection looks at) goes through a `Value` tree below.
    if path == Path::Fast && matches!(pinned, None | Some(Format::Native)) {
        if let Some(result) = native::decode_fast(text, &ctx, pinned.is_none()) {
            return result
                .map(|out| decoded(Format::Native, out))
                .map_err(|reason| reject(Some(Format::Native), reason));
        }
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(pinned, format!("payload is not valid JSON: {e}")))?;

    let Some(format) = pinned.or_else(|| detect(&value)) else {
        return Err(reject(None, UNRECOGNISED.into()));
    };
    // ChirpStack publishes every event type (join, status, ack, log...) with
    // the same envelope; only `event/up` carries readings.
    if format == Format::Chirpstack {
        if let Some((_, event)) = topic.rsplit_once("/event/") {
            if event != "up" {
                return Err(reject(
                    Some(format),
                    format!(
                        "ChirpStack {:?} event is not an uplink (topic {:?})",
                        truncate(event, 40),
                        truncate(topic, 200)
                    ),
                ));
            }
        }
    }
    let out = match format {
        Format::Native => native::decode(&value, &ctx),
        Format::Wmbusmeters => wmbusmeters::decode(&value, &ctx),
        Format::Chirpstack => lorawan::decode_chirpstack(&value, &ctx),
        Format::Tts => lorawan::decode_tts(&value, &ctx),
    }
    .map_err(|reason| reject(Some(format), reason))?;
    let mut d = decoded(format, out);
    d.gateway = gateway(format, &value);
    Ok(d)
}

/// The first gateway a LoRaWAN uplink lists.
fn gateway(format: Format, v: &serde_json::Value) -> Option<String> {
    let id = match format {
        Format::Chirpstack => v.pointer("/rxInfo/0/gatewayId"),
        Format::Tts => v.pointer("/uplink_message/rx_metadata/0/gateway_ids/gateway_id"),
        Format::Native | Format::Wmbusmeters => None,
    }?;
    id.as_str()
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(128).collect())
}

fn decoded(format: Format, out: Out) -> Decoded {
    debug_assert!(
        !out.readings.is_empty(),
        "format decoders reject empty results"
    );
    Decoded {
        format,
        readings: out.readings,
        notes: out.notes,
        gateway: None,
    }
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
///
/// ```
/// use gapless::decode::topic_matches;
/// assert!(topic_matches("meters/#", "meters/heat/HZ-1"));
/// assert!(topic_matches("application/+/device/+/event/up", "application/a/device/01/event/up"));
/// assert!(!topic_matches("meters/+", "meters/heat/HZ-1"));
/// ```
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Auto-detection by shape (first rule that applies):
/// `"_":"telegram"` → wmbusmeters; `deviceInfo`/`deduplicationId` →
/// ChirpStack; `end_device_ids` + `uplink_message` → TTS; `meter_id` or an
/// array → native; `media` + `meter` + `id` (wmbusmeters output without the
/// `"_"` key, as older versions print it) → wmbusmeters.
///
/// Keep `native::fast::DETECTION_KEYS` in step: the native fast path hands any
/// object with a key checked before `meter_id` to this function.
fn detect(value: &Value) -> Option<Format> {
    match value {
        Value::Array(_) => Some(Format::Native),
        Value::Object(obj) => {
            if obj.get("_").and_then(Value::as_str) == Some("telegram") {
                Some(Format::Wmbusmeters)
            } else if obj.contains_key("deviceInfo") || obj.contains_key("deduplicationId") {
                Some(Format::Chirpstack)
            } else if obj.contains_key("end_device_ids") && obj.contains_key("uplink_message") {
                Some(Format::Tts)
            } else if obj.contains_key("meter_id") {
                Some(Format::Native)
            } else if ["media", "meter", "id"]
                .iter()
                .all(|k| obj.get(*k).is_some_and(Value::is_string))
            {
                Some(Format::Wmbusmeters)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// What a format decoder produces: at least one reading (else it rejects).
struct Out {
    readings: Vec<Reading>,
    notes: Vec<String>,
}

/// The receive-time context of one message.
struct Ctx {
    received_at: i64,
    max_future_skew: i64,
}

impl Ctx {
    /// Latest acceptable reading time.
    fn latest(&self) -> i64 {
        self.received_at.saturating_add(self.max_future_skew.max(0))
    }

    /// A measured reading's time must lie in [2000-01-01, receive + skew].
    fn check_measured(&self, ts: i64) -> Result<(), String> {
        if ts < MIN_TS_MICROS {
            return Err(format!("timestamp {} is before 2000-01-01", fmt_micros(ts)));
        }
        if ts > self.latest() {
            return Err(format!(
                "timestamp {} is more than {} {CLOCK_SKEW_MARK} {}",
                fmt_micros(ts),
                format_scaled(i128::from(self.max_future_skew) * 1000),
                fmt_micros(self.received_at)
            ));
        }
        Ok(())
    }

    /// Why a set date is unusable (a sentinel such as 2127-07-01 or
    /// 1999-11-30), or `None` when it is in range. `shown` is the date as sent.
    fn set_date_problem(&self, ts: i64, shown: &str) -> Option<String> {
        if ts < MIN_TS_MICROS {
            Some(format!("set date {shown} is before 2000-01-01"))
        } else if ts > self.latest() {
            Some(format!("set date {shown} is in the future"))
        } else {
            None
        }
    }
}

/// µs since the epoch → `2026-07-11T10:50:30Z` (fraction only when
/// non-zero), or the number of µs when chrono cannot represent it.
fn fmt_micros(ts: i64) -> String {
    time::try_format_micros(ts).unwrap_or_else(|| format!("{ts} µs since 1970-01-01"))
}

/// Error for a timestamp field that is not RFC 3339 with an offset.
fn bad_timestamp(field: &str, s: &str) -> String {
    format!(
        "field {field:?} must be an RFC 3339 timestamp with offset, got {:?}",
        truncate(s, 40)
    )
}

/// A wmbusmeters date: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM[:SS]` (the time is
/// ignored) → that date at 00:00:00Z, in µs.
fn parse_set_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: &[u8]| {
        r.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let rest = &b[10..];
    let digits = |i: usize| rest[i].is_ascii_digit() && rest[i + 1].is_ascii_digit();
    let time_ok = match rest.len() {
        0 => true,
        6 | 9 => {
            matches!(rest[0], b' ' | b'T')
                && digits(1)
                && rest[3] == b':'
                && digits(4)
                && (rest.len() == 6 || (rest[6] == b':' && digits(7)))
        }
        _ => false,
    };
    if !time_ok {
        return None;
    }
    time::midnight_utc(i32::try_from(y).ok()?, m, d)
}

/// Why a JSON value is not a register value.
enum ValueError {
    /// Not a number and not a string.
    WrongType,
    /// A number or string that is not an exact decimal (message from [`Decimal::parse`]).
    Invalid(crate::reading::InvalidField),
}

/// A JSON number (its literal, digit for digit) or a decimal string → [`Decimal`].
fn decimal_of(v: &Value) -> Result<Decimal, ValueError> {
    match v {
        Value::Number(n) => Decimal::parse(n.as_str()).map_err(ValueError::Invalid),
        Value::String(s) => Decimal::parse(s).map_err(ValueError::Invalid),
        _ => Err(ValueError::WrongType),
    }
}

/// Register field suffixes (`total_m3`, `heat_kwh`, ...) and their units.
/// Rates and temperatures (`_m3h`, `_kw`, `_c`, `_m3c`) are not registers.
const REGISTER_SUFFIXES: [(&str, Unit); 8] = [
    ("m3", Unit::M3),
    ("kwh", Unit::KWh),
    ("mwh", Unit::MWh),
    ("gj", Unit::GJ),
    ("mj", Unit::MJ),
    ("wh", Unit::Wh),
    ("hca", Unit::Hca),
    ("l", Unit::Litre),
];

/// `<base>_<unit>` with a register unit suffix (case-insensitive) → `(base, unit)`.
/// The base classifies the field; the reading's register is the whole key.
fn split_register_field(key: &str) -> Option<(&str, Unit)> {
    let i = key.rfind('_')?;
    let (base, suffix) = (&key[..i], &key[i + 1..]);
    if base.is_empty() {
        return None;
    }
    REGISTER_SUFFIXES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(suffix))
        .map(|&(_, unit)| (base, unit))
}

/// The medium a set of register units implies: any energy unit → heat,
/// else any volume → water, else HCA units → hca.
fn medium_from_units(units: impl IntoIterator<Item = Unit>) -> Medium {
    let (mut volume, mut hca) = (false, false);
    for unit in units {
        match unit {
            Unit::Wh | Unit::KWh | Unit::MWh | Unit::MJ | Unit::GJ => return Medium::Heat,
            Unit::M3 | Unit::Litre => volume = true,
            Unit::Hca => hca = true,
        }
    }
    if volume || !hca {
        Medium::Water
    } else {
        Medium::Hca
    }
}

/// A medium name as wmbusmeters (or a LoRaWAN codec) spells it,
/// case-insensitive: the canonical names plus the wM-Bus media texts.
fn medium_from_name(s: &str) -> Option<Medium> {
    let t = s.trim();
    if let Some(m) = Medium::parse(t) {
        return Some(m);
    }
    let lower = t.to_ascii_lowercase();
    let m = match lower.as_str() {
        "water" | "cold water" | "cold_water" => Medium::Water,
        "warm water" | "hot water" | "warm_water" | "hot_water" => Medium::WarmWater,
        "heat" | "heat volume at inlet" | "heat volume at outlet" | "heat/cooling load" => {
            Medium::Heat
        }
        "cooling" => Medium::Cooling,
        "hca" | "heat cost allocation" | "heat cost allocator" => Medium::Hca,
        l if l.starts_with("cooling load") => Medium::Cooling,
        _ => return None,
    };
    Some(m)
}

/// `missing field "x"`: the error for a required field that is absent or `null`.
fn missing(field: &str) -> String {
    format!("missing field {field:?}")
}

/// A required string field of an object (`null` counts as missing).
fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("field {field:?} must be a string")),
    }
}

/// The keys of an object for an error message, `_`-meta and identity keys
/// left out, at most 20.
fn field_list(obj: &Map<String, Value>, skip: &[&str]) -> String {
    let keys: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !skip.contains(k))
        .collect();
    if keys.is_empty() {
        return "no fields".into();
    }
    let mut s = String::from("fields: ");
    for (i, k) in keys.iter().take(20).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(truncate(k, 40));
    }
    if keys.len() > 20 {
        s.push_str(&format!(", ... ({} in all)", keys.len()));
    }
    s
}

#[cfg(test)]
mod testutil {
    use super::*;

    /// RFC 3339 → µs (test helper).
    pub(super) fn us(s: &str) -> i64 {
        time::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Receive time used by most tests.
    pub(super) const RECV: &str = "2026-07-11T10:50:30Z";

    pub(super) fn dec(topic: &str, payload: &str) -> Result<Decoded, Rejection> {
        decode(
            topic,
            payload.as_bytes(),
            us(RECV),
            &DecodeConfig::default(),
        )
    }

    pub(super) fn ok(topic: &str, payload: &str) -> Decoded {
        dec(topic, payload).unwrap_or_else(|r| panic!("rejected: {r:?}\npayload: {payload}"))
    }

    pub(super) fn err(topic: &str, payload: &str) -> Rejection {
        match dec(topic, payload) {
            Ok(d) => panic!("accepted: {d:?}\npayload: {payload}"),
            Err(r) => r,
        }
    }

    /// The reading of `register` with `unit` (panics unless exactly one).
    pub(super) fn find<'a>(d: &'a Decoded, register: &str, unit: Unit) -> &'a Reading {
        let v: Vec<&Reading> = d
            .readings
            .iter()
            .filter(|r| r.register == register && r.unit == unit)
            .collect();
        assert_eq!(v.len(), 1, "{register} {unit}: {:#?}", d.readings);
        v[0]
    }
}

#[cfg(test)]
mod tests;
