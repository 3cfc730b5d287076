//! The live engine: per-series state as readings arrive, in any order.
//!
//! A series keeps its first and last reading and the gaps between the
//! readings seen so far. A reading after the last one may close a gap; one
//! before the first may open a gap at the head; one in between either
//! falls where readings are dense (nothing changes: adding a reading can
//! only shorten gaps) or inside a known gap, which it splits or closes. So
//! the gaps after any arrival order are exactly the gaps the batch pass
//! finds over the same readings sorted ([`super::series::analyze`]), with
//! the same interval, set dates and replacements; the property tests below
//! check it.
//!
//! # One rule for an unknown interval
//!
//! A series without a registry or configured interval is judged with the
//! built-in interval of its medium until it has [`INFER_READINGS`]
//! readings, then with the interval inferred from its first
//! [`INFER_READINGS`] readings in receipt order ([`FirstReceived`]: lowest
//! `(receipt_seq, reading_index)`, both stored on every `readings` row).
//! Until then the engine keeps the series' readings; at the end of the batch
//! in which the series reaches them ([`LiveEngine::settle`]), it re-judges
//! them with the inferred interval: the gaps found so far are superseded
//! and the new ones found. Batches come in receipt order (a seal holds the
//! receipts after the previous seal's), so the readings first received are
//! all known by then, whatever the order inside the batch. The batch pass
//! applies the same rule to the stored rows.
//!
//! # Set dates
//!
//! A heat cost allocator's reset is explained by the set dates its meter
//! reported (`set_date` readings of any register), as in the batch pass.
//! A set date that arrives after a gap across it was found re-judges that
//! gap (its consumption is a reset's, not unknown).
//!
//! # Memory
//!
//! 30 million meters must fit on one machine, so a series in steady state
//! costs one packed [`Slot`] (50 bytes: both ends' time, value, counter
//! and decimals, interned names and profile), its meter id once in an
//! arena (length byte + id), and a `u32` in a hash table of series. What is
//! rare lives in side maps: recorded gaps, the readings of a series whose
//! interval is still being inferred, values too large for an `i64` at scale
//! 10^9 (keyed by series) and reported set dates (keyed by meter).
//! A recorded gap is kept as its two ends only, 58 bytes, and judged
//! again from them when asked for (`live_kept.rs`). Recorded gaps are kept
//! only for the gap memory (days) after they end;
//! older ones are found again in the sealed files when a late reading
//! falls in them (`live_memory.rs`). `gapless bench live-state` measures
//! it.

use std::collections::HashMap;
use std::sync::Arc;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::registry::Registry;
use super::sealed::{LookupError, SealedSeries};
use super::series::{gap_between, open_gap, step, FirstReceived, Gap, Point, ReceiptKey};
use super::series::{SeriesRules, Step};
use super::{builtin_interval_s, ContinuityConfig, Interval, IntervalSource};
use super::{INFER_READINGS, SECOND};
use crate::reading::Medium;

/// What one reading (or set date) changed.
#[derive(Debug, Clone, PartialEq)]
pub enum GapChange {
    /// A new gap between two readings (closed: a reading ends it).
    Found(Gap),
    /// A known gap no longer stands as recorded: a late reading fell inside
    /// it, or a set date changed how its register step is explained. `old`
    /// is replaced by `parts` (none if a reading closed it, one or two
    /// otherwise).
    Split { old: Gap, parts: Vec<Gap> },
    /// The register went down from the series' last reading for no reason
    /// the rules know (not a rollover, a reported or configured HCA set
    /// date, or a registry replacement).
    Decrease { before: Point, after: Point },
}

/// A series whose interval was inferred at [`LiveEngine::settle`]: its gaps
/// judged with the built-in interval (`old`) are replaced by `new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub meter: String,
    pub register: String,
    pub medium: Medium,
    pub interval: Interval,
    pub old: Vec<Gap>,
    pub new: Vec<Gap>,
    /// The reading that completed the first [`INFER_READINGS`] (the cause,
    /// for lineage): its receipt key and its receive time.
    pub cause: ReceiptKey,
    pub cause_received_at: i64,
}

/// How a new series is judged: resolved by the caller (registry, then
/// configuration) when the series is first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesSetup {
    pub medium: Medium,
    /// None: infer it (see the module documentation).
    pub interval: Option<Interval>,
    pub seq_wrap: u64,
}

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
    /// Replacements explain register decreases, as in the batch pass.
    registry: Arc<Registry>,
    /// Meter ids: `[len: u8][bytes]`, each once per series.
    arena: Vec<u8>,
    registers: Interner<String>,
    /// Distinct setups (medium, interval, wrap): a handful per deployment.
    profiles: Interner<SeriesSetup>,
    /// Setups of series past the interner's capacity ([`OWN_PROFILE`]).
    own: HashMap<u32, SeriesSetup>,
    slots: Vec<Slot>,
    /// Series index by (meter, register).
    index: HashTable<u32>,
    /// Recorded gaps, sorted by start, of the series that have any: their
    /// ends only (`live_kept.rs`).
    gaps: HashMap<u32, Vec<KeptGap>>,
    /// Series whose interval is being inferred.
    warmup: HashMap<u32, Warmup>,
    /// Warm-up series that reached [`INFER_READINGS`] in this batch.
    ripe: Vec<u32>,
    /// Values that do not fit an i64 at scale 10^9: (first, last).
    wide: HashMap<u32, (i128, i128)>,
    /// Set dates meters reported (UTC day numbers, sorted), by meter.
    set_days: HashMap<Box<str>, Vec<i64>>,
    /// Gaps that end before this time (µs) are not kept (see "Memory"):
    /// the sealed files answer for them. Only moves forward.
    horizon: i64,
    /// The newest receive time observed (what the horizon follows).
    newest_received: i64,
    /// No kept gap (of a series past its warm-up) ends before this: the
    /// next [`evict`](Self::evict) has nothing to do until the horizon
    /// passes it.
    oldest_to: i64,
    /// How long a gap is kept after it ends, µs (`i64::MAX`: for ever).
    /// Configuration, not state.
    gap_memory: i64,
    /// Readings before the horizon observed since the last seal, by
    /// series: the sealed files do not hold them yet.
    unsealed: HashMap<u32, Vec<Point>>,
    /// Lookups see only receipts before this one (while the sealed files
    /// of the commits after a snapshot are loaded: none of them).
    lookup_bound: Option<u64>,
    /// Lookups in the sealed files so far.
    lookups: u64,
}

/// A series whose interval is not known yet: its readings (sorted by
/// time, judged meanwhile with the built-in interval) and the first
/// received of them.
#[derive(Debug, Clone, Default)]
struct Warmup {
    points: Vec<Point>,
    first: FirstReceived,
    ripe: bool,
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

    /// The id of `v`, or None when it is new and every id below
    /// [`OWN_PROFILE`] is taken.
    fn try_id(&mut self, v: &T) -> Option<u16> {
        if let Some(&id) = self.ids.get(v) {
            return Some(id);
        }
        let id = u16::try_from(self.values.len())
            .ok()
            .filter(|&id| id < OWN_PROFILE)?;
        self.values.push(v.clone());
        self.ids.insert(v.clone(), id);
        Some(id)
    }
}

/// A slot's profile when its setup is its own (in `LiveEngine::own`): past
/// 65,535 distinct setups (inferred intervals come from untrusted
/// readings), a series keeps its own rather than share another's.
const OWN_PROFILE: u16 = u16::MAX;

fn rules_for<'a>(
    cfg: &'a ContinuityConfig,
    setup: SeriesSetup,
    set_days: &'a [i64],
    replacements: &'a [i64],
) -> SeriesRules<'a> {
    SeriesRules {
        cfg,
        medium: setup.medium,
        interval: setup.interval.unwrap_or(Interval {
            micros: builtin_interval_s(setup.medium) as i64 * SECOND,
            source: IntervalSource::Default,
        }),
        seq_wrap: setup.seq_wrap,
        set_days,
        replacements,
    }
}

fn key_hash(meter: &str, register: u16) -> u64 {
    xxh3_64_with_seed(meter.as_bytes(), register as u64)
}

/// The meter id at `at` in the arena.
fn meter_at(arena: &[u8], at: u32) -> &str {
    let at = at as usize;
    let len = arena[at] as usize;
    // Only valid UTF-8 (meter ids are ASCII) is ever written there.
    std::str::from_utf8(&arena[at + 1..at + 1 + len]).unwrap_or("")
}

/// The set days that count for a series: its meter's, for an HCA (the
/// only medium a set date resets).
fn days_of<'a>(days: &'a HashMap<Box<str>, Vec<i64>>, medium: Medium, meter: &str) -> &'a [i64] {
    if medium != Medium::Hca || days.is_empty() {
        return &[];
    }
    days.get(meter).map_or(&[], Vec::as_slice)
}

/// The gaps between neighbours of readings sorted by time.
fn gaps_over(points: &[Point], rules: &SeriesRules) -> Vec<Gap> {
    points
        .windows(2)
        .filter_map(|w| gap_between(&w[0], &w[1], rules))
        .collect()
}

impl LiveEngine {
    pub fn new(cfg: ContinuityConfig) -> LiveEngine {
        LiveEngine {
            cfg,
            registry: Arc::new(Registry::default()),
            arena: Vec::new(),
            registers: Interner::new(),
            profiles: Interner::new(),
            own: HashMap::new(),
            slots: Vec::new(),
            index: HashTable::new(),
            gaps: HashMap::new(),
            warmup: HashMap::new(),
            ripe: Vec::new(),
            wide: HashMap::new(),
            set_days: HashMap::new(),
            horizon: i64::MIN,
            newest_received: i64::MIN,
            oldest_to: i64::MAX,
            gap_memory: i64::MAX,
            unsealed: HashMap::new(),
            lookup_bound: None,
            lookups: 0,
        }
    }

    /// Whether the register-name table is known to hold `register`.
    pub fn knows_register(&self, register: &str) -> bool {
        self.registers.ids.contains_key(register)
    }

    /// Whether `n` more register names fit (65,535 names in all: a fleet
    /// has a few dozen; the ingest stage rejects a message past it rather
    /// than let two registers share a slot).
    pub fn has_room_for(&self, n: usize) -> bool {
        self.registers.values.len() + n <= u16::MAX as usize
    }

    /// Enters a register name (the ingest stage, as it accepts a message).
    pub fn intern_register(&mut self, register: &str) {
        if !self.knows_register(register) && self.has_room_for(1) {
            self.registers.id(&register.to_owned());
        }
    }

    /// Rebuilds the series index from the slots (after a decode).
    fn reindex(&mut self) {
        let (arena, slots) = (&self.arena, &self.slots);
        let mut index = HashTable::with_capacity(slots.len());
        for (i, s) in slots.iter().enumerate() {
            let s = *s;
            index.insert_unique(
                key_hash(meter_at(arena, s.meter), s.register),
                i as u32,
                |&j| {
                    let t = slots[j as usize];
                    key_hash(meter_at(arena, t.meter), t.register)
                },
            );
        }
        self.index = index;
    }

    /// Judges register decreases with the registry's replacements.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> LiveEngine {
        self.registry = registry;
        self
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn meter_of(&self, slot: &Slot) -> &str {
        meter_at(&self.arena, slot.meter)
    }

    fn find(&self, meter: &str, register: &str) -> Option<u32> {
        let reg = *self.registers.ids.get(register)?;
        self.find_id(meter, reg)
    }

    fn find_id(&self, meter: &str, reg: u16) -> Option<u32> {
        let arena = &self.arena;
        let slots = &self.slots;
        self.index
            .find(key_hash(meter, reg), |&i| {
                let s = slots[i as usize];
                s.register == reg && meter_at(arena, s.meter) == meter
            })
            .copied()
    }

    fn setup_of(&self, i: u32, profile: u16) -> SeriesSetup {
        match profile {
            OWN_PROFILE => self.own[&i],
            p => self.profiles.values[p as usize],
        }
    }

    /// The profile of series `i` with `setup` (its own past the interner's
    /// capacity).
    fn profile_id(&mut self, i: u32, setup: SeriesSetup) -> u16 {
        match self.profiles.try_id(&setup) {
            Some(id) => {
                self.own.remove(&i);
                id
            }
            None => {
                self.own.insert(i, setup);
                OWN_PROFILE
            }
        }
    }

    fn rules(&self, i: u32, profile: u16) -> SeriesRules<'_> {
        rules_for(&self.cfg, self.setup_of(i, profile), &[], &[])
    }

    /// Replacements of a meter (none without a registry: no lookup).
    fn replacements(&self, meter: &str) -> Vec<i64> {
        if self.registry.is_empty() {
            Vec::new()
        } else {
            self.registry.replacements(meter)
        }
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
    /// the series). `setup` is asked only for a series seen the first time;
    /// `key` says where the reading was received (what an unknown interval
    /// is inferred from). A series that reaches [`INFER_READINGS`] is
    /// re-judged at the next [`settle`](Self::settle). `sealed` is asked
    /// only for a reading older than the gap memory that falls inside the
    /// series' span but in no gap kept (see "Memory").
    pub fn observe(
        &mut self,
        meter: &str,
        register: &str,
        setup: impl FnOnce() -> SeriesSetup,
        p: Point,
        key: ReceiptKey,
        sealed: &mut dyn SealedSeries,
    ) -> Result<Vec<GapChange>, LookupError> {
        let mut changes = Vec::new();
        self.newest_received = self.newest_received.max(p.received_at);
        let Some(i) = self.find(meter, register) else {
            let i = self.slots.len() as u32;
            self.insert(meter, register, setup(), p, key);
            self.remember_unsealed(i, p);
            return Ok(changes);
        };
        if let Some(w) = self.warmup.get_mut(&i) {
            let k = w.points.partition_point(|q| q.ts < p.ts);
            if w.points.get(k).is_some_and(|q| q.ts == p.ts) {
                return Ok(changes);
            }
            w.points.insert(k, p);
            w.first.offer(key, p.ts);
            if w.points.len() >= INFER_READINGS && !w.ripe {
                w.ripe = true;
                self.ripe.push(i);
            }
        }
        let evicted = self.evicted_gap_around(i, p, sealed)?;
        self.apply(i, p, evicted, &mut changes);
        self.remember_unsealed(i, p);
        Ok(changes)
    }

    fn insert(
        &mut self,
        meter: &str,
        register: &str,
        setup: SeriesSetup,
        p: Point,
        key: ReceiptKey,
    ) {
        let i = self.slots.len() as u32;
        let reg = self.registers.id(&register.to_owned());
        let profile = self.profile_id(i, setup);
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
            key_hash(meter_at(arena, s.meter), s.register)
        });
        if setup.interval.is_none() {
            let mut w = Warmup {
                points: vec![p],
                ..Warmup::default()
            };
            w.first.offer(key, p.ts);
            if INFER_READINGS <= 1 {
                w.ripe = true;
                self.ripe.push(i);
            }
            self.warmup.insert(i, w);
        }
    }

    /// Takes a reading with the series' interval (the built-in one while
    /// it is being inferred).
    /// `evicted`: the neighbours around `p` (inside the span) whose gap is
    /// no longer kept, as the sealed files told.
    fn apply(
        &mut self,
        i: u32,
        p: Point,
        evicted: Option<(Point, Point)>,
        changes: &mut Vec<GapChange>,
    ) {
        let slot = self.slots[i as usize];
        let (first, last) = (
            self.unpack(i, slot.first, true),
            self.unpack(i, slot.last, false),
        );
        let setup = self.setup_of(i, slot.profile);
        let meter = meter_at(&self.arena, slot.meter);
        // Replacements explain only a step down: looked up only when one
        // may be judged (not for the common reading after the last, up).
        let down = if p.ts > last.ts {
            p.value < last.value
        } else if p.ts < first.ts {
            first.value < p.value
        } else {
            evicted.is_some() || self.gaps.contains_key(&i)
        };
        let repl = if down {
            self.replacements(meter)
        } else {
            Vec::new()
        };
        let days = days_of(&self.set_days, setup.medium, meter);
        let rules = rules_for(&self.cfg, setup, days, &repl);
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
                self.oldest_to = self.oldest_to.min(g.to);
                let k = self.kept(&g);
                let gaps = self.gaps.entry(i).or_default();
                gaps.reserve_exact(1);
                gaps.push(k);
                changes.push(GapChange::Found(g));
            }
        } else if p.ts < first.ts {
            let found = gap_between(&p, &first, &rules);
            let end = self.pack(i, &p, true);
            self.slots[i as usize].first = end;
            if let Some(g) = found {
                self.oldest_to = self.oldest_to.min(g.to);
                let k = self.kept(&g);
                let gaps = self.gaps.entry(i).or_default();
                gaps.reserve_exact(1);
                gaps.insert(0, k);
                changes.push(GapChange::Found(g));
            }
        } else if let Some((before, after)) = evicted {
            // A gap no longer kept: judged again from its ends.
            if let Some(old) = gap_between(&before, &after, &rules) {
                let parts: Vec<Gap> = gap_between(&before, &p, &rules)
                    .into_iter()
                    .chain(gap_between(&p, &after, &rules))
                    .collect();
                let kept: Vec<KeptGap> = parts.iter().map(|g| self.kept(g)).collect();
                let gaps = self.gaps.entry(i).or_default();
                let k = gaps.partition_point(|g| g.to() <= p.ts);
                gaps.reserve_exact(kept.len());
                gaps.splice(k..k, kept);
                if gaps.is_empty() {
                    self.gaps.remove(&i);
                }
                if let Some(g) = parts.first() {
                    self.oldest_to = self.oldest_to.min(g.to);
                }
                changes.push(GapChange::Split { old, parts });
            }
        } else if let Some(gaps) = self.gaps.get(&i) {
            // Inside the known span: only a gap around it changes.
            let k = gaps.partition_point(|g| g.to() <= p.ts);
            let around = gaps.get(k).filter(|g| g.from() < p.ts && p.ts < g.to());
            if let Some(old) = around.and_then(|g| g.judged(&rules, self.cfg.late_after)) {
                let mut parts: Vec<Gap> =
                    gap_between(&old.before, &p, &rules).into_iter().collect();
                if let Some(b) = &old.after {
                    parts.extend(gap_between(&p, b, &rules));
                }
                let kept: Vec<KeptGap> = parts.iter().map(|g| self.kept(g)).collect();
                let gaps = self.gaps.entry(i).or_default();
                gaps.splice(k..=k, kept);
                if gaps.is_empty() {
                    self.gaps.remove(&i);
                }
                if let Some(g) = parts.first() {
                    self.oldest_to = self.oldest_to.min(g.to);
                }
                changes.push(GapChange::Split { old, parts });
            }
        }
    }

    /// Ends a batch: every series that reached [`INFER_READINGS`] readings
    /// in it gets the interval inferred from its first received ones and is
    /// re-judged with it. Call it once the whole batch is observed (a seal;
    /// at a start, each commit's readings).
    pub fn settle(&mut self) -> Vec<Inferred> {
        let mut out = Vec::new();
        for i in std::mem::take(&mut self.ripe) {
            let Some(w) = self.warmup.remove(&i) else {
                continue;
            };
            let slot = self.slots[i as usize];
            // Judged with the built-in interval so far.
            let old = self.judged_gaps(i);
            let mut setup = self.setup_of(i, slot.profile);
            let interval = w.first.interval(setup.medium);
            setup.interval = Some(interval);
            let profile = self.profile_id(i, setup);
            self.slots[i as usize].profile = profile;
            let meter = meter_at(&self.arena, slot.meter);
            let repl = self.replacements(meter);
            let days = days_of(&self.set_days, setup.medium, meter);
            let new = gaps_over(&w.points, &rules_for(&self.cfg, setup, days, &repl));
            if let Some(g) = new.first() {
                self.oldest_to = self.oldest_to.min(g.to);
            }
            match new.is_empty() {
                true => self.gaps.remove(&i),
                false => {
                    let kept = new.iter().map(|g| self.kept(g)).collect();
                    self.gaps.insert(i, kept)
                }
            };
            let (cause, ts) = w.first.completed_by().unwrap_or_default();
            let cause_received_at = w
                .points
                .binary_search_by_key(&ts, |q| q.ts)
                .map_or(ts, |k| w.points[k].received_at);
            out.push(Inferred {
                meter: meter.to_owned(),
                register: self.registers.values[slot.register as usize].clone(),
                medium: setup.medium,
                interval,
                old,
                new,
                cause,
                cause_received_at,
            });
        }
        out
    }

    /// The recorded gaps of a series, in time order (judged again from
    /// their ends, with the rules in force).
    pub fn gaps(&self, meter: &str, register: &str) -> Vec<Gap> {
        self.find(meter, register)
            .map_or_else(Vec::new, |i| self.judged_gaps(i))
    }

    /// Whether a known gap of the series lies strictly around `ts`: no
    /// reading of the series is stored there.
    pub fn in_gap(&self, meter: &str, register: &str, ts: i64) -> bool {
        let Some(gaps) = self.find(meter, register).and_then(|i| self.gaps.get(&i)) else {
            return false;
        };
        let k = gaps.partition_point(|g| g.to() <= ts);
        gaps.get(k).is_some_and(|g| g.from() < ts && ts < g.to())
    }

    /// The interval a series is judged with (None while it is inferred:
    /// the built-in one applies meanwhile).
    pub fn interval(&self, meter: &str, register: &str) -> Option<Interval> {
        let i = self.find(meter, register)?;
        if self.warmup.contains_key(&i) {
            return None;
        }
        self.setup_of(i, self.slots[i as usize].profile).interval
    }

    /// Series silent past their threshold at `now`, with their open gap.
    pub fn open_gaps(&self, now: i64) -> impl Iterator<Item = (&str, &str, Gap)> + '_ {
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            let last = self.unpack(i as u32, s.last, false);
            let g = open_gap(&last, now, &self.rules(i as u32, s.profile))?;
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
            + self
                .gaps
                .values()
                .map(|g| g.capacity() * std::mem::size_of::<KeptGap>())
                .sum::<usize>()
            + self.warmup.capacity() * 48
            + self.wide.capacity() * 48
            + self.set_days.capacity() * 48
            + self.own.capacity() * 48
    }
}

#[path = "live_kept.rs"]
mod kept;
use kept::KeptGap;

#[path = "live_memory.rs"]
mod memory;

#[path = "live_set_day.rs"]
mod set_day;

#[path = "live_state.rs"]
mod state;

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
