//! Set dates the meter reported: each new one re-judges the gaps across
//! its day (kept ones in memory, dropped ones from the sealed files).

use super::{days_of, rules_for, GapChange, KeptGap, LiveEngine};
use crate::continuity::sealed::{LookupError, SealedSeries};
use crate::continuity::series::gap_between;
use crate::continuity::DAY;

impl LiveEngine {
    /// A set date the meter reported (its UTC day number). New to the
    /// meter, it explains HCA resets from now on, and re-judges the gaps
    /// across it (those no longer kept from the sealed files): (register,
    /// change) for each that changed.
    pub fn set_day(
        &mut self,
        meter: &str,
        day: i64,
        sealed: &mut dyn SealedSeries,
    ) -> Result<Vec<(String, GapChange)>, LookupError> {
        match self.set_days.get_mut(meter) {
            Some(days) => match days.binary_search(&day) {
                Ok(_) => return Ok(Vec::new()),
                Err(k) => days.insert(k, day),
            },
            None => {
                self.set_days.insert(meter.into(), vec![day]);
            }
        }
        let mut out = Vec::new();
        let repl = self.replacements(meter);
        for reg in 0..self.registers.values.len() {
            let Some(i) = self.find_id(meter, reg as u16) else {
                continue;
            };
            let setup = self.setup_of(i, self.slots[i as usize].profile);
            if days_of(&self.set_days, setup.medium, meter).is_empty() {
                continue;
            }
            let pairs = self.evicted_pairs_across(i, day, sealed)?;
            let days = days_of(&self.set_days, setup.medium, meter);
            let rules = rules_for(&self.cfg, setup, days, &repl);
            let without: Vec<i64> = days.iter().copied().filter(|&d| d != day).collect();
            let before = rules_for(&self.cfg, setup, &without, &repl);
            let name = &self.registers.values[reg];
            let late_after = self.cfg.late_after;
            // The kept gaps across the day, judged before and with it (a
            // kept gap is its ends: judged with the new rules from now on).
            let kept = self.gaps.get(&i).map_or(&[][..], Vec::as_slice);
            for g in kept {
                if !(g.from() < (day + 1) * DAY && g.to() >= day * DAY) {
                    continue;
                }
                let (Some(old), Some(new)) =
                    (g.judged(&before, late_after), g.judged(&rules, late_after))
                else {
                    continue;
                };
                if new != old {
                    out.push((
                        name.clone(),
                        GapChange::Split {
                            old,
                            parts: vec![new],
                        },
                    ));
                }
            }
            let mut found = Vec::new();
            for (a, b) in pairs {
                let (Some(old), Some(new)) =
                    (gap_between(&a, &b, &before), gap_between(&a, &b, &rules))
                else {
                    continue;
                };
                if new != old {
                    self.oldest_to = self.oldest_to.min(new.to);
                    found.push(KeptGap::of(&new, late_after));
                    out.push((
                        name.clone(),
                        GapChange::Split {
                            old,
                            parts: vec![new],
                        },
                    ));
                }
            }
            let gaps = self.gaps.entry(i).or_default();
            for k in found {
                let at = gaps.partition_point(|g| g.to() <= k.from());
                gaps.reserve_exact(1);
                gaps.insert(at, k);
            }
            if gaps.is_empty() {
                self.gaps.remove(&i);
            }
        }
        Ok(out)
    }
}
