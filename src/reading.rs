//! Domain types: what a meter reading is, independent of how it arrived.
//!
//! Everything here is validated on construction (`try_new` / `parse`), so a
//! `Reading` that exists is a reading we are willing to store.

use std::fmt;

/// Largest number of decimal places we keep in the numeric column
/// (`value_decimal`, Parquet DECIMAL(38, 9)). The exact text is kept beside it.
pub(crate) const VALUE_SCALE: u32 = 9;
/// Largest absolute value the DECIMAL(38, 9) column can hold: 10^29 - 1 units.
const MAX_SCALED_ABS: i128 = 10i128.pow(38) - 1;

/// Why a meter id, a register name or a value is not valid. Its text is
/// the rejection reason the decoders record (the rejects table keeps it
/// verbatim); what was given is in it, cut to 40 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidField {
    #[error("invalid meter_id {id:?}: must be 1-{max} characters", max = MeterId::MAX_LEN)]
    MeterIdLength { id: String },
    #[error("invalid meter_id {id:?}: character {c:?} is not one of A-Za-z0-9._:-")]
    MeterIdChar { id: String, c: char },
    #[error("invalid register {name:?}: must be 1-64 characters of a-z0-9_")]
    Register { name: String },
    #[error("invalid value {text:?}: {why}")]
    Value { text: String, why: ValueProblem },
}

/// What is wrong with a decimal value's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    #[error("empty")]
    Empty,
    #[error("not a decimal number")]
    NotDecimal,
    #[error("{EXPONENT_OUT_OF_RANGE} (more than {MAX_EXPONENT} in magnitude)")]
    ExponentOutOfRange,
    #[error("more than 9 decimal places")]
    TooPrecise,
    #[error("too many digits")]
    TooManyDigits,
    #[error("too large")]
    TooLarge,
}

/// A meter identifier: 1–128 characters of `A-Za-z0-9._:-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterId(String);

impl MeterId {
    pub(crate) const MAX_LEN: usize = 128;

    pub fn try_new(s: &str) -> Result<Self, InvalidField> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(InvalidField::MeterIdLength {
                id: truncate(s, 40).to_owned(),
            });
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(InvalidField::MeterIdChar {
                id: truncate(s, 40).to_owned(),
                c,
            });
        }
        Ok(MeterId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MeterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a meter measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Medium {
    Heat,
    Cooling,
    Water,
    WarmWater,
    Hca,
}

impl Medium {
    pub const ALL: [Medium; 5] = [
        Medium::Heat,
        Medium::Cooling,
        Medium::Water,
        Medium::WarmWater,
        Medium::Hca,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Heat => "heat",
            Medium::Cooling => "cooling",
            Medium::Water => "water",
            Medium::WarmWater => "warm_water",
            Medium::Hca => "hca",
        }
    }

    /// The canonical names only (`heat`, `cooling`, `water`, `warm_water`, `hca`).
    pub fn parse(s: &str) -> Option<Medium> {
        Medium::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unit of a register value. Stored by its canonical spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Wh,
    KWh,
    MWh,
    MJ,
    GJ,
    M3,
    Litre,
    /// Heat cost allocator units (dimensionless).
    Hca,
}

impl Unit {
    pub const ALL: [Unit; 8] = [
        Unit::Wh,
        Unit::KWh,
        Unit::MWh,
        Unit::MJ,
        Unit::GJ,
        Unit::M3,
        Unit::Litre,
        Unit::Hca,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Wh => "Wh",
            Unit::KWh => "kWh",
            Unit::MWh => "MWh",
            Unit::MJ => "MJ",
            Unit::GJ => "GJ",
            Unit::M3 => "m3",
            Unit::Litre => "l",
            Unit::Hca => "hca",
        }
    }

    /// Accepts the canonical spelling case-insensitively, plus `m³`, `L`,
    /// `units` (HCA) and the wmbusmeters field suffixes (`kwh`, `m3`, ...).
    pub fn parse(s: &str) -> Option<Unit> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "m³" | "m^3" => return Some(Unit::M3),
            "litre" | "liter" | "litres" | "liters" => return Some(Unit::Litre),
            "units" | "unit" => return Some(Unit::Hca),
            _ => {}
        }
        Unit::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(&lower))
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a reading is the register as measured at `ts`, or a value the
/// device froze on a set (billing) date and reports later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadingKind {
    Measured,
    SetDate,
}

impl ReadingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingKind::Measured => "measured",
            ReadingKind::SetDate => "set_date",
        }
    }
}

/// An exact decimal number, as the meter sent it.
///
/// `text` is the value digit for digit (a JSON number's literal, or the
/// decimal string); `scaled` is the same value times 10^9, exact, which is
/// what the `value_decimal` column holds and what duplicate detection compares
/// (so `"1.50"` and `1.5` are the same value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: String,
    scaled: i128,
}

impl Decimal {
    /// Parses a plain decimal literal: optional sign, digits, optional
    /// fraction, optional exponent (`1.5e3`). Rejects NaN, infinities, empty
    /// strings, and values that cannot be held exactly at scale 9 in 38 digits.
    ///
    /// ```
    /// use gapless::reading::Decimal;
    /// let v = Decimal::parse("326.070").unwrap();
    /// assert_eq!(v.as_str(), "326.070"); // digit for digit
    /// assert_eq!(v.scaled(), Decimal::parse("326.07").unwrap().scaled()); // same value
    /// assert!(Decimal::parse("NaN").is_err());
    /// assert!(Decimal::parse("0.0000000001").is_err()); // not exact at 9 places
    /// ```
    pub fn parse(text: &str) -> Result<Decimal, InvalidField> {
        let scaled = parse_scaled(text)?;
        Ok(Decimal {
            text: text.to_owned(),
            scaled,
        })
    }

    /// The value exactly as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value times 10^9 (exact).
    pub fn scaled(&self) -> i128 {
        self.scaled
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Formats a value scaled by 10^9 as a plain decimal string without trailing
/// zeros (`1500000000` -> `"1.5"`). Used where a derived value is printed
/// (consumption, statistics); stored values keep their own text.
pub fn format_scaled(scaled: i128) -> String {
    let neg = scaled < 0;
    let abs = scaled.unsigned_abs();
    let div = 10u128.pow(VALUE_SCALE);
    let int = abs / div;
    let mut frac = abs % div;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(&int.to_string());
    if frac != 0 {
        let mut digits = VALUE_SCALE as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        s.push('.');
        s.push_str(&format!("{frac:0digits$}"));
    }
    s
}

/// Formats a value scaled by 10^9 with exactly `decimals` places (at most
/// 9), as a meter that sends that many decimals would: `(326070000000, 3)`
/// -> `"326.070"`. Digits beyond `decimals` are cut, not rounded: callers
/// pass values already at that precision.
pub fn format_fixed(scaled: i128, decimals: u8) -> String {
    let decimals = (decimals as u32).min(VALUE_SCALE);
    let div = 10u128.pow(VALUE_SCALE);
    let abs = scaled.unsigned_abs();
    let int = abs / div;
    let frac = (abs % div) / 10u128.pow(VALUE_SCALE - decimals);
    let sign = if scaled < 0 { "-" } else { "" };
    if decimals == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac:0w$}", w = decimals as usize)
    }
}

/// Number of fraction digits in a plain decimal literal (`"326.070"` -> 3;
/// with an exponent, the digits that remain after applying it), at most 9.
pub fn fraction_digits(text: &str) -> u8 {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let frac = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
    frac.saturating_sub(exp).clamp(0, i64::from(VALUE_SCALE)) as u8
}

/// Largest exponent magnitude a decimal literal may carry (`1e100`,
/// `5e-100`). Every value DECIMAL(38, 9) holds is written with a far smaller
/// one; the bound is checked on the exponent's digits before any arithmetic,
/// so a value costs O(its length) whatever it claims (`0e200000000`).
pub(crate) const MAX_EXPONENT: u32 = 100;

/// Part of the rejection reason for an exponent beyond [`MAX_EXPONENT`].
pub(crate) const EXPONENT_OUT_OF_RANGE: &str = "exponent out of range";

/// Reads an exponent (`[+-]digits`) bounded by [`MAX_EXPONENT`]: `Ok(None)`
/// when it is not a decimal integer, `Err(())` when it is out of range. The
/// digits are only compared, never multiplied past the bound.
fn parse_exponent(s: &str) -> Result<Option<i64>, ()> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let mut e: i64 = 0;
    for d in digits.bytes() {
        e = e * 10 + i64::from(d - b'0');
        if e > i64::from(MAX_EXPONENT) {
            return Err(());
        }
    }
    Ok(Some(if neg { -e } else { e }))
}

fn parse_scaled(text: &str) -> Result<i128, InvalidField> {
    let err = |why: ValueProblem| InvalidField::Value {
        text: truncate(text, 40).to_owned(),
        why,
    };
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(err(ValueProblem::Empty));
    }
    let (neg, rest) = match bytes[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => match parse_exponent(&rest[i + 1..]) {
            Ok(Some(e)) => (&rest[..i], e),
            Ok(None) => return Err(err(ValueProblem::NotDecimal)),
            Err(()) => return Err(err(ValueProblem::ExponentOutOfRange)),
        },
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err(ValueProblem::NotDecimal));
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err(ValueProblem::NotDecimal));
    }
    // digits = int_part ++ frac_part, value = digits * 10^(exp - frac_len)
    let digits = int_part.bytes().chain(frac_part.bytes());
    // |exp| <= MAX_EXPONENT and a length fits i64: no overflow here.
    let shift = exp - frac_part.len() as i64 + i64::from(VALUE_SCALE);
    let mut acc: i128 = 0;
    let mut significant = 0usize;
    let all: Vec<u8> = digits.collect();
    // Digits that fall below 10^-9 must all be zero (else not exact at scale 9).
    let keep = if shift >= 0 {
        all.len()
    } else {
        let drop = (-shift) as usize;
        if drop > all.len() {
            if all.iter().any(|&d| d != b'0') {
                return Err(err(ValueProblem::TooPrecise));
            }
            0
        } else {
            if all[all.len() - drop..].iter().any(|&d| d != b'0') {
                return Err(err(ValueProblem::TooPrecise));
            }
            all.len() - drop
        }
    };
    for &d in &all[..keep] {
        if significant > 0 || d != b'0' {
            significant += 1;
        }
        if significant > 38 {
            return Err(err(ValueProblem::TooManyDigits));
        }
        acc = acc * 10 + (d - b'0') as i128;
    }
    // Zero stays zero (no loop); anything else exceeds 10^38 after at most
    // 38 multiplications, so this loop is bounded by 38, not by `shift`.
    if shift > 0 && acc != 0 {
        for _ in 0..shift {
            acc = acc
                .checked_mul(10)
                .ok_or_else(|| err(ValueProblem::TooLarge))?;
            if acc > MAX_SCALED_ABS {
                return Err(err(ValueProblem::TooLarge));
            }
        }
    }
    if acc > MAX_SCALED_ABS {
        return Err(err(ValueProblem::TooLarge));
    }
    Ok(if neg { -acc } else { acc })
}

/// One register reading of one meter, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub meter_id: MeterId,
    pub medium: Medium,
    /// Register name (`total`, `energy`, `current_consumption`, ...):
    /// 1–64 characters of `a-z0-9_`.
    pub register: String,
    pub unit: Unit,
    pub value: Decimal,
    /// Reading time, microseconds since the Unix epoch, UTC.
    pub ts_micros: i64,
    /// Telegram / frame counter, if the source has one.
    pub seq: Option<u64>,
    pub kind: ReadingKind,
}

/// Validates a register name: 1–64 characters of `a-z0-9_`.
pub(crate) fn validate_register(s: &str) -> Result<(), InvalidField> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(InvalidField::Register {
            name: truncate(s, 40).to_owned(),
        });
    }
    Ok(())
}

/// Shortens a string for an error message, on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_formatting_round_trips_the_sent_text() {
        for text in ["326.070", "0", "-1.5", "1234.567", "0.000000001", "99999"] {
            let d = Decimal::parse(text).unwrap();
            assert_eq!(format_fixed(d.scaled(), fraction_digits(text)), text);
        }
        assert_eq!(fraction_digits("1e3"), 0);
        assert_eq!(fraction_digits("1.5E-3"), 4);
        assert_eq!(format_fixed(1_500_000, 4), "0.0015");
        assert_eq!(format_fixed(-326_070_000_000, 2), "-326.07");
    }

    #[test]
    fn decimal_keeps_text_and_scales_exactly() {
        let cases = [
            ("1234.567", 1_234_567_000_000i128),
            ("326.069", 326_069_000_000),
            ("0", 0),
            ("-1.5", -1_500_000_000),
            ("1.50", 1_500_000_000),
            ("6371.666667", 6_371_666_667_000),
            ("1e3", 1_000_000_000_000),
            ("1.5E-3", 1_500_000),
            ("0.000000001", 1),
            ("1.0000000000", 1_000_000_000),
        ];
        for (text, scaled) in cases {
            let d = Decimal::parse(text).unwrap();
            assert_eq!(d.as_str(), text);
            assert_eq!(d.scaled(), scaled, "{text}");
        }
    }

    #[test]
    fn decimal_rejects_what_it_cannot_hold_exactly() {
        for bad in [
            "",
            "NaN",
            "nan",
            "Infinity",
            "-inf",
            "1,5",
            "abc",
            ".",
            "1..2",
            "0.0000000001",
            "1e40",
            "--1",
            "1e",
            "0x10",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// Issue 18 item 1: `0e200000000` spun 200 M times in the scaling loop
    /// (seconds of CPU for one value) and `1e-2147483648` overflowed
    /// `exp - frac_len + 9` (a panic in debug, a wrap in release). The
    /// exponent is bounded before any arithmetic now.
    #[test]
    fn hostile_exponents_are_rejected_at_once_without_overflow() {
        for bad in [
            "0e200000000",
            "0E200000000",
            "1e-2147483648",
            "0.5e-2147483648",
            "-0e2147483647",
            "1e2147483647",
            "1e99999999999999999999",
            "0e-99999999999999999999",
            "1e101",
            "0e-101",
        ] {
            let why = Decimal::parse(bad).expect_err(bad);
            assert!(
                why.to_string().contains("exponent out of range"),
                "{bad}: {why}"
            );
        }
        // Within the bound, values keep parsing as before.
        assert_eq!(Decimal::parse("0e100").unwrap().scaled(), 0);
        assert_eq!(Decimal::parse("1e-9").unwrap().scaled(), 1);
        assert_eq!(Decimal::parse("1e+3").unwrap().scaled(), 1_000_000_000_000);
        assert!(Decimal::parse("1e100")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(Decimal::parse("1e-100")
            .unwrap_err()
            .to_string()
            .contains("more than 9 decimal places"));
        assert_eq!(fraction_digits("1e-2147483648"), VALUE_SCALE as u8);
        assert_eq!(fraction_digits("1.5e2147483647"), 0);
    }

    #[test]
    fn format_scaled_round_trips() {
        for (s, text) in [
            (1_500_000_000i128, "1.5"),
            (0, "0"),
            (-1, "-0.000000001"),
            (42_000_000_000, "42"),
        ] {
            assert_eq!(format_scaled(s), text);
        }
    }

    #[test]
    fn meter_id_rules() {
        assert!(MeterId::try_new("HZ-000123").is_ok());
        assert!(MeterId::try_new("a.b_c:d-e").is_ok());
        assert!(MeterId::try_new("").is_err());
        assert!(MeterId::try_new("has space").is_err());
        assert!(MeterId::try_new(&"x".repeat(129)).is_err());
        assert!(MeterId::try_new(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn units_parse_leniently_but_store_canonically() {
        assert_eq!(Unit::parse("kwh"), Some(Unit::KWh));
        assert_eq!(Unit::parse("KWH"), Some(Unit::KWh));
        assert_eq!(Unit::parse("m³"), Some(Unit::M3));
        assert_eq!(Unit::parse("hca"), Some(Unit::Hca));
        assert_eq!(Unit::parse("furlong"), None);
    }
}
