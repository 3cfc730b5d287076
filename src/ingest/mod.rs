//! The ingest stage: journaled messages → finished rows.
//!
//! Between the journal and the store. For each journal record, in receipt
//! order, it decodes the payload, classifies every reading (new, duplicate,
//! conflict: [`dedup`]), bounds the registers of each meter, and feeds the
//! alert engine; rows wait in a [`Batch`]. When a seal is due,
//! [`Ingest::finish`] runs the live continuity engine over the batch's
//! readings (sorted by series and time) and takes the alerts raised, and
//! hands the store a [`Sealable`]: receipts, readings, rejects, gaps and
//! alerts, ready to be written. The store only seals, commits and enters
//! files in the ledger; [`Ingest::sealed`] then clears the batch.
//!
//! Its state is keyed by meter and bounded by the fleet, not the history:
//! per series its ends ([`dedup`]) and its continuity state, per meter its
//! alert deadline. What memory cannot decide is looked up in the sealed
//! files ([`dedup::SealedValues`], implemented by the store).

pub mod alerts;
mod batch_end;
use batch_end::{find_gaps, sorted_by_series, SortKey};
pub mod dedup;
mod rebuild;
pub mod rows;
pub mod snapshot;
mod state_file;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::continuity::live::{GapChange, LiveEngine};
use crate::continuity::sealed::SealedSeries;
use crate::continuity::series::Point;
use crate::continuity::{Context, IntervalSource};
use crate::decode::{self, DecodeConfig, Format};
use crate::journal::JournalRecord;
use crate::layout::{ALERTS_SINCE_FILE, ALERT_GROUPS_FILE};
use crate::reading::{fraction_digits, ReadingKind};
use alerts::engine::{AlertEngine, AlertStats};
use alerts::{Alert, AlertConfig};
use dedup::{Key, LookupError, SealedValues, SeriesIndex, Verdict};
use rows::{Counters, Disposition, GapEvent, GapRow, ReadingRow, ReceiptRow, RejectRow};

pub use rebuild::RebuildError;

/// Prompt seals (for alerts) come at most this often, so that a storm of
/// events does not become a storm of small files.
const MIN_PROMPT_SEAL_GAP: Duration = Duration::from_millis(250);

/// Distinct registers a meter may have before a message that adds one
/// more is rejected.
pub const DEFAULT_MAX_REGISTERS_PER_METER: usize = 64;

/// Days a gap is kept in memory after it ends (older ones are asked of
/// the sealed files when a late reading falls in them).
pub const DEFAULT_GAP_MEMORY_DAYS: u32 = 3;

/// What the stage decides by.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Seal once this many rows (receipts or readings) are waiting.
    pub seal_max_rows: usize,
    /// Seal once the oldest waiting receipt is this old.
    pub seal_max_age: Duration,
    pub decode: DecodeConfig,
    /// Rules and registry of the live gap detection.
    pub continuity: Context,
    /// Alert rules.
    pub alerts: AlertConfig,
    /// A message that would give a meter more distinct registers than
    /// this is rejected.
    pub max_registers_per_meter: usize,
    /// How long the live engine keeps a gap after it ends.
    pub gap_memory: Duration,
}

impl IngestConfig {
    /// For tests and benchmarks of historic data: seals by rows only, any
    /// reading time accepted, default rules.
    pub fn historic(seal_max_rows: usize) -> IngestConfig {
        IngestConfig {
            seal_max_rows,
            seal_max_age: Duration::from_secs(3600),
            decode: DecodeConfig {
                max_future_skew_micros: i64::MAX / 4,
                ..DecodeConfig::default()
            },
            continuity: Context::default(),
            alerts: AlertConfig::default(),
            max_registers_per_meter: DEFAULT_MAX_REGISTERS_PER_METER,
            gap_memory: Duration::from_secs(DEFAULT_GAP_MEMORY_DAYS as u64 * 86_400),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("state file {path}: {why}")]
    State { path: PathBuf, why: String },
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

/// Rows received since the last seal.
#[derive(Default)]
pub struct Batch {
    pub receipts: Vec<ReceiptRow>,
    pub readings: Vec<ReadingRow>,
    pub rejects: Vec<RejectRow>,
    pub counts: Counters,
    since: Option<Instant>,
    /// Something waits for a prompt seal: alerts raised, or a meter
    /// resuming (its `meter_resumed` needs the gap the seal finds).
    soon: bool,
}

impl Batch {
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

/// How the stage's state was made at a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From the snapshot of `commit`, then the readings files of
    /// `files_after` later commits.
    Snapshot { commit: u64, files_after: usize },
    /// From every sealed readings file; `skipped`: the snapshots there were
    /// and why each was not used (none: there were none).
    Rebuilt { skipped: Vec<String> },
}

/// A batch ready to be sealed: what the store writes.
pub struct Sealable<'a> {
    pub receipts: &'a [ReceiptRow],
    /// Sorted by meter, register, time and receipt.
    pub readings: Vec<&'a ReadingRow>,
    pub rejects: &'a [RejectRow],
    pub gaps: Vec<GapRow>,
    pub alerts: Vec<Alert>,
    pub counts: Counters,
    /// Groups learned from topics in this batch (meter, group).
    pub learned: Vec<(String, String)>,
}

/// The ingest stage. Owned by one thread.
pub struct Ingest {
    cfg: IngestConfig,
    /// `DATA/_state`: the alert groups and the alert engine's first start.
    state_dir: PathBuf,
    series: SeriesIndex,
    /// Per-series continuity state: gaps are found as readings are sealed.
    live: LiveEngine,
    /// Silence deadlines and alert state.
    alerts: AlertEngine,
    batch: Batch,
    sealed: Box<dyn SealedValues>,
    /// The latest time the stage was told (receive times, ticks), µs: the
    /// time of alerts raised at a seal.
    now: i64,
    last_seal: Option<Instant>,
    /// The batch's sort keys, kept between seals (a fresh half-million
    /// entries each seal cost the kernel zeroing pages).
    sort_keys: Vec<(SortKey, usize)>,
}

impl Ingest {
    /// A stage with no history (nothing sealed yet, or a benchmark).
    pub fn new(cfg: IngestConfig, state_dir: &Path, sealed: Box<dyn SealedValues>) -> Ingest {
        Ingest {
            series: SeriesIndex::default(),
            live: LiveEngine::new(cfg.continuity.config.clone())
                .with_registry(cfg.continuity.registry.clone())
                .with_gap_memory(micros(cfg.gap_memory)),
            alerts: AlertEngine::new(cfg.alerts.clone(), cfg.continuity.clone()),
            state_dir: state_dir.to_owned(),
            batch: Batch::default(),
            sealed,
            now: i64::MIN,
            last_seal: None,
            sort_keys: Vec::new(),
            cfg,
        }
    }

    /// The stage as of the sealed `readings` files (every committed one,
    /// with its commit, in commit order):
    /// their series, continuity and alert state.
    pub fn rebuild(
        cfg: IngestConfig,
        state_dir: &Path,
        sealed: Box<dyn SealedValues>,
        readings_files: &[(u64, PathBuf)],
    ) -> Result<Ingest, IngestError> {
        let mut s = Ingest::new(cfg, state_dir, sealed);
        // Nothing is dropped from memory until the end (the horizon starts
        // at the beginning of time): no lookup is made.
        s.load(readings_files, None)?;
        Ok(s)
    }

    /// Adds the rows of sealed readings files (with their commits, in
    /// commit order) to the state.
    /// A lookup in the sealed files (the gap memory's) sees only receipts
    /// before `bound`: the readings loaded here are observed as unsealed.
    fn load(
        &mut self,
        readings_files: &[(u64, PathBuf)],
        bound: Option<u64>,
    ) -> Result<(), IngestError> {
        self.live.set_lookup_bound(bound);
        let mut files = readings_files.iter().peekable();
        while let Some((commit, path)) = files.next() {
            rebuild::load_sealed_readings(
                path,
                &mut self.series,
                &mut self.live,
                &mut self.alerts,
                &self.cfg.continuity,
                &mut *self.sealed,
            )?;
            // A commit is the batch its seal settled (the gaps this found
            // were sealed with it: only the state is rebuilt here).
            if files.peek().is_none_or(|(next, _)| next != commit) {
                for i in self.live.settle() {
                    self.alerts.interval_inferred(&i.meter, i.interval.micros);
                }
            }
        }
        self.series.sealed();
        self.live.set_lookup_bound(None);
        self.live.evict();
        Ok(())
    }

    /// The stage as of the sealed files, from the newest valid snapshot
    /// (at or before `last_commit`) and the readings files of the commits
    /// after it; without one, [rebuilt](Self::rebuild) from all of them.
    pub fn open(
        cfg: IngestConfig,
        state_dir: &Path,
        sealed: Box<dyn SealedValues>,
        readings_files: &[(u64, PathBuf)],
        last_commit: u64,
    ) -> Result<(Ingest, Start), IngestError> {
        let fp = snapshot::fingerprint(&cfg.continuity, &cfg.alerts);
        let mut skipped = Vec::new();
        for (commit, path) in snapshot::list(state_dir).into_iter().rev() {
            if commit > last_commit {
                // Of a commit the log does not have (a restored backup):
                // not this data's state.
                skipped.push(format!(
                    "{} is past the last commit {last_commit}",
                    path.display()
                ));
                continue;
            }
            let state = match snapshot::read(&path, fp, &cfg.continuity) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "ingest: snapshot not used");
                    skipped.push(e.to_string());
                    continue;
                }
            };
            let mut s = Ingest::new(cfg, state_dir, sealed);
            s.series = state.series;
            s.live = state.live;
            s.live.set_gap_memory(micros(s.cfg.gap_memory));
            for (m, last, after, fixed) in &state.seeds {
                s.alerts.seed(m, *last, *after, *fixed);
            }
            let after: Vec<(u64, PathBuf)> = readings_files
                .iter()
                .filter(|(c, _)| *c > commit)
                .cloned()
                .collect();
            s.load(&after, Some(state.sealed_through + 1))?;
            s.shrink_to_fit();
            return Ok((
                s,
                Start::Snapshot {
                    commit,
                    files_after: after.len(),
                },
            ));
        }
        let mut s = Ingest::rebuild(cfg, state_dir, sealed, readings_files)?;
        s.shrink_to_fit();
        Ok((s, Start::Rebuilt { skipped }))
    }

    /// Gives back what the state's tables hold beyond their entries: they
    /// grew by doubling while it was loaded.
    fn shrink_to_fit(&mut self) {
        self.series.shrink_to_fit();
        self.live.shrink_to_fit();
        self.alerts.shrink_to_fit();
    }

    /// Writes the snapshot of the state as of `commit` (call right after
    /// that commit's seal). Returns the file and its size.
    pub fn snapshot(
        &self,
        commit: u64,
        sealed_through: u64,
    ) -> Result<(PathBuf, u64), IngestError> {
        let body = snapshot::encode_body(&self.series, &self.live, &self.alerts);
        let fp = snapshot::fingerprint(&self.cfg.continuity, &self.cfg.alerts);
        Ok(snapshot::write(
            &self.state_dir,
            fp,
            commit,
            sealed_through,
            &body,
        )?)
    }

    /// The snapshot body of the current state (tests compare states by it).
    pub fn state_bytes(&self) -> Vec<u8> {
        snapshot::encode_body(&self.series, &self.live, &self.alerts)
    }

    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// Starts the alert engine at `now` (µs): the groups learned before,
    /// the registry's meters never seen, the open alerts of the sealed
    /// `alerts` table (`told`), and the startup grace. Call once, before
    /// ingesting.
    pub fn start_alerts<'a>(
        &mut self,
        now: i64,
        told: impl IntoIterator<Item = &'a Alert>,
    ) -> Result<(), IngestError> {
        let groups = self.state_dir.join(ALERT_GROUPS_FILE);
        match fs::read_to_string(&groups) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((meter, group)) = line.split_once('\t') {
                        self.alerts.restore_group(meter, group);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IngestError::Io {
                    action: "reading",
                    path: groups,
                    source,
                })
            }
        }
        // Registry meters never seen are judged from the first start.
        let since_path = self.state_dir.join(ALERTS_SINCE_FILE);
        let since = state_file::read_or_init_micros(&since_path, now)?;
        self.alerts.track_registry(since);
        self.alerts.restore(told, now);
        self.alerts
            .hold_until(now.saturating_add(self.cfg.alerts.startup_grace_s as i64 * 1_000_000));
        self.now = now;
        Ok(())
    }

    /// Ends the startup grace at `now` (µs), if it holds longer: the broker
    /// had nothing queued for us, or what it had has drained.
    pub fn end_grace(&mut self, now: i64) {
        self.alerts.shorten_hold(now);
    }

    /// Judges silence deadlines at `now` (µs); alerts raised make the
    /// next seal due at once.
    pub fn tick_alerts(&mut self, now: i64) {
        self.now = self.now.max(now);
        self.alerts.tick(now);
        if self.alerts.has_pending() {
            self.batch.soon = true;
        }
    }

    pub fn alert_stats(&self) -> AlertStats {
        self.alerts.stats()
    }

    /// Series whose last reading is past their gap threshold at `now`.
    pub fn open_gaps(&self, now: i64) -> usize {
        self.live.open_gaps(now).count()
    }

    /// Series (meter, register) known.
    pub fn series(&self) -> usize {
        self.series.series()
    }

    /// Lookups in the sealed files since start.
    pub fn lookups(&self) -> u64 {
        self.series.lookups + self.live.lookups()
    }

    /// Of those, the live engine's (late readings in gaps it no longer
    /// keeps).
    pub fn live_lookups(&self) -> u64 {
        self.live.lookups()
    }

    /// Bytes held by the stage's state: duplicates, live continuity,
    /// alert deadlines (hash tables by their slots; approximate).
    pub fn heap_bytes(&self) -> usize {
        let (series, live, alerts) = self.heap_bytes_by_part();
        series + live + alerts
    }

    /// [`heap_bytes`](Self::heap_bytes) by part: duplicates, live
    /// continuity (its kept gaps included), alert deadlines.
    pub fn heap_bytes_by_part(&self) -> (usize, usize, usize) {
        (
            self.series.heap_bytes(),
            self.live.heap_bytes(),
            self.alerts.heap_bytes(),
        )
    }

    /// Gaps the live engine keeps in memory.
    pub fn kept_gaps(&self) -> usize {
        self.live.kept_gaps()
    }

    /// The batch waiting for the next seal.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Decodes one journaled message and adds its rows to the batch. An
    /// error is a failed lookup in the sealed files: the reading cannot be
    /// classified, and the stage must stop rather than guess.
    pub fn ingest(&mut self, rec: &JournalRecord) -> Result<(), IngestError> {
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
        self.batch.counts.delivered += 1;
        self.now = self.now.max(rec.received_at);
        let decoded = decode::decode(&rec.topic, &rec.payload, rec.received_at, &self.cfg.decode)
            .and_then(|d| match self.admit(&d.readings) {
                Err(reason) => Err(decode::Rejection {
                    format: Some(d.format),
                    reason,
                }),
                Ok(()) => Ok(d),
            });
        match decoded {
            Ok(decoded) => {
                receipt.format = Some(decoded.format);
                let lora = matches!(decoded.format, Format::Chirpstack | Format::Tts);
                let mut notes = decoded.notes;
                for (i, reading) in decoded.readings.into_iter().enumerate() {
                    let (meter, register) = (reading.meter_id.as_str(), reading.register.as_str());
                    let live = &self.live;
                    let verdict = self.series.check(
                        Key {
                            meter,
                            register,
                            ts: reading.ts_micros,
                            scaled: reading.value.scaled(),
                            unit: reading.unit.as_str(),
                            set_date: reading.kind == ReadingKind::SetDate,
                        },
                        || live.in_gap(meter, register, reading.ts_micros),
                        &mut *self.sealed,
                    )?;
                    if verdict == Verdict::Duplicate {
                        receipt.readings_duplicate += 1;
                        continue;
                    }
                    let conflict = verdict == Verdict::Conflict;
                    if conflict {
                        self.alerts.conflict(
                            meter,
                            register,
                            reading.ts_micros,
                            reading.value.as_str(),
                            rec.received_at,
                        );
                        receipt.readings_conflict += 1;
                        notes.push(format!(
                            "conflict: meter {} register {} at {} already has a different value; stored {} flagged",
                            reading.meter_id,
                            reading.register,
                            crate::time::format_micros(reading.ts_micros),
                            reading.value
                        ));
                    } else if reading.kind == ReadingKind::Measured
                        && self.alerts.reading(
                            meter,
                            reading.medium,
                            lora,
                            reading.ts_micros,
                            alerts::message_group(decoded.gateway.as_deref(), &rec.topic),
                            rec.received_at,
                        )
                    {
                        self.batch.soon = true;
                    }
                    receipt.readings_stored += 1;
                    self.batch.readings.push(ReadingRow {
                        reading,
                        conflict,
                        receipt_seq: rec.seq,
                        reading_index: i as u32,
                        received_at: rec.received_at,
                        format: decoded.format,
                    });
                }
                let counts = &mut self.batch.counts;
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
                self.batch.counts.rejected += 1;
                receipt.format = rejection.format;
                receipt.reason = Some(rejection.reason.clone());
                self.batch.rejects.push(RejectRow {
                    seq: rec.seq,
                    received_at: rec.received_at,
                    topic: rec.topic.clone(),
                    format: rejection.format,
                    reason: rejection.reason,
                    payload: rec.payload.clone(),
                });
            }
        }
        self.batch.receipts.push(receipt);
        self.batch.since.get_or_insert_with(Instant::now);
        if self.alerts.has_pending() {
            self.batch.soon = true;
        }
        Ok(())
    }

    /// Admits a decoded message's new series, or says why it would give a
    /// meter more registers (or the fleet more register names) than the
    /// bounds: the whole message is then rejected (its bytes kept), like
    /// any other bad input, rather than share or drop a series. The names
    /// of admitted series are entered at once, so that the bound holds
    /// within a batch too. Known series and names (the common case) cost
    /// a lookup each and no allocation.
    fn admit(&mut self, readings: &[crate::reading::Reading]) -> Result<(), String> {
        let max = self.cfg.max_registers_per_meter;
        let mut new: HashSet<(&str, &str)> = HashSet::new();
        let mut names: HashSet<&str> = HashSet::new();
        let mut per_meter: HashMap<&str, usize> = HashMap::new();
        for r in readings {
            let (m, reg) = (r.meter_id.as_str(), r.register.as_str());
            // The live engine names the series of measured readings (a
            // series first seen by its set dates gets its name later).
            if r.kind == ReadingKind::Measured
                && !names.contains(reg)
                && !self.live.knows_register(reg)
            {
                names.insert(reg);
                if !self.live.has_room_for(names.len()) {
                    return Err(format!(
                        "meter {m}: register {reg:?} is new, and the fleet already has 65,535 distinct register names"
                    ));
                }
            }
            if new.contains(&(m, reg)) || self.series.knows(m, reg) {
                continue;
            }
            new.insert((m, reg));
            let n = per_meter
                .entry(m)
                .or_insert_with(|| self.series.registers_of(m));
            *n += 1;
            if *n > max {
                return Err(format!(
                    "meter {m}: register {reg:?} would be its register number {n}, over the limit of {max} distinct registers per meter (--max-registers-per-meter)"
                ));
            }
        }
        for name in names {
            self.live.intern_register(name);
        }
        Ok(())
    }

    /// Whether the batch is due for sealing: by rows (receipts or
    /// readings, whichever is more: a message may carry many readings, and
    /// batch rows are held in memory) or by age, or promptly for alerts.
    pub fn is_seal_due(&self, now: Instant) -> bool {
        let b = &self.batch;
        (b.soon
            && self
                .last_seal
                .is_none_or(|t| now.duration_since(t) >= MIN_PROMPT_SEAL_GAP))
            || b.receipts.len().max(b.readings.len()) >= self.cfg.seal_max_rows
            || b.since
                .is_some_and(|t| now.duration_since(t) >= self.cfg.seal_max_age)
    }

    /// Whether a seal would write anything: receipts, or alerts alone.
    pub fn has_pending(&self) -> bool {
        !self.batch.receipts.is_empty() || self.alerts.has_pending()
    }

    /// Finishes the batch for sealing: sorts its readings, runs the live
    /// continuity engine over them (the gaps they found or split), and
    /// takes the alerts raised. Call [`sealed`](Self::sealed) once the
    /// store has committed it.
    pub fn finish(&mut self) -> Result<Sealable<'_>, IngestError> {
        let readings = sorted_by_series(&self.batch.readings, &mut self.sort_keys);
        let gaps = find_gaps(
            &mut self.live,
            &mut self.alerts,
            &self.cfg.continuity,
            &readings,
            self.now,
            &mut *self.sealed,
        )?;
        self.alerts.finish_resumes(
            gaps.iter()
                .filter(|g| g.event == GapEvent::Found)
                .map(|g| (g.meter_id.as_str(), g.register.as_str(), &g.gap)),
            self.now,
        );
        Ok(Sealable {
            receipts: &self.batch.receipts,
            readings,
            rejects: &self.batch.rejects,
            gaps,
            alerts: self.alerts.take(),
            counts: self.batch.counts,
            learned: self.alerts.take_learned(),
        })
    }

    /// The finished batch is committed: clears it, and remembers the
    /// groups it learned (`_state/alert_groups.tsv`), so that a meter
    /// silent across a restart still belongs to its group.
    pub fn sealed(&mut self, learned: &[(String, String)]) -> Result<(), IngestError> {
        self.batch.clear();
        self.series.sealed();
        self.live.evict();
        self.last_seal = Some(Instant::now());
        if learned.is_empty() {
            return Ok(());
        }
        let path = self.state_dir.join(ALERT_GROUPS_FILE);
        let mut text = String::new();
        for (meter, group) in learned {
            text.push_str(meter);
            text.push('\t');
            text.push_str(group);
            text.push('\n');
        }
        let io = |source| IngestError::Io {
            action: "appending to",
            path: path.clone(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)
    }
}

/// A duration in µs (saturating: "for ever" stays for ever).
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Whether a stored reading belongs to its series' telegram stream: measured
/// values, not set-date values and not conflicting values.
fn is_series_reading(kind: ReadingKind, conflict: bool) -> bool {
    kind == ReadingKind::Measured && !conflict
}

#[cfg(test)]
mod tests;
