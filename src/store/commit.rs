//! Commits: the atomic unit in which sealed Parquet files become part of the
//! data set.
//!
//! A commit covers a contiguous range of receipts `[first_seq, last_seq]` and
//! names every file it sealed. Its manifest `DATA/_commits/<n>.json` is
//! created with create-new semantics (a hard link from a fully written and
//! synced temporary file), so it either exists whole or not at all, and two
//! writers cannot both create commit `n`. A Parquet file that no manifest
//! names was left by a crash mid-commit and is removed on start: its rows are
//! rebuilt from the journal.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::ingest::rows::Counters;
use crate::layout::{sync_dir, COMMITS_DIR};

/// One sealed file of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFile {
    pub table: String,
    /// Path relative to DATA, with `/` separators.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Its audit ledger entry (written after this manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<super::ledger::LedgerEntry>,
}

/// A commit manifest, `DATA/_commits/<commit, 10 digits>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub commit: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// RFC 3339 UTC.
    pub sealed_at: String,
    pub writer: String,
    pub files: Vec<SealedFile>,
    /// Counters of the receipts in this commit.
    pub counts: Counters,
    /// Counters of all receipts up to and including this commit.
    pub totals: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("commit log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error("commit manifest {path} is unreadable: {why}")]
    Bad { path: PathBuf, why: String },
    #[error("commit {commit} already exists: another writer sealed it (is a second gapless using this data directory?)")]
    Exists { commit: u64 },
    #[error("commit log has a hole or overlap: commit {commit} starts at receipt {first_seq}, expected {expected}")]
    Discontinuous {
        commit: u64,
        first_seq: u64,
        expected: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CommitError + '_ {
    move |source| CommitError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn manifest_path(data: &Path, commit: u64) -> PathBuf {
    data.join(COMMITS_DIR).join(format!("{commit:010}.json"))
}

/// Reads every manifest in commit order and checks that they cover receipts
/// contiguously from 1.
pub fn read_all(data: &Path) -> Result<Vec<Manifest>, CommitError> {
    let mut log = CommitLog::default();
    log.refresh(data)?;
    Ok(log.manifests)
}

/// The commit log, read incrementally: manifests are immutable and only
/// ever appended, so a long-lived reader (the API) parses each one once. A
/// month of one-minute seals is 43,200 manifests, about 0.7-1.2 s to read
/// from scratch.
#[derive(Debug, Default)]
pub struct CommitLog {
    names: Vec<String>,
    manifests: Vec<Manifest>,
}

impl CommitLog {
    /// Reads the manifests added since the last call (all of them the first
    /// time, or when the log is not the one read before) and returns the
    /// whole log, checked for contiguity.
    pub fn refresh(&mut self, data: &Path) -> Result<&[Manifest], CommitError> {
        let dir = data.join(COMMITS_DIR);
        if !dir.exists() {
            *self = CommitLog::default();
            return Ok(&self.manifests);
        }
        let mut names = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = e.map_err(io_err(&dir))?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") && !name.starts_with('.') {
                names.push(name.into_owned());
            }
        }
        names.sort();
        let known = self.names.len();
        if names.len() < known || names[..known] != self.names[..] {
            *self = CommitLog::default();
        }
        let mut expected = self.manifests.last().map_or(1, |m| m.last_seq + 1);
        for name in &names[self.names.len()..] {
            let p = dir.join(name);
            let bytes = fs::read(&p).map_err(io_err(&p))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| CommitError::Bad {
                path: p.clone(),
                why: e.to_string(),
            })?;
            if m.first_seq != expected {
                return Err(CommitError::Discontinuous {
                    commit: m.commit,
                    first_seq: m.first_seq,
                    expected,
                });
            }
            // A commit covers first_seq..=last_seq (none when last_seq is
            // first_seq - 1); anything else is not a manifest we wrote.
            expected = match m.last_seq.checked_add(1) {
                Some(next) if next >= m.first_seq => next,
                _ => {
                    return Err(CommitError::Bad {
                        path: p,
                        why: format!("receipts {}..={} are not a range", m.first_seq, m.last_seq),
                    })
                }
            };
            self.names.push(name.clone());
            self.manifests.push(m);
        }
        Ok(&self.manifests)
    }
}

/// Writes a manifest with create-new semantics and makes it durable.
pub fn write(data: &Path, m: &Manifest) -> Result<(), CommitError> {
    let dir = data.join(COMMITS_DIR);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let final_path = manifest_path(data, m.commit);
    let tmp = dir.join(format!(".{:010}.json.tmp", m.commit));
    let body = serde_json::to_vec_pretty(m).expect("manifest serialises");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    let linked = fs::hard_link(&tmp, &final_path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(CommitError::Exists { commit: m.commit })
        }
        Err(e) => return Err(io_err(&final_path)(e)),
    }
    sync_dir(&dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Found writing the commit-log fuzz property: a manifest whose
    /// `last_seq` is u64::MAX overflowed `last_seq + 1` (a panic in debug),
    /// and one whose receipts ran backwards was accepted.
    #[test]
    fn a_manifest_whose_receipts_are_not_a_range_is_refused() {
        let manifest = |commit, first_seq, last_seq| Manifest {
            commit,
            first_seq,
            last_seq,
            sealed_at: "2026-01-01T00:00:00Z".into(),
            writer: "test".into(),
            files: Vec::new(),
            counts: Counters::default(),
            totals: Counters::default(),
        };
        for log in [
            vec![manifest(1, 1, u64::MAX)],
            vec![manifest(1, 1, 12), manifest(2, 13, 5)],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().join(COMMITS_DIR);
            std::fs::create_dir_all(&d).unwrap();
            for m in &log {
                let path = manifest_path(dir.path(), m.commit);
                std::fs::write(path, serde_json::to_vec(m).unwrap()).unwrap();
            }
            let e = read_all(dir.path()).unwrap_err().to_string();
            assert!(e.contains("are not a range"), "{log:?}: {e}");
        }
    }

    use super::*;

    fn manifest(commit: u64, first_seq: u64, last_seq: u64) -> Manifest {
        Manifest {
            commit,
            first_seq,
            last_seq,
            sealed_at: "2022-07-25T00:00:00Z".into(),
            writer: "test".into(),
            files: Vec::new(),
            counts: Counters::default(),
            totals: Counters::default(),
        }
    }

    /// A long-lived reader parses each manifest once: what it read before is
    /// not read again (a manifest spoilt after it was read goes unnoticed
    /// by it, while a fresh read fails), and a log that is not the one it
    /// read is read from scratch.
    #[test]
    fn the_commit_log_is_read_incrementally() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        write(data, &manifest(1, 1, 10)).unwrap();
        write(data, &manifest(2, 11, 20)).unwrap();
        let mut log = CommitLog::default();
        assert_eq!(log.refresh(data).unwrap().len(), 2);
        fs::write(manifest_path(data, 1), b"spoilt").unwrap();
        write(data, &manifest(3, 21, 21)).unwrap();
        let m = log.refresh(data).unwrap();
        assert_eq!(m.iter().map(|m| m.commit).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(matches!(read_all(data), Err(CommitError::Bad { .. })));
        // A hole is found in what is new, too.
        write(data, &manifest(4, 30, 31)).unwrap();
        assert!(matches!(
            log.refresh(data),
            Err(CommitError::Discontinuous { commit: 4, .. })
        ));
        // Another log in its place: read again from the start.
        let other = tempfile::tempdir().unwrap();
        write(other.path(), &manifest(1, 1, 5)).unwrap();
        assert_eq!(log.refresh(other.path()).unwrap()[0].last_seq, 5);
    }
}
