//! The duplicate index: which (meter, register, time) already has which value.
//!
//! Organised per series (meter, register): a 128-bit XXH3 hash of the series
//! name finds a vector of `(ts, value hash)` kept sorted by time. Readings
//! mostly arrive in time order per series, so checking one is an append to
//! a vector that the previous reading of the same meter just touched; only
//! late or repeated readings need a binary search. Each stored reading costs
//! 16 bytes. At 10^9 series the chance of a series-hash collision is about
//! 10^-21, and a collision could only merge two series' timelines, never
//! lose a reading silently without also matching a 64-bit value hash.
//!
//! The index is rebuilt on start from the sealed `readings` files (sorted by
//! series and time, so loading is appends), then from the journal replay.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::reading::Reading;

/// What the index says of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First value for this meter, register and time.
    New,
    /// The same value was stored before.
    Duplicate,
    /// A different value was stored before: keep it, flagged.
    Conflict,
}

/// The keys are already uniformly distributed hashes: pass them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64 ^ (n >> 64) as u64;
    }
}

type Fast = BuildHasherDefault<PassThrough>;

/// One series' stored readings: `(ts, value hash)`, sorted by `ts`; a
/// conflict adds a second entry with the same `ts`.
type Timeline = Vec<(i64, u64)>;

#[derive(Default)]
pub struct DedupIndex {
    series: HashMap<u128, Timeline, Fast>,
    readings: usize,
}

fn series_key(meter: &str, register: &str) -> u128 {
    // meter ≤ 128 bytes and register ≤ 64 (validated): the key fits on the
    // stack, no allocation per reading.
    let mut buf = [0u8; 256];
    let (m, r) = (meter.as_bytes(), register.as_bytes());
    let n = m.len() + r.len() + 1;
    if n > buf.len() {
        return xxh3_128(format!("{meter}\u{ff}{register}").as_bytes());
    }
    buf[..m.len()].copy_from_slice(m);
    buf[m.len()] = 0xff;
    buf[m.len() + 1..n].copy_from_slice(r);
    xxh3_128(&buf[..n])
}

fn value_hash(scaled: i128, unit: &str) -> u64 {
    let mut buf = [0u8; 24];
    buf[..16].copy_from_slice(&scaled.to_le_bytes());
    let u = unit.as_bytes();
    let n = u.len().min(8);
    buf[16..16 + n].copy_from_slice(&u[..n]);
    xxh3_64(&buf)
}

impl DedupIndex {
    /// Number of stored readings (conflicting values included).
    pub fn len(&self) -> usize {
        self.readings
    }

    pub fn is_empty(&self) -> bool {
        self.readings == 0
    }

    /// Number of series (meter, register).
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Classifies a reading and records it.
    pub fn check(&mut self, r: &Reading) -> Verdict {
        self.check_parts(
            r.meter_id.as_str(),
            &r.register,
            r.ts_micros,
            r.value.scaled(),
            r.unit.as_str(),
        )
    }

    /// [`check`](Self::check) on a reading's parts (a sealed row).
    pub(super) fn check_parts(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
        scaled: i128,
        unit: &str,
    ) -> Verdict {
        let key = series_key(meter, register);
        let v = value_hash(scaled, unit);
        let timeline = self.series.entry(key).or_default();
        let verdict = match timeline.last() {
            None => {
                timeline.push((ts, v));
                Verdict::New
            }
            Some(&(last_ts, _)) if ts > last_ts => {
                timeline.push((ts, v));
                Verdict::New
            }
            Some(_) => {
                let start = timeline.partition_point(|e| e.0 < ts);
                let end = start + timeline[start..].partition_point(|e| e.0 == ts);
                if timeline[start..end].iter().any(|e| e.1 == v) {
                    return Verdict::Duplicate;
                }
                timeline.insert(end, (ts, v));
                if end > start {
                    Verdict::Conflict
                } else {
                    Verdict::New
                }
            }
        };
        self.readings += 1;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_duplicate_conflict() {
        let mut ix = DedupIndex::default();
        let cases = [
            (("m1", "total", 1, 100, "m3"), Verdict::New),
            (("m1", "total", 1, 100, "m3"), Verdict::Duplicate),
            (("m1", "total", 1, 101, "m3"), Verdict::Conflict),
            (("m1", "total", 1, 101, "m3"), Verdict::Duplicate),
            (("m1", "total", 1, 100, "m3"), Verdict::Duplicate),
            (("m1", "total", 1, 100, "l"), Verdict::Conflict),
            (("m1", "total", 2, 100, "m3"), Verdict::New),
            (("m1", "energy", 1, 100, "m3"), Verdict::New),
            (("m2", "total", 1, 100, "m3"), Verdict::New),
            // Key parts are separated: "m1t"+"otal" is not "m1"+"total".
            (("m1t", "otal", 1, 100, "m3"), Verdict::New),
            // Late readings (before the series' last) are looked up, not appended.
            (("m1", "total", 0, 99, "m3"), Verdict::New),
            (("m1", "total", 0, 99, "m3"), Verdict::Duplicate),
            (("m1", "total", 2, 100, "m3"), Verdict::Duplicate),
        ];
        for ((m, r, ts, v, u), want) in cases {
            assert_eq!(ix.check_parts(m, r, ts, v, u), want, "{m} {r} {ts} {v} {u}");
        }
        // 6 distinct (series, time) keys, one of them with two more values.
        assert_eq!(ix.len(), 8);
        assert_eq!(ix.series(), 4);
    }
}
