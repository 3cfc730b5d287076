//! The duplicate index: which (meter, register, time) already has which value.
//!
//! Keys are 128-bit XXH3 hashes of `meter_id ‖ register ‖ ts`, values 64-bit
//! hashes of `(exact value, unit)`. At 10^10 stored readings the chance of
//! any key collision is about 10^-19, so a hash stands in for the key at
//! 24 bytes an entry instead of ~100. The index is rebuilt on start from the
//! sealed `readings` files, then from the journal replay.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::StoreError;
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

#[derive(Default)]
pub struct DedupIndex {
    /// First value seen per key.
    first: HashMap<u128, u64, Fast>,
    /// Further, conflicting values per key (rare).
    more: HashMap<u128, Vec<u64>, Fast>,
}

fn key(meter: &str, register: &str, ts: i64) -> u128 {
    // meter ≤ 128 bytes and register ≤ 64 (validated), so the key fits on
    // the stack: no allocation per reading.
    let mut buf = [0u8; 256];
    let (m, r) = (meter.as_bytes(), register.as_bytes());
    let n = m.len() + r.len() + 10;
    if n > buf.len() {
        let mut v = Vec::with_capacity(n);
        v.extend_from_slice(m);
        v.push(0xff);
        v.extend_from_slice(r);
        v.push(0xff);
        v.extend_from_slice(&ts.to_le_bytes());
        return xxh3_128(&v);
    }
    buf[..m.len()].copy_from_slice(m);
    buf[m.len()] = 0xff;
    buf[m.len() + 1..m.len() + 1 + r.len()].copy_from_slice(r);
    buf[m.len() + 1 + r.len()] = 0xff;
    buf[n - 8..n].copy_from_slice(&ts.to_le_bytes());
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
    /// Number of distinct (meter, register, time) keys.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
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

    fn check_parts(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
        scaled: i128,
        unit: &str,
    ) -> Verdict {
        let k = key(meter, register, ts);
        let v = value_hash(scaled, unit);
        match self.first.get(&k) {
            None => {
                self.first.insert(k, v);
                Verdict::New
            }
            Some(&first) if first == v => Verdict::Duplicate,
            Some(_) => {
                let more = self.more.entry(k).or_default();
                if more.contains(&v) {
                    Verdict::Duplicate
                } else {
                    more.push(v);
                    Verdict::Conflict
                }
            }
        }
    }

    /// Adds every reading of a sealed `readings` file.
    pub fn load_file(&mut self, path: &Path) -> Result<(), StoreError> {
        let pq = |source| StoreError::Parquet {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
        let mask = ProjectionMask::columns(
            builder.parquet_schema(),
            ["meter_id", "register", "ts", "unit", "value_decimal"],
        );
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(pq)?;
        for batch in reader {
            let batch = batch.map_err(|e| pq(e.into()))?;
            let col = |name: &str| {
                batch.column_by_name(name).ok_or_else(|| {
                    pq(parquet::errors::ParquetError::General(format!(
                        "column {name} missing"
                    )))
                })
            };
            let meter = col("meter_id")?.as_string::<i32>();
            let register = col("register")?.as_string::<i32>();
            let ts = col("ts")?.as_primitive::<TimestampMicrosecondType>();
            let unit = col("unit")?.as_string::<i32>();
            let value = col("value_decimal")?.as_primitive::<Decimal128Type>();
            for i in 0..batch.num_rows() {
                self.check_parts(
                    meter.value(i),
                    register.value(i),
                    ts.value(i),
                    value.value(i),
                    unit.value(i),
                );
            }
        }
        Ok(())
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
        ];
        for ((m, r, ts, v, u), want) in cases {
            assert_eq!(ix.check_parts(m, r, ts, v, u), want, "{m} {r} {ts} {v} {u}");
        }
        assert_eq!(ix.len(), 5);
    }
}
