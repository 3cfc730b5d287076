//! The alert engine: per-meter silence deadlines, group storms, events.
//!
//! # Deadlines
//!
//! A meter's deadline is its latest reading's time plus its `alert_after`
//! (by default 3 × its expected interval; per medium and per registry entry
//! configurable). All deadlines live in one binary heap of packed
//! `(deadline in seconds, meter)` keys, at most one live entry per meter,
//! and an entry may be *earlier* than the meter's true deadline: a reading
//! only moves the meter's `last` time, never the heap. When an entry comes
//! due, the meter's current deadline is checked: still ahead → the entry is
//! pushed again at the true deadline (once per `alert_after` per meter, not
//! once per reading); passed → the meter is silent. So a check when
//! nothing is due is one peek at the heap's top, and a meter costs, besides
//! its id, 25 bytes of columns and 8 of heap (`gapless bench alerts`).
//!
//! # State changes only
//!
//! `meter_silent` once, then nothing until the meter reports again, which
//! raises one `meter_resumed` carrying the gap (from the continuity engine,
//! at the seal that stores the reading). No data is never a recovery.
//!
//! # Storms
//!
//! When a meter comes due, the other meters of its group are looked at:
//! if at least `group_min` of them (it included) have been silent for two
//! thirds of their own `alert_after` or more, and went silent within one
//! `alert_after` of it, a single `group_silent` names the count and they
//! are *covered*: no individual alerts while the group is down. Covered
//! meters that report again leave quietly; when none is left, or when
//! fewer than `group_min` are left one `alert_after` after the first came
//! back, `group_resumed` closes the group, and meters still silent then get
//! their own `meter_silent`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::{Alert, AlertConfig, AlertGap, AlertKind, MEMBERS_LISTED};
use crate::continuity::series::{missing_in, Gap};
use crate::continuity::{builtin_interval_s, Context, SECOND};
use crate::reading::Medium;
use crate::time::format_micros;

const NONE: u32 = u32::MAX;

/// Has sent a reading (else: a registry meter, tracked since `last`).
const SEEN: u8 = 1;
/// `meter_silent` raised and not closed.
const SILENT: u8 = 2;
/// `meter_never_seen` raised and not closed.
const NEVER: u8 = 4;
/// Silent within an open group alert.
const COVERED: u8 = 8;
/// Silent, reported again: `meter_resumed` at the next seal.
const RESUMING: u8 = 16;
/// `alert_after` came from the registry or configuration, not a guess.
const FIXED: u8 = 32;

/// One group's members and its open group alert.
#[derive(Debug)]
struct Group {
    name: String,
    members: Vec<u32>,
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    /// The `group_silent` alert.
    seq: u64,
    /// Meters counted when it opened.
    count: u64,
    /// Meters still covered.
    covered: u64,
    resumed: u64,
    first_resume: Option<i64>,
    /// How long after the first meter came back the rest are judged on
    /// their own (µs).
    settle: i64,
}

/// What the engine knows, for metrics.
pub use crate::health::AlertGauges as AlertStats;

/// Per-meter deadlines and alert state. Pure: every call gets `now` (µs).
#[derive(Debug)]
pub struct AlertEngine {
    cfg: AlertConfig,
    ctx: Context,
    /// Meter ids: `[len: u8][bytes]`.
    arena: Vec<u8>,
    index: HashTable<u32>,
    // Per meter, by index:
    at: Vec<u32>,
    /// Latest reading time (µs); for a meter never seen, when tracking began.
    last: Vec<i64>,
    /// Silence that makes it due (s).
    after: Vec<u32>,
    group: Vec<u32>,
    /// Key (deadline, s) of its heap entry; 0 = none.
    queued: Vec<u32>,
    flags: Vec<u8>,
    heap: BinaryHeap<Reverse<u64>>,
    groups: Vec<Group>,
    group_ids: HashMap<String, u32>,
    open_groups: Vec<u32>,
    /// Open `meter_silent` / `meter_never_seen` alerts by meter.
    silent_seq: HashMap<u32, u64>,
    never_seq: HashMap<u32, u64>,
    /// Meters resuming: their last reading before the silence.
    resuming: HashMap<u32, i64>,
    /// Last event alert per (kind, subject) (µs).
    quiet: HashMap<(AlertKind, String), i64>,
    /// Rejections per second in the window, and their sum.
    rejects: VecDeque<(i64, u64)>,
    rejects_in_window: u64,
    burst_seq: Option<u64>,
    next_seq: u64,
    pending: Vec<Alert>,
    /// Groups learned from topics since the last call of `take_learned`.
    learned: Vec<(u32, u32)>,
    /// Deadlines are not judged before this (µs).
    check_from: i64,
}

fn pack(deadline_s: u32, i: u32) -> u64 {
    (deadline_s as u64) << 32 | i as u64
}

impl AlertEngine {
    pub fn new(cfg: AlertConfig, ctx: Context) -> AlertEngine {
        AlertEngine {
            cfg,
            ctx,
            arena: Vec::new(),
            index: HashTable::new(),
            at: Vec::new(),
            last: Vec::new(),
            after: Vec::new(),
            group: Vec::new(),
            queued: Vec::new(),
            flags: Vec::new(),
            heap: BinaryHeap::new(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            open_groups: Vec::new(),
            silent_seq: HashMap::new(),
            never_seq: HashMap::new(),
            resuming: HashMap::new(),
            quiet: HashMap::new(),
            rejects: VecDeque::new(),
            rejects_in_window: 0,
            burst_seq: None,
            next_seq: 1,
            pending: Vec::new(),
            learned: Vec::new(),
            check_from: i64::MIN,
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.cfg
    }

    /// Meters tracked.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Deadlines are judged from `t` on (µs): the startup grace.
    pub fn hold_until(&mut self, t: i64) {
        self.check_from = t;
    }

    /// Ends a hold earlier: at `t`, if it held longer.
    pub fn shorten_hold(&mut self, t: i64) {
        self.check_from = self.check_from.min(t);
    }

    fn meter(&self, i: u32) -> &str {
        let at = self.at[i as usize] as usize;
        let len = self.arena[at] as usize;
        std::str::from_utf8(&self.arena[at + 1..at + 1 + len]).unwrap_or("")
    }

    fn find(&self, meter: &str) -> Option<u32> {
        let (arena, at) = (&self.arena, &self.at);
        self.index
            .find(xxh3_64(meter.as_bytes()), |&j| {
                let a = at[j as usize] as usize;
                let len = arena[a] as usize;
                &arena[a + 1..a + 1 + len] == meter.as_bytes()
            })
            .copied()
    }

    /// The meter's silence threshold (s) and whether it is fixed.
    fn alert_after(&self, meter: &str, medium: Medium, lora: bool) -> (u32, bool) {
        let clamp = |s: f64| s.clamp(1.0, u32::MAX as f64) as u32;
        if let Some(s) = self
            .ctx
            .registry
            .latest(meter)
            .and_then(|e| e.alert_after_s)
        {
            return (clamp(s as f64), true);
        }
        let setup = self.ctx.setup(meter, medium, lora);
        if let Some(&s) = self.cfg.alert_after_s.get(&setup.medium) {
            return (clamp(s as f64), true);
        }
        match setup.interval {
            Some(iv) => (
                clamp(iv.micros as f64 / SECOND as f64 * self.cfg.after_intervals),
                true,
            ),
            None => (
                clamp(builtin_interval_s(setup.medium) as f64 * self.cfg.after_intervals),
                false,
            ),
        }
    }

    /// The meter's index, adding it if new.
    fn ensure(&mut self, meter: &str, medium: Medium, lora: bool, since: i64) -> u32 {
        if let Some(i) = self.find(meter) {
            return i;
        }
        let (after, fixed) = self.alert_after(meter, medium, lora);
        self.insert_meter(meter, after, fixed, since)
    }

    /// Adds a meter judged after `after` seconds of silence.
    fn insert_meter(&mut self, meter: &str, after: u32, fixed: bool, since: i64) -> u32 {
        let i = self.at.len() as u32;
        let at = self.arena.len() as u32;
        let id = &meter.as_bytes()[..meter.len().min(u8::MAX as usize)];
        self.arena.push(id.len() as u8);
        self.arena.extend_from_slice(id);
        self.at.push(at);
        self.last.push(since);
        self.after.push(after);
        self.group.push(NONE);
        self.queued.push(0);
        self.flags.push(if fixed { FIXED } else { 0 });
        let (arena, ats) = (&self.arena, &self.at);
        self.index.insert_unique(xxh3_64(id), i, |&j| {
            let a = ats[j as usize] as usize;
            let len = arena[a] as usize;
            xxh3_64(&arena[a + 1..a + 1 + len])
        });
        if let Some(g) = self
            .ctx
            .registry
            .latest(meter)
            .and_then(|e| e.group.clone())
        {
            self.join(i, &g);
        }
        i
    }

    fn join(&mut self, i: u32, name: &str) {
        let g = match self.group_ids.get(name) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push(Group {
                    name: name.to_owned(),
                    members: Vec::new(),
                    episode: None,
                });
                self.group_ids.insert(name.to_owned(), g);
                g
            }
        };
        self.group[i as usize] = g;
        self.groups[g as usize].members.push(i);
    }

    /// When meter `i` becomes due (µs).
    fn deadline(&self, i: u32) -> i64 {
        self.last[i as usize].saturating_add(self.after[i as usize] as i64 * SECOND)
    }

    /// Its heap key: the deadline's whole second, rounded down (an entry is
    /// never later than the deadline; `tick` checks the exact time).
    fn deadline_s(&self, i: u32) -> u32 {
        self.deadline(i)
            .div_euclid(SECOND)
            .clamp(1, u32::MAX as i64) as u32
    }

    /// Makes sure the heap holds an entry for `i` no later than its deadline.
    fn schedule(&mut self, i: u32) {
        let d = self.deadline_s(i);
        let q = self.queued[i as usize];
        if q == 0 || q > d {
            self.heap.push(Reverse(pack(d, i)));
            self.queued[i as usize] = d;
        }
    }

    /// Starts tracking the registry's installed meters not yet seen: they
    /// raise `meter_never_seen` if nothing comes within their grace from
    /// `since` (µs, the first start).
    /// A meter installed later is judged from its `installed_at`; one
    /// removed is not tracked.
    pub fn track_registry(&mut self, since: i64) {
        let meters: Vec<(String, Medium, i64)> = self
            .ctx
            .registry
            .meters()
            .filter_map(|(id, entries)| {
                let e = entries.last()?;
                e.removed_at.is_none().then(|| {
                    let from = e.installed_at.map_or(since, |t| t.max(since));
                    (id.to_owned(), e.medium, from)
                })
            })
            .collect();
        for (id, medium, from) in meters {
            let i = self.ensure(&id, medium, false, from);
            if self.flags[i as usize] & SEEN == 0 {
                if let Some(s) = self.cfg.never_seen_after_s {
                    self.after[i as usize] = s.min(u32::MAX as u64) as u32;
                }
                self.schedule(i);
            }
        }
    }

    /// A reading already sealed before this start: state only, no alerts.
    pub fn observe_sealed(&mut self, meter: &str, medium: Medium, lora: bool, ts: i64) {
        let i = self.ensure(meter, medium, lora, ts);
        let k = i as usize;
        if self.flags[k] & SEEN == 0 || ts > self.last[k] {
            self.last[k] = ts;
        }
        self.flags[k] |= SEEN;
        self.schedule(i);
    }

    /// The meters seen, in the engine's order, with what their deadlines
    /// follow from: (meter, latest reading time, silence that makes it
    /// due in s, whether that was inferred or configured). What a snapshot
    /// keeps; [`seed`](Self::seed) takes it back.
    pub fn seeds(&self) -> Vec<(&str, i64, u32, bool)> {
        (0..self.at.len())
            .filter(|&k| self.flags[k] & SEEN != 0)
            .map(|k| {
                (
                    self.meter(k as u32),
                    self.last[k],
                    self.after[k],
                    self.flags[k] & FIXED != 0,
                )
            })
            .collect()
    }

    /// A meter of a snapshot's [`seeds`](Self::seeds): as if its sealed
    /// readings had been observed.
    pub fn seed(&mut self, meter: &str, last: i64, after: u32, fixed: bool) {
        let i = match self.find(meter) {
            Some(i) => i,
            None => self.insert_meter(meter, after, fixed, last),
        };
        let k = i as usize;
        self.last[k] = last;
        self.after[k] = after;
        self.flags[k] |= SEEN;
        if fixed {
            self.flags[k] |= FIXED;
        }
        self.schedule(i);
    }

    /// A group learned before this start (`take_learned`); the registry's
    /// group wins, and a meter keeps its first group.
    pub fn restore_group(&mut self, meter: &str, group: &str) {
        if let Some(i) = self.find(meter) {
            if self.group[i as usize] == NONE {
                self.join(i, group);
            }
        }
    }

    /// Groups first learned from topics since the last call, to persist.
    pub fn take_learned(&mut self) -> Vec<(String, String)> {
        let learned = std::mem::take(&mut self.learned);
        learned
            .into_iter()
            .map(|(i, g)| {
                (
                    self.meter(i).to_owned(),
                    self.groups[g as usize].name.clone(),
                )
            })
            .collect()
    }

    /// Rebuilds the open alerts and the event quiet times from the alerts
    /// already told (in `seq` order), after the sealed readings, the
    /// learned groups and the registry are in. `now` (µs) judges which
    /// meters of an open group alert are still covered.
    pub fn restore<'a>(&mut self, told: impl IntoIterator<Item = &'a Alert>, now: i64) {
        let mut silent: HashMap<String, u64> = HashMap::new();
        let mut never: HashMap<String, u64> = HashMap::new();
        let mut groups: HashMap<String, (u64, u64)> = HashMap::new();
        let mut by_seq: HashMap<u64, (AlertKind, String)> = HashMap::new();
        for a in told {
            self.next_seq = self.next_seq.max(a.seq + 1);
            by_seq.insert(a.seq, (a.kind, a.subject.clone()));
            match a.kind {
                AlertKind::MeterSilent => {
                    silent.insert(a.subject.clone(), a.seq);
                }
                AlertKind::MeterNeverSeen => {
                    never.insert(a.subject.clone(), a.seq);
                }
                AlertKind::GroupSilent => {
                    groups.insert(a.subject.clone(), (a.seq, a.count.unwrap_or(0)));
                }
                AlertKind::RejectBurst => self.burst_seq = Some(a.seq),
                AlertKind::RejectBurstEnded => self.burst_seq = None,
                AlertKind::MeterResumed | AlertKind::GroupResumed => {
                    if let Some((kind, subject)) = a.closes.and_then(|s| by_seq.get(&s)) {
                        match kind {
                            AlertKind::MeterSilent => silent.remove(subject),
                            AlertKind::MeterNeverSeen => never.remove(subject),
                            AlertKind::GroupSilent => {
                                groups.remove(subject);
                                None
                            }
                            _ => None,
                        };
                    }
                }
                AlertKind::RegisterRegression
                | AlertKind::ReadingConflict
                | AlertKind::ClockSkew => {
                    self.quiet.insert((a.kind, a.subject.clone()), a.raised_at);
                }
            }
        }
        for (meter, seq) in silent {
            if let Some(i) = self.find(&meter) {
                self.flags[i as usize] |= SILENT;
                self.silent_seq.insert(i, seq);
            }
        }
        for (meter, seq) in never {
            if let Some(i) = self.find(&meter) {
                if self.flags[i as usize] & SEEN == 0 {
                    self.flags[i as usize] |= NEVER;
                    self.never_seq.insert(i, seq);
                }
            }
        }
        for (name, (seq, count)) in groups {
            let Some(&g) = self.group_ids.get(&name) else {
                continue;
            };
            let mut ep = Episode {
                seq,
                count,
                covered: 0,
                resumed: 0,
                first_resume: None,
                settle: 0,
            };
            for j in self.groups[g as usize].members.clone() {
                let k = j as usize;
                if self.flags[k] & (SEEN | SILENT) == SEEN && self.deadline(j) <= now {
                    self.flags[k] |= COVERED;
                    ep.covered += 1;
                    ep.settle = ep.settle.max(self.after[k] as i64 * SECOND);
                }
            }
            self.groups[g as usize].episode = Some(ep);
            self.open_groups.push(g);
        }
    }

    /// A measured reading as it is ingested (`now`: its receive time;
    /// `group`: the gateway its message names, for a meter the registry
    /// puts in no group: see [`message_group`]). Returns true when the
    /// meter is resuming: its `meter_resumed` waits for the gap the next
    /// seal finds, so the caller should seal soon.
    pub fn reading(
        &mut self,
        meter: &str,
        medium: Medium,
        lora: bool,
        ts: i64,
        group: Option<&str>,
        now: i64,
    ) -> bool {
        let i = self.ensure(meter, medium, lora, ts);
        let k = i as usize;
        if self.group[k] == NONE {
            if let Some(g) = group {
                self.join(i, g);
                self.learned.push((i, self.group[k]));
            }
        }
        let old = self.last[k];
        let first = self.flags[k] & SEEN == 0;
        if first || ts > old {
            self.last[k] = ts;
        }
        self.flags[k] |= SEEN;
        if first && self.flags[k] & NEVER != 0 {
            self.flags[k] &= !NEVER;
            let closes = self.never_seq.remove(&i);
            let group = self.group_name(i);
            self.emit(AlertKind::MeterResumed, meter.to_owned(), now, |a| {
                a.meter_id = Some(meter.to_owned());
                a.group = group;
                a.closes = closes;
                a.message = format!(
                    "registry meter {meter} sent its first reading ({})",
                    format_micros(ts)
                );
            });
        }
        let alive = self.deadline(i) > now;
        let f = self.flags[k];
        if f & SILENT != 0 {
            if alive && f & RESUMING == 0 {
                self.flags[k] |= RESUMING;
                self.resuming.insert(i, old);
                return true;
            }
            return false;
        }
        if f & COVERED != 0 {
            if alive {
                self.flags[k] &= !COVERED;
                self.uncover(self.group[k], now);
                self.schedule(i);
            }
            return false;
        }
        self.schedule(i);
        false
    }

    /// A covered meter of group `g` came back.
    fn uncover(&mut self, g: u32, now: i64) {
        let Some(ep) = self.groups[g as usize].episode.as_mut() else {
            return;
        };
        ep.covered = ep.covered.saturating_sub(1);
        ep.resumed += 1;
        ep.first_resume.get_or_insert(now);
        if ep.covered == 0 {
            self.close_group(g, now);
        }
    }

    fn group_name(&self, i: u32) -> Option<String> {
        let g = self.group[i as usize];
        (g != NONE).then(|| self.groups[g as usize].name.clone())
    }

    /// Whether some meter waits for its `meter_resumed`.
    pub fn has_resuming(&self) -> bool {
        !self.resuming.is_empty()
    }

    /// At a seal, after the continuity engine: raises `meter_resumed` for
    /// the meters that came back, each with the latest gap found for it in
    /// this seal (`gaps`: meter, register, gap).
    pub fn finish_resumes<'a>(
        &mut self,
        gaps: impl IntoIterator<Item = (&'a str, &'a str, &'a Gap)>,
        now: i64,
    ) {
        if self.resuming.is_empty() {
            return;
        }
        let mut best: HashMap<u32, (&str, &Gap)> = HashMap::new();
        for (meter, register, gap) in gaps {
            let Some(i) = self.find(meter) else { continue };
            let Some(&old) = self.resuming.get(&i) else {
                continue;
            };
            if gap.to <= old {
                continue;
            }
            let e = best.entry(i).or_insert((register, gap));
            if gap.to > e.1.to || (gap.to == e.1.to && gap.duration() > e.1.duration()) {
                *e = (register, gap);
            }
        }
        let mut resuming: Vec<(u32, i64)> = self.resuming.drain().collect();
        resuming.sort_unstable();
        for (i, old) in resuming {
            let k = i as usize;
            self.flags[k] &= !(SILENT | RESUMING);
            let interval = (self.after[k] as f64 / self.cfg.after_intervals * SECOND as f64) as i64;
            let gap = match best.get(&i) {
                Some((register, g)) => AlertGap {
                    register: Some((*register).to_owned()),
                    from: g.from,
                    to: g.to,
                    missing: g.missing,
                    consumption_exact: Some(g.consumption.is_some() && !g.is_implausible()),
                },
                None => AlertGap {
                    register: None,
                    from: old,
                    to: self.last[k],
                    missing: missing_in(self.last[k] - old, interval),
                    consumption_exact: None,
                },
            };
            let meter = self.meter(i).to_owned();
            let closes = self.silent_seq.remove(&i);
            let group = self.group_name(i);
            self.emit(AlertKind::MeterResumed, meter.clone(), now, |a| {
                a.message = format!(
                    "meter {meter} reported again after {} without readings ({} missing{})",
                    human_duration(gap.to - gap.from),
                    gap.missing,
                    match gap.consumption_exact {
                        Some(true) => "; consumption across the gap is exact",
                        Some(false) => "; consumption across the gap is not exact",
                        None => "",
                    }
                );
                a.meter_id = Some(meter.clone());
                a.group = group;
                a.closes = closes;
                a.last_reading_at = Some(gap.from);
                a.gap = Some(gap);
            });
            self.schedule(i);
        }
    }

    /// The interval of a meter without a configured one was inferred from
    /// its readings (µs): its `alert_after` follows.
    pub fn interval_inferred(&mut self, meter: &str, interval: i64) {
        let Some(i) = self.find(meter) else { return };
        let k = i as usize;
        if self.flags[k] & FIXED != 0 {
            return;
        }
        let s = (interval as f64 / SECOND as f64 * self.cfg.after_intervals)
            .clamp(1.0, u32::MAX as f64) as u32;
        self.after[k] = s;
        self.flags[k] |= FIXED;
        if self.flags[k] & (SILENT | COVERED | NEVER) == 0 {
            self.schedule(i);
        }
    }

    /// Judges the deadlines due at `now` (µs) and the open group alerts.
    /// Costs one look at the heap's top when nothing is due.
    pub fn tick(&mut self, now: i64) {
        if now < self.check_from {
            return;
        }
        let now_s = now.div_euclid(SECOND);
        // Meters due later (within this second, or moved on): pushed again
        // after the loop, which would otherwise take them again at once.
        let mut later = Vec::new();
        while let Some(&Reverse(top)) = self.heap.peek() {
            let (d, i) = ((top >> 32) as u32, top as u32);
            if d as i64 > now_s {
                break;
            }
            self.heap.pop();
            let k = i as usize;
            if self.queued[k] != d {
                continue; // superseded by an earlier entry
            }
            self.queued[k] = 0;
            if self.flags[k] & (SILENT | NEVER | COVERED) != 0 {
                continue;
            }
            if self.deadline(i) > now {
                later.push(i);
                continue;
            }
            self.due(i, now);
        }
        for i in later {
            self.schedule(i);
        }
        if !self.open_groups.is_empty() {
            self.settle_groups(now);
        }
        self.prune_rejects(now);
        if let Some(seq) = self.burst_seq {
            if self.rejects_in_window * 2 < self.cfg.reject_burst {
                self.burst_seq = None;
                let n = self.rejects_in_window;
                let w = self.cfg.reject_window_s;
                self.emit(AlertKind::RejectBurstEnded, "rejections".into(), now, |a| {
                    a.closes = Some(seq);
                    a.count = Some(n);
                    a.message = format!("rejections fell to {n} in the last {w} s");
                });
            }
        }
    }

    /// Meter `i` passed its deadline.
    fn due(&mut self, i: u32, now: i64) {
        let k = i as usize;
        let meter = self.meter(i).to_owned();
        let deadline = self.deadline(i);
        // A meter the registry says was removed is not silent: it is gone
        // (no entry is kept for it; a reading would track it again).
        let removed = self
            .ctx
            .registry
            .latest(&meter)
            .and_then(|e| e.removed_at)
            .is_some_and(|t| t <= deadline);
        if removed {
            return;
        }
        if self.flags[k] & SEEN == 0 {
            let since = self.last[k];
            self.flags[k] |= NEVER;
            let group = self.group_name(i);
            let seq = self.emit(AlertKind::MeterNeverSeen, meter.clone(), now, |a| {
                a.message = format!(
                    "registry meter {meter} has sent no reading since {}",
                    format_micros(since)
                );
                a.meter_id = Some(meter.clone());
                a.group = group;
                a.deadline = Some(deadline);
            });
            self.never_seq.insert(i, seq);
            return;
        }
        let g = self.group[k];
        if g != NONE {
            if let Some(ep) = self.groups[g as usize].episode.as_mut() {
                self.flags[k] |= COVERED;
                ep.covered += 1;
                ep.count += 1;
                ep.settle = ep.settle.max(self.after[k] as i64 * SECOND);
                return;
            }
            if self.group_storm(i, g, now) {
                return;
            }
        }
        self.silent(i, now);
    }

    fn silent(&mut self, i: u32, now: i64) {
        let k = i as usize;
        let meter = self.meter(i).to_owned();
        let last = self.last[k];
        let deadline = self.deadline(i);
        let after = self.after[k] as i64 * SECOND;
        let group = self.group_name(i);
        self.flags[k] |= SILENT;
        let seq = self.emit(AlertKind::MeterSilent, meter.clone(), now, |a| {
            a.message = format!(
                "meter {meter} silent: no reading since {} (alert after {})",
                format_micros(last),
                human_duration(after)
            );
            a.meter_id = Some(meter.clone());
            a.group = group;
            a.last_reading_at = Some(last);
            a.deadline = Some(deadline);
        });
        self.silent_seq.insert(i, seq);
    }

    /// Whether meter `i` is part of a storm in group `g`: if so, opens the
    /// group alert.
    fn group_storm(&mut self, i: u32, g: u32, now: i64) -> bool {
        let k = i as usize;
        let window_start = self.last[k] - self.after[k] as i64 * SECOND;
        let members = &self.groups[g as usize].members;
        if members.len() < self.cfg.group_min {
            return false;
        }
        let silent: Vec<u32> = members
            .iter()
            .copied()
            .filter(|&j| {
                let m = j as usize;
                let f = self.flags[m];
                f & SEEN != 0
                    && f & COVERED == 0
                    && self.last[m] >= window_start
                    && (f & SILENT != 0
                        || (now - self.last[m]).saturating_mul(3)
                            >= self.after[m] as i64 * SECOND * 2)
            })
            .collect();
        if silent.len() < self.cfg.group_min {
            return false;
        }
        let mut ep = Episode {
            seq: 0,
            count: silent.len() as u64,
            covered: 0,
            resumed: 0,
            first_resume: None,
            settle: 0,
        };
        let mut names: Vec<String> = Vec::with_capacity(silent.len().min(MEMBERS_LISTED));
        let mut since = i64::MAX;
        for &j in &silent {
            let m = j as usize;
            since = since.min(self.last[m]);
            if self.flags[m] & SILENT == 0 {
                self.flags[m] |= COVERED;
                ep.covered += 1;
                ep.settle = ep.settle.max(self.after[m] as i64 * SECOND);
            }
        }
        let mut all: Vec<&str> = silent.iter().map(|&j| self.meter(j)).collect();
        all.sort_unstable();
        names.extend(all.iter().take(MEMBERS_LISTED).map(|s| (*s).to_owned()));
        let name = self.groups[g as usize].name.clone();
        let total = self.groups[g as usize].members.len();
        let n = silent.len() as u64;
        ep.seq = self.emit(AlertKind::GroupSilent, name.clone(), now, |a| {
            a.message = format!(
                "group {name}: {n} of its {total} meters silent since {} or later",
                format_micros(since)
            );
            a.group = Some(name.clone());
            a.count = Some(n);
            a.members = names;
            a.last_reading_at = Some(since);
        });
        self.groups[g as usize].episode = Some(ep);
        self.open_groups.push(g);
        true
    }

    /// Closes group alerts whose meters came back (enough of them, for long
    /// enough).
    fn settle_groups(&mut self, now: i64) {
        for g in self.open_groups.clone() {
            let Some(ep) = self.groups[g as usize].episode.as_ref() else {
                continue;
            };
            let settled = ep
                .first_resume
                .is_some_and(|t| now >= t.saturating_add(ep.settle));
            if ep.covered == 0 || (settled && (ep.covered as usize) < self.cfg.group_min) {
                self.close_group(g, now);
            }
        }
    }

    /// Raises `group_resumed`; meters still silent are judged on their own.
    fn close_group(&mut self, g: u32, now: i64) {
        let Some(ep) = self.groups[g as usize].episode.take() else {
            return;
        };
        self.open_groups.retain(|&x| x != g);
        let name = self.groups[g as usize].name.clone();
        let members = self.groups[g as usize].members.clone();
        let still = ep.covered;
        let resumed = ep.resumed;
        self.emit(AlertKind::GroupResumed, name.clone(), now, |a| {
            a.message = if still == 0 {
                format!("group {name}: its {resumed} silent meters reported again")
            } else {
                format!(
                    "group {name}: {resumed} meters reported again; {still} still silent, alerted one by one"
                )
            };
            a.group = Some(name.clone());
            a.closes = Some(ep.seq);
            a.count = Some(resumed);
        });
        for j in members {
            let m = j as usize;
            if self.flags[m] & COVERED == 0 {
                continue;
            }
            self.flags[m] &= !COVERED;
            if self.deadline(j) <= now {
                self.silent(j, now);
            } else {
                self.schedule(j);
            }
        }
    }

    fn quiet_ok(&mut self, kind: AlertKind, subject: &str, now: i64) -> bool {
        let quiet = self.cfg.event_quiet_s as i64 * SECOND;
        match self.quiet.get_mut(&(kind, subject.to_owned())) {
            Some(t) if now - *t < quiet => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                if self.quiet.len() > 100_000 {
                    self.quiet.retain(|_, t| now - *t < quiet);
                }
                self.quiet.insert((kind, subject.to_owned()), now);
                true
            }
        }
    }

    /// A cumulative register went down for no known reason between two
    /// readings (times µs, values as sent).
    #[allow(clippy::too_many_arguments)]
    pub fn regression(
        &mut self,
        meter: &str,
        register: &str,
        before: (i64, &str),
        after: (i64, &str),
        now: i64,
    ) {
        if !self.quiet_ok(AlertKind::RegisterRegression, meter, now) {
            return;
        }
        let group = self.find(meter).and_then(|i| self.group_name(i));
        self.emit(AlertKind::RegisterRegression, meter.to_owned(), now, |a| {
            a.message = format!(
                "meter {meter} register {register} went down from {} at {} to {} at {} (no replacement or reset explains it)",
                before.1,
                format_micros(before.0),
                after.1,
                format_micros(after.0)
            );
            a.meter_id = Some(meter.to_owned());
            a.group = group;
            a.last_reading_at = Some(after.0);
        });
    }

    /// A reading conflicts with a stored one.
    pub fn conflict(&mut self, meter: &str, register: &str, ts: i64, value: &str, now: i64) {
        if !self.quiet_ok(AlertKind::ReadingConflict, meter, now) {
            return;
        }
        let group = self.find(meter).and_then(|i| self.group_name(i));
        self.emit(AlertKind::ReadingConflict, meter.to_owned(), now, |a| {
            a.message = format!(
                "meter {meter} register {register} at {} sent {value}, which differs from the stored value (both kept)",
                format_micros(ts)
            );
            a.meter_id = Some(meter.to_owned());
            a.group = group;
            a.last_reading_at = Some(ts);
        });
    }

    /// A message rejected at `now`; `clock_skew`: its reason was a time
    /// too far ahead.
    pub fn rejection(&mut self, topic: &str, reason: &str, clock_skew: bool, now: i64) {
        if clock_skew && self.quiet_ok(AlertKind::ClockSkew, topic, now) {
            self.emit(AlertKind::ClockSkew, topic.to_owned(), now, |a| {
                a.message = format!("messages on {topic} carry times too far ahead: {reason}");
            });
        }
        let sec = now.div_euclid(SECOND);
        match self.rejects.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.rejects.push_back((sec, 1)),
        }
        self.rejects_in_window += 1;
        self.prune_rejects(now);
        if self.burst_seq.is_none() && self.rejects_in_window >= self.cfg.reject_burst {
            let n = self.rejects_in_window;
            let w = self.cfg.reject_window_s;
            let seq = self.emit(AlertKind::RejectBurst, "rejections".into(), now, |a| {
                a.count = Some(n);
                a.message = format!("{n} messages rejected in the last {w} s (latest: {reason})");
            });
            self.burst_seq = Some(seq);
        }
    }

    fn prune_rejects(&mut self, now: i64) {
        let from = now.div_euclid(SECOND) - self.cfg.reject_window_s as i64;
        while let Some(&(s, n)) = self.rejects.front() {
            if s > from {
                break;
            }
            self.rejects.pop_front();
            self.rejects_in_window -= n;
        }
    }

    fn emit(
        &mut self,
        kind: AlertKind,
        subject: String,
        now: i64,
        fill: impl FnOnce(&mut Alert),
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut a = Alert {
            seq,
            kind,
            subject,
            raised_at: now,
            meter_id: None,
            group: None,
            closes: None,
            last_reading_at: None,
            deadline: None,
            gap: None,
            count: None,
            members: Vec::new(),
            message: String::new(),
        };
        fill(&mut a);
        self.pending.push(a);
        seq
    }

    /// Alerts raised since the last call, in `seq` order.
    pub fn take(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Counts for metrics.
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            meters: self.at.len() as u64,
            open_meter_silent: self.silent_seq.len() as u64,
            open_meter_never_seen: self.never_seq.len() as u64,
            open_group_silent: self.open_groups.len() as u64,
            open_reject_burst: self.burst_seq.is_some() as u64,
        }
    }

    /// Bytes held (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.index.allocation_size()
            + self.at.capacity() * 4
            + self.last.capacity() * 8
            + self.after.capacity() * 4
            + self.group.capacity() * 4
            + self.queued.capacity() * 4
            + self.flags.capacity()
            + self.heap.capacity() * 8
            + self
                .groups
                .iter()
                .map(|g| g.members.capacity() * 4)
                .sum::<usize>()
    }
}

/// `45 min`, `3 h 5 min`, `2 d 4 h`.
pub fn human_duration(micros: i64) -> String {
    let s = micros / SECOND;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::continuity::registry::Registry;
    use std::sync::Arc;

    const MIN: i64 = 60 * SECOND;
    const T0: i64 = 28_333_333 * MIN;

    fn engine(group_min: usize) -> AlertEngine {
        let cfg = AlertConfig {
            group_min,
            startup_grace_s: 0,
            ..AlertConfig::default()
        };
        let mut ctx = Context::default();
        ctx.config.intervals_s.insert(Medium::Heat, 900);
        AlertEngine::new(cfg, ctx)
    }

    /// An alert with nothing but its number, kind and subject.
    pub(crate) fn bare_alert(seq: u64, kind: AlertKind, subject: &str) -> Alert {
        Alert {
            seq,
            kind,
            subject: subject.to_owned(),
            raised_at: 0,
            meter_id: None,
            group: None,
            closes: None,
            last_reading_at: None,
            deadline: None,
            gap: None,
            count: None,
            members: vec![],
            message: String::new(),
        }
    }

    fn kinds(e: &mut AlertEngine) -> Vec<(AlertKind, String)> {
        e.take().into_iter().map(|a| (a.kind, a.subject)).collect()
    }

    fn feed(e: &mut AlertEngine, meter: &str, topic: &str, from: i64, to: i64) {
        let mut t = from;
        while t <= to {
            e.reading(
                meter,
                Medium::Heat,
                false,
                t,
                crate::ingest::alerts::topic_group(topic),
                t + SECOND,
            );
            t += 15 * MIN;
        }
    }

    /// Meters M0..Mn of group `site/b1`, every 15 minutes for an hour.
    fn feed_site(e: &mut AlertEngine, n: usize) {
        for m in 0..n {
            let (meter, topic) = (format!("M{m}"), format!("site/b1/M{m}"));
            feed(e, &meter, &topic, T0, T0 + 60 * MIN);
        }
    }

    #[test]
    fn a_silent_meter_is_alerted_once_and_resumes_once() {
        let mut e = engine(20);
        feed(&mut e, "HZ-1", "meters/HZ-1", T0, T0 + 60 * MIN);
        let last = T0 + 60 * MIN;
        e.tick(last + 44 * MIN);
        assert!(kinds(&mut e).is_empty(), "not yet due");
        e.tick(last + 45 * MIN);
        let a = e.take();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AlertKind::MeterSilent);
        assert_eq!(a[0].last_reading_at, Some(last));
        assert_eq!(a[0].deadline, Some(last + 45 * MIN));
        for m in 46..300 {
            e.tick(last + m * MIN);
        }
        assert!(kinds(&mut e).is_empty(), "no repeats while silent");
        // Back: resuming waits for the seal's gap.
        let back = last + 5 * 60 * MIN;
        assert!(e.reading(
            "HZ-1",
            Medium::Heat,
            false,
            back,
            crate::ingest::alerts::topic_group("meters/HZ-1"),
            back
        ));
        let cfg = ContinuityConfig::default();
        let g = crate::continuity::series::tests::rules(&cfg, Medium::Heat, 15);
        let gap = crate::continuity::series::gap_between(
            &crate::continuity::series::tests::p(last / MIN, 10),
            &crate::continuity::series::tests::p(back / MIN, 12),
            &g,
        )
        .unwrap();
        e.finish_resumes([("HZ-1", "energy", &gap)], back);
        let a = e.take();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AlertKind::MeterResumed);
        assert_eq!(a[0].closes, Some(1));
        let gap = a[0].gap.as_ref().unwrap();
        assert_eq!((gap.from, gap.to, gap.missing), (last, back, 19));
        assert_eq!(gap.consumption_exact, Some(true));
        // Reporting on: no more alerts, and due again later.
        feed(
            &mut e,
            "HZ-1",
            "meters/HZ-1",
            back + 15 * MIN,
            back + 60 * MIN,
        );
        e.tick(back + 100 * MIN);
        assert!(kinds(&mut e).is_empty());
        e.tick(back + 105 * MIN);
        assert_eq!(kinds(&mut e), vec![(AlertKind::MeterSilent, "HZ-1".into())]);
    }

    use crate::continuity::ContinuityConfig;

    #[test]
    fn a_late_buffered_reading_does_not_resume_a_silent_meter() {
        let mut e = engine(20);
        feed(&mut e, "HZ-1", "t", T0, T0);
        e.tick(T0 + 46 * MIN);
        assert_eq!(kinds(&mut e).len(), 1);
        // A reading from long ago arrives now: still silent.
        let now = T0 + 10 * 60 * MIN;
        assert!(!e.reading(
            "HZ-1",
            Medium::Heat,
            false,
            T0 + 15 * MIN,
            crate::ingest::alerts::topic_group("t"),
            now
        ));
        e.finish_resumes([], now);
        e.tick(now);
        assert!(kinds(&mut e).is_empty());
    }

    #[test]
    fn fifty_meters_of_a_group_make_one_group_alert() {
        let mut e = engine(20);
        // 50 meters behind one gateway, readings spread over the interval;
        // 10 meters elsewhere keep reporting.
        for m in 0..50 {
            let phase = m * 15 * MIN / 50;
            feed(
                &mut e,
                &format!("HZ-{m:02}"),
                &format!("meters/gw-1/HZ-{m:02}"),
                T0 + phase,
                T0 + 2 * 60 * MIN,
            );
        }
        let dead = T0 + 2 * 60 * MIN + 15 * MIN;
        for t in (0..=12 * 60).step_by(1) {
            let now = dead + t * MIN;
            for m in 0..10 {
                if t % 15 == 0 {
                    e.reading(
                        &format!("W-{m}"),
                        Medium::Heat,
                        false,
                        now,
                        crate::ingest::alerts::topic_group(&format!("meters/gw-2/W-{m}")),
                        now,
                    );
                }
            }
            e.tick(now);
        }
        let a = e.take();
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(a[0].kind, AlertKind::GroupSilent);
        assert_eq!(a[0].subject, "meters/gw-1");
        assert_eq!(a[0].count, Some(50));
        assert_eq!(a[0].members.len(), 50);
        assert_eq!(e.stats().open_group_silent, 1);
        // The gateway comes back: one group_resumed, no meter alerts.
        let back = dead + 12 * 60 * MIN + 20 * MIN;
        for m in 0..50 {
            let now = back + m * SECOND;
            assert!(!e.reading(
                &format!("HZ-{m:02}"),
                Medium::Heat,
                false,
                now,
                crate::ingest::alerts::topic_group(&format!("meters/gw-1/HZ-{m:02}")),
                now
            ));
            e.tick(now);
        }
        let a = e.take();
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(a[0].kind, AlertKind::GroupResumed);
        assert_eq!(a[0].closes, Some(1));
        assert_eq!(a[0].count, Some(50));
        assert_eq!(e.stats().open_group_silent, 0);
    }

    #[test]
    fn a_partly_recovered_group_hands_its_silent_meters_over() {
        let mut e = engine(5);
        feed_site(&mut e, 10);
        let t = T0 + 60 * MIN + 45 * MIN;
        e.tick(t);
        assert_eq!(
            kinds(&mut e),
            vec![(AlertKind::GroupSilent, "site/b1".into())]
        );
        // Seven come back and report on; three stay silent.
        for k in 0..4 {
            let now = t + MIN + k * 15 * MIN;
            for m in 0..7 {
                let (id, topic) = (format!("M{m}"), format!("site/b1/M{m}"));
                e.reading(
                    &id,
                    Medium::Heat,
                    false,
                    now,
                    crate::ingest::alerts::topic_group(&topic),
                    now,
                );
            }
            if k == 2 {
                e.tick(now);
                assert!(kinds(&mut e).is_empty(), "settling");
            }
        }
        e.tick(t + 46 * MIN);
        let k = kinds(&mut e);
        assert_eq!(k[0], (AlertKind::GroupResumed, "site/b1".into()));
        assert_eq!(
            k[1..].to_vec(),
            vec![
                (AlertKind::MeterSilent, "M7".into()),
                (AlertKind::MeterSilent, "M8".into()),
                (AlertKind::MeterSilent, "M9".into())
            ]
        );
    }

    #[test]
    fn one_silent_meter_in_a_busy_group_is_alerted_alone() {
        let mut e = engine(5);
        feed_site(&mut e, 30);
        // M0 dies; the others go on (one missed telegram here and there).
        let mut t = T0 + 75 * MIN;
        while t < T0 + 4 * 60 * MIN {
            for m in 1..30 {
                if (t / MIN + m) % 7 != 0 {
                    e.reading(
                        &format!("M{m}"),
                        Medium::Heat,
                        false,
                        t,
                        crate::ingest::alerts::topic_group(&format!("site/b1/M{m}")),
                        t,
                    );
                }
            }
            e.tick(t);
            t += 15 * MIN;
        }
        assert_eq!(kinds(&mut e), vec![(AlertKind::MeterSilent, "M0".into())]);
    }

    #[test]
    fn never_seen_registry_meters_and_their_first_reading() {
        let (later, gone) = (format_micros(T0 + 600 * MIN), format_micros(T0 + 120 * MIN));
        let reg = Registry::parse(&format!(
            "meter_id,medium,expected_interval_s,group,installed_at,removed_at\nR-1,water,3600,,,\nR-2,water,3600,,,2020-01-01\nR-3,water,3600,,{later},\nR-4,water,3600,,,{gone}\n",
        ))
        .unwrap();
        let ctx = Context {
            registry: Arc::new(reg),
            ..Context::default()
        };
        let mut e = AlertEngine::new(AlertConfig::default(), ctx);
        e.track_registry(T0);
        // R-2 was removed in 2020: neither never seen nor silent.
        e.tick(T0 + 3 * 60 * MIN - SECOND);
        assert!(kinds(&mut e).is_empty());
        e.tick(T0 + 3 * 60 * MIN);
        assert_eq!(
            kinds(&mut e),
            vec![(AlertKind::MeterNeverSeen, "R-1".into())]
        );
        // R-4 reported, then was removed before it became due: not silent.
        e.reading("R-4", Medium::Water, false, T0, None, T0);
        e.tick(T0 + 4 * 60 * MIN);
        assert!(kinds(&mut e).is_empty());
        // R-3, installed at T0 + 10 h, is judged from then.
        e.tick(T0 + 13 * 60 * MIN - SECOND);
        assert!(kinds(&mut e).is_empty());
        e.tick(T0 + 13 * 60 * MIN);
        assert_eq!(
            kinds(&mut e),
            vec![(AlertKind::MeterNeverSeen, "R-3".into())]
        );
        e.tick(T0 + 30 * 60 * MIN);
        assert!(kinds(&mut e).is_empty());
        let now = T0 + 31 * 60 * MIN;
        e.reading(
            "R-1",
            Medium::Water,
            false,
            now,
            crate::ingest::alerts::topic_group("w/R-1"),
            now,
        );
        let a = e.take();
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].kind, a[0].closes), (AlertKind::MeterResumed, Some(1)));
    }

    #[test]
    fn restore_keeps_silence_and_does_not_repeat_it() {
        let mut e = engine(20);
        feed(&mut e, "HZ-1", "t/x/HZ-1", T0, T0 + 60 * MIN);
        feed(&mut e, "HZ-2", "t/x/HZ-2", T0, T0 + 60 * MIN);
        e.tick(T0 + 2 * 60 * MIN);
        let told = e.take();
        assert_eq!(told.len(), 2);
        // A new process: sealed readings, then what was told.
        let mut e2 = engine(20);
        e2.observe_sealed("HZ-1", Medium::Heat, false, T0 + 60 * MIN);
        e2.observe_sealed("HZ-2", Medium::Heat, false, T0 + 60 * MIN);
        e2.restore(&told, T0 + 3 * 60 * MIN);
        e2.tick(T0 + 3 * 60 * MIN);
        assert!(kinds(&mut e2).is_empty(), "no duplicate meter_silent");
        let now = T0 + 4 * 60 * MIN;
        assert!(e2.reading(
            "HZ-1",
            Medium::Heat,
            false,
            now,
            crate::ingest::alerts::topic_group("t/x/HZ-1"),
            now
        ));
        e2.finish_resumes([], now);
        let a = e2.take();
        assert_eq!(
            (a[0].kind, a[0].closes, a[0].seq),
            (AlertKind::MeterResumed, Some(1), 3)
        );
    }

    #[test]
    fn events_are_quiet_for_a_while_and_bursts_open_and_close() {
        let mut e = engine(20);
        e.conflict("HZ-1", "energy", T0, "5", T0);
        e.conflict("HZ-1", "energy", T0 + MIN, "6", T0 + MIN);
        e.regression("HZ-1", "energy", (T0, "5"), (T0 + MIN, "4"), T0 + MIN);
        assert_eq!(
            kinds(&mut e),
            vec![
                (AlertKind::ReadingConflict, "HZ-1".into()),
                (AlertKind::RegisterRegression, "HZ-1".into())
            ]
        );
        e.conflict("HZ-1", "energy", T0 + 61 * MIN, "7", T0 + 61 * MIN);
        assert_eq!(kinds(&mut e).len(), 1, "after the quiet time, again");
        for n in 0..150 {
            e.rejection(
                "bad/topic",
                "timestamp is more than 86400 s ahead",
                n == 0,
                T0 + n * SECOND / 10,
            );
        }
        assert_eq!(
            kinds(&mut e),
            vec![
                (AlertKind::ClockSkew, "bad/topic".into()),
                (AlertKind::RejectBurst, "rejections".into())
            ]
        );
        e.tick(T0 + 30 * SECOND);
        assert!(kinds(&mut e).is_empty(), "still within the window");
        e.tick(T0 + 80 * SECOND);
        assert_eq!(
            kinds(&mut e),
            vec![(AlertKind::RejectBurstEnded, "rejections".into())]
        );
    }

    #[test]
    fn nothing_due_is_one_peek() {
        let mut e = engine(20);
        for m in 0..1000 {
            e.reading(
                &format!("M{m}"),
                Medium::Heat,
                false,
                T0,
                crate::ingest::alerts::topic_group("x"),
                T0,
            );
        }
        let before = e.heap.len();
        e.tick(T0 + MIN);
        assert_eq!(e.heap.len(), before);
        assert!(kinds(&mut e).is_empty());
    }
}
