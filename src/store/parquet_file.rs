//! Writing one sealed Parquet file: its rows to a hidden temporary file,
//! hashed as they are written (file SHA-256 and, for the ledger, the row
//! hashes and their root), then the footer, fsync and rename; and the
//! facts the ledger records of it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::tables::SCHEMA_VERSION;
use super::{canonical, io_err, ledger, StoreError, WRITER};
use crate::time::format_micros;

/// What writing a sealed file established: its size and hash, and what
/// the ledger records of its rows.
#[derive(Debug, Clone)]
pub struct FileFacts {
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub rows: u64,
    /// None for a file outside the ledger (benchmarks only).
    pub row_root: Option<canonical::Hash>,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub min_receipt_seq: Option<u64>,
    pub max_receipt_seq: Option<u64>,
}

impl FileFacts {
    /// The ledger entry of this file.
    pub fn entry(
        &self,
        index: u64,
        table: &str,
        path: &str,
        commit: Option<u64>,
        sealed_at: &str,
    ) -> ledger::LedgerEntry {
        ledger::LedgerEntry {
            index,
            table: table.to_owned(),
            path: path.to_owned(),
            size: self.bytes,
            sha256: hex::encode(self.sha256),
            rows: self.rows,
            row_root: self.row_root.map(hex::encode).unwrap_or_default(),
            min_time: self.min_time.map(format_micros),
            max_time: self.max_time.map(format_micros),
            min_receipt_seq: self.min_receipt_seq,
            max_receipt_seq: self.max_receipt_seq,
            schema_version: SCHEMA_VERSION.to_owned(),
            writer: WRITER.to_owned(),
            sealed_at: sealed_at.to_owned(),
            commit,
        }
    }
}

/// The column a table's time range is taken from: the first of these that
/// it has (readings and estimates `ts`, receipts and rejects
/// `received_at`, alerts `raised_at`, gaps `gap_to`, reports
/// `generated_at`). Alerts have a `gap_to` too, null but for
/// `meter_resumed`: it must not be theirs.
pub(crate) const TIME_COLUMNS: [&str; 5] =
    ["ts", "received_at", "raised_at", "gap_to", "generated_at"];

/// A batch's time range (µs) and receipt range, each None when it has no
/// such column or no non-null value.
pub(crate) type BatchRanges = (Option<(i64, i64)>, Option<(u64, u64)>);

/// Time range and receipt range of a batch (for the ledger), over its
/// non-null values: what a null slot holds in memory is not data (a
/// builder leaves 0 there, a Parquet reader whatever it likes).
pub(crate) fn batch_ranges(batch: &RecordBatch) -> BatchRanges {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    fn range<T: Ord + Copy>(values: impl Iterator<Item = Option<T>>) -> Option<(T, T)> {
        values
            .flatten()
            .fold(None, |r, v| merge_range(r, Some((v, v))))
    }
    let time = TIME_COLUMNS
        .iter()
        .find_map(|c| batch.column_by_name(c))
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .and_then(|c| range(c.iter()));
    let seq = batch
        .column_by_name("receipt_seq")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .and_then(|c| range(c.iter().map(|v| v.map(|v| v as u64))));
    (time, seq)
}

/// Widens range `a` to cover range `b` (either may be absent).
pub(crate) fn merge_range<T: Ord + Copy>(a: Option<(T, T)>, b: Option<(T, T)>) -> Option<(T, T)> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
        (x, y) => x.or(y),
    }
}

/// Writes one immutable Parquet file: to a temporary name beside it, fsync,
/// then rename (the caller syncs the directory). `metadata` goes into the
/// footer, with the file's ledger index (if it has one yet) and its row
/// root. Returns what the ledger needs. Refuses to replace an existing file.
///
/// The rows come as `batches` of one schema, in file order, taken one at a
/// time: a seal builds each chunk (a row group's worth) just before it is
/// written and drops it after, so a large file never holds all its Arrow
/// arrays at once and the allocator hands the same memory to the next
/// chunk (building one batch per file made the kernel zero fresh pages for
/// every seal: a quarter of the store's CPU under load). At least one batch
/// is required (it carries the schema).
pub(crate) fn write_parquet(
    path: &Path,
    batches: impl IntoIterator<Item = RecordBatch>,
    metadata: Vec<KeyValue>,
    ledger_index: Option<u64>,
) -> Result<FileFacts, StoreError> {
    write_parquet_as(path, batches, metadata, ledger_index, Layout::Sealed)
}

/// How a file's columns are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Snappy pages, dictionaries where they pay: small files, written once
    /// and read by everyone's tools.
    Sealed,
    /// For files read over and over by scans (compacted readings).
    Compacted,
}

/// [`write_parquet`] with a choice of [`Layout`].
pub fn write_parquet_as(
    path: &Path,
    batches: impl IntoIterator<Item = RecordBatch>,
    metadata: Vec<KeyValue>,
    ledger_index: Option<u64>,
    layout: Layout,
) -> Result<FileFacts, StoreError> {
    let mut batches = batches.into_iter();
    let Some(first) = batches.next() else {
        return Err(io_err(path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a sealed file needs at least one batch (its schema)",
        )));
    };
    let mut draft = ParquetDraft::create(
        path,
        &first.schema(),
        metadata,
        ledger_index.is_some(),
        layout,
    )?;
    for batch in std::iter::once(first).chain(batches) {
        draft.write(&batch)?;
    }
    draft.seal(path, ledger_index)
}

/// A sealed file being written: its rows go to a hidden temporary file
/// beside it; [`seal`](Self::seal) writes the footer (with the file's
/// ledger index and row root), fsyncs and renames it. A writer whose file
/// must name a ledger index it can only take under the ledger lock (a
/// compaction) writes its rows first and takes the lock only to seal. A
/// draft dropped unsealed removes its temporary file.
pub(crate) struct ParquetDraft {
    tmp: PathBuf,
    writer: Option<ArrowWriter<HashingWriter<BufWriter<File>>>>,
    hash_rows: bool,
    hashes: Vec<canonical::Hash>,
    /// Computed once the rows are complete.
    row_root: Option<canonical::Hash>,
    ranges: BatchRanges,
    rows: u64,
}

impl ParquetDraft {
    /// Starts a file that will be sealed in `path`'s directory. Refuses an
    /// existing `path`. `hash_rows`: compute the row hashes (for a file the
    /// ledger will hold).
    pub fn create(
        path: &Path,
        schema: &arrow_schema::SchemaRef,
        metadata: Vec<KeyValue>,
        hash_rows: bool,
        layout: Layout,
    ) -> Result<ParquetDraft, StoreError> {
        if path.exists() {
            return Err(io_err(path)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "sealed files are never replaced",
            )));
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        if layout == Layout::Compacted {
            // Integer columns delta-encoded instead of dictionary-encoded: in
            // a file sorted by series and time they are runs of small steps.
            // On 72 M readings this made compacted files 44 % smaller than
            // the default and a report scan 10-20 % faster (README,
            // Benchmarks).
            for f in schema.fields() {
                let integer = match f.data_type() {
                    DataType::Decimal128(p, _) => *p <= 18,
                    // Not the 8- and 16-bit columns (flags and digit
                    // counts, mostly one value: a dictionary's run is
                    // cheaper).
                    t => {
                        (t.is_integer() && t.primitive_width() >= Some(4))
                            || matches!(t, DataType::Timestamp(..))
                    }
                };
                if integer {
                    let c = ColumnPath::from(f.name().as_str());
                    props = props
                        .set_column_dictionary_enabled(c.clone(), false)
                        .set_column_encoding(c, Encoding::DELTA_BINARY_PACKED);
                }
            }
        }
        let props = props
            // Row groups small enough that a scan can take a range of
            // meters (by the groups' statistics) without decoding the
            // others.
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Pages of at most this many rows, with their bounds in the
            // page index: a lookup of one meter's values decodes one page
            // per column, not a row group (`store::lookup`).
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_created_by(WRITER.to_string())
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(|source| {
            StoreError::Parquet {
                path: tmp.clone(),
                source,
            }
        });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        Ok(ParquetDraft {
            tmp,
            writer: Some(writer),
            hash_rows,
            hashes: Vec::new(),
            row_root: None,
            ranges: (None, None),
            rows: 0,
        })
    }

    fn pq(&self) -> impl FnOnce(parquet::errors::ParquetError) -> StoreError + '_ {
        move |source| StoreError::Parquet {
            path: self.tmp.clone(),
            source,
        }
    }

    /// Adds rows. A seal writes a row group's worth at a time (see
    /// [`write_parquet`]). Row hashes are computed on a second thread while
    /// this one encodes the batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        if self.row_root.is_some() {
            return Err(io_err(&self.tmp)(io::Error::other(
                "rows written after finish_rows",
            )));
        }
        let (t, s) = batch_ranges(batch);
        self.ranges = (merge_range(self.ranges.0, t), merge_range(self.ranges.1, s));
        self.rows += batch.num_rows() as u64;
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let tmp = &self.tmp;
        let (hash_rows, hashes) = (self.hash_rows, &mut self.hashes);
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let hashing =
                hash_rows.then(|| scope.spawn(move || canonical::row_hashes(batch, hashes)));
            w.write(batch).map_err(|source| StoreError::Parquet {
                path: tmp.clone(),
                source,
            })?;
            if let Some(h) = hashing {
                h.join().map_err(|_| StoreError::Io {
                    path: tmp.clone(),
                    source: io::Error::other("row hashing panicked"),
                })??;
            }
            Ok(())
        })
    }

    /// Ends the rows: computes their row root and makes them durable, so
    /// that [`seal`](Self::seal) has only its footer to write and sync (a
    /// compaction calls this before it takes the ledger lock; for a day of
    /// 9.5 M readings the root alone is a second of hashing).
    pub(crate) fn finish_rows(&mut self) -> Result<(), StoreError> {
        if self.hash_rows && self.row_root.is_none() {
            self.row_root = Some(canonical::merkle_root(&self.hashes));
            self.hashes = Vec::new();
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        w.flush().map_err(|source| StoreError::Parquet {
            path: self.tmp.clone(),
            source,
        })?;
        let buf = &mut w.inner_mut().inner;
        buf.flush()
            .and_then(|()| buf.get_ref().sync_data())
            .map_err(io_err(&self.tmp))
    }

    /// Writes the footer (adding `gapless.row_root` and, when given,
    /// `gapless.ledger_index`), fsyncs, and renames the file to `path`
    /// (the caller syncs the directory). Refuses an existing `path`.
    pub fn seal(mut self, path: &Path, ledger_index: Option<u64>) -> Result<FileFacts, StoreError> {
        if path.exists() {
            return Err(io_err(path)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "sealed files are never replaced",
            )));
        }
        let Some(mut w) = self.writer.take() else {
            return Err(io_err(&self.tmp)(io::Error::other("sealed twice")));
        };
        if self.hash_rows && self.row_root.is_none() {
            self.row_root = Some(canonical::merkle_root(&self.hashes));
        }
        let row_root = self.row_root;
        if let Some(root) = row_root {
            w.append_key_value_metadata(KeyValue::new(
                "gapless.row_root".into(),
                hex::encode(root),
            ));
        }
        if let Some(i) = ledger_index {
            w.append_key_value_metadata(KeyValue::new(
                "gapless.ledger_index".into(),
                i.to_string(),
            ));
        }
        let sink = w.into_inner().map_err(self.pq())?;
        let (buf, sha, bytes) = sink.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err(&self.tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        fs::rename(&self.tmp, path).map_err(io_err(path))?;
        let (time, seq) = self.ranges;
        Ok(FileFacts {
            bytes,
            sha256: sha,
            rows: self.rows,
            row_root,
            min_time: time.map(|t| t.0),
            max_time: time.map(|t| t.1),
            min_receipt_seq: seq.map(|s| s.0),
            max_receipt_seq: seq.map(|s| s.1),
        })
    }
}

impl Drop for ParquetDraft {
    fn drop(&mut self) {
        // Unsealed (an error on the way): the temporary file is debris.
        if self.writer.is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Rows per Parquet row group.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per data page, at most (16 pages a full row group).
pub(crate) const PAGE_ROWS: usize = 4 * 1024;

/// A writer that hashes and counts what passes through it, so a sealed
/// file's SHA-256 costs no second read.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
