//! Coverage: per series (meter, register) and per time bucket of a window,
//! the readings received against the readings expected: the meters × time
//! picture of the dashboard (`GET /api/v1/coverage`).
//!
//! The counts are the report's, split in time: a series' `expected` and
//! `received` over all buckets are the report row's `expected` and
//! `received` (same interval, same registry service span, conflicting values
//! left out), and a series is listed exactly when the report lists it. A
//! bucket's expected count is the growth of `round((t − T1) / interval)`
//! across it, so the buckets add up to the window's count without rounding
//! each on its own.

use serde_json::{json, Value};

use super::{ReportError, StoredReadings};
use crate::continuity::window::{self, SeriesInput, Status, Window};
use crate::continuity::{div_round, Context, IntervalSource, SECOND};
use crate::reading::Medium;
use crate::time::format_micros;

/// Buckets per window at most (a year by the day fits).
pub(crate) const MAX_BUCKETS: u32 = 1_000;
/// A bucket is at least this long.
pub(crate) const MIN_BUCKET: i64 = SECOND;

/// A window cut into `n` equal buckets (edges rounded down to the µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    window: Window,
    n: u32,
}

/// Why a window cannot be cut into the buckets asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketsError {
    #[error("the window is empty (to must be after from)")]
    EmptyWindow,
    #[error("must be 1..={MAX_BUCKETS}")]
    Count,
    #[error("{0} buckets would be shorter than a second in this window")]
    TooShort(u32),
}

impl Buckets {
    /// `n` buckets over `window`: 1..=[`MAX_BUCKETS`], each at least a second.
    pub fn try_new(window: Window, n: u32) -> Result<Buckets, BucketsError> {
        if window.to <= window.from {
            return Err(BucketsError::EmptyWindow);
        }
        if n == 0 || n > MAX_BUCKETS {
            return Err(BucketsError::Count);
        }
        if (window.to - window.from) / i64::from(n) < MIN_BUCKET {
            return Err(BucketsError::TooShort(n));
        }
        Ok(Buckets { window, n })
    }

    pub fn window(&self) -> Window {
        self.window
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Where bucket `i` starts (`edge(len())` is the window's end).
    pub(crate) fn edge(&self, i: usize) -> i64 {
        let span = (self.window.to - self.window.from) as i128;
        self.window.from + (span * i as i128 / i128::from(self.n)) as i64
    }
}

/// One series' coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageRow {
    pub meter_id: String,
    pub register: Option<String>,
    pub medium: Medium,
    /// The report's status for the window.
    pub status: Status,
    pub interval_s: u64,
    pub interval_source: IntervalSource,
    /// Over the window: the report row's `expected` and `received`.
    pub expected: u64,
    pub received: u64,
    /// Per bucket.
    pub expected_by_bucket: Vec<u32>,
    pub received_by_bucket: Vec<u32>,
}

/// The coverage of one series; None when the report does not list it (a
/// registry meter out of service during the whole window).
pub(crate) fn series_coverage(s: &SeriesInput, buckets: &Buckets) -> Option<CoverageRow> {
    let w = buckets.window;
    let row = window::evaluate(s, w)?;
    // The report's window for this series: cut to the service span.
    let from = w.from.max(s.service.0.unwrap_or(i64::MIN));
    let to = w.to.min(s.service.1.unwrap_or(i64::MAX));
    let interval = i128::from(s.rules.interval.micros.max(1));
    let expected_until =
        |t: i64| div_round((t.clamp(from, to) - from) as i128, interval).max(0) as u64;
    let received_before = |t: i64| {
        let t = t.clamp(from, to);
        s.points.partition_point(|p| p.ts < t) as u64
    };
    let n = buckets.len();
    let mut expected_by_bucket = Vec::with_capacity(n);
    let mut received_by_bucket = Vec::with_capacity(n);
    let (mut e0, mut r0) = (expected_until(w.from), received_before(w.from));
    for i in 1..=n {
        let edge = buckets.edge(i);
        let (e1, r1) = (expected_until(edge), received_before(edge));
        expected_by_bucket.push(u32::try_from(e1 - e0).unwrap_or(u32::MAX));
        received_by_bucket.push(u32::try_from(r1 - r0).unwrap_or(u32::MAX));
        (e0, r0) = (e1, r1);
    }
    Some(CoverageRow {
        meter_id: row.meter_id,
        register: row.register,
        medium: row.medium,
        status: row.status,
        interval_s: row.interval_s,
        interval_source: row.interval_source,
        expected: row.expected,
        received: row.received,
        expected_by_bucket,
        received_by_bucket,
    })
}

/// The coverage of every series the report lists (of one medium, if
/// given), sorted by meter and register like the report.
pub fn coverage(
    stored: &StoredReadings,
    ctx: &Context,
    buckets: &Buckets,
    medium: Option<Medium>,
) -> Result<Vec<CoverageRow>, ReportError> {
    let rows = stored.map_series(ctx, |s| {
        if medium.is_some_and(|m| m != s.medium) {
            return None;
        }
        series_coverage(s, buckets)
    })?;
    let mut rows: Vec<CoverageRow> = rows.into_iter().flatten().collect();
    rows.sort_by(|a, b| (&a.meter_id, &a.register).cmp(&(&b.meter_id, &b.register)));
    Ok(rows)
}

/// The buckets' edges and the rows as JSON (the body of
/// `/api/v1/coverage`, without its page).
pub(crate) fn coverage_json(buckets: &Buckets, rows: &[CoverageRow]) -> Value {
    let w = buckets.window;
    json!({
        "window": { "from": format_micros(w.from), "to": format_micros(w.to) },
        "buckets": buckets.len(),
        "edges": (0..=buckets.len()).map(|i| format_micros(buckets.edge(i))).collect::<Vec<_>>(),
        "series": rows.iter().map(|r| json!({
            "meter_id": r.meter_id,
            "register": r.register,
            "medium": r.medium.as_str(),
            "status": r.status.as_str(),
            "interval_s": r.interval_s,
            "interval_source": r.interval_source.as_str(),
            "expected": r.expected,
            "received": r.received,
            "expected_by_bucket": r.expected_by_bucket,
            "received_by_bucket": r.received_by_bucket,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::series::tests::{p, rules, MIN};
    use crate::continuity::series::Point;
    use crate::continuity::ContinuityConfig;

    const HOUR: i64 = 60;

    fn input<'a>(
        pts: &'a [Point],
        r: crate::continuity::series::SeriesRules<'a>,
    ) -> SeriesInput<'a> {
        SeriesInput {
            meter_id: "W-1",
            register: Some("total"),
            medium: r.medium,
            unit: Some("m3"),
            group: None,
            points: pts,
            conflicts: &[],
            rules: r,
            service: (None, None),
            in_registry: false,
        }
    }

    fn window(from_h: i64, to_h: i64) -> Window {
        Window {
            from: from_h * HOUR * MIN,
            to: to_h * HOUR * MIN,
        }
    }

    /// Readings at these hours (value growing by one each).
    fn hourly(hours: impl IntoIterator<Item = i64>) -> Vec<Point> {
        hours
            .into_iter()
            .map(|h| p(h * HOUR, 100 + h as i128))
            .collect()
    }

    #[test]
    fn buckets_show_where_readings_are_missing() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Water, HOUR);
        // Hourly from 0 to 24, nothing from 8 to 11 (4 readings missing).
        let pts = hourly((0..=24).filter(|h| !(8..12).contains(h)));
        let b = Buckets::try_new(window(0, 24), 6).unwrap();
        let row = series_coverage(&input(&pts, r), &b).unwrap();
        assert_eq!(row.expected_by_bucket, vec![4; 6]);
        assert_eq!(row.received_by_bucket, vec![4, 4, 0, 4, 4, 4]);
        assert_eq!((row.expected, row.received), (24, 20));
        assert_eq!(row.status, Status::Bridged);
    }

    #[test]
    fn totals_are_the_report_rows_for_any_bucketing() {
        let cfg = ContinuityConfig::default();
        // A 15-minute meter with an hour and a half missing, a silent tail,
        // readings off the bucket edges; windows not multiples of anything.
        let pts: Vec<Point> = (0..200)
            .filter(|k| !(40..46).contains(k))
            .map(|k| p(7 + 15 * k, 1000 + k as i128))
            .collect();
        for (from_min, to_min) in [(0, 24 * 60), (333, 2001), (1000, 3500), (3100, 4000)] {
            let w = Window {
                from: from_min * MIN,
                to: to_min * MIN,
            };
            for n in [1, 2, 7, 24, 97] {
                let b = Buckets::try_new(w, n).unwrap();
                let s = input(&pts, rules(&cfg, Medium::Heat, 15));
                let row = series_coverage(&s, &b).unwrap();
                let report = window::evaluate(&s, w).unwrap();
                let sum = |v: &[u32]| v.iter().map(|&x| u64::from(x)).sum::<u64>();
                assert_eq!(sum(&row.expected_by_bucket), report.expected, "{w:?} n={n}");
                assert_eq!(sum(&row.received_by_bucket), report.received, "{w:?} n={n}");
                assert_eq!(
                    (row.expected, row.received),
                    (report.expected, report.received)
                );
                assert_eq!(row.status, report.status);
                assert_eq!(row.expected_by_bucket.len(), n as usize);
            }
        }
    }

    #[test]
    fn a_registry_meter_counts_only_while_in_service() {
        let cfg = ContinuityConfig::default();
        let pts = hourly(0..24);
        let mut s = input(&pts, rules(&cfg, Medium::Water, HOUR));
        // Installed at 06:00, removed at 18:00.
        s.service = (Some(6 * HOUR * MIN), Some(18 * HOUR * MIN));
        let b = Buckets::try_new(window(0, 24), 4).unwrap();
        let row = series_coverage(&s, &b).unwrap();
        assert_eq!(row.expected_by_bucket, vec![0, 6, 6, 0]);
        assert_eq!(row.received_by_bucket, vec![0, 6, 6, 0]);
        // Out of service for the whole window: not listed, as in the report.
        s.service = (Some(30 * HOUR * MIN), None);
        assert_eq!(series_coverage(&s, &b), None);
    }

    #[test]
    fn a_registry_meter_without_readings_expects_all_and_receives_none() {
        let cfg = ContinuityConfig::default();
        let mut s = input(&[], rules(&cfg, Medium::Water, HOUR));
        s.register = None;
        s.in_registry = true;
        let row = series_coverage(&s, &Buckets::try_new(window(0, 12), 3).unwrap()).unwrap();
        assert_eq!(row.expected_by_bucket, vec![4, 4, 4]);
        assert_eq!(row.received_by_bucket, vec![0, 0, 0]);
        assert_eq!(row.status, Status::Silent);
    }

    #[test]
    fn bad_bucketings_are_refused_with_a_reason() {
        let w = window(0, 1);
        assert!(Buckets::try_new(w, 0)
            .unwrap_err()
            .to_string()
            .contains("1..="));
        assert!(Buckets::try_new(w, MAX_BUCKETS + 1).is_err());
        let short = Window {
            from: 0,
            to: 10 * SECOND,
        };
        assert!(Buckets::try_new(short, 11)
            .unwrap_err()
            .to_string()
            .contains("shorter than a second"));
        assert!(Buckets::try_new(short, 10).is_ok());
        let empty = Window { from: 5, to: 5 };
        assert!(Buckets::try_new(empty, 1).is_err());
        // Edges: first and last are the window's.
        let b = Buckets::try_new(window(0, 1), 7).unwrap();
        assert_eq!((b.edge(0), b.edge(7)), (0, HOUR * MIN));
        assert!((0..7).all(|i| b.edge(i) < b.edge(i + 1)));
    }

    #[test]
    fn the_json_names_edges_and_counts() {
        let cfg = ContinuityConfig::default();
        let pts = hourly(0..4);
        let b = Buckets::try_new(window(0, 4), 2).unwrap();
        let row = series_coverage(&input(&pts, rules(&cfg, Medium::Water, HOUR)), &b).unwrap();
        let j = coverage_json(&b, &[row]);
        assert_eq!(j["buckets"], 2);
        assert_eq!(
            j["edges"],
            json!([
                "1970-01-01T00:00:00Z",
                "1970-01-01T02:00:00Z",
                "1970-01-01T04:00:00Z"
            ])
        );
        assert_eq!(j["series"][0]["expected_by_bucket"], json!([2, 2]));
        assert_eq!(j["series"][0]["received_by_bucket"], json!([2, 2]));
        assert_eq!(j["series"][0]["status"], "complete");
        assert_eq!(j["series"][0]["interval_source"], "registry");
    }
}
