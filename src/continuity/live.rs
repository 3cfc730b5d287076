//! The live engine: per-series state as readings arrive, in any order.
//!
//! A series keeps its first and last reading and the gaps between the
//! readings seen so far. A reading after the last one may close a gap; one
//! before the first may open a gap at the head; one in between either
//! falls where readings are dense (nothing changes: adding a reading can
//! only shorten gaps) or inside a known gap, which it splits or closes. So
//! the gaps after any arrival order are exactly the gaps the batch pass
//! finds over the same readings sorted ([`super::series::analyze`]), with
//! the same interval; the property test below checks it.

use std::collections::HashMap;

use super::series::{gap_between, infer_interval, open_gap, Gap, Point, SeriesRules};
use super::{builtin_interval_s, ContinuityConfig, Interval, IntervalSource, SECOND};
use crate::reading::Medium;

/// What one reading changed.
#[derive(Debug, Clone, PartialEq)]
pub enum GapChange {
    /// A new gap between two readings (closed: a reading ends it).
    Found(Gap),
    /// A late reading fell inside a known gap: `old` is replaced by `parts`
    /// (none if the reading closed it, one or two otherwise).
    Split { old: Gap, parts: Vec<Gap> },
}

/// How a new series is judged: resolved by the caller (registry, then
/// configuration) when the series is first seen.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSetup {
    pub medium: Medium,
    /// None: infer it from the series' first [`LIVE_INFER_READINGS`] readings.
    pub interval: Option<Interval>,
    pub seq_wrap: u64,
}

/// Readings a series without a configured interval collects before its
/// interval is inferred (median of their spacing) and its gaps judged.
pub const LIVE_INFER_READINGS: usize = 9;

/// One series' live state.
#[derive(Debug, Clone)]
struct LiveSeries {
    setup: SeriesSetup,
    first: Point,
    last: Point,
    /// Closed gaps between known readings, sorted by start.
    gaps: Vec<Gap>,
    /// While the interval is being inferred: the readings so far, sorted.
    warmup: Vec<Point>,
}

impl LiveSeries {
    fn rules<'a>(&self, cfg: &'a ContinuityConfig) -> SeriesRules<'a> {
        let medium = self.setup.medium;
        SeriesRules {
            cfg,
            medium,
            interval: self.setup.interval.unwrap_or(Interval {
                micros: builtin_interval_s(medium) as i64 * SECOND,
                source: IntervalSource::Default,
            }),
            seq_wrap: self.setup.seq_wrap,
            set_days: &[],
            replacements: &[],
        }
    }

    /// Takes a reading once the interval is known.
    fn apply(&mut self, cfg: &ContinuityConfig, p: Point, changes: &mut Vec<GapChange>) {
        let rules = self.rules(cfg);
        if p.ts > self.last.ts {
            if let Some(g) = gap_between(&self.last, &p, &rules) {
                self.gaps.push(g.clone());
                changes.push(GapChange::Found(g));
            }
            self.last = p;
        } else if p.ts < self.first.ts {
            if let Some(g) = gap_between(&p, &self.first, &rules) {
                self.gaps.insert(0, g.clone());
                changes.push(GapChange::Found(g));
            }
            self.first = p;
        } else {
            // Inside the known span: only a gap around it changes.
            let i = self.gaps.partition_point(|g| g.to <= p.ts);
            if let Some(g) = self.gaps.get(i).filter(|g| g.from < p.ts && p.ts < g.to) {
                let old = g.clone();
                let mut parts: Vec<Gap> =
                    gap_between(&old.before, &p, &rules).into_iter().collect();
                if let Some(b) = &old.after {
                    parts.extend(gap_between(&p, b, &rules));
                }
                self.gaps.splice(i..=i, parts.iter().cloned());
                changes.push(GapChange::Split { old, parts });
            }
        }
    }

    /// Takes a reading while the interval is unknown; once enough have
    /// come, infers it and judges them all in time order.
    fn warm_up(&mut self, cfg: &ContinuityConfig, p: Point, changes: &mut Vec<GapChange>) {
        let i = self.warmup.partition_point(|q| q.ts < p.ts);
        if self.warmup.get(i).is_some_and(|q| q.ts == p.ts) {
            return;
        }
        self.warmup.insert(i, p);
        self.first = self.warmup[0];
        self.last = self.warmup[self.warmup.len() - 1];
        if self.warmup.len() < LIVE_INFER_READINGS {
            return;
        }
        let pts = std::mem::take(&mut self.warmup);
        self.setup.interval = Some(match infer_interval(&pts) {
            Some(micros) => Interval {
                micros,
                source: IntervalSource::Inferred,
            },
            None => self.rules(cfg).interval,
        });
        self.first = pts[0];
        self.last = pts[0];
        for q in &pts[1..] {
            self.apply(cfg, *q, changes);
        }
    }
}

/// Per-series state for every series seen.
#[derive(Debug, Clone)]
pub struct LiveEngine {
    cfg: ContinuityConfig,
    series: HashMap<(String, String), LiveSeries>,
}

impl LiveEngine {
    pub fn new(cfg: ContinuityConfig) -> LiveEngine {
        LiveEngine {
            cfg,
            series: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes one measured reading (conflicting values are not readings of
    /// the series). `setup` is asked only for a series seen the first time.
    pub fn observe(
        &mut self,
        meter: &str,
        register: &str,
        setup: impl FnOnce() -> SeriesSetup,
        p: Point,
    ) -> Vec<GapChange> {
        let mut changes = Vec::new();
        let key = (meter.to_owned(), register.to_owned());
        let Some(s) = self.series.get_mut(&key) else {
            let setup = setup();
            let warmup = if setup.interval.is_none() {
                vec![p]
            } else {
                Vec::new()
            };
            self.series.insert(
                key,
                LiveSeries {
                    setup,
                    first: p,
                    last: p,
                    gaps: Vec::new(),
                    warmup,
                },
            );
            return changes;
        };
        if s.setup.interval.is_some() {
            s.apply(&self.cfg, p, &mut changes);
        } else {
            s.warm_up(&self.cfg, p, &mut changes);
        }
        changes
    }

    /// The closed gaps of a series, in time order.
    pub fn gaps(&self, meter: &str, register: &str) -> &[Gap] {
        self.series
            .get(&(meter.to_owned(), register.to_owned()))
            .map_or(&[], |s| s.gaps.as_slice())
    }

    /// The interval a series is judged with (None while it is inferred).
    pub fn interval(&self, meter: &str, register: &str) -> Option<Interval> {
        self.series
            .get(&(meter.to_owned(), register.to_owned()))
            .and_then(|s| s.setup.interval)
    }

    /// Series silent past their threshold at `now`, with their open gap.
    pub fn open_gaps(&self, now: i64) -> impl Iterator<Item = (&str, &str, Gap)> + '_ {
        self.series.iter().filter_map(move |((m, r), s)| {
            open_gap(&s.last, now, &s.rules(&self.cfg)).map(|g| (m.as_str(), r.as_str(), g))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::series::analyze;
    use crate::continuity::series::tests::{rules, MIN};
    use proptest::prelude::*;

    fn point(ts_min: i64, seq: u64) -> Point {
        Point {
            ts: ts_min * MIN,
            value: ts_min as i128 * 1_000_000_000,
            decimals: 0,
            seq: Some(seq),
            received_at: 0,
        }
    }

    fn setup(interval: Interval) -> SeriesSetup {
        SeriesSetup {
            medium: Medium::Heat,
            interval: Some(interval),
            seq_wrap: 256,
        }
    }

    #[test]
    fn an_unknown_interval_is_inferred_from_the_first_readings() {
        let cfg = ContinuityConfig::default();
        let mut live = LiveEngine::new(cfg);
        let infer = || SeriesSetup {
            medium: Medium::Water,
            interval: None,
            seq_wrap: 256,
        };
        // Every 4 minutes (not the water default of an hour), one 20-minute gap.
        let mut times: Vec<i64> = (0..8).map(|k| k * 4).collect();
        times.extend([52, 56]);
        let mut changes = Vec::new();
        for &t in times.iter().rev() {
            changes.extend(live.observe("W", "volume", infer, point(t, 0)));
        }
        let i = live.interval("W", "volume").expect("inferred");
        assert_eq!((i.micros, i.source), (4 * MIN, IntervalSource::Inferred));
        let gaps = live.gaps("W", "volume");
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (gaps[0].from / MIN, gaps[0].to / MIN, gaps[0].missing),
            (28, 52, 5)
        );
        assert_eq!(changes.len(), 1);
    }

    fn live_gaps(arrivals: &[i64], cfg: &ContinuityConfig) -> (Vec<Gap>, Vec<GapChange>) {
        let r = rules(cfg, Medium::Heat, 15);
        let mut live = LiveEngine::new(cfg.clone());
        let mut changes = Vec::new();
        for &t in arrivals {
            changes.extend(live.observe(
                "M-1",
                "energy",
                || setup(r.interval),
                point(t, (t / 15) as u64 % 256),
            ));
        }
        (live.gaps("M-1", "energy").to_vec(), changes)
    }

    fn batch_gaps(times: &[i64], cfg: &ContinuityConfig) -> Vec<Gap> {
        let mut sorted: Vec<i64> = times.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let pts: Vec<Point> = sorted
            .iter()
            .map(|&t| point(t, (t / 15) as u64 % 256))
            .collect();
        let mut gaps = analyze(&pts, &rules(cfg, Medium::Heat, 15), None).gaps;
        for g in &mut gaps {
            g.plausibility = None; // history-based: not part of the live state
        }
        gaps
    }

    #[test]
    fn a_late_reading_splits_then_closes_a_gap() {
        let cfg = ContinuityConfig::default();
        // 0, 15, then nothing until 120: one gap of 6 missing.
        let (gaps, changes) = live_gaps(&[0, 15, 120], &cfg);
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (gaps[0].from, gaps[0].to, gaps[0].missing),
            (15 * MIN, 120 * MIN, 6)
        );
        assert!(matches!(changes[0], GapChange::Found(_)));
        // The gateway forwards 60 late: two gaps of 2 and 3.
        let (gaps, changes) = live_gaps(&[0, 15, 120, 60], &cfg);
        let summary: Vec<(i64, i64, u64)> = gaps
            .iter()
            .map(|g| (g.from / MIN, g.to / MIN, g.missing))
            .collect();
        assert_eq!(summary, vec![(15, 60, 2), (60, 120, 3)]);
        assert!(matches!(&changes[1], GapChange::Split { parts, .. } if parts.len() == 2));
        // Then the rest: no gap left.
        let (gaps, _) = live_gaps(&[0, 15, 120, 60, 30, 45, 75, 90, 105], &cfg);
        assert!(gaps.is_empty(), "{gaps:?}");
        // A reading before the first opens a gap at the head.
        let (gaps, _) = live_gaps(&[100, 115, 0], &cfg);
        assert_eq!(
            gaps.iter()
                .map(|g| (g.from / MIN, g.to / MIN))
                .collect::<Vec<_>>(),
            vec![(0, 100)]
        );
    }

    #[test]
    fn open_gaps_at_now() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let mut live = LiveEngine::new(cfg.clone());
        live.observe("A", "energy", || setup(r.interval), point(0, 0));
        live.observe("B", "energy", || setup(r.interval), point(50, 0));
        let open: Vec<(&str, u64)> = {
            let mut v: Vec<_> = live
                .open_gaps(60 * MIN)
                .map(|(m, _, g)| (m, g.missing))
                .collect();
            v.sort();
            v
        };
        assert_eq!(open, vec![("A", 3)]);
    }

    proptest! {
        /// For any arrival order (repeats included), the live engine ends
        /// with exactly the gaps the batch pass finds over the sorted readings.
        #[test]
        fn live_gaps_equal_batch_gaps(
            times in prop::collection::vec(0i64..2_000, 1..60),
            tolerance in prop::sample::select(vec![0.0, 0.5, 1.0]),
            seed in any::<u64>(),
        ) {
            let cfg = ContinuityConfig { tolerance, ..ContinuityConfig::default() };
            // A deterministic shuffle from the seed (plus repeats of some readings).
            let mut arrivals = times.clone();
            arrivals.extend(times.iter().step_by(7).copied());
            let mut x = seed | 1;
            for i in (1..arrivals.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                arrivals.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (live, _) = live_gaps(&arrivals, &cfg);
            prop_assert_eq!(live, batch_gaps(&times, &cfg));
        }
    }
}
