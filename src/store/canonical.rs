//! Canonical rows and Merkle trees: what makes a sealed file's contents
//! verifiable independently of how Parquet encoded them.
//!
//! A row's canonical encoding is its columns in schema order, each `0x00`
//! when null, else `0x01` followed by the value: booleans one byte; signed
//! integers and timestamps (µs) 8 bytes big-endian two's complement;
//! unsigned integers 8 bytes big-endian; decimals 16 bytes big-endian two's
//! complement of the unscaled value; strings and binaries a 4-byte
//! big-endian length and the bytes. A row's hash is the RFC 6962 leaf hash
//! `SHA-256(0x00 ‖ row)`; a file's row root is the RFC 6962 Merkle tree hash
//! over its rows' hashes, in file order (`schemas/AUDIT.md`).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type, UInt64Type,
    UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use sha2::digest::generic_array::GenericArray;
use sha2::digest::typenum::U64;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// RFC 6962 leaf hash: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut state = IV;
    let mut block = [0u8; 64];
    // The prefix shifts the data by one byte against the blocks: each
    // block is copied together once (no buffering per update).
    let first = data.len().min(63);
    block[1..1 + first].copy_from_slice(&data[..first]);
    let mut filled = 1 + first;
    let mut rest = &data[first..];
    while filled == 64 {
        compress(&mut state, &block);
        let n = rest.len().min(64);
        block[..n].copy_from_slice(&rest[..n]);
        filled = n;
        rest = &rest[n..];
    }
    finish(state, block, filled, data.len() as u64 + 1)
}

/// RFC 6962 interior node: `SHA-256(0x01 ‖ left ‖ right)`: two blocks,
/// built in place.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut b = [[0u8; 64]; 2];
    b[0][0] = 1;
    b[0][1..33].copy_from_slice(left);
    b[0][33..].copy_from_slice(&right[..31]);
    b[1][0] = right[31];
    b[1][1] = 0x80;
    b[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = IV;
    compress(&mut state, &b[0]);
    compress(&mut state, &b[1]);
    digest_of(state)
}

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// One SHA-256 block, through `sha2`'s compression function (SHA-NI where
/// the CPU has it).
#[inline]
fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(
        state,
        std::slice::from_ref(GenericArray::<u8, U64>::from_slice(block)),
    );
}

fn digest_of(state: [u32; 8]) -> Hash {
    let mut h = [0u8; 32];
    for (o, w) in h.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    h
}

/// Pads the last block (`filled` bytes of a message of `len` bytes) and
/// returns the digest.
fn finish(mut state: [u32; 8], mut block: [u8; 64], filled: usize, len: u64) -> Hash {
    block[filled] = 0x80;
    block[filled + 1..].fill(0);
    if filled >= 56 {
        compress(&mut state, &block);
        block = [0; 64];
    }
    block[56..].copy_from_slice(&(len * 8).to_be_bytes());
    compress(&mut state, &block);
    digest_of(state)
}

/// Why a batch cannot be encoded: a column type outside the documented set.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: type {data_type} has no canonical encoding")]
pub struct UnsupportedType {
    pub column: String,
    pub data_type: DataType,
}

/// One column, downcast once per batch.
enum Col<'a> {
    Bool(&'a arrow_array::BooleanArray),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    Dec(&'a [i128]),
    /// Strings and binaries: their offsets and bytes.
    Bytes(&'a [i32], &'a [u8]),
    /// A dictionary of strings or binaries: per row its key into values
    /// already encoded (tag, length and bytes), so each value is encoded
    /// once per dictionary, not once per row.
    Dict(Keys<'a>, &'a Encoded),
}

enum Keys<'a> {
    I32(&'a [i32]),
    Other(Vec<usize>),
}

impl Keys<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> usize {
        match self {
            // A valid slot's key is in range (arrow checks it); a negative
            // one cannot be valid, and indexes out of range (a panic, not
            // a wrong hash).
            Keys::I32(k) => usize::try_from(k[i]).unwrap_or(usize::MAX),
            Keys::Other(k) => k[i],
        }
    }
}

/// Encodings of at most this many bytes are copied as one piece of this
/// size: a fixed-size copy (no call per value), whose bytes past the value
/// are overwritten by the next column or cleared at the row's end.
const PIECE: usize = 32;
/// Room kept after each row's encoding: for a piece's overhang (a string's
/// tag and length come before its piece), and for the padding, written
/// whole (at most 64 bytes from the message's end to its length field).
const SLACK: usize = 64;
/// Chunks whose widest possible row is at most this big give every row a
/// slot of the same size (no pass to size the rows first).
const FIXED_SLOT_MAX: usize = 1024;

/// A dictionary's values, canonically encoded with their `0x01` tag.
#[derive(Default)]
struct Encoded {
    /// When every value fits: value k in `pieces[k]`, its encoded length in
    /// the piece's last byte.
    pieces: Vec<[u8; PIECE]>,
    /// Otherwise: value k is `bytes[starts[k]..starts[k + 1]]`.
    bytes: Vec<u8>,
    starts: Vec<usize>,
    /// The longest value's encoding.
    widest: usize,
}

impl Encoded {
    fn encode(&mut self, offsets: &[i32], values: &[u8]) {
        self.pieces.clear();
        self.bytes.clear();
        self.starts.clear();
        let longest = offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        self.widest = 5 + longest;
        if self.widest < PIECE {
            self.pieces.extend(offsets.windows(2).map(|w| {
                let mut p = [0u8; PIECE];
                let b = &values[w[0] as usize..w[1] as usize];
                p[0] = 1;
                p[1..5].copy_from_slice(&(b.len() as u32).to_be_bytes());
                p[5..5 + b.len()].copy_from_slice(b);
                p[PIECE - 1] = 5 + b.len() as u8;
                p
            }));
        } else {
            self.starts.push(0);
            for w in offsets.windows(2) {
                self.bytes.push(1);
                bytes_at(values, w[0], w[1], &mut self.bytes);
                self.starts.push(self.bytes.len());
            }
        }
    }

    fn len(&self, k: usize) -> usize {
        match self.pieces.get(k) {
            Some(p) => usize::from(p[PIECE - 1]),
            None => self.starts[k + 1] - self.starts[k],
        }
    }
}

struct Typed<'a> {
    col: Col<'a>,
    nulls: Option<arrow_buffer::NullBuffer>,
}

/// Hashes the rows of batches, keeping its buffers and the encoded values
/// of the dictionaries it has seen (a Parquet reader hands out one
/// dictionary for all batches of a column chunk), so that a file's batches
/// cost no allocation after the first and each dictionary value is encoded
/// once.
#[derive(Default)]
pub struct RowHasher {
    slots: Slots,
    /// Per column: the dictionary values last encoded, and their encoding.
    dicts: Vec<Option<(arrow_array::ArrayRef, Encoded)>>,
}

impl RowHasher {
    /// Appends every row's hash of `batch` to `out`.
    pub fn hash_batch(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<Hash>,
    ) -> Result<(), UnsupportedType> {
        self.prepare(batch)?;
        let cols = typed(batch, &self.dicts)?;
        let n = batch.num_rows();
        out.reserve(n);
        for r0 in (0..n).step_by(CHUNK_ROWS) {
            let rows = r0..(r0 + CHUNK_ROWS).min(n);
            self.slots.encode(&cols, rows.clone());
            out.extend((0..rows.len()).map(|r| self.slots.hash(r)));
        }
        Ok(())
    }

    /// Encodes the values of `batch`'s dictionaries not encoded yet.
    fn prepare(&mut self, batch: &RecordBatch) -> Result<(), UnsupportedType> {
        self.dicts.resize_with(batch.num_columns(), || None);
        for ((f, c), slot) in batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .zip(&mut self.dicts)
        {
            let Some(d) = c.as_any_dictionary_opt() else {
                *slot = None;
                continue;
            };
            let values = d.values();
            if slot
                .as_ref()
                .is_some_and(|(v, _)| std::sync::Arc::ptr_eq(v, values))
            {
                continue;
            }
            let (offsets, bytes) = match values.data_type() {
                DataType::Utf8 => {
                    let s = values.as_string::<i32>();
                    (s.value_offsets(), s.values().as_slice())
                }
                DataType::Binary => {
                    let b = values.as_binary::<i32>();
                    (b.value_offsets(), b.values().as_slice())
                }
                _ => {
                    return Err(UnsupportedType {
                        column: f.name().clone(),
                        data_type: c.data_type().clone(),
                    })
                }
            };
            let mut e = slot.take().map(|(_, e)| e).unwrap_or_default();
            e.encode(offsets, bytes);
            *slot = Some((values.clone(), e));
        }
        Ok(())
    }
}

fn typed<'a>(
    batch: &'a RecordBatch,
    dicts: &'a [Option<(arrow_array::ArrayRef, Encoded)>],
) -> Result<Vec<Typed<'a>>, UnsupportedType> {
    let schema = batch.schema_ref();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .enumerate()
        .map(|(k, (f, c))| {
            let unsupported = || UnsupportedType {
                column: f.name().clone(),
                data_type: c.data_type().clone(),
            };
            let col = match c.data_type() {
                DataType::Boolean => Col::Bool(c.as_boolean()),
                DataType::Int64 => Col::I64(c.as_primitive::<Int64Type>().values()),
                DataType::Timestamp(_, _) => {
                    Col::I64(c.as_primitive::<TimestampMicrosecondType>().values())
                }
                DataType::UInt8 => Col::U8(c.as_primitive::<UInt8Type>().values()),
                DataType::UInt32 => Col::U32(c.as_primitive::<UInt32Type>().values()),
                DataType::UInt64 => Col::U64(c.as_primitive::<UInt64Type>().values()),
                DataType::Decimal128(_, _) => Col::Dec(c.as_primitive::<Decimal128Type>().values()),
                DataType::Utf8 => {
                    let s = c.as_string::<i32>();
                    Col::Bytes(s.value_offsets(), s.values().as_slice())
                }
                DataType::Binary => {
                    let b = c.as_binary::<i32>();
                    Col::Bytes(b.value_offsets(), b.values().as_slice())
                }
                DataType::Dictionary(_, _) => {
                    let (Some(d), Some(Some((_, e)))) = (c.as_any_dictionary_opt(), dicts.get(k))
                    else {
                        return Err(unsupported());
                    };
                    let keys = match d.keys().as_primitive_opt::<Int32Type>() {
                        Some(k) => Keys::I32(k.values()),
                        None => Keys::Other(d.normalized_keys()),
                    };
                    Col::Dict(keys, e)
                }
                _ => return Err(unsupported()),
            };
            Ok(Typed {
                col,
                nulls: c.logical_nulls().filter(|n| n.null_count() > 0),
            })
        })
        .collect()
}

/// Rows encoded together: their padded messages (about 192 bytes each for
/// a reading) stay in the core's cache until they are hashed.
const CHUNK_ROWS: usize = 128;

/// A chunk of rows, each encoded column by column into its own slot as the
/// complete SHA-256 message of its leaf hash: the `0x00` prefix, the
/// canonical row, and the padding, so the hash reads whole blocks where
/// they lie.
#[derive(Default)]
struct Slots {
    buf: Vec<u8>,
    /// Per row: where its slot starts in `buf`.
    start: Vec<usize>,
    /// Per row: the length of its message (prefix and row).
    len: Vec<usize>,
    /// Per row: where its next column goes.
    at: Vec<usize>,
}

/// The size of the padded SHA-256 message of `len` bytes.
fn padded(len: usize) -> usize {
    (len + 9).div_ceil(64) * 64
}

/// The slot of a message of up to `len` bytes: its padded blocks, and room
/// for a piece's overhang past the message.
fn slot(len: usize) -> usize {
    (len + SLACK).div_ceil(64) * 64
}

impl Slots {
    fn encode(&mut self, cols: &[Typed], rows: std::ops::Range<usize>) {
        let widest = 1 + cols.iter().map(|t| t.widest(rows.clone())).sum::<usize>();
        self.start.clear();
        let total = if widest <= FIXED_SLOT_MAX {
            let s = slot(widest);
            self.start.extend((0..rows.len()).map(|r| r * s));
            rows.len() * s
        } else {
            self.len.clear();
            self.len.resize(rows.len(), 1);
            for t in cols {
                t.add_lengths(rows.clone(), &mut self.len);
            }
            let mut total = 0;
            for &l in &self.len {
                self.start.push(total);
                total += slot(l);
            }
            total
        };
        // Not cleared: every byte hashed is written below.
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        for &s in &self.start {
            self.buf[s] = 0;
        }
        self.at.clear();
        self.at.extend(self.start.iter().map(|s| s + 1));
        for t in cols {
            t.write(rows.clone(), &mut self.buf, &mut self.at);
        }
        self.len.clear();
        for (&s, &at) in self.start.iter().zip(&self.at) {
            let l = at - s;
            self.len.push(l);
            // Clears what pieces wrote past the row and what the slot held
            // before, then pads.
            self.buf[at..at + 64].fill(0);
            self.buf[at] = 0x80;
            let end = s + padded(l);
            self.buf[end - 8..end].copy_from_slice(&(l as u64 * 8).to_be_bytes());
        }
    }

    /// The canonical encoding of row `r` of the chunk.
    fn row(&self, r: usize) -> &[u8] {
        &self.buf[self.start[r] + 1..self.start[r] + self.len[r]]
    }

    /// The leaf hash of row `r` of the chunk.
    fn hash(&self, r: usize) -> Hash {
        let s = self.start[r];
        let mut state = IV;
        for b in self.buf[s..s + padded(self.len[r])].chunks_exact(64) {
            sha2::compress256(
                &mut state,
                std::slice::from_ref(GenericArray::<u8, U64>::from_slice(b)),
            );
        }
        digest_of(state)
    }
}

/// Writes `0x01` and the fixed-size value `v` at `p`; returns the size.
#[inline(always)]
fn put<const N: usize>(buf: &mut [u8], p: usize, v: [u8; N]) -> usize {
    buf[p] = 1;
    buf[p + 1..p + 1 + N].copy_from_slice(&v);
    1 + N
}

/// Calls `f(buf, row, position)` for each valid row of `rows`, which writes
/// the value at the row's position and returns its size; a null row gets
/// its `0x00` tag.
#[inline(always)]
fn each(
    nulls: Option<&arrow_buffer::NullBuffer>,
    rows: std::ops::Range<usize>,
    at: &mut [usize],
    buf: &mut [u8],
    mut f: impl FnMut(&mut [u8], usize, usize) -> usize,
) {
    match nulls {
        None => {
            for (a, i) in at.iter_mut().zip(rows) {
                *a += f(buf, i, *a);
            }
        }
        Some(n) => {
            for (a, i) in at.iter_mut().zip(rows) {
                *a += if n.is_null(i) {
                    buf[*a] = 0;
                    1
                } else {
                    f(buf, i, *a)
                };
            }
        }
    }
}

impl Typed<'_> {
    /// The largest encoded size of this column in `rows`.
    fn widest(&self, rows: std::ops::Range<usize>) -> usize {
        match &self.col {
            Col::Bool(_) => 2,
            Col::I64(_) | Col::U8(_) | Col::U32(_) | Col::U64(_) => 9,
            Col::Dec(_) => 17,
            Col::Bytes(offsets, _) => {
                5 + offsets[rows.start..=rows.end]
                    .windows(2)
                    .map(|w| (w[1] - w[0]) as usize)
                    .max()
                    .unwrap_or(0)
            }
            Col::Dict(_, e) => e.widest,
        }
    }

    /// Adds each row's encoded size of this column to `len`.
    fn add_lengths(&self, rows: std::ops::Range<usize>, len: &mut [usize]) {
        let nulls = self.nulls.as_ref();
        let mut none: [u8; 0] = [];
        let fixed = match &self.col {
            Col::Bool(_) => 2,
            Col::I64(_) | Col::U8(_) | Col::U32(_) | Col::U64(_) => 9,
            Col::Dec(_) => 17,
            Col::Bytes(offsets, _) => {
                return each(None, rows, len, &mut none, |_, i, _| {
                    if nulls.is_some_and(|n| n.is_null(i)) {
                        1
                    } else {
                        5 + (offsets[i + 1] - offsets[i]) as usize
                    }
                })
            }
            Col::Dict(keys, e) => {
                return each(None, rows, len, &mut none, |_, i, _| {
                    if nulls.is_some_and(|n| n.is_null(i)) {
                        1
                    } else {
                        e.len(keys.get(i))
                    }
                })
            }
        };
        each(None, rows, len, &mut none, |_, i, _| {
            if nulls.is_some_and(|n| n.is_null(i)) {
                1
            } else {
                fixed
            }
        });
    }

    /// Writes this column of each row at its position in `buf`.
    fn write(&self, rows: std::ops::Range<usize>, buf: &mut [u8], at: &mut [usize]) {
        let nulls = self.nulls.as_ref();
        match &self.col {
            Col::Bool(a) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, [u8::from(a.value(i))])
            }),
            Col::I64(v) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, v[i].to_be_bytes())
            }),
            Col::U8(v) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, u64::from(v[i]).to_be_bytes())
            }),
            Col::U32(v) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, u64::from(v[i]).to_be_bytes())
            }),
            Col::U64(v) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, v[i].to_be_bytes())
            }),
            Col::Dec(v) => each(nulls, rows, at, buf, |buf, i, p| {
                put(buf, p, v[i].to_be_bytes())
            }),
            Col::Bytes(offsets, values) => each(nulls, rows, at, buf, |buf, i, p| {
                let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                buf[p] = 1;
                buf[p + 1..p + 5].copy_from_slice(&((e - s) as u32).to_be_bytes());
                match values.get(s..s + PIECE) {
                    Some(piece) if e - s <= PIECE => {
                        buf[p + 5..p + 5 + PIECE].copy_from_slice(piece)
                    }
                    _ => buf[p + 5..p + 5 + e - s].copy_from_slice(&values[s..e]),
                }
                5 + e - s
            }),
            Col::Dict(keys, e) if !e.pieces.is_empty() => {
                each(nulls, rows, at, buf, |buf, i, p| {
                    let piece = &e.pieces[keys.get(i)];
                    buf[p..p + PIECE].copy_from_slice(piece);
                    usize::from(piece[PIECE - 1])
                })
            }
            Col::Dict(keys, e) => each(nulls, rows, at, buf, |buf, i, p| {
                let k = keys.get(i);
                let v = &e.bytes[e.starts[k]..e.starts[k + 1]];
                buf[p..p + v.len()].copy_from_slice(v);
                v.len()
            }),
        }
    }
}

/// Appends every row's hash of `batch` to `out` (a [`RowHasher`] used
/// once: to hash several batches, keep one).
pub fn row_hashes(batch: &RecordBatch, out: &mut Vec<Hash>) -> Result<(), UnsupportedType> {
    RowHasher::default().hash_batch(batch, out)
}

/// Appends the canonical encoding of one row of `batch` (columns of the
/// documented types; others are left out, and `row_hashes` refuses them).
pub fn encode_row(batch: &RecordBatch, i: usize, out: &mut Vec<u8>) {
    let mut h = RowHasher::default();
    if i >= batch.num_rows() || h.prepare(batch).is_err() {
        return;
    }
    if let Ok(cols) = typed(batch, &h.dicts) {
        h.slots.encode(&cols, i..i + 1);
        out.extend_from_slice(h.slots.row(0));
    }
}

/// The string or binary `values[start..end]` with its 4-byte length.
#[inline]
fn bytes_at(values: &[u8], start: i32, end: i32, out: &mut Vec<u8>) {
    let b = &values[start as usize..end as usize];
    bytes(b, out);
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

#[path = "canonical_tree.rs"]
mod tree;
pub use tree::*;

#[cfg(test)]
#[path = "canonical_tests.rs"]
mod tests;
