//! Snapshots of the ingest stage: its whole state, checksummed and named by
//! the commit it reflects, so that a start reads one file and the commits
//! after it instead of every sealed file.
//!
//! ```text
//! DATA/_state/snapshots/ingest-<commit, 12 digits>.snap
//!   "GAPLESS-INGEST-SNAPSHOT\n"   magic (24 bytes)
//!   u32 version                   FORMAT_VERSION
//!   u64 fingerprint               of the rules the state was judged by
//!   u64 commit, u64 sealed_through
//!   u64 body length, body         series ends, live continuity, alert seeds
//!   u32 CRC-32C of the body
//! ```
//!
//! A snapshot is written right after a seal (the batch is empty), at most
//! every [`SNAPSHOT_EVERY`] and at a clean stop, through the atomic writer.
//! One that is missing, corrupt, of another format or of other rules is
//! skipped (logged), and the state is rebuilt from the sealed files: never
//! a wrong state. Snapshots are derived state, not records: `audit verify`
//! ignores them, and deleting them only makes the next start slower.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::alerts::engine::AlertEngine;
use super::dedup::SeriesIndex;
use crate::codec::{CodecError, Dec, Enc};
use crate::continuity::live::LiveEngine;
use crate::continuity::Context;
use crate::layout::{write_atomic, LayoutError};

const MAGIC: &[u8; 24] = b"GAPLESS-INGEST-SNAPSHOT\n";
/// Bumped whenever the body's layout changes: an older file is rebuilt.
pub const FORMAT_VERSION: u32 = 3;
/// Snapshots are written at most this often (and at a clean stop).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Snapshots kept (the newest; an older one serves if the newest is bad).
const KEEP: usize = 2;

/// Why a snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Write(#[from] LayoutError),
}

/// What a snapshot holds.
pub struct State {
    pub commit: u64,
    pub sealed_through: u64,
    pub series: SeriesIndex,
    pub live: LiveEngine,
    /// (meter, latest reading, silence due in s, fixed).
    pub seeds: Vec<(String, i64, u32, bool)>,
}

/// The rules a state was judged by: a snapshot judged by other rules is
/// not this configuration's state.
pub fn fingerprint(ctx: &Context, alerts: &super::alerts::AlertConfig) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{ctx:?}\u{0}{alerts:?}").as_bytes())
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(crate::layout::SNAPSHOTS_DIR)
}

fn name(commit: u64) -> String {
    format!("ingest-{commit:012}.snap")
}

/// The state's bytes (body only).
pub fn encode_body(series: &SeriesIndex, live: &LiveEngine, alerts: &AlertEngine) -> Vec<u8> {
    let mut e = Enc::default();
    series.encode(&mut e);
    live.encode(&mut e);
    let mut seeds = alerts.seeds();
    seeds.sort_unstable_by(|a, b| a.0.cmp(b.0));
    e.len(seeds.len());
    for (m, last, after, fixed) in seeds {
        e.str(m);
        e.i64(last);
        e.u32(after);
        e.bool(fixed);
    }
    e.buf
}

/// Writes the snapshot of `commit` and removes all but the newest
/// [`KEEP`]. Returns its path and size.
pub fn write(
    state_dir: &Path,
    fingerprint: u64,
    commit: u64,
    sealed_through: u64,
    body: &[u8],
) -> Result<(PathBuf, u64), SnapshotError> {
    let d = dir(state_dir);
    fs::create_dir_all(&d).map_err(|source| SnapshotError::Read {
        path: d.clone(),
        source,
    })?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&commit.to_le_bytes());
    out.extend_from_slice(&sealed_through.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let path = d.join(name(commit));
    write_atomic(&path, &out)?;
    for (_, old) in list(state_dir).into_iter().rev().skip(KEEP) {
        let _ = fs::remove_file(old);
    }
    Ok((path, out.len() as u64))
}

/// Snapshot files by commit, oldest first.
pub fn list(state_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let c = n
                .strip_prefix("ingest-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()?;
            Some((c, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path, fingerprint: u64, ctx: &Context) -> Result<State, SnapshotError> {
    let bytes = fs::read(path).map_err(|source| SnapshotError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |why: &str| SnapshotError::Invalid {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if bytes.len() < 24 + 4 + 8 * 4 + 4 || &bytes[..24] != MAGIC {
        return Err(invalid("not a snapshot"));
    }
    let mut h = Dec::new(&bytes[24..]);
    let version = h.u32()?;
    if version != FORMAT_VERSION {
        return Err(invalid(&format!(
            "format {version}, this gapless writes {FORMAT_VERSION}"
        )));
    }
    if h.u64()? != fingerprint {
        return Err(invalid(
            "judged by other rules (configuration or registry changed)",
        ));
    }
    let commit = h.u64()?;
    let sealed_through = h.u64()?;
    let len = h.u64()? as usize;
    let start: usize = 24 + 4 + 8 * 4;
    let body = bytes
        .get(start..start.saturating_add(len))
        .filter(|_| bytes.len() == start + len + 4)
        .ok_or_else(|| invalid("truncated"))?;
    let crc = u32::from_le_bytes(bytes[start + len..].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(invalid("checksum mismatch (corrupt)"));
    }
    let mut d = Dec::new(body);
    let series = SeriesIndex::decode(&mut d)?;
    let live = LiveEngine::decode(ctx.config.clone(), ctx.registry.clone(), &mut d)?;
    let n = d.len(21)?;
    let mut seeds = Vec::with_capacity(n);
    for _ in 0..n {
        seeds.push((d.str()?.to_owned(), d.i64()?, d.u32()?, d.bool()?));
    }
    if !d.is_done() {
        return Err(invalid("bytes after the state"));
    }
    Ok(State {
        commit,
        sealed_through,
        series,
        live,
        seeds,
    })
}
