//! Deadlines: the per-meter heap, scheduling, and the tick that judges
//! what came due.

use std::cmp::Reverse;

use super::{human_duration, pack, AlertEngine, COVERED, FIXED, NEVER, NONE, SEEN, SILENT};
use crate::continuity::SECOND;
use crate::ingest::alerts::AlertKind;
use crate::time::format_micros;

impl AlertEngine {
    /// When meter `i` becomes due (µs).
    pub(super) fn deadline(&self, i: u32) -> i64 {
        self.last[i as usize].saturating_add(self.after[i as usize] as i64 * SECOND)
    }

    /// Its heap key: the deadline's whole second, rounded down (an entry is
    /// never later than the deadline; `tick` checks the exact time).
    pub(super) fn deadline_s(&self, i: u32) -> u32 {
        self.deadline(i)
            .div_euclid(SECOND)
            .clamp(1, u32::MAX as i64) as u32
    }

    /// Makes sure the heap holds an entry for `i` no later than its deadline.
    pub(super) fn schedule(&mut self, i: u32) {
        let d = self.deadline_s(i);
        let q = self.queued[i as usize];
        if q == 0 || q > d {
            self.heap.push(Reverse(pack(d, i)));
            self.queued[i as usize] = d;
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
    pub(super) fn due(&mut self, i: u32, now: i64) {
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

    pub(super) fn silent(&mut self, i: u32, now: i64) {
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
}
