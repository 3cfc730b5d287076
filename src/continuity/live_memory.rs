//! The gap memory: gaps are kept while they are recent, and a late reading
//! older than that asks the sealed files.
//!
//! A gap that ended more than the gap memory before the newest receive
//! time is dropped at the next seal ([`LiveEngine::evict`]): the engine
//! then holds the gaps of the last days, not of all history, so its size
//! follows the fleet. The rule that keeps it exact: every gap that ends at
//! or after the horizon is kept, and so is every gap found since the last
//! seal. So a reading at or after the horizon that falls in no kept gap is
//! in no gap. A reading before the horizon, inside its series' span and in
//! no kept gap, may fall in a dropped one: its neighbours are then the
//! nearest of the sealed readings ([`SealedSeries::neighbours`]), the
//! readings observed since the last seal (not sealed yet), and the
//! series' first and last. If the neighbours are farther apart than the
//! rules allow, that was a gap: it is split as a kept one would be. A set
//! date before the horizon re-judges the dropped gaps across its day the
//! same way. Series still inferring their interval keep all their gaps
//! (re-judged at [`LiveEngine::settle`]).
//!
//! The horizon moves in whole hours, so that it is a function of the
//! newest receive time alone: a restart, whatever its seals, ends in the
//! same state.

use super::LiveEngine;
use crate::continuity::sealed::{LookupError, SealedSeries};
use crate::continuity::series::Point;
use crate::continuity::{DAY, SECOND};

/// The horizon's step.
const HOUR: i64 = 3_600 * SECOND;

impl LiveEngine {
    /// Keeps gaps for `micros` after they end (the default keeps them for
    /// ever and never asks the sealed files).
    pub fn with_gap_memory(mut self, micros: i64) -> LiveEngine {
        self.set_gap_memory(micros);
        self
    }

    /// See [`with_gap_memory`](Self::with_gap_memory) (after a snapshot is
    /// loaded: the memory is configuration, not state).
    pub fn set_gap_memory(&mut self, micros: i64) {
        self.gap_memory = micros.max(0);
    }

    /// Lookups see only receipts before `bound` (None: every sealed one).
    /// Set while the commits after a snapshot are loaded, whose readings
    /// the engine observes as unsealed ones.
    pub fn set_lookup_bound(&mut self, bound: Option<u64>) {
        self.lookup_bound = bound;
    }

    /// Gaps kept in memory.
    pub fn kept_gaps(&self) -> usize {
        self.gaps.values().map(Vec::len).sum()
    }

    /// Lookups in the sealed files so far.
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    /// The time before which gaps are not kept, µs (`i64::MIN`: none
    /// dropped yet).
    pub fn horizon(&self) -> i64 {
        self.horizon
    }

    /// Call after each seal (the readings observed are sealed now): moves
    /// the horizon with the newest receive time and drops the gaps that
    /// end before it.
    pub fn evict(&mut self) {
        self.unsealed.clear();
        if self.gap_memory == i64::MAX || self.newest_received == i64::MIN {
            return;
        }
        let target = self
            .newest_received
            .saturating_sub(self.gap_memory)
            .div_euclid(HOUR)
            * HOUR;
        self.horizon = self.horizon.max(target);
        if self.oldest_to >= self.horizon {
            return;
        }
        let (horizon, warmup) = (self.horizon, &self.warmup);
        let mut oldest = i64::MAX;
        self.gaps.retain(|i, gaps| {
            if warmup.contains_key(i) {
                return true;
            }
            // Gaps do not overlap: sorted by start, they are by end too.
            let k = gaps.partition_point(|g| g.to() < horizon);
            if k > 0 {
                gaps.drain(..k);
                gaps.shrink_to_fit();
            }
            if let Some(g) = gaps.first() {
                oldest = oldest.min(g.to());
            }
            !gaps.is_empty()
        });
        self.oldest_to = oldest;
        if self.gaps.capacity() > 4 * self.gaps.len().max(1024) {
            self.gaps.shrink_to_fit();
        }
    }

    /// Gives back what the tables hold beyond their entries (after a
    /// start: they grew by doubling while the state was loaded).
    pub fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.index.shrink_to_fit(|&j| {
            let s = self.slots[j as usize];
            super::key_hash(super::meter_at(&self.arena, s.meter), s.register)
        });
        self.gaps.shrink_to_fit();
        for g in self.gaps.values_mut() {
            g.shrink_to_fit();
        }
        self.warmup.shrink_to_fit();
        self.wide.shrink_to_fit();
        self.set_days.shrink_to_fit();
    }

    /// A reading observed before the horizon, until it is sealed. While
    /// the files after a snapshot are loaded, every reading: they are
    /// read file by file, not in time order across a commit's files.
    pub(super) fn remember_unsealed(&mut self, i: u32, p: Point) {
        if p.ts < self.horizon || self.lookup_bound.is_some() {
            self.unsealed.entry(i).or_default().push(p);
        }
    }

    /// A point as the series' ends keep it (only lateness of its receive
    /// time, a counter that fits 32 bits), so that a gap judged from the
    /// sealed files is the gap judged from memory.
    fn as_kept(&self, p: Point) -> Point {
        let late = p.received_at - p.ts > self.cfg.late_after;
        Point {
            seq: p.seq.filter(|&s| s < u32::MAX as u64),
            received_at: if late {
                p.ts + self.cfg.late_after + 1
            } else {
                p.ts
            },
            ..p
        }
    }

    /// For a reading before the horizon, inside series `i`'s span and in
    /// no kept gap: its neighbours, if it is not already there (they may
    /// have had a gap between them that is no longer kept).
    pub(super) fn evicted_gap_around(
        &mut self,
        i: u32,
        p: Point,
        sealed: &mut dyn SealedSeries,
    ) -> Result<Option<(Point, Point)>, LookupError> {
        if p.ts >= self.horizon || self.warmup.contains_key(&i) {
            return Ok(None);
        }
        let slot = self.slots[i as usize];
        let (first, last) = (
            self.unpack(i, slot.first, true),
            self.unpack(i, slot.last, false),
        );
        if p.ts <= first.ts || p.ts >= last.ts {
            return Ok(None);
        }
        if let Some(gaps) = self.gaps.get(&i) {
            let k = gaps.partition_point(|g| g.to() <= p.ts);
            if gaps
                .get(k)
                .is_some_and(|g| g.from() < p.ts && p.ts < g.to())
            {
                return Ok(None);
            }
        }
        self.lookups += 1;
        let (meter, register) = (
            self.meter_of(&slot).to_owned(),
            self.registers.values[slot.register as usize].clone(),
        );
        let bound = self.lookup_bound;
        let (b, a) = sealed.neighbours(&meter, &register, p.ts, (first.ts, last.ts), bound)?;
        let (mut before, mut after) = (first, last);
        let unsealed = self.unsealed.get(&i).map_or(&[][..], Vec::as_slice);
        for q in b.iter().chain(a.iter()).chain(unsealed) {
            if q.ts <= p.ts && q.ts > before.ts {
                before = *q;
            }
            if q.ts > p.ts && q.ts < after.ts {
                after = *q;
            }
        }
        if before.ts == p.ts {
            return Ok(None);
        }
        Ok(Some((self.as_kept(before), self.as_kept(after))))
    }

    /// For a new set date before the horizon: the consecutive readings of
    /// series `i` around or inside its day whose gap is not kept (what the
    /// set date may re-judge).
    pub(super) fn evicted_pairs_across(
        &mut self,
        i: u32,
        day: i64,
        sealed: &mut dyn SealedSeries,
    ) -> Result<Vec<(Point, Point)>, LookupError> {
        let (lo, hi) = (day * DAY, day * DAY + DAY - 1);
        if lo >= self.horizon || self.warmup.contains_key(&i) {
            return Ok(Vec::new());
        }
        let slot = self.slots[i as usize];
        let (first, last) = (
            self.unpack(i, slot.first, true),
            self.unpack(i, slot.last, false),
        );
        if last.ts < lo || first.ts > hi {
            return Ok(Vec::new());
        }
        self.lookups += 1;
        let (meter, register) = (
            self.meter_of(&slot).to_owned(),
            self.registers.values[slot.register as usize].clone(),
        );
        let (span, bound) = ((first.ts, last.ts), self.lookup_bound);
        let (head, _) = sealed.neighbours(&meter, &register, lo - 1, span, bound)?;
        let inside = sealed.points_in(&meter, &register, lo, hi, bound)?;
        let (_, tail) = sealed.neighbours(&meter, &register, hi, span, bound)?;
        let unsealed = self.unsealed.get(&i).map_or(&[][..], Vec::as_slice);
        let mut points: Vec<Point> = [first, last]
            .into_iter()
            .chain(head)
            .chain(inside)
            .chain(tail)
            .chain(unsealed.iter().copied())
            .collect();
        points.sort_by_key(|q| q.ts);
        points.dedup_by_key(|q| q.ts);
        // From the last reading before the day to the first after it.
        let from = points.partition_point(|q| q.ts < lo).saturating_sub(1);
        let to = (points.partition_point(|q| q.ts <= hi) + 1).min(points.len());
        let kept = self.gaps.get(&i).map_or(&[][..], Vec::as_slice);
        Ok(points[from..to]
            .windows(2)
            .filter(|w| w[0].ts < hi + 1 && w[1].ts >= lo)
            .filter(|w| {
                !kept
                    .iter()
                    .any(|g| (g.from(), g.to()) == (w[0].ts, w[1].ts))
            })
            .map(|w| (self.as_kept(w[0]), self.as_kept(w[1])))
            .collect())
    }
}
