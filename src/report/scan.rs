//! Streams the sealed `readings` series by series, without sorting (the
//! files it reads are listed by `catalog`).
//!
//! Every sealed readings file is a sorted run: rows ordered by meter,
//! register and time. A compacted date is one run (`store::compact`): its
//! newest compacted file, plus the readings files of the date that file does
//! not hold yet. The scan keeps one cursor per run and works through
//! the meters a chunk at a time: each cursor in turn adds its rows of the
//! chunk's meters to per-series buffers (a sequential pass over its decoded
//! batch, finding each run's series by moving forward in the chunk's sorted
//! keys), then the chunk's series are judged in order. Taking a chunk from
//! each cursor in turn, rather than one series from every cursor, keeps the
//! work in cache when there are hundreds of runs. A series' rows from
//! several files are in time order when the files are (arrival order,
//! which is mostly time order); otherwise they are sorted, per series. A
//! meter's series are gathered in one chunk and judged together, so that
//! the set dates one register reports explain a reset in another.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{Array, BooleanArray, Decimal128Array, Int32Array, Int64Array, StringArray};
use arrow_array::{RecordBatch, TimestampMicrosecondArray};
use arrow_array::{UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use super::catalog::StoredReadings;
use super::ReportError;
use crate::continuity::series::{inferred_or_builtin, FirstReceived, Point, SeriesRules};
use crate::continuity::window::SeriesInput;
use crate::continuity::{Context, DAY, DEFAULT_SEQ_WRAP};
use crate::reading::{Medium, VALUE_SCALE};
use crate::store::tables::readings_schema;

/// Scans split the meters between two threads (the machine has 2 cores);
/// `GAPLESS_SCAN_THREADS=1` scans on one (to measure the difference).
fn scan_threads() -> usize {
    std::env::var("GAPLESS_SCAN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}
/// Below this, one thread is quicker than two.
const MIN_ROWS_TO_SPLIT: u64 = 200_000;

/// Rows decoded at a time per run: a scan thread decodes about
/// [`BATCH_ROWS_PER_SCAN`] rows at a time across its runs, at least
/// [`MIN_BATCH_ROWS`] per run. Few large runs (compacted dates) decode in
/// large batches (8 K rows a batch cost 6 % more time than 64 K on a month
/// of 31 compacted dates), many runs in small ones (memory).
const BATCH_ROWS_PER_SCAN: usize = 2 * 1024 * 1024;
const MIN_BATCH_ROWS: usize = 8 * 1024;
const MAX_BATCH_ROWS: usize = 64 * 1024;

/// The columns the rules need. Not `value`: the text is not needed to
/// judge, and `value_decimals` says how to print a value as it was sent.
/// (Files of schema version 1 lack `value_decimals`: there a series' values
/// are printed with the most decimals any of them needs.)
const COLUMNS: [&str; 14] = [
    "meter_id",
    "register",
    "ts",
    "medium",
    "unit",
    "value_decimal",
    "value_decimals",
    "seq",
    "kind",
    "conflict",
    "received_at",
    "format",
    "receipt_seq",
    "reading_index",
];

/// Columns read as dictionaries (their Parquet encoding): no string is
/// copied per row, and a run of one series is a run of equal keys.
const DICTIONARY: [&str; 6] = ["meter_id", "register", "medium", "unit", "kind", "format"];

/// The readings schema with the low-cardinality strings as dictionaries
/// (without `value_decimals` for files written before it existed).
fn read_schema(has_decimals: bool, value_type: Option<&DataType>) -> SchemaRef {
    let fields: Vec<Field> = readings_schema()
        .fields()
        .iter()
        .filter(|f| has_decimals || f.name() != "value_decimals")
        .map(|f| {
            if let (Some(t), "value_decimal") = (value_type, f.name().as_str()) {
                // Compacted files may declare a smaller precision (the
                // same values, stored as 64-bit integers).
                Field::new(f.name(), t.clone(), f.is_nullable())
            } else if DICTIONARY.contains(&f.name().as_str()) {
                Field::new(
                    f.name(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    f.is_nullable(),
                )
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// 10^(9 − d): a value with at most d decimals is a multiple of it.
const DECIMAL_STEP: [i128; 10] = [
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// Decimal places a value needs (`326.070` → 2: trailing zeros are not
/// kept by the number; the series' maximum is its precision).
fn decimals_needed(value: i128) -> u8 {
    let unit = 10i64.pow(VALUE_SCALE);
    let mut frac = match i64::try_from(value) {
        Ok(v) => v.rem_euclid(unit),
        Err(_) => value.rem_euclid(unit as i128) as i64,
    };
    if frac == 0 {
        return 0;
    }
    let mut d = VALUE_SCALE as u8;
    while frac % 10 == 0 {
        frac /= 10;
        d -= 1;
    }
    d
}

/// A range of meter ids `[lo, hi)`; None = unbounded.
#[derive(Debug, Clone, Copy, Default)]
struct MeterRange<'a> {
    lo: Option<&'a str>,
    hi: Option<&'a str>,
}

impl MeterRange<'_> {
    fn overlaps(&self, first: &str, last: &str) -> bool {
        self.lo.is_none_or(|lo| last >= lo) && self.hi.is_none_or(|hi| first < hi)
    }
}

impl StoredReadings {
    /// Calls `f` once per series (meter, register), in order, and once per
    /// registry meter that has no readings; returns what it returned. The
    /// meters are split in two ranges at the median row group, scanned on
    /// two threads.
    pub fn map_series<T: Send>(
        &self,
        ctx: &Context,
        f: impl Fn(&SeriesInput) -> T + Sync,
    ) -> Result<Vec<T>, ReportError> {
        let split = scan_threads() > 1 && self.rows >= MIN_ROWS_TO_SPLIT;
        match &self.progress {
            Some(tell) => self.map_series_split(
                ctx,
                |s| {
                    tell((s.points.len() + s.conflicts.len()) as u64);
                    f(s)
                },
                split,
            ),
            None => self.map_series_split(ctx, f, split),
        }
    }

    /// [`map_series`](Self::map_series), on two threads if `split` (and the
    /// row groups give a place to split).
    fn map_series_split<T: Send>(
        &self,
        ctx: &Context,
        f: impl Fn(&SeriesInput) -> T + Sync,
        split: bool,
    ) -> Result<Vec<T>, ReportError> {
        let pivot = if split { self.pivot() } else { None };
        let (mut out, mut seen) = match &pivot {
            Some(p) => {
                let (a, b) = std::thread::scope(|scope| {
                    let lower = scope.spawn(|| {
                        self.scan_range(
                            ctx,
                            &f,
                            MeterRange {
                                lo: None,
                                hi: Some(p),
                            },
                        )
                    });
                    let upper = self.scan_range(
                        ctx,
                        &f,
                        MeterRange {
                            lo: Some(p),
                            hi: None,
                        },
                    );
                    let lower = lower
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e));
                    (lower, upper)
                });
                let (mut out, mut seen) = a?;
                let (out_b, seen_b) = b?;
                out.extend(out_b);
                seen.extend(seen_b);
                (out, seen)
            }
            _ => self.scan_range(ctx, &f, MeterRange::default())?,
        };
        seen.sort_unstable();
        for (id, entries) in ctx.registry.meters() {
            if seen.binary_search_by(|s| s.as_str().cmp(id)).is_ok() {
                continue;
            }
            let Some(entry) = entries.last() else {
                continue;
            };
            let setup = ctx.setup(id, entry.medium, false);
            out.push(f(&SeriesInput {
                meter_id: id,
                register: None,
                medium: setup.medium,
                unit: None,
                group: entry.group.as_deref(),
                points: &[],
                conflicts: &[],
                rules: SeriesRules {
                    cfg: &ctx.config,
                    medium: setup.medium,
                    interval: setup
                        .interval
                        .unwrap_or_else(|| inferred_or_builtin(setup.medium, &[])),
                    seq_wrap: setup.seq_wrap,
                    set_days: &[],
                    replacements: &[],
                },
                service: ctx.registry.service_span(id),
                in_registry: true,
            }));
        }
        Ok(out)
    }

    /// Calls `f` once per series of one meter, reading only the row groups
    /// that can hold it (by their statistics).
    pub fn map_meter<T>(
        &self,
        ctx: &Context,
        meter: &str,
        f: impl Fn(&SeriesInput) -> T,
    ) -> Result<Vec<T>, ReportError> {
        // The smallest string after `meter`: ids never contain NUL.
        let hi = format!("{meter}\0");
        let range = MeterRange {
            lo: Some(meter),
            hi: Some(&hi),
        };
        Ok(self.scan_range(ctx, &f, range)?.0)
    }

    /// The median of the row groups' first meters: where the key space is
    /// split between the threads (None with too few row groups to split).
    fn pivot(&self) -> Option<String> {
        let mut firsts: Vec<&str> = self
            .files
            .iter()
            .flat_map(|f| f.row_groups.iter().map(|(first, _)| first.as_str()))
            .collect();
        if firsts.len() < 2 {
            return None;
        }
        firsts.sort_unstable();
        let p = firsts[firsts.len() / 2];
        (p > firsts[0]).then(|| p.to_owned())
    }

    /// The series of one range of meters, in order, and the meters seen.
    fn scan_range<T>(
        &self,
        ctx: &Context,
        f: &impl Fn(&SeriesInput) -> T,
        range: MeterRange,
    ) -> Result<(Vec<T>, Vec<String>), ReportError> {
        let mut cursors = Vec::with_capacity(self.files.len());
        let batch_rows =
            (BATCH_ROWS_PER_SCAN / self.files.len().max(1)).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS);
        for run in &self.files {
            let groups: Vec<usize> = run
                .row_groups
                .iter()
                .enumerate()
                .filter(|(_, (first, last))| range.overlaps(first, last))
                .map(|(i, _)| i)
                .collect();
            if groups.is_empty() {
                continue;
            }
            // The receipt columns say which readings came first: needed
            // only where an interval may have to be inferred.
            let receipts = run.medium.is_none_or(|m| !interval_always_known(ctx, m));
            if let Some(c) = Cursor::open(&run.path, groups, range, batch_rows, receipts)? {
                cursors.push(c);
            }
        }
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut chunk = Chunk::default();
        // A chunk of meters at a time: each cursor in turn adds its rows of
        // the chunk (a sequential pass over its batch, so that hundreds of
        // runs do not each cost a cache miss per series), then the chunk's
        // meters are judged in order.
        loop {
            cursors.retain(|c| !c.is_done());
            let mut hi: Option<Cow<str>> = None;
            for c in &cursors {
                if let Some(b) = c.chunk_bound(self.chunk_rows) {
                    if hi.as_ref().is_none_or(|h| b < *h) {
                        hi = Some(b);
                    }
                }
            }
            let Some(hi) = hi.map(Cow::into_owned) else {
                break;
            };
            for c in &mut cursors {
                c.take_until(&hi, &mut chunk)?;
            }
            chunk.judge(ctx, f, &mut out, &mut seen);
        }
        Ok((out, seen))
    }
}

/// Whether every series of readings of `medium` has a configured interval
/// (none is inferred): the configuration gives one for the medium, and no
/// registry entry turns a meter into one without.
fn interval_always_known(ctx: &Context, medium: Medium) -> bool {
    let configured = |m: &Medium| ctx.config.intervals_s.contains_key(m);
    configured(&medium)
        && ctx.registry.meters().all(|(_, entries)| {
            entries
                .last()
                .is_none_or(|e| e.expected_interval_s.is_some() || configured(&e.medium))
        })
}

/// The first row in `0..n` for which `below` is false.
fn partition(n: usize, below: impl Fn(usize) -> bool) -> usize {
    crate::continuity::first_not_below(0, n as u64, |i| below(i as usize)) as usize
}

/// One series of the meter being gathered.
#[derive(Debug, Default)]
struct SeriesBuf {
    register: String,
    medium: Option<Medium>,
    unit: String,
    frame_counter: bool,
    points: Vec<Point>,
    conflicts: Vec<i64>,
    /// Only set-date values: not a telegram stream of its own.
    set_date_only: bool,
    /// The most decimals any of its values needs.
    decimals: u8,
    /// Days of its set-date values (they explain resets in every register
    /// of the meter).
    set_days: Vec<i64>,
    /// Its first received readings: what an unknown interval is inferred
    /// from (the live engine's rule).
    first: FirstReceived,
}

impl SeriesBuf {
    fn reset(&mut self, register: &str) {
        self.register.clear();
        self.register.push_str(register);
        self.medium = None;
        self.unit.clear();
        self.frame_counter = false;
        self.points.clear();
        self.conflicts.clear();
        self.set_date_only = true;
        self.decimals = 0;
        self.set_days.clear();
        self.first = FirstReceived::default();
    }
}

/// The series of a range of meters being gathered (buffers reused across
/// chunks).
#[derive(Debug, Default)]
struct Chunk {
    /// Meter, register and buffer of each series, in order.
    keys: Vec<(String, String, usize)>,
    series: Vec<SeriesBuf>,
    used: usize,
    /// The set-date days of the meter being judged.
    set_days: Vec<i64>,
}

impl Chunk {
    /// The buffer of series (`meter`, `register`), created when new. `k` is
    /// where the previous lookup of this pass ended: a cursor's series come
    /// in order, so the search only moves forward.
    fn slot(&mut self, k: &mut usize, meter: &str, register: &str) -> usize {
        // Mostly the next series is the one the last lookup found or the
        // one after it.
        for i in *k..(*k + 2).min(self.keys.len()) {
            let (m, r, slot) = &self.keys[i];
            if m == meter && r == register {
                *k = i;
                return *slot;
            }
        }
        while *k < self.keys.len() && {
            let (m, r, _) = &self.keys[*k];
            (m.as_str(), r.as_str()) < (meter, register)
        } {
            *k += 1;
        }
        if let Some((m, r, slot)) = self.keys.get(*k) {
            if m == meter && r == register {
                return *slot;
            }
        }
        if self.used == self.series.len() {
            self.series.push(SeriesBuf::default());
        }
        let slot = self.used;
        self.used += 1;
        self.series[slot].reset(register);
        self.keys
            .insert(*k, (meter.to_owned(), register.to_owned(), slot));
        slot
    }

    /// Judges every series of the chunk, meter by meter, and empties it.
    fn judge<T>(
        &mut self,
        ctx: &Context,
        f: &impl Fn(&SeriesInput) -> T,
        out: &mut Vec<T>,
        seen: &mut Vec<String>,
    ) {
        let keys = std::mem::take(&mut self.keys);
        for meter in keys.chunk_by(|a, b| a.0 == b.0) {
            let id = meter[0].0.as_str();
            seen.push(id.to_owned());
            self.set_days.clear();
            for (_, _, slot) in meter {
                self.set_days
                    .extend_from_slice(&self.series[*slot].set_days);
            }
            self.set_days.sort_unstable();
            self.set_days.dedup();
            let replacements = ctx.registry.replacements(id);
            let entry = ctx.registry.latest(id);
            for (_, _, slot) in meter {
                let s = &mut self.series[*slot];
                let Some(medium) = s.medium else { continue };
                if s.set_date_only {
                    continue;
                }
                if !s.points.is_sorted_by_key(|p| p.ts) {
                    s.points.sort_by_key(|p| p.ts);
                }
                for p in &mut s.points {
                    p.decimals = s.decimals;
                }
                let setup = ctx.setup(id, medium, s.frame_counter);
                let interval = setup
                    .interval
                    .unwrap_or_else(|| s.first.interval(setup.medium));
                s.conflicts.sort_unstable();
                out.push(f(&SeriesInput {
                    meter_id: id,
                    register: Some(&s.register),
                    medium: setup.medium,
                    unit: Some(&s.unit),
                    group: entry.and_then(|e| e.group.as_deref()),
                    points: &s.points,
                    conflicts: &s.conflicts,
                    rules: SeriesRules {
                        cfg: &ctx.config,
                        medium: setup.medium,
                        interval,
                        seq_wrap: if setup.seq_wrap == 0 {
                            DEFAULT_SEQ_WRAP
                        } else {
                            setup.seq_wrap
                        },
                        set_days: &self.set_days,
                        replacements: &replacements,
                    },
                    service: ctx.registry.service_span(id),
                    in_registry: entry.is_some(),
                }));
            }
        }
        self.keys = keys;
        self.keys.clear();
        self.used = 0;
    }
}

/// A dictionary column: keys per row, values per batch.
struct Dict {
    keys: Int32Array,
    values: StringArray,
}

impl Dict {
    fn value(&self, row: usize) -> &str {
        self.values.value(self.keys.value(row) as usize)
    }

    /// The key of `s` in this batch's dictionary, if present.
    fn key_of(&self, s: &str) -> Option<i32> {
        (0..self.values.len())
            .find(|&i| self.values.value(i) == s)
            .map(|i| i as i32)
    }
}

/// The decoded columns of one batch.
struct Cols {
    rows: usize,
    meter: Dict,
    register: Dict,
    ts: TimestampMicrosecondArray,
    medium: Dict,
    unit: Dict,
    value: Decimal128Array,
    /// Decimal places as sent (None in schema version 1 files).
    decimals: Option<arrow_array::UInt8Array>,
    seq: UInt64Array,
    kind: Dict,
    /// The key of `set_date` in `kind`, if any row has it.
    set_date_key: Option<i32>,
    conflict: BooleanArray,
    /// Some row of the batch is a conflicting value (rare: skip the checks).
    any_conflict: bool,
    received: TimestampMicrosecondArray,
    format: Dict,
    /// Receipt keys (read only where an interval may be inferred).
    receipt: Option<(Int64Array, UInt32Array)>,
}

impl Cols {
    fn from_batch(b: &RecordBatch, path: &Path) -> Result<Cols, ReportError> {
        let bad = |why: String| ReportError::Read {
            path: path.to_owned(),
            why,
        };
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| bad(format!("column {name} missing")))
        };
        let dict = |name: &str| -> Result<Dict, ReportError> {
            let d = col(name)?
                .as_dictionary_opt::<Int32Type>()
                .ok_or_else(|| bad(format!("column {name} is not a dictionary")))?;
            Ok(Dict {
                keys: d.keys().clone(),
                values: d
                    .values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| bad(format!("column {name}: dictionary of non-strings")))?
                    .clone(),
            })
        };
        let kind = dict("kind")?;
        Ok(Cols {
            rows: b.num_rows(),
            meter: dict("meter_id")?,
            register: dict("register")?,
            ts: col("ts")?
                .as_primitive::<TimestampMicrosecondType>()
                .clone(),
            medium: dict("medium")?,
            unit: dict("unit")?,
            value: col("value_decimal")?
                .as_primitive::<Decimal128Type>()
                .clone(),
            decimals: b
                .column_by_name("value_decimals")
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::UInt8Type>())
                .cloned(),
            seq: col("seq")?.as_primitive::<UInt64Type>().clone(),
            set_date_key: kind.key_of("set_date"),
            kind,
            conflict: col("conflict")?.as_boolean().clone(),
            any_conflict: col("conflict")?.as_boolean().true_count() > 0,
            received: col("received_at")?
                .as_primitive::<TimestampMicrosecondType>()
                .clone(),
            format: dict("format")?,
            receipt: match (
                b.column_by_name("receipt_seq"),
                b.column_by_name("reading_index"),
            ) {
                (Some(seq), Some(index)) => Some((
                    seq.as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| bad("column receipt_seq is not INT64".into()))?
                        .clone(),
                    index
                        .as_primitive_opt::<UInt32Type>()
                        .ok_or_else(|| bad("column reading_index is not UINT32".into()))?
                        .clone(),
                )),
                _ => None,
            },
        })
    }
}

/// A sorted run being read: one readings file.
struct Cursor {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    cols: Option<Cols>,
    row: usize,
    /// Meters from here on belong to another scan.
    hi: Option<String>,
    /// The range's end was reached in the current batch.
    ended: bool,
}

impl Cursor {
    fn open(
        path: &Path,
        row_groups: Vec<usize>,
        range: MeterRange,
        batch_rows: usize,
        receipts: bool,
    ) -> Result<Option<Cursor>, ReportError> {
        let bad = |why: String| ReportError::Read {
            path: path.to_owned(),
            why,
        };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        use parquet::arrow::arrow_reader::ArrowReaderMetadata;
        let meta =
            ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| bad(e.to_string()))?;
        let has_decimals = meta.schema().field_with_name("value_decimals").is_ok();
        let value_type = meta
            .schema()
            .field_with_name("value_decimal")
            .ok()
            .map(|f| f.data_type().clone());
        let options =
            ArrowReaderOptions::new().with_schema(read_schema(has_decimals, value_type.as_ref()));
        let meta = ArrowReaderMetadata::try_new(meta.metadata().clone(), options)
            .map_err(|e| bad(e.to_string()))?;
        let b = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
        let columns = COLUMNS
            .iter()
            .copied()
            .filter(|c| receipts || !matches!(*c, "receipt_seq" | "reading_index"));
        let mask = ProjectionMask::columns(b.parquet_schema(), columns);
        let reader = b
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut c = Cursor {
            path: path.to_owned(),
            reader,
            cols: None,
            row: 0,
            hi: range.hi.map(str::to_owned),
            ended: false,
        };
        c.next_batch()?;
        // Rows before the range: skip them (they belong to another scan).
        if let Some(lo) = range.lo {
            while let Some(cols) = &c.cols {
                let start = partition(cols.rows, |i| cols.meter.value(i) < lo);
                if start < cols.rows {
                    c.row = start;
                    break;
                }
                c.next_batch()?;
            }
        }
        Ok((!c.is_done()).then_some(c))
    }

    fn next_batch(&mut self) -> Result<(), ReportError> {
        self.row = 0;
        self.cols = None;
        if self.ended {
            return Ok(());
        }
        // Skip empty batches; None at the end of the file or range.
        for b in self.reader.by_ref() {
            let b = b.map_err(|e| ReportError::Read {
                path: self.path.clone(),
                why: e.to_string(),
            })?;
            if b.num_rows() == 0 {
                continue;
            }
            let mut cols = Cols::from_batch(&b, &self.path)?;
            if let Some(hi) = &self.hi {
                // Rows are sorted by meter: cut the batch at the range's end.
                let keep = partition(cols.rows, |i| cols.meter.value(i) < hi.as_str());
                if keep < cols.rows {
                    cols.rows = keep;
                    self.ended = true;
                }
            }
            if cols.rows > 0 {
                self.cols = Some(cols);
            }
            break;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.cols.is_none()
    }

    /// Where a chunk that takes at most about `rows` rows of this run
    /// should end: the meter `rows` ahead in the current batch (or the
    /// batch's last), or just past the head meter when that is the same.
    /// None when done.
    fn chunk_bound(&self, rows: usize) -> Option<Cow<'_, str>> {
        let c = self.cols.as_ref()?;
        let head = c.meter.value(self.row);
        let ahead = c.meter.value((self.row + rows).min(c.rows - 1));
        Some(if ahead == head {
            Cow::Owned(format!("{head}\0"))
        } else {
            Cow::Borrowed(ahead)
        })
    }

    /// Takes this cursor's rows of meters before `hi` into the chunk's
    /// series (runs may go on across batches).
    fn take_until(&mut self, hi: &str, chunk: &mut Chunk) -> Result<(), ReportError> {
        let mut k = 0;
        while let Some(c) = &self.cols {
            // The rows of this batch before `hi` (sorted by meter).
            let end = self.row + partition(c.rows - self.row, |i| c.meter.value(self.row + i) < hi);
            while self.row < end {
                let slot = chunk.slot(&mut k, c.meter.value(self.row), c.register.value(self.row));
                self.row = take_run(c, self.row, end, &mut chunk.series[slot]);
            }
            if end < c.rows {
                return Ok(());
            }
            self.next_batch()?;
        }
        Ok(())
    }
}

/// Adds the run of rows of one series (equal dictionary keys) that starts
/// at `row` to `s`; returns the row after it. Set-date values give their
/// day to the series' set days.
fn take_run(c: &Cols, row: usize, end: usize, s: &mut SeriesBuf) -> usize {
    let (mk, rk) = (c.meter.keys.value(row), c.register.keys.value(row));
    if s.medium.is_none() {
        s.medium = Medium::parse(c.medium.value(row));
        s.unit.push_str(c.unit.value(row));
        s.frame_counter = matches!(c.format.value(row), "chirpstack" | "tts");
    }
    let (mkeys, rkeys) = (c.meter.keys.values(), c.register.keys.values());
    let (ts, value, received) = (c.ts.values(), c.value.values(), c.received.values());
    let kinds = c.kind.keys.values();
    let receipts = c.receipt.as_ref().map(|(s, i)| (s.values(), i.values()));
    let mut row = row;
    while row < end && mkeys[row] == mk && rkeys[row] == rk {
        let t = ts[row];
        if c.set_date_key == Some(kinds[row]) {
            s.set_days.push(t.div_euclid(DAY));
        } else if c.any_conflict && c.conflict.value(row) {
            s.conflicts.push(t);
            s.set_date_only = false;
        } else {
            s.set_date_only = false;
            let v = value[row];
            match &c.decimals {
                // As sent (a value never needs more decimals than it came
                // with).
                Some(d) => s.decimals = s.decimals.max(d.value(row).min(9)),
                // Files of schema version 1: one check per row, does the
                // value need more decimals than the series so far?
                None => {
                    let step = DECIMAL_STEP[s.decimals.min(9) as usize];
                    let rest = match i64::try_from(v) {
                        Ok(v) => (v % step as i64) as i128,
                        Err(_) => v % step,
                    };
                    if rest != 0 {
                        s.decimals = s.decimals.max(decimals_needed(v));
                    }
                }
            }
            if let Some((seqs, indexes)) = receipts {
                s.first.offer((seqs[row] as u64, indexes[row]), t);
            }
            s.points.push(Point {
                ts: t,
                value: v,
                decimals: 0,
                seq: (!c.seq.is_null(row)).then(|| c.seq.value(row)),
                received_at: received[row],
            });
        }
        row += 1;
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalRecord;
    use crate::report::LoadCache;
    use crate::service::Pipeline;
    use crate::store::tables::READINGS;
    use crate::store::{commit, compact};

    /// The two-thread scan (split at a meter) gives exactly what one thread
    /// gives, series for series, including meters on both sides of the
    /// split, late files and registry meters without readings.
    #[test]
    fn two_threads_give_what_one_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Pipeline::open(
            crate::store::StoreConfig {
                ledger: false,
                ..crate::store::StoreConfig::new(tmp.path())
            },
            crate::ingest::IngestConfig::historic(1_000_000),
        )
        .unwrap();
        let mut seq = 0;
        // Three commits with different meter sets (so row groups start at
        // different meters), and one late commit that fills a gap.
        for (meters, hours) in [
            (0..30, 0..12),
            (10..40, 12..24),
            (5..35, 24..30),
            (0..40, 6..8),
        ] {
            for m in meters {
                for h in hours.clone() {
                    if hours.start == 0 && m % 7 == 0 && (6..8).contains(&h) {
                        continue; // lost now, forwarded by the last commit
                    }
                    if hours.start == 0 && m == 20 {
                        continue; // first seen in a later run, between others
                    }
                    seq += 1;
                    let ts = chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
                        .unwrap()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    store.ingest(&JournalRecord {
                        seq,
                        received_at: 1_658_707_200_000_000,
                        topic: "meters/t".into(),
                        payload: format!(
                            r#"{{"meter_id":"M-{m:03}","medium":"water","unit":"m3","value":"{h}.125","ts":"{ts}","seq":{h}}}"#
                        )
                        .into_bytes()
                        .into(),
                    })
.unwrap();
                }
            }
            store.seal().unwrap();
        }
        let stored = StoredReadings::load(tmp.path()).unwrap();
        assert!(stored.pivot().is_some(), "the files give a place to split");
        let registry = crate::continuity::registry::Registry::parse(
            "meter_id,medium,expected_interval_s,group,installed_at,removed_at\nM-999,water,3600,,,\nM-001,water,3600,g,,\n",
        )
        .unwrap();
        let ctx = Context {
            registry: std::sync::Arc::new(registry),
            ..Context::default()
        };
        let describe = |s: &SeriesInput| {
            let a = crate::continuity::series::analyze(
                s.points,
                &s.rules,
                Some(1_658_707_200_000_000 + 31 * 3_600_000_000),
            );
            format!(
                "{} {:?} {} {:?} {} {:?}",
                s.meter_id,
                s.register,
                s.points.len(),
                s.rules.interval,
                s.in_registry,
                a.gaps
                    .iter()
                    .map(|g| (g.from, g.to, g.missing, g.open))
                    .collect::<Vec<_>>()
            )
        };
        let mut stored = stored;
        let one = stored.map_series_split(&ctx, describe, false).unwrap();
        let two = stored.map_series_split(&ctx, describe, true).unwrap();
        assert_eq!(
            one.len(),
            41,
            "40 meters and one registry meter without readings"
        );
        assert_eq!(one, two);
        // Chunks of meters of any size (down to a meter per chunk) give
        // the same series.
        for rows in [0, 1, 5, 37] {
            stored.chunk_rows = rows;
            assert_eq!(
                stored.map_series_split(&ctx, describe, false).unwrap(),
                one,
                "{rows}"
            );
            assert_eq!(
                stored.map_series_split(&ctx, describe, true).unwrap(),
                one,
                "{rows}"
            );
        }
    }

    /// Copies a data directory, without its compacted files.
    fn copy_uncompacted(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_name() == compact::READINGS_COMPACTED {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                copy_uncompacted(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    /// Every point, conflict and set day of every series.
    fn every_series(data: &Path) -> (usize, Vec<String>) {
        series_of(&StoredReadings::load(data).unwrap())
    }

    fn series_of(stored: &StoredReadings) -> (usize, Vec<String>) {
        let all = stored
            .map_series_split(
                &Context::default(),
                |s: &SeriesInput| {
                    format!(
                        "{} {:?} {:?} {:?} {:?} {:?}",
                        s.meter_id, s.register, s.unit, s.points, s.conflicts, s.rules.set_days
                    )
                },
                false,
            )
            .unwrap();
        (stored.files.len(), all)
    }

    /// A compacted date reads as one run and gives, point for point, what
    /// its readings files give; readings that come for it later are read
    /// beside it until the next compaction holds them too; a compacted file
    /// the ledger does not hold (left by a crash) is ignored, then removed.
    #[test]
    fn compacted_runs_give_what_the_files_give() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut store = Pipeline::for_test(&data, usize::MAX);
        let mut seq = 0;
        let mut send = |store: &mut Pipeline, body: String| {
            seq += 1;
            store
                .ingest(&JournalRecord {
                    seq,
                    received_at: 1_658_707_200_000_000,
                    topic: "meters/t".into(),
                    payload: body.into_bytes().into(),
                })
                .unwrap();
        };
        let at = |h: i64| {
            chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        // Two days in four commits; the last forwards hours lost before.
        for (meters, hours) in [
            (0..20, 0..10),
            (5..25, 10..30),
            (0..25, 30..48),
            (0..25, 3..5),
        ] {
            for m in meters {
                for h in hours.clone() {
                    if hours.start == 0 && (3..5).contains(&h) && m % 3 == 0 {
                        continue;
                    }
                    send(
                        &mut store,
                        format!(
                            r#"{{"meter_id":"M-{m:03}","medium":"heat","unit":"kWh","value":"{h}.5","ts":"{}","seq":{h}}}"#,
                            at(h)
                        ),
                    );
                }
            }
            if hours.start == 0 {
                // A value of more than 18 digits (at scale 9) on the first day.
                send(
                    &mut store,
                    format!(
                        r#"{{"meter_id":"M-900","medium":"heat","unit":"kWh","value":"98765432109.125","ts":"{}"}}"#,
                        at(1)
                    ),
                );
            }
            // A conflict: the same meter and time with another value.
            send(
                &mut store,
                format!(
                    r#"{{"meter_id":"M-001","medium":"heat","unit":"kWh","value":"7","ts":"{}"}}"#,
                    at(hours.start)
                ),
            );
            store.seal().unwrap();
        }
        let key = crate::store::ledger::AuditKey::load_or_create(&data, None).unwrap();
        let never = 4_000_000_000_000_000;
        // A long-lived reader (the API) sees each change as a fresh one does.
        let mut cache = LoadCache::default();
        let mut cached = || series_of(&StoredReadings::load_cached(&data, &mut cache).unwrap());
        let before = every_series(&data);
        assert_eq!(cached(), before);
        assert_eq!(
            before.0, 5,
            "3 readings files of the first date, 2 of the second"
        );

        let done = compact::compact(&data, &key, never, 0, &|| false)
            .unwrap()
            .done;
        assert_eq!(
            done.iter()
                .map(|c| (c.date.as_str(), c.sources))
                .collect::<Vec<_>>(),
            [("2022-07-25", 3), ("2022-07-26", 2)]
        );
        let after = every_series(&data);
        assert_eq!(cached(), after);
        assert_eq!(after.0, 2, "one run per date");
        assert_eq!(after.1, before.1);
        // Values stored as 64-bit integers where every one fits.
        let value_type = |c: &compact::Compaction| {
            let f = File::open(data.join(&c.path)).unwrap();
            let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
            b.schema()
                .field_with_name("value_decimal")
                .unwrap()
                .data_type()
                .clone()
        };
        assert_eq!(value_type(&done[0]), DataType::Decimal128(38, 9));
        assert_eq!(value_type(&done[1]), DataType::Decimal128(18, 9));
        // A date is compacted once: nothing new, nothing to do.
        assert!(compact::compact(&data, &key, never, 0, &|| false)
            .unwrap()
            .done
            .is_empty());
        // Not before the date is over (plus the grace).
        let late_night = 1_658_707_200_000_000 + 2 * DAY - 1;
        assert!(compact::compact(&data, &key, late_night, 0, &|| false)
            .unwrap()
            .done
            .is_empty());

        // Late readings of a compacted date: read beside the compacted file.
        for m in 0..25 {
            send(
                &mut store,
                format!(
                    r#"{{"meter_id":"M-{m:03}","medium":"heat","unit":"kWh","value":"3.75","ts":"{}"}}"#,
                    chrono::DateTime::from_timestamp(1_658_707_200 + 3 * 3600 + 1800, 0)
                        .unwrap()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
        }
        store.seal().unwrap();
        let plain = tmp.path().join("plain");
        copy_uncompacted(&data, &plain);
        let truth = every_series(&plain);
        let late = every_series(&data);
        assert_eq!(cached(), late);
        assert_eq!(late.0, 3);
        assert_eq!(late.1, truth.1);

        // A compacted file that a crash left before its ledger entry is
        // not read, and the next compaction removes it.
        let first = data.join(&done[0].path);
        let orphan = first.with_file_name("compact-000000009999.parquet");
        std::fs::copy(&first, &orphan).unwrap();
        assert_eq!(every_series(&data), late);
        let again = compact::compact(&data, &key, never, 0, &|| false)
            .unwrap()
            .done;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].sources, 4);
        assert!(!orphan.exists());
        let last = every_series(&data);
        assert_eq!(cached(), last);
        assert_eq!(last.0, 2);
        assert_eq!(last.1, truth.1);

        // And the auditor's check holds: each compacted file, the old one
        // included, holds exactly the rows of the files it names.
        let v = crate::audit::verify(&data, None, &|_, _, _| {});
        assert!(v.is_clean(), "{:?}", v.findings);
        assert_eq!(v.compacted, 3);
    }

    /// A date that cannot be compacted (a source unreadable) is reported
    /// with why, and the other dates are compacted all the same.
    #[test]
    fn a_failed_date_does_not_hold_up_the_others() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut store = Pipeline::for_test(&data, usize::MAX);
        let mut seq = 0;
        // One reading of meter M-1 at hour `h` after 2022-07-25T00:00Z.
        let mut send = |store: &mut Pipeline, h: i64| {
            seq += 1;
            let ts = chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            store.ingest(&JournalRecord {
                seq,
                received_at: 1_658_707_200_000_000,
                topic: "meters/t".into(),
                payload: format!(
                    r#"{{"meter_id":"M-1","medium":"water","unit":"m3","value":"{h}","ts":"{ts}"}}"#
                )
                .into_bytes()
                .into(),
            })
.unwrap();
        };
        for hours in [0..30, 30..48] {
            for h in hours {
                send(&mut store, h);
            }
            store.seal().unwrap();
        }
        // 2022-07-25 is in one file, 2022-07-26 in two; a third date in two
        // files, one of them spoilt.
        for h in [60, 61] {
            send(&mut store, h);
            store.seal().unwrap();
        }
        let spoilt = commit::read_all(&data)
            .unwrap()
            .into_iter()
            .flat_map(|m| m.files)
            .find(|f| f.table == READINGS && f.path.contains("date=2022-07-27"))
            .unwrap()
            .path;
        std::fs::write(data.join(&spoilt), b"not parquet").unwrap();
        let key = crate::store::ledger::AuditKey::load_or_create(&data, None).unwrap();
        let round = compact::compact(&data, &key, 4_000_000_000_000_000, 0, &|| false).unwrap();
        assert_eq!(
            round
                .done
                .iter()
                .map(|c| c.date.as_str())
                .collect::<Vec<_>>(),
            ["2022-07-26"]
        );
        assert_eq!(round.failed.len(), 1);
        assert_eq!(round.failed[0].0, "2022-07-27");
        assert!(
            round.failed[0].1.to_string().contains(&spoilt),
            "{}",
            round.failed[0].1
        );
    }
}
