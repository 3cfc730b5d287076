//! The scan's tests: threads, runs, compacted dates, old schemas.

use std::fs::File;
use std::path::Path;

use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::continuity::DAY;
use crate::journal::JournalRecord;
use crate::report::LoadCache;
use crate::service::Pipeline;
use crate::store::tables::READINGS;
use crate::store::{commit, compact};

/// The two-thread scan (split at a meter) gives exactly what one thread
/// gives, series for series, including meters on both sides of the
/// split, late files and registry meters without readings.
#[test]
fn two_threads_give_what_one_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Pipeline::open(
        crate::store::StoreConfig {
            ledger: false,
            ..crate::store::StoreConfig::new(tmp.path())
        },
        crate::ingest::IngestConfig::historic(1_000_000),
    )
    .unwrap();
    let mut seq = 0;
    // Three commits with different meter sets (so row groups start at
    // different meters), and one late commit that fills a gap.
    for (meters, hours) in [
        (0..30, 0..12),
        (10..40, 12..24),
        (5..35, 24..30),
        (0..40, 6..8),
    ] {
        for m in meters {
            for h in hours.clone() {
                if hours.start == 0 && m % 7 == 0 && (6..8).contains(&h) {
                    continue; // lost now, forwarded by the last commit
                }
                if hours.start == 0 && m == 20 {
                    continue; // first seen in a later run, between others
                }
                seq += 1;
                let ts = chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                store.ingest(&JournalRecord {
                    seq,
                    received_at: 1_658_707_200_000_000,
                    topic: "meters/t".into(),
                    payload: format!(
                        r#"{{"meter_id":"M-{m:03}","medium":"water","unit":"m3","value":"{h}.125","ts":"{ts}","seq":{h}}}"#
                    )
                    .into_bytes()
                    .into(),
                })
.unwrap();
            }
        }
        store.seal().unwrap();
    }
    let stored = StoredReadings::load(tmp.path()).unwrap();
    assert!(stored.pivot().is_some(), "the files give a place to split");
    let registry = crate::continuity::registry::Registry::parse(
        "meter_id,medium,expected_interval_s,group,installed_at,removed_at\nM-999,water,3600,,,\nM-001,water,3600,g,,\n",
    )
    .unwrap();
    let ctx = Context {
        registry: std::sync::Arc::new(registry),
        ..Context::default()
    };
    let describe = |s: &SeriesInput| {
        let a = crate::continuity::series::analyze(
            s.points,
            &s.rules,
            Some(1_658_707_200_000_000 + 31 * 3_600_000_000),
        );
        format!(
            "{} {:?} {} {:?} {} {:?}",
            s.meter_id,
            s.register,
            s.points.len(),
            s.rules.interval,
            s.in_registry,
            a.gaps
                .iter()
                .map(|g| (g.from, g.to, g.missing, g.open))
                .collect::<Vec<_>>()
        )
    };
    let mut stored = stored;
    let one = stored.map_series_split(&ctx, describe, false).unwrap();
    let two = stored.map_series_split(&ctx, describe, true).unwrap();
    assert_eq!(
        one.len(),
        41,
        "40 meters and one registry meter without readings"
    );
    assert_eq!(one, two);
    // Chunks of meters of any size (down to a meter per chunk) give
    // the same series.
    for rows in [0, 1, 5, 37] {
        stored.chunk_rows = rows;
        assert_eq!(
            stored.map_series_split(&ctx, describe, false).unwrap(),
            one,
            "{rows}"
        );
        assert_eq!(
            stored.map_series_split(&ctx, describe, true).unwrap(),
            one,
            "{rows}"
        );
    }
}

/// Copies a data directory, without its compacted files.
fn copy_uncompacted(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == compact::READINGS_COMPACTED {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_uncompacted(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every point, conflict and set day of every series.
fn every_series(data: &Path) -> (usize, Vec<String>) {
    series_of(&StoredReadings::load(data).unwrap())
}

fn series_of(stored: &StoredReadings) -> (usize, Vec<String>) {
    let all = stored
        .map_series_split(
            &Context::default(),
            |s: &SeriesInput| {
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?}",
                    s.meter_id, s.register, s.unit, s.points, s.conflicts, s.rules.set_days
                )
            },
            false,
        )
        .unwrap();
    (stored.files.len(), all)
}

/// A compacted date reads as one run and gives, point for point, what
/// its readings files give; readings that come for it later are read
/// beside it until the next compaction holds them too; a compacted file
/// the ledger does not hold (left by a crash) is ignored, then removed.
#[test]
fn compacted_runs_give_what_the_files_give() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut store = Pipeline::for_test(&data, usize::MAX);
    let mut seq = 0;
    let mut send = |store: &mut Pipeline, body: String| {
        seq += 1;
        store
            .ingest(&JournalRecord {
                seq,
                received_at: 1_658_707_200_000_000,
                topic: "meters/t".into(),
                payload: body.into_bytes().into(),
            })
            .unwrap();
    };
    let at = |h: i64| {
        chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // Two days in four commits; the last forwards hours lost before.
    for (meters, hours) in [
        (0..20, 0..10),
        (5..25, 10..30),
        (0..25, 30..48),
        (0..25, 3..5),
    ] {
        for m in meters {
            for h in hours.clone() {
                if hours.start == 0 && (3..5).contains(&h) && m % 3 == 0 {
                    continue;
                }
                send(
                    &mut store,
                    format!(
                        r#"{{"meter_id":"M-{m:03}","medium":"heat","unit":"kWh","value":"{h}.5","ts":"{}","seq":{h}}}"#,
                        at(h)
                    ),
                );
            }
        }
        if hours.start == 0 {
            // A value of more than 18 digits (at scale 9) on the first day.
            send(
                &mut store,
                format!(
                    r#"{{"meter_id":"M-900","medium":"heat","unit":"kWh","value":"98765432109.125","ts":"{}"}}"#,
                    at(1)
                ),
            );
        }
        // A conflict: the same meter and time with another value.
        send(
            &mut store,
            format!(
                r#"{{"meter_id":"M-001","medium":"heat","unit":"kWh","value":"7","ts":"{}"}}"#,
                at(hours.start)
            ),
        );
        store.seal().unwrap();
    }
    let key = crate::store::ledger::AuditKey::load_or_create(&data, None).unwrap();
    let never = 4_000_000_000_000_000;
    // A long-lived reader (the API) sees each change as a fresh one does.
    let mut cache = LoadCache::default();
    let mut cached = || series_of(&StoredReadings::load_cached(&data, &mut cache).unwrap());
    let before = every_series(&data);
    assert_eq!(cached(), before);
    assert_eq!(
        before.0, 5,
        "3 readings files of the first date, 2 of the second"
    );

    let done = compact::compact(&data, &key, never, 0, &|| false)
        .unwrap()
        .done;
    assert_eq!(
        done.iter()
            .map(|c| (c.date.as_str(), c.sources))
            .collect::<Vec<_>>(),
        [("2022-07-25", 3), ("2022-07-26", 2)]
    );
    let after = every_series(&data);
    assert_eq!(cached(), after);
    assert_eq!(after.0, 2, "one run per date");
    assert_eq!(after.1, before.1);
    // Values stored as 64-bit integers where every one fits.
    let value_type = |c: &compact::Compaction| {
        let f = File::open(data.join(&c.path)).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        b.schema()
            .field_with_name("value_decimal")
            .unwrap()
            .data_type()
            .clone()
    };
    assert_eq!(value_type(&done[0]), DataType::Decimal128(38, 9));
    assert_eq!(value_type(&done[1]), DataType::Decimal128(18, 9));
    // A date is compacted once: nothing new, nothing to do.
    assert!(compact::compact(&data, &key, never, 0, &|| false)
        .unwrap()
        .done
        .is_empty());
    // Not before the date is over (plus the grace).
    let late_night = 1_658_707_200_000_000 + 2 * DAY - 1;
    assert!(compact::compact(&data, &key, late_night, 0, &|| false)
        .unwrap()
        .done
        .is_empty());

    // Late readings of a compacted date: read beside the compacted file.
    for m in 0..25 {
        send(
            &mut store,
            format!(
                r#"{{"meter_id":"M-{m:03}","medium":"heat","unit":"kWh","value":"3.75","ts":"{}"}}"#,
                chrono::DateTime::from_timestamp(1_658_707_200 + 3 * 3600 + 1800, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
    }
    store.seal().unwrap();
    let plain = tmp.path().join("plain");
    copy_uncompacted(&data, &plain);
    let truth = every_series(&plain);
    let late = every_series(&data);
    assert_eq!(cached(), late);
    assert_eq!(late.0, 3);
    assert_eq!(late.1, truth.1);

    // A compacted file that a crash left before its ledger entry is
    // not read, and the next compaction removes it.
    let first = data.join(&done[0].path);
    let orphan = first.with_file_name("compact-000000009999.parquet");
    std::fs::copy(&first, &orphan).unwrap();
    assert_eq!(every_series(&data), late);
    let again = compact::compact(&data, &key, never, 0, &|| false)
        .unwrap()
        .done;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sources, 4);
    assert!(!orphan.exists());
    let last = every_series(&data);
    assert_eq!(cached(), last);
    assert_eq!(last.0, 2);
    assert_eq!(last.1, truth.1);

    // And the auditor's check holds: each compacted file, the old one
    // included, holds exactly the rows of the files it names.
    let v = crate::audit::verify(&data, None, &|_, _, _| {});
    assert!(v.is_clean(), "{:?}", v.findings);
    assert_eq!(v.compacted, 3);
}

/// A date that cannot be compacted (a source unreadable) is reported
/// with why, and the other dates are compacted all the same.
#[test]
fn a_failed_date_does_not_hold_up_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut store = Pipeline::for_test(&data, usize::MAX);
    let mut seq = 0;
    // One reading of meter M-1 at hour `h` after 2022-07-25T00:00Z.
    let mut send = |store: &mut Pipeline, h: i64| {
        seq += 1;
        let ts = chrono::DateTime::from_timestamp(1_658_707_200 + h * 3600, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        store
            .ingest(&JournalRecord {
                seq,
                received_at: 1_658_707_200_000_000,
                topic: "meters/t".into(),
                payload: format!(
                    r#"{{"meter_id":"M-1","medium":"water","unit":"m3","value":"{h}","ts":"{ts}"}}"#
                )
                .into_bytes()
                .into(),
            })
            .unwrap();
    };
    for hours in [0..30, 30..48] {
        for h in hours {
            send(&mut store, h);
        }
        store.seal().unwrap();
    }
    // 2022-07-25 is in one file, 2022-07-26 in two; a third date in two
    // files, one of them spoilt.
    for h in [60, 61] {
        send(&mut store, h);
        store.seal().unwrap();
    }
    let spoilt = commit::read_all(&data)
        .unwrap()
        .into_iter()
        .flat_map(|m| m.files)
        .find(|f| f.table == READINGS && f.path.contains("date=2022-07-27"))
        .unwrap()
        .path;
    std::fs::write(data.join(&spoilt), b"not parquet").unwrap();
    let key = crate::store::ledger::AuditKey::load_or_create(&data, None).unwrap();
    let round = compact::compact(&data, &key, 4_000_000_000_000_000, 0, &|| false).unwrap();
    assert_eq!(
        round
            .done
            .iter()
            .map(|c| c.date.as_str())
            .collect::<Vec<_>>(),
        ["2022-07-26"]
    );
    assert_eq!(round.failed.len(), 1);
    assert_eq!(round.failed[0].0, "2022-07-27");
    assert!(
        round.failed[0].1.to_string().contains(&spoilt),
        "{}",
        round.failed[0].1
    );
}
