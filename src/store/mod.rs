//! Store: finished rows → sealed Parquet, commits and the audit ledger.
//!
//! The store receives finished batches from the ingest stage
//! ([`crate::ingest::Sealable`]: receipts, readings, rejects, gaps and
//! alerts) and seals each: one file per table and UTC date, then a commit
//! manifest ([`commit`]), then the files' ledger entries and a signed
//! checkpoint ([`ledger`]). The journal is truncated only up to the last
//! sealed receipt, so a crash at any point loses nothing: on start, files
//! of an unfinished commit are removed and the journal after the last
//! commit is replayed, which rebuilds the same rows with the same
//! dispositions. It also answers the ingest stage's lookups of old values
//! ([`lookup`]) and compacts ended dates ([`compact`]). How one sealed
//! Parquet file is written (hashed as it goes, then footer, fsync,
//! rename) is in `parquet_file`.

pub mod alerts_table;
pub mod canonical;
pub mod commit;
pub mod compact;
pub mod ledger;
pub mod lookup;
pub mod tables;
pub mod tiles;

mod parquet_file;
pub(crate) use parquet_file::{
    batch_ranges, merge_range, write_parquet, BatchRanges, ParquetDraft, PAGE_ROWS, ROW_GROUP_ROWS,
};
pub use parquet_file::{write_parquet_as, FileFacts, Layout};

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::file::metadata::KeyValue;

use crate::ingest::Sealable;
use crate::layout::sync_dir;
use crate::time::{format_micros, utc_date};
use alerts_table::{alerts_batch, ALERTS};
use commit::{CommitError, Counters, Manifest, SealedFile};
use tables::{GAPS, READINGS, RECEIPTS, REJECTS, SCHEMA_VERSION};

/// Writer identification stored in manifests and Parquet footers.
pub(crate) const WRITER: &str = concat!("gapless ", env!("CARGO_PKG_VERSION"));

/// Where and how the store seals.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data: PathBuf,
    /// Ed25519 seed (hex) that signs ledger checkpoints [default:
    /// DATA/_state/audit.key, made on first start].
    pub audit_key: Option<PathBuf>,
    /// Row hashing and the ledger. Always on in the service; off only in
    /// `gapless bench report --ledger-cost`, to measure what they cost.
    pub ledger: bool,
}

impl StoreConfig {
    /// A store in `data` with the ledger on and the default key.
    pub fn new(data: &Path) -> StoreConfig {
        StoreConfig {
            data: data.to_owned(),
            audit_key: None,
            ledger: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing Parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("reading {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Canonical(#[from] canonical::UnsupportedType),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The store stage: seals finished batches. Owned by one thread.
pub struct Store {
    cfg: StoreConfig,
    next_commit: u64,
    sealed_through: u64,
    sealed_totals: Counters,
    /// Every sealed file is entered here, and each commit signed.
    ledger: ledger::Ledger,
    key: ledger::AuditKey,
    /// The committed files of the `readings` table, with their commit,
    /// and of the `alerts` table.
    readings_files: Vec<(u64, PathBuf)>,
    alert_files: Vec<PathBuf>,
}

impl Store {
    /// Opens the data directory: reads the commit log, removes files of an
    /// unfinished commit, and completes the ledger from the commit log.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        fs::create_dir_all(&cfg.data).map_err(io_err(&cfg.data))?;
        let manifests = commit::read_all(&cfg.data)?;
        let mut committed = HashSet::new();
        for m in &manifests {
            for f in &m.files {
                committed.insert(f.path.clone());
            }
        }
        for table in [RECEIPTS, READINGS, REJECTS, GAPS, ALERTS] {
            remove_uncommitted(&cfg.data, &cfg.data.join(table), &committed)?;
        }
        // Complete the ledger from the commit log (a crash between a
        // commit and its entries), then sign what is there.
        let ledger = ledger::Ledger::open(&cfg.data)?;
        let key = ledger::AuditKey::load_or_create(&cfg.data, cfg.audit_key.as_deref())?;
        {
            let mut w = ledger.writer()?;
            // Only entries at or beyond the head can be missing.
            for m in &manifests {
                for e in m.files.iter().filter_map(|f| f.entry.as_ref()) {
                    if e.index >= w.next_index() {
                        w.append(e)?;
                    }
                }
            }
            w.checkpoint(&key)?;
        }
        let last = manifests.last();
        let files_of = |table: &str| -> Vec<PathBuf> {
            manifests
                .iter()
                .flat_map(|m| &m.files)
                .filter(|f| f.table == table)
                .map(|f| cfg.data.join(&f.path))
                .collect()
        };
        Ok(Store {
            next_commit: last.map_or(1, |m| m.commit + 1),
            sealed_through: last.map_or(0, |m| m.last_seq),
            sealed_totals: last.map_or_else(Counters::default, |m| m.totals),
            ledger,
            key,
            readings_files: manifests
                .iter()
                .flat_map(|m| m.files.iter().map(move |f| (m.commit, f)))
                .filter(|(_, f)| f.table == READINGS)
                .map(|(c, f)| (c, cfg.data.join(&f.path)))
                .collect(),
            alert_files: files_of(ALERTS),
            cfg,
        })
    }

    pub fn data(&self) -> &Path {
        &self.cfg.data
    }

    /// The committed `readings` files with their commit, in commit order.
    pub(crate) fn readings_files(&self) -> &[(u64, PathBuf)] {
        &self.readings_files
    }

    /// The alerts sealed so far, in commit order (the alert engine and the
    /// sinks resume from them).
    pub(crate) fn read_alerts(&self) -> Result<Vec<alerts_table::Told>, StoreError> {
        alerts_table::read_files(&self.alert_files).map_err(|why| StoreError::Read {
            path: self.cfg.data.join(ALERTS),
            why,
        })
    }

    /// The last commit (0 if none).
    pub(crate) fn last_commit(&self) -> u64 {
        self.next_commit - 1
    }

    /// The last receipt sequence number held in sealed files (0 if none).
    pub(crate) fn sealed_through(&self) -> u64 {
        self.sealed_through
    }

    /// Counters over every sealed receipt.
    pub(crate) fn sealed_totals(&self) -> Counters {
        self.sealed_totals
    }

    /// Seals a finished batch: one Parquet file per table and UTC date,
    /// then the commit manifest, then the ledger entries and a signed
    /// checkpoint. Returns the manifest, or None if the batch was empty.
    pub fn seal(&mut self, batch: &Sealable<'_>) -> Result<Option<Manifest>, StoreError> {
        if batch.receipts.is_empty() && batch.alerts.is_empty() {
            return Ok(None);
        }
        // A commit may hold alerts only: its receipt range is then empty
        // (first = last + 1).
        let first = batch
            .receipts
            .first()
            .map_or(self.sealed_through + 1, |r| r.seq);
        let last = batch.receipts.last().map_or(self.sealed_through, |r| r.seq);
        let commit = self.next_commit;
        // One ledger writer at a time (a report may be writing too).
        let mut ledger = self.ledger.writer()?;
        let sealed_at = format_micros(crate::time::now_micros());
        let mut w = SealWriter {
            data: &self.cfg.data,
            ledger: self.cfg.ledger,
            commit,
            sealed_at: &sealed_at,
            next_index: ledger.next_index(),
            dirs: BTreeMap::new(),
            files: Vec::new(),
        };
        for (day, rows) in partition(batch.receipts, |r| r.received_at) {
            w.write(RECEIPTS, day, &rows, tables::receipts_batch)?;
        }
        for (day, rows) in partition(batch.readings.iter().copied(), |r| r.reading.ts_micros) {
            w.write(READINGS, day, &rows, tables::readings_batch)?;
        }
        for (day, rows) in partition(&batch.gaps, |g| g.gap.to) {
            w.write(GAPS, day, &rows, tables::gaps_batch)?;
        }
        for (day, rows) in partition(batch.rejects, |r| r.received_at) {
            w.write(REJECTS, day, &rows, tables::rejects_batch)?;
        }
        for (day, rows) in partition(&batch.alerts, |a| a.raised_at) {
            w.write(ALERTS, day, &rows, alerts_batch)?;
        }
        for dir in w.dirs.keys() {
            sync_dir(dir)?;
        }
        if crate::fault::strikes(crate::fault::Point::SealPanic) {
            panic!("fault injection: seal-panic (files written, commit not)");
        }
        let files = w.files;

        let mut totals = self.sealed_totals;
        totals.add(&batch.counts);
        let manifest = Manifest {
            commit,
            first_seq: first,
            last_seq: last,
            sealed_at,
            writer: WRITER.to_string(),
            files,
            counts: batch.counts,
            totals,
        };
        commit::write(&self.cfg.data, &manifest)?;
        // The commit is the atomic step; its entries are in the manifest, so
        // a crash from here on is completed on the next start.
        for e in manifest.files.iter().filter_map(|f| f.entry.as_ref()) {
            ledger.append(e)?;
        }
        if self.cfg.ledger {
            ledger.checkpoint(&self.key)?;
        }
        drop(ledger);
        for f in &manifest.files {
            match f.table.as_str() {
                READINGS => self
                    .readings_files
                    .push((commit, self.cfg.data.join(&f.path))),
                ALERTS => self.alert_files.push(self.cfg.data.join(&f.path)),
                _ => {}
            }
        }
        self.next_commit += 1;
        self.sealed_through = last;
        self.sealed_totals = totals;
        Ok(Some(manifest))
    }
}

/// One seal in progress: where its files go, the ledger indices they
/// take, and what was written.
struct SealWriter<'a> {
    data: &'a Path,
    ledger: bool,
    commit: u64,
    sealed_at: &'a str,
    next_index: u64,
    /// Directories to sync once every file is in place.
    dirs: BTreeMap<PathBuf, ()>,
    files: Vec<SealedFile>,
}

impl SealWriter<'_> {
    /// Writes one sealed file of `table` for UTC day `day`: temporary name,
    /// fsync, rename.
    fn write<R>(
        &mut self,
        table: &str,
        day: i64,
        rows: &[R],
        to_batch: impl Fn(&[R]) -> RecordBatch,
    ) -> Result<(), StoreError> {
        let rel_dir = format!("{table}/date={}", utc_date(day * DAY_MICROS));
        let dir = self.data.join(&rel_dir);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            self.dirs.insert(self.data.join(table), ());
            self.dirs.insert(self.data.to_owned(), ());
        }
        self.dirs.insert(dir.clone(), ());
        let commit = self.commit;
        let name = format!("part-{commit:010}.parquet");
        let metadata = vec![
            KeyValue::new("gapless.table".into(), table.to_string()),
            KeyValue::new("gapless.schema_version".into(), SCHEMA_VERSION.to_string()),
            KeyValue::new("gapless.commit".into(), commit.to_string()),
        ];
        let index = self.ledger.then_some(self.next_index);
        self.next_index += 1;
        // A row group's worth at a time (see write_parquet).
        let chunks = rows.chunks(ROW_GROUP_ROWS).map(to_batch);
        let facts = write_parquet(&dir.join(&name), chunks, metadata, index)?;
        let path = format!("{rel_dir}/{name}");
        self.files.push(SealedFile {
            table: table.to_string(),
            rows: facts.rows,
            bytes: facts.bytes,
            sha256: hex::encode(facts.sha256),
            entry: index.map(|i| facts.entry(i, table, &path, Some(commit), self.sealed_at)),
            path,
        });
        Ok(())
    }
}

/// Opens (creating) `path` and blocks until this process holds an
/// exclusive lock on it: what serialises the writers of a data directory's
/// ledger, and its compactors. Released when the file is dropped.
pub(crate) fn lock_exclusive(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// Groups rows by the UTC day of a timestamp, keeping their order. Keys
/// are day numbers: formatted once per partition, not once per row.
fn partition<T>(
    rows: impl IntoIterator<Item = T>,
    ts: impl Fn(&T) -> i64,
) -> BTreeMap<i64, Vec<T>> {
    let mut out: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    let mut last: Option<(i64, Vec<T>)> = None;
    for r in rows {
        let day = ts(&r).div_euclid(DAY_MICROS);
        match &mut last {
            Some((d, v)) if *d == day => v.push(r),
            _ => {
                if let Some((d, v)) = last.take() {
                    out.entry(d).or_default().extend(v);
                }
                last = Some((day, vec![r]));
            }
        }
    }
    if let Some((d, v)) = last {
        out.entry(d).or_default().extend(v);
    }
    out
}

/// Deletes Parquet files that no commit names, and temporary files: what a
/// crash in the middle of a seal leaves behind.
fn remove_uncommitted(
    data: &Path,
    dir: &Path,
    committed: &HashSet<String>,
) -> Result<(), StoreError> {
    if !dir.exists() {
        return Ok(());
    }
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = e.map_err(io_err(dir))?.path();
        if path.is_dir() {
            remove_uncommitted(data, &path, committed)?;
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let rel = path
            .strip_prefix(data)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let orphan =
            name.ends_with(".tmp") || (name.ends_with(".parquet") && !committed.contains(&rel));
        if orphan {
            tracing::warn!(file = %path.display(), "removing a file of an unfinished commit (its rows are rebuilt from the journal)");
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written chunk by chunk holds the rows of all chunks, in
    /// order, and its footer's row root, row count and ranges are those of
    /// the whole; without a chunk there is no file.
    #[test]
    fn a_file_written_in_chunks_is_the_file_of_all_its_rows() {
        use arrow_array::{Int64Array, TimestampMicrosecondArray};
        use arrow_schema::{DataType, Field, Schema, TimeUnit};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("receipt_seq", DataType::Int64, false),
            Field::new(
                "received_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let seqs: Vec<i64> = vec![7, 3, 9, 4, 12, 5, 8];
        let whole = RecordBatch::try_new(
            schema,
            vec![
                std::sync::Arc::new(Int64Array::from(seqs.clone())),
                std::sync::Arc::new(
                    TimestampMicrosecondArray::from(
                        seqs.iter().map(|s| s * 1000).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("part.parquet");
        let chunks = [whole.slice(0, 3), whole.slice(3, 1), whole.slice(4, 3)];
        let facts = write_parquet(&path, chunks, Vec::new(), Some(0)).unwrap();
        assert_eq!(facts.rows, 7);
        assert_eq!(
            (facts.min_receipt_seq, facts.max_receipt_seq),
            (Some(3), Some(12))
        );
        assert_eq!((facts.min_time, facts.max_time), (Some(3000), Some(12_000)));
        let mut hashes = Vec::new();
        canonical::row_hashes(&whole, &mut hashes).unwrap();
        let root = canonical::merkle_root(&hashes);
        assert_eq!(facts.row_root, Some(root));
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let footer = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "gapless.row_root").cloned())
            .and_then(|k| k.value);
        assert_eq!(footer, Some(hex::encode(root)));
        let back: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let back = arrow_select::concat::concat_batches(&whole.schema(), &back).unwrap();
        assert_eq!(back, whole, "the rows of all chunks, in order");

        let none = tmp.path().join("none.parquet");
        assert!(write_parquet(&none, Vec::<RecordBatch>::new(), Vec::new(), None).is_err());
        assert!(!none.exists());
    }

    /// The ledger's time range of an alerts file is that of `raised_at`,
    /// and null slots (here `gap_to` of an alert that is not a resume)
    /// are no time at all.
    #[test]
    fn ranges_skip_nulls_and_alerts_are_timed_by_when_raised() {
        use arrow_array::TimestampMicrosecondArray;
        use arrow_schema::{DataType, Field, Schema, TimeUnit};
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let col = |v: Vec<Option<i64>>| {
            std::sync::Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
                as arrow_array::ArrayRef
        };
        let alerts = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![
                Field::new("raised_at", ts(), false),
                Field::new("gap_to", ts(), true),
            ])),
            vec![col(vec![Some(50), Some(70)]), col(vec![None, Some(40)])],
        )
        .unwrap();
        assert_eq!(batch_ranges(&alerts), (Some((50, 70)), None));
        let gaps = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![Field::new("gap_to", ts(), true)])),
            vec![col(vec![None, Some(40), Some(30), None])],
        )
        .unwrap();
        assert_eq!(batch_ranges(&gaps), (Some((30, 40)), None));
        let all_null = gaps.slice(0, 1);
        assert_eq!(batch_ranges(&all_null), (None, None));
    }
}
