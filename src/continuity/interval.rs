//! The one rule for a series' unknown interval, shared by the live engine
//! and the batch pass: the median spacing of its first [`INFER_READINGS`]
//! readings in receipt order ([`FirstReceived`]), the built-in interval
//! until it has them. Receipt order, not time order, because the live pass
//! must decide once the readings are there, and late readings (earlier in
//! time) keep coming; both `receipt_seq` and `reading_index` are stored on
//! every `readings` row, so the batch pass picks the same readings.

use super::SECOND;
use super::{builtin_interval_s, Interval, IntervalSource, INFER_READINGS, MIN_INFER_INTERVALS};
use crate::reading::Medium;

/// The median time between consecutive readings (a robust statistic: gaps
/// and bursts do not move it while they are under half the intervals),
/// rounded to the second, over reading times in time order (what
/// [`super::series::infer_interval`] takes from points).
pub(crate) fn infer_from_times(times: impl IntoIterator<Item = i64>) -> Option<i64> {
    thread_local! {
        // The differences of one series at a time (a report infers 100,000s).
        static DIFFS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    DIFFS.with_borrow_mut(|diffs| {
        diffs.clear();
        let mut prev: Option<i64> = None;
        for t in times {
            if let Some(p) = prev {
                if t > p {
                    diffs.push(t - p);
                }
            }
            prev = Some(t);
        }
        let n = diffs.len();
        if n < MIN_INFER_INTERVALS {
            return None;
        }
        // The median, as statrs computes it (the mean of the two middle
        // values when n is even), without sorting. Mostly one difference is
        // the majority (a regular meter with a few gaps): a run of more
        // than n/2 equal values covers both middle positions, so it is the
        // median (Boyer-Moore vote, then a count). Else a selection.
        let (mut candidate, mut votes) = (diffs[0], 0usize);
        for &d in diffs.iter() {
            if votes == 0 {
                candidate = d;
            }
            votes = if d == candidate { votes + 1 } else { votes - 1 };
        }
        let count = diffs.iter().filter(|&&d| d == candidate).count();
        let median = if count > n / 2 {
            candidate as f64
        } else {
            let (lower, &mut upper, _) = diffs.select_nth_unstable(n / 2);
            if n % 2 == 1 {
                upper as f64
            } else {
                let below = lower.iter().copied().max().unwrap_or(upper);
                (below as f64 + upper as f64) / 2.0
            }
        };
        let secs = (median / SECOND as f64).round() as i64;
        (secs > 0).then_some(secs * SECOND)
    })
}

/// Where a stored reading came from, in receipt order: its receipt's
/// `receipt_seq` and its `reading_index` in that message. Stored on every
/// `readings` row, so the batch pass knows the order the live pass saw.
pub(crate) type ReceiptKey = (u64, u32);

/// The [`INFER_READINGS`] readings of a series received first (lowest
/// [`ReceiptKey`]), whatever the order they are offered in: what an
/// unknown interval is inferred from, by both passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FirstReceived {
    /// (key, reading time), unordered; at most [`INFER_READINGS`].
    entries: Vec<(ReceiptKey, i64)>,
    /// The largest key held (meaningful once full).
    max: ReceiptKey,
}

impl FirstReceived {
    /// What it holds (for a snapshot).
    pub fn parts(&self) -> (&[(ReceiptKey, i64)], ReceiptKey) {
        (&self.entries, self.max)
    }

    /// Back from [`parts`](Self::parts).
    pub(crate) fn from_parts(entries: Vec<(ReceiptKey, i64)>, max: ReceiptKey) -> FirstReceived {
        FirstReceived { entries, max }
    }

    /// Takes a reading; kept if it is among the first received so far.
    pub(crate) fn offer(&mut self, key: ReceiptKey, ts: i64) {
        if self.entries.len() < INFER_READINGS {
            self.entries.push((key, ts));
            self.max = self.max.max(key);
            return;
        }
        // The common case (readings offered mostly in receipt order): one
        // comparison.
        if key >= self.max {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == self.max) {
            *e = (key, ts);
        }
        self.max = self.entries.iter().map(|e| e.0).max().unwrap_or_default();
    }

    /// The key of the last of the first readings (the one that completed
    /// them), once there are [`INFER_READINGS`].
    pub(crate) fn completed_by(&self) -> Option<(ReceiptKey, i64)> {
        (self.entries.len() == INFER_READINGS)
            .then(|| self.entries.iter().copied().max())
            .flatten()
    }

    /// The interval these readings give: inferred when there are
    /// [`INFER_READINGS`] of them (and their median spacing is at least a
    /// second), else the built-in one.
    pub fn interval(&self, medium: Medium) -> Interval {
        let builtin = Interval {
            micros: builtin_interval_s(medium) as i64 * SECOND,
            source: IntervalSource::Default,
        };
        if self.entries.len() < INFER_READINGS {
            return builtin;
        }
        let mut times = [0i64; INFER_READINGS];
        for (t, e) in times.iter_mut().zip(&self.entries) {
            *t = e.1;
        }
        times.sort_unstable();
        match infer_from_times(times) {
            Some(micros) => Interval {
                micros,
                source: IntervalSource::Inferred,
            },
            None => builtin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::series::{infer_interval, Point};

    /// The median without sorting is statrs's median, for odd and even
    /// counts, repeated values, and times that go backwards.
    #[test]
    fn inferred_interval_is_statrs_median() {
        use statrs::statistics::{Data, OrderStatistics};
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for case in 0..2_000 {
            let n = 1 + next(40) as usize;
            let mut ts = 0i64;
            let points: Vec<Point> = (0..n)
                .map(|_| {
                    // Odd cases: mostly one interval (a majority, or
                    // nearly one); even cases: a mix.
                    let pick = if case % 2 == 1 && next(10) < 6 {
                        0
                    } else {
                        next(4)
                    };
                    ts += match pick {
                        0 => 900 * SECOND,
                        1 => (next(7200) as i64 - 600) * SECOND,
                        2 => next(5) as i64 * 450 * SECOND,
                        _ => 901 * SECOND,
                    };
                    Point {
                        ts,
                        value: 0,
                        decimals: 0,
                        seq: None,
                        received_at: ts,
                    }
                })
                .collect();
            let mut diffs: Vec<f64> = points
                .windows(2)
                .map(|w| (w[1].ts - w[0].ts) as f64)
                .filter(|d| *d > 0.0)
                .collect();
            let expected = (diffs.len() >= MIN_INFER_INTERVALS)
                .then(|| {
                    let m = Data::new(diffs.as_mut_slice()).median();
                    (m / SECOND as f64).round() as i64
                })
                .filter(|s| *s > 0)
                .map(|s| s * SECOND);
            assert_eq!(infer_interval(&points), expected, "case {case}");
        }
    }

    /// The first received readings are kept whatever the order they are
    /// offered in, and give the interval once there are enough of them.
    #[test]
    fn the_first_received_readings_in_any_order() {
        const MIN: i64 = 60 * SECOND;
        // Received: 9 readings every 4 min (keys 0..9), then 20 hourly ones.
        let mut offers: Vec<((u64, u32), i64)> =
            (0..9).map(|k| ((k as u64, 0), k * 4 * MIN)).collect();
        offers.extend((0..20).map(|k| ((100 + k as u64, 1), (1_000 + k * 60) * MIN)));
        let mut seen = FirstReceived::default();
        for (k, o) in offers.iter().enumerate() {
            if k == 8 {
                assert_eq!(seen.interval(Medium::Water).source, IntervalSource::Default);
            }
            seen.offer(o.0, o.1);
        }
        let want = Interval {
            micros: 4 * MIN,
            source: IntervalSource::Inferred,
        };
        assert_eq!(seen.interval(Medium::Water), want);
        assert_eq!(seen.completed_by(), Some(((8, 0), 32 * MIN)));
        for order in [offers.iter().rev().collect::<Vec<_>>(), {
            let mut v: Vec<_> = offers.iter().collect();
            v.sort_by_key(|o| o.1 % (7 * MIN));
            v
        }] {
            let mut f = FirstReceived::default();
            order.iter().for_each(|o| f.offer(o.0, o.1));
            assert_eq!(f.interval(Medium::Water), want);
            assert_eq!(f.completed_by(), Some(((8, 0), 32 * MIN)));
        }
    }
}
