//! The audit ledger over a data set the real service made through the real
//! broker: it verifies clean, and every kind of tampering is found, each
//! with a precise message.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::support::*;

fn reading(meter: &str, k: i64, value: f64) -> Vec<u8> {
    let ts = chrono::DateTime::from_timestamp(1_658_707_200 + k * 900, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"meter_id":"{meter}","medium":"water","register":"total","unit":"m3","value":"{value:.3}","ts":"{ts}","seq":{}}}"#,
        k % 256
    )
    .into_bytes()
}

/// A data set in two commits (so there is an older checkpoint), with a
/// rejected message, and the public key that signed it. The service
/// compacts the date (its files from both commits) as it runs.
fn make_data_set(root: &Path) -> (PathBuf, PathBuf) {
    let broker = Mosquitto::start(root);
    let data = root.join("data");
    let mut g = Gapless::start(
        &broker.url(),
        &data,
        &["--compact-every", "0.3", "--compact-grace", "0"],
    );
    let first: Vec<(String, Vec<u8>)> = (0..40)
        .map(|k| {
            (
                format!("meters/W-{}", k % 4),
                reading(&format!("W-{}", k % 4), k / 4, k as f64),
            )
        })
        .collect();
    publish_all(broker.port, &first);
    g.wait_readings(40, Duration::from_secs(60));
    let mut second: Vec<(String, Vec<u8>)> = (40..80)
        .map(|k| {
            (
                format!("meters/W-{}", k % 4),
                reading(&format!("W-{}", k % 4), k / 4, k as f64),
            )
        })
        .collect();
    second.push(("meters/bad".into(), b"{not json".to_vec()));
    publish_all(broker.port, &second);
    g.wait_sealed(81, Duration::from_secs(60));
    wait_compacted(&data, "2022-07-25", Duration::from_secs(60));
    assert_eq!(g.terminate(), Some(0));
    let (code, out, err) = run_gapless(
        &["audit", "pubkey", "--data", &data.display().to_string()],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let pubkey = root.join("pubkey.txt");
    fs::write(&pubkey, out).unwrap();
    (data, pubkey)
}

fn verify(data: &Path, pubkey: &Path) -> (i32, String) {
    let (code, out, err) = run_gapless(
        &[
            "audit",
            "verify",
            "--data",
            &data.display().to_string(),
            "--pubkey",
            &pubkey.display().to_string(),
        ],
        Duration::from_secs(60),
    );
    (code, format!("{out}{err}"))
}

fn entry_path(data: &Path, i: u64) -> PathBuf {
    data.join(format!("_ledger/entries/{i:012}.json"))
}

/// The ledger entry (index and JSON) of the first file of `table`.
fn first_entry(data: &Path, table: &str) -> (u64, serde_json::Value) {
    for i in 0.. {
        let e: serde_json::Value =
            serde_json::from_slice(&fs::read(entry_path(data, i)).unwrap()).unwrap();
        if e["table"] == table {
            return (i, e);
        }
    }
    unreachable!()
}

fn read_batches(path: &Path) -> (Vec<RecordBatch>, Vec<parquet::file::metadata::KeyValue>) {
    let b = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let kv = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    (b.build().unwrap().map(|b| b.unwrap()).collect(), kv)
}

fn write_batches(path: &Path, batches: &[RecordBatch], kv: Vec<parquet::file::metadata::KeyValue>) {
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let mut w = ArrowWriter::try_new(
        fs::File::create(path).unwrap(),
        batches[0].schema(),
        Some(props),
    )
    .unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn verify_finds_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, pubkey) = make_data_set(tmp.path());
    let (code, out) = verify(&clean, &pubkey);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gapless audit verify: OK"), "{out}");
    assert!(
        out.contains("receipts: 81 numbered 1..81 without holes"),
        "{out}"
    );
    assert!(out.contains("compacted files: "), "{out}");

    let (ri, readings_entry) = first_entry(&clean, "readings");
    let readings_rel = readings_entry["path"].as_str().unwrap().to_owned();
    let n_entries = fs::read_dir(clean.join("_ledger/entries")).unwrap().count() as u64;

    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, Vec<String>)> = vec![
        (
            "one byte flipped in a Parquet file",
            Box::new({
                let rel = readings_rel.clone();
                move |d: &Path| {
                    let p = d.join(&rel);
                    let mut b = fs::read(&p).unwrap();
                    let mid = b.len() / 2;
                    b[mid] ^= 0x01;
                    fs::write(&p, b).unwrap();
                }
            }),
            vec![format!("{readings_rel}: SHA-256 differs from the ledger")],
        ),
        (
            "a file rewritten without one row",
            Box::new({
                let rel = readings_rel.clone();
                move |d: &Path| {
                    let p = d.join(&rel);
                    let (batches, kv) = read_batches(&p);
                    let first = batches[0].slice(1, batches[0].num_rows() - 1);
                    let mut rest = vec![first];
                    rest.extend(batches[1..].iter().cloned());
                    write_batches(&p, &rest, kv);
                }
            }),
            vec![
                format!("{readings_rel}: SHA-256 differs from the ledger"),
                format!("{readings_rel}: rows do not hash to the ledger's row root"),
                "rows, the ledger says".into(),
                "stored, but no reading names it".into(),
            ],
        ),
        (
            "a value changed and the file re-hashed consistently, without the key",
            Box::new({
                let rel = readings_rel.clone();
                move |d: &Path| {
                    let p = d.join(&rel);
                    let (batches, mut kv) = read_batches(&p);
                    let b = &batches[0];
                    let col = b.schema().index_of("value").unwrap();
                    let mut values: Vec<String> = (0..b.num_rows())
                        .map(|i| {
                            b.column(col)
                                .as_any()
                                .downcast_ref::<StringArray>()
                                .unwrap()
                                .value(i)
                                .to_owned()
                        })
                        .collect();
                    values[0] = "999999.000".into();
                    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                    cols[col] = Arc::new(StringArray::from(values));
                    let changed = RecordBatch::try_new(b.schema(), cols).unwrap();
                    let mut all = vec![changed];
                    all.extend(batches[1..].iter().cloned());
                    // The attacker follows the spec: new row root in the
                    // footer and the entry, new size and hash in the entry.
                    let mut hashes = Vec::new();
                    for b in &all {
                        gapless::store::canonical::row_hashes(b, &mut hashes).unwrap();
                    }
                    let root = hex::encode(gapless::store::canonical::merkle_root(&hashes));
                    for k in kv.iter_mut().filter(|k| k.key == "gapless.row_root") {
                        k.value = Some(root.clone());
                    }
                    write_batches(&p, &all, kv);
                    let bytes = fs::read(&p).unwrap();
                    let ep = entry_path(d, ri);
                    let mut e: gapless::store::ledger::LedgerEntry =
                        serde_json::from_slice(&fs::read(&ep).unwrap()).unwrap();
                    e.size = bytes.len() as u64;
                    e.sha256 = hex::encode(Sha256::digest(&bytes));
                    e.row_root = root;
                    fs::write(&ep, e.to_bytes()).unwrap();
                }
            }),
            vec!["signed root does not match entries".into()],
        ),
        (
            "a file deleted",
            Box::new({
                let rel = readings_rel.clone();
                move |d: &Path| fs::remove_file(d.join(&rel)).unwrap()
            }),
            vec![format!("{readings_rel}: ledger entry {ri}: file missing")],
        ),
        (
            "a foreign Parquet file added",
            Box::new({
                let rel = readings_rel.clone();
                move |d: &Path| {
                    let foreign = d.join(rel.replace("part-", "part-9"));
                    fs::copy(d.join(&rel), foreign).unwrap();
                }
            }),
            vec!["Parquet file not in the ledger".into()],
        ),
        (
            "the ledger truncated",
            Box::new(move |d: &Path| fs::remove_file(entry_path(d, n_entries - 1)).unwrap()),
            vec![format!(
                "signs {n_entries} entries but the ledger has {}",
                n_entries - 1
            )],
        ),
        (
            "two entries swapped",
            Box::new(|d: &Path| {
                let (a, b) = (entry_path(d, 0), entry_path(d, 1));
                let (x, y) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
                fs::write(&a, y).unwrap();
                fs::write(&b, x).unwrap();
            }),
            vec![
                "ledger entry 0: holds the entry of index 1".into(),
                "ledger entry 1: holds the entry of index 0".into(),
            ],
        ),
        (
            "a checkpoint altered",
            Box::new(move |d: &Path| {
                let p = d.join(format!("_ledger/checkpoints/{n_entries:012}.txt"));
                let text = fs::read_to_string(&p).unwrap();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let forged = format!("{}", n_entries + 1);
                lines[1] = &forged;
                fs::write(&p, lines.join("\n")).unwrap();
            }),
            vec!["signature does not verify".into()],
        ),
        (
            "an old checkpoint replayed over a newer log",
            Box::new(move |d: &Path| {
                fs::remove_file(d.join(format!("_ledger/checkpoints/{n_entries:012}.txt"))).unwrap()
            }),
            vec![
                "the newest valid checkpoint signs".into(),
                "are not signed".into(),
            ],
        ),
        (
            "a compacted file without one of its sources' rows, entered and signed by the key holder",
            Box::new(|d: &Path| {
                use gapless::store::compact;
                let c = compact::latest(d).unwrap()["2022-07-25"].clone();
                let (batches, _) = read_batches(&d.join(&c.path));
                let mut rows = vec![batches[0].slice(1, batches[0].num_rows() - 1)];
                rows.extend(batches[1..].iter().cloned());
                let ledger = gapless::store::ledger::Ledger::open(d).unwrap();
                let mut w = ledger.writer().unwrap();
                let index = w.next_index();
                let path = format!("readings_compacted/date=2022-07-25/compact-{index:012}.parquet");
                let kv = |k: &str, v: String| parquet::file::metadata::KeyValue::new(k.into(), v);
                let facts = gapless::store::write_parquet_as(
                    &d.join(&path),
                    rows,
                    vec![
                        kv("gapless.table", compact::READINGS_COMPACTED.into()),
                        kv("gapless.schema_version", "2".into()),
                        kv(compact::SOURCES_KEY, serde_json::to_string(&c.sources).unwrap()),
                    ],
                    Some(index),
                    gapless::store::Layout::Compacted,
                )
                .unwrap();
                w.append(&facts.entry(index, compact::READINGS_COMPACTED, &path, None, "2022-07-26T00:00:00Z"))
                    .unwrap();
                let key = gapless::store::ledger::AuditKey::load_or_create(d, None).unwrap();
                w.checkpoint(&key).unwrap();
            }),
            vec![
                "does not hold exactly the rows of its".into(),
                "0 rows not in them, 1 of theirs missing".into(),
            ],
        ),
    ];
    for (i, (name, tamper, expected)) in cases.iter().enumerate() {
        let d = tmp.path().join(format!("case-{i}"));
        copy_dir(&clean, &d);
        tamper(&d);
        let (code, out) = verify(&d, &pubkey);
        assert_eq!(code, 1, "{name}: not detected:\n{out}");
        for want in expected {
            assert!(
                out.contains(want.as_str()),
                "{name}: expected {want:?} in:\n{out}"
            );
        }
    }
    // --files-only: the clean copy holds without reading a row; a changed
    // byte is still found (by the file's SHA-256).
    let files_only = |d: &Path| {
        let (code, out, err) = run_gapless(
            &[
                "audit",
                "verify",
                "--files-only",
                "--data",
                &d.display().to_string(),
                "--pubkey",
                &pubkey.display().to_string(),
            ],
            Duration::from_secs(60),
        );
        (code, format!("{out}{err}"))
    };
    let (code, out) = files_only(&clean);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--files-only: OK"), "{out}");
    let (code, out) = files_only(&tmp.path().join("case-0"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("SHA-256 differs from the ledger"), "{out}");

    // An inclusion proof of one reading checks without the data; a changed
    // row in it does not.
    let proof = tmp.path().join("proof.json");
    let d = clean.display().to_string();
    let k = pubkey.display().to_string();
    let p = proof.display().to_string();
    let (code, _, err) = run_gapless(
        &[
            "audit",
            "prove",
            "--data",
            &d,
            "--meter",
            "W-1",
            "--ts",
            "2022-07-25T00:15:00Z",
            "--pubkey",
            &k,
            "--out",
            &p,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_gapless(
        &["audit", "check-proof", &p, "--pubkey", &k],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("proof holds") && out.contains("meter_id = W-1"),
        "{out}"
    );
    assert!(out.contains("value = 5.000"), "{out}");
    let mut forged: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&proof).unwrap()).unwrap();
    let row = forged["row"]
        .as_str()
        .unwrap()
        .replace("352e303030", "392e303030"); // "5.000" -> "9.000"
    forged["row"] = row.into();
    fs::write(&proof, forged.to_string()).unwrap();
    let (code, out, _) = run_gapless(
        &["audit", "check-proof", &p, "--pubkey", &k],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the row was changed"), "{out}");

    // Consistency: today's ledger extends the first commit's checkpoint; a
    // rewritten one (case 2: an entry re-hashed) does not.
    let mut cps: Vec<PathBuf> = fs::read_dir(clean.join("_ledger/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cps.sort();
    let old = tmp.path().join("old-checkpoint.txt");
    fs::copy(&cps[1], &old).unwrap();
    let o = old.display().to_string();
    let (code, out, err) = run_gapless(
        &[
            "audit",
            "consistency",
            "--data",
            &d,
            "--old",
            &o,
            "--pubkey",
            &k,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("consistent: the ledger of"), "{err}");
    let rewritten = tmp.path().join("case-2").display().to_string();
    let (code, out, _) = run_gapless(
        &[
            "audit",
            "consistency",
            "--data",
            &rewritten,
            "--old",
            &o,
            "--pubkey",
            &k,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not consistent"), "{out}");

    // The independent verifier (tools/verify_audit.py, from the spec alone)
    // agrees: the clean copy holds, tampered ones do not.
    {
        let python = python_with(&["pyarrow", "cryptography"]);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/verify_audit.py");
        let run = |d: &Path| {
            let o = std::process::Command::new(&python)
                .arg(script)
                .arg(d)
                .arg(&pubkey)
                .output()
                .unwrap();
            (
                o.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        };
        let (code, out) = run(&clean);
        assert_eq!(code, Some(0), "python verifier on clean data:\n{out}");
        assert!(out.contains("OK: "), "{out}");
        for (i, (name, _, _)) in cases.iter().enumerate() {
            let (code, out) = run(&tmp.path().join(format!("case-{i}")));
            assert_eq!(code, Some(1), "python verifier missed: {name}\n{out}");
        }
        // Without its key file it says how to call it, not a traceback.
        let o = std::process::Command::new(&python)
            .arg(script)
            .arg(&clean)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.starts_with("usage: verify_audit.py"), "{err}");
    }

    // The checks run with the key the auditor trusts: checkpoints signed by
    // another key (say, a copy of the data re-signed) are not accepted.
    let elsewhere = tmp.path().join("elsewhere");
    let (code, out, err) = run_gapless(
        &[
            "audit",
            "pubkey",
            "--data",
            &elsewhere.display().to_string(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "no key there yet: {out}{err}");
    assert!(err.contains("audit.key"), "{err}");
    fs::create_dir_all(elsewhere.join("_state")).unwrap();
    fs::write(elsewhere.join("_state/audit.key"), "07".repeat(32)).unwrap();
    let (_, other_key, _) = run_gapless(
        &[
            "audit",
            "pubkey",
            "--data",
            &elsewhere.display().to_string(),
        ],
        Duration::from_secs(30),
    );
    let other = tmp.path().join("other.txt");
    fs::write(&other, other_key).unwrap();
    let (code, out) = verify(&clean, &other);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no signature by"), "{out}");
    let bad = tmp.path().join("bad.txt");
    fs::write(&bad, "not a key").unwrap();
    let (code, out) = verify(&clean, &bad);
    assert_eq!(code, 2, "a malformed key is bad usage: {out}");
}
