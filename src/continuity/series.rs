//! One series (meter, register) in time order: gaps, sequence-counter
//! losses, register steps and plausibility. Every rule is a small function
//! over two neighbouring readings, so the batch pass and the live engine
//! apply the same ones.

pub(crate) use super::interval::{infer_from_times, FirstReceived, ReceiptKey};
use super::{builtin_interval_s, first_not_below, MIN_PLAUSIBILITY_INTERVALS, SECOND};
use super::{div_round, ContinuityConfig, Interval, IntervalSource, DAY};
use crate::reading::{Medium, VALUE_SCALE};

/// The median time between consecutive readings (a robust statistic: gaps
/// and bursts do not move it while they are under half the intervals),
/// rounded to the second. None with fewer than [`MIN_INFER_INTERVALS`].
pub(crate) fn infer_interval(points: &[Point]) -> Option<i64> {
    infer_from_times(points.iter().map(|p| p.ts))
}

/// One measured reading, as continuity needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Reading time, µs UTC.
    pub ts: i64,
    /// Register value × 10^9 (exact).
    pub value: i128,
    /// Decimal places the meter sent (so derived values print alike).
    pub decimals: u8,
    /// Telegram / frame counter.
    pub seq: Option<u64>,
    /// When gapless received it, µs UTC.
    pub received_at: i64,
}

/// What the rules need to know about a series besides its readings.
#[derive(Debug, Clone)]
pub struct SeriesRules<'a> {
    pub cfg: &'a ContinuityConfig,
    pub medium: Medium,
    pub interval: Interval,
    /// The sequence counter's modulus (256 for wM-Bus access numbers).
    pub seq_wrap: u64,
    /// Days (UTC day numbers) the meter reported as its set dates.
    pub set_days: &'a [i64],
    /// Moments the registry records a meter replacement.
    pub replacements: &'a [i64],
}

/// A stretch without readings longer than the interval allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The last reading before the gap, µs.
    pub from: i64,
    /// The reading that ends it, or for an open gap the end of the range.
    pub to: i64,
    /// No reading ends it yet.
    pub open: bool,
    /// Readings missing by time: `round(Δt / interval) − 1` for a closed
    /// gap; for an open one, the readings due at `from + k × interval`
    /// before `to`. At least 1.
    pub missing: u64,
    /// The expected interval the gap was judged with, µs.
    pub interval: i64,
    /// Telegrams lost by the sequence counter, when both ends carry one.
    pub seq_missing: Option<u64>,
    /// The reading before the gap.
    pub before: Point,
    /// The reading that ended it (None while open).
    pub after: Option<Point>,
    /// Register growth across the gap, when the register was continuous.
    pub consumption: Option<i128>,
    pub plausibility: Option<Plausibility>,
    /// The reading that closed the gap was received late (forwarded from a
    /// gateway's buffer).
    pub closed_late: bool,
}

impl Gap {
    pub(crate) fn duration(&self) -> i64 {
        self.to - self.from
    }

    /// When the k-th missing reading (1-based) was due: evenly spread
    /// across a closed gap; every interval after the last reading in an
    /// open one.
    pub fn slot(&self, k: u64) -> i64 {
        if self.open {
            return self.from + self.interval * k as i64;
        }
        let span = (self.to - self.from) as i128;
        self.from + (span * k as i128 / (self.missing as i128 + 1)) as i64
    }

    /// Missing readings whose due time falls in `[from, to)`.
    pub(crate) fn missing_within(&self, from: i64, to: i64) -> u64 {
        if self.to <= from || self.from >= to {
            return 0;
        }
        // Slots are increasing in k: count the k with from ≤ slot(k) < to.
        let first = first_not_below(1, self.missing + 1, |k| self.slot(k) < from);
        let end = first_not_below(first, self.missing + 1, |k| self.slot(k) < to);
        end - first
    }

    pub(crate) fn is_implausible(&self) -> bool {
        self.plausibility.is_some_and(|p| p.implausible)
    }
}

/// Consumption across a gap against what the meter's history predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plausibility {
    /// Expected consumption for the span, × 10^9.
    pub expected: i128,
    /// actual / expected.
    pub ratio: f64,
    pub implausible: bool,
}

/// How a cumulative register moved between two neighbouring readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Up or unchanged: consumption is the difference.
    Continuous,
    /// Wrapped past its maximum (`modulus`, e.g. 100000 for 5 digits).
    Rollover { modulus: i128 },
    /// Went down for a known reason; consumption after it counts from zero
    /// and is no longer exact.
    Reset(ResetCause),
    /// Went down for no known reason: an anomaly.
    Decrease,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetCause {
    /// A heat cost allocator's period counter reset on its set date.
    HcaSetDate,
    /// The registry records a meter replacement between the two readings.
    Replacement,
}

impl Step {
    /// Consumption between the two readings under this step (None for an
    /// unexplained decrease).
    pub fn consumption(self, a: i128, b: i128) -> Option<i128> {
        match self {
            Step::Continuous => Some(b - a),
            Step::Rollover { modulus } => Some(modulus - a + b),
            Step::Reset(_) => Some(b.max(0)),
            Step::Decrease => None,
        }
    }

    /// Consumption across the step is exactly known.
    pub(crate) fn is_exact(self) -> bool {
        matches!(self, Step::Continuous | Step::Rollover { .. })
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::Continuous => "continuous",
            Step::Rollover { .. } => "rollover",
            Step::Reset(ResetCause::HcaSetDate) => "hca_set_date_reset",
            Step::Reset(ResetCause::Replacement) => "meter_replacement",
            Step::Decrease => "unexplained_decrease",
        }
    }
}

/// Chooses a series' interval: registry, else configuration, else inferred
/// from its readings, else built in.
pub fn choose_interval(
    registry_s: Option<u64>,
    cfg: &ContinuityConfig,
    medium: Medium,
    points: &[Point],
) -> Interval {
    let secs = |s: u64, source| Interval {
        micros: (s as i64).saturating_mul(SECOND),
        source,
    };
    if let Some(s) = registry_s {
        return secs(s, IntervalSource::Registry);
    }
    if let Some(&s) = cfg.intervals_s.get(&medium) {
        return secs(s, IntervalSource::Config);
    }
    inferred_or_builtin(medium, points)
}

/// The interval inferred from the readings, else the built-in one.
pub(crate) fn inferred_or_builtin(medium: Medium, points: &[Point]) -> Interval {
    match infer_interval(points) {
        Some(micros) => Interval {
            micros,
            source: IntervalSource::Inferred,
        },
        None => Interval {
            micros: builtin_interval_s(medium) as i64 * SECOND,
            source: IntervalSource::Default,
        },
    }
}

/// The gap between two neighbouring readings, if there is one (without
/// plausibility, which needs history).
pub(crate) fn gap_between(a: &Point, b: &Point, rules: &SeriesRules) -> Option<Gap> {
    let dt = b.ts - a.ts;
    if dt <= rules.cfg.gap_threshold(rules.interval.micros) {
        return None;
    }
    let step = step(a, b, rules);
    Some(Gap {
        from: a.ts,
        to: b.ts,
        open: false,
        missing: missing_in(dt, rules.interval.micros),
        interval: rules.interval.micros,
        seq_missing: seq_lost(a, b, rules),
        before: *a,
        after: Some(*b),
        consumption: step.consumption(a.value, b.value),
        plausibility: None,
        closed_late: b.received_at - b.ts > rules.cfg.late_after,
    })
}

/// The open gap after the last reading `a`, up to `end` (now, or the end
/// of the queried range), if it is long enough to be one.
pub(crate) fn open_gap(a: &Point, end: i64, rules: &SeriesRules) -> Option<Gap> {
    let dt = end - a.ts;
    if dt <= rules.cfg.gap_threshold(rules.interval.micros) {
        return None;
    }
    Some(Gap {
        from: a.ts,
        to: end,
        open: true,
        // Due at a + k × interval for every k with a + k × interval < end.
        missing: ((dt - 1) / rules.interval.micros.max(1)).max(1) as u64,
        interval: rules.interval.micros,
        seq_missing: None,
        before: *a,
        after: None,
        consumption: None,
        plausibility: None,
        closed_late: false,
    })
}

/// `round(Δt / interval) − 1`, at least 1 (a gap misses something).
pub(crate) fn missing_in(dt: i64, interval: i64) -> u64 {
    (div_round(dt as i128, interval.max(1) as i128) - 1).max(1) as u64
}

/// Telegrams lost between two readings by their counters: the counter's
/// step modulo its wrap, plus as many whole wraps as the elapsed time
/// implies (a 15-minute meter's access number wraps every 64 h). None when
/// either reading has no counter, or a large counter (a LoRaWAN frame
/// counter) went down: a re-join reset, not a loss we can count.
pub(crate) fn seq_lost(a: &Point, b: &Point, rules: &SeriesRules) -> Option<u64> {
    let (sa, sb) = (a.seq?, b.seq?);
    let wrap = rules.seq_wrap.max(2);
    if sb < sa && wrap > 65_536 {
        return None;
    }
    let step = if sb >= sa {
        (sb - sa) % wrap
    } else {
        (wrap - (sa - sb) % wrap) % wrap
    };
    let interval = rules.interval.micros.max(1);
    let dt = b.ts - a.ts;
    // Within one and a half intervals no whole wrap fits: the step is all.
    if dt <= interval + interval / 2 {
        return Some(step.saturating_sub(1));
    }
    let by_time = div_round(dt as i128, interval as i128);
    let wrap = wrap as i128;
    let wraps = div_round(by_time - step as i128, wrap).max(0);
    let total = step as i128 + wraps * wrap;
    Some((total - 1).max(0) as u64)
}

/// How the register moved from `a` to `b`.
pub fn step(a: &Point, b: &Point, rules: &SeriesRules) -> Step {
    if b.value >= a.value {
        return Step::Continuous;
    }
    if rules.replacements.iter().any(|&r| a.ts < r && r <= b.ts) {
        return Step::Reset(ResetCause::Replacement);
    }
    if rules.medium == Medium::Hca && spans_set_date(a.ts, b.ts, rules) {
        return Step::Reset(ResetCause::HcaSetDate);
    }
    if let Some(modulus) = rollover_modulus(a.value, b.value) {
        return Step::Rollover { modulus };
    }
    Step::Decrease
}

/// Whether the reset of a set date can lie between `a` and `b`: some set
/// day D (the configured month-day of any year, or a day the meter itself
/// reported) with `a < end of D` and `b ≥ start of D`.
fn spans_set_date(a: i64, b: i64, rules: &SeriesRules) -> bool {
    let overlaps = |day: i64| a < (day + 1) * DAY && b >= day * DAY;
    if rules.set_days.iter().any(|&d| overlaps(d)) {
        return true;
    }
    let (month, dom) = rules.cfg.hca_set_date;
    let year = |t: i64| crate::time::year_of(t).unwrap_or(1970);
    (year(a)..=year(b)).any(|y| {
        crate::time::midnight_utc(y, month, dom).is_some_and(|t| {
            let day = t.div_euclid(DAY);
            overlaps(day)
        })
    })
}

/// A register with a fixed number of integer digits wraps to zero: `a` in
/// the top tenth of its range and `b` in the bottom tenth.
fn rollover_modulus(a: i128, b: i128) -> Option<i128> {
    if a <= 0 || b < 0 {
        return None;
    }
    let unit = 10i128.pow(VALUE_SCALE);
    let int = a / unit;
    let digits = if int == 0 { 1 } else { int.ilog10() + 1 };
    let modulus = 10i128.checked_pow(digits)?.checked_mul(unit)?;
    (a * 10 >= modulus * 9 && b * 10 < modulus).then_some(modulus)
}

/// A running record of a series' regular consumption: what plausibility
/// compares a gap with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// Consumption over regular intervals (× 10^9).
    pub consumption: i128,
    /// Their total length, µs.
    pub span: i64,
    pub intervals: u64,
}

impl History {
    /// Adds a regular (non-gap, continuous) interval.
    pub fn add(&mut self, consumption: i128, span: i64) {
        self.consumption += consumption;
        self.span += span;
        self.intervals += 1;
    }

    /// Judges consumption across a span against the history's mean rate.
    /// None with too little history, or none consumed in it.
    pub(crate) fn judge(
        &self,
        actual: i128,
        span: i64,
        cfg: &ContinuityConfig,
    ) -> Option<Plausibility> {
        if self.intervals < MIN_PLAUSIBILITY_INTERVALS || self.span <= 0 || self.consumption <= 0 {
            return None;
        }
        let expected = self.consumption * span as i128 / self.span as i128;
        if expected <= 0 {
            return None;
        }
        let ratio = actual as f64 / expected as f64;
        Some(Plausibility {
            expected,
            ratio,
            implausible: ratio > 1.0 + cfg.plausible_above || ratio < 1.0 - cfg.plausible_below,
        })
    }
}

/// Everything the rules find in one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesAnalysis {
    /// In time order; the last may be open.
    pub gaps: Vec<Gap>,
    /// Every downward step, explained or not: (index of the reading after
    /// it, the step).
    pub decreases: Vec<(usize, Step)>,
}

/// Applies every rule to one series' readings (sorted by time, conflicting
/// values left out). `end`: where an open gap after the last reading ends
/// (now, or the end of the queried range); None = no open gap.
pub fn analyze(points: &[Point], rules: &SeriesRules, end: Option<i64>) -> SeriesAnalysis {
    let mut out = SeriesAnalysis::default();
    let mut history = History::default();
    let threshold = rules.cfg.gap_threshold(rules.interval.micros);
    for (i, w) in points.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        // The common case, a regular interval with the register going up:
        // history only.
        if b.value >= a.value && b.ts - a.ts <= threshold {
            history.add(b.value - a.value, b.ts - a.ts);
            continue;
        }
        let st = step(a, b, rules);
        if st != Step::Continuous {
            out.decreases.push((i + 1, st));
        }
        match gap_between(a, b, rules) {
            Some(mut gap) => {
                if st.is_exact() {
                    if let Some(c) = gap.consumption {
                        gap.plausibility = history.judge(c, gap.duration(), rules.cfg);
                    }
                }
                out.gaps.push(gap);
            }
            None => {
                if let (true, Some(c)) = (st.is_exact(), st.consumption(a.value, b.value)) {
                    history.add(c, b.ts - a.ts);
                }
            }
        }
    }
    if let (Some(last), Some(end)) = (points.last(), end) {
        out.gaps.extend(open_gap(last, end, rules));
    }
    out
}

/// Judges the plausibility of known gaps (sorted, each between two
/// neighbouring `points`, as the live engine records them) against the
/// series' history, exactly as [`analyze`] does: the consumption across a
/// gap against the mean rate of the regular intervals before it. Gaps whose
/// ends are not neighbouring readings are left unjudged.
pub(crate) fn judge_plausibility(points: &[Point], gaps: &mut [Gap], rules: &SeriesRules) {
    let mut history = History::default();
    let threshold = rules.cfg.gap_threshold(rules.interval.micros);
    let mut next = 0;
    for w in points.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        while next < gaps.len() && gaps[next].from < a.ts {
            next += 1;
        }
        let gap = gaps
            .get_mut(next)
            .filter(|g| !g.open && g.from == a.ts && g.to == b.ts);
        if b.value >= a.value && b.ts - a.ts <= threshold {
            history.add(b.value - a.value, b.ts - a.ts);
            continue;
        }
        let st = step(a, b, rules);
        match gap {
            Some(g) => {
                g.plausibility = match (st.is_exact(), g.consumption) {
                    (true, Some(c)) => history.judge(c, g.duration(), rules.cfg),
                    _ => None,
                };
                next += 1;
            }
            None if b.ts - a.ts > threshold => {}
            None => {
                if let (true, Some(c)) = (st.is_exact(), st.consumption(a.value, b.value)) {
                    history.add(c, b.ts - a.ts);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const MIN: i64 = 60 * SECOND;
    pub(crate) const UNIT: i128 = 1_000_000_000;

    pub fn p(ts_min: i64, value: i128) -> Point {
        Point {
            ts: ts_min * MIN,
            value: value * UNIT,
            decimals: 0,
            seq: None,
            received_at: ts_min * MIN,
        }
    }

    pub fn rules(cfg: &ContinuityConfig, medium: Medium, interval_min: i64) -> SeriesRules<'_> {
        SeriesRules {
            cfg,
            medium,
            interval: Interval {
                micros: interval_min * MIN,
                source: IntervalSource::Registry,
            },
            seq_wrap: 256,
            set_days: &[],
            replacements: &[],
        }
    }

    #[test]
    fn gaps_by_the_tolerance_rule() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        // (Δt in minutes, gap?, missing)
        for (dt, want) in [
            (15, None),
            (22, None), // 1.47 × interval: within tolerance
            (23, Some(1)),
            (30, Some(1)),
            (45, Some(2)),
            (52, Some(2)), // 3.47 → round 3 → 2 missing
            (53, Some(3)),
            (24 * 60, Some(95)),
        ] {
            let g = gap_between(&p(0, 1), &p(dt, 2), &r);
            assert_eq!(g.as_ref().map(|g| g.missing), want, "Δt = {dt} min");
        }
        let tight = ContinuityConfig {
            tolerance: 0.0,
            ..ContinuityConfig::default()
        };
        let r = rules(&tight, Medium::Heat, 15);
        assert_eq!(gap_between(&p(0, 1), &p(16, 2), &r).unwrap().missing, 1);
    }

    #[test]
    fn open_gap_runs_to_the_end_given() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Water, 60);
        let pts = [p(0, 1), p(60, 2)];
        let a = analyze(&pts, &r, Some((60 + 5 * 60) * MIN));
        assert_eq!(a.gaps.len(), 1);
        let g = &a.gaps[0];
        assert!(g.open);
        assert_eq!((g.from, g.to, g.missing), (60 * MIN, 360 * MIN, 4));
        // Due at 120, 180, 240, 300: four, whatever the phase of the end.
        let g = &analyze(&pts, &r, Some((60 + 5 * 60 - 1) * MIN)).gaps[0];
        assert_eq!(g.missing, 4);
        let g = &analyze(&pts, &r, Some((60 + 5 * 60 + 1) * MIN)).gaps[0];
        assert_eq!(g.missing, 5);
        assert_eq!(g.slot(5), 360 * MIN);
        assert!(analyze(&pts, &r, Some((60 + 89) * MIN)).gaps.is_empty());
        assert!(analyze(&pts, &r, None).gaps.is_empty());
    }

    #[test]
    fn missing_slots_are_counted_inside_a_window() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        // Reads at 0 and 60: slots due at 15, 30, 45.
        let g = gap_between(&p(0, 1), &p(60, 2), &r).unwrap();
        assert_eq!(g.missing, 3);
        for (from, to, want) in [
            (0, 60, 3),
            (15, 45, 2),
            (16, 45, 1),
            (16, 46, 2),
            (45, 100, 1),
            (60, 100, 0),
            (-50, 0, 0),
        ] {
            assert_eq!(
                g.missing_within(from * MIN, to * MIN),
                want,
                "[{from}, {to})"
            );
        }
    }

    #[test]
    fn sequence_counters_with_wrap_and_elapsed_time() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let s = |ts_min, seq| Point {
            seq: Some(seq),
            ..p(ts_min, 1)
        };
        // (a, b, lost)
        for (a, b, want) in [
            (s(0, 10), s(15, 11), Some(0)),
            (s(0, 10), s(60, 14), Some(3)),
            (s(0, 254), s(45, 1), Some(2)), // wrapped once within the step
            (s(0, 10), s(15, 10), Some(0)), // the same telegram again
            // 72 h at 15 min = 288 telegrams: ΔACC = 32 plus one wrap.
            (s(0, 10), s(72 * 60, 42), Some(287)),
            // 64 h: exactly one wrap, ΔACC = 0.
            (s(0, 10), s(64 * 60, 10), Some(255)),
            (p(0, 1), s(15, 3), None),
        ] {
            assert_eq!(seq_lost(&a, &b, &r), want, "{:?} → {:?}", a.seq, b.seq);
        }
        // A LoRaWAN frame counter going down is a re-join, not a loss.
        let lora = SeriesRules {
            seq_wrap: 1 << 32,
            ..r.clone()
        };
        assert_eq!(seq_lost(&s(0, 500), &s(15, 0), &lora), None);
        assert_eq!(seq_lost(&s(0, 500), &s(60, 503), &lora), Some(2));
    }

    #[test]
    fn register_steps_explained_or_not() {
        let cfg = ContinuityConfig::default();
        let day = |y, m, d, h| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
                / MIN
        };
        let heat = rules(&cfg, Medium::Heat, 15);
        let hca = rules(&cfg, Medium::Hca, 24 * 60);
        let repl = [day(2022, 7, 26, 12) * MIN];
        let replaced = SeriesRules {
            replacements: &repl,
            ..heat.clone()
        };
        let set_days = [day(2022, 9, 30, 0) * MIN / DAY];
        let own_set_date = SeriesRules {
            set_days: &set_days,
            ..hca.clone()
        };
        let t = day(2022, 7, 26, 0);
        for (r, a, b, want) in [
            (&heat, p(t, 100), p(t + 15, 100), Step::Continuous),
            (&heat, p(t, 100), p(t + 15, 105), Step::Continuous),
            (&heat, p(t, 100), p(t + 15, 99), Step::Decrease),
            // Rollover: 5 integer digits, near 99999 → small.
            (
                &heat,
                p(t, 99_990),
                p(t + 15, 4),
                Step::Rollover {
                    modulus: 100_000 * UNIT,
                },
            ),
            (&heat, p(t, 50_000), p(t + 15, 4), Step::Decrease),
            (
                &replaced,
                p(t, 500),
                p(t + 24 * 60, 3),
                Step::Reset(ResetCause::Replacement),
            ),
            (&replaced, p(t - 24 * 60, 500), p(t, 3), Step::Decrease),
            // HCA counter back to zero over New Year (set date 12-31).
            (
                &hca,
                p(day(2022, 12, 30, 0), 812),
                p(day(2023, 1, 1, 0), 0),
                Step::Reset(ResetCause::HcaSetDate),
            ),
            (
                &hca,
                p(day(2022, 11, 1, 0), 812),
                p(day(2022, 11, 2, 0), 0),
                Step::Decrease,
            ),
            // The meter's own set date.
            (
                &own_set_date,
                p(day(2022, 9, 30, 6), 300),
                p(day(2022, 10, 1, 6), 2),
                Step::Reset(ResetCause::HcaSetDate),
            ),
            // A heat meter's register is not reset by a set date.
            (
                &heat,
                p(day(2022, 12, 31, 0), 812),
                p(day(2023, 1, 1, 0), 0),
                Step::Decrease,
            ),
        ] {
            assert_eq!(
                step(&a, &b, r),
                want,
                "{} → {}",
                a.value / UNIT,
                b.value / UNIT
            );
        }
        assert_eq!(
            Step::Rollover { modulus: 100_000 }.consumption(99_990, 4),
            Some(14)
        );
        assert_eq!(Step::Decrease.consumption(5, 4), None);
    }

    #[test]
    fn implausible_consumption_across_a_gap() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        // 10 regular intervals of 10 units each, then a 2-hour gap (8 intervals
        // → 80 expected) closed by the given growth.
        for (growth, flagged) in [
            (80, false),
            (136, false),
            (137, true),
            (48, false),
            (47, true),
        ] {
            let mut pts: Vec<Point> = (0..=10).map(|i| p(i * 15, i as i128 * 10)).collect();
            pts.push(p(150 + 120, 100 + growth));
            let a = analyze(&pts, &r, None);
            let pl = a.gaps[0].plausibility.expect("judged");
            assert_eq!(pl.expected, 80 * UNIT);
            assert_eq!(
                pl.implausible, flagged,
                "growth {growth}: ratio {}",
                pl.ratio
            );
        }
        // Too little history: not judged.
        let pts = [p(0, 0), p(15, 10), p(200, 1000)];
        assert_eq!(analyze(&pts, &r, None).gaps[0].plausibility, None);
    }

    #[test]
    fn interval_source_order_and_inference() {
        let mut cfg = ContinuityConfig::default();
        let pts: Vec<Point> = [0, 15, 30, 45, 120, 135].iter().map(|&m| p(m, 1)).collect();
        let i = choose_interval(None, &cfg, Medium::Heat, &pts);
        assert_eq!((i.micros, i.source), (15 * MIN, IntervalSource::Inferred));
        let i = choose_interval(None, &cfg, Medium::Heat, &pts[..2]);
        assert_eq!((i.micros, i.source), (15 * MIN, IntervalSource::Default));
        cfg.intervals_s.insert(Medium::Heat, 240);
        let i = choose_interval(None, &cfg, Medium::Heat, &pts);
        assert_eq!((i.micros, i.source), (4 * MIN, IntervalSource::Config));
        let i = choose_interval(Some(7200), &cfg, Medium::Heat, &pts);
        assert_eq!((i.micros, i.source), (120 * MIN, IntervalSource::Registry));
    }
}
