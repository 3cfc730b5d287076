//! The `Value` path: a native payload read from a parsed
//! [`serde_json::Value`] (the reference path, also used by LoRaWAN).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::super::{Ctx, Out};
use super::{
    array_out, push_element, reading_from_fields, single, Defaults, Element, Field, Fields,
    EMPTY_ARRAY,
};

/// Decodes a native payload: an object or a non-empty array of objects.
pub(in crate::decode) fn decode(v: &Value, ctx: &Ctx) -> Result<Out, String> {
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

/// Decodes an array of reading objects; errors and notes name `"{what} {i}"`
/// (0-based index).
pub(in crate::decode) fn elements(
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

impl<'a> Field<'a> {
    fn of_value(v: Option<&'a Value>) -> Field<'a> {
        match v {
            None | Some(Value::Null) => Field::Absent,
            Some(Value::String(s)) => Field::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => Field::Num(Cow::Borrowed(n.as_str())),
            Some(_) => Field::Other,
        }
    }
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
pub(in crate::decode) fn reading_from_object(
    obj: &Map<String, Value>,
    defaults: &Defaults<'_>,
    ctx: &Ctx,
) -> Result<Element, String> {
    reading_from_fields(&Fields::of_map(obj), defaults, ctx)
}
