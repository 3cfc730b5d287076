//! The properties every hostile input must keep, one checker per fuzz
//! target. Shared, as this one file, by the fuzz targets in `tools/fuzz/`
//! (`#[path]`) and by the corpus replay in `cargo test`
//! (`tests/hostile/corpus.rs`), so that what the fuzzer explored is checked
//! again on every change.
//!
//! Checked on each input:
//! - no panic (a panic is the failure libFuzzer and the replay report);
//! - decoders: accepted ⇒ at least one reading, and the canonical native
//!   re-encoding of the readings decodes to the same readings; rejected ⇒
//!   a non-empty reason;
//! - the decimal parser: accepted ⇒ the text is kept digit for digit and
//!   the plain and fixed renderings parse back to the same value;
//! - file readers (journal, commit log, ledger): an error or a consistent
//!   result, never a panic, and the journal's repair is idempotent.
//!
//! Time per byte is measured by `gapless bench parse --corpus DIR`, not
//! asserted (libFuzzer's `-timeout` catches a hang while fuzzing).

use std::path::{Path, PathBuf};

use gapless::decode::{decode, DecodeConfig, Format};
use gapless::reading::{format_fixed, format_scaled, fraction_digits, Decimal, Reading};

/// The fuzz targets, each a directory of `tests/fuzz/`.
pub const TARGETS: [&str; 9] = [
    "decode_native",
    "decode_wmbusmeters",
    "decode_lorawan",
    "decimal",
    "journal_replay",
    "registry",
    "config",
    "commit_log",
    "ledger",
];

/// The receive time every decoder check uses: 2026-07-01T00:00:00Z.
const RECEIVED_AT: i64 = 1_782_864_000 * 1_000_000;

/// Runs the checker of `target` on one input; panics when a property fails.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "decode_native" => check_decode(
            data,
            &[(None, "meters/x"), (Some(Format::Native), "meters/x")],
        ),
        "decode_wmbusmeters" => check_decode(
            data,
            &[
                (None, "wmbusmeters/x"),
                (Some(Format::Wmbusmeters), "wmbusmeters/x"),
            ],
        ),
        "decode_lorawan" => check_decode(
            data,
            &[
                (None, "application/1/device/0102030405060708/event/up"),
                (
                    Some(Format::Chirpstack),
                    "application/1/device/0102030405060708/event/up",
                ),
                (Some(Format::Tts), "v3/app@ttn/devices/dev-1/up"),
            ],
        ),
        "decimal" => check_decimal(data),
        "journal_replay" => check_journal(data),
        "registry" => check_registry(data),
        "config" => check_config(data),
        "commit_log" => check_commit_log(data),
        "ledger" => check_ledger(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

/// Decodes `data` as each (pinned format, topic) and checks the result.
fn check_decode(data: &[u8], ways: &[(Option<Format>, &str)]) {
    for &(pin, topic) in ways {
        let cfg = DecodeConfig {
            pinned: pin.map(|f| vec![("#".to_owned(), f)]).unwrap_or_default(),
            ..DecodeConfig::default()
        };
        match decode(topic, data, RECEIVED_AT, &cfg) {
            Ok(d) => {
                assert!(!d.readings.is_empty(), "accepted without a reading");
                if let Some(p) = pin {
                    assert_eq!(d.format, p, "a pinned topic decodes as its format");
                }
                let canonical = canonical_native(&d.readings);
                let native = DecodeConfig {
                    pinned: vec![("#".to_owned(), Format::Native)],
                    ..DecodeConfig::default()
                };
                let again = decode(
                    "meters/canonical",
                    canonical.as_bytes(),
                    RECEIVED_AT,
                    &native,
                )
                .unwrap_or_else(|r| {
                    panic!(
                        "the canonical re-encoding of an accepted {:?} message is rejected: \
                             {}\n{canonical}",
                        d.format, r.reason
                    )
                });
                assert_eq!(
                    again.readings, d.readings,
                    "the canonical re-encoding decodes to other readings:\n{canonical}"
                );
            }
            Err(r) => assert!(!r.reason.is_empty(), "a rejection without a reason"),
        }
    }
}

/// The readings in gapless' own format (`schemas/reading.schema.json`),
/// every field explicit, the value as its exact text.
pub fn canonical_native(readings: &[Reading]) -> String {
    let items: Vec<serde_json::Value> = readings
        .iter()
        .map(|r| {
            let ts = chrono::DateTime::from_timestamp_micros(r.ts_micros)
                .expect("an accepted reading time is a valid time")
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            let mut o = serde_json::json!({
                "meter_id": r.meter_id.as_str(),
                "medium": r.medium.as_str(),
                "register": r.register,
                "unit": r.unit.as_str(),
                "value": r.value.as_str(),
                "ts": ts,
                "kind": r.kind.as_str(),
            });
            if let Some(seq) = r.seq {
                o["seq"] = seq.into();
            }
            o
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn check_decimal(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = Decimal::parse(text) else {
        return;
    };
    assert_eq!(d.as_str(), text, "the text is kept as sent");
    let plain = format_scaled(d.scaled());
    assert_eq!(
        Decimal::parse(&plain).map(|p| p.scaled()),
        Ok(d.scaled()),
        "{text:?} renders as {plain:?}, which is another value"
    );
    let fixed = format_fixed(d.scaled(), fraction_digits(text));
    assert_eq!(
        Decimal::parse(&fixed).map(|p| p.scaled()),
        Ok(d.scaled()),
        "{text:?} renders at its own precision as {fixed:?}, which is another value"
    );
}

fn check_registry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reg) = gapless::continuity::registry::Registry::parse(text) {
        let meters: Vec<String> = reg.meters().map(|(m, _)| m.to_owned()).collect();
        assert_eq!(meters.len(), reg.len());
        for m in &meters {
            assert!(
                !reg.entries(m).is_empty(),
                "meter {m} listed without an entry"
            );
            let _ = reg.latest(m);
            let _ = reg.replacements(m);
            let _ = reg.service_span(m);
        }
    }
}

fn check_config(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gapless.toml");
    std::fs::write(&path, data).expect("write config");
    let flags = gapless::config::ServeFlags {
        config: Some(path),
        ..Default::default()
    };
    let _ = gapless::config::ServeSettings::resolve(flags, None);
}

/// A directory tree in one input: parts separated by `\n----\n`, each a
/// relative path on its first line, then the file's bytes. Paths are
/// confined to the tree (no `..`, no absolute paths, plain characters);
/// a part whose path is not is ignored, and so are parts past the 16th.
pub fn unpack(data: &[u8], root: &Path) -> Vec<PathBuf> {
    let mut written = Vec::new();
    for part in split(data, b"\n----\n").into_iter().take(16) {
        let (name, body) = match part.iter().position(|&b| b == b'\n') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let plain = !name.is_empty()
            && name.len() <= 120
            && name.split('/').all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if !plain {
            continue;
        }
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                continue;
            }
        }
        if path.is_dir() {
            continue;
        }
        if std::fs::write(&path, body).is_ok() {
            written.push(path);
        }
    }
    written
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// Journal segments (`seg-<20 digits>.log`, torn or corrupted): opening
/// repairs a torn tail or reports damage; what it repaired reads back whole,
/// and a second open finds nothing more to repair.
fn check_journal(data: &[u8]) {
    use gapless::journal::{Journal, JournalTail, DEFAULT_SEGMENT_BYTES};
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("journal");
    std::fs::create_dir_all(&dir).expect("journal dir");
    unpack(data, &dir);
    let Ok((journal, first)) = Journal::open(&dir, 1, DEFAULT_SEGMENT_BYTES) else {
        return;
    };
    let next = journal.next_seq();
    drop(journal);
    let (journal, second) =
        Journal::open(&dir, 1, DEFAULT_SEGMENT_BYTES).expect("a repaired journal opens again");
    assert_eq!(second.truncated_bytes, 0, "the first open left a torn tail");
    assert_eq!(
        second.records, first.records,
        "records changed between opens"
    );
    assert_eq!(journal.next_seq(), next, "numbering changed between opens");
    drop(journal);
    // Every record before `next` that the segments hold reads back in order.
    let mut tail = JournalTail::new(&dir, 1);
    let mut expect = None;
    let read = tail.read_through(next.saturating_sub(1), |rec| {
        if let Some(e) = expect {
            assert_eq!(rec.seq, e, "records out of order");
        }
        expect = Some(rec.seq + 1);
    });
    // A journal whose first records were truncated away after sealing
    // starts past 1: the tail then says which record is missing.
    if first.records == next.saturating_sub(1) {
        read.expect("every record the open counted reads back");
    }
    let _ = gapless::journal::count_after(&dir, 0);
}

/// Commit manifests (`_commits/<10 digits>.json`): read whole, or read
/// again incrementally; either an error or a contiguous log.
fn check_commit_log(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    unpack(data, tmp.path());
    if let Ok(all) = gapless::store::commit::read_all(tmp.path()) {
        let mut expected = 1u64;
        for m in &all {
            assert_eq!(m.first_seq, expected, "commit log not contiguous");
            assert!(m.last_seq >= m.first_seq.saturating_sub(1));
            expected = m.last_seq.saturating_add(1);
        }
        let mut log = gapless::store::commit::CommitLog::default();
        let again = log
            .refresh(tmp.path())
            .expect("read twice, same answer")
            .len();
        assert_eq!(again, all.len());
        let again = log.refresh(tmp.path()).expect("refresh, same answer").len();
        assert_eq!(again, all.len());
    }
}

/// The audit ledger (`_ledger/entries`, `checkpoints`, `head.json`) and
/// what it names: the ledger writer opens it or says why not, and
/// `audit verify` reports findings, never panics.
fn check_ledger(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    unpack(data, tmp.path());
    if let Ok(ledger) = gapless::store::ledger::Ledger::open(tmp.path()) {
        let _ = ledger.entry_indices();
        let _ = ledger.checkpoints();
        let _ = ledger.writer().map(|w| w.next_index());
    }
    // The directory's own key (`_state/audit.key`, when the input has one),
    // so that the seeds' checkpoints verify and the fuzzer gets past them.
    let _ = gapless::audit::verify(tmp.path(), None, &|_, _, _| {});
}
