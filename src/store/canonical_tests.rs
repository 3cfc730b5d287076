//! Canonical rows and trees: the unit tests.
use super::tree::RUN;
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
    let column = arrow_array::BinaryArray::from_iter_values((0..data.len()).map(|n| &data[..n]));
    let batch = RecordBatch::try_from_iter(vec![("b", std::sync::Arc::new(column) as _)]).unwrap();
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
