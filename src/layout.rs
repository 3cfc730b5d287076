//! The data directory, a leaf: every path in it, and the three writers
//! through which its files change durably (replace atomically, create
//! without overwriting, fsync a directory). Nothing else names a path in
//! the data directory.
//!
//! ```text
//! DATA/
//!   journal/                  raw deliveries, durable before any parsing
//!   _state/                   lock, client_id, audit.key, alert_groups.tsv,
//!                             alerts_since, alert_sink_NAME.cursor
//!   _commits/                 one manifest per seal (the commit log)
//!   _ledger/                  entries/, checkpoints/ (and cosignatures),
//!                             head.json, lock, tlog/ (C2SP tlog-tiles)
//!   TABLE/date=YYYY-MM-DD/    sealed Parquet: receipts, readings, rejects,
//!                             gaps, alerts, readings_compacted (+ its lock)
//!   reports/                  reports written with --out
//!   _witness/                 the demo's in-process witness
//! ```
//!
//! The table names are the tables' own (`store::tables`, `alerts::table`,
//! `store::compact`): they name the table in the ledger as well as its
//! directory, and [`partition`] makes the directory of one day of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Raw deliveries (the journal's segments).
pub(crate) const JOURNAL_DIR: &str = "journal";
/// Small state files of the service.
pub(crate) const STATE_DIR: &str = "_state";
/// In [`STATE_DIR`]: the lock one service holds (it names its holder).
pub(crate) const LOCK_FILE: &str = "lock";
/// In [`STATE_DIR`]: the MQTT client id, made once.
pub(crate) const CLIENT_ID_FILE: &str = "client_id";
/// In [`STATE_DIR`]: the ledger's signing key, unless `--audit-key` names
/// another.
pub(crate) const AUDIT_KEY_FILE: &str = "audit.key";
/// In [`STATE_DIR`]: the topic filters the broker's session was last
/// subscribed with (one per line, sorted).
pub(crate) const SUBSCRIPTIONS_FILE: &str = "subscriptions";
/// In [`STATE_DIR`]: groups learned from topics, one `meter\tgroup` line
/// each.
pub(crate) const ALERT_GROUPS_FILE: &str = "alert_groups.tsv";
/// In [`STATE_DIR`]: when the alert engine first started (µs).
pub(crate) const ALERTS_SINCE_FILE: &str = "alerts_since";
/// In [`STATE_DIR`]: the ingest stage's snapshots (derived state, named
/// by the commit they reflect; `audit verify` ignores them).
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
/// The commit log: one manifest per seal.
pub(crate) const COMMITS_DIR: &str = "_commits";
/// The audit ledger.
pub(crate) const LEDGER_DIR: &str = "_ledger";
/// In [`LEDGER_DIR`]: one JSON entry per sealed file.
pub(crate) const ENTRIES_DIR: &str = "entries";
/// In [`LEDGER_DIR`]: signed checkpoints, and witnesses' cosignatures.
pub(crate) const CHECKPOINTS_DIR: &str = "checkpoints";
/// In [`LEDGER_DIR`]: the tree so far, so that a restart need not rehash.
pub(crate) const HEAD_FILE: &str = "head.json";
/// In [`LEDGER_DIR`]: the same tree as a C2SP tlog-tiles log.
pub(crate) const TLOG_DIR: &str = "tlog";
/// Reports written by `gapless report --out`.
pub(crate) const REPORTS_DIR: &str = "reports";
/// Where the demo keeps its witness (`gapless demo --witnessed`; in a
/// deployment the witness is on the auditor's machine).
pub(crate) const WITNESS_DIR: &str = "_witness";

/// `DATA/journal`.
pub fn journal_dir(data: &Path) -> PathBuf {
    data.join(JOURNAL_DIR)
}

/// `DATA/_state/NAME`.
pub(crate) fn state_file(data: &Path, name: &str) -> PathBuf {
    data.join(STATE_DIR).join(name)
}

/// `DATA/_state/audit.key`, the signing key's default place.
pub(crate) fn default_audit_key(data: &Path) -> PathBuf {
    state_file(data, AUDIT_KEY_FILE)
}

/// `DATA/_state/alert_sink_NAME.cursor`: how far sink NAME delivered.
pub(crate) fn sink_cursor(data: &Path, name: &str) -> PathBuf {
    state_file(data, &format!("alert_sink_{name}.cursor"))
}

/// `DATA/_ledger`.
pub fn ledger_dir(data: &Path) -> PathBuf {
    data.join(LEDGER_DIR)
}

/// `DATA/_ledger/checkpoints`.
pub fn checkpoints_dir(data: &Path) -> PathBuf {
    ledger_dir(data).join(CHECKPOINTS_DIR)
}

/// `DATA/_ledger/entries`.
pub fn entries_dir(data: &Path) -> PathBuf {
    ledger_dir(data).join(ENTRIES_DIR)
}

/// The name of the signed checkpoint of a tree of `size` entries, in
/// [`CHECKPOINTS_DIR`].
pub fn checkpoint_name(size: u64) -> String {
    format!("{size:012}.txt")
}

/// `TABLE/date=YYYY-MM-DD`, relative to the data directory: one day of a
/// table.
pub fn partition(table: &str, date: &str) -> String {
    format!("{table}/date={date}")
}

/// What went wrong changing the data directory: the action, the path, and
/// the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct LayoutError {
    pub action: Action,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl LayoutError {
    /// The kind of the underlying I/O error (`AlreadyExists` is how
    /// [`create_new_durably`] says the file was there).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// What was being done when the data directory could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replacing a file whole ([`write_atomic`]).
    Replace,
    /// Creating a file that must not exist yet ([`create_new_durably`]).
    CreateNew,
    /// fsyncing a directory ([`sync_dir`]).
    SyncDir,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Replace => "replacing",
            Action::CreateNew => "creating",
            Action::SyncDir => "fsyncing directory",
        })
    }
}

fn failed(action: Action, path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// fsyncs a directory so that created, renamed and deleted entries persist.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(Action::SyncDir, dir))
}

/// Replaces `path` with `bytes` atomically and durably: written to a
/// temporary file beside it, fsynced, renamed over the old one, and the
/// directory fsynced, so a crash leaves the old content or the new one,
/// never a torn or empty file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`], with the writing of the content a parameter: the seam
/// through which tests fail a write halfway.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), LayoutError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        failed(Action::Replace, path)(io::Error::new(io::ErrorKind::InvalidInput, "no file name"))
    })?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let written = File::create(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(failed(Action::Replace, path)(e));
    }
    sync_dir(dir)
}

/// Creates `path` with `bytes`, never overwriting it: a temporary file
/// created with `mode`, written and fsynced, then hard-linked to its name
/// (an error of kind `AlreadyExists` if it exists) and the directory
/// synced. A crash leaves no file or the whole one.
pub(crate) fn create_new_durably(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LayoutError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(failed(Action::CreateNew, &tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked.map_err(failed(Action::CreateNew, path))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_where_the_data_directory_says() {
        let d = Path::new("/d");
        assert_eq!(journal_dir(d), Path::new("/d/journal"));
        assert_eq!(default_audit_key(d), Path::new("/d/_state/audit.key"));
        assert_eq!(
            sink_cursor(d, "mqtt"),
            Path::new("/d/_state/alert_sink_mqtt.cursor")
        );
        assert_eq!(entries_dir(d), Path::new("/d/_ledger/entries"));
        assert_eq!(checkpoints_dir(d), Path::new("/d/_ledger/checkpoints"));
        assert_eq!(checkpoint_name(2), "000000000002.txt");
        assert_eq!(
            partition("readings", "2022-07-25"),
            "readings/date=2022-07-25"
        );
    }

    #[test]
    fn replaces_the_content_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts_since");
        write_atomic(&path, b"1").unwrap();
        write_atomic(&path, b"1658361600000000").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1658361600000000");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["alerts_since"], "no temporary left behind");
    }

    /// The in-place `fs::write` this replaced truncated the file first: a
    /// crash (or a full disk) in the middle left it empty or torn.
    #[test]
    fn a_write_failing_halfway_leaves_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts_since");
        write_atomic(&path, b"1658361600000000").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"17")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.source.to_string(), "disk full");
        assert_eq!(err.action, Action::Replace);
        assert_eq!(
            err.to_string(),
            format!("replacing {}: disk full", path.display())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "1658361600000000");
        assert!(!dir.path().join(".alerts_since.tmp").exists());
        // A temporary left by a crash is overwritten, never read.
        fs::write(dir.path().join(".alerts_since.tmp"), b"garbage").unwrap();
        write_atomic(&path, b"5").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "5");
    }

    #[test]
    fn a_new_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_new_durably(&path, b"first", 0o600).unwrap();
        let err = create_new_durably(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err
            .to_string()
            .starts_with(&format!("creating {}", path.display())));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_failed_directory_fsync_names_the_directory() {
        let missing = Path::new("/nonexistent-gapless-dir");
        let err = sync_dir(missing).unwrap_err();
        assert_eq!(err.action, Action::SyncDir);
        assert!(err
            .to_string()
            .starts_with("fsyncing directory /nonexistent-gapless-dir: "));
    }
}
