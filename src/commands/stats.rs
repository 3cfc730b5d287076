//! `gapless stats`: what the commit log counted, and what the journal holds
//! beyond it.

use std::io;
use std::path::Path;

use crate::journal;
use crate::layout::JOURNAL_DIR;
use crate::service::ServiceError;
use crate::store::StoreError;

/// `gapless stats`: counters from the commit log, plus what the journal
/// holds beyond the last commit.
pub fn stats(data: &Path) -> Result<serde_json::Value, ServiceError> {
    if !data.exists() {
        return Err(ServiceError::DataDir {
            path: data.to_owned(),
            action: "reading it",
            source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let manifests = crate::store::commit::read_all(data).map_err(StoreError::from)?;
    let last = manifests.last();
    let totals = last.map(|m| m.totals).unwrap_or_default();
    let sealed_through = last.map_or(0, |m| m.last_seq);
    let pending = journal::count_after(&data.join(JOURNAL_DIR), sealed_through)?;
    let files: usize = manifests.iter().map(|m| m.files.len()).sum();
    Ok(serde_json::json!({
        "delivered": totals.delivered,
        "stored": totals.stored,
        "duplicate": totals.duplicate,
        "rejected": totals.rejected,
        "balanced": totals.is_balanced(),
        "readings": {
            "stored": totals.readings_stored,
            "duplicate": totals.readings_duplicate,
            "conflict": totals.readings_conflict,
        },
        "sealed_through_receipt": sealed_through,
        "commits": manifests.len(),
        "files": files,
        "journal_pending": pending,
    }))
}
