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
    Decimal128Type, Int64Type, TimestampMicrosecondType, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// RFC 6962 leaf hash: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
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

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(&last) => it.fold(last, |acc, left| node_hash(left, &acc)),
        }
    }
}

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
    Str(&'a arrow_array::StringArray),
    Bin(&'a arrow_array::BinaryArray),
}

struct Typed<'a> {
    col: Col<'a>,
    nulls: Option<&'a arrow_buffer::NullBuffer>,
}

fn typed(batch: &RecordBatch) -> Result<Vec<Typed<'_>>, UnsupportedType> {
    let schema = batch.schema_ref();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
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
                DataType::Utf8 => Col::Str(c.as_string::<i32>()),
                DataType::Binary => Col::Bin(c.as_binary::<i32>()),
                other => {
                    return Err(UnsupportedType {
                        column: f.name().clone(),
                        data_type: other.clone(),
                    })
                }
            };
            Ok(Typed {
                col,
                nulls: c.logical_nulls().is_some().then(|| c.nulls()).flatten(),
            })
        })
        .collect()
}

fn encode_typed(cols: &[Typed], i: usize, out: &mut Vec<u8>) {
    for t in cols {
        if t.nulls.is_some_and(|n| n.is_null(i)) {
            out.push(0);
            continue;
        }
        out.push(1);
        match &t.col {
            Col::Bool(a) => out.push(u8::from(a.value(i))),
            Col::I64(v) => out.extend_from_slice(&v[i].to_be_bytes()),
            Col::U8(v) => out.extend_from_slice(&(v[i] as u64).to_be_bytes()),
            Col::U32(v) => out.extend_from_slice(&(v[i] as u64).to_be_bytes()),
            Col::U64(v) => out.extend_from_slice(&v[i].to_be_bytes()),
            Col::Dec(v) => out.extend_from_slice(&v[i].to_be_bytes()),
            Col::Str(a) => bytes(a.value(i).as_bytes(), out),
            Col::Bin(a) => bytes(a.value(i), out),
        }
    }
}

/// Appends every row's hash of `batch` to `out`.
pub fn row_hashes(batch: &RecordBatch, out: &mut Vec<Hash>) -> Result<(), UnsupportedType> {
    let cols = typed(batch)?;
    let mut row = Vec::with_capacity(256);
    out.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        row.clear();
        encode_typed(&cols, i, &mut row);
        out.push(leaf_hash(&row));
    }
    Ok(())
}

/// Appends the canonical encoding of one row of `batch` (columns of the
/// documented types; others are left out, and `row_hashes` refuses them).
pub fn encode_row(batch: &RecordBatch, i: usize, out: &mut Vec<u8>) {
    if let Ok(cols) = typed(batch) {
        encode_typed(&cols, i, out);
    }
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
}
