//! The fast path: a native payload read straight from its text, borrowing
//! field text from it instead of building a `Value` tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::super::{Ctx, Out};
use super::{
    array_out, push_element, reading_from_fields, single, Defaults, Field, Fields, EMPTY_ARRAY,
};

/// Decodes a native payload without building a `Value` tree.
///
/// `Some(result)` is exactly what [`decode`](super::decode) would give for the same
/// payload; `None` means "take the `Value` path" (the payload is not valid
/// JSON, not an object or array of objects, has a field this path cannot
/// classify exactly, or, with `detect`, may be another format: it lacks
/// `meter_id` or has a key auto-detection looks at before `meter_id`).
pub(in crate::decode) fn decode_fast(
    text: &str,
    ctx: &Ctx,
    detect: bool,
) -> Option<Result<Out, String>> {
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

impl<'a> Field<'a> {
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
mod tests;
