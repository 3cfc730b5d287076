//! Time, a leaf: where "now" comes from (the system clock, or a clock the
//! caller moves: the demo replays a simulated week at full speed, and tests
//! control time), and timestamps as text. Every stage keeps time as µs
//! since the Unix epoch, UTC; this is the one place that parses or formats
//! them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Utc};

/// A text that is not the time it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeError {
    /// Neither RFC 3339 nor a plain date ([`parse_time`]).
    #[error("{0:?} is not a time: use RFC 3339 (2022-07-25T00:00:00Z) or a date (2022-07-25)")]
    NotATime(String),
    /// Not RFC 3339 with an offset ([`parse_rfc3339`]).
    #[error("{0:?} is not an RFC 3339 timestamp with an offset")]
    NotRfc3339(String),
    /// Not `YYYY-MM-DD` ([`parse_date`]).
    #[error("{0:?} is not a date (YYYY-MM-DD)")]
    NotADate(String),
}

#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's UTC clock.
    #[default]
    System,
    /// Microseconds since the epoch, set by whoever holds the other handle.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `micros`, and the handle that moves it.
    pub(crate) fn manual(micros: i64) -> (Clock, Arc<AtomicI64>) {
        let t = Arc::new(AtomicI64::new(micros));
        (Clock::Manual(t.clone()), t)
    }

    /// Now, in microseconds since the Unix epoch (UTC).
    pub fn now_micros(&self) -> i64 {
        match self {
            Clock::System => now_micros(),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// Now, from the system's UTC clock, in µs since the Unix epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 with an offset (any sub-second precision) → µs since the
/// epoch, UTC; sub-microsecond digits are truncated.
pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|_| TimeError::NotRfc3339(s.to_string()))
}

/// `YYYY-MM-DD` → its midnight, UTC, in µs.
pub(crate) fn parse_date(s: &str) -> Result<i64, TimeError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
        .map_err(|_| TimeError::NotADate(s.to_string()))
}

/// An RFC 3339 timestamp or a plain date (`2022-07-25` = midnight UTC)
/// → µs, spaces around it ignored: the times people give (flags, query
/// parameters, the registry).
pub(crate) fn parse_time(s: &str) -> Result<i64, TimeError> {
    let s = s.trim();
    parse_rfc3339(s)
        .or_else(|_| parse_date(s))
        .map_err(|_| TimeError::NotATime(s.to_string()))
}

/// Midnight UTC of a calendar day, in µs; `None` for a day that does not
/// exist.
pub(crate) fn midnight_utc(year: i32, month: u32, day: u32) -> Option<i64> {
    let d = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
}

/// The UTC calendar year of a timestamp (`None` outside chrono's range).
pub(crate) fn year_of(micros: i64) -> Option<i32> {
    DateTime::from_timestamp_micros(micros).map(|t| t.year())
}

/// RFC 3339 UTC, the fraction only when non-zero (`2026-07-11T10:50:30Z`,
/// `…30.000001Z`); `None` outside chrono's range (±262,000 years).
pub(crate) fn try_format_micros(micros: i64) -> Option<String> {
    DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// [`try_format_micros`], or the bare number outside chrono's range.
pub(crate) fn format_micros(micros: i64) -> String {
    try_format_micros(micros).unwrap_or_else(|| micros.to_string())
}

/// `YYYY-MM-DD` of a timestamp, UTC (`invalid` outside chrono's range).
pub(crate) fn utc_date(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid".to_string())
}

/// `2022-07-23 00:00 UTC`, seconds only when there are some: for people
/// (the outage certificate); the bare number outside chrono's range.
pub(crate) fn format_human(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| {
            if micros % 60_000_000 == 0 {
                t.format("%Y-%m-%d %H:%M UTC").to_string()
            } else {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            }
        })
        .unwrap_or_else(|| micros.to_string())
}

/// `20220723T000000Z` (with `.000000` µs before the `Z` when `micros` is
/// true): a timestamp for file names, which sort by it.
pub(crate) fn format_basic(t: i64, micros: bool) -> String {
    let pattern = if micros {
        "%Y%m%dT%H%M%S%6fZ"
    } else {
        "%Y%m%dT%H%M%SZ"
    };
    DateTime::from_timestamp_micros(t)
        .map(|d| d.format(pattern).to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;
    const DAY: i64 = 86_400 * SECOND;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (c, handle) = Clock::manual(5);
        assert_eq!(c.now_micros(), 5);
        handle.store(9, Ordering::Relaxed);
        assert_eq!(c.now_micros(), 9);
        assert!(Clock::System.now_micros() > 1_600_000_000_000_000);
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        assert_eq!(parse_time("1970-01-02").unwrap(), DAY);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), SECOND);
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(parse_time(" 1970-01-02\n").unwrap(), DAY);
        assert!(parse_time("yesterday")
            .unwrap_err()
            .to_string()
            .contains("RFC 3339"));
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.0000019Z"),
            Ok(1),
            "sub-µs digits are truncated"
        );
        assert_eq!(
            parse_rfc3339("1970-01-02"),
            Err(TimeError::NotRfc3339("1970-01-02".into()))
        );
        assert_eq!(parse_date("1970-01-03"), Ok(2 * DAY));
        assert!(parse_date("1970-01-03T00:00:00Z").is_err());
        assert_eq!(midnight_utc(1970, 1, 2), Some(DAY));
        assert_eq!(midnight_utc(1970, 2, 30), None);
        assert_eq!(year_of(DAY * 366), Some(1971));
    }

    #[test]
    fn times_format_as_rfc3339_dates_and_file_stamps() {
        let t = parse_time("2026-07-11T10:50:30Z").unwrap();
        assert_eq!(format_micros(t), "2026-07-11T10:50:30Z");
        assert_eq!(format_micros(t + 1), "2026-07-11T10:50:30.000001Z");
        assert_eq!(format_micros(t + 1000), "2026-07-11T10:50:30.001Z");
        assert_eq!(format_micros(i64::MAX), i64::MAX.to_string());
        assert_eq!(try_format_micros(i64::MIN), None);
        assert_eq!(utc_date(t), "2026-07-11");
        assert_eq!(utc_date(i64::MAX), "invalid");
        assert_eq!(format_human(t - 30 * SECOND), "2026-07-11 10:50 UTC");
        assert_eq!(format_human(t), "2026-07-11 10:50:30 UTC");
        assert_eq!(format_basic(t + 7, false), "20260711T105030Z");
        assert_eq!(format_basic(t + 7, true), "20260711T105030000007Z");
        for s in ["2022-07-25T00:00:00Z", "2022-07-25T12:00:00.500Z"] {
            assert_eq!(format_micros(parse_time(s).unwrap()), s);
        }
    }
}
