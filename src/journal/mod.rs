//! Journal: the durable, append-only record of every delivered message.
//!
//! A message is acknowledged to the broker only after its journal record is
//! on disk (`fdatasync`), so the journal is what makes "nothing lost" true
//! between the broker and the sealed Parquet files. Records are appended in
//! batches and each batch is made durable with one `fdatasync` (group
//! commit). The journal also assigns the receipt sequence number: record N is
//! receipt N, contiguous across restarts.
//!
//! On disk: `DATA/journal/seg-<first seq, 20 digits>.log`, each a run of
//! records:
//!
//! ```text
//! u32 LE  body length
//! u32 LE  CRC-32C of body
//! body:   u64 LE seq | i64 LE received_at (µs UTC) | u16 LE topic length | topic | payload
//! ```
//!
//! Every commit starts on a 4 KiB boundary and ends with zero padding up to
//! the first boundary at least 8 bytes past its last record (a run of zeros
//! where a header would be; no record has body length 0), so the journal can
//! be written with `O_DIRECT` from one reused aligned buffer: no copy into
//! the page cache on the ack path, and no durable byte is ever written
//! twice. Where the filesystem refuses `O_DIRECT` (at open, or at a write
//! whose alignment it does not take), the same bytes go through the page
//! cache.
//!
//! A crash can leave a torn record at the end of the newest segment; opening
//! the journal truncates it (that message was never acknowledged, so the
//! broker delivers it again). Damage anywhere else is reported, never skipped.
//! Segments whose records are all in sealed Parquet files are deleted.
//!
//! The parts: `writer` (the append side, [`Journal`]), `segment` (reading
//! one segment's records and where its intact part ends) and `tail` (the
//! [`JournalTail`] the store reads from); this file has the format's
//! constants, the errors, and what works on the whole directory
//! (truncation behind a seal, counting what is not sealed).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::sync_dir;

mod segment;
mod tail;
mod writer;

use segment::scan_segment;
pub use tail::JournalTail;
pub use writer::Journal;

/// Bytes in a record header (length + CRC).
const HEADER_LEN: usize = 8;
/// Fixed part of a record body (seq + received_at + topic length).
const BODY_FIXED_LEN: usize = 18;
/// Largest body accepted when reading: MQTT's own maximum packet size.
const MAX_BODY_LEN: usize = 268_435_455 + BODY_FIXED_LEN + u16::MAX as usize;
/// A new segment is started once the active one exceeds this size, so that
/// truncation after sealing can free disk space in whole files.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Commits start on multiples of this (the `O_DIRECT` alignment).
const BLOCK: u64 = 4096;

/// Where the padding that follows a commit ending at `end` ends: the first
/// block boundary at least a header's length past it (so that padding always
/// reads as one all-zero header), or `end` itself on a boundary.
fn padded_end(end: u64) -> u64 {
    if end.is_multiple_of(BLOCK) {
        end
    } else {
        (end + HEADER_LEN as u64).div_ceil(BLOCK) * BLOCK
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error("journal I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `fdatasync` failed: what was written may not be on the disk, and
    /// after a failed fsync the kernel's state of the file is unknown, so
    /// this is never retried (the journal stops; the restart reads what is
    /// really there).
    #[error(
        "journal fdatasync of {path} failed: {source} (nothing of this commit was acknowledged)"
    )]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal segment {path} is damaged at byte {offset}: {what} (this is not the newest segment, so it is not a torn write; refusing to continue)")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("journal sequence broken in {path}: expected record {expected}, found {found}")]
    Sequence {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
}

impl JournalError {
    /// The disk (or the user's quota) is full: the commit can be retried
    /// as it is once there is room (its bytes are still in the buffer, and
    /// the journal's position did not move).
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, JournalError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One delivered message, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Receipt sequence number: 1, 2, 3, ... with no holes.
    pub seq: u64,
    /// Receive time, microseconds since the Unix epoch, UTC.
    pub received_at: i64,
    pub topic: String,
    pub payload: bytes::Bytes,
}

/// What opening the journal found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Records found intact.
    pub records: u64,
    /// Bytes of a torn tail record that were cut off, if any.
    pub truncated_bytes: u64,
}

/// Calls `f` for every intact record with `seq > after_seq`, in order.
/// A torn tail on the newest segment ends the replay (open() cuts it).
#[cfg(test)]
pub fn replay(
    dir: &Path,
    after_seq: u64,
    mut f: impl FnMut(JournalRecord) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    let segments = list_segments(dir)?;
    let mut n = 0;
    for (i, (first, path)) in segments.iter().enumerate() {
        // Skip segments entirely at or below after_seq.
        if let Some((next_first, _)) = segments.get(i + 1) {
            if *next_first <= after_seq + 1 {
                continue;
            }
        }
        let scan = scan_segment(path, *first, |rec| {
            if rec.seq > after_seq {
                n += 1;
                f(rec)?;
            }
            Ok(())
        })?;
        if let Some(bad) = scan.damage {
            if i + 1 != segments.len() {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset: scan.valid_len,
                    what: bad,
                });
            }
        }
    }
    Ok(n)
}

/// Deletes every segment whose records all have `seq <= sealed_through`.
/// The newest segment is never deleted (the writer may be appending to it).
pub(crate) fn truncate_through(dir: &Path, sealed_through: u64) -> Result<usize, JournalError> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = &pair[1];
        if *next_first <= sealed_through + 1 {
            fs::remove_file(path).map_err(io_err(path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Number of intact records in the journal with `seq > after_seq`, without
/// decoding payloads (used by `gapless stats`).
pub fn count_after(dir: &Path, after_seq: u64) -> Result<u64, JournalError> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut n = 0;
    for (first, path) in list_segments(dir)? {
        scan_segment(&path, first, |rec| {
            if rec.seq > after_seq {
                n += 1;
            }
            Ok(())
        })?;
    }
    Ok(n)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

fn segment_first_seq(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("seg-"))
        .and_then(|n| n.strip_suffix(".log"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let first = segment_first_seq(&path);
        if first > 0 {
            segs.push((first, path));
        }
    }
    segs.sort();
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    /// Writes `commits` (each its records' payloads, topic `t`) to a new
    /// journal in `dir`, and closes it.
    fn write_commits(dir: &Path, commits: &[&[&[u8]]]) {
        let (mut j, _) = Journal::open(dir, 1, DEFAULT_SEGMENT_BYTES).unwrap();
        for commit in commits {
            for payload in *commit {
                j.append(1, "t", payload);
            }
            j.commit().unwrap();
        }
    }

    /// Opens a journal with a torn tail: `kept` records survive, the torn
    /// bytes are cut, and a record appended after them is number
    /// `kept + 1`. Returns every record.
    fn repaired_then_appended(dir: &Path, kept: u64) -> Vec<JournalRecord> {
        let (mut j, rec) = Journal::open(dir, 1, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(rec.records, kept);
        assert!(rec.truncated_bytes > 0);
        assert_eq!(j.append(99, "t", b"again"), kept + 1);
        j.commit().unwrap();
        collect(dir, 0)
    }

    fn collect(dir: &Path, after: u64) -> Vec<JournalRecord> {
        let mut v = Vec::new();
        replay(dir, after, |r| {
            v.push(r);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn append_commit_replay_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, rec) = Journal::open(tmp.path(), 1, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(rec.records, 0);
        assert_eq!(j.append(10, "meters/a", b"one"), 1);
        assert_eq!(j.append(11, "meters/b", b""), 2);
        j.commit().unwrap();
        let got = collect(tmp.path(), 0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].topic, "meters/a");
        assert_eq!(&got[0].payload[..], b"one");
        assert_eq!(got[1].received_at, 11);
        assert_eq!(collect(tmp.path(), 1).len(), 1);
    }

    #[test]
    fn numbering_continues_across_reopen_and_segments() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut j, _) = Journal::open(tmp.path(), 1, 64).unwrap();
            for i in 0..10 {
                j.append(i, "t", &[b'x'; 30]);
                j.commit().unwrap();
            }
        }
        assert!(list_segments(tmp.path()).unwrap().len() > 1);
        let (mut j, rec) = Journal::open(tmp.path(), 1, 64).unwrap();
        assert_eq!(rec.records, 10);
        assert_eq!(j.append(99, "t", b"y"), 11);
        j.commit().unwrap();
        let all = collect(tmp.path(), 0);
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );
    }

    #[test]
    fn torn_tail_is_cut_and_numbering_reuses_the_lost_number() {
        let tmp = tempfile::tempdir().unwrap();
        write_commits(tmp.path(), &[&[b"first", b"second"]]);
        let (_, path) = list_segments(tmp.path()).unwrap().pop().unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            BLOCK,
            "one padded commit"
        );
        // Simulate a crash in the middle of writing the second record
        // (records of 8 + 18 + 1 + 5 and 8 + 18 + 1 + 6 bytes).
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(32 + 33 - 3)
            .unwrap();
        let all = repaired_then_appended(tmp.path(), 1);
        assert_eq!(&all[1].payload[..], b"again");
    }

    /// Four one-record commits in segments of their own; `change` edits the
    /// first segment's bytes; opening must refuse the journal.
    fn open_with_first_segment_changed(change: impl FnOnce(&mut [u8])) -> JournalError {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut j, _) = Journal::open(tmp.path(), 1, 40).unwrap();
            for i in 0..4 {
                j.append(i, "t", &[b'x'; 30]);
                j.commit().unwrap();
            }
        }
        let (_, first) = list_segments(tmp.path()).unwrap().remove(0);
        let mut bytes = fs::read(&first).unwrap();
        change(&mut bytes);
        fs::write(&first, bytes).unwrap();
        Journal::open(tmp.path(), 1, 40).err().unwrap()
    }

    #[test]
    fn flipped_byte_in_old_segment_is_an_error_not_a_skip() {
        let err = open_with_first_segment_changed(|b| b[HEADER_LEN + 20] ^= 0xff);
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn truncation_removes_only_fully_sealed_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1, 40).unwrap();
        for i in 0..6 {
            j.append(i, "t", &[b'x'; 30]);
            j.commit().unwrap();
        }
        let before = list_segments(tmp.path()).unwrap().len();
        truncate_through(tmp.path(), 3).unwrap();
        let remaining = collect(tmp.path(), 0);
        assert_eq!(remaining.first().unwrap().seq, 4);
        assert!(list_segments(tmp.path()).unwrap().len() < before);
        // Reopen after truncation: numbering continues.
        drop(j);
        let (j, _) = Journal::open(tmp.path(), 4, 40).unwrap();
        assert_eq!(j.next_seq(), 7);
    }

    #[test]
    fn tail_follows_the_writer_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1, 100).unwrap();
        let mut tail = JournalTail::new(tmp.path(), 3);
        let mut seen = Vec::new();
        for round in 0..4 {
            for i in 0..3 {
                j.append(round * 10 + i, "t", &[b'p'; 40]);
            }
            j.commit().unwrap();
            tail.read_through(j.next_seq() - 1, |r| seen.push(r.seq))
                .unwrap();
        }
        assert!(list_segments(tmp.path()).unwrap().len() > 2);
        assert_eq!(seen, (3..=12).collect::<Vec<_>>());
        assert_eq!(tail.next_seq(), 13);
        // Nothing new: nothing read.
        tail.read_through(12, |_| panic!("no record expected"))
            .unwrap();
    }

    #[test]
    fn padding_always_reads_as_a_whole_zero_header() {
        assert_eq!(padded_end(0), 0);
        assert_eq!(padded_end(BLOCK), BLOCK);
        assert_eq!(padded_end(1), BLOCK);
        assert_eq!(padded_end(BLOCK - 8), BLOCK);
        // Fewer than 8 bytes before the boundary: one more block.
        assert_eq!(padded_end(BLOCK - 7), 2 * BLOCK);
        assert_eq!(padded_end(BLOCK - 1), 2 * BLOCK);
    }

    /// Commits start on block boundaries, whatever their sizes (one ends 3
    /// bytes before a boundary), and the writer, a reopen and the tail read
    /// every record across the padding.
    #[test]
    fn commits_are_padded_to_blocks_and_read_across_the_padding() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1, DEFAULT_SEGMENT_BYTES).unwrap();
        let mut tail = JournalTail::new(tmp.path(), 1);
        let mut seen = Vec::new();
        // A record is 8 + 18 + 1 + payload bytes: 4093 ends 3 short of a block.
        for payload in [4093 - 27, 10, 5000, 4096 - 27] {
            j.append(1, "t", &vec![b'x'; payload]);
            j.commit().unwrap();
            let (_, path) = list_segments(tmp.path()).unwrap().pop().unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len() % BLOCK, 0);
            tail.read_through(j.next_seq() - 1, |r| seen.push(r.payload.len()))
                .unwrap();
        }
        assert_eq!(seen, [4093 - 27, 10, 5000, 4096 - 27]);
        let (_, path) = list_segments(tmp.path()).unwrap().pop().unwrap();
        // 4093 -> 2 blocks, 37 -> 1, 5027 -> 2, 4096 -> 1.
        assert_eq!(fs::metadata(&path).unwrap().len(), 6 * BLOCK);
        drop(j);
        let (j, rec) = Journal::open(tmp.path(), 1, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!((rec.records, rec.truncated_bytes), (4, 0));
        assert_eq!(j.next_seq(), 5);
        assert_eq!(collect(tmp.path(), 0).len(), 4);
    }

    /// A segment that ends off a block boundary (written before commits
    /// were padded, or cut after a torn record) is padded on open, and
    /// numbering continues in it.
    #[test]
    fn a_segment_ending_off_a_boundary_is_continued() {
        let tmp = tempfile::tempdir().unwrap();
        write_commits(tmp.path(), &[&[b"first"]]);
        let (_, path) = list_segments(tmp.path()).unwrap().pop().unwrap();
        // As an unpadded journal would have left it: the record alone.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(32)
            .unwrap();
        let (mut j, rec) = Journal::open(tmp.path(), 1, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!((rec.records, rec.truncated_bytes), (1, 0));
        assert_eq!(fs::metadata(&path).unwrap().len(), BLOCK);
        assert_eq!(j.append(2, "t", b"second"), 2);
        j.commit().unwrap();
        assert_eq!(list_segments(tmp.path()).unwrap().len(), 1);
        let all = collect(tmp.path(), 0);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_non_zero_byte_in_the_padding_of_an_old_segment_is_an_error() {
        // The record is 8 + 18 + 1 + 30 bytes: byte 100 is padding.
        let err = open_with_first_segment_changed(|b| b[100] = 1);
        assert!(err.to_string().contains("padding"), "{err}");
    }

    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        // The refusal comes from the filesystem: ext4, xfs and btrfs refuse
        // an unaligned O_DIRECT write (a tmpfs may take it, or take no
        // O_DIRECT at all). $TMPDIR if it is one of them, else a directory
        // beside the build (the gitignored `target/`).
        let refuses_unaligned = |d: &Path| {
            std::process::Command::new("stat")
                .args(["-f", "-c", "%T"])
                .arg(d)
                .output()
                .is_ok_and(|o| {
                    let t = String::from_utf8_lossy(&o.stdout);
                    ["ext2/ext3", "xfs", "btrfs"].contains(&t.trim())
                })
        };
        let beside_build = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&beside_build).unwrap();
        let dir = [std::env::temp_dir(), beside_build]
            .into_iter()
            .find(|d| refuses_unaligned(d))
            .expect(
                "neither $TMPDIR nor target/ is on ext4, xfs or btrfs, whose refusal of an \
                 unaligned O_DIRECT write this test needs: point TMPDIR at a directory on one",
            );
        let tmp = tempfile::tempdir_in(dir).unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1, DEFAULT_SEGMENT_BYTES).unwrap();
        assert!(j.is_direct(), "{} takes no O_DIRECT", tmp.path().display());
        j.set_segment_len(100);
        j.append(1, "t", b"one");
        j.commit().unwrap();
        assert!(!j.is_direct());
        let bytes = fs::read(j.position().0).unwrap();
        assert_eq!(bytes.len() as u64, 100 + BLOCK);
        assert_eq!(&bytes[100 + HEADER_LEN + BODY_FIXED_LEN + 1..][..3], b"one");
    }

    /// A power cut can leave a commit with some blocks on disk and not
    /// others: zeros where record 4 was, read as padding, then record 5.
    /// That is a torn tail (cut, and numbering goes on from 4), not a
    /// broken sequence that stops the service.
    #[test]
    fn a_commit_with_a_block_missing_is_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        // Commit at 8192: record 3 of 100 bytes, record 4 up to the block
        // boundary at 12288, record 5 after it.
        write_commits(
            tmp.path(),
            &[
                &[b"a"],
                &[b"b"],
                &[&[b'c'; 100 - 27], &[b'd'; 4096 - 100 - 27], b"e"],
            ],
        );
        let (_, path) = list_segments(tmp.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[8192 + 100..12288].fill(0);
        fs::write(&path, bytes).unwrap();
        let all = repaired_then_appended(tmp.path(), 3);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(&all[3].payload[..], b"again");
    }

    /// Records taken from memory are jumped over: the tail goes on at the
    /// position the writer gave after that commit, in the same segment or
    /// (after a rotation) at the start of the next.
    #[test]
    fn tail_jumps_over_commits_taken_from_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1, 3 * BLOCK).unwrap();
        let mut tail = JournalTail::new(tmp.path(), 1);
        let mut seen = Vec::new();
        for round in 0..6u64 {
            j.append(round as i64, "t", &[b'p'; 3000]);
            j.append(round as i64, "t", &[b'q'; 10]);
            j.commit().unwrap();
            if round % 2 == 0 {
                // Taken from memory: the file is not read.
                let (path, offset) = j.position();
                tail.jump(path, offset, j.next_seq());
            } else {
                tail.read_through(j.next_seq() - 1, |r| seen.push(r.seq))
                    .unwrap();
            }
        }
        assert!(list_segments(tmp.path()).unwrap().len() > 2, "rotated");
        assert_eq!(seen, [3, 4, 7, 8, 11, 12]);
        assert_eq!(tail.next_seq(), 13);
    }

    #[test]
    fn empty_journal_starts_after_sealed_receipts() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(tmp.path(), 501, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(j.next_seq(), 501);
    }
}
