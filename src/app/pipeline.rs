//! The ingest stage and the store, wired: what the store thread runs, and
//! what tests and benchmarks use to turn journal records into sealed files.

use std::path::Path;

use crate::alerts::table::Told;
use crate::alerts::Alert;
use crate::ingest::{Ingest, IngestConfig, IngestError};
use crate::journal::JournalRecord;
use crate::store::commit::{Counters, Manifest};
use crate::store::lookup::SealedLookup;
use crate::store::{Store, StoreConfig, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// The ingest stage feeding the store.
pub struct Pipeline {
    pub ingest: Ingest,
    pub store: Store,
}

/// What one seal wrote, and the alerts it sealed (for the sinks).
pub struct Sealed {
    pub manifest: Manifest,
    pub alerts: Vec<Alert>,
}

impl Pipeline {
    /// Opens the store (recovering an unfinished commit) and rebuilds the
    /// ingest stage's state from what it sealed.
    pub fn open(store: StoreConfig, ingest: IngestConfig) -> Result<Pipeline, PipelineError> {
        let store = Store::open(store)?;
        let state = store.data().join(super::STATE_DIR);
        std::fs::create_dir_all(&state).map_err(|source| StoreError::Io {
            path: state.clone(),
            source,
        })?;
        let lookup = Box::new(SealedLookup::new(store.data()));
        let ingest = Ingest::rebuild(ingest, &state, lookup, store.readings_files())?;
        Ok(Pipeline { ingest, store })
    }

    /// A pipeline for unit tests: the ledger on, historic readings
    /// accepted, seals by `seal_max_rows` only.
    pub fn for_test(data: &Path, seal_max_rows: usize) -> Pipeline {
        Pipeline::open(
            StoreConfig::new(data),
            IngestConfig::historic(seal_max_rows),
        )
        .expect("a test pipeline opens")
    }

    /// Starts the alert engine at `now` from the sealed alerts; returns
    /// them (the sinks resume from them).
    pub fn start_alerts(&mut self, now: i64) -> Result<Vec<Told>, PipelineError> {
        let told = self.store.read_alerts()?;
        self.ingest
            .start_alerts(now, told.iter().map(|t| &t.alert))?;
        Ok(told)
    }

    pub fn ingest(&mut self, rec: &JournalRecord) -> Result<(), PipelineError> {
        debug_assert!(rec.seq > self.store.sealed_through());
        Ok(self.ingest.ingest(rec)?)
    }

    /// Seals what is waiting (receipts, or alerts alone). None if nothing.
    pub fn seal(&mut self) -> Result<Option<Sealed>, PipelineError> {
        if !self.ingest.has_pending() {
            return Ok(None);
        }
        let mut batch = self.ingest.finish();
        let manifest = self.store.seal(&batch)?;
        let alerts = std::mem::take(&mut batch.alerts);
        let learned = std::mem::take(&mut batch.learned);
        self.ingest.sealed(&learned)?;
        Ok(manifest.map(|manifest| Sealed { manifest, alerts }))
    }

    /// The last receipt held in sealed files (0 if none).
    pub fn sealed_through(&self) -> u64 {
        self.store.sealed_through()
    }

    /// Counters over sealed and waiting receipts.
    pub fn totals(&self) -> Counters {
        let mut t = self.store.sealed_totals();
        t.add(&self.ingest.batch().counts);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;
    use sha2::Digest;
    use std::fs;

    fn store(data: &Path, max_rows: usize) -> Pipeline {
        Pipeline::for_test(data, max_rows)
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
        s.ingest(&record(1, 3)).unwrap();
        let m = s.seal().unwrap().unwrap().manifest;
        assert_eq!(m.files.len(), 2, "receipts and readings");
        drop(s);
        let ledger = tmp.path().join("_ledger");
        for f in &m.files {
            let i = f.entry.as_ref().unwrap().index;
            fs::remove_file(
                ledger
                    .join("entries")
                    .join(crate::store::ledger::entry_name(i)),
            )
            .unwrap();
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

    #[test]
    fn a_message_with_many_readings_is_due_by_its_readings() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 10);
        s.ingest(&record(1, 12)).unwrap();
        assert_eq!(s.ingest.batch().receipts.len(), 1);
        assert!(
            s.ingest.is_seal_due(std::time::Instant::now()),
            "12 pending readings ≥ 10 rows"
        );
    }

    #[test]
    fn seal_then_reopen_knows_what_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 1000);
        s.ingest(&record(1, 3)).unwrap();
        let m = s.seal().unwrap().unwrap().manifest;
        assert_eq!((m.first_seq, m.last_seq), (1, 1));
        assert_eq!(m.counts.readings_stored, 3);
        assert!(m.totals.is_balanced());
        for f in &m.files {
            let bytes = fs::read(tmp.path().join(&f.path)).unwrap();
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&bytes)),
                f.sha256,
                "{}",
                f.path
            );
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
        s.ingest(&record(2, 3)).unwrap();
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
        let t0 = crate::time::parse_time("2022-07-25T00:00:00Z").unwrap();
        let rec = |seq: u64, meter: &str, k: i64| JournalRecord {
            seq,
            received_at: t0 + k * 4 * H,
            topic: format!("meters/site/{meter}"),
            payload: format!(
                r#"{{"meter_id":"{meter}","medium":"water","unit":"m3","value":"{k}","ts":"{}"}}"#,
                crate::time::format_micros(t0 + k * 4 * H)
            )
            .into_bytes()
            .into(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = IngestConfig::historic(1000);
        cfg.alerts.startup_grace_s = 0;
        let open = || Pipeline::open(StoreConfig::new(tmp.path()), cfg.clone()).unwrap();
        let mut s = open();
        s.start_alerts(t0).unwrap();
        let mut seq = 0;
        for k in 0..12 {
            for m in ["W-1", "W-2"] {
                seq += 1;
                s.ingest(&rec(seq, m, k)).unwrap();
            }
        }
        s.seal().unwrap().unwrap();
        let last = t0 + 11 * 4 * H;
        // W-2 goes on, W-1 stops. 4 h spacing: due 12 h after the last.
        seq += 1;
        s.ingest(&rec(seq, "W-2", 12)).unwrap();
        assert!(s.seal().unwrap().unwrap().alerts.is_empty());
        s.ingest.tick_alerts(last + 11 * H);
        assert!(s.seal().unwrap().is_none(), "nothing due yet");
        s.ingest.tick_alerts(last + 12 * H);
        let sealed = s.seal().unwrap().expect("an alerts-only commit");
        let m = &sealed.manifest;
        assert_eq!((m.first_seq, m.last_seq), (seq + 1, seq));
        let told = sealed.alerts;
        assert_eq!(told.len(), 1);
        assert_eq!(
            (told[0].kind, told[0].subject.as_str()),
            (AlertKind::MeterSilent, "W-1")
        );
        drop(s);
        // Reopened: no repeat; W-2's 4-hour interval is still the rule.
        let mut s = open();
        s.start_alerts(last + 13 * H).unwrap();
        s.ingest.tick_alerts(last + 14 * H);
        assert!(s.seal().unwrap().is_none(), "nothing to tell");
        assert_eq!(s.ingest.alert_stats().open_meter_silent, 1);
        // W-2 (last at 12 × 4 h) is due at 12 × 4 h + 12 h.
        s.ingest.tick_alerts(last + 4 * H + 12 * H);
        let told = s.seal().unwrap().unwrap().alerts;
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!((told[0].subject.as_str(), told[0].seq), ("W-2", 2));
    }
}
