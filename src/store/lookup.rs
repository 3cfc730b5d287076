//! The ingest stage's lookups in the sealed `readings` files: every value
//! stored at one meter, register and time.
//!
//! A reading's date partition holds every row at its time. The lookup
//! reads that date's newest compacted file (one sorted run, if the date
//! was compacted) and the date's readings files that run does not hold
//! (those sealed after it). In each file only the row groups whose
//! `meter_id` and `ts` statistics admit the reading are read, and in them
//! only the rows of the pages whose `meter_id` bounds in the page index
//! admit the meter (files are sorted by meter, and written in pages of
//! [`PAGE_ROWS`] rows): a lookup decodes about one
//! page of each column per file. Footers (with their page index) are
//! cached, a bounded number, and so are the pages decoded for duplicates
//! lately, sorted by series and time: a gateway replaying its buffer asks
//! for many neighbouring keys of the same pages, each then a binary
//! search.
//!
//! The live engine asks for a series' readings in a time range the same
//! way (a late reading older than its gap memory: the neighbours of a gap
//! it no longer keeps), one date at a time, with a row filter on meter,
//! register and time that decodes the value columns of matching rows
//! alone.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::types::{UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use super::compact::latest_of_date;
use super::tables::READINGS;
use super::PAGE_ROWS;
use crate::continuity::sealed::SealedSeries;
use crate::continuity::series::Point;
use crate::continuity::DAY;
use crate::ingest::dedup::{LookupError, SealedValues, StoredValue};
use crate::time::utc_date;

/// Footers kept in memory at most (then the cache starts over).
const FOOTERS_CACHED: usize = 4096;

/// Rows kept decoded for duplicate lookups, at most (about 41 bytes
/// each, 21 MB in all): the pages of the meters asked for lately. A
/// gateway that replays its buffer asks for many neighbouring keys of the
/// same pages.
const ROWS_CACHED: usize = 128 * PAGE_ROWS;

/// One span of a row group's rows (the pages of a meter): keys and
/// values, sorted by (series, time): what a
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
    /// Footers by file, each with the file's number in this cache (never
    /// reused: spans are keyed by it, cheaper to compare than paths).
    footers: HashMap<PathBuf, (u32, ArrowReaderMetadata)>,
    next_file: u32,
    /// Decoded spans of rows by (file, row group, first row), most
    /// recently used last, and the rows they hold.
    groups: Vec<((u32, usize, usize), GroupKeys)>,
    cached_rows: usize,
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
            next_file: 0,
            groups: Vec::new(),
            cached_rows: 0,
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
        Ok(self.numbered_footer(path)?.1)
    }

    /// The footer of `path` and the file's number in the cache.
    fn numbered_footer(&mut self, path: &Path) -> Result<(u32, ArrowReaderMetadata), String> {
        if let Some((n, m)) = self.footers.get(path) {
            return Ok((*n, m.clone()));
        }
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        // With the page index: a lookup reads the pages of its meter.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(&file, options)
            .map_err(|e| format!("reading the footer of {}: {e}", path.display()))?;
        if self.footers.len() >= FOOTERS_CACHED {
            self.footers.clear();
        }
        let n = self.next_file;
        self.next_file = self.next_file.wrapping_add(1);
        self.footers.insert(path.to_owned(), (n, meta.clone()));
        Ok((n, meta))
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
        let pages = meter_pages(meta.metadata(), &groups, meter.as_bytes());
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
        if let Some(pages) = pages {
            builder = builder.with_row_selection(pages);
        }
        let reader = builder
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

    /// The rows `span` of row group `rg` of `path` (the pages of one
    /// meter), decoded and sorted: from the cache, or read now and cached.
    fn span_keys(
        &mut self,
        path: &Path,
        rg: usize,
        span: (usize, usize),
    ) -> Result<&GroupKeys, String> {
        let (file, meta) = self.numbered_footer(path)?;
        let key = (file, rg, span.0);
        if let Some(k) = self.groups.iter().rposition(|(g, _)| *g == key) {
            if k + 1 != self.groups.len() {
                let hit = self.groups.remove(k);
                self.groups.push(hit);
            }
            return Ok(&self.groups.last().expect("just pushed").1);
        }
        let bad = |e: &dyn std::fmt::Display| format!("reading {}: {e}", path.display());
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let rows = meta.metadata().row_group(rg).num_rows().max(0) as usize;
        let columns = ["meter_id", "register", "ts", "value_decimal", "unit"];
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let (start, end) = (span.0.min(rows), span.1.min(rows));
        let selection = RowSelection::from(vec![
            RowSelector::skip(start),
            RowSelector::select(end.saturating_sub(start)),
            RowSelector::skip(rows - end.max(start)),
        ]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_row_groups(vec![rg])
            .with_row_selection(selection)
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
        self.cached_rows += keys.ts.len();
        while self.cached_rows > ROWS_CACHED && !self.groups.is_empty() {
            let (_, old) = self.groups.remove(0);
            self.cached_rows -= old.ts.len();
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
            let meta = self.footer(path)?;
            let span = meter_span(meta.metadata(), rg, meter.as_bytes());
            if span.0 >= span.1 {
                continue;
            }
            let g = self.span_keys(path, rg, span)?;
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

/// The rows of row group `rg` on the `meter_id` pages whose page-index
/// bounds admit `meter`, from the first such page to the last (files are
/// sorted by meter: they are next to each other): `(start, end)`. The
/// whole row group without a page index.
fn meter_span(meta: &ParquetMetaData, rg: usize, meter: &[u8]) -> (usize, usize) {
    let rows = meta.row_group(rg).num_rows().max(0) as usize;
    let mut span: Option<(usize, usize)> = None;
    let Some(pages) = admitted_pages(meta, rg, meter) else {
        return (0, rows);
    };
    for (start, end, admits) in pages {
        if admits {
            span = Some(span.map_or((start, end), |(s, _)| (s, end)));
        }
    }
    span.unwrap_or((0, 0))
}

/// The pages of the `meter_id` column in row group `rg`, as (first row,
/// end row, whether its page-index bounds admit `meter`). None without a
/// page index (files written before it, or by another writer).
fn admitted_pages(
    meta: &ParquetMetaData,
    rg: usize,
    meter: &[u8],
) -> Option<Vec<(usize, usize, bool)>> {
    let col = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "meter_id")?;
    let rows = meta.row_group(rg).num_rows().max(0) as usize;
    let index = meta.page_index_for_row_group(rg);
    let (Some(ColumnIndexMetaData::BYTE_ARRAY(ci)), Some(pages)) =
        (index.column_index(col), index.page_locations(col))
    else {
        return None;
    };
    let mut out = Vec::with_capacity(pages.len());
    for (p, page) in pages.iter().enumerate() {
        let start = match p {
            0 => 0,
            _ => (page.first_row_index.max(0) as usize).min(rows),
        };
        let end = pages.get(p + 1).map_or(rows, |next| {
            (next.first_row_index.max(0) as usize).min(rows)
        });
        // Bounds may be truncated: a prefix below the least value and one
        // above the greatest, still bounds. A page of nulls only holds no
        // meter.
        let admits = match (ci.min_value(p), ci.max_value(p)) {
            (Some(lo), Some(hi)) => lo <= meter && meter <= hi,
            _ => false,
        };
        out.push((start, end.max(start), admits));
    }
    Some(out)
}

/// The rows of `groups` (in that order) on the `meter_id` pages whose
/// page-index bounds admit `meter`: files are sorted by meter, so a
/// lookup decodes a page or two per column instead of the whole row
/// group. None without a page index (files written before it, or by
/// another writer): every row of the groups.
fn meter_pages(meta: &ParquetMetaData, groups: &[usize], meter: &[u8]) -> Option<RowSelection> {
    let mut selectors = Vec::new();
    for &rg in groups {
        match admitted_pages(meta, rg, meter) {
            None => {
                let rows = meta.row_group(rg).num_rows().max(0) as usize;
                selectors.push(RowSelector::select(rows));
            }
            Some(pages) => {
                for (start, end, admits) in pages {
                    selectors.push(match admits {
                        true => RowSelector::select(end - start),
                        false => RowSelector::skip(end - start),
                    });
                }
            }
        }
    }
    Some(RowSelection::from(selectors))
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
