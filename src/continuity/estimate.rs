//! Estimation of missing interval values: linear interpolation of the
//! register between the two real reads around a gap. The estimates are
//! register values at the missing slots, so consecutive differences add up
//! exactly to the real total across the gap, whatever the rounding. They
//! are always separate rows, flagged `estimated` with their method, and
//! never made for gaps longer than the configured maximum, for open gaps,
//! or across a register that did not move continuously.

use super::div_round;
use super::series::{Gap, Point};
use crate::reading::VALUE_SCALE;

pub(crate) const METHOD_LINEAR: &str = "linear_interpolation";

/// One estimated register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    pub ts: i64,
    /// × 10^9, rounded to `decimals` places.
    pub value: i128,
    pub decimals: u8,
}

/// Why a gap gets no estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoEstimate {
    Open,
    TooLong,
    NotContinuous,
}

/// Interpolates the missing slots of a closed gap between reads `a` and `b`.
pub(crate) fn interpolate(
    gap: &Gap,
    a: &Point,
    b: &Point,
    max_gap: i64,
) -> Result<Vec<Estimate>, NoEstimate> {
    if gap.open {
        return Err(NoEstimate::Open);
    }
    if gap.duration() > max_gap {
        return Err(NoEstimate::TooLong);
    }
    if b.value < a.value {
        return Err(NoEstimate::NotContinuous);
    }
    let decimals = a.decimals.max(b.decimals).min(VALUE_SCALE as u8);
    let quantum = 10i128.pow(VALUE_SCALE - decimals as u32);
    let parts = gap.missing as i128 + 1;
    Ok((1..=gap.missing)
        .map(|k| {
            let exact_num = a.value * parts + (b.value - a.value) * k as i128;
            // Round the interpolated value to the meter's own precision.
            let value = div_round(div_round(exact_num, parts), quantum) * quantum;
            Estimate {
                ts: gap.slot(k),
                value,
                decimals,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::series::gap_between;
    use crate::continuity::series::tests::{p, rules, MIN, UNIT};
    use crate::continuity::ContinuityConfig;
    use crate::reading::Medium;

    #[test]
    fn interpolates_evenly_and_keeps_the_total() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let (a, b) = (p(0, 100), p(60, 110));
        let g = gap_between(&a, &b, &r).unwrap();
        let e = interpolate(&g, &a, &b, i64::MAX).unwrap();
        let vals: Vec<(i64, i128)> = e
            .iter()
            .map(|e| (e.ts / MIN, e.value / 100_000_000))
            .collect();
        // 10 units over 4 intervals: 102.5, 105, 107.5 rounded to the meter's 0 decimals.
        assert_eq!(vals, vec![(15, 1030), (30, 1050), (45, 1080)]);
        let mut prev = a.value;
        let total: i128 = e
            .iter()
            .map(|e| e.value)
            .chain([b.value])
            .map(|v| {
                let d = v - prev;
                prev = v;
                d
            })
            .sum();
        assert_eq!(total, 10 * UNIT, "the increments add up to the real total");
        // Three decimals sent: estimates keep three.
        let (a3, b3) = (
            Point {
                decimals: 3,
                value: 326_069_000_000,
                ..a
            },
            Point {
                decimals: 3,
                value: 326_070_000_000,
                ..b
            },
        );
        let e = interpolate(&g, &a3, &b3, i64::MAX).unwrap();
        assert_eq!(e[1].value, 326_070_000_000); // 326.0695 → 326.070
        assert!(e.iter().all(|e| e.decimals == 3));
    }

    #[test]
    fn refuses_open_long_or_broken_gaps() {
        let cfg = ContinuityConfig::default();
        let r = rules(&cfg, Medium::Heat, 15);
        let (a, b) = (p(0, 100), p(60, 110));
        let g = gap_between(&a, &b, &r).unwrap();
        assert_eq!(interpolate(&g, &a, &b, 59 * MIN), Err(NoEstimate::TooLong));
        let down = p(60, 90);
        let g2 = gap_between(&a, &down, &r).unwrap();
        assert_eq!(
            interpolate(&g2, &a, &down, i64::MAX),
            Err(NoEstimate::NotContinuous)
        );
        let open = crate::continuity::series::open_gap(&a, 60 * MIN, &r).unwrap();
        assert_eq!(interpolate(&open, &a, &b, i64::MAX), Err(NoEstimate::Open));
    }
}
