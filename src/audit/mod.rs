//! `gapless audit`: check a data directory from its files alone.
//!
//! `verify` recomputes what the ledger claims (`schemas/AUDIT.md`): every
//! entry present and in its place, every checkpoint's signature and root,
//! every file's size, SHA-256, footer, rows, row hashes and row root; that
//! no Parquet file is outside the ledger; that receipt numbers run 1..n
//! without holes; that receipts, readings and rejects account for each
//! other; and that each compacted readings file holds exactly the rows of
//! the readings files it names. It reports every finding, not just the
//! first. [`proof`]: inclusion
//! proofs of one reading and consistency proofs between checkpoints.

mod compaction;
mod files;
pub mod proof;
pub mod witnessed;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Encoding;
use sha2::{Digest, Sha256};

use crate::layout::{CHECKPOINTS_DIR, ENTRIES_DIR, LEDGER_DIR};
use crate::store::canonical::{self, leaf_hash, merkle_root, Hash};
use crate::store::compact::{self, READINGS_COMPACTED};
use crate::store::ledger::{entry_name, AuditKey, Checkpoint, LedgerEntry, NoteVerifier};
use crate::store::tables::{READINGS, RECEIPTS, REJECTS};
use compaction::CompactionChecks;
use proof::ProofError;

/// Files are verified in ledger order, but within each run of this many
/// entries the largest first, so that the cores finish together rather than
/// one of them finishing a big file alone, while the row hashes kept for the
/// compaction checks still follow the ledger (a window, not the data set).
const ORDER_WINDOW: usize = 64;
/// At most this many files at once (each is read whole into memory).
const MAX_THREADS: usize = 16;
/// Rows decoded at a time: a batch's arrays (about 100 bytes a row of
/// readings) are freed and allocated again per batch, and at this size the
/// allocator reuses their memory instead of mapping fresh pages for each
/// (64 Ki rows cost 10-30 ns a row more in a loaded session, 2026-12-04).
const BATCH_ROWS: usize = 8 * 1024;
/// Receipt holes listed one by one before they are summarised.
const MAX_LISTED: usize = 20;

/// One thing that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, entry, checkpoint or row concerned.
    pub subject: String,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

/// What `verify` checked and found.
#[derive(Debug, Default)]
pub struct Verification {
    pub findings: Vec<Finding>,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub rows: u64,
    pub receipts: u64,
    /// Compacted readings files checked against their sources.
    pub compacted: u64,
    pub checkpoint: Option<Checkpoint>,
    /// The key that verified the checkpoints.
    pub key: String,
    /// The key came from the data directory itself, not from the caller.
    pub own_key: bool,
    /// Only files, footers and the ledger were checked (no rows).
    pub files_only: bool,
    pub elapsed: Duration,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    fn find(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.findings.push(Finding {
            subject: subject.into(),
            what: what.into(),
        });
    }
}

/// What one file contributed to the cross-table checks.
#[derive(Default)]
pub(crate) struct FileOutcome {
    findings: Vec<Finding>,
    bytes: u64,
    rows: u64,
    /// receipts: (receipt_seq, disposition)
    receipts: Vec<(u64, u8)>,
    /// The receipts readings name.
    reading_receipts: Vec<u64>,
    /// The receipts rejects name.
    reject_receipts: Vec<u64>,
    /// Its row hashes, sorted: kept for compacted files and their sources.
    sorted_hashes: Option<Vec<Hash>>,
}

const STORED: u8 = 1;
const DUPLICATE: u8 = 2;
const REJECTED: u8 = 3;

/// Verifies `data`. `pubkey`: the key to trust; None = the directory's own
/// (which proves consistency, not origin). `progress` is called now and
/// then with (files done, files, bytes done).
pub fn verify(
    data: &Path,
    pubkey: Option<&NoteVerifier>,
    progress: &(dyn Fn(usize, usize, u64) + Sync),
) -> Verification {
    verify_with(data, pubkey, progress, false)
}

/// [`verify`]; with `files_only`, each file is checked by its bytes and
/// footer alone ([`files::verify_footer`]): size, SHA-256, ledger index,
/// row root and row count, with the ledger, tree, signatures (and, by the
/// caller, cosignatures), but no row is read, so the row roots, the
/// ranges, receipts, lineage and compactions are not recomputed.
pub fn verify_with(
    data: &Path,
    pubkey: Option<&NoteVerifier>,
    progress: &(dyn Fn(usize, usize, u64) + Sync),
    files_only: bool,
) -> Verification {
    let start = Instant::now();
    let mut v = Verification::default();
    let ledger = data.join(LEDGER_DIR);
    if !ledger.join(ENTRIES_DIR).is_dir() {
        v.find(
            data.display().to_string(),
            "no audit ledger (_ledger/entries)",
        );
        return v;
    }

    // Entries 0..n, each where it belongs.
    let mut indices: Vec<u64> = list(&ledger.join(ENTRIES_DIR), ".json")
        .into_iter()
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let n = indices.last().map_or(0, |&i| i.saturating_add(1));
    v.entries = n;
    // Leaves up to the first hole only: no checkpoint past a hole can
    // verify, and one stray name far past the others (`000200000009.json`)
    // costs a finding, not a leaf per missing index (found by fuzzing:
    // tests/fuzz/ledger/crashes/).
    let mut leaves: Vec<Hash> = Vec::with_capacity(indices.len());
    let mut entries: Vec<LedgerEntry> = Vec::new();
    let mut next = 0u64;
    for &i in &indices {
        if i != next {
            let missing = if i - next == 1 {
                format!("ledger entry {next}")
            } else {
                format!("ledger entries {next}..{}", i - 1)
            };
            v.find(missing, "missing: the ledger has a hole (entry deleted)");
        }
        next = i.saturating_add(1);
        let subject = format!("ledger entry {i}");
        let contiguous = leaves.len() as u64 == i;
        let path = ledger.join(ENTRIES_DIR).join(entry_name(i));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                v.find(subject, format!("unreadable: {e}"));
                if contiguous {
                    leaves.push([0; 32]);
                }
                continue;
            }
        };
        if contiguous {
            leaves.push(leaf_hash(&bytes));
        }
        match serde_json::from_slice::<LedgerEntry>(&bytes) {
            Ok(e) if e.index != i => v.find(
                subject,
                format!(
                    "holds the entry of index {} (entries swapped or moved)",
                    e.index
                ),
            ),
            Ok(e) => entries.push(e),
            Err(e) => v.find(subject, format!("not a ledger entry: {e}")),
        }
    }

    // Checkpoints: signed by the key, roots over the entries they cover.
    let own;
    let key = match pubkey {
        Some(k) => k,
        None => match AuditKey::load_or_create(data, Some(&crate::layout::default_audit_key(data)))
        {
            Ok(k) => {
                own = k.verifier();
                v.own_key = true;
                &own
            }
            Err(e) => {
                v.find(
                    "audit key",
                    format!("none given and none in the data directory: {e}"),
                );
                return v;
            }
        },
    };
    v.key = key.encode();
    let mut latest: Option<Checkpoint> = None;
    for (name, path) in list(&ledger.join(CHECKPOINTS_DIR), ".txt") {
        let subject = format!("checkpoint {}", path.display());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                v.find(subject, format!("unreadable: {e}"));
                continue;
            }
        };
        let cp = match key.verify(&text) {
            Ok(cp) => cp,
            Err(e) => {
                v.find(subject, e.to_string());
                continue;
            }
        };
        if name.parse::<u64>().ok() != Some(cp.size) {
            v.find(
                &subject,
                format!("named {name} but signs a tree of {}", cp.size),
            );
        }
        if cp.size > n {
            v.find(
                &subject,
                format!(
                    "signs {} entries but the ledger has {n}: the ledger was truncated",
                    cp.size
                ),
            );
        } else if cp.size > leaves.len() as u64 {
            v.find(
                &subject,
                format!(
                    "signs {} entries but entry {} is missing: the ledger has a hole",
                    cp.size,
                    leaves.len()
                ),
            );
        } else if merkle_root(&leaves[..cp.size as usize]) != cp.root {
            v.find(
                &subject,
                format!(
                    "signed root does not match entries 0..{}: an entry was changed, swapped or removed",
                    cp.size
                ),
            );
        }
        if latest.as_ref().is_none_or(|l| cp.size > l.size) {
            latest = Some(cp);
        }
    }
    match &latest {
        None => v.find("checkpoints", "no checkpoint signed by the key"),
        Some(cp) if cp.size < n => v.find(
            "checkpoints",
            format!(
                "the newest valid checkpoint signs {} of {n} entries: entries {}..{n} are not signed (a newer checkpoint was removed, or an old one replayed)",
                cp.size, cp.size
            ),
        ),
        Some(_) => {}
    }
    v.checkpoint = latest;

    // Compacted files name their sources in the footer: those files' row
    // hashes are kept until the comparison.
    let checks = Mutex::new(if files_only {
        CompactionChecks::new(data, &[], &mut v)
    } else {
        CompactionChecks::new(data, &entries, &mut v)
    });

    // Files, on every core, in the order of `verify_order`.
    let order = verify_order(&entries);
    let outcomes: Mutex<Vec<FileOutcome>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let done_files = AtomicUsize::new(0);
    let done_bytes = std::sync::atomic::AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(MAX_THREADS));
    std::thread::scope(|s| {
        for _ in 0..threads.min(entries.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = order.get(i).map(|&k| &entries[k]) else {
                    break;
                };
                let keep = checks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .wants(&e.path);
                let mut o = if files_only {
                    files::verify_footer(data, e)
                } else {
                    verify_file(data, e, keep)
                };
                if keep {
                    let hashes = o.sorted_hashes.take();
                    checks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(&e.path, hashes);
                }
                let b = done_bytes.fetch_add(o.bytes, Ordering::Relaxed) + o.bytes;
                let files = done_files.fetch_add(1, Ordering::Relaxed) + 1;
                progress(files, entries.len(), b);
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(o);
            });
        }
    });
    let mut receipts: Vec<(u64, u8)> = Vec::new();
    let mut reading_receipts: Vec<u64> = Vec::new();
    let mut reject_receipts: Vec<u64> = Vec::new();
    for o in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
        v.findings.extend(o.findings);
        v.bytes += o.bytes;
        v.rows += o.rows;
        receipts.extend(o.receipts);
        reading_receipts.extend(o.reading_receipts);
        reject_receipts.extend(o.reject_receipts);
    }
    v.files = entries.len() as u64;

    // No Parquet file outside the ledger.
    let known: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut all = Vec::new();
    parquet_files(data, data, &mut all);
    for rel in all {
        if !known.contains(rel.as_str()) {
            v.find(rel, "Parquet file not in the ledger (added or left behind)");
        }
    }

    if !files_only {
        check_receipts(&mut v, receipts, reading_receipts, reject_receipts);
    }
    v.files_only = files_only;
    let checks = checks.into_inner().unwrap_or_else(|p| p.into_inner());
    v.compacted = checks.checked;
    v.findings.extend(checks.findings);
    v.elapsed = start.elapsed();
    v
}

/// The order in which files are verified: ledger order, with each run of
/// [`ORDER_WINDOW`] entries taken largest first (indices into `entries`).
fn verify_order(entries: &[LedgerEntry]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    for w in order.chunks_mut(ORDER_WINDOW) {
        w.sort_by_key(|&k| std::cmp::Reverse(entries[k].size));
    }
    order
}

/// Sorts `v` and removes repeats: through a bitmap over its range when the
/// range is not much wider than `v` (a file's receipts), else by sorting.
fn sorted_unique(v: &mut Vec<u64>) {
    let (Some(&min), Some(&max)) = (v.iter().min(), v.iter().max()) else {
        return;
    };
    let span = max - min;
    if span / 64 > v.len() as u64 {
        v.sort_unstable();
        v.dedup();
        return;
    }
    let mut bits = vec![0u64; (span / 64 + 1) as usize];
    for &x in v.iter() {
        let d = x - min;
        bits[(d / 64) as usize] |= 1 << (d % 64);
    }
    v.clear();
    for (w, &b) in bits.iter().enumerate() {
        let mut b = b;
        while b != 0 {
            v.push(min + w as u64 * 64 + u64::from(b.trailing_zeros()));
            b &= b - 1;
        }
    }
}

/// Receipt numbers 1..n without holes; every stored receipt has readings
/// and every reading a stored receipt; rejects match rejected receipts.
fn check_receipts(
    v: &mut Verification,
    mut receipts: Vec<(u64, u8)>,
    mut readings: Vec<u64>,
    mut rejects: Vec<u64>,
) {
    receipts.sort_unstable();
    v.receipts = receipts.len() as u64;
    let mut holes = Vec::new();
    let mut expected = 1;
    for &(seq, _) in &receipts {
        if seq < expected {
            v.find(format!("receipt {seq}"), "appears more than once");
            continue;
        }
        if seq > expected {
            holes.push((expected, seq - 1));
        }
        expected = seq + 1;
    }
    for (a, b) in holes.iter().take(MAX_LISTED) {
        let range = if a == b {
            format!("receipt {a}")
        } else {
            format!("receipts {a}..={b}")
        };
        v.find(
            range,
            "missing: receipt numbers must run without holes (a row or file removed)",
        );
    }
    if holes.len() > MAX_LISTED {
        v.find(
            "receipts",
            format!("{} more holes", holes.len() - MAX_LISTED),
        );
    }
    readings.sort_unstable();
    readings.dedup();
    rejects.sort_unstable();
    let mut unexplained = 0usize;
    for &(seq, d) in &receipts {
        let has_readings = readings.binary_search(&seq).is_ok();
        let has_reject = rejects.binary_search(&seq).is_ok();
        let problem = match d {
            STORED if !has_readings => Some("stored, but no reading names it"),
            DUPLICATE | REJECTED if has_readings => Some("not stored, yet readings name it"),
            REJECTED if !has_reject => Some("rejected, but its bytes are not in rejects"),
            STORED | DUPLICATE if has_reject => Some("in rejects, but not rejected"),
            _ => None,
        };
        if let Some(p) = problem {
            if unexplained < MAX_LISTED {
                v.find(format!("receipt {seq}"), p);
            }
            unexplained += 1;
        }
    }
    let known: HashSet<u64> = receipts.iter().map(|r| r.0).collect();
    for &seq in readings
        .iter()
        .filter(|s| !known.contains(s))
        .take(MAX_LISTED)
    {
        v.find(
            format!("receipt {seq}"),
            "readings name it, but there is no such receipt",
        );
    }
    if unexplained > MAX_LISTED {
        v.find(
            "receipts",
            format!("{} more lineage problems", unexplained - MAX_LISTED),
        );
    }
}

/// A sealed file's bytes, with its size and SHA-256 checked against its
/// ledger entry (None, and a finding, if it cannot be read).
fn read_checked(data: &Path, e: &LedgerEntry, find: &mut dyn FnMut(String)) -> Option<Bytes> {
    let bytes = match fs::read(data.join(&e.path)) {
        Ok(b) => Bytes::from(b),
        Err(err) => {
            find(format!(
                "ledger entry {}: file missing or unreadable ({err})",
                e.index
            ));
            return None;
        }
    };
    if bytes.len() as u64 != e.size {
        find(format!(
            "size {} bytes, the ledger says {}",
            bytes.len(),
            e.size
        ));
    }
    if hex::encode(Sha256::digest(&bytes)) != e.sha256 {
        find("SHA-256 differs from the ledger: the file was changed".into());
    }
    Some(bytes)
}

/// The footer's ledger index and row root against the ledger entry.
fn check_footer(
    meta: &parquet::file::metadata::ParquetMetaData,
    e: &LedgerEntry,
    find: &mut dyn FnMut(String),
) {
    let kv = |key: &str| {
        meta.file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == key))
            .and_then(|k| k.value.clone())
    };
    if kv("gapless.ledger_index") != Some(e.index.to_string()) {
        find(format!(
            "footer names ledger index {:?}, the ledger {}",
            kv("gapless.ledger_index"),
            e.index
        ));
    }
    if kv("gapless.row_root") != Some(e.row_root.clone()) {
        find("footer row root differs from the ledger".into());
    }
}

/// Checks one ledger entry against its file.
fn verify_file(data: &Path, e: &LedgerEntry, keep_hashes: bool) -> FileOutcome {
    let mut o = FileOutcome::default();
    let subject = e.path.clone();
    let mut find = |what: String| {
        o.findings.push(Finding {
            subject: subject.clone(),
            what,
        })
    };
    let Some(bytes) = read_checked(data, e, &mut find) else {
        return o;
    };
    o.bytes = bytes.len() as u64;
    let meta = match ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()) {
        Ok(m) => m,
        Err(err) => {
            find(format!("not readable as Parquet: {err}"));
            return o;
        }
    };
    check_footer(meta.metadata(), e, &mut find);
    let meta = match e.table.as_str() {
        READINGS | READINGS_COMPACTED => with_dictionaries(meta),
        _ => meta,
    };
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta);
    let reader = match reader.with_batch_size(BATCH_ROWS).build() {
        Ok(r) => r,
        Err(err) => {
            find(format!("not readable as Parquet: {err}"));
            return o;
        }
    };
    // Row hashes go into the tree batch by batch; all of them are kept
    // only for the compaction checks.
    let mut tree = canonical::CompactTree::default();
    let mut batch_hashes = Vec::new();
    let mut kept: Option<Vec<Hash>> = keep_hashes.then(Vec::new);
    let mut hasher = canonical::RowHasher::default();
    let (mut time, mut seqs): crate::store::BatchRanges = (None, None);
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(err) => {
                find(format!("rows unreadable: {err}"));
                return o;
            }
        };
        batch_hashes.clear();
        if let Err(err) = hasher.hash_batch(&batch, &mut batch_hashes) {
            find(err.to_string());
            return o;
        }
        tree.extend(&batch_hashes);
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&batch_hashes);
        }
        let (t, s) = crate::store::batch_ranges(&batch);
        time = crate::store::merge_range(time, t);
        seqs = crate::store::merge_range(seqs, s);
        let seq_col = batch
            .column_by_name("receipt_seq")
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        match (e.table.as_str(), seq_col) {
            (RECEIPTS, Some(seq)) => {
                let disp = batch
                    .column_by_name("disposition")
                    .map(|c| c.as_string::<i32>().clone());
                for i in 0..batch.num_rows() {
                    let d = match disp.as_ref().map(|d| d.value(i)) {
                        Some("stored") => STORED,
                        Some("duplicate") => DUPLICATE,
                        _ => REJECTED,
                    };
                    o.receipts.push((seq.value(i) as u64, d));
                }
            }
            // A message's readings are consecutive rows: keep each receipt
            // once per run (only whether a receipt is named counts), so the
            // list to sort is one per message, not one per reading.
            (READINGS, Some(seq)) => {
                for &s in seq.values().iter() {
                    if o.reading_receipts.last() != Some(&(s as u64)) {
                        o.reading_receipts.push(s as u64);
                    }
                }
            }
            (REJECTS, Some(seq)) => o
                .reject_receipts
                .extend(seq.values().iter().map(|&s| s as u64)),
            _ => {}
        }
    }
    // Readings are sorted by meter, not by receipt: sorted here, on this
    // file's core, the list merged at the end is one per receipt and file.
    sorted_unique(&mut o.reading_receipts);
    o.rows = tree.size;
    if o.rows != e.rows {
        find(format!("{} rows, the ledger says {}", o.rows, e.rows));
    }
    if hex::encode(tree.root()) != e.row_root {
        find(
            "rows do not hash to the ledger's row root: a row was changed, added or removed".into(),
        );
    }
    if let Some(mut hashes) = kept {
        hashes.sort_unstable();
        o.sorted_hashes = Some(hashes);
    }
    let fmt = |t: Option<(i64, i64)>| {
        t.map(|t| {
            (
                crate::time::format_micros(t.0),
                crate::time::format_micros(t.1),
            )
        })
    };
    if fmt(time) != e.min_time.clone().zip(e.max_time.clone()) {
        find("time range differs from the ledger".into());
    }
    if seqs != e.min_receipt_seq.zip(e.max_receipt_seq) {
        find("receipt range differs from the ledger".into());
    }
    o
}

/// `meta`, reading as dictionaries the string columns whose pages are all
/// dictionary-encoded in every row group: the row hasher then encodes each
/// distinct value once, and the reader copies no string per row. Other
/// columns (and a file whose schema is not flat) are read as they are.
fn with_dictionaries(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    let pq = meta.metadata();
    let schema = meta.schema();
    let columns = pq.file_metadata().schema_descr().num_columns();
    if columns != schema.fields().len() {
        return meta;
    }
    let all_dictionary = |c: usize| {
        pq.row_groups().iter().all(|rg| {
            let col = rg.column(c);
            col.dictionary_page_offset().is_some()
                && col.page_encoding_stats_mask().is_some_and(|m| {
                    m.is_only(Encoding::RLE_DICTIONARY) || m.is_only(Encoding::PLAIN_DICTIONARY)
                })
        })
    };
    let mut changed = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| {
            if f.data_type() == &DataType::Utf8 && all_dictionary(c) {
                changed = true;
                f.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                ))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    if !changed {
        return meta;
    }
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(pq.clone(), ArrowReaderOptions::new().with_schema(hinted))
        .unwrap_or(meta)
}

/// Files in `dir` ending in `suffix`: (stem, path), sorted.
fn list(dir: &Path, suffix: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(suffix) {
                out.push((stem.to_owned(), e.path()));
            }
        }
    }
    out.sort();
    out
}

/// Every visible `.parquet` file under `dir`, relative to `data`.
fn parquet_files(data: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // hidden: temporary files, virtualenvs
        }
        let p = e.path();
        if p.is_dir() {
            parquet_files(data, &p, out);
        } else if name.ends_with(".parquet") {
            if let Ok(rel) = p.strip_prefix(data) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

/// The summary `gapless audit verify` prints when everything holds.
pub fn summary(v: &Verification) -> String {
    if v.files_only {
        return files::summary(v);
    }
    let cp = v
        .checkpoint
        .as_ref()
        .map(|c| format!("tree of {} entries, root {}", c.size, hex::encode(c.root)))
        .unwrap_or_default();
    let mut s = format!(
        "gapless audit verify: OK\n  ledger: {} entries; checkpoint signed by {}{}\n  {cp}\n  files: {} ({:.1} MB), every size, SHA-256, footer and row root recomputed; {} rows hashed\n  receipts: {} numbered 1..{} without holes; readings and rejects account for every one\n  no Parquet file outside the ledger{}\n  {:.2} s ({:.0} MB/s)\n",
        v.entries,
        v.key,
        if v.own_key {
            " (the data directory's own key: pass --pubkey with a key you trust to check origin)"
        } else {
            ""
        },
        v.files,
        v.bytes as f64 / 1e6,
        v.rows,
        v.receipts,
        v.receipts,
        if v.compacted > 0 {
            format!(
                "\n  compacted files: {}, each holding exactly the rows of the readings files it names",
                v.compacted
            )
        } else {
            String::new()
        },
        v.elapsed.as_secs_f64(),
        v.bytes as f64 / 1e6 / v.elapsed.as_secs_f64().max(1e-9),
    );
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

/// The key to check with: the one given (a file with a verifier key line),
/// else the data directory's own.
pub fn trusted_key(data: &Path, pubkey: Option<&Path>) -> Result<NoteVerifier, ProofError> {
    match pubkey {
        Some(p) => {
            let text = fs::read_to_string(p).map_err(|source| ProofError::Read {
                path: p.to_owned(),
                source,
            })?;
            NoteVerifier::parse(&text).map_err(|why| ProofError::Malformed {
                path: p.display().to_string(),
                why: why.to_string(),
            })
        }
        None => AuditKey::load_or_create(data, Some(&crate::layout::default_audit_key(data)))
            .map(|k| k.verifier())
            .map_err(ProofError::Key),
    }
}

#[cfg(test)]
mod tests;
