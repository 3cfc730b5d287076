//! Restore: the state a start rebuilds from the registry, a snapshot
//! (seeds), learned groups and the alerts already told.

use std::collections::HashMap;

use super::{AlertEngine, Episode, COVERED, FIXED, NEVER, NONE, SEEN, SILENT};
use crate::continuity::SECOND;
use crate::ingest::alerts::{Alert, AlertKind};
use crate::reading::Medium;

impl AlertEngine {
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
}
