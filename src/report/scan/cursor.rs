//! One sorted run being read: a readings file's columns decoded a batch
//! at a time (the low-cardinality strings as dictionaries), and its rows
//! taken into the chunk's series a run of one series at a time.

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

use super::super::ReportError;
use super::{partition, Chunk, MeterRange, SeriesBuf};
use crate::continuity::series::Point;
use crate::continuity::DAY;
use crate::reading::{Medium, VALUE_SCALE};
use crate::store::tables::readings_schema;

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
pub(super) struct Cursor {
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
    pub(super) fn open(
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

    pub(super) fn is_done(&self) -> bool {
        self.cols.is_none()
    }

    /// Where a chunk that takes at most about `rows` rows of this run
    /// should end: the meter `rows` ahead in the current batch (or the
    /// batch's last), or just past the head meter when that is the same.
    /// None when done.
    pub(super) fn chunk_bound(&self, rows: usize) -> Option<Cow<'_, str>> {
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
    pub(super) fn take_until(&mut self, hi: &str, chunk: &mut Chunk) -> Result<(), ReportError> {
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
