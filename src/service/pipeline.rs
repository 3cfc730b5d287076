//! The ingest stage and the store, wired: what the store thread runs, and
//! what tests and benchmarks use to turn journal records into sealed files.

use std::path::Path;

use crate::alerts::table::Told;
use crate::alerts::Alert;
use std::time::Instant;

use crate::ingest::snapshot::SNAPSHOT_EVERY;
use crate::ingest::{Ingest, IngestConfig, IngestError, Start};
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
    /// How the ingest stage's state was made at open.
    pub start: Start,
    last_snapshot: Option<Instant>,
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
        let (ingest, start) = Ingest::open(
            ingest,
            &state,
            lookup,
            store.readings_files(),
            store.last_commit(),
        )?;
        Ok(Pipeline {
            ingest,
            store,
            start,
            last_snapshot: None,
        })
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
        let mut batch = self.ingest.finish()?;
        let manifest = self.store.seal(&batch)?;
        let alerts = std::mem::take(&mut batch.alerts);
        let learned = std::mem::take(&mut batch.learned);
        self.ingest.sealed(&learned)?;
        if self
            .last_snapshot
            .is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY)
        {
            self.snapshot()?;
        }
        Ok(manifest.map(|manifest| Sealed { manifest, alerts }))
    }

    /// Writes the ingest stage's snapshot as of the last commit (nothing
    /// may be waiting: call it right after a seal). A failure is logged
    /// and the service goes on: a snapshot is derived state, and the next
    /// start rebuilds without it.
    pub fn snapshot(&mut self) -> Result<(), PipelineError> {
        debug_assert!(!self.ingest.has_pending());
        self.last_snapshot = Some(Instant::now());
        let commit = self.store.last_commit();
        if commit == 0 {
            return Ok(());
        }
        let started = Instant::now();
        match self.ingest.snapshot(commit, self.store.sealed_through()) {
            Ok((path, bytes)) => tracing::debug!(
                commit,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                file = %path.display(),
                "ingest: snapshot written"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "ingest: snapshot not written (the next start rebuilds from the sealed files)")
            }
        }
        Ok(())
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
    use std::time::Duration;

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

    /// Late copies of readings long out of memory, over files of many
    /// pages: each is found in the page of its meter (a duplicate), and
    /// another value there is a conflict, whichever page it falls in,
    /// first, last or on a page boundary.
    #[test]
    fn late_readings_are_found_in_the_page_of_their_meter() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), 1_000_000);
        let meters = 3 * crate::store::PAGE_ROWS + 100;
        let message = |seq: u64, ids: &mut dyn Iterator<Item = usize>, hour: u32, bump: u32| {
            let body: Vec<String> = ids
                .map(|m| {
                    format!(
                        r#"{{"meter_id":"P-{m:06}","medium":"heat","register":"e","unit":"kWh","value":"{}","ts":"2022-07-25T{hour:02}:00:00Z"}}"#,
                        m as u32 * 10 + hour + bump
                    )
                })
                .collect();
            JournalRecord {
                seq,
                received_at: 1_658_707_200_000_000 + seq as i64,
                topic: "meters/gw".into(),
                payload: format!("[{}]", body.join(",")).into_bytes().into(),
            }
        };
        // Two hours of every meter, sealed: the first hour is no longer
        // the newest of any series, so only the files can answer for it.
        let mut seq = 0;
        for hour in 0..2 {
            for from in (0..meters).step_by(500) {
                seq += 1;
                let ids = &mut (from..(from + 500).min(meters));
                s.ingest(&message(seq, ids, hour, 0)).unwrap();
            }
            s.seal().unwrap();
        }
        let before = s.ingest.lookups();
        let page = crate::store::PAGE_ROWS;
        let probes = [0, 1, page - 1, page, page + 1, 2 * page, meters - 1];
        s.ingest(&message(seq + 1, &mut probes.iter().copied(), 0, 0))
            .unwrap();
        s.ingest(&message(seq + 2, &mut probes.iter().copied(), 0, 1))
            .unwrap();
        s.seal().unwrap();
        let t = s.totals();
        assert_eq!(t.readings_duplicate, probes.len() as u64, "{t:?}");
        assert_eq!(t.readings_conflict, probes.len() as u64, "{t:?}");
        assert_eq!(t.readings_stored, 2 * meters as u64 + probes.len() as u64);
        assert!(s.ingest.lookups() >= before + 2 * probes.len() as u64);
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

    /// Every row of the sealed `readings` files, as text.
    fn readings_rows(data: &Path) -> Vec<String> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Int64Type, TimestampMicrosecondType};
        let mut out = Vec::new();
        for (_, path) in Store::open(StoreConfig::new(data))
            .unwrap()
            .readings_files()
        {
            let f = fs::File::open(path).unwrap();
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                let s = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
                let (m, reg, v) = (s("meter_id"), s("register"), s("value"));
                let ts = b
                    .column_by_name("ts")
                    .unwrap()
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone();
                let seq = b
                    .column_by_name("receipt_seq")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone();
                let conflict = b.column_by_name("conflict").unwrap().as_boolean().clone();
                for i in 0..b.num_rows() {
                    out.push(format!(
                        "{} {} {} {} {} {}",
                        m.value(i),
                        reg.value(i),
                        ts.value(i),
                        v.value(i),
                        seq.value(i),
                        conflict.value(i)
                    ));
                }
            }
        }
        out
    }

    /// Random messages: heat meters hourly and an HCA with set dates, some
    /// readings late, some repeated, some conflicting.
    fn messages(seed: u64, n: usize) -> Vec<JournalRecord> {
        let mut x = seed | 1;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let t0 = 1_658_707_200i64; // 2022-07-25
        (0..n)
            .map(|i| {
                let m = next(4);
                let h = (i as i64 / 4) - next(3) as i64 * (next(5) == 0) as i64 * 6;
                let ts = crate::time::format_micros((t0 + h.max(0) * 3600) * 1_000_000);
                let v = if next(40) == 0 { 7 } else { h.max(0) * 3 + 100 };
                let payload = if m == 3 && next(10) == 0 {
                    format!(
                        r#"{{"meter_id":"A-3","medium":"hca","register":"units","unit":"units","value":"{v}","ts":"{ts}","kind":"set_date"}}"#
                    )
                } else {
                    let medium = if m == 3 { "hca" } else { "heat" };
                    let unit = if m == 3 { "units" } else { "kWh" };
                    format!(
                        r#"{{"meter_id":"A-{m}","medium":"{medium}","register":"e","unit":"{unit}","value":"{v}","ts":"{ts}"}}"#
                    )
                };
                JournalRecord {
                    seq: i as u64 + 1,
                    received_at: (t0 + i as i64 * 900) * 1_000_000,
                    topic: format!("meters/gw/A-{m}"),
                    payload: payload.into_bytes().into(),
                }
            })
            .collect()
    }

    /// A pipeline that keeps gaps in memory for `memory`.
    fn store_with(data: &Path, memory: Duration) -> Pipeline {
        let cfg = IngestConfig {
            gap_memory: memory,
            ..IngestConfig::historic(1_000_000)
        };
        Pipeline::open(StoreConfig::new(data), cfg).unwrap()
    }

    fn run(
        data: &Path,
        msgs: &[JournalRecord],
        cut: Option<usize>,
        corrupt: bool,
        memory: Duration,
    ) -> (Pipeline, u64) {
        let mut p = store_with(data, memory);
        for (i, rec) in msgs.iter().enumerate() {
            p.ingest(rec).unwrap();
            if i % 7 == 6 {
                p.seal().unwrap();
            }
            if Some(i) == cut {
                p.seal().unwrap();
                p.snapshot().unwrap();
                drop(p);
                if corrupt {
                    // Every snapshot kept (an older one would serve).
                    let snaps = crate::ingest::snapshot::list(&data.join("_state"));
                    assert!(!snaps.is_empty());
                    for (_, path) in snaps {
                        let mut b = fs::read(&path).unwrap();
                        let k = b.len() / 2;
                        b[k] ^= 0x40;
                        fs::write(&path, b).unwrap();
                    }
                }
                p = store_with(data, memory);
                if corrupt {
                    let Start::Rebuilt { skipped } = &p.start else {
                        panic!("a corrupt snapshot was used: {:?}", p.start)
                    };
                    assert!(skipped[0].contains("checksum"), "{skipped:?}");
                } else {
                    assert!(matches!(p.start, Start::Snapshot { .. }), "{:?}", p.start);
                }
            }
        }
        p.seal().unwrap();
        let sealed = p.totals().readings_stored;
        (p, sealed)
    }

    /// Issue 16: for random cut points, a restart from the snapshot (or, if
    /// the snapshot is corrupt, from the sealed files) ends in exactly the
    /// state of an uninterrupted run, with the same rows sealed.
    #[test]
    fn a_restart_from_a_snapshot_is_the_uninterrupted_run() {
        for seed in 1..=6u64 {
            let msgs = messages(seed, 240);
            // Odd seeds forget gaps an hour after they end: late readings
            // (6-12 h) then ask the sealed files.
            let memory = Duration::from_secs(if seed % 2 == 1 { 3_600 } else { 30 * 86_400 });
            let whole = tempfile::tempdir().unwrap();
            let (a, stored) = run(whole.path(), &msgs, None, false, memory);
            let table = |d: &Path| {
                let mut rows = readings_rows(d);
                rows.sort();
                rows
            };
            for (cut, corrupt) in [(37 * seed as usize % 200, false), (101, true)] {
                let tmp = tempfile::tempdir().unwrap();
                let (b, stored_b) = run(tmp.path(), &msgs, Some(cut), corrupt, memory);
                assert_eq!(stored_b, stored, "seed {seed} cut {cut}");
                assert!(
                    a.ingest.state_bytes() == b.ingest.state_bytes(),
                    "seed {seed}, cut {cut}, corrupt {corrupt}: the states differ"
                );
                assert_eq!(
                    table(whole.path()),
                    table(tmp.path()),
                    "seed {seed} cut {cut}"
                );
            }
        }
    }

    /// The gap memory changes the memory, not the answers: forgetting gaps
    /// an hour after they end (late readings then ask the sealed Parquet
    /// files) seals the same standing gaps and readings as keeping them.
    #[test]
    fn forgetting_gaps_changes_nothing_but_memory() {
        let standing = |d: &Path| {
            let stored = crate::report::StoredReadings::load(d).unwrap();
            let by_meter = crate::report::gap_list::standing(stored.gap_files(), None).unwrap();
            let mut out: Vec<String> = by_meter
                .into_iter()
                .flat_map(|(m, regs)| {
                    regs.into_iter().flat_map(move |(r, gaps)| {
                        let m = m.clone();
                        gaps.into_iter().map(move |s| {
                            let g = s.gap;
                            format!(
                                "{m} {r} {}-{} {} {:?} {:?} {:?}",
                                g.from,
                                g.to,
                                g.missing,
                                g.consumption,
                                g.interval,
                                s.interval_source
                            )
                        })
                    })
                })
                .collect();
            out.sort();
            out
        };
        let mut lookups = 0;
        for seed in 1..=6u64 {
            let msgs = messages(seed, 240);
            let (keep, forget) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (a, _) = run(
                keep.path(),
                &msgs,
                None,
                false,
                Duration::from_secs(30 * 86_400),
            );
            let (b, _) = run(
                forget.path(),
                &msgs,
                None,
                false,
                Duration::from_secs(3_600),
            );
            assert_eq!(a.ingest.live_lookups(), 0, "seed {seed}: kept for 30 days");
            lookups += b.ingest.live_lookups();
            assert!(
                !standing(keep.path()).is_empty(),
                "seed {seed}: no gap at all"
            );
            assert_eq!(
                standing(keep.path()),
                standing(forget.path()),
                "seed {seed}"
            );
            assert_eq!(readings_rows(keep.path()), readings_rows(forget.path()));
            assert!(
                b.ingest.heap_bytes() <= a.ingest.heap_bytes(),
                "seed {seed}"
            );
        }
        assert!(lookups > 0, "no late reading fell in a forgotten gap");
    }
}
