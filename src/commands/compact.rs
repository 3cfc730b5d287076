//! `gapless compact`: each ended date's readings files merged into one
//! sorted file, now (`serve --compact-every` does it on a schedule).

use crate::store::StoreError;

/// `gapless compact`: merges each closed date's readings files into one
/// sorted file (`store::compact`); returns what it wrote.
pub fn compact_command(
    args: &crate::cli::CompactArgs,
    now: i64,
) -> Result<crate::store::compact::Round, StoreError> {
    if !args.data.join(crate::layout::COMMITS_DIR).is_dir() {
        return Err(StoreError::Read {
            path: args.data.clone(),
            why: "not a gapless data directory (no _commits)".into(),
        });
    }
    let key =
        crate::store::ledger::AuditKey::load_or_create(&args.data, args.audit_key.as_deref())?;
    let grace = i64::try_from(args.grace.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let bar = crate::progress::Progress::new("compact", 0, "dates");
    let progress = |done, due, date: &str| bar.at(done as u64, due as u64, date.to_owned());
    crate::store::compact::compact_with_progress(&args.data, &key, now, grace, &|| false, &progress)
}
