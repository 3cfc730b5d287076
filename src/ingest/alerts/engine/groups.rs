//! Groups: joining one, group storms and their episodes.

use super::{AlertEngine, Episode, Group, COVERED, NONE, SEEN, SILENT};
use crate::continuity::SECOND;
use crate::ingest::alerts::{AlertKind, MEMBERS_LISTED};
use crate::time::format_micros;

impl AlertEngine {
    pub(super) fn join(&mut self, i: u32, name: &str) {
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

    /// A covered meter of group `g` came back.
    pub(super) fn uncover(&mut self, g: u32, now: i64) {
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

    pub(super) fn group_name(&self, i: u32) -> Option<String> {
        let g = self.group[i as usize];
        (g != NONE).then(|| self.groups[g as usize].name.clone())
    }

    /// Whether meter `i` is part of a storm in group `g`: if so, opens the
    /// group alert.
    pub(super) fn group_storm(&mut self, i: u32, g: u32, now: i64) -> bool {
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
    pub(super) fn settle_groups(&mut self, now: i64) {
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
    pub(super) fn close_group(&mut self, g: u32, now: i64) {
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
}
