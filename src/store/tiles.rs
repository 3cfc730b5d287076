//! The ledger as a C2SP `tlog-tiles` static log, written beside the entry
//! and checkpoint files, so that any static file server or object store
//! can serve it and standard transparency-log tools can read it:
//!
//! ```text
//! DATA/_ledger/tlog/checkpoint                       the newest checkpoint (C2SP signed note)
//! DATA/_ledger/tlog/tile/<L>/<N>[.p/<W>]             hash tiles: 256 hashes of 32 bytes (W if partial)
//! DATA/_ledger/tlog/tile/entries/<N>[.p/<W>]         entry bundles: per entry u16 BE length ‖ entry bytes
//! ```
//!
//! `<N>` is the tile index in 3-digit groups, all but the last prefixed
//! `x` (`x001/x234/067`). Level-0 hashes are the ledger's leaf hashes
//! (`LH(entry bytes)`); a level-l hash is the Merkle tree hash of a full
//! tile of level l−1. The tiles are derived from the entries (rebuilt from
//! them when `tlog/checkpoint` is missing or does not fit): a verifier
//! never needs them, a standard client can use them. After each checkpoint
//! the tiles it needs are written (temporary file, rename), then
//! `tlog/checkpoint`; a partial tile is removed once a wider one or the
//! full one replaces it (clients of an older checkpoint fetch the newer
//! tiles, which prove the same hashes).

use std::fs;
use std::path::{Path, PathBuf};

use super::canonical::{leaf_hash, merkle_root, Hash};

use crate::layout::TLOG_DIR;

/// Hashes in a full tile (tile height 8).
const WIDTH: u64 = 256;

/// Why the tiles could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("tlog tiles I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tlog tiles: {0}")]
    Bad(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TilesError + '_ {
    move |source| TilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `x001/x234/067` for 1234067.
fn index_path(mut n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    while n >= 1000 {
        n /= 1000;
        s = format!("x{:03}/{s}", n % 1000);
    }
    s
}

/// The path of tile `n` of `level` ("entries" for bundles), `width` wide,
/// relative to the tlog directory.
pub(crate) fn tile_path(level: &str, n: u64, width: u64) -> String {
    if width == WIDTH {
        format!("tile/{level}/{}", index_path(n))
    } else {
        format!("tile/{level}/{}.p/{width}", index_path(n))
    }
}

/// Writes a tile: temporary file, rename. Removes the partial tiles of the
/// same index that it replaces.
fn write_tile(dir: &Path, level: &str, n: u64, width: u64, bytes: &[u8]) -> Result<(), TilesError> {
    let path = dir.join(tile_path(level, n, width));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("tile")
    ));
    fs::write(&tmp, bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    let partials = dir.join(format!("tile/{level}/{}.p", index_path(n)));
    if width == WIDTH {
        let _ = fs::remove_dir_all(&partials);
    } else if let Ok(rd) = fs::read_dir(&partials) {
        for e in rd.flatten() {
            let keep = e.file_name().to_str() == Some(&width.to_string());
            if !keep && !e.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// The tree size of the published checkpoint, if any.
fn published_size(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("checkpoint")).ok()?;
    text.split('\n').nth(1)?.parse().ok()
}

/// Brings the tiles of `ledger_dir/tlog` up to a tree of `size` entries
/// and publishes `checkpoint` (the signed note of that tree). `entry(i)`
/// reads the bytes of entry i; its errors are passed on as they are.
pub fn publish<E: From<TilesError>>(
    ledger_dir: &Path,
    size: u64,
    checkpoint: &str,
    entry: &dyn Fn(u64) -> Result<Vec<u8>, E>,
) -> Result<(), E> {
    let dir = ledger_dir.join(TLOG_DIR);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let old = published_size(&dir).filter(|&o| o <= size).unwrap_or(0);
    if old == size && size > 0 {
        return Ok(write_checkpoint(&dir, checkpoint)?);
    }
    // Level 0 and the entry bundles: the tiles from the one `old` ends in.
    let mut n = old / WIDTH;
    while n * WIDTH < size {
        let (lo, hi) = (n * WIDTH, ((n + 1) * WIDTH).min(size));
        let mut hashes = Vec::with_capacity(((hi - lo) * 32) as usize);
        let mut bundle = Vec::new();
        for i in lo..hi {
            let bytes = entry(i)?;
            let len = u16::try_from(bytes.len()).map_err(|_| {
                TilesError::Bad(format!(
                    "entry {i} is {} bytes: an entry bundle holds at most 65535",
                    bytes.len()
                ))
            })?;
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(&bytes);
            hashes.extend_from_slice(&leaf_hash(&bytes));
        }
        write_tile(&dir, "entries", n, hi - lo, &bundle)?;
        write_tile(&dir, "0", n, hi - lo, &hashes)?;
        n += 1;
    }
    // Levels 1…: each hash is the tree hash of a full tile below.
    let mut level = 1u32;
    while size >> (8 * level) > 0 {
        let count = size >> (8 * level);
        let mut n = (old >> (8 * level)) / WIDTH;
        while n * WIDTH < count {
            let (lo, hi) = (n * WIDTH, ((n + 1) * WIDTH).min(count));
            let mut hashes = Vec::with_capacity(((hi - lo) * 32) as usize);
            for i in lo..hi {
                let below = dir.join(tile_path(&(level - 1).to_string(), i, WIDTH));
                let bytes = fs::read(&below).map_err(io(&below))?;
                let leaves: Vec<Hash> = bytes
                    .chunks_exact(32)
                    .map(|c| c.try_into().unwrap_or([0; 32]))
                    .collect();
                if leaves.len() as u64 != WIDTH {
                    return Err(
                        TilesError::Bad(format!("{} is not a full tile", below.display())).into(),
                    );
                }
                hashes.extend_from_slice(&merkle_root(&leaves));
            }
            write_tile(&dir, &level.to_string(), n, hi - lo, &hashes)?;
            n += 1;
        }
        level += 1;
    }
    Ok(write_checkpoint(&dir, checkpoint)?)
}

fn write_checkpoint(dir: &Path, checkpoint: &str) -> Result<(), TilesError> {
    let path: PathBuf = dir.join("checkpoint");
    let tmp = dir.join(".checkpoint.tmp");
    fs::write(&tmp, checkpoint).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::{AuditKey, Ledger, LedgerEntry};

    #[test]
    fn tile_paths_are_c2sp() {
        assert_eq!(tile_path("0", 1234067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path("4", 1234067, 1), "tile/4/x001/x234/067.p/1");
        assert_eq!(tile_path("entries", 5, 17), "tile/entries/005.p/17");
        assert_eq!(tile_path("1", 1000, 256), "tile/1/x001/000");
    }

    fn entry(i: u64) -> LedgerEntry {
        LedgerEntry {
            index: i,
            table: "readings".into(),
            path: format!("readings/date=2022-07-25/part-{i:010}.parquet"),
            size: 100 + i,
            sha256: hex::encode(leaf_hash(&i.to_be_bytes())),
            rows: i,
            row_root: hex::encode(leaf_hash(&i.to_le_bytes())),
            min_time: None,
            max_time: None,
            min_receipt_seq: Some(i),
            max_receipt_seq: Some(i),
            schema_version: "2".into(),
            writer: "test".into(),
            sealed_at: "2022-07-25T00:00:00Z".into(),
            commit: Some(i),
        }
    }

    /// Read by an implementation we did not write: the `tlog_tiles` crate
    /// (Cloudflare's port of Go's sumdb/tlog) parses our checkpoint, reads
    /// our tiles through its tile hash reader (which authenticates every
    /// tile against the checkpoint's root), computes the tree hash, and
    /// proves and checks inclusion of entries and consistency between
    /// checkpoints; our entry bundles hash to its level-0 hashes. Sizes
    /// cross tile boundaries at levels 0 and 1, and the tiles grow over
    /// several checkpoints (partial tiles replaced).
    #[test]
    fn tlog_tiles_reads_our_checkpoint_tiles_and_proofs() {
        use tlog_tiles::{
            check_record, check_tree, prove_record, prove_tree, record_hash, tree_hash, Checkpoint,
            Hash as TH, HashReader, Tile, TileHashReader, TileReader,
        };
        struct Files(PathBuf);
        impl TileReader for Files {
            fn height(&self) -> u8 {
                8
            }
            fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
                tiles
                    .iter()
                    .map(|t| {
                        // The crate writes Go's paths, with the height:
                        // tile/8/L/N; C2SP's drop it: tile/L/N.
                        let p = t.path().replacen("tile/8/", "tile/", 1);
                        fs::read(self.0.join(&p)).map_err(|_| tlog_tiles::Error::InvalidTile)
                    })
                    .collect()
            }
            fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
        }
        let tmp = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(tmp.path()).unwrap();
        let key = AuditKey::from_hex(&"07".repeat(32)).unwrap();
        let verifier = key.verifier();
        let tlog = tmp.path().join("_ledger").join(TLOG_DIR);
        let mut sizes = Vec::new();
        let mut w = ledger.writer().unwrap();
        for target in [1u64, 255, 256, 257, 600, 65_536 / 64, 1100] {
            while w.next_index() < target {
                w.append(&entry(w.next_index())).unwrap();
            }
            w.checkpoint(&key).unwrap();
            sizes.push(target);
            let text = fs::read_to_string(tlog.join("checkpoint")).unwrap();
            // Ours verifies it; theirs parses its body.
            let ours = verifier.verify(&text).unwrap();
            let (body, _) = text.split_once("\n\n").unwrap();
            let theirs = Checkpoint::from_bytes(format!("{body}\n").as_bytes()).unwrap();
            assert_eq!((theirs.size(), theirs.hash().0), (ours.size, ours.root));
            assert_eq!(theirs.origin(), key.name);
            let files = Files(tlog.clone());
            let reader = TileHashReader::new(target, *theirs.hash(), &files);
            assert_eq!(tree_hash(target, &reader).unwrap(), *theirs.hash());
            for n in [0, target / 2, target - 1] {
                let proof = prove_record(target, n, &reader).unwrap();
                let leaf = record_hash(&entry(n).to_bytes());
                check_record(&proof, target, *theirs.hash(), n, leaf).unwrap();
                assert!(check_record(&proof, target, *theirs.hash(), n, TH([9; 32])).is_err());
            }
            for &old in &sizes {
                let old_root = tree_hash(old, &reader).unwrap();
                let proof = prove_tree(target, old, &reader).unwrap();
                check_tree(&proof, target, *theirs.hash(), old, old_root).unwrap();
            }
            // Entry bundles: u16 length-prefixed entries, hashing to level 0.
            let full = target / 256;
            let last = if target % 256 == 0 {
                tile_path("entries", full - 1, 256)
            } else {
                tile_path("entries", full, target % 256)
            };
            let bundle = fs::read(tlog.join(last)).unwrap();
            let first_index = if target % 256 == 0 {
                (full - 1) * 256
            } else {
                full * 256
            };
            let (mut at, mut i) = (0usize, first_index);
            while at < bundle.len() {
                let len = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
                let e = &bundle[at + 2..at + 2 + len];
                assert_eq!(e, entry(i).to_bytes().as_slice());
                let stored = reader
                    .read_hashes(&[tlog_tiles::stored_hash_index(0, i)])
                    .unwrap();
                assert_eq!(stored[0], record_hash(e));
                at += 2 + len;
                i += 1;
            }
            assert_eq!(i, target);
        }
        // Partial tiles that a wider one replaced are gone; a full tile
        // left no partial behind.
        assert!(!tlog.join("tile/0/000.p").exists());
        assert!(tlog.join("tile/0/004.p/76").exists());
        assert_eq!(fs::read_dir(tlog.join("tile/0/004.p")).unwrap().count(), 1);
        // Rebuilt from the entries when the published checkpoint is gone.
        let before = fs::read(tlog.join("tile/1/000.p/4")).unwrap();
        fs::remove_dir_all(&tlog).unwrap();
        w.checkpoint(&key).unwrap();
        assert_eq!(fs::read(tlog.join("tile/1/000.p/4")).unwrap(), before);
    }
}
