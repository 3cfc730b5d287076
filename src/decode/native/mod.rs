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
//!
//! The shared part is here: what a reading object's fields are
//! ([`Fields`]), the rules that make them a reading
//! ([`reading_from_fields`]), and how element outcomes make a message's
//! outcome. [`general`] is the `Value` path, [`fast`] the fast path.

use std::borrow::Cow;

use super::{bad_timestamp, medium_from_name, missing, Ctx, Out};
use crate::reading::{
    truncate, validate_register, Decimal, Medium, MeterId, Reading, ReadingKind, Unit,
};
use crate::time::parse_rfc3339;

mod fast;
mod general;

pub(super) use fast::decode_fast;
pub(super) use general::{decode, elements, reading_from_object};

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

/// Validates one reading object's fields (checked in this order: meter_id,
/// medium, register, unit, value, ts, seq, kind, then the time range).
pub(super) fn reading_from_fields(
    f: &Fields<'_>,
    defaults: &Defaults<'_>,
    ctx: &Ctx,
) -> Result<Element, String> {
    let meter_id = match &f.meter_id {
        Field::Str(s) => MeterId::try_new(s).map_err(|e| e.to_string())?,
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
            validate_register(s).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests;
