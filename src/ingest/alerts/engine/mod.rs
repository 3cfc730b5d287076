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

mod deadlines;
mod events;
mod groups;
mod restore;
#[cfg(test)]
pub(crate) mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::{Alert, AlertConfig, AlertGap, AlertKind};
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
    /// Gives back what the tables hold beyond their entries (after a
    /// start: they grew by doubling while the state was loaded).
    pub fn shrink_to_fit(&mut self) {
        let (arena, ats) = (&self.arena, &self.at);
        self.index.shrink_to_fit(|&j| {
            let a = ats[j as usize] as usize;
            let len = arena[a] as usize;
            xxh3_64(&arena[a + 1..a + 1 + len])
        });
        self.arena.shrink_to_fit();
        self.at.shrink_to_fit();
        self.last.shrink_to_fit();
        self.after.shrink_to_fit();
        self.group.shrink_to_fit();
        self.queued.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.heap.shrink_to_fit();
    }

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
