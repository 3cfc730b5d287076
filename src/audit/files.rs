//! `audit verify --files-only`: each sealed file checked by its bytes and
//! its footer, without reading a row: what an auditor can check at the
//! speed of SHA-256 (the rows' hashes are bound into the file's SHA-256 and
//! its footer's row root, which the ledger signs; recomputing them is what
//! the full verify adds).

use std::path::Path;

use parquet::file::metadata::ParquetMetaDataReader;

use super::{check_footer, read_checked, FileOutcome, Finding, Verification};
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
    let Some(bytes) = read_checked(data, e, &mut find) else {
        return o;
    };
    o.bytes = bytes.len() as u64;
    let meta = match ParquetMetaDataReader::new().parse_and_finish(&bytes) {
        Ok(m) => m,
        Err(err) => {
            find(format!("not readable as Parquet: {err}"));
            return o;
        }
    };
    check_footer(&meta, e, &mut find);
    let rows = meta.file_metadata().num_rows().max(0) as u64;
    if rows != e.rows {
        find(format!(
            "{rows} rows in the footer, the ledger says {}",
            e.rows
        ));
    }
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
