//! Issue 16: restarts of the real process end in the state of a run that
//! never stopped, and a lookup that cannot be answered stops the service
//! without losing the message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{assert_balanced, native, reading_keys, ts_of, MIN};
use crate::support::*;

/// 40 meters every 15 minutes for 30 hours, with holes; a fifth of the
/// missing readings come at the end (late: they split or close gaps), and
/// some messages twice. Returns the messages and the distinct readings.
fn gappy_stream() -> (Vec<(String, Vec<u8>)>, usize) {
    let (mut msgs, mut late) = (Vec::new(), Vec::new());
    let mut distinct = 0;
    for slot in 0..120usize {
        for m in 0..40usize {
            let meter = format!("R-{m:02}");
            let msg = (
                format!("meters/r/{meter}"),
                native(
                    &meter,
                    &format!("{}.5", 1000 + slot * 3 + m),
                    &ts_of(slot),
                    slot as u64,
                ),
            );
            match (slot * 7 + m * 3) % 13 {
                0 | 1 => continue,
                2 => late.push(msg),
                3 => {
                    msgs.push(msg.clone());
                    msgs.push(msg);
                }
                _ => msgs.push(msg),
            }
            distinct += 1;
        }
    }
    msgs.extend(late);
    (msgs, distinct)
}

/// Every gap `gapless gaps` lists (open ones up to a fixed time), as JSON
/// lines, sorted.
fn gaps_of(data: &std::path::Path) -> Vec<String> {
    let data = data.display().to_string();
    let (code, out, err) = run_gapless(
        &[
            "gaps",
            "--data",
            &data,
            "--format",
            "json",
            "--to",
            "2022-07-27T00:00:00Z",
        ],
        MIN,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut rows: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    rows.sort();
    rows
}

/// Every reading row as meter|register|ts|value|conflict, sorted.
fn reading_values(data: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = rows(&read_table(data, "readings"))
        .into_iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}",
                r["meter_id"], r["register"], r["ts"], r["value"], r["conflict"]
            )
        })
        .collect();
    out.sort();
    out
}

/// SIGKILLs at random moments while the stream arrives; each start loads a
/// snapshot, the files sealed after it and the journal. Late readings are
/// older than the gap memory (1 day: the readings are of 2022), so they
/// find their gaps in the sealed files. The readings stored and the gaps
/// found are exactly those of a run that was never killed.
#[test]
fn sigkills_at_random_moments_end_in_the_uninterrupted_state() {
    let (msgs, distinct) = gappy_stream();
    let flags = ["--seal-max-rows", "150", "--gap-memory-days", "1"];

    let calm = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(calm.path());
    let data_calm = calm.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data_calm, &flags);
    publish_all(broker.port, &msgs);
    let s = g.wait_readings(distinct as u64, 3 * MIN);
    assert_balanced(&s);
    assert_eq!(g.terminate(), Some(0));
    let log = g.log_text();
    assert!(
        !log.contains("panicked"),
        "the uninterrupted run failed:\n{log}"
    );

    let rough = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(rough.path());
    let data = rough.path().join("data");
    let mut g = Gapless::start(&broker.url(), &data, &flags);
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (port, done, msgs) = (broker.port, done.clone(), msgs.clone());
        std::thread::spawn(move || {
            for chunk in msgs.chunks(300) {
                publish_all(port, chunk);
                std::thread::sleep(Duration::from_millis(60));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64 | 1;
    eprintln!("random kills: seed {seed}");
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    // The first seal writes a snapshot: from then on a start has one.
    let snapshots = data.join("_state").join("snapshots");
    wait_for("a first snapshot", MIN, || {
        std::fs::read_dir(&snapshots).ok()?.next().map(|_| ())
    });
    let mut kills = 0;
    while kills < 4 || !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rand(200, 900)));
        g.kill();
        kills += 1;
        std::thread::sleep(Duration::from_millis(rand(0, 200)));
        g.restart();
        assert!(kills < 200, "the publisher never finished");
    }
    publisher.join().unwrap();
    let s = g.wait_readings(distinct as u64, 3 * MIN);
    assert_balanced(&s);
    assert_eq!(g.terminate(), Some(0));
    let log = g.log_text();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ingest: state") || l.contains("snapshot"))
        .collect();
    assert!(
        log.contains("ingest: state from the snapshot"),
        "restarts used the snapshots: {starts:#?}"
    );

    let keys = reading_keys(&data);
    assert!(keys.values().all(|&n| n == 1), "a reading stored twice");
    assert_eq!(reading_values(&data), reading_values(&data_calm));
    let (calm_gaps, rough_gaps) = (gaps_of(&data_calm), gaps_of(&data));
    assert!(calm_gaps.len() > 100, "{} gaps", calm_gaps.len());
    assert_eq!(rough_gaps, calm_gaps, "after {kills} SIGKILLs");
}

/// A late reading that only the sealed files can classify, when one of
/// them is damaged: the service stops with an error naming what it looked
/// up (it does not guess), the message stays in the journal, and once the
/// file is back it is classified (a duplicate).
#[test]
fn a_lookup_in_a_damaged_file_stops_the_service_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let flags = ["--compact-every", "0", "--seal-max-age", "0.5"];
    let mut g = Gapless::start(&broker.url(), &data, &flags);
    let msgs: Vec<_> = (0..40usize)
        .map(|k| {
            let m = "D-1".to_string();
            (
                "meters/d/D-1".to_string(),
                native(&m, &format!("{}.5", 100 + k), &ts_of(k), k as u64),
            )
        })
        .collect();
    publish_all(broker.port, &msgs);
    g.wait_readings(40, MIN);
    assert_eq!(g.terminate(), Some(0));

    let dir = data.join("readings").join("date=2022-07-25");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let good = std::fs::read(&files[0]).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    // The footer: its length and magic stay, its bytes do not.
    for b in &mut bad[n - 200..n - 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&files[0], &bad).unwrap();

    g.restart();
    // Reading 3 again: before the newest, at no gap's edge the engine
    // keeps open: only the sealed files know.
    publish_all(broker.port, &msgs[3..4]);
    let code = g.wait_exit(MIN);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    let log = g.log_text();
    assert!(
        log.contains("looking up D-1 total at"),
        "the error names the lookup:\n{log}"
    );

    std::fs::write(&files[0], &good).unwrap();
    g.restart();
    // The journal replays it; the broker may redeliver it too, if the ack
    // had not gone out: each copy is a counted duplicate.
    let s = wait_for("the message classified", MIN, || {
        let s = g.stats();
        (s["readings"]["duplicate"].as_u64() >= Some(1)).then_some(s)
    });
    assert_eq!(s["readings"]["stored"], 40, "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_balanced(&s);
    assert_eq!(g.terminate(), Some(0));
}
