//! Store: journaled messages → decoded, deduplicated rows → sealed Parquet.
//!
//! The store consumes journal records in sequence order. Each record becomes
//! one `receipts` row and either `readings` rows or one `rejects` row. Rows
//! wait in memory until a seal (by row count or age), which writes one file
//! per table and UTC date and then a commit manifest ([`commit`]). The
//! journal is truncated only up to the last sealed receipt, so a crash at any
//! point loses nothing: on start, files of an unfinished commit are removed
//! and the journal after the last commit is replayed, which rebuilds the same
//! rows with the same dispositions.

pub mod canonical;
pub mod commit;
pub mod compact;
pub mod dedup;
pub mod ledger;
pub(crate) mod state_file;
pub mod tables;
pub mod tiles;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::alerts::engine::{AlertEngine, AlertStats};
use crate::alerts::table::{alerts_batch, ALERTS};
use crate::alerts::{Alert, AlertConfig};
use crate::continuity::live::{GapChange, LiveEngine};
use crate::continuity::series::Point;
use crate::continuity::{Context, IntervalSource};
use crate::decode::{self, DecodeConfig, Format};
use crate::journal::{sync_dir, JournalRecord};
use crate::reading::{fraction_digits, ReadingKind};
use commit::{CommitError, Counters, Manifest, SealedFile};
use dedup::{DedupIndex, Verdict};
use tables::{
    Disposition, GapEvent, GapRow, ReadingRow, ReceiptRow, RejectRow, GAPS, READINGS, RECEIPTS,
    REJECTS, SCHEMA_VERSION,
};

/// Prompt seals (for alerts) come at most this often, so that a storm of
/// events does not become a storm of small files.
const MIN_PROMPT_SEAL_GAP: Duration = Duration::from_millis(250);

/// Groups learned from topics, one `meter\tgroup` line each, in `_state`.
pub const ALERT_GROUPS_FILE: &str = "alert_groups.tsv";
/// When the alert engine first started (µs), in `_state`.
pub const ALERTS_SINCE_FILE: &str = "alerts_since";

/// Writer identification stored in manifests and Parquet footers.
pub const WRITER: &str = concat!("gapless ", env!("CARGO_PKG_VERSION"));

/// How the store seals.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data: PathBuf,
    /// Seal once this many rows (receipts or readings) are waiting.
    pub seal_max_rows: usize,
    /// Seal once the oldest waiting receipt is this old.
    pub seal_max_age: Duration,
    pub decode: DecodeConfig,
    /// Rules and registry of the live gap detection.
    pub continuity: Context,
    /// Ed25519 seed (hex) that signs ledger checkpoints [default:
    /// DATA/_state/audit.key, made on first start].
    pub audit_key: Option<PathBuf>,
    /// Row hashing and the ledger. Always on in the service; off only in
    /// `gapless bench report --ledger-cost`, to measure what they cost.
    pub ledger: bool,
    /// Alert rules (the engine runs in the store; see [`crate::alerts`]).
    pub alerts: AlertConfig,
}

#[cfg(test)]
impl StoreConfig {
    /// A store for unit tests: seals by rows only, any reading time
    /// accepted (fixtures are historic), default rules, the ledger on.
    pub(crate) fn for_test(data: &Path, seal_max_rows: usize) -> StoreConfig {
        StoreConfig {
            data: data.to_owned(),
            seal_max_rows,
            seal_max_age: Duration::from_secs(3600),
            decode: DecodeConfig {
                max_future_skew_micros: i64::MAX / 4,
                ..DecodeConfig::default()
            },
            continuity: Context::default(),
            audit_key: None,
            ledger: true,
            alerts: AlertConfig::default(),
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
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Rows received since the last seal.
#[derive(Default)]
struct Pending {
    receipts: Vec<ReceiptRow>,
    readings: Vec<ReadingRow>,
    rejects: Vec<RejectRow>,
    counts: Counters,
    since: Option<Instant>,
    /// Something waits for a prompt seal: alerts raised, or a meter
    /// resuming (its `meter_resumed` needs the gap the seal finds).
    soon: bool,
}

impl Pending {
    /// Empties the batch but keeps the vectors' memory: growing them again
    /// after every seal made the kernel zero fresh (huge) pages each time.
    fn clear(&mut self) {
        self.receipts.clear();
        self.readings.clear();
        self.rejects.clear();
        self.counts = Counters::default();
        self.since = None;
        self.soon = false;
    }
}

/// What the store thread publishes for metrics (the API reads it).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Meters the alert engine tracks (seen, or in the registry).
    pub meters_known: AtomicU64,
    /// Series silent past their gap threshold (refreshed every few seconds).
    pub open_gaps: AtomicU64,
    pub open_meter_silent: AtomicU64,
    pub open_meter_never_seen: AtomicU64,
    pub open_group_silent: AtomicU64,
    pub open_reject_burst: AtomicU64,
    /// Alerts sealed since start.
    pub alerts_sealed: AtomicU64,
    /// Dates compacted, and dates whose compaction failed, since start.
    pub compactions_done: AtomicU64,
    pub compactions_failed: AtomicU64,
    /// Witness requests that failed (`serve --witness`; each retried).
    pub witness_failures: AtomicU64,
    /// The newest tree size every witness has cosigned.
    pub witness_cosigned_size: AtomicU64,
}

impl LiveStats {
    pub fn set_alerts(&self, a: &AlertStats) {
        self.meters_known.store(a.meters, Ordering::Relaxed);
        self.open_meter_silent
            .store(a.open_meter_silent, Ordering::Relaxed);
        self.open_meter_never_seen
            .store(a.open_meter_never_seen, Ordering::Relaxed);
        self.open_group_silent
            .store(a.open_group_silent, Ordering::Relaxed);
        self.open_reject_burst
            .store(a.open_reject_burst, Ordering::Relaxed);
    }
}

/// The store stage. Owned by one thread.
pub struct Store {
    cfg: StoreConfig,
    next_commit: u64,
    sealed_through: u64,
    sealed_totals: Counters,
    index: DedupIndex,
    /// Per-series continuity state: gaps are found as readings are sealed.
    live: LiveEngine,
    /// Every sealed file is entered here, and each commit signed.
    ledger: ledger::Ledger,
    key: ledger::AuditKey,
    pending: Pending,
    /// Silence deadlines and alert state; its alerts are sealed into the
    /// `alerts` table.
    alerts: AlertEngine,
    /// The latest time the store was told (receive times, ticks), µs: the
    /// time of alerts raised at a seal.
    now: i64,
    /// Alerts sealed and not yet handed to the sinks.
    told: Vec<Alert>,
    last_seal: Option<Instant>,
    /// The committed files of the `alerts` table (read by `start_alerts`).
    alert_files: Vec<PathBuf>,
}

impl Store {
    /// Opens the data directory: reads the commit log, removes files of an
    /// unfinished commit, and rebuilds the duplicate index from sealed
    /// readings.
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
        // The duplicate index and the live continuity state, from what is
        // sealed (the gaps these readings found are sealed too).
        let mut index = DedupIndex::default();
        let mut live = LiveEngine::new(cfg.continuity.config.clone())
            .with_registry(cfg.continuity.registry.clone());
        let mut alerts = AlertEngine::new(cfg.alerts.clone(), cfg.continuity.clone());
        for m in &manifests {
            for f in m.files.iter().filter(|f| f.table == READINGS) {
                load_sealed_readings(
                    &cfg.data.join(&f.path),
                    &mut index,
                    &mut live,
                    &mut alerts,
                    &cfg.continuity,
                )?;
            }
            // A commit is the batch its seal settled (its rows were sealed).
            for s in live.settle() {
                alerts.interval_inferred(&s.meter, s.interval.micros);
            }
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
        Ok(Store {
            next_commit: last.map_or(1, |m| m.commit + 1),
            sealed_through: last.map_or(0, |m| m.last_seq),
            sealed_totals: last.map_or_else(Counters::default, |m| m.totals),
            index,
            live,
            ledger,
            key,
            pending: Pending::default(),
            alerts,
            now: i64::MIN,
            told: Vec::new(),
            last_seal: None,
            alert_files: manifests
                .iter()
                .flat_map(|m| &m.files)
                .filter(|f| f.table == ALERTS)
                .map(|f| cfg.data.join(&f.path))
                .collect(),
            cfg,
        })
    }

    /// Starts the alert engine at `now` (µs): the groups learned before,
    /// the registry's meters never seen, the open alerts of the sealed
    /// `alerts` table, and the startup grace. Call once, before ingesting.
    /// Returns the alerts sealed so far (the sinks resume from them).
    pub fn start_alerts(
        &mut self,
        now: i64,
    ) -> Result<Vec<crate::alerts::table::Told>, StoreError> {
        let state = self.cfg.data.join(crate::app::STATE_DIR);
        let groups = state.join(ALERT_GROUPS_FILE);
        match fs::read_to_string(&groups) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((meter, group)) = line.split_once('\t') {
                        self.alerts.restore_group(meter, group);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&groups)(e)),
        }
        // Registry meters never seen are judged from the first start.
        let since_path = state.join(ALERTS_SINCE_FILE);
        let since = state_file::read_or_init_micros(&since_path, now)?;
        self.alerts.track_registry(since);
        let told =
            crate::alerts::table::read_files(&self.alert_files).map_err(|why| StoreError::Io {
                path: self.cfg.data.join(ALERTS),
                source: io::Error::other(why),
            })?;
        self.alerts.restore(told.iter().map(|t| &t.alert), now);
        self.alerts
            .hold_until(now.saturating_add(self.cfg.alerts.startup_grace_s as i64 * 1_000_000));
        self.now = now;
        Ok(told)
    }

    /// Judges silence deadlines at `now` (µs); alerts raised make the
    /// next seal due at once.
    pub fn tick_alerts(&mut self, now: i64) {
        self.now = self.now.max(now);
        self.alerts.tick(now);
        if self.alerts.has_pending() {
            self.pending.soon = true;
        }
    }

    /// Alerts sealed since the last call, for the sinks.
    pub fn take_told(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.told)
    }

    pub fn alert_stats(&self) -> AlertStats {
        self.alerts.stats()
    }

    /// Series whose last reading is past their gap threshold at `now`.
    pub fn open_gaps(&self, now: i64) -> usize {
        self.live.open_gaps(now).count()
    }

    /// The last receipt sequence number held in sealed files (0 if none).
    pub fn sealed_through(&self) -> u64 {
        self.sealed_through
    }

    /// Counters over sealed and pending receipts.
    pub fn totals(&self) -> Counters {
        let mut t = self.sealed_totals;
        t.add(&self.pending.counts);
        t
    }

    /// Receipts waiting for the next seal.
    pub fn pending_receipts(&self) -> usize {
        self.pending.receipts.len()
    }

    /// Decodes one journaled message and adds its rows to the pending batch.
    pub fn ingest(&mut self, rec: &JournalRecord) {
        debug_assert!(rec.seq > self.sealed_through);
        let sha256: [u8; 32] = Sha256::digest(&rec.payload).into();
        let mut receipt = ReceiptRow {
            seq: rec.seq,
            received_at: rec.received_at,
            topic: rec.topic.clone(),
            sha256,
            size: rec.payload.len().min(u32::MAX as usize) as u32,
            format: None,
            disposition: Disposition::Rejected,
            reason: None,
            readings_stored: 0,
            readings_duplicate: 0,
            readings_conflict: 0,
        };
        let counts = &mut self.pending.counts;
        counts.delivered += 1;
        self.now = self.now.max(rec.received_at);
        match decode::decode(&rec.topic, &rec.payload, rec.received_at, &self.cfg.decode) {
            Ok(decoded) => {
                receipt.format = Some(decoded.format);
                let lora = matches!(decoded.format, Format::Chirpstack | Format::Tts);
                let mut notes = decoded.notes;
                for (i, reading) in decoded.readings.into_iter().enumerate() {
                    match self.index.check(&reading) {
                        Verdict::Duplicate => receipt.readings_duplicate += 1,
                        verdict => {
                            let conflict = verdict == Verdict::Conflict;
                            if conflict {
                                self.alerts.conflict(
                                    reading.meter_id.as_str(),
                                    &reading.register,
                                    reading.ts_micros,
                                    reading.value.as_str(),
                                    rec.received_at,
                                );
                            } else if reading.kind == ReadingKind::Measured
                                && self.alerts.reading(
                                    reading.meter_id.as_str(),
                                    reading.medium,
                                    lora,
                                    reading.ts_micros,
                                    crate::alerts::message_group(
                                        decoded.gateway.as_deref(),
                                        &rec.topic,
                                    ),
                                    rec.received_at,
                                )
                            {
                                self.pending.soon = true;
                            }
                            if conflict {
                                receipt.readings_conflict += 1;
                                notes.push(format!(
                                    "conflict: meter {} register {} at {} already has a different value; stored {} flagged",
                                    reading.meter_id,
                                    reading.register,
                                    format_micros(reading.ts_micros),
                                    reading.value
                                ));
                            }
                            receipt.readings_stored += 1;
                            self.pending.readings.push(ReadingRow {
                                reading,
                                conflict,
                                receipt_seq: rec.seq,
                                reading_index: i as u32,
                                received_at: rec.received_at,
                                format: decoded.format,
                            });
                        }
                    }
                }
                counts.readings_stored += receipt.readings_stored as u64;
                counts.readings_duplicate += receipt.readings_duplicate as u64;
                counts.readings_conflict += receipt.readings_conflict as u64;
                if receipt.readings_stored > 0 {
                    receipt.disposition = Disposition::Stored;
                    counts.stored += 1;
                } else {
                    receipt.disposition = Disposition::Duplicate;
                    counts.duplicate += 1;
                    notes.insert(
                        0,
                        format!("all {} readings already stored", receipt.readings_duplicate),
                    );
                }
                if !notes.is_empty() {
                    receipt.reason = Some(notes.join("; "));
                }
            }
            Err(rejection) => {
                self.alerts.rejection(
                    &rec.topic,
                    &rejection.reason,
                    rejection.reason.contains(decode::CLOCK_SKEW_MARK),
                    rec.received_at,
                );
                counts.rejected += 1;
                receipt.format = rejection.format;
                receipt.reason = Some(rejection.reason.clone());
                self.pending.rejects.push(RejectRow {
                    seq: rec.seq,
                    received_at: rec.received_at,
                    topic: rec.topic.clone(),
                    format: rejection.format,
                    reason: rejection.reason,
                    payload: rec.payload.clone(),
                });
            }
        }
        self.pending.receipts.push(receipt);
        self.pending.since.get_or_insert_with(Instant::now);
        if self.alerts.has_pending() {
            self.pending.soon = true;
        }
    }

    /// Whether the pending batch is due for sealing: by rows (receipts or
    /// readings, whichever is more: a message may carry many readings, and
    /// pending rows are held in memory) or by age.
    pub fn is_seal_due(&self, now: Instant) -> bool {
        (self.pending.soon
            && self
                .last_seal
                .is_none_or(|t| now.duration_since(t) >= MIN_PROMPT_SEAL_GAP))
            || self.pending.receipts.len().max(self.pending.readings.len())
                >= self.cfg.seal_max_rows
            || self
                .pending
                .since
                .is_some_and(|t| now.duration_since(t) >= self.cfg.seal_max_age)
    }

    /// Seals the pending batch: one Parquet file per table and UTC date,
    /// then the commit manifest. Returns the manifest, or None if nothing
    /// was pending.
    pub fn seal(&mut self) -> Result<Option<Manifest>, StoreError> {
        if self.pending.receipts.is_empty() && !self.alerts.has_pending() {
            return Ok(None);
        }
        // A commit may hold alerts only: its receipt range is then empty
        // (first = last + 1).
        let first = self
            .pending
            .receipts
            .first()
            .map_or(self.sealed_through + 1, |r| r.seq);
        let last = self
            .pending
            .receipts
            .last()
            .map_or(self.sealed_through, |r| r.seq);
        let commit = self.next_commit;
        // One ledger writer at a time (a report may be writing too).
        let mut ledger = self.ledger.writer()?;
        let sealed_at = format_micros(chrono::Utc::now().timestamp_micros());
        let mut w = SealWriter {
            data: &self.cfg.data,
            ledger: self.cfg.ledger,
            commit,
            sealed_at: &sealed_at,
            next_index: ledger.next_index(),
            dirs: BTreeMap::new(),
            files: Vec::new(),
        };
        let p = &self.pending;
        for (day, rows) in partition(&p.receipts, |r| r.received_at) {
            w.write(RECEIPTS, day, &rows, tables::receipts_batch)?;
        }
        let mut readings: Vec<&ReadingRow> = p.readings.iter().collect();
        // Sorted by meter, register and time within each file, so that the
        // continuity pass can stream files without re-sorting them.
        readings.sort_by(|a, b| {
            (
                a.reading.meter_id.as_str(),
                &a.reading.register,
                a.reading.ts_micros,
                a.receipt_seq,
            )
                .cmp(&(
                    b.reading.meter_id.as_str(),
                    &b.reading.register,
                    b.reading.ts_micros,
                    b.receipt_seq,
                ))
        });
        let gaps = find_gaps(
            &mut self.live,
            &mut self.alerts,
            &self.cfg.continuity,
            &readings,
            self.now,
        );
        self.alerts.finish_resumes(
            gaps.iter()
                .filter(|g| g.event == GapEvent::Found)
                .map(|g| (g.meter_id.as_str(), g.register.as_str(), &g.gap)),
            self.now,
        );
        let alerts = self.alerts.take();
        let learned = self.alerts.take_learned();
        for (day, rows) in partition(readings, |r| r.reading.ts_micros) {
            w.write(READINGS, day, &rows, tables::readings_batch)?;
        }
        for (day, rows) in partition(&gaps, |g| g.gap.to) {
            w.write(GAPS, day, &rows, tables::gaps_batch)?;
        }
        for (day, rows) in partition(&p.rejects, |r| r.received_at) {
            w.write(REJECTS, day, &rows, tables::rejects_batch)?;
        }
        for (day, rows) in partition(&alerts, |a| a.raised_at) {
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
        totals.add(&p.counts);
        let manifest = Manifest {
            commit,
            first_seq: first,
            last_seq: last,
            sealed_at,
            writer: WRITER.to_string(),
            files,
            counts: p.counts,
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
        if !learned.is_empty() {
            self.remember_groups(&learned)?;
        }
        self.next_commit += 1;
        self.sealed_through = last;
        self.sealed_totals = totals;
        self.pending.clear();
        self.told.extend(alerts);
        self.last_seal = Some(Instant::now());
        Ok(Some(manifest))
    }

    /// Appends groups learned from topics to `_state/alert_groups.tsv`, so
    /// that a meter silent across a restart still belongs to its group.
    fn remember_groups(&self, learned: &[(String, String)]) -> Result<(), StoreError> {
        let path = self
            .cfg
            .data
            .join(crate::app::STATE_DIR)
            .join(ALERT_GROUPS_FILE);
        let mut text = String::new();
        for (meter, group) in learned {
            text.push_str(meter);
            text.push('\t');
            text.push_str(group);
            text.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(text.as_bytes()).map_err(io_err(&path))
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
pub const TIME_COLUMNS: [&str; 5] = ["ts", "received_at", "raised_at", "gap_to", "generated_at"];

/// A batch's time range (µs) and receipt range, each None when it has no
/// such column or no non-null value.
pub type BatchRanges = (Option<(i64, i64)>, Option<(u64, u64)>);

/// Time range and receipt range of a batch (for the ledger), over its
/// non-null values: what a null slot holds in memory is not data (a
/// builder leaves 0 there, a Parquet reader whatever it likes).
pub fn batch_ranges(batch: &RecordBatch) -> BatchRanges {
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
pub fn merge_range<T: Ord + Copy>(a: Option<(T, T)>, b: Option<(T, T)>) -> Option<(T, T)> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
        (x, y) => x.or(y),
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
pub fn write_parquet(
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
pub struct ParquetDraft {
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
    pub fn finish_rows(&mut self) -> Result<(), StoreError> {
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

/// Runs the live continuity engine over a batch of readings (sorted by
/// series and time) and returns the `gaps` rows it produced: first the set
/// dates the batch reports (so that a reset sent with its set date is
/// explained), then the measured readings, then the series whose interval
/// the batch let the engine infer ([`LiveEngine::settle`]).
fn find_gaps(
    live: &mut LiveEngine,
    alerts: &mut AlertEngine,
    ctx: &Context,
    readings: &[&ReadingRow],
    now: i64,
) -> Vec<GapRow> {
    let mut out = Vec::new();
    for r in readings
        .iter()
        .filter(|r| r.reading.kind == ReadingKind::SetDate)
    {
        let rd = &r.reading;
        let day = rd.ts_micros.div_euclid(DAY_MICROS);
        for (register, change) in live.set_day(rd.meter_id.as_str(), day) {
            let source = live
                .interval(rd.meter_id.as_str(), &register)
                .map_or(IntervalSource::Default, |i| i.source);
            if let GapChange::Split { old, parts } = change {
                let row = |event, gap| GapRow {
                    meter_id: rd.meter_id.as_str().to_owned(),
                    register: register.clone(),
                    medium: rd.medium,
                    event,
                    gap,
                    interval_source: source,
                    receipt_seq: r.receipt_seq,
                    detected_at: r.received_at,
                };
                out.push(row(GapEvent::Superseded, old));
                out.extend(parts.into_iter().map(|g| row(GapEvent::Found, g)));
            }
        }
    }
    for r in readings
        .iter()
        .filter(|r| is_series_reading(r.reading.kind, r.conflict))
    {
        let rd = &r.reading;
        let (meter, register) = (rd.meter_id.as_str(), rd.register.as_str());
        let lora = matches!(r.format, Format::Chirpstack | Format::Tts);
        let point = Point {
            ts: rd.ts_micros,
            value: rd.value.scaled(),
            decimals: fraction_digits(rd.value.as_str()),
            seq: rd.seq,
            received_at: r.received_at,
        };
        let changes = live.observe(
            meter,
            register,
            || ctx.setup(meter, rd.medium, lora),
            point,
            (r.receipt_seq, r.reading_index),
        );
        if changes.is_empty() {
            continue;
        }
        let source = live
            .interval(meter, register)
            .map_or(IntervalSource::Default, |i| i.source);
        let row = |event, gap| GapRow {
            meter_id: meter.to_owned(),
            register: register.to_owned(),
            medium: rd.medium,
            event,
            gap,
            interval_source: source,
            receipt_seq: r.receipt_seq,
            detected_at: r.received_at,
        };
        for c in changes {
            match c {
                GapChange::Found(g) => out.push(row(GapEvent::Found, g)),
                GapChange::Split { old, parts } => {
                    out.push(row(GapEvent::Superseded, old));
                    out.extend(parts.into_iter().map(|g| row(GapEvent::Found, g)));
                }
                GapChange::Decrease { before, after } => {
                    let (b, a) = (
                        crate::reading::format_fixed(before.value, before.decimals),
                        crate::reading::format_fixed(after.value, after.decimals),
                    );
                    alerts.regression(meter, register, (before.ts, &b), (after.ts, &a), now);
                }
            }
        }
    }
    for s in live.settle() {
        alerts.interval_inferred(&s.meter, s.interval.micros);
        let row = |event, gap, source| GapRow {
            meter_id: s.meter.clone(),
            register: s.register.clone(),
            medium: s.medium,
            event,
            gap,
            interval_source: source,
            receipt_seq: s.cause.0,
            detected_at: s.cause_received_at,
        };
        // The gaps judged meanwhile were judged with the built-in interval.
        out.extend(
            s.old
                .iter()
                .map(|g| row(GapEvent::Superseded, g.clone(), IntervalSource::Default)),
        );
        out.extend(
            s.new
                .iter()
                .map(|g| row(GapEvent::Found, g.clone(), s.interval.source)),
        );
    }
    out
}

/// Whether a stored reading belongs to its series' telegram stream: measured
/// values, not set-date values and not conflicting values.
fn is_series_reading(kind: ReadingKind, conflict: bool) -> bool {
    kind == ReadingKind::Measured && !conflict
}

/// Adds every reading of a sealed `readings` file to the duplicate index and
/// the live continuity state (whose changes were sealed with the file).
fn load_sealed_readings(
    path: &Path,
    index: &mut DedupIndex,
    live: &mut LiveEngine,
    alerts: &mut AlertEngine,
    ctx: &Context,
) -> Result<(), StoreError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::types::{UInt32Type, UInt64Type};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;

    let pq = |source| StoreError::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        [
            "meter_id",
            "register",
            "ts",
            "medium",
            "unit",
            "value",
            "value_decimal",
            "seq",
            "kind",
            "conflict",
            "received_at",
            "format",
            "receipt_seq",
            "reading_index",
        ],
    );
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(pq)?;
    let mut latest: Option<LatestOfMeter> = None;
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
        let medium = col("medium")?.as_string::<i32>();
        let unit = col("unit")?.as_string::<i32>();
        let text = col("value")?.as_string::<i32>();
        let value = col("value_decimal")?.as_primitive::<Decimal128Type>();
        let seq = col("seq")?.as_primitive::<UInt64Type>();
        let kind = col("kind")?.as_string::<i32>();
        let conflict = col("conflict")?.as_boolean();
        let received = col("received_at")?.as_primitive::<TimestampMicrosecondType>();
        let format = col("format")?.as_string::<i32>();
        let receipt = col("receipt_seq")?.as_primitive::<Int64Type>();
        let reading_index = col("reading_index")?.as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            let (m, r) = (meter.value(i), register.value(i));
            index.check_parts(m, r, ts.value(i), value.value(i), unit.value(i));
            let k = if kind.value(i) == "set_date" {
                // The gaps it re-judged were sealed with it: only the
                // state is rebuilt here.
                live.set_day(m, ts.value(i).div_euclid(DAY_MICROS));
                ReadingKind::SetDate
            } else {
                ReadingKind::Measured
            };
            if !is_series_reading(k, conflict.value(i)) {
                continue;
            }
            let Some(md) = crate::reading::Medium::parse(medium.value(i)) else {
                continue;
            };
            let lora = matches!(format.value(i), "chirpstack" | "tts");
            let point = Point {
                ts: ts.value(i),
                value: value.value(i),
                decimals: fraction_digits(text.value(i)),
                seq: (!seq.is_null(i)).then(|| seq.value(i)),
                received_at: received.value(i),
            };
            let key = (receipt.value(i) as u64, reading_index.value(i));
            live.observe(m, r, || ctx.setup(m, md, lora), point, key);
            // Rows are sorted by meter: the alert engine needs each
            // meter's latest time once per run of its rows (intervals
            // inferred meanwhile: at the commit's settle).
            match &mut latest {
                Some(l) if l.meter == m => {
                    l.ts = l.ts.max(point.ts);
                }
                _ => {
                    if let Some(l) = latest.take() {
                        l.tell(alerts);
                    }
                    latest = Some(LatestOfMeter {
                        meter: m.to_owned(),
                        ts: point.ts,
                        medium: md,
                        lora,
                    });
                }
            }
        }
    }
    if let Some(l) = latest {
        l.tell(alerts);
    }
    Ok(())
}

/// A meter's latest reading in a run of sealed rows, for the alert engine.
struct LatestOfMeter {
    meter: String,
    ts: i64,
    medium: crate::reading::Medium,
    lora: bool,
}

impl LatestOfMeter {
    fn tell(self, alerts: &mut AlertEngine) {
        alerts.observe_sealed(&self.meter, self.medium, self.lora, self.ts);
    }
}

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

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

/// `YYYY-MM-DD` of a microsecond UTC timestamp.
pub fn utc_date(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid".to_string())
}

/// RFC 3339 UTC with microseconds trimmed when zero.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;

    fn store(data: &Path, max_rows: usize) -> Store {
        Store::open(StoreConfig::for_test(data, max_rows)).unwrap()
    }

    fn record(seq: u64, readings: usize) -> JournalRecord {
        let items: Vec<String> = (0..readings)
            .map(|i| {
                format!(
                    r#"{{"meter_id":"M-1","medium":"water","unit":"m3","value":"{i}.5","ts":"2022-07-25T{:02}:{:02}:00Z"}}"#,
                    i / 60,
                    i % 60
                )
            })
            .collect();
        JournalRecord {
            seq,
            received_at: 1_700_000_000_000_000,
            topic: "meters/m".into(),
            payload: format!("[{}]", items.join(",")).into_bytes().into(),
        }
    }

    /// A crash after a commit manifest and before its ledger entries: the
    /// next start completes the ledger from the manifest, and the data set
    /// verifies.
    #[test]
    fn a_commit_without_its_ledger_entries_is_completed_on_start() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 1000);
        s.ingest(&record(1, 3));
        let m = s.seal().unwrap().unwrap();
        assert_eq!(m.files.len(), 2, "receipts and readings");
        drop(s);
        let ledger = tmp.path().join("_ledger");
        for f in &m.files {
            let i = f.entry.as_ref().unwrap().index;
            fs::remove_file(ledger.join("entries").join(ledger::entry_name(i))).unwrap();
        }
        fs::remove_file(ledger.join("checkpoints").join(format!("{:012}.txt", 2))).unwrap();
        fs::remove_file(ledger.join("head.json")).unwrap();
        let v = crate::audit::verify(tmp.path(), None, &|_, _, _| {});
        assert!(!v.is_clean(), "the files are not in the ledger yet");
        let _s = store(tmp.path(), 1000);
        let v = crate::audit::verify(tmp.path(), None, &|_, _, _| {});
        assert!(v.is_clean(), "{:?}", v.findings);
        assert_eq!(v.entries, 2);
    }

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

    #[test]
    fn a_message_with_many_readings_is_due_by_its_readings() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 10);
        s.ingest(&record(1, 12));
        assert_eq!(s.pending_receipts(), 1);
        assert!(
            s.is_seal_due(Instant::now()),
            "12 pending readings ≥ 10 rows"
        );
    }

    #[test]
    fn seal_then_reopen_knows_what_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 1000);
        s.ingest(&record(1, 3));
        let m = s.seal().unwrap().unwrap();
        assert_eq!((m.first_seq, m.last_seq), (1, 1));
        assert_eq!(m.counts.readings_stored, 3);
        assert!(m.totals.is_balanced());
        for f in &m.files {
            let bytes = fs::read(tmp.path().join(&f.path)).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256, "{}", f.path);
        }
        assert!(
            s.seal().unwrap().is_none(),
            "nothing pending, no empty commit"
        );
        drop(s);
        // A Parquet file of an unfinished commit is removed on open.
        let orphan = tmp
            .path()
            .join("readings/date=2022-07-25/part-0000000002.parquet");
        fs::write(&orphan, b"half written").unwrap();
        let mut s = store(tmp.path(), 1000);
        assert!(!orphan.exists());
        assert_eq!(s.sealed_through(), 1);
        s.ingest(&record(2, 3));
        let t = s.totals();
        assert_eq!((t.delivered, t.stored, t.duplicate), (2, 1, 1));
        assert_eq!(t.readings_duplicate, 3);
    }

    /// Alerts across a restart: an alerts-only commit (empty receipt
    /// range), no second `meter_silent` after reopening, and a meter's
    /// inferred interval (4 h, not water's built-in 1 h) still known.
    #[test]
    fn alerts_survive_a_reopen_with_what_the_store_inferred() {
        const H: i64 = 3_600_000_000;
        let t0 = crate::continuity::parse_time("2022-07-25T00:00:00Z").unwrap();
        let rec = |seq: u64, meter: &str, k: i64| JournalRecord {
            seq,
            received_at: t0 + k * 4 * H,
            topic: format!("meters/site/{meter}"),
            payload: format!(
                r#"{{"meter_id":"{meter}","medium":"water","unit":"m3","value":"{k}","ts":"{}"}}"#,
                format_micros(t0 + k * 4 * H)
            )
            .into_bytes()
            .into(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::for_test(tmp.path(), 1000);
        cfg.alerts.startup_grace_s = 0;
        let mut s = Store::open(cfg.clone()).unwrap();
        s.start_alerts(t0).unwrap();
        let mut seq = 0;
        for k in 0..12 {
            for m in ["W-1", "W-2"] {
                seq += 1;
                s.ingest(&rec(seq, m, k));
            }
        }
        s.seal().unwrap().unwrap();
        let last = t0 + 11 * 4 * H;
        // W-2 goes on, W-1 stops. 4 h spacing: due 12 h after the last.
        seq += 1;
        s.ingest(&rec(seq, "W-2", 12));
        s.seal().unwrap().unwrap();
        s.tick_alerts(last + 11 * H);
        assert!(s.take_told().is_empty());
        s.tick_alerts(last + 12 * H);
        let m = s.seal().unwrap().expect("an alerts-only commit");
        assert_eq!((m.first_seq, m.last_seq), (seq + 1, seq));
        let told = s.take_told();
        assert_eq!(told.len(), 1);
        assert_eq!(
            (told[0].kind, told[0].subject.as_str()),
            (AlertKind::MeterSilent, "W-1")
        );
        drop(s);
        // Reopened: no repeat; W-2's 4-hour interval is still the rule.
        let mut s = Store::open(cfg).unwrap();
        s.start_alerts(last + 13 * H).unwrap();
        s.tick_alerts(last + 14 * H);
        assert!(
            s.seal().unwrap().is_none(),
            "nothing to tell: {:?}",
            s.alerts.take()
        );
        assert_eq!(s.alert_stats().open_meter_silent, 1);
        // W-2 (last at 12 × 4 h) is due at 12 × 4 h + 12 h.
        s.tick_alerts(last + 4 * H + 12 * H);
        s.seal().unwrap().unwrap();
        let told = s.take_told();
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!((told[0].subject.as_str(), told[0].seq), ("W-2", 2));
    }
}
