//! The outage-window report: for a window [T1, T2), per meter and register,
//! were readings lost, and is consumption across the window still exactly
//! provable?
//!
//! Status, in order of precedence:
//! - `anomalous`: an unexplained register decrease, or implausible
//!   consumption across a gap touching the window;
//! - `silent`: no reading at all from T1 on;
//! - `open`: readings missing and no reading at or after T2 yet;
//! - `bridged`: readings missing, but a reading after the window exists and
//!   the register is continuous (consumption across the window is provable);
//! - `complete`: nothing missing.

use std::fmt;

use super::series::{analyze, seq_lost, Point, SeriesRules, Step};
use super::{div_round, IntervalSource, SECOND};
use crate::reading::Medium;
use crate::time::format_micros;

/// The window `[from, to)`, µs UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Anomalous,
    Silent,
    Open,
    Bridged,
    Complete,
}

impl Status {
    /// In order of precedence (and of attention needed).
    pub const ALL: [Status; 5] = [
        Status::Anomalous,
        Status::Silent,
        Status::Open,
        Status::Bridged,
        Status::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Anomalous => "anomalous",
            Status::Silent => "silent",
            Status::Open => "open",
            Status::Bridged => "bridged",
            Status::Complete => "complete",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reading named in the report (opening or closing value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueAt {
    pub ts: i64,
    pub value: i128,
    pub decimals: u8,
}

impl From<&Point> for ValueAt {
    fn from(p: &Point) -> Self {
        ValueAt {
            ts: p.ts,
            value: p.value,
            decimals: p.decimals,
        }
    }
}

/// One series as the report sees it.
#[derive(Debug, Clone)]
pub(crate) struct SeriesInput<'a> {
    pub meter_id: &'a str,
    /// None for a registry meter that never sent a reading.
    pub register: Option<&'a str>,
    pub medium: Medium,
    pub unit: Option<&'a str>,
    pub group: Option<&'a str>,
    /// Measured readings in time order, conflicting values left out.
    pub points: &'a [Point],
    /// Times of conflicting values (same time as a stored reading, another
    /// value), in time order.
    pub conflicts: &'a [i64],
    pub rules: SeriesRules<'a>,
    /// When the meter was in service (registry); None = unbounded.
    pub service: (Option<i64>, Option<i64>),
    /// The registry knows this meter: silence before its first reading counts.
    pub in_registry: bool,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterRow {
    pub meter_id: String,
    pub register: Option<String>,
    pub medium: Medium,
    pub unit: Option<String>,
    pub group: Option<String>,
    pub status: Status,
    pub expected: u64,
    pub received: u64,
    pub late: u64,
    pub missing: u64,
    /// Closed gaps (a reading after them) touching the window.
    pub gaps: u64,
    /// Telegrams lost by the sequence counter, where readings carry one.
    pub seq_missing: Option<u64>,
    pub longest_gap_s: u64,
    pub opening: Option<ValueAt>,
    pub closing: Option<ValueAt>,
    /// Closing − opening, following rollovers and explained resets.
    pub consumption: Option<i128>,
    pub consumption_decimals: u8,
    pub consumption_exact: bool,
    pub interval_s: u64,
    pub interval_source: IntervalSource,
    pub conflicts: u64,
    /// Why the row is anomalous, or what was explained (resets, rollovers).
    pub notes: Vec<String>,
}

/// Totals over the rows (serialised as the JSON report's `summary`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub meters: u64,
    pub complete: u64,
    pub bridged: u64,
    pub open: u64,
    pub silent: u64,
    pub anomalous: u64,
    pub expected: u64,
    pub received: u64,
    pub late: u64,
    pub missing: u64,
}

impl Summary {
    pub fn add(&mut self, r: &MeterRow) {
        self.meters += 1;
        *match r.status {
            Status::Complete => &mut self.complete,
            Status::Bridged => &mut self.bridged,
            Status::Open => &mut self.open,
            Status::Silent => &mut self.silent,
            Status::Anomalous => &mut self.anomalous,
        } += 1;
        self.expected += r.expected;
        self.received += r.received;
        self.late += r.late;
        self.missing += r.missing;
    }

    pub fn count(&self, s: Status) -> u64 {
        match s {
            Status::Complete => self.complete,
            Status::Bridged => self.bridged,
            Status::Open => self.open,
            Status::Silent => self.silent,
            Status::Anomalous => self.anomalous,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutageReport {
    pub window: Window,
    pub summary: Summary,
    pub meters: Vec<MeterRow>,
}

/// Evaluates one series over the window. None when the registry says the
/// meter was not in service during it.
pub(crate) fn evaluate(s: &SeriesInput, w: Window) -> Option<MeterRow> {
    let from = w.from.max(s.service.0.unwrap_or(i64::MIN));
    let to = w.to.min(s.service.1.unwrap_or(i64::MAX));
    if to <= from {
        return None;
    }
    let pts = s.points;
    let rules = &s.rules;
    let interval = rules.interval.micros.max(1);
    let threshold = rules.cfg.gap_threshold(interval);
    let analysis = analyze(pts, rules, Some(to));

    let before = pts.partition_point(|p| p.ts < from);
    let in_window_end = pts.partition_point(|p| p.ts < to);
    let window_pts = &pts[before..in_window_end];
    let received = window_pts.len() as u64;
    let late = window_pts
        .iter()
        .filter(|p| p.received_at - p.ts > rules.cfg.late_after)
        .count() as u64;
    let expected = div_round((to - from) as i128, interval as i128).max(0) as u64;

    let mut missing = 0;
    let mut gaps = 0;
    let mut longest = 0i64;
    let mut notes = Vec::new();
    let mut implausible = false;
    for g in analysis.gaps.iter().filter(|g| g.to > from && g.from < to) {
        missing += g.missing_within(from, to);
        gaps += u64::from(!g.open);
        longest = longest.max(g.duration());
        if let Some(pl) = g.plausibility.filter(|p| p.implausible) {
            implausible = true;
            notes.push(format!(
                "implausible consumption across the gap {} .. {}: {:.0} % of the {} the meter's history predicts",
                format_micros(g.from),
                format_micros(g.to),
                pl.ratio * 100.0,
                crate::reading::format_scaled(pl.expected)
            ));
        }
    }
    // A registry meter known to be in service is missed from the window's
    // start when nothing came before its first reading; its opening value
    // then lies after that gap, so consumption across the window is not exact.
    let mut head_gap = false;
    if before == 0 && s.in_registry {
        let end = pts.get(before).map_or(to, |p| p.ts.min(to));
        if end - from > threshold || (pts.is_empty() && end > from) {
            missing += div_round((end - from) as i128, interval as i128).max(1) as u64;
            longest = longest.max(end - from);
            head_gap = true;
        }
    }

    // Opening: the last reading at or before T1, else the first in the
    // window. Closing: the first at or after T2.
    let at_or_before = pts.partition_point(|p| p.ts <= from);
    let open_idx = if at_or_before > 0 {
        Some(at_or_before - 1)
    } else {
        (before < in_window_end).then_some(before)
    };
    let close_idx = (in_window_end < pts.len()).then_some(in_window_end);
    let last_idx = close_idx.or(in_window_end.checked_sub(1));

    let mut seq_missing: Option<u64> = None;
    let mut consumption: Option<i128> = None;
    let mut exact = true;
    let mut decreased = false;
    if let (Some(o), Some(l)) = (open_idx, last_idx) {
        for w in pts[o..=l].windows(2) {
            if let Some(lost) = seq_lost(&w[0], &w[1], rules) {
                *seq_missing.get_or_insert(0) += lost;
            }
        }
        // Continuous steps telescope: consumption is last − first, corrected
        // at every step that was not continuous (the analysis lists them).
        let mut total = Some(pts[l].value - pts[o].value);
        for &(i, st) in analysis.decreases.iter().filter(|(i, _)| *i > o && *i <= l) {
            let (a, b) = (&pts[i - 1], &pts[i]);
            exact &= st.is_exact();
            match st {
                Step::Continuous => {}
                Step::Decrease => {
                    decreased = true;
                    notes.push(format!(
                        "register went down from {} to {} between {} and {}",
                        crate::reading::format_fixed(a.value, a.decimals),
                        crate::reading::format_fixed(b.value, b.decimals),
                        format_micros(a.ts),
                        format_micros(b.ts)
                    ));
                }
                other => notes.push(format!(
                    "{} between {} and {}",
                    other.describe(),
                    format_micros(a.ts),
                    format_micros(b.ts)
                )),
            }
            total = total
                .zip(st.consumption(a.value, b.value))
                .map(|(t, c)| t + c - (b.value - a.value));
        }
        consumption = total;
    }
    let (opening, closing) = (open_idx.map(|i| &pts[i]), close_idx.map(|i| &pts[i]));
    let consumption = match (opening, closing) {
        (Some(_), Some(_)) => consumption,
        _ => None,
    };
    let decimals = opening
        .iter()
        .chain(closing.iter())
        .map(|p| p.decimals)
        .max()
        .unwrap_or(0);

    let heard_since_t1 = pts.last().is_some_and(|p| p.ts >= from);
    let status = if decreased || implausible {
        Status::Anomalous
    } else if !heard_since_t1 {
        Status::Silent
    } else if missing > 0 && closing.is_none() {
        Status::Open
    } else if missing > 0 {
        Status::Bridged
    } else {
        Status::Complete
    };
    Some(MeterRow {
        meter_id: s.meter_id.to_owned(),
        register: s.register.map(str::to_owned),
        medium: s.medium,
        unit: s.unit.map(str::to_owned),
        group: s.group.map(str::to_owned),
        status,
        expected,
        received,
        late,
        missing,
        gaps,
        seq_missing,
        longest_gap_s: (longest.max(0) / SECOND) as u64,
        opening: opening.map(ValueAt::from),
        closing: closing.map(ValueAt::from),
        consumption,
        consumption_decimals: decimals,
        consumption_exact: consumption.is_some() && exact && !decreased && !head_gap,
        interval_s: (interval / SECOND) as u64,
        interval_source: rules.interval.source,
        conflicts: s.conflicts.iter().filter(|&&t| t >= from && t < to).count() as u64,
        notes,
    })
}

/// Builds the report from rows (sorted by meter and register).
pub(crate) fn assemble(window: Window, mut meters: Vec<MeterRow>) -> OutageReport {
    meters.sort_by(|a, b| (&a.meter_id, &a.register).cmp(&(&b.meter_id, &b.register)));
    let mut summary = Summary::default();
    for r in &meters {
        summary.add(r);
    }
    OutageReport {
        window,
        summary,
        meters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::series::tests::{p, rules, MIN, UNIT};
    use crate::continuity::ContinuityConfig;

    fn input<'a>(pts: &'a [Point], r: SeriesRules<'a>) -> SeriesInput<'a> {
        SeriesInput {
            meter_id: "HZ-1",
            register: Some("energy"),
            medium: r.medium,
            unit: Some("kWh"),
            group: None,
            points: pts,
            conflicts: &[],
            rules: r,
            service: (None, None),
            in_registry: false,
        }
    }

    /// A 15-minute meter growing 1 unit per reading, at the given minutes.
    fn meter(minutes: impl IntoIterator<Item = i64>) -> Vec<Point> {
        minutes
            .into_iter()
            .map(|m| p(m, 1000 + m as i128 / 15))
            .collect()
    }

    const W: Window = Window {
        from: 600 * MIN,
        to: 1200 * MIN,
    };

    #[test]
    fn every_status_from_a_table_of_meters() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let every = |a: i64, b: i64| (a..b).step_by(15);
        let mut down = meter(every(0, 1500));
        down[50].value -= 5 * UNIT; // reading 50 (minute 750) goes backwards
                                    // (name, readings, status, expected, received, missing, closing?, exact?)
        type Case = (&'static str, Vec<Point>, Status, u64, u64, bool, bool);
        let cases: Vec<Case> = vec![
            (
                "complete",
                meter(every(0, 1500)),
                Status::Complete,
                40,
                0,
                true,
                true,
            ),
            (
                "bridged",
                meter(every(0, 700).chain(every(900, 1500))),
                Status::Bridged,
                27,
                13,
                true,
                true,
            ),
            (
                "open",
                meter(every(0, 900)),
                Status::Open,
                20,
                20,
                false,
                false,
            ),
            (
                "silent",
                meter(every(0, 600)),
                Status::Silent,
                0,
                40,
                false,
                false,
            ),
            ("anomalous", down, Status::Anomalous, 40, 0, true, false),
        ];
        for (name, pts, status, received, missing, has_closing, exact) in cases {
            let row = evaluate(&input(&pts, r.clone()), W).unwrap();
            assert_eq!(row.status, status, "{name}: {:?}", row.notes);
            assert_eq!(row.expected, 40, "{name}");
            assert_eq!((row.received, row.missing), (received, missing), "{name}");
            assert_eq!(row.closing.is_some(), has_closing, "{name}");
            assert_eq!(row.consumption_exact, exact, "{name}");
            assert_eq!(row.interval_s, 900);
        }
    }

    #[test]
    fn bridged_consumption_is_closing_minus_opening() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let pts = meter((0..700).step_by(15).chain((900..1500).step_by(15)));
        let row = evaluate(&input(&pts, r), W).unwrap();
        let (o, c) = (row.opening.unwrap(), row.closing.unwrap());
        assert_eq!((o.ts, c.ts), (600 * MIN, 1200 * MIN));
        assert_eq!(row.consumption, Some(c.value - o.value));
        assert_eq!(row.consumption, Some(40 * UNIT));
        assert_eq!(row.longest_gap_s, (900 - 690) as u64 * 60);
    }

    #[test]
    fn late_readings_are_counted_and_do_not_open_gaps() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let mut pts = meter((0..1500).step_by(15));
        // A gateway buffered minutes 700..900 and forwarded them at minute 1000.
        for q in pts
            .iter_mut()
            .filter(|q| (700..900).contains(&(q.ts / MIN)))
        {
            q.received_at = 1000 * MIN;
        }
        let row = evaluate(&input(&pts, r), W).unwrap();
        assert_eq!(
            (row.status, row.late, row.missing),
            (Status::Complete, 13, 0)
        );
    }

    #[test]
    fn registry_meters_silent_from_the_start_and_out_of_service() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let none: Vec<Point> = Vec::new();
        let mut s = input(&none, r.clone());
        s.in_registry = true;
        s.register = None;
        let row = evaluate(&s, W).unwrap();
        assert_eq!(
            (row.status, row.missing, row.expected),
            (Status::Silent, 40, 40)
        );
        // Installed after the window: not evaluated.
        s.service = (Some(2000 * MIN), None);
        assert!(evaluate(&s, W).is_none());
        // Readings from minute 900 only, but installed before: 20 missed.
        let pts = meter((900..1500).step_by(15));
        let mut s = input(&pts, r);
        s.in_registry = true;
        let row = evaluate(&s, W).unwrap();
        assert_eq!(
            (row.status, row.missing, row.received),
            (Status::Bridged, 20, 20)
        );
        assert!(
            !row.consumption_exact,
            "no reading before the gap: opening is inside it"
        );
    }

    #[test]
    fn explained_resets_are_not_anomalies() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let mut pts = meter((0..1500).step_by(15));
        let modulus = 100_000 * UNIT;
        for (i, q) in pts.iter_mut().enumerate() {
            q.value = (99_950 * UNIT + i as i128 * UNIT) % modulus;
        }
        let row = evaluate(&input(&pts, r), W).unwrap();
        assert_eq!(row.status, Status::Complete, "{:?}", row.notes);
        assert_eq!(row.consumption, Some(40 * UNIT));
        assert!(row.consumption_exact, "a rollover keeps consumption exact");
        assert!(row.notes[0].starts_with("rollover"), "{:?}", row.notes);
    }

    #[test]
    fn summary_adds_up() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let a = meter((0..1500).step_by(15));
        let b = meter((0..900).step_by(15));
        let rows = vec![
            evaluate(&input(&b, r.clone()), W).unwrap(),
            evaluate(&input(&a, r), W).unwrap(),
        ];
        let rep = assemble(W, rows);
        assert_eq!(rep.summary.meters, 2);
        assert_eq!((rep.summary.complete, rep.summary.open), (1, 1));
        assert_eq!(rep.summary.expected, 80);
        assert_eq!(rep.summary.received + rep.summary.missing, 80);
    }
}
