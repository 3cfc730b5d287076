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

/// RFC 6962 Merkle tree hash of `leaves` (already leaf-hashed): the empty
/// tree is `SHA-256("")`; otherwise split at the largest power of two
/// smaller than n, recursively.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// RFC 6962 audit path of leaf `m` in the tree over `leaves` (§2.1.1).
pub fn inclusion_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = inclusion_path(m, &leaves[..k]);
        p.push(merkle_root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_path(m - k, &leaves[k..]);
        p.push(merkle_root(&leaves[..k]));
        p
    }
}

/// Verifies an audit path (RFC 9162 §2.1.3.2): the root of a tree of
/// `size` leaves whose leaf `index` hashes to `leaf`.
pub fn root_from_path(index: u64, size: u64, leaf: Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// RFC 6962 consistency proof between the first `m` leaves and all of them
/// (§2.1.2).
pub fn consistency_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![merkle_root(d)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = sub(m, &d[..k], complete);
            p.push(merkle_root(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(merkle_root(&d[..k]));
            p
        }
    }
    if m == 0 || m > leaves.len() {
        return Vec::new();
    }
    sub(m, leaves, true)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between a tree of
/// `old_size` with `old_root` and one of `new_size` with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// A Merkle tree kept as the roots of its perfect subtrees, largest first
/// (a "compact range"): appending a leaf and taking the root cost O(log n),
/// and the root equals [`merkle_root`] over all leaves appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    pub size: u64,
    /// One root per set bit of `size`, from the highest bit down.
    pub stack: Vec<Hash>,
}

impl CompactTree {
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Merge with equal-sized subtrees: one per trailing one bit of size.
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self.stack.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// Appends `leaves` (already leaf-hashed). Each aligned run of
    /// [`RUN`] leaves is a perfect subtree of every larger tree: its root
    /// is taken level by level while its leaves are in the cache, then
    /// appended as one.
    pub fn extend(&mut self, mut leaves: &[Hash]) {
        let mut level = [[0u8; 32]; RUN];
        while let Some((&first, rest)) = leaves.split_first() {
            if !self.size.is_multiple_of(RUN as u64) || leaves.len() < RUN {
                self.push(first);
                leaves = rest;
                continue;
            }
            let (run, rest) = leaves.split_at(RUN);
            level.copy_from_slice(run);
            let mut width = RUN;
            while width > 1 {
                width /= 2;
                for i in 0..width {
                    level[i] = node_hash(&level[2 * i], &level[2 * i + 1]);
                }
            }
            self.push_perfect(level[0], RUN.trailing_zeros());
            leaves = rest;
        }
    }

    /// Appends the root of a perfect subtree of `2^height` leaves; the
    /// size must be a multiple of `2^height`.
    fn push_perfect(&mut self, root: Hash, height: u32) {
        debug_assert!(self.size.is_multiple_of(1 << height));
        let mut h = root;
        let mut n = self.size >> height;
        while n & 1 == 1 {
            let left = self.stack.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1 << height;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(&last) => it.fold(last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// The leaves [`CompactTree::extend`] reduces as one subtree (a power of
/// two).
const RUN: usize = 256;

/// The largest power of two smaller than `n` (n ≥ 2).
pub fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash {
        leaf_hash(&[b])
    }

    /// The block-level hashing equals `sha2`'s own at every length around
    /// the block and padding boundaries; rows hashed in their slots too,
    /// in chunks of slots of one size and (rows over `FIXED_SLOT_MAX`) of
    /// their own sizes.
    #[test]
    fn leaf_and_node_hashes_equal_sha256_of_their_input() {
        let data: Vec<u8> = (0..FIXED_SLOT_MAX as u32 + 300)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        for n in 0..data.len() {
            let mut want = Sha256::new();
            want.update([0u8]);
            want.update(&data[..n]);
            let want: Hash = want.finalize().into();
            assert_eq!(leaf_hash(&data[..n]), want, "{n} bytes");
        }
        // Rows hashed in their slots: one binary column of every length.
        let column =
            arrow_array::BinaryArray::from_iter_values((0..data.len()).map(|n| &data[..n]));
        let batch =
            RecordBatch::try_from_iter(vec![("b", std::sync::Arc::new(column) as _)]).unwrap();
        let mut hashes = Vec::new();
        row_hashes(&batch, &mut hashes).unwrap();
        for (n, h) in hashes.iter().enumerate() {
            let mut want = Sha256::new();
            want.update([0u8, 1]);
            want.update((n as u32).to_be_bytes());
            want.update(&data[..n]);
            assert_eq!(*h, Hash::from(want.finalize()), "row of {n} bytes");
        }
        let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
        let mut want = Sha256::new();
        want.update([1u8]);
        want.update(l);
        want.update(r);
        assert_eq!(node_hash(&l, &r), Hash::from(want.finalize()));
    }

    #[test]
    fn merkle_tree_follows_rfc_6962() {
        assert_eq!(
            hex::encode(merkle_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 / Certificate Transparency's test vector: the leaf hash of
        // the empty string.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let l: Vec<Hash> = (0..5).map(h).collect();
        assert_eq!(merkle_root(&l[..1]), l[0]);
        assert_eq!(merkle_root(&l[..2]), node_hash(&l[0], &l[1]));
        // Five leaves split 4 | 1.
        let four = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(merkle_root(&l), node_hash(&four, &l[4]));
        assert_eq!(
            (split(2), split(3), split(4), split(5), split(9)),
            (1, 2, 2, 4, 8)
        );
    }

    /// The worked example of `schemas/AUDIT.md` (computed independently
    /// with Python's hashlib).
    #[test]
    fn audit_md_worked_example() {
        use arrow_array::{BooleanArray, Int64Array, StringArray, UInt64Array};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter(vec![
            ("receipt_seq", Arc::new(Int64Array::from(vec![1, 2])) as _),
            (
                "topic",
                Arc::new(StringArray::from(vec!["meters/x", "meters/y"])) as _,
            ),
            (
                "conflict",
                Arc::new(BooleanArray::from(vec![false, true])) as _,
            ),
            (
                "seq",
                Arc::new(UInt64Array::from(vec![None, Some(17)])) as _,
            ),
        ])
        .unwrap();
        let mut row = Vec::new();
        encode_row(&batch, 0, &mut row);
        assert_eq!(
            hex::encode(&row),
            "01000000000000000101000000086d65746572732f78010000"
        );
        row.clear();
        encode_row(&batch, 1, &mut row);
        assert_eq!(
            hex::encode(&row),
            "01000000000000000201000000086d65746572732f790101010000000000000011"
        );
        let mut h = Vec::new();
        row_hashes(&batch, &mut h).unwrap();
        assert_eq!(
            hex::encode(h[0]),
            "8363dfab087e7afaf21f281015516198a4d31512c93b60a5fc05d971312f4882"
        );
        assert_eq!(
            hex::encode(h[1]),
            "85d9e1e498f96e31f01c728aeb451af2de058d27c75abfa4efcf18a6eb449cfb"
        );
        let root = merkle_root(&h);
        assert_eq!(
            hex::encode(root),
            "f8e8ad53cbf388f3c86f22f40f61f868b011e60bd4bbbc3679ed435c7e82729e"
        );
        let key = super::super::ledger::AuditKey::from_hex(&"07".repeat(32)).unwrap();
        assert_eq!(
            key.verifier().encode(),
            "gapless/fe812c12f3ab4ce6+27af83f3+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
        );
        assert_eq!(
            key.sign_checkpoint(2, &root),
            "gapless/fe812c12f3ab4ce6\n2\n+OitU8vziPPIbyL0D2H4aLAR5gvUu7w2ee1DXH6Ccp4=\n\n\
             \u{2014} gapless/fe812c12f3ab4ce6 J6+D8x1thVW35i/CNFJd1okpPAaUI/khm1rzSsbv+WaNAPpAxDyClKvqNrP3YAJ8I9CEpQCT4GlwvF765wHw/nzFjQI=\n"
        );
    }

    #[test]
    fn the_compact_tree_has_the_same_root_at_every_size() {
        let mut t = CompactTree::default();
        assert_eq!(t.root(), merkle_root(&[]));
        let leaves: Vec<Hash> = (0..70).map(h).collect();
        for (n, l) in leaves.iter().enumerate() {
            t.push(*l);
            assert_eq!(t.root(), merkle_root(&leaves[..=n]), "size {}", n + 1);
            assert_eq!(t.stack.len(), (n + 1).count_ones() as usize);
        }
    }

    /// Leaves appended in pieces of every kind (single leaves, runs not
    /// aligned, several aligned runs, a partial run at the end) give the
    /// root of the whole tree.
    #[test]
    fn the_compact_tree_extended_in_pieces_has_the_root_of_all_leaves() {
        let leaves: Vec<Hash> = (0..3 * RUN as u32 + 77)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        for pieces in [
            vec![leaves.len()],
            vec![1, RUN, 2 * RUN, 76],
            vec![RUN - 1, 1, RUN + 5, RUN - 5, 77],
            vec![2 * RUN + 3, RUN + 74],
        ] {
            let mut t = CompactTree::default();
            let mut at = 0;
            for n in pieces {
                t.extend(&leaves[at..at + n]);
                at += n;
                assert_eq!(t.root(), merkle_root(&leaves[..at]), "size {at}");
                assert_eq!(t.size, at as u64);
                assert_eq!(t.stack.len(), at.count_ones() as usize);
            }
        }
    }

    #[test]
    fn inclusion_and_consistency_proofs_verify_for_every_size() {
        let leaves: Vec<Hash> = (0..19).map(h).collect();
        for n in 1..=leaves.len() {
            let root = merkle_root(&leaves[..n]);
            for m in 0..n {
                let p = inclusion_path(m, &leaves[..n]);
                assert_eq!(
                    root_from_path(m as u64, n as u64, leaves[m], &p),
                    Some(root),
                    "{m} of {n}"
                );
                // Another leaf, or another index, does not verify.
                assert_ne!(root_from_path(m as u64, n as u64, h(200), &p), Some(root));
            }
            for old in 1..=n {
                let proof = consistency_path(old, &leaves[..n]);
                let old_root = merkle_root(&leaves[..old]);
                assert!(
                    verify_consistency(old as u64, n as u64, &old_root, &root, &proof),
                    "{old} -> {n}"
                );
                if old < n {
                    assert!(!verify_consistency(
                        old as u64,
                        n as u64,
                        &h(99),
                        &root,
                        &proof
                    ));
                }
            }
        }
    }

    #[test]
    fn rows_encode_by_type_with_null_tags() {
        use arrow_array::{Int64Array, StringArray, UInt8Array};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![Some(-2), None])) as _),
            ("b", Arc::new(StringArray::from(vec!["hé", "x"])) as _),
            ("c", Arc::new(UInt8Array::from(vec![3, 4])) as _),
        ])
        .unwrap();
        let mut row = Vec::new();
        encode_row(&batch, 0, &mut row);
        assert_eq!(
            hex::encode(&row),
            "01fffffffffffffffe" // -2
                .to_owned()
                + "0100000003" + "68c3a9" // "hé": 3 bytes of UTF-8
                + "010000000000000003"
        );
        row.clear();
        encode_row(&batch, 1, &mut row);
        assert_eq!(&row[..1], &[0]);
        let mut hashes = Vec::new();
        row_hashes(&batch, &mut hashes).unwrap();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[1], leaf_hash(&row));
    }

    /// A dictionary-encoded column hashes as the plain column it stands
    /// for (nulls in its keys and in its values alike), with a hasher kept
    /// across batches that share a dictionary and batches that do not.
    #[test]
    fn dictionary_columns_hash_as_their_values() {
        use arrow_array::types::{Int32Type, Int8Type};
        use arrow_array::{DictionaryArray, Int32Array, Int8Array, StringArray};
        use std::sync::Arc;
        let plain = |v: Vec<Option<&str>>| {
            RecordBatch::try_from_iter(vec![("s", Arc::new(StringArray::from(v)) as _)]).unwrap()
        };
        let dict = |keys: Vec<Option<i32>>, values: &Arc<StringArray>| {
            let d = DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(keys),
                values.clone() as arrow_array::ArrayRef,
            )
            .unwrap();
            RecordBatch::try_from_iter(vec![("s", Arc::new(d) as _)]).unwrap()
        };
        let values = Arc::new(StringArray::from(vec![Some("meters/a"), None, Some("é")]));
        let other = Arc::new(StringArray::from(vec!["x", "meters/a"]));
        let batches = [
            dict(vec![Some(0), Some(2), None, Some(1), Some(0)], &values),
            dict(vec![Some(2), Some(2)], &values),
            dict(vec![Some(1), Some(0)], &other),
        ];
        let expected = [
            plain(vec![
                Some("meters/a"),
                Some("é"),
                None,
                None,
                Some("meters/a"),
            ]),
            plain(vec![Some("é"), Some("é")]),
            plain(vec![Some("meters/a"), Some("x")]),
        ];
        let mut hasher = RowHasher::default();
        for (d, p) in batches.into_iter().zip(expected) {
            let (mut got, mut want) = (Vec::new(), Vec::new());
            hasher.hash_batch(&d, &mut got).unwrap();
            row_hashes(&p, &mut want).unwrap();
            assert_eq!(got, want);
            for i in 0..d.num_rows() {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                encode_row(&d, i, &mut a);
                encode_row(&p, i, &mut b);
                assert_eq!(a, b, "row {i}");
            }
        }
        // Other key types too.
        let d8 = DictionaryArray::<Int8Type>::try_new(
            Int8Array::from(vec![2, 0]),
            values.clone() as arrow_array::ArrayRef,
        )
        .unwrap();
        let b8 = RecordBatch::try_from_iter(vec![("s", Arc::new(d8) as _)]).unwrap();
        let (mut got, mut want) = (Vec::new(), Vec::new());
        row_hashes(&b8, &mut got).unwrap();
        row_hashes(&plain(vec![Some("é"), Some("meters/a")]), &mut want).unwrap();
        assert_eq!(got, want);
        // A dictionary of integers has no canonical encoding.
        let di = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![0]),
            Arc::new(Int32Array::from(vec![5])) as arrow_array::ArrayRef,
        )
        .unwrap();
        let bi = RecordBatch::try_from_iter(vec![("i", Arc::new(di) as _)]).unwrap();
        assert!(row_hashes(&bi, &mut Vec::new()).is_err());
    }

    /// Dictionary columns between other columns, with nulls after them,
    /// long values, and a hasher whose buffers held other rows, hash as
    /// the plain columns do.
    #[test]
    fn dictionary_columns_among_others_hash_as_plain_columns() {
        use arrow_array::types::Int32Type;
        use arrow_array::{DictionaryArray, Int32Array, Int64Array, StringArray};
        use std::sync::Arc;
        let long = "a value longer than the thirty-two bytes copied at once";
        let strings = |v: &[Option<&str>]| StringArray::from(v.to_vec());
        let dict = |v: &[Option<&str>]| {
            let values = strings(v);
            let keys = Int32Array::from(
                (0..v.len())
                    .map(|k| v[k].map(|_| k as i32))
                    .collect::<Vec<_>>(),
            );
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap())
                as arrow_array::ArrayRef
        };
        let a = [Some("x"), Some("meters/y"), None, Some("zz")];
        let b = [Some(long), Some("s"), Some(long), None];
        let c = [Some("q"), None, Some("r"), Some("tail")];
        let n = Int64Array::from(vec![None, Some(-1), None, Some(5)]);
        let batch = |a, b, c| {
            RecordBatch::try_from_iter(vec![
                ("a", a),
                ("n", Arc::new(n.clone()) as _),
                ("b", b),
                ("c", c),
            ])
            .unwrap()
        };
        let plain = batch(
            Arc::new(strings(&a)) as _,
            Arc::new(strings(&b)) as _,
            Arc::new(strings(&c)) as _,
        );
        let dicts = batch(dict(&a), dict(&b), dict(&c));
        let mut want = Vec::new();
        row_hashes(&plain, &mut want).unwrap();
        // First a batch of long values, so the buffer reused is full of
        // other bytes.
        let l = [Some(long); 4];
        let junk = batch(dict(&l), dict(&l), dict(&l));
        let mut hasher = RowHasher::default();
        hasher.hash_batch(&junk, &mut Vec::new()).unwrap();
        let mut got = Vec::new();
        hasher.hash_batch(&dicts, &mut got).unwrap();
        assert_eq!(got, want);
        for (i, h) in want.iter().enumerate() {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            encode_row(&plain, i, &mut x);
            encode_row(&dicts, i, &mut y);
            assert_eq!(x, y, "row {i}");
            assert_eq!(*h, leaf_hash(&x));
        }
    }
}
