//! `audit verify --files-only`: each sealed file checked by its bytes and
//! its footer, without reading a row: what an auditor can check at the
//! speed of SHA-256 (the rows' hashes are bound into the file's SHA-256 and
//! its footer's row root, which the ledger signs; recomputing them is what
//! the full verify adds).

use std::fs;
use std::path::Path;

use bytes::Bytes;
use parquet::file::metadata::ParquetMetaDataReader;
use sha2::{Digest, Sha256};

use super::{FileOutcome, Finding, Verification};
use crate::store::ledger::LedgerEntry;

/// Size, SHA-256, footer ledger index and row root, and the row count the
/// footer gives, against the entry.
pub(super) fn verify_footer(data: &Path, e: &LedgerEntry) -> FileOutcome {
    let mut o = FileOutcome::default();
    let mut find = |what: String| {
        o.findings.push(Finding {
            subject: e.path.clone(),
            what,
        })
    };
    let bytes = match fs::read(data.join(&e.path)) {
        Ok(b) => Bytes::from(b),
        Err(err) => {
            find(format!(
                "ledger entry {}: file missing or unreadable ({err})",
                e.index
            ));
            return o;
        }
    };
    let len = bytes.len() as u64;
    if len != e.size {
        find(format!("size {len} bytes, the ledger says {}", e.size));
    }
    if hex::encode(Sha256::digest(&bytes)) != e.sha256 {
        find("SHA-256 differs from the ledger: the file was changed".into());
    }
    let meta = match ParquetMetaDataReader::new().parse_and_finish(&bytes) {
        Ok(m) => m,
        Err(err) => {
            find(format!("not readable as Parquet: {err}"));
            o.bytes = len;
            return o;
        }
    };
    let kv = |key: &str| {
        meta.file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == key))
            .and_then(|k| k.value.clone())
    };
    if kv("gapless.ledger_index") != Some(e.index.to_string()) {
        find(format!(
            "footer names ledger index {:?}, the ledger {}",
            kv("gapless.ledger_index"),
            e.index
        ));
    }
    if kv("gapless.row_root") != Some(e.row_root.clone()) {
        find("footer row root differs from the ledger".into());
    }
    let rows = meta.file_metadata().num_rows().max(0) as u64;
    if rows != e.rows {
        find(format!(
            "{rows} rows in the footer, the ledger says {}",
            e.rows
        ));
    }
    o.bytes = len;
    o.rows = rows;
    o
}

/// The summary of a clean `--files-only` run.
pub(super) fn summary(v: &Verification) -> String {
    let cp = v
        .checkpoint
        .as_ref()
        .map(|c| format!("tree of {} entries, root {}", c.size, hex::encode(c.root)))
        .unwrap_or_default();
    let secs = v.elapsed.as_secs_f64().max(1e-9);
    format!(
        "gapless audit verify --files-only: OK\n  ledger: {} entries; checkpoint signed by {}{}\n  {cp}\n  files: {} ({:.1} MB), every size, SHA-256, footer index and row root, and footer row count ({} rows) checked; rows not read (run without --files-only to recompute row roots, receipts and lineage)\n  no Parquet file outside the ledger\n  {:.2} s ({:.0} MB/s)\n",
        v.entries,
        v.key,
        if v.own_key { " (the data directory's own key)" } else { "" },
        v.files,
        v.bytes as f64 / 1e6,
        v.rows,
        v.elapsed.as_secs_f64(),
        v.bytes as f64 / 1e6 / secs,
    )
}
