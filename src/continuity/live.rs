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
//!
//! # Memory
//!
//! 30 million meters must fit on one machine, so a series in steady state
//! costs one packed [`Slot`] (50 bytes: both ends' time, value, counter
//! and decimals, interned names and profile), its meter id once in an
//! arena (length byte + id), and a `u32` in a hash table of series. What is
//! rare lives in side maps keyed by series: recorded gaps, the readings of a
//! series whose interval is still being inferred, and values too large for
//! an `i64` at scale 10^9. `gapless bench live-state` measures it.

use std::collections::HashMap;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::series::{gap_between, infer_interval, open_gap, step, Gap, Point, SeriesRules, Step};
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
    /// The series' interval was inferred from its first readings.
    Inferred(Interval),
    /// The register went down from the series' last reading for no reason
    /// the live rules know (not a rollover, not an HCA set date; registry
    /// replacements are the caller's to check).
    Decrease { before: Point, after: Point },
}

/// How a new series is judged: resolved by the caller (registry, then
/// configuration) when the series is first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesSetup {
    pub medium: Medium,
    /// None: infer it from the series' first [`LIVE_INFER_READINGS`] readings.
    pub interval: Option<Interval>,
    pub seq_wrap: u64,
}

/// Readings a series without a configured interval collects before its
/// interval is inferred (median of their spacing) and its gaps judged.
pub const LIVE_INFER_READINGS: usize = 9;

/// One end of a series, packed: what [`Point`] holds except the receive
/// time, of which only "was it late" matters here.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct End {
    ts: i64,
    /// Value × 10^9; `i64::MIN` = in the `wide` side map.
    value: i64,
    /// `u32::MAX` = no counter (a counter of that value is kept as none).
    seq: u32,
    /// Decimals (low 7 bits); the top bit: received late.
    decimals: u8,
}

const NO_SEQ: u32 = u32::MAX;
const WIDE: i64 = i64::MIN;
const LATE_BIT: u8 = 0x80;

/// One series' steady state: 50 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Slot {
    first: End,
    last: End,
    /// Offset of the meter id in the arena.
    meter: u32,
    register: u16,
    profile: u16,
}

/// Per-series state for every series seen.
#[derive(Debug, Clone)]
pub struct LiveEngine {
    cfg: ContinuityConfig,
    /// Meter ids: `[len: u8][bytes]`, each once per series.
    arena: Vec<u8>,
    registers: Interner<String>,
    /// Distinct setups (medium, interval, wrap): a handful per deployment.
    profiles: Interner<SeriesSetup>,
    slots: Vec<Slot>,
    /// Series index by (meter, register).
    index: HashTable<u32>,
    /// Recorded gaps, sorted by start, of the series that have any.
    gaps: HashMap<u32, Vec<Gap>>,
    /// Readings of series whose interval is being inferred, sorted.
    warmup: HashMap<u32, Vec<Point>>,
    /// Values that do not fit an i64 at scale 10^9: (first, last).
    wide: HashMap<u32, (i128, i128)>,
}

/// Values interned to a small number.
#[derive(Debug, Clone)]
struct Interner<T> {
    values: Vec<T>,
    ids: HashMap<T, u16>,
}

impl<T: Clone + Eq + std::hash::Hash> Interner<T> {
    fn new() -> Self {
        Interner {
            values: Vec::new(),
            ids: HashMap::new(),
        }
    }

    fn id(&mut self, v: &T) -> u16 {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        // More than 65,535 distinct register names or profiles is not a
        // meter fleet; they share the last id rather than fail.
        let id = self.values.len().min(u16::MAX as usize) as u16;
        if (id as usize) == self.values.len() {
            self.values.push(v.clone());
            self.ids.insert(v.clone(), id);
        }
        id
    }
}

fn rules_for(cfg: &ContinuityConfig, setup: SeriesSetup) -> SeriesRules<'_> {
    SeriesRules {
        cfg,
        medium: setup.medium,
        interval: setup.interval.unwrap_or(Interval {
            micros: builtin_interval_s(setup.medium) as i64 * SECOND,
            source: IntervalSource::Default,
        }),
        seq_wrap: setup.seq_wrap,
        set_days: &[],
        replacements: &[],
    }
}

fn key_hash(meter: &str, register: u16) -> u64 {
    xxh3_64_with_seed(meter.as_bytes(), register as u64)
}

impl LiveEngine {
    pub fn new(cfg: ContinuityConfig) -> LiveEngine {
        LiveEngine {
            cfg,
            arena: Vec::new(),
            registers: Interner::new(),
            profiles: Interner::new(),
            slots: Vec::new(),
            index: HashTable::new(),
            gaps: HashMap::new(),
            warmup: HashMap::new(),
            wide: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn meter_of(&self, slot: &Slot) -> &str {
        let at = slot.meter as usize;
        let len = self.arena[at] as usize;
        // Only valid UTF-8 (meter ids are ASCII) is ever written there.
        std::str::from_utf8(&self.arena[at + 1..at + 1 + len]).unwrap_or("")
    }

    fn find(&self, meter: &str, register: &str) -> Option<u32> {
        let reg = *self.registers.ids.get(register)?;
        let arena = &self.arena;
        let slots = &self.slots;
        self.index
            .find(key_hash(meter, reg), |&i| {
                let s = slots[i as usize];
                let at = s.meter as usize;
                let len = arena[at] as usize;
                s.register == reg && &arena[at + 1..at + 1 + len] == meter.as_bytes()
            })
            .copied()
    }

    fn rules(&self, profile: u16) -> SeriesRules<'_> {
        rules_for(&self.cfg, self.profiles.values[profile as usize])
    }

    fn pack(&mut self, i: u32, p: &Point, first: bool) -> End {
        let value = match i64::try_from(p.value) {
            Ok(v) if v != WIDE => v,
            _ => {
                let w = self.wide.entry(i).or_insert((p.value, p.value));
                if first {
                    w.0 = p.value;
                } else {
                    w.1 = p.value;
                }
                WIDE
            }
        };
        let late = p.received_at - p.ts > self.cfg.late_after;
        End {
            ts: p.ts,
            value,
            seq: p.seq.and_then(|s| u32::try_from(s).ok()).unwrap_or(NO_SEQ),
            decimals: (p.decimals & !LATE_BIT) | if late { LATE_BIT } else { 0 },
        }
    }

    fn unpack(&self, i: u32, e: End, first: bool) -> Point {
        let value = if e.value == WIDE {
            self.wide
                .get(&i)
                .map_or(0, |w| if first { w.0 } else { w.1 })
        } else {
            e.value as i128
        };
        let ts = e.ts;
        let late = e.decimals & LATE_BIT != 0;
        Point {
            ts,
            value,
            decimals: e.decimals & !LATE_BIT,
            seq: (e.seq != NO_SEQ).then_some(e.seq as u64),
            // Only lateness is kept: enough for the rules.
            received_at: if late {
                ts + self.cfg.late_after + 1
            } else {
                ts
            },
        }
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
        let Some(i) = self.find(meter, register) else {
            self.insert(meter, register, setup(), p);
            return changes;
        };
        if self.warmup.contains_key(&i) {
            self.warm_up(i, p, &mut changes);
        } else {
            self.apply(i, p, &mut changes);
        }
        changes
    }

    fn insert(&mut self, meter: &str, register: &str, setup: SeriesSetup, p: Point) {
        let i = self.slots.len() as u32;
        let reg = self.registers.id(&register.to_owned());
        let profile = self.profiles.id(&setup);
        let at = self.arena.len() as u32;
        // Meter ids are validated to 1-128 ASCII characters.
        let id = &meter.as_bytes()[..meter.len().min(u8::MAX as usize)];
        self.arena.push(id.len() as u8);
        self.arena.extend_from_slice(id);
        let end = self.pack(i, &p, true);
        if let Some(w) = self.wide.get_mut(&i) {
            w.1 = w.0;
        }
        self.slots.push(Slot {
            first: end,
            last: end,
            meter: at,
            register: reg,
            profile,
        });
        let (arena, slots) = (&self.arena, &self.slots);
        self.index.insert_unique(key_hash(meter, reg), i, |&j| {
            let s = slots[j as usize];
            let at = s.meter as usize;
            let len = arena[at] as usize;
            key_hash(
                std::str::from_utf8(&arena[at + 1..at + 1 + len]).unwrap_or(""),
                s.register,
            )
        });
        if setup.interval.is_none() {
            self.warmup.insert(i, vec![p]);
        }
    }

    /// Takes a reading once the interval is known.
    fn apply(&mut self, i: u32, p: Point, changes: &mut Vec<GapChange>) {
        let slot = self.slots[i as usize];
        let (first, last) = (
            self.unpack(i, slot.first, true),
            self.unpack(i, slot.last, false),
        );
        let rules = rules_for(&self.cfg, self.profiles.values[slot.profile as usize]);
        if p.ts > last.ts {
            if p.value < last.value && step(&last, &p, &rules) == Step::Decrease {
                changes.push(GapChange::Decrease {
                    before: last,
                    after: p,
                });
            }
            let found = gap_between(&last, &p, &rules);
            let end = self.pack(i, &p, false);
            self.slots[i as usize].last = end;
            if let Some(g) = found {
                self.gaps.entry(i).or_default().push(g.clone());
                changes.push(GapChange::Found(g));
            }
        } else if p.ts < first.ts {
            let found = gap_between(&p, &first, &rules);
            let end = self.pack(i, &p, true);
            self.slots[i as usize].first = end;
            if let Some(g) = found {
                self.gaps.entry(i).or_default().insert(0, g.clone());
                changes.push(GapChange::Found(g));
            }
        } else if let Some(gaps) = self.gaps.get_mut(&i) {
            // Inside the known span: only a gap around it changes.
            let k = gaps.partition_point(|g| g.to <= p.ts);
            if let Some(g) = gaps.get(k).filter(|g| g.from < p.ts && p.ts < g.to) {
                let old = g.clone();
                let mut parts: Vec<Gap> =
                    gap_between(&old.before, &p, &rules).into_iter().collect();
                if let Some(b) = &old.after {
                    parts.extend(gap_between(&p, b, &rules));
                }
                gaps.splice(k..=k, parts.iter().cloned());
                if gaps.is_empty() {
                    self.gaps.remove(&i);
                }
                changes.push(GapChange::Split { old, parts });
            }
        }
    }

    /// Takes a reading while the interval is unknown; once enough have
    /// come, infers it and judges them all in time order.
    fn warm_up(&mut self, i: u32, p: Point, changes: &mut Vec<GapChange>) {
        let Some(pts) = self.warmup.get_mut(&i) else {
            return;
        };
        let k = pts.partition_point(|q| q.ts < p.ts);
        if pts.get(k).is_some_and(|q| q.ts == p.ts) {
            return;
        }
        pts.insert(k, p);
        let (first, last, n) = (pts[0], pts[pts.len() - 1], pts.len());
        let (f, l) = (self.pack(i, &first, true), self.pack(i, &last, false));
        let slot = &mut self.slots[i as usize];
        slot.first = f;
        slot.last = l;
        if n < LIVE_INFER_READINGS {
            return;
        }
        let pts = self.warmup.remove(&i).unwrap_or_default();
        let mut setup = self.profiles.values[self.slots[i as usize].profile as usize];
        let interval = match infer_interval(&pts) {
            Some(micros) => Interval {
                micros,
                source: IntervalSource::Inferred,
            },
            None => self.rules(self.slots[i as usize].profile).interval,
        };
        setup.interval = Some(interval);
        changes.push(GapChange::Inferred(interval));
        let profile = self.profiles.id(&setup);
        let start = self.pack(i, &pts[0], true);
        let slot = &mut self.slots[i as usize];
        slot.profile = profile;
        slot.first = start;
        slot.last = start;
        if let Some(w) = self.wide.get_mut(&i) {
            w.1 = w.0;
        }
        for q in &pts[1..] {
            self.apply(i, *q, changes);
        }
    }

    /// The recorded gaps of a series, in time order.
    pub fn gaps(&self, meter: &str, register: &str) -> &[Gap] {
        self.find(meter, register)
            .and_then(|i| self.gaps.get(&i))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether a known gap of the series lies strictly around `ts`: no
    /// reading of the series is stored there.
    pub fn in_gap(&self, meter: &str, register: &str, ts: i64) -> bool {
        let gaps = self.gaps(meter, register);
        let k = gaps.partition_point(|g| g.to <= ts);
        gaps.get(k).is_some_and(|g| g.from < ts && ts < g.to)
    }

    /// The interval a series is judged with (None while it is inferred).
    pub fn interval(&self, meter: &str, register: &str) -> Option<Interval> {
        let i = self.find(meter, register)?;
        if self.warmup.contains_key(&i) {
            return None;
        }
        self.profiles.values[self.slots[i as usize].profile as usize].interval
    }

    /// Series silent past their threshold at `now`, with their open gap.
    pub fn open_gaps(&self, now: i64) -> impl Iterator<Item = (&str, &str, Gap)> + '_ {
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            let last = self.unpack(i as u32, s.last, false);
            let g = open_gap(&last, now, &self.rules(s.profile))?;
            Some((
                self.meter_of(s),
                self.registers.values[s.register as usize].as_str(),
                g,
            ))
        })
    }

    /// Bytes held, by part (for the memory benchmark): slots, arena, index,
    /// side maps (approximate for the hash maps).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.arena.capacity()
            + self.index.allocation_size()
            + self.gaps.capacity() * 48
            + self.warmup.capacity() * 48
            + self.wide.capacity() * 48
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
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.contains(&GapChange::Inferred(i)));
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

    /// The live state keeps of a reading's receive time only whether it was
    /// late: compare gaps without it.
    fn normalized(mut gaps: Vec<Gap>) -> Vec<Gap> {
        for g in &mut gaps {
            g.before.received_at = 0;
            if let Some(a) = &mut g.after {
                a.received_at = 0;
            }
        }
        gaps
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
    fn values_beyond_i64_and_late_ends_survive_packing() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let mut live = LiveEngine::new(cfg.clone());
        let big = |ts_min: i64, units: i128, late: bool| Point {
            ts: ts_min * MIN,
            value: units * 1_000_000_000,
            decimals: 3,
            seq: Some(1 << 40), // beyond u32: kept as "no counter"
            received_at: ts_min * MIN + if late { 2 * 3600 * SECOND } else { 0 },
        };
        let huge = 100_000_000_000_000i128; // 10^14 units: 10^23 scaled
        live.observe("M", "e", || setup(r.interval), big(60, huge, true));
        let ch = live.observe("M", "e", || setup(r.interval), big(0, huge - 5, false));
        let GapChange::Found(g) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!(g.consumption, Some(5 * 1_000_000_000));
        assert!(
            g.closed_late,
            "the first reading (closing the head gap) was late"
        );
        assert_eq!(g.after.unwrap().value, huge * 1_000_000_000);
        assert_eq!(g.after.unwrap().decimals, 3);
        let ch = live.observe("M", "e", || setup(r.interval), big(120, huge + 1, false));
        let GapChange::Found(g) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!(g.before.value, huge * 1_000_000_000);
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
            prop_assert_eq!(normalized(live), normalized(batch_gaps(&times, &cfg)));
        }
    }
}
