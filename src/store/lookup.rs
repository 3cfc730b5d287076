//! The ingest stage's lookups in the sealed `readings` files: every value
//! stored at one meter, register and time.
//!
//! A reading's date partition holds every row at its time. The lookup
//! reads that date's newest compacted file (one sorted run, if the date
//! was compacted) and the date's readings files that run does not hold
//! (those sealed after it). In each file only the row groups whose
//! `meter_id` and `ts` statistics admit the reading are read, and in them
//! a row filter on meter, register and time decodes the value columns of
//! the matching rows alone. Files are sorted by meter, so a lookup reads
//! about one row group per file. Footers are cached (a bounded number),
//! and so are the last few row groups read for duplicates, decoded and
//! sorted by series and time: a gateway replaying its buffer asks for many
//! neighbouring keys of the same row groups, each then a binary search.
//!
//! The live engine asks for a series' readings in a time range the same
//! way (a late reading older than its gap memory: the neighbours of a gap
//! it no longer keeps), one date at a time.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::types::{UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use super::compact::latest_of_date;
use super::tables::READINGS;
use crate::continuity::sealed::SealedSeries;
use crate::continuity::series::Point;
use crate::continuity::DAY;
use crate::ingest::dedup::{LookupError, SealedValues, StoredValue};
use crate::time::utc_date;

/// Footers kept in memory at most (then the cache starts over).
const FOOTERS_CACHED: usize = 4096;

/// Row groups kept decoded for duplicate lookups, at most: a gateway that
/// replays its buffer asks for many neighbouring keys of the same few row
/// groups. About 2.6 MB each (64 Ki rows of 41 bytes).
const GROUPS_CACHED: usize = 8;

/// Row groups remembered as asked once (a second ask decodes and keeps).
const ASKED_REMEMBERED: usize = 64;

/// One row group's keys and values, sorted by (series, time): what a
/// duplicate lookup needs, found by binary search.
struct GroupKeys {
    /// XXH3-128 of meter and register (as the duplicate index keys them).
    series: Vec<u128>,
    ts: Vec<i64>,
    value: Vec<i128>,
    unit: Vec<u8>,
    units: Vec<String>,
}

/// Lookups in the sealed `readings` of one data directory.
pub struct SealedLookup {
    data: PathBuf,
    footers: HashMap<PathBuf, ArrowReaderMetadata>,
    /// Decoded row groups, most recently used last.
    groups: Vec<((PathBuf, usize), GroupKeys)>,
    /// Row groups asked for lately and not decoded, oldest first.
    asked: Vec<(PathBuf, usize)>,
    /// Row groups decoded, and lookups answered from decoded ones (lately):
    /// whether decoding pays.
    decodes: u64,
    hits: u64,
}

/// The key of a series in [`GroupKeys`].
fn series_key(meter: &str, register: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(meter.as_bytes());
    h.update(&[0]);
    h.update(register.as_bytes());
    h.digest128()
}

impl SealedLookup {
    pub fn new(data: &Path) -> SealedLookup {
        SealedLookup {
            data: data.to_owned(),
            footers: HashMap::new(),
            groups: Vec::new(),
            asked: Vec::new(),
            decodes: 0,
            hits: 0,
        }
    }

    /// The files that hold the rows of `date`: its newest compacted file,
    /// and the readings files that one does not hold.
    fn files_of(&self, date: &str) -> Result<Vec<PathBuf>, String> {
        let compacted = latest_of_date(&self.data, date).map_err(|e| e.to_string())?;
        let dir = self.data.join(READINGS).join(format!("date={date}"));
        let mut out = Vec::new();
        let mut held = std::collections::HashSet::new();
        if let Some(c) = &compacted {
            out.push(self.data.join(&c.path));
            held.extend(c.sources.iter().map(String::as_str));
        }
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(format!("listing {}: {e}", dir.display())),
        };
        for f in rd {
            let f = f.map_err(|e| format!("listing {}: {e}", dir.display()))?;
            let name = f.file_name().to_string_lossy().into_owned();
            // Only sealed files: a seal's temporary files start with '.'.
            if !name.starts_with("part-") || !name.ends_with(".parquet") {
                continue;
            }
            let rel = format!("{READINGS}/date={date}/{name}");
            if !held.contains(rel.as_str()) {
                out.push(f.path());
            }
        }
        Ok(out)
    }

    fn footer(&mut self, path: &Path) -> Result<ArrowReaderMetadata, String> {
        if let Some(m) = self.footers.get(path) {
            return Ok(m.clone());
        }
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let meta = ArrowReaderMetadata::load(&file, Default::default())
            .map_err(|e| format!("reading the footer of {}: {e}", path.display()))?;
        if self.footers.len() >= FOOTERS_CACHED {
            self.footers.clear();
        }
        self.footers.insert(path.to_owned(), meta.clone());
        Ok(meta)
    }

    /// Calls `each` with the batches of the rows of `meter`/`register`
    /// with `from <= ts <= to` in one file, projected on `columns`: only
    /// the row groups whose statistics admit them are read, and in them
    /// a row filter decodes `columns` of the matching rows alone.
    fn scan(
        &mut self,
        path: &Path,
        (meter, register): (&str, &str),
        (from, to): (i64, i64),
        columns: &[&str],
        each: impl FnMut(&RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        let groups = self.groups_for(path, meter, (from, to))?;
        self.scan_groups(path, groups, (meter, register), (from, to), columns, each)
    }

    /// [`scan`](Self::scan) of the given row groups only.
    fn scan_groups(
        &mut self,
        path: &Path,
        groups: Vec<usize>,
        (meter, register): (&str, &str),
        (from, to): (i64, i64),
        columns: &[&str],
        mut each: impl FnMut(&RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        let meta = self.footer(path)?;
        let bad = |e: &dyn std::fmt::Display| format!("reading {}: {e}", path.display());
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let descr = descr.as_ref();
        if groups.is_empty() {
            return Ok(());
        }
        let keys = ProjectionMask::columns(descr, ["meter_id", "register", "ts"]);
        let values = ProjectionMask::columns(descr, columns.iter().copied());
        let (m, r) = (meter.to_owned(), register.to_owned());
        let predicate = ArrowPredicateFn::new(keys, move |batch| {
            let missing = || arrow_schema::ArrowError::SchemaError("key column missing".into());
            let meter = batch.column_by_name("meter_id").ok_or_else(missing)?;
            let register = batch.column_by_name("register").ok_or_else(missing)?;
            let t = batch.column_by_name("ts").ok_or_else(missing)?;
            let (meter, register) = (meter.as_string::<i32>(), register.as_string::<i32>());
            let t = t.as_primitive::<TimestampMicrosecondType>();
            Ok(BooleanArray::from_iter((0..batch.num_rows()).map(|i| {
                Some(
                    (from..=to).contains(&t.value(i))
                        && !meter.is_null(i)
                        && meter.value(i) == m
                        && register.value(i) == r,
                )
            })))
        });
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_row_groups(groups)
            .with_projection(values)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
            .build()
            .map_err(|e| bad(&e))?;
        for batch in reader {
            each(&batch.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        Ok(())
    }

    /// The row groups of a file whose statistics admit `meter` at a time
    /// in `from..=to`.
    fn groups_for(
        &mut self,
        path: &Path,
        meter: &str,
        (from, to): (i64, i64),
    ) -> Result<Vec<usize>, String> {
        let meta = self.footer(path)?;
        let pq = meta.metadata();
        let descr = pq.file_metadata().schema_descr();
        let col = |name: &str| {
            descr
                .columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| format!("reading {}: no {name} column", path.display()))
        };
        let (meter_col, ts_col) = (col("meter_id")?, col("ts")?);
        Ok(pq
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| {
                let meter_in = match rg.column(meter_col).statistics() {
                    Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(lo), Some(hi)) => {
                            lo.data() <= meter.as_bytes() && meter.as_bytes() <= hi.data()
                        }
                        _ => true,
                    },
                    _ => true,
                };
                let ts_in = match rg.column(ts_col).statistics() {
                    Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(&lo), Some(&hi)) => lo <= to && from <= hi,
                        _ => true,
                    },
                    _ => true,
                };
                meter_in && ts_in
            })
            .map(|(i, _)| i)
            .collect())
    }

    /// Row group `rg` of `path`, decoded and sorted (from the cache, or
    /// read now and cached).
    fn group_keys(&mut self, path: &Path, rg: usize) -> Result<&GroupKeys, String> {
        let key = (path.to_owned(), rg);
        if let Some(k) = self.groups.iter().position(|(g, _)| *g == key) {
            let hit = self.groups.remove(k);
            self.groups.push(hit);
            return Ok(&self.groups.last().expect("just pushed").1);
        }
        let meta = self.footer(path)?;
        let bad = |e: &dyn std::fmt::Display| format!("reading {}: {e}", path.display());
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let columns = ["meter_id", "register", "ts", "value_decimal", "unit"];
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_row_groups(vec![rg])
            .with_projection(ProjectionMask::columns(&descr, columns))
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| bad(&e))?;
        let mut rows: Vec<(u128, i64, i128, u8)> = Vec::new();
        let mut units: Vec<String> = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            let meter = column(&batch, "meter_id")?.as_string::<i32>();
            let register = column(&batch, "register")?.as_string::<i32>();
            let ts = column(&batch, "ts")?.as_primitive::<TimestampMicrosecondType>();
            let value = column(&batch, "value_decimal")?.as_primitive::<Decimal128Type>();
            let unit = column(&batch, "unit")?.as_string::<i32>();
            rows.reserve(batch.num_rows());
            for i in 0..batch.num_rows() {
                let u = match units.iter().position(|x| x == unit.value(i)) {
                    Some(u) => u,
                    None if units.len() < u8::MAX as usize => {
                        units.push(unit.value(i).to_owned());
                        units.len() - 1
                    }
                    None => return Err(bad(&"more than 255 units in a row group")),
                };
                rows.push((
                    series_key(meter.value(i), register.value(i)),
                    ts.value(i),
                    value.value(i),
                    u as u8,
                ));
            }
        }
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        let keys = GroupKeys {
            series: rows.iter().map(|r| r.0).collect(),
            ts: rows.iter().map(|r| r.1).collect(),
            value: rows.iter().map(|r| r.2).collect(),
            unit: rows.iter().map(|r| r.3).collect(),
            units,
        };
        if self.groups.len() >= GROUPS_CACHED {
            self.groups.remove(0);
        }
        self.groups.push((key, keys));
        Ok(&self.groups.last().expect("just pushed").1)
    }

    fn values_in(
        &mut self,
        path: &Path,
        meter: &str,
        register: &str,
        ts: i64,
        out: &mut Vec<StoredValue>,
    ) -> Result<(), String> {
        let series = series_key(meter, register);
        for rg in self.groups_for(path, meter, (ts, ts))? {
            let key = (path.to_owned(), rg);
            if self.groups.iter().any(|(g, _)| *g == key) {
                self.hits += 1;
            } else if self.worth_decoding(&key) {
                self.decodes += 1;
                if self.decodes + self.hits > 4096 {
                    // Forget slowly: the pattern of lookups changes.
                    (self.decodes, self.hits) = (self.decodes / 2, self.hits / 2);
                }
            } else {
                self.matching_values(path, rg, (meter, register), ts, out)?;
                continue;
            }
            let g = self.group_keys(path, rg)?;
            let lo = g.series.partition_point(|&s| s < series);
            let n = g.series[lo..].partition_point(|&s| s == series);
            let at = lo + g.ts[lo..lo + n].partition_point(|&t| t < ts);
            for k in (at..lo + n).take_while(|&k| g.ts[k] == ts) {
                out.push(StoredValue {
                    scaled: g.value[k],
                    unit: g.units[g.unit[k] as usize].clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether to decode and keep a row group not kept yet. Decoding costs
    /// about four matching-row reads: it is worth it when the row group is
    /// asked again (a replay) and decoding has paid lately, not when
    /// lookups wander over more row groups than are kept. A first ask is
    /// remembered.
    fn worth_decoding(&mut self, key: &(PathBuf, usize)) -> bool {
        if self.asked.contains(key) {
            return self.hits >= 2 * self.decodes || self.decodes < 4;
        }
        if self.asked.len() >= ASKED_REMEMBERED {
            self.asked.remove(0);
        }
        self.asked.push(key.clone());
        false
    }

    /// The values at `ts` of a series in one row group, reading only the
    /// matching rows.
    fn matching_values(
        &mut self,
        path: &Path,
        rg: usize,
        series: (&str, &str),
        ts: i64,
        out: &mut Vec<StoredValue>,
    ) -> Result<(), String> {
        let columns = ["value_decimal", "unit"];
        self.scan_groups(path, vec![rg], series, (ts, ts), &columns, |b| {
            let value = column(b, "value_decimal")?.as_primitive::<Decimal128Type>();
            let unit = column(b, "unit")?.as_string::<i32>();
            for i in 0..b.num_rows() {
                out.push(StoredValue {
                    scaled: value.value(i),
                    unit: unit.value(i).to_owned(),
                });
            }
            Ok(())
        })
    }

    /// The series' measured, non-conflicting readings in one file, in
    /// `from..=to`, of receipts before `bound`.
    fn points_in_file(
        &mut self,
        path: &Path,
        series: (&str, &str),
        span: (i64, i64),
        bound: Option<u64>,
        out: &mut Vec<Point>,
    ) -> Result<(), String> {
        let columns = [
            "ts",
            "value_decimal",
            "value_decimals",
            "seq",
            "kind",
            "conflict",
            "receipt_seq",
            "received_at",
        ];
        self.scan(path, series, span, &columns, |batch| {
            let ts = column(batch, "ts")?.as_primitive::<TimestampMicrosecondType>();
            let value = column(batch, "value_decimal")?.as_primitive::<Decimal128Type>();
            let decimals = column(batch, "value_decimals")?.as_primitive::<UInt8Type>();
            let seq = column(batch, "seq")?.as_primitive::<UInt64Type>();
            let kind = column(batch, "kind")?.as_string::<i32>();
            let conflict = column(batch, "conflict")?.as_boolean();
            let receipt = column(batch, "receipt_seq")?.as_primitive::<Int64Type>();
            let received = column(batch, "received_at")?.as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                let early = bound.is_none_or(|b| (receipt.value(i) as u64) < b);
                if kind.value(i) != "measured" || conflict.value(i) || !early {
                    continue;
                }
                out.push(Point {
                    ts: ts.value(i),
                    value: value.value(i),
                    decimals: decimals.value(i),
                    seq: (!seq.is_null(i)).then(|| seq.value(i)),
                    received_at: received.value(i),
                });
            }
            Ok(())
        })
    }
}

/// A column of a batch read with a projection that names it.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("no {name} column"))
}

impl SealedSeries for SealedLookup {
    fn points_in(
        &mut self,
        meter: &str,
        register: &str,
        from: i64,
        to: i64,
        before_receipt: Option<u64>,
    ) -> Result<Vec<Point>, LookupError> {
        let fail = |why: String| LookupError {
            meter: meter.to_owned(),
            register: register.to_owned(),
            ts: from,
            why,
        };
        let mut out = Vec::new();
        for day in from.div_euclid(DAY)..=to.div_euclid(DAY) {
            for path in self.files_of(&utc_date(day * DAY)).map_err(fail)? {
                self.points_in_file(
                    &path,
                    (meter, register),
                    (from, to),
                    before_receipt,
                    &mut out,
                )
                .map_err(fail)?;
            }
        }
        out.sort_by_key(|p| p.ts);
        Ok(out)
    }
}

impl SealedValues for SealedLookup {
    fn values_at(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
    ) -> Result<Vec<StoredValue>, LookupError> {
        let fail = |why: String| LookupError {
            meter: meter.to_owned(),
            register: register.to_owned(),
            ts,
            why,
        };
        let mut out = Vec::new();
        let files = self.files_of(&utc_date(ts)).map_err(fail)?;
        for path in files {
            self.values_in(&path, meter, register, ts, &mut out)
                .map_err(fail)?;
        }
        Ok(out)
    }
}
