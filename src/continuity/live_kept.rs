//! Kept gaps, packed: a recorded gap is held as its two ends only (58
//! bytes instead of a whole [`Gap`]), and judged again from them when it
//! is asked for.
//!
//! That is exact because a gap is a function of its ends and the rules in
//! force ([`gap_between`]), and the rules of a series change only where
//! the engine re-judges its gaps anyway: a new set date
//! (`live_set_day.rs`) and the interval inferred at [`LiveEngine::settle`].
//! The ends keep what the series' ends keep ([`LiveEngine::as_kept`]): of
//! the receive time only whether it was late, and a counter that fits 32
//! bits; so a kept gap judged again is the gap a lookup in the sealed
//! files would judge.

use super::{days_of, rules_for, LiveEngine, NO_SEQ};
use crate::continuity::series::{gap_between, Gap, Point, SeriesRules};

/// One end of a kept gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
struct KeptEnd {
    ts: i64,
    value: i128,
    /// `NO_SEQ`: none.
    seq: u32,
    /// Decimals (low 7 bits); the top bit: received late.
    decimals: u8,
}

const LATE_BIT: u8 = 0x80;

/// A recorded gap, as kept: the reading before it and the one after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub(super) struct KeptGap {
    before: KeptEnd,
    after: KeptEnd,
}

impl KeptEnd {
    fn of(p: &Point, late_after: i64) -> KeptEnd {
        let late = p.received_at - p.ts > late_after;
        KeptEnd {
            ts: p.ts,
            value: p.value,
            seq: p.seq.and_then(|s| u32::try_from(s).ok()).unwrap_or(NO_SEQ),
            decimals: (p.decimals & !LATE_BIT) | if late { LATE_BIT } else { 0 },
        }
    }

    fn point(self, late_after: i64) -> Point {
        let (ts, late) = (self.ts, self.decimals & LATE_BIT != 0);
        Point {
            ts,
            value: self.value,
            decimals: self.decimals & !LATE_BIT,
            seq: (self.seq != NO_SEQ).then_some(self.seq as u64),
            received_at: if late { ts + late_after + 1 } else { ts },
        }
    }
}

impl KeptGap {
    /// A closed gap as kept (an open one is not recorded).
    pub(super) fn of(g: &Gap, late_after: i64) -> KeptGap {
        KeptGap {
            before: KeptEnd::of(&g.before, late_after),
            after: KeptEnd::of(g.after.as_ref().unwrap_or(&g.before), late_after),
        }
    }

    /// The time of the reading before the gap.
    pub(super) fn from(&self) -> i64 {
        self.before.ts
    }

    /// The time of the reading that ends it.
    pub(super) fn to(&self) -> i64 {
        self.after.ts
    }

    /// The gap, judged with `rules` (the rules in force for its series).
    pub(super) fn judged(&self, rules: &SeriesRules, late_after: i64) -> Option<Gap> {
        let (b, a) = (self.before, self.after);
        gap_between(&b.point(late_after), &a.point(late_after), rules)
    }

    /// Appends its bytes (snapshots).
    pub(super) fn encode(&self, e: &mut crate::codec::Enc) {
        for end in [self.before, self.after] {
            e.i64(end.ts);
            e.i128(end.value);
            e.u32(end.seq);
            e.u8(end.decimals);
        }
    }

    /// The bytes [`encode`](Self::encode) wrote.
    pub(super) fn decode(d: &mut crate::codec::Dec) -> Result<KeptGap, crate::codec::CodecError> {
        let mut end = || -> Result<KeptEnd, crate::codec::CodecError> {
            Ok(KeptEnd {
                ts: d.i64()?,
                value: d.i128()?,
                seq: d.u32()?,
                decimals: d.u8()?,
            })
        };
        let before = end()?;
        let after = end()?;
        Ok(KeptGap { before, after })
    }

    /// Bytes of one in a snapshot.
    pub(super) const ENCODED: usize = 2 * (8 + 16 + 4 + 1);
}

impl LiveEngine {
    /// The kept gaps of series `i`, judged with the rules in force.
    pub(super) fn judged_gaps(&self, i: u32) -> Vec<Gap> {
        let Some(kept) = self.gaps.get(&i) else {
            return Vec::new();
        };
        let slot = self.slots[i as usize];
        let setup = self.setup_of(i, slot.profile);
        let meter = self.meter_of(&slot);
        let repl = self.replacements(meter);
        let rules = rules_for(
            &self.cfg,
            setup,
            days_of(&self.set_days, setup.medium, meter),
            &repl,
        );
        self.judge_all(kept, &rules)
    }

    /// `kept`, judged with `rules`.
    pub(super) fn judge_all(&self, kept: &[KeptGap], rules: &SeriesRules) -> Vec<Gap> {
        let late_after = self.cfg.late_after;
        kept.iter()
            .filter_map(|k| {
                let g = k.judged(rules, late_after);
                // A gap is one by the time between its ends and the
                // interval, which only `settle` changes (and re-judges).
                debug_assert!(g.is_some(), "a kept gap no longer one");
                g
            })
            .collect()
    }

    /// `g` as kept.
    pub(super) fn kept(&self, g: &Gap) -> KeptGap {
        KeptGap::of(g, self.cfg.late_after)
    }
}
