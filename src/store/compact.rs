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
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::statistics::Statistics;

use super::commit;
use super::ledger::{entry_name, AuditKey, Ledger, LedgerEntry};
use super::tables::{READINGS, SCHEMA_VERSION};
use super::{io_err, Layout, ParquetDraft, StoreError, DAY_MICROS, ROW_GROUP_ROWS};
use crate::layout::{sync_dir, ENTRIES_DIR, LEDGER_DIR, LOCK_FILE};
use crate::time::format_micros;

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

/// What a round of compaction did: the dates it compacted, and those it
/// could not (each with why; the others went ahead, and a scan reads a
/// failed date's files as they are).
#[derive(Debug, Default)]
pub struct Round {
    pub done: Vec<Compaction>,
    pub failed: Vec<(String, StoreError)>,
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
pub(crate) fn date_of(path: &str) -> Option<&str> {
    path.split('/').find_map(|p| p.strip_prefix("date="))
}

/// The sources a compacted file's footer names.
pub(crate) fn footer_sources(path: &Path) -> Result<Vec<String>, StoreError> {
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

/// The ledger index in a compacted file's name (`compact-<index>.parquet`).
fn index_of(file_name: &str) -> Option<u64> {
    file_name
        .strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(".parquet"))
        .and_then(|n| n.parse().ok())
}

/// The compacted file of `date` with ledger index `index`, with its
/// sources, if the ledger holds it.
fn entered_file(data: &Path, date: &str, index: u64) -> Result<Option<CompactedFile>, StoreError> {
    let entries = data.join(LEDGER_DIR).join(ENTRIES_DIR);
    if !entered(&entries, date, index) {
        return Ok(None);
    }
    let rel = format!("{READINGS_COMPACTED}/date={date}/{PREFIX}{index:012}.parquet");
    let sources = footer_sources(&data.join(&rel))?;
    Ok(Some(CompactedFile {
        index,
        path: rel,
        date: date.to_owned(),
        sources,
    }))
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
            if let Some(index) = index_of(&f.file_name().to_string_lossy()) {
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
    let mut out: BTreeMap<String, CompactedFile> = BTreeMap::new();
    for (date, index, _) in on_disk(data)?.into_iter().rev() {
        if out.contains_key(&date) {
            continue;
        }
        if let Some(f) = entered_file(data, &date, index)? {
            out.insert(date, f);
        }
    }
    Ok(out)
}

/// The newest compacted file of one date that the ledger holds, if any
/// (what [`latest`] gives for that date, reading only its directory).
pub(crate) fn latest_of_date(data: &Path, date: &str) -> Result<Option<CompactedFile>, StoreError> {
    let dir = data.join(READINGS_COMPACTED).join(format!("date={date}"));
    let mut indices = Vec::new();
    match fs::read_dir(&dir) {
        Ok(rd) => {
            for f in rd {
                let f = f.map_err(io_err(&dir))?;
                indices.extend(index_of(&f.file_name().to_string_lossy()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&dir)(e)),
    }
    indices.sort_unstable();
    for index in indices.into_iter().rev() {
        if let Some(f) = entered_file(data, date, index)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Compacts every date that ended at least `grace_micros` before `now`
/// (µs) and that a scan would read as two or more runs: its newest
/// compacted file and the readings files that file does not hold. Each
/// compaction holds every readings file of its date. Returns what was
/// written and what failed, oldest date first (an error here is one that
/// stops every date: the commit log or the lock). `stop` is asked before
/// each date.
pub fn compact(
    data: &Path,
    key: &AuditKey,
    now: i64,
    grace_micros: i64,
    stop: &dyn Fn() -> bool,
) -> Result<Round, StoreError> {
    compact_with_progress(data, key, now, grace_micros, stop, &|_, _, _| {})
}

/// [`compact`], telling `progress` (dates done, dates due, the date next)
/// before each date, and (dates done, dates due, "") at the end.
pub(crate) fn compact_with_progress(
    data: &Path,
    key: &AuditKey,
    now: i64,
    grace_micros: i64,
    stop: &dyn Fn() -> bool,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<Round, StoreError> {
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
    let _lock = lock_compaction(data)?;
    remove_debris(data)?;
    let latest = latest(data)?;
    let mut due = Vec::new();
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
        due.push((date, files));
    }
    let mut round = Round::default();
    for (i, (date, files)) in due.iter().enumerate() {
        progress(i, due.len(), date);
        if stop() {
            break;
        }
        match compact_date(data, key, date, files) {
            Ok(c) => round.done.push(c),
            Err(e) => {
                tracing::error!(date, error = %e, "compaction of a date failed; its files are read as they are");
                round.failed.push((date.clone(), e));
            }
        }
    }
    progress(round.done.len() + round.failed.len(), due.len(), "");
    Ok(round)
}

/// µs of 00:00 UTC of `YYYY-MM-DD`.
fn day_start(date: &str) -> Option<i64> {
    crate::time::parse_date(date).ok()
}

/// Merges `sources` (readings files of `date`, in commit order) into one
/// compacted file and enters it in the ledger. The merge streams (a batch
/// of each source in memory at a time) into a draft; the ledger lock is
/// taken only to seal it. Call with the compaction lock held.
pub(crate) fn compact_date(
    data: &Path,
    key: &AuditKey,
    date: &str,
    sources: &[String],
) -> Result<Compaction, StoreError> {
    let started = std::time::Instant::now();
    let rel_dir = format!("{READINGS_COMPACTED}/date={date}");
    let dir = data.join(&rel_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let metadata = vec![
        KeyValue::new("gapless.table".into(), READINGS_COMPACTED.to_string()),
        KeyValue::new("gapless.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new(
            SOURCES_KEY.into(),
            serde_json::to_string(sources).unwrap_or_default(),
        ),
    ];
    ensure_open_files(sources.len() + 64).map_err(|why| StoreError::Read {
        path: dir.clone(),
        why,
    })?;
    let mut merge = Merge::open(data, sources)?;
    let mut draft = ParquetDraft::create(
        &dir.join(format!("{PREFIX}pending.parquet")),
        &merge.schema,
        metadata,
        true,
        Layout::Compacted,
    )?;
    while let Some(batch) = merge.next_batch(ROW_GROUP_ROWS)? {
        draft.write(&batch)?;
    }
    draft.finish_rows()?;
    let merged = started.elapsed();
    let ledger = Ledger::open(data)?;
    let mut writer = ledger.writer()?;
    let locked = std::time::Instant::now();
    let index = writer.next_index();
    let name = format!("{PREFIX}{index:012}.parquet");
    let facts = draft.seal(&dir.join(&name), Some(index))?;
    sync_dir(&dir)?;
    sync_dir(&data.join(READINGS_COMPACTED))?;
    let path = format!("{rel_dir}/{name}");
    let sealed_at = format_micros(crate::time::now_micros());
    writer.append(&facts.entry(index, READINGS_COMPACTED, &path, None, &sealed_at))?;
    writer.checkpoint(key)?;
    tracing::info!(
        date,
        path,
        sources = sources.len(),
        rows = facts.rows,
        merge_ms = merged.as_millis() as u64,
        // How long seals waited for this compaction.
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

/// A merge keeps every source open: raises this process's soft limit of
/// open files towards its hard limit when `needed` is more (a day of
/// one-minute seals is 1,440 files; the soft limit is often 1,024).
fn ensure_open_files(needed: usize) -> Result<(), String> {
    let needed = needed as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one rlimit struct
    // we pass, which lives on this stack frame.
    #[allow(unsafe_code)]
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if got != 0 || lim.rlim_cur >= needed {
        return Ok(());
    }
    if lim.rlim_max < needed {
        return Err(format!(
            "merging needs {needed} open files, the hard limit is {} (raise it: ulimit -Hn, LimitNOFILE=)",
            lim.rlim_max
        ));
    }
    lim.rlim_cur = needed.max(lim.rlim_cur);
    #[allow(unsafe_code)]
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if set != 0 {
        return Err(format!(
            "merging needs {needed} open files; raising the limit failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Holds `readings_compacted/lock`: one compactor at a time per data
/// directory (`serve`'s, or `gapless compact` beside it).
fn lock_compaction(data: &Path) -> Result<File, StoreError> {
    let root = data.join(READINGS_COMPACTED);
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    let path = root.join(LOCK_FILE);
    super::lock_exclusive(&path).map_err(io_err(&path))
}

/// Removes what a compaction that crashed left: its draft (a hidden
/// temporary file), or its file renamed before its ledger entry was
/// written (no entry names it). Called with the compaction lock held, so
/// no compaction is under way.
fn remove_debris(data: &Path) -> Result<(), StoreError> {
    let entries = data.join(LEDGER_DIR).join(ENTRIES_DIR);
    for (date, index, path) in on_disk(data)? {
        if !entered(&entries, &date, index) {
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

/// Whether ledger entry `index` exists and names the compacted file of
/// `date` with that index.
fn entered(entries: &Path, date: &str, index: u64) -> bool {
    let rel = format!("{READINGS_COMPACTED}/date={date}/{PREFIX}{index:012}.parquet");
    fs::read(entries.join(entry_name(index)))
        .ok()
        .and_then(|b| serde_json::from_slice::<LedgerEntry>(&b).ok())
        .is_some_and(|e| e.path == rel && e.table == READINGS_COMPACTED)
}

/// A k-way merge of sorted readings files: rows in the order a seal sorts
/// them (meter, register, time, receipt), ties in source order.
struct Merge {
    schema: SchemaRef,
    runs: Vec<Run>,
    /// Run indices, a binary min-heap by each run's head row.
    heap: Vec<usize>,
    /// Batches that `picked` refers to (each run's current one among them).
    pool: Vec<RecordBatch>,
    picked: Vec<(usize, usize)>,
    /// The `value_decimal` column, declared with precision 18: every value
    /// of every source fits (by their statistics).
    narrow: Option<usize>,
}

/// One source being merged: its current batch and row.
struct Run {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    slot: usize,
    row: usize,
    len: usize,
    meter: StringArray,
    register: StringArray,
    ts: ScalarBuffer<i64>,
    seq: ScalarBuffer<i64>,
}

impl Run {
    fn key(&self) -> (&str, &str, i64, i64) {
        let r = self.row;
        (
            self.meter.value(r),
            self.register.value(r),
            self.ts[r],
            self.seq[r],
        )
    }

    /// Takes the next non-empty batch; false at the end.
    fn load(&mut self, pool: &mut Vec<RecordBatch>) -> Result<bool, StoreError> {
        for b in self.reader.by_ref() {
            let b = b.map_err(|e| StoreError::Read {
                path: self.path.clone(),
                why: e.to_string(),
            })?;
            if b.num_rows() == 0 {
                continue;
            }
            let bad = |name: &str| StoreError::Read {
                path: self.path.clone(),
                why: format!("column {name} missing or of an unexpected type"),
            };
            let col = |name: &str| b.column_by_name(name).ok_or_else(|| bad(name));
            self.meter = col("meter_id")?
                .as_string_opt::<i32>()
                .ok_or_else(|| bad("meter_id"))?
                .clone();
            self.register = col("register")?
                .as_string_opt::<i32>()
                .ok_or_else(|| bad("register"))?
                .clone();
            self.ts = col("ts")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| bad("ts"))?
                .values()
                .clone();
            self.seq = col("receipt_seq")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| bad("receipt_seq"))?
                .values()
                .clone();
            self.row = 0;
            self.len = b.num_rows();
            self.slot = pool.len();
            pool.push(b);
            return Ok(true);
        }
        Ok(false)
    }
}

impl Merge {
    fn open(data: &Path, sources: &[String]) -> Result<Merge, StoreError> {
        const MAX18: i128 = 999_999_999_999_999_999;
        let mut runs = Vec::with_capacity(sources.len());
        let mut pool = Vec::new();
        let mut schema: Option<SchemaRef> = None;
        let mut fits18 = true;
        for rel in sources {
            let path = data.join(rel);
            let bad = |why: String| StoreError::Read {
                path: path.clone(),
                why,
            };
            let file = File::open(&path).map_err(io_err(&path))?;
            let b =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
            match &schema {
                None => schema = Some(b.schema().clone()),
                Some(s) if s.fields() != b.schema().fields() => {
                    return Err(bad("its columns differ from the other sources'".into()))
                }
                Some(_) => {}
            }
            fits18 &= decimal_range(b.metadata(), "value_decimal")
                .is_some_and(|(lo, hi)| lo >= -MAX18 && hi <= MAX18);
            let reader = b
                .with_batch_size(8192)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            let mut run = Run {
                path: path.clone(),
                reader,
                slot: 0,
                row: 0,
                len: 0,
                meter: StringArray::from(Vec::<&str>::new()),
                register: StringArray::from(Vec::<&str>::new()),
                ts: ScalarBuffer::from(Vec::<i64>::new()),
                seq: ScalarBuffer::from(Vec::<i64>::new()),
            };
            if run.load(&mut pool)? {
                runs.push(run);
            }
        }
        let Some(schema) = schema else {
            return Err(StoreError::Read {
                path: data.to_owned(),
                why: "no sources to compact".into(),
            });
        };
        let mut narrow = None;
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if let Some(i) = schema.index_of("value_decimal").ok().filter(|_| fits18) {
            if let DataType::Decimal128(p, s) = *fields[i].data_type() {
                if p > 18 {
                    fields[i] = fields[i]
                        .clone()
                        .with_data_type(DataType::Decimal128(18, s));
                    narrow = Some(i);
                }
            }
        }
        let mut m = Merge {
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            heap: (0..runs.len()).collect(),
            runs,
            pool,
            picked: Vec::new(),
            narrow,
        };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    /// Run `a`'s head row sorts before run `b`'s (ties: source order).
    fn less(&self, a: usize, b: usize) -> bool {
        match self.runs[a].key().cmp(&self.runs[b].key()) {
            std::cmp::Ordering::Equal => a < b,
            o => o.is_lt(),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if l < self.heap.len() && self.less(self.heap[l], self.heap[min]) {
                min = l;
            }
            if r < self.heap.len() && self.less(self.heap[r], self.heap[min]) {
                min = r;
            }
            if min == i {
                return;
            }
            self.heap.swap(i, min);
            i = min;
        }
    }

    /// The next (up to) `rows` merged rows; None when every run is done.
    fn next_batch(&mut self, rows: usize) -> Result<Option<RecordBatch>, StoreError> {
        while self.picked.len() < rows {
            let Some(&top) = self.heap.first() else { break };
            let run = &mut self.runs[top];
            self.picked.push((run.slot, run.row));
            run.row += 1;
            if run.row == run.len && !run.load(&mut self.pool)? {
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
            self.sift_down(0);
        }
        if self.picked.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = self.pool.iter().collect();
        let out = arrow_select::interleave::interleave_record_batch(&batches, &self.picked)
            .map_err(|e| StoreError::Read {
                path: self
                    .runs
                    .first()
                    .map_or_else(PathBuf::new, |r| r.path.clone()),
                why: e.to_string(),
            })?;
        self.picked.clear();
        // Keep only the batches runs are still reading.
        let mut pool = Vec::with_capacity(self.runs.len());
        for &i in &self.heap {
            let run = &mut self.runs[i];
            pool.push(self.pool[run.slot].clone());
            run.slot = pool.len() - 1;
        }
        self.pool = pool;
        let mut columns: Vec<ArrayRef> = out.columns().to_vec();
        if let Some(i) = self.narrow {
            if let (Some(d), DataType::Decimal128(p, s)) = (
                columns[i].as_primitive_opt::<Decimal128Type>(),
                self.schema.field(i).data_type(),
            ) {
                let d =
                    d.clone()
                        .with_precision_and_scale(*p, *s)
                        .map_err(|e| StoreError::Read {
                            path: PathBuf::from("value_decimal"),
                            why: e.to_string(),
                        })?;
                columns[i] = Arc::new(d);
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| StoreError::Read {
                path: PathBuf::from(READINGS_COMPACTED),
                why: e.to_string(),
            })
    }
}

/// The range of a decimal column over a file, from its row groups'
/// statistics (None when any is missing).
fn decimal_range(meta: &ParquetMetaData, column: &str) -> Option<(i128, i128)> {
    let col = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == column)?;
    let decode = |b: &[u8]| -> Option<i128> {
        // Big-endian two's complement, sign-extended to 16 bytes.
        if b.is_empty() || b.len() > 16 {
            return None;
        }
        let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[16 - b.len()..].copy_from_slice(b);
        Some(i128::from_be_bytes(buf))
    };
    let mut range: Option<(i128, i128)> = None;
    for rg in meta.row_groups() {
        let (lo, hi) = match rg.column(col).statistics()? {
            Statistics::FixedLenByteArray(s) => {
                (decode(s.min_opt()?.data())?, decode(s.max_opt()?.data())?)
            }
            Statistics::Int64(s) => (*s.min_opt()? as i128, *s.max_opt()? as i128),
            Statistics::Int32(s) => (*s.min_opt()? as i128, *s.max_opt()? as i128),
            _ => return None,
        };
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    range
}
