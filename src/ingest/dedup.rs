//! Duplicate detection in bounded memory, exact for late data of any age.
//!
//! A reading is `new` (first value at its meter, register and time),
//! `duplicate` (that value is stored already) or `conflict` (another value
//! is stored there: it is kept too, flagged). Memory holds, per series
//! (meter, register), only what decides the common cases at once:
//!
//! - its first and newest reading time and the newest value's hash: a
//!   reading after the newest is new, one before the first is new, one at
//!   the newest time is a duplicate or a conflict by that hash (unless two
//!   values are stored there already);
//! - the newest time it had when the current batch began: a reading after
//!   it can only meet rows of the batch, which are in memory until sealed;
//! - whether it ever had a set-date row: if not, a reading strictly inside
//!   a gap the live continuity engine knows meets no sealed row.
//!
//! Everything else (a late reading before the series' newest, not in a
//! known gap) is looked up in the sealed files of its date through
//! [`SealedValues`], which the store implements with row-group statistics,
//! so that a lookup reads a few pages, not the history. `schemas/rules.md`
//! states the rule.
//!
//! Series are keyed by a 128-bit XXH3 hash of their name: at 10^9 series
//! the chance of a collision is about 10^-21. A series costs one entry of
//! about 60 bytes, whatever its history.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// What a reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First value for this meter, register and time.
    New,
    /// The same value was stored before.
    Duplicate,
    /// A different value was stored before: keep it, flagged.
    Conflict,
}

/// A value stored at one meter, register and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// Value × 10^9.
    pub scaled: i128,
    pub unit: String,
}

pub use crate::continuity::sealed::LookupError;
use crate::continuity::sealed::SealedSeries;

/// The sealed files, as the stage asks them: values at a time (duplicates)
/// and a series' readings in a time range (the live engine's gap memory).
pub trait SealedValues: SealedSeries + Send {
    /// Every value stored for `meter`/`register` at `ts` (µs) in a sealed
    /// file (conflicting values included).
    fn values_at(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
    ) -> Result<Vec<StoredValue>, LookupError>;
}

/// No sealed files (unit tests of the stage alone, benchmarks that start
/// empty): every lookup finds nothing.
pub use crate::continuity::sealed::NoSealed;

impl SealedValues for NoSealed {
    fn values_at(&mut self, _: &str, _: &str, _: i64) -> Result<Vec<StoredValue>, LookupError> {
        Ok(Vec::new())
    }
}

/// The keys are already uniformly distributed hashes: pass them through.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

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
    fn write_i64(&mut self, n: i64) {
        self.0 ^= (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type Fast = BuildHasherDefault<PassThrough>;

/// Two or more values are stored at the series' newest time.
const MULTI_AT_NEWEST: u8 = 1;
/// The series has (had) a set-date row: a live gap does not prove a
/// time empty.
const HAS_SET_DATE: u8 = 2;

/// One series, in memory: 33 bytes, packed (with its key, 50 a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub(crate) struct SeriesEnd {
    pub(crate) first: i64,
    pub(crate) newest: i64,
    pub(crate) newest_hash: u64,
    /// The newest time of its sealed rows (`i64::MIN`: none): `newest`
    /// when the current batch began. A seal moves it for the series of
    /// its batch ([`SeriesIndex::sealed`]).
    pub(crate) sealed_newest: i64,
    pub(crate) flags: u8,
}

/// The series key of a meter and register.
pub fn series_key(meter: &str, register: &str) -> u128 {
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

/// The key of a meter (for its register count).
pub fn meter_key(meter: &str) -> u128 {
    xxh3_128(meter.as_bytes())
}

/// The hash a value is compared by: its exact scaled value and its unit.
pub fn value_hash(scaled: i128, unit: &str) -> u64 {
    let mut buf = [0u8; 24];
    buf[..16].copy_from_slice(&scaled.to_le_bytes());
    let u = unit.as_bytes();
    let n = u.len().min(8);
    buf[16..16 + n].copy_from_slice(&u[..n]);
    xxh3_64(&buf)
}

/// One reading, as the classifier needs it.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub meter: &'a str,
    pub register: &'a str,
    pub ts: i64,
    pub scaled: i128,
    pub unit: &'a str,
    pub set_date: bool,
}

/// The duplicate state of every series, and the values of the batch not
/// sealed yet.
#[derive(Default)]
pub struct SeriesIndex {
    pub(crate) series: HashMap<u128, SeriesEnd, Fast>,
    /// Distinct registers per meter.
    pub(crate) registers: HashMap<u128, u16, Fast>,
    /// Values of the current batch by (series, time); a second value at
    /// the same place (a conflict inside one batch) goes to `batch_more`.
    batch: HashMap<(u128, i64), u64, Fast>,
    batch_more: Vec<((u128, i64), u64)>,
    /// Lookups in the sealed files since start.
    pub lookups: u64,
}

impl SeriesIndex {
    /// Number of series (meter, register).
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Registers of `meter` known so far.
    pub fn registers_of(&self, meter: &str) -> usize {
        self.registers
            .get(&meter_key(meter))
            .map_or(0, |&n| n as usize)
    }

    /// Whether the series is known.
    pub fn knows(&self, meter: &str, register: &str) -> bool {
        self.series.contains_key(&series_key(meter, register))
    }

    /// Gives back what the tables hold beyond their entries (after a
    /// start: they grew by doubling while the state was loaded).
    pub fn shrink_to_fit(&mut self) {
        self.series.shrink_to_fit();
        self.registers.shrink_to_fit();
    }

    /// Bytes held (approximately: the hash tables' slots).
    pub fn heap_bytes(&self) -> usize {
        let slot = |k: usize, v: usize| k + v + 1;
        self.series.capacity() * slot(16, std::mem::size_of::<SeriesEnd>())
            + self.registers.capacity() * slot(16, 2)
            + self.batch.capacity() * slot(24, 8)
    }

    /// Classifies a reading and records it. `in_known_gap`: whether the
    /// live engine knows a gap strictly around this time (asked only when
    /// it decides).
    pub fn check(
        &mut self,
        k: Key<'_>,
        in_known_gap: impl FnOnce() -> bool,
        sealed: &mut dyn SealedValues,
    ) -> Result<Verdict, LookupError> {
        let key = series_key(k.meter, k.register);
        let h = value_hash(k.scaled, k.unit);
        let Some(s) = self.series.get_mut(&key) else {
            let n = self.registers.entry(meter_key(k.meter)).or_default();
            *n = n.saturating_add(1);
            self.series.insert(
                key,
                SeriesEnd {
                    first: k.ts,
                    newest: k.ts,
                    newest_hash: h,
                    sealed_newest: i64::MIN,
                    flags: if k.set_date { HAS_SET_DATE } else { 0 },
                },
            );
            self.batch.insert((key, k.ts), h);
            return Ok(Verdict::New);
        };
        if k.set_date {
            s.flags |= HAS_SET_DATE;
        }
        let verdict = if k.ts > s.newest {
            s.newest = k.ts;
            s.newest_hash = h;
            s.flags &= !MULTI_AT_NEWEST;
            Verdict::New
        } else if k.ts == s.newest && s.flags & MULTI_AT_NEWEST == 0 {
            if h == s.newest_hash {
                return Ok(Verdict::Duplicate);
            }
            s.flags |= MULTI_AT_NEWEST;
            Verdict::Conflict
        } else if k.ts < s.first {
            s.first = k.ts;
            Verdict::New
        } else {
            // In the series' span: the batch, then (only if a sealed row
            // can be there) the sealed files.
            let at_newest = k.ts == s.newest;
            let sealed_may_hold =
                k.ts <= s.sealed_newest && (s.flags & HAS_SET_DATE != 0 || !in_known_gap());
            let mut seen = false;
            let mut any = false;
            let place = (key, k.ts);
            if let Some(&v) = self.batch.get(&place) {
                any = true;
                seen = v == h || self.batch_more.iter().any(|&(p, v)| p == place && v == h);
            }
            if !seen && sealed_may_hold {
                self.lookups += 1;
                for v in sealed.values_at(k.meter, k.register, k.ts)? {
                    any = true;
                    if value_hash(v.scaled, &v.unit) == h {
                        seen = true;
                        break;
                    }
                }
            }
            if seen {
                return Ok(Verdict::Duplicate);
            }
            let s = self.series.get_mut(&key).expect("looked up above");
            if any && at_newest {
                s.flags |= MULTI_AT_NEWEST;
            }
            if any {
                Verdict::Conflict
            } else {
                Verdict::New
            }
        };
        match self.batch.entry((key, k.ts)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(h);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.batch_more.push(((key, k.ts), h))
            }
        }
        Ok(verdict)
    }

    /// The batch was sealed: its values are in the sealed files now.
    pub fn sealed(&mut self) {
        // Every reading of the batch left its place in `batch`: its
        // series' rows are sealed up to their newest now.
        for &(key, _) in self.batch.keys() {
            if let Some(s) = self.series.get_mut(&key) {
                s.sealed_newest = s.newest;
            }
        }
        self.batch.clear();
        self.batch_more.clear();
    }

    /// Records a sealed row (the rebuild from the sealed files, in any
    /// order): no verdict, no lookup.
    pub fn restore(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
        scaled: i128,
        unit: &str,
        set_date: bool,
    ) {
        let key = series_key(meter, register);
        let h = value_hash(scaled, unit);
        let flags = if set_date { HAS_SET_DATE } else { 0 };
        match self.series.get_mut(&key) {
            None => {
                let n = self.registers.entry(meter_key(meter)).or_default();
                *n = n.saturating_add(1);
                self.series.insert(
                    key,
                    SeriesEnd {
                        first: ts,
                        newest: ts,
                        newest_hash: h,
                        sealed_newest: ts,
                        flags,
                    },
                );
            }
            Some(s) => {
                s.flags |= flags;
                if ts > s.newest {
                    s.newest = ts;
                    s.newest_hash = h;
                    s.flags &= !MULTI_AT_NEWEST;
                } else if ts == s.newest && h != s.newest_hash {
                    s.flags |= MULTI_AT_NEWEST;
                }
                s.first = s.first.min(ts);
                s.sealed_newest = s.newest;
            }
        }
    }
}

impl SeriesIndex {
    /// Appends the state to `e` (the batch must be empty: snapshots are
    /// taken right after a seal). Sorted by key: equal states, equal bytes.
    pub fn encode(&self, e: &mut crate::codec::Enc) {
        debug_assert!(self.batch.is_empty());
        let mut series: Vec<(&u128, &SeriesEnd)> = self.series.iter().collect();
        series.sort_unstable_by_key(|s| *s.0);
        e.len(series.len());
        for (k, s) in series {
            e.u128(*k);
            e.i64(s.first);
            e.i64(s.newest);
            e.u64(s.newest_hash);
            e.u8(s.flags);
        }
        let mut regs: Vec<(&u128, &u16)> = self.registers.iter().collect();
        regs.sort_unstable_by_key(|r| *r.0);
        e.len(regs.len());
        for (k, n) in regs {
            e.u128(*k);
            e.u16(*n);
        }
    }

    /// The state `encode` wrote.
    pub fn decode(d: &mut crate::codec::Dec) -> Result<SeriesIndex, crate::codec::CodecError> {
        let mut ix = SeriesIndex::default();
        let n = d.len(41)?;
        ix.series.reserve(n);
        for _ in 0..n {
            let k = d.u128()?;
            let (first, newest, newest_hash, flags) = (d.i64()?, d.i64()?, d.u64()?, d.u8()?);
            ix.series.insert(
                k,
                SeriesEnd {
                    first,
                    newest,
                    newest_hash,
                    // Everything is sealed at a snapshot.
                    sealed_newest: newest,
                    flags,
                },
            );
        }
        for _ in 0..d.len(18)? {
            let k = d.u128()?;
            ix.registers.insert(k, d.u16()?);
        }
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealed files of a test: a plain list.
    #[derive(Default)]
    struct Files(Vec<(String, String, i64, i128, String)>, usize);

    impl SealedSeries for Files {
        fn points_in(
            &mut self,
            _: &str,
            _: &str,
            _: i64,
            _: i64,
            _: Option<u64>,
        ) -> Result<Vec<crate::continuity::series::Point>, LookupError> {
            unreachable!("the duplicate index asks for values only")
        }
    }

    impl SealedValues for Files {
        fn values_at(
            &mut self,
            meter: &str,
            register: &str,
            ts: i64,
        ) -> Result<Vec<StoredValue>, LookupError> {
            self.1 += 1;
            Ok(self
                .0
                .iter()
                .filter(|r| r.0 == meter && r.1 == register && r.2 == ts)
                .map(|r| StoredValue {
                    scaled: r.3,
                    unit: r.4.clone(),
                })
                .collect())
        }
    }

    fn key<'a>(m: &'a str, r: &'a str, ts: i64, v: i128, u: &'a str) -> Key<'a> {
        Key {
            meter: m,
            register: r,
            ts,
            scaled: v,
            unit: u,
            set_date: false,
        }
    }

    /// The verdicts of the old index that kept every reading, within one
    /// batch and across seals (whose rows then live only in the files).
    #[test]
    fn new_duplicate_conflict_in_memory_and_in_the_files() {
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
            (("m1", "total", 0, 99, "m3"), Verdict::New),
            (("m1", "total", 0, 99, "m3"), Verdict::Duplicate),
            (("m1", "total", 2, 100, "m3"), Verdict::Duplicate),
            (("m1", "total", 5, 1, "m3"), Verdict::New),
            (("m1", "total", 3, 1, "m3"), Verdict::New),
            (("m1", "total", 3, 2, "m3"), Verdict::Conflict),
            (("m1", "total", 4, 2, "m3"), Verdict::New),
        ];
        // Seal after every reading (all but the newest ends in the files),
        // or never (all in the batch): the same verdicts.
        for seal_each in [false, true] {
            let mut ix = SeriesIndex::default();
            let mut files = Files::default();
            for ((m, r, ts, v, u), want) in cases {
                let got = ix.check(key(m, r, ts, v, u), || false, &mut files).unwrap();
                assert_eq!(got, want, "{m} {r} {ts} {v} {u} (seal each: {seal_each})");
                if got != Verdict::Duplicate {
                    files.0.push((m.into(), r.into(), ts, v, u.into()));
                }
                if seal_each {
                    ix.sealed();
                }
            }
            assert_eq!(ix.series(), 4);
            assert_eq!(ix.registers_of("m1"), 2);
            if !seal_each {
                assert_eq!(files.1, 0, "nothing sealed: never looked up");
            }
        }
    }

    /// The cases memory decides are decided without a lookup; a late
    /// reading inside a known gap too, unless the series has set dates.
    #[test]
    fn lookups_only_for_what_memory_cannot_decide() {
        let mut ix = SeriesIndex::default();
        let mut files = Files::default();
        for ts in [10, 20, 30] {
            ix.check(key("m", "e", ts, ts as i128, "kWh"), || false, &mut files)
                .unwrap();
            files
                .0
                .push(("m".into(), "e".into(), ts, ts as i128, "kWh".into()));
        }
        ix.sealed();
        let mut check = |ix: &mut SeriesIndex, ts: i64, gap: bool| {
            ix.check(key("m", "e", ts, ts as i128, "kWh"), || gap, &mut files)
                .unwrap()
        };
        assert_eq!(check(&mut ix, 40, false), Verdict::New);
        assert_eq!(check(&mut ix, 40, false), Verdict::Duplicate);
        assert_eq!(check(&mut ix, 5, false), Verdict::New);
        assert_eq!(check(&mut ix, 25, true), Verdict::New, "in a known gap");
        assert_eq!(ix.lookups, 0);
        assert_eq!(
            check(&mut ix, 20, false),
            Verdict::Duplicate,
            "from the files"
        );
        assert_eq!(ix.lookups, 1);
        // In the batch only (after the newest sealed time): no lookup.
        assert_eq!(check(&mut ix, 35, false), Verdict::New);
        assert_eq!(check(&mut ix, 35, false), Verdict::Duplicate);
        assert_eq!(ix.lookups, 1);
        // A set date makes known gaps unproven: looked up.
        ix.check(
            Key {
                set_date: true,
                ..key("m", "e", 50, 1, "kWh")
            },
            || false,
            &mut Files::default(),
        )
        .unwrap();
        ix.sealed();
        assert_eq!(check(&mut ix, 27, true), Verdict::New);
        assert_eq!(ix.lookups, 2);
    }

    #[test]
    fn restore_gives_the_state_of_the_sealed_rows() {
        let mut ix = SeriesIndex::default();
        for (ts, v) in [(30, 3), (10, 1), (20, 2), (30, 4)] {
            ix.restore("m", "e", ts, v, "kWh", false);
        }
        let s = ix.series[&series_key("m", "e")];
        assert_eq!((s.first, s.newest, s.sealed_newest), (10, 30, 30));
        assert_eq!(
            s.flags & MULTI_AT_NEWEST,
            MULTI_AT_NEWEST,
            "two values at 30"
        );
        let mut files = Files::default();
        files.0.push(("m".into(), "e".into(), 30, 4, "kWh".into()));
        let got = ix.check(key("m", "e", 30, 4, "kWh"), || false, &mut files);
        assert_eq!(got.unwrap(), Verdict::Duplicate);
        assert_eq!(files.1, 1, "two values at the newest: looked up");
    }
}
