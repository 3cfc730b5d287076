//! The append side: encodes records into an aligned batch, writes each
//! commit (with `O_DIRECT` where the filesystem takes it) and makes it
//! durable with one fdatasync; opening repairs a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::*;

/// The pending batch, encoded in a vector whose bytes from `start` on begin
/// on a block boundary: what `O_DIRECT` needs, so `commit` writes them as
/// they are, without copying them into another buffer. No unsafe
/// allocation: the aligned window is found inside an ordinary vector, and
/// moved when the vector grows (rarely: its memory is kept across commits).
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn with_capacity(capacity: usize) -> AlignedBuf {
        let mut b = AlignedBuf {
            mem: Vec::with_capacity(capacity + BLOCK as usize),
            start: 0,
        };
        b.realign();
        b
    }

    fn len(&self) -> usize {
        self.mem.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..]
    }

    fn extend(&mut self, b: &[u8]) {
        if self.mem.len() + b.len() > self.mem.capacity() {
            // Room for the bytes and for moving the window to alignment.
            self.mem.reserve(b.len() + BLOCK as usize);
            self.realign();
        }
        self.mem.extend_from_slice(b);
    }

    /// Zeros up to `len` bytes in all.
    fn pad_to(&mut self, len: usize) {
        let zeros = len.saturating_sub(self.len());
        if self.mem.len() + zeros > self.mem.capacity() {
            self.mem.reserve(zeros + BLOCK as usize);
            self.realign();
        }
        self.mem.resize(self.start + len, 0);
    }

    fn clear(&mut self) {
        self.mem.truncate(self.start);
    }

    /// Moves the window to where the vector's memory is block-aligned.
    fn realign(&mut self) {
        let want = self.mem.as_ptr().align_offset(BLOCK as usize);
        if want == self.start {
            return;
        }
        let len = self.len();
        if want > self.start {
            self.mem.resize(want + len, 0);
        }
        self.mem.copy_within(self.start..self.start + len, want);
        self.mem.truncate(want + len);
        self.start = want;
    }
}

/// How a filesystem says no to `O_DIRECT` (at open, or at a write whose
/// alignment it does not take).
fn refuses_direct(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

/// Opens a segment for writing, with `O_DIRECT` where the filesystem takes
/// it. Returns the file and whether it is direct.
fn open_for_writing(path: &Path) -> Result<(File, bool), JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).write(true);
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if refuses_direct(&e) => {
            let f = o.open(path).map_err(io_err(path))?;
            Ok((f, false))
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The append side of the journal. Owned by exactly one thread.
pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// Where the next commit goes: the segment's length, on a block boundary.
    segment_len: u64,
    max_segment_bytes: u64,
    next_seq: u64,
    /// Encoded records not yet written; `commit` writes and syncs them
    /// (aligned, and reused, so the kernel never has to find fresh pages
    /// for it).
    buf: AlignedBuf,
    /// The segment is open with `O_DIRECT`.
    direct: bool,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, repairing a torn tail.
    /// `min_next_seq` is one past the last receipt already sealed in Parquet:
    /// numbering never goes below it, even when every segment was deleted.
    pub fn open(
        dir: &Path,
        min_next_seq: u64,
        max_segment_bytes: u64,
    ) -> Result<(Journal, Recovery), JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let segments = list_segments(dir)?;
        let mut recovery = Recovery::default();
        let mut next_seq = min_next_seq.max(1);
        // (path, intact length, first seq, records) of the newest segment
        let mut last: Option<(PathBuf, u64, u64, u64)> = None;
        for (i, (first, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let scan = scan_segment(path, *first, |_| Ok(()))?;
            recovery.records += scan.records;
            if let Some(bad) = scan.damage {
                if !is_last {
                    return Err(JournalError::Corrupt {
                        path: path.clone(),
                        offset: scan.valid_len,
                        what: bad,
                    });
                }
                let len = fs::metadata(path).map_err(io_err(path))?.len();
                recovery.truncated_bytes = len - scan.valid_len;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(scan.valid_len).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                tracing::warn!(
                    segment = %path.display(),
                    cut_bytes = recovery.truncated_bytes,
                    "journal: cut a torn record at the tail (never acknowledged; the broker redelivers it)"
                );
            }
            if scan.records > 0 {
                next_seq = next_seq.max(first + scan.records);
            }
            if is_last {
                last = Some((path.clone(), scan.valid_len, *first, scan.records));
            }
        }
        let (path, segment_len) = match last {
            // Keep appending to the newest segment only if numbering continues in it.
            Some((path, len, first, records)) if first + records == next_seq => (path, len),
            _ => {
                let path = segment_path(dir, next_seq);
                (path, 0)
            }
        };
        let (file, direct) = open_for_writing(&path)?;
        // The next commit starts on a block boundary: a segment that ends
        // elsewhere (written before commits were padded, or cut after a
        // torn record) gets its padding first.
        let segment_len = if segment_len.is_multiple_of(BLOCK) {
            segment_len
        } else {
            let padded = padded_end(segment_len);
            file.set_len(padded).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            padded
        };
        sync_dir(dir)?;
        Ok((
            Journal {
                dir: dir.to_owned(),
                file,
                path,
                segment_len,
                max_segment_bytes,
                next_seq,
                buf: AlignedBuf::with_capacity(1 << 20),
                direct,
            },
            recovery,
        ))
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Encodes a record into the pending batch and returns its sequence
    /// number. Nothing is durable until `commit` returns.
    pub fn append(&mut self, received_at: i64, topic: &str, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
        let body_len = BODY_FIXED_LEN + topic.len() + payload.len();
        let start = self.buf.len();
        self.buf.extend(&(body_len as u32).to_le_bytes());
        self.buf.extend(&[0; 4]);
        self.buf.extend(&seq.to_le_bytes());
        self.buf.extend(&received_at.to_le_bytes());
        self.buf.extend(&(topic.len() as u16).to_le_bytes());
        self.buf.extend(topic);
        self.buf.extend(payload);
        let crc = crc32c::crc32c(&self.buf.bytes()[start + HEADER_LEN..]);
        self.buf.bytes_mut()[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        seq
    }

    /// Bytes appended but not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes the pending batch and its padding straight from its aligned
    /// buffer,
    /// and makes it durable with one `fdatasync` (which also persists the
    /// file's new length). Starts a new segment afterwards when the active
    /// one is full.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        use std::os::unix::fs::FileExt;
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = padded_end(self.buf.len() as u64) as usize;
        self.buf.pad_to(end);
        let at = self.segment_len;
        match self.file.write_all_at(self.buf.bytes(), at) {
            // A filesystem that took O_DIRECT at open but refuses these
            // writes (a stricter alignment): go through the page cache. What
            // the failed try wrote was never acknowledged; it is rewritten.
            Err(e) if self.direct && refuses_direct(&e) => {
                tracing::warn!(
                    segment = %self.path.display(),
                    error = %e,
                    "journal: O_DIRECT writes refused; writing through the page cache"
                );
                self.file = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(io_err(&self.path))?;
                self.direct = false;
                self.file.write_all_at(self.buf.bytes(), at)
            }
            r => r,
        }
        .map_err(io_err(&self.path))?;
        self.sync().map_err(|source| JournalError::Sync {
            path: self.path.clone(),
            source,
        })?;
        self.segment_len = at + end as u64;
        self.buf.clear();
        if self.segment_len >= self.max_segment_bytes {
            // The commit is durable; a failure from here on leaves the
            // journal consistent (still the full segment, or the new one),
            // so that a retried commit continues correctly.
            let path = segment_path(&self.dir, self.next_seq);
            (self.file, self.direct) = open_for_writing(&path)?;
            self.path = path;
            self.segment_len = 0;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// `fdatasync` of the active segment (or the fault seam's EIO).
    fn sync(&self) -> io::Result<()> {
        if crate::fault::strikes(crate::fault::Point::JournalFsync) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.sync_data()
    }

    /// Moves where the next commit goes (a test seam: a segment that
    /// ends off a block boundary).
    #[cfg(test)]
    pub(super) fn set_segment_len(&mut self, len: u64) {
        self.segment_len = len;
    }

    /// Whether the active segment is written with `O_DIRECT`.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Where the next record will be: its segment and offset. After a
    /// commit, that is just past everything committed (see
    /// [`JournalTail::jump`]).
    pub fn position(&self) -> (PathBuf, u64) {
        (self.path.clone(), self.segment_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pending batch keeps its bytes, and keeps them on a block
    /// boundary, however often its vector grows.
    #[test]
    fn the_pending_batch_stays_aligned_as_it_grows() {
        let aligned = |b: &AlignedBuf| (b.bytes().as_ptr() as usize).is_multiple_of(BLOCK as usize);
        let mut b = AlignedBuf::with_capacity(1);
        let mut expect = Vec::new();
        for i in 0..50_000u32 {
            b.extend(&i.to_le_bytes());
            expect.extend_from_slice(&i.to_le_bytes());
            assert!(aligned(&b));
        }
        assert_eq!(b.bytes(), &expect[..]);
        b.pad_to(b.len() + 5000);
        assert!(aligned(&b));
        assert_eq!(&b.bytes()[..expect.len()], &expect[..]);
        assert!(b.bytes()[expect.len()..].iter().all(|&x| x == 0));
        b.clear();
        assert!(b.is_empty() && aligned(&b));
    }
}
