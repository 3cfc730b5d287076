//! The tail the store reads from: follows the writer across segments.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::segment::{read_record, Next};
use super::*;

/// Follows the journal from a given receipt on, reading records as the
/// writer makes them durable. The store stage reads through this, so acks
/// never wait for decoding or Parquet, and the records it has not yet
/// sealed live on disk, not in memory. (The writer uses `O_DIRECT`, so what
/// the tail reads comes from the disk; the store takes the commits it keeps
/// up with from memory instead, and [`JournalTail::jump`]s past them.)
pub struct JournalTail {
    dir: PathBuf,
    next_seq: u64,
    /// The open segment, its path, and how far into it we have read.
    segment: Option<(PathBuf, BufReader<File>, u64)>,
    /// Where to open once a read is needed, after a [`JournalTail::jump`].
    resume_at: Option<(PathBuf, u64)>,
    body: Vec<u8>,
}

impl JournalTail {
    /// A tail that will yield records from `from_seq` on.
    pub fn new(dir: &Path, from_seq: u64) -> JournalTail {
        JournalTail {
            dir: dir.to_owned(),
            next_seq: from_seq.max(1),
            segment: None,
            resume_at: None,
            body: Vec::new(),
        }
    }

    /// Moves past records taken some other way (from memory): the next
    /// record is `next_seq`, at `offset` in segment `path` (a
    /// [`Journal::position`] taken after the commit that wrote the records
    /// before it). Nothing is read until a read needs it.
    pub(crate) fn jump(&mut self, path: PathBuf, offset: u64, next_seq: u64) {
        self.next_seq = next_seq;
        self.segment = None;
        self.resume_at = Some((path, offset));
    }

    /// The sequence number of the next record this tail yields.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Calls `f` for each record from `next_seq` through `durable` (which
    /// the writer has made durable, so every one of them must be whole).
    pub fn read_through(
        &mut self,
        durable: u64,
        mut f: impl FnMut(JournalRecord),
    ) -> Result<(), JournalError> {
        while self.next_seq <= durable {
            if self.segment.is_none() {
                self.segment = Some(match self.resume_at.take() {
                    Some((path, offset)) => {
                        use std::io::{Seek, SeekFrom};
                        let mut file = File::open(&path).map_err(io_err(&path))?;
                        file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
                        (path, BufReader::with_capacity(1 << 20, file), offset)
                    }
                    None => self.open_segment()?,
                });
            }
            let Some((path, reader, at)) = &mut self.segment else {
                unreachable!("opened above")
            };
            // Durable records are whole: anything short is damage.
            match read_record(reader, *at, u64::MAX, &mut self.body) {
                Ok(Next::Padding(n)) => *at += n,
                Ok(Next::Record(rec, n)) => {
                    *at += n;
                    if rec.seq < self.next_seq {
                        continue; // skipping to the start point in a segment
                    }
                    if rec.seq != self.next_seq {
                        return Err(JournalError::Sequence {
                            path: path.clone(),
                            expected: self.next_seq,
                            found: rec.seq,
                        });
                    }
                    self.next_seq += 1;
                    f(rec);
                }
                Ok(Next::End) => unreachable!("read_record with bytes left never ends"),
                Ok(Next::Damaged(what)) => {
                    return Err(JournalError::Corrupt {
                        path: path.clone(),
                        offset: 0,
                        what,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // End of this segment: the writer moved on to the next.
                    let next = segment_path(&self.dir, self.next_seq);
                    if next == *path {
                        return Err(JournalError::Corrupt {
                            path: path.clone(),
                            offset: 0,
                            what: format!("record {} is durable but missing", self.next_seq),
                        });
                    }
                    self.segment = None;
                    let file = File::open(&next).map_err(io_err(&next))?;
                    self.segment = Some((next, BufReader::with_capacity(1 << 20, file), 0));
                }
                Err(e) => return Err(io_err(path)(e)),
            }
        }
        Ok(())
    }

    /// Opens the segment that holds `next_seq`.
    fn open_segment(&self) -> Result<(PathBuf, BufReader<File>, u64), JournalError> {
        let segments = list_segments(&self.dir)?;
        let (_, path) = segments
            .iter()
            .rev()
            .find(|(first, _)| *first <= self.next_seq)
            .cloned()
            .ok_or_else(|| JournalError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                what: format!("no segment holds record {}", self.next_seq),
            })?;
        let file = File::open(&path).map_err(io_err(&path))?;
        Ok((path, BufReader::with_capacity(1 << 20, file), 0))
    }
}
