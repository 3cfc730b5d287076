//! Reading one segment: its records in order, the padding between
//! commits, and where (and why) the intact part ends.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::*;

pub(super) struct Scan {
    pub(super) records: u64,
    pub(super) valid_len: u64,
    pub(super) damage: Option<String>,
}

/// What reading one record found.
pub(super) enum Next {
    /// A record, and the bytes it took.
    Record(JournalRecord, u64),
    /// A commit's padding (all zeros), and the bytes it took.
    Padding(u64),
    /// Clean end: no bytes left.
    End,
    /// A record that is cut short or fails its checks.
    Damaged(String),
}

/// Reads one record, or the padding after a commit. `at` is the offset in
/// the segment, `left` how many bytes the file has from there.
pub(super) fn read_record(
    r: &mut impl Read,
    at: u64,
    left: u64,
    body: &mut Vec<u8>,
) -> io::Result<Next> {
    if left == 0 {
        return Ok(Next::End);
    }
    if left < HEADER_LEN as u64 {
        return Ok(Next::Damaged(format!(
            "{left} bytes left, too short for a record header"
        )));
    }
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    if header == [0u8; HEADER_LEN] && !at.is_multiple_of(BLOCK) {
        let total = padded_end(at) - at;
        if left < total {
            return Ok(Next::Damaged("a commit's padding is cut short".into()));
        }
        body.resize((total - HEADER_LEN as u64) as usize, 0);
        r.read_exact(body)?;
        if body.iter().any(|&b| b != 0) {
            return Ok(Next::Damaged("non-zero bytes in a commit's padding".into()));
        }
        return Ok(Next::Padding(total));
    }
    let body_len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Ok(Next::Damaged(format!(
            "record length {body_len} is impossible"
        )));
    }
    if left - (HEADER_LEN as u64) < body_len as u64 {
        return Ok(Next::Damaged(format!(
            "record of {body_len} bytes is cut short"
        )));
    }
    body.resize(body_len, 0);
    r.read_exact(body)?;
    if crc32c::crc32c(body) != crc {
        return Ok(Next::Damaged("checksum mismatch".to_string()));
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let received_at = i64::from_le_bytes(body[8..16].try_into().unwrap());
    let topic_len = u16::from_le_bytes(body[16..18].try_into().unwrap()) as usize;
    if BODY_FIXED_LEN + topic_len > body_len {
        return Ok(Next::Damaged("topic length exceeds record".to_string()));
    }
    let topic =
        String::from_utf8_lossy(&body[BODY_FIXED_LEN..BODY_FIXED_LEN + topic_len]).into_owned();
    let payload = bytes::Bytes::copy_from_slice(&body[BODY_FIXED_LEN + topic_len..]);
    Ok(Next::Record(
        JournalRecord {
            seq,
            received_at,
            topic,
            payload,
        },
        (HEADER_LEN + body_len) as u64,
    ))
}

/// Reads a segment record by record, checking length, CRC and numbering.
pub(super) fn scan_segment(
    path: &Path,
    first_seq: u64,
    mut f: impl FnMut(JournalRecord) -> Result<(), JournalError>,
) -> Result<Scan, JournalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut records = 0u64;
    let mut body = Vec::new();
    let mut after_padding = false;
    let damage = loop {
        match read_record(&mut r, offset, len - offset, &mut body).map_err(io_err(path))? {
            Next::End => break None,
            Next::Damaged(what) => break Some(what),
            Next::Padding(n) => {
                offset += n;
                after_padding = true;
            }
            Next::Record(rec, n) => {
                let expected = first_seq + records;
                if rec.seq != expected && after_padding {
                    // Zeros where records should be, then a later record: a
                    // commit whose blocks reached the disk only in part (a
                    // power cut). Nothing of it was acknowledged.
                    break Some(format!(
                        "record {} follows zeros where record {expected} should be (a torn commit)",
                        rec.seq
                    ));
                }
                after_padding = false;
                if rec.seq != expected {
                    return Err(JournalError::Sequence {
                        path: path.to_owned(),
                        expected,
                        found: rec.seq,
                    });
                }
                f(rec)?;
                records += 1;
                offset += n;
            }
        }
    };
    Ok(Scan {
        records,
        valid_len: offset,
        damage,
    })
}
