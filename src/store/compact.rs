//! Compaction: one sorted run per UTC date, for the report scan.
//!
//! Every seal writes one `readings` file per date it touched, each sorted by
//! meter, register and time. A scan merges them, and pays per file: a month
//! of one-minute seals is tens of thousands of sorted runs. Compaction
//! merges the readings files of one closed UTC date into one file of the
//! table `readings_compacted`, sorted the same way and holding exactly their
//! rows (the same canonical rows, so the same row hashes), and names those
//! files in its footer (`gapless.sources`, a JSON array of paths).
//!
//! The sources stay where they are: `readings` remains the record (what
//! DuckDB reads, what conservation counts, what proofs point into). A
//! compacted file is a derived copy, entered in the audit ledger like any
//! sealed file, which `audit verify` checks row for row against its
//! sources. Readings that arrive for a date after it was compacted are read
//! from their own files until the date is compacted again; the newer
//! compacted file (higher ledger index) then supersedes the older one.
//!
//! ```text
//! DATA/readings_compacted/date=2022-07-25/compact-<ledger index, 12 digits>.parquet
//! ```
//!
//! The file is written under the ledger lock (its footer names its ledger
//! index); the merge itself is done before the lock is taken, so a seal
//! waits at most for one file's encoding. A file left by a crash before its
//! ledger entry was written has an index at or past the ledger's end: the
//! next compaction removes it, and scans ignore it.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use std::sync::Arc;

use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::commit;
use super::ledger::{entry_name, AuditKey, Ledger, LedgerEntry, ENTRIES_DIR, LEDGER_DIR};
use super::tables::{READINGS, SCHEMA_VERSION};
use super::{
    format_micros, io_err, write_parquet_as, Layout, StoreError, DAY_MICROS, ROW_GROUP_ROWS,
};
use crate::journal::sync_dir;

pub const READINGS_COMPACTED: &str = "readings_compacted";
/// Footer key: the readings files a compacted file holds, as a JSON array
/// of paths relative to DATA.
pub const SOURCES_KEY: &str = "gapless.sources";
const PREFIX: &str = "compact-";

/// A compacted file that the ledger holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactedFile {
    pub index: u64,
    /// Relative to DATA, `/`-separated.
    pub path: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The readings files it holds (relative paths).
    pub sources: Vec<String>,
}

/// What one compaction wrote.
#[derive(Debug, Clone)]
pub struct Compaction {
    pub date: String,
    pub path: String,
    pub sources: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// The date partition of a table path: `readings/date=2022-07-25/...` →
/// `2022-07-25`.
pub fn date_of(path: &str) -> Option<&str> {
    path.split('/').find_map(|p| p.strip_prefix("date="))
}

/// The sources a compacted file's footer names.
pub fn footer_sources(path: &Path) -> Result<Vec<String>, StoreError> {
    let bad = |why: String| StoreError::Read {
        path: path.to_owned(),
        why,
    };
    let file = File::open(path).map_err(io_err(path))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let text = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == SOURCES_KEY))
        .and_then(|k| k.value.clone())
        .ok_or_else(|| bad(format!("no {SOURCES_KEY} in the footer")))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{SOURCES_KEY}: {e}")))
}

/// Compacted files on disk, by date, each with its ledger index from its
/// name (none checked against the ledger yet).
fn on_disk(data: &Path) -> Result<Vec<(String, u64, PathBuf)>, StoreError> {
    let root = data.join(READINGS_COMPACTED);
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for d in fs::read_dir(&root).map_err(io_err(&root))? {
        let d = d.map_err(io_err(&root))?;
        let name = d.file_name().to_string_lossy().into_owned();
        let Some(date) = name.strip_prefix("date=") else {
            continue;
        };
        let dir = d.path();
        for f in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let f = f.map_err(io_err(&dir))?;
            let fname = f.file_name().to_string_lossy().into_owned();
            if let Some(index) = fname
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push((date.to_owned(), index, f.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest compacted file of each date that the ledger holds (its entry
/// exists and names it), with its sources. What a scan reads instead of
/// those sources.
pub fn latest(data: &Path) -> Result<BTreeMap<String, CompactedFile>, StoreError> {
    let entries = data.join(LEDGER_DIR).join(ENTRIES_DIR);
    let mut out: BTreeMap<String, CompactedFile> = BTreeMap::new();
    for (date, index, path) in on_disk(data)?.into_iter().rev() {
        if out.contains_key(&date) {
            continue;
        }
        let rel = format!("{READINGS_COMPACTED}/date={date}/{PREFIX}{index:012}.parquet");
        let entered = fs::read(entries.join(entry_name(index)))
            .ok()
            .and_then(|b| serde_json::from_slice::<LedgerEntry>(&b).ok())
            .is_some_and(|e| e.path == rel && e.table == READINGS_COMPACTED);
        if !entered {
            continue;
        }
        let sources = footer_sources(&path)?;
        out.insert(
            date.clone(),
            CompactedFile {
                index,
                path: rel,
                date,
                sources,
            },
        );
    }
    Ok(out)
}

/// Compacts every date that ended at least `grace_micros` before `now`
/// (µs) and that a scan would read as two or more runs: its newest
/// compacted file and the readings files that file does not hold. Each
/// compaction holds every readings file of its date. Returns what was
/// written, oldest date first. `stop` is asked before each date.
pub fn compact(
    data: &Path,
    key: &AuditKey,
    now: i64,
    grace_micros: i64,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Compaction>, StoreError> {
    let mut by_date: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut old_schema: HashSet<String> = HashSet::new();
    for m in commit::read_all(data)? {
        for f in m.files.iter().filter(|f| f.table == READINGS) {
            let Some(date) = date_of(&f.path) else {
                continue;
            };
            // Only files the ledger holds, of the current schema (a
            // compacted file has one schema).
            match &f.entry {
                Some(e) if e.schema_version == SCHEMA_VERSION => {}
                _ => {
                    old_schema.insert(date.to_owned());
                }
            }
            by_date
                .entry(date.to_owned())
                .or_default()
                .push(f.path.clone());
        }
    }
    let latest = latest(data)?;
    let mut done = Vec::new();
    for (date, files) in by_date {
        if old_schema.contains(&date) {
            tracing::debug!(
                date,
                "not compacted: files of another schema version or outside the ledger"
            );
            continue;
        }
        let Some(start) = day_start(&date) else {
            continue;
        };
        if start + DAY_MICROS + grace_micros > now {
            continue;
        }
        let runs = match latest.get(&date) {
            Some(c) => {
                let held: HashSet<&str> = c.sources.iter().map(String::as_str).collect();
                1 + files.iter().filter(|f| !held.contains(f.as_str())).count()
            }
            None => files.len(),
        };
        if runs < 2 {
            continue;
        }
        if stop() {
            break;
        }
        done.push(compact_date(data, key, &date, &files)?);
    }
    Ok(done)
}

/// µs of 00:00 UTC of `YYYY-MM-DD`.
fn day_start(date: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Merges `sources` (readings files of `date`, in commit order) into one
/// compacted file and enters it in the ledger.
pub fn compact_date(
    data: &Path,
    key: &AuditKey,
    date: &str,
    sources: &[String],
) -> Result<Compaction, StoreError> {
    let started = std::time::Instant::now();
    let sorted = merge(data, sources)?;
    let merged = started.elapsed();
    let rel_dir = format!("{READINGS_COMPACTED}/date={date}");
    let dir = data.join(&rel_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let ledger = Ledger::open(data)?;
    let mut writer = ledger.writer()?;
    let locked = std::time::Instant::now();
    remove_unentered(data, writer.next_index())?;
    let index = writer.next_index();
    let name = format!("{PREFIX}{index:012}.parquet");
    let metadata = vec![
        KeyValue::new("gapless.table".into(), READINGS_COMPACTED.to_string()),
        KeyValue::new("gapless.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new(
            SOURCES_KEY.into(),
            serde_json::to_string(sources).unwrap_or_default(),
        ),
    ];
    let n = sorted.num_rows();
    let chunks = (0..n.max(1))
        .step_by(ROW_GROUP_ROWS)
        .map(|at| sorted.slice(at.min(n), ROW_GROUP_ROWS.min(n - at.min(n))));
    let facts = write_parquet_as(
        &dir.join(&name),
        chunks,
        metadata,
        Some(index),
        Layout::Compacted,
    )?;
    sync_dir(&dir)?;
    sync_dir(&data.join(READINGS_COMPACTED))?;
    let path = format!("{rel_dir}/{name}");
    let sealed_at = format_micros(chrono::Utc::now().timestamp_micros());
    writer.append(&facts.entry(index, READINGS_COMPACTED, &path, None, &sealed_at))?;
    writer.checkpoint(key)?;
    tracing::info!(
        date,
        path,
        sources = sources.len(),
        rows = facts.rows,
        merge_ms = merged.as_millis() as u64,
        // How long seals waited for the ledger lock.
        locked_ms = locked.elapsed().as_millis() as u64,
        "compacted"
    );
    Ok(Compaction {
        date: date.to_owned(),
        path,
        sources: sources.len(),
        rows: facts.rows,
        bytes: facts.bytes,
    })
}

/// Removes compacted files (and temporaries) that a crash left before
/// their ledger entry: indices from `next_index` on. Called under the
/// ledger lock, so no writer is making one.
fn remove_unentered(data: &Path, next_index: u64) -> Result<(), StoreError> {
    for (_, index, path) in on_disk(data)? {
        if index >= next_index {
            tracing::warn!(path = %path.display(), "removing a compacted file without a ledger entry");
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    let root = data.join(READINGS_COMPACTED);
    for d in fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(f.path());
            }
        }
    }
    Ok(())
}

/// The rows of `sources`, all columns, sorted as a seal sorts them: by
/// meter, register, time and receipt, ties in file order.
fn merge(data: &Path, sources: &[String]) -> Result<RecordBatch, StoreError> {
    let mut batches = Vec::new();
    for rel in sources {
        let path = data.join(rel);
        let bad = |why: String| StoreError::Read {
            path: path.clone(),
            why,
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(ROW_GROUP_ROWS).build())
            .map_err(|e| bad(e.to_string()))?;
        for b in reader {
            batches.push(b.map_err(|e| bad(e.to_string()))?);
        }
    }
    let Some(first) = batches.first() else {
        return Err(StoreError::Read {
            path: data.join(sources.first().map_or("", String::as_str)),
            why: "no rows to compact".into(),
        });
    };
    let schema = first.schema();
    let all =
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| StoreError::Read {
            path: data.join(&sources[0]),
            why: format!("sources differ in schema: {e}"),
        })?;
    drop(batches);
    let column = |name: &str| {
        all.column_by_name(name).ok_or_else(|| StoreError::Read {
            path: data.join(&sources[0]),
            why: format!("no {name} column"),
        })
    };
    let mistyped = |name: &str| StoreError::Read {
        path: data.join(&sources[0]),
        why: format!("column {name} has an unexpected type"),
    };
    let meter = column("meter_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| mistyped("meter_id"))?;
    let register = column("register")?
        .as_string_opt::<i32>()
        .ok_or_else(|| mistyped("register"))?;
    let ts = column("ts")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| mistyped("ts"))?
        .values();
    let seq = column("receipt_seq")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| mistyped("receipt_seq"))?
        .values();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        meter
            .value(a)
            .cmp(meter.value(b))
            .then_with(|| register.value(a).cmp(register.value(b)))
            .then_with(|| ts[a].cmp(&ts[b]))
            .then_with(|| seq[a].cmp(&seq[b]))
            .then_with(|| a.cmp(&b))
    });
    let sorted =
        arrow_select::take::take_record_batch(&all, &UInt32Array::from(order)).map_err(|e| {
            StoreError::Read {
                path: data.join(&sources[0]),
                why: e.to_string(),
            }
        })?;
    Ok(narrow_decimals(sorted))
}

/// Declares decimal columns whose values all have at most 18 digits with
/// precision 18, which Parquet stores as 64-bit integers: a scan decodes
/// those several times faster than 16-byte fixed-length values. The values,
/// and so the canonical rows (which do not encode precision), are the same.
fn narrow_decimals(batch: RecordBatch) -> RecordBatch {
    const MAX18: i128 = 999_999_999_999_999_999;
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match (f.data_type(), c.as_primitive_opt::<Decimal128Type>()) {
            (DataType::Decimal128(p, s), Some(d))
                if *p > 18 && d.values().iter().all(|v| (-MAX18..=MAX18).contains(v)) =>
            {
                let narrowed = d.clone().with_precision_and_scale(18, *s);
                match narrowed {
                    Ok(n) => {
                        fields.push(
                            f.as_ref()
                                .clone()
                                .with_data_type(DataType::Decimal128(18, *s)),
                        );
                        columns.push(Arc::new(n));
                    }
                    Err(_) => return batch,
                }
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}
