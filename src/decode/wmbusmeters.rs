//! wmbusmeters JSON: one object per telegram.
//!
//! ```json
//! {"_":"telegram","media":"water","meter":"istawater","name":"I","id":"22705729",
//!  "target_date":"2024-09-30","target_m3":326.062,"total_m3":326.069,
//!  "timestamp":"2024-03-03T18:37:00Z"}
//! ```
//!
//! `timestamp` is the gateway's receive time (UTC); the telegram carries no
//! access number, so `seq` is `None`. Every field `<base>_<unit>` with a
//! register unit (`m3`, `kwh`, `mwh`, `gj`, `mj`, `wh`, `hca`, `l`) is
//! either a measured register (at `timestamp`), a set-date value (at its
//! date, 00:00:00Z), or skipped with a note. The reading's register is the
//! whole field name (`total_m3`, `target_kwh`), not the base: one telegram
//! may carry the same base in two units (istaheat: `target_kwh` and
//! `target_m3`). The base only decides how the field is classified.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    bad_timestamp, decimal_of, field_list, medium_from_name, parse_set_date, req_str,
    split_register_field, Ctx, Out, ValueError,
};
use crate::reading::{truncate, validate_register, Decimal, MeterId, Reading, ReadingKind};
use crate::time::parse_rfc3339;

/// Keys that describe the telegram, not a value (left out of error lists).
const META: [&str; 6] = ["_", "media", "meter", "name", "id", "timestamp"];

/// Bases of measured (current) registers besides `total` and `total_*`.
const MEASURED: [&str; 6] = [
    "current_consumption",
    "current",
    "consumption",
    "heat",
    "volume",
    "current_volume",
];

pub(super) fn decode(v: &Value, ctx: &Ctx) -> Result<Out, String> {
    let obj = v
        .as_object()
        .ok_or("wmbusmeters telegram must be a JSON object")?;
    let meter_id = MeterId::try_new(req_str(obj, "id")?).map_err(|e| e.to_string())?;
    let media = req_str(obj, "media")?;
    let medium = medium_from_name(media)
        .ok_or_else(|| format!("unknown medium {:?}", truncate(media, 40)))?;
    let ts_text = req_str(obj, "timestamp")?;
    let ts = parse_rfc3339(ts_text).map_err(|_| bad_timestamp("timestamp", ts_text))?;
    ctx.check_measured(ts)?;

    let mut out = Out {
        readings: Vec::new(),
        notes: Vec::new(),
    };
    for (key, val) in obj {
        let Some((base, unit)) = split_register_field(key) else {
            continue;
        };
        match val {
            Value::Null => {
                out.notes.push(format!("skipped {key}: null value"));
                continue;
            }
            Value::String(s) if s.is_empty() => {
                out.notes.push(format!("skipped {key}: empty value"));
                continue;
            }
            _ => {}
        }
        let (kind, at) = match classify(base, obj) {
            Class::Measured => (ReadingKind::Measured, ts),
            Class::SetDate(candidates) => {
                match set_date(obj, key, &candidates, ctx, &mut out.notes) {
                    Some(at) => (ReadingKind::SetDate, at),
                    None => continue,
                }
            }
            Class::Extreme => {
                out.notes.push(format!(
                    "skipped {key}: minimum/maximum, not a register value"
                ));
                continue;
            }
            Class::Historical => {
                out.notes
                    .push(format!("skipped {key}: historical value without a date"));
                continue;
            }
        };
        // The register is the whole field name (`total_m3`, `target_kwh`):
        // one telegram may carry the same base in two units.
        validate_register(key).map_err(|e| format!("field {key:?}: {e}"))?;
        out.readings.push(Reading {
            meter_id: meter_id.clone(),
            medium,
            register: key.to_owned(),
            unit,
            value: register_value(key, val)?,
            ts_micros: at,
            seq: None,
            kind,
        });
    }
    if out.readings.is_empty() {
        let mut reason = format!(
            "no meter register in wmbusmeters telegram ({})",
            field_list(obj, &META)
        );
        if !out.notes.is_empty() {
            reason.pop();
            reason.push_str("; ");
            reason.push_str(&out.notes.join("; "));
            reason.push(')');
        }
        return Err(reason);
    }
    Ok(out)
}

/// A register field's value: a JSON number (or a decimal string), exactly.
pub(super) fn register_value(key: &str, val: &Value) -> Result<Decimal, String> {
    decimal_of(val).map_err(|e| match e {
        ValueError::WrongType => format!("field {key:?} must be a number"),
        ValueError::Invalid(why) => format!("field {key:?}: {why}"),
    })
}

/// What a register field is.
enum Class<'a> {
    /// The register now, at the receive time.
    Measured,
    /// A value frozen on a date found in the first present key of these.
    SetDate(Vec<Cow<'a, str>>),
    /// `max_*` / `min_*`: not a register.
    Extreme,
    /// A value with no date to place it (`last_jan_m3`, `prev_01_hca`).
    Historical,
}

/// Classifies a register field by its base name (the name without the unit).
fn classify<'a>(base: &'a str, obj: &Map<String, Value>) -> Class<'a> {
    use Cow::{Borrowed, Owned};
    // Set-date patterns first: `total_at_date` must not count as `total_*`.
    if base == "target" || base.starts_with("target_") {
        return Class::SetDate(vec![Borrowed("target_date")]);
    }
    if let Some(i) = base.find("at_set_date") {
        if i == 0 || base.as_bytes()[i - 1] == b'_' {
            let rest = &base[i + "at_set_date".len()..];
            if rest.is_empty() {
                // `consumption_at_set_date` + `set_date`.
                return Class::SetDate(vec![Borrowed(base), Borrowed("set_date")]);
            }
            if let Some(n) = rest.strip_prefix('_') {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    // `consumption_at_set_date_17` + `set_date_17`; fhkvdataiv
                    // puts the date in `consumption_at_set_date_17` itself.
                    return Class::SetDate(vec![Borrowed(base), Owned(format!("set_date_{n}"))]);
                }
            }
        }
    }
    if base == "at_date" || base.ends_with("_at_date") {
        return Class::SetDate(vec![Borrowed("at_date")]);
    }
    if base.starts_with("last_month") {
        return Class::SetDate(vec![
            Borrowed("last_month_measure_date"),
            Borrowed("last_month_date"),
        ]);
    }
    if base.starts_with("last_year") {
        return Class::SetDate(vec![Borrowed("last_year_date")]);
    }
    if base == "previous" {
        return Class::SetDate(vec![Borrowed("previous_date")]);
    }
    if base == "prev" {
        return Class::SetDate(vec![Borrowed("prev_date")]);
    }
    if base == "total" || base.starts_with("total_") || MEASURED.contains(&base) {
        return Class::Measured;
    }
    // `due_date_m3` + `due_date`, `due_17_date_m3` + `due_17_date`, and any
    // other value whose date sits in the key of its own base name.
    if base.ends_with("_date") || obj.get(base).is_some_and(Value::is_string) {
        return Class::SetDate(vec![Borrowed(base)]);
    }
    if base.starts_with("max_") || base.starts_with("min_") {
        return Class::Extreme;
    }
    Class::Historical
}

/// Finds the date of a set-date value `key`: the first candidate key present.
/// `None` (with a note) when there is none, or it is not a usable date.
fn set_date(
    obj: &Map<String, Value>,
    key: &str,
    candidates: &[Cow<'_, str>],
    ctx: &Ctx,
    notes: &mut Vec<String>,
) -> Option<i64> {
    // The first candidate holding a string; failing that, the first present
    // (so a `null` date is reported as such).
    let lookup = |want_string: bool| {
        candidates.iter().enumerate().find_map(|(i, c)| {
            obj.get(c.as_ref())
                .filter(|v| !want_string || v.is_string())
                .map(|v| (i, c, v))
        })
    };
    let Some((i, date_key, val)) = lookup(true).or_else(|| lookup(false)) else {
        let names: Vec<&str> = candidates.iter().map(AsRef::as_ref).collect();
        notes.push(format!(
            "skipped {key}: set-date value without a date (no {})",
            names.join(" or ")
        ));
        return None;
    };
    let text = match val {
        Value::String(s) if !s.is_empty() => s.as_str(),
        Value::Null => {
            notes.push(format!("skipped {key}: {date_key} is null"));
            return None;
        }
        Value::String(_) => {
            notes.push(format!("skipped {key}: {date_key} is empty"));
            return None;
        }
        _ => {
            notes.push(format!("skipped {key}: {date_key} is not a date"));
            return None;
        }
    };
    let Some(at) = parse_set_date(text) else {
        notes.push(format!(
            "skipped {key}: {date_key} {:?} is not a date",
            truncate(text, 40)
        ));
        return None;
    };
    let date = &text[..10];
    if let Some(why) = ctx.set_date_problem(at, date) {
        notes.push(format!("skipped {key}: {why}"));
        return None;
    }
    // Say so when a later candidate disagrees (fhkvdataiv: `set_date_8` is a
    // different storage than `consumption_at_set_date_8_hca`).
    for other in &candidates[i + 1..] {
        if let Some(o) = obj.get(other.as_ref()).and_then(Value::as_str) {
            if parse_set_date(o).is_some_and(|t| t != at) {
                notes.push(format!(
                    "{key}: dated {date} from {date_key}, not {} from {other}",
                    truncate(o, 40)
                ));
            }
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests;
