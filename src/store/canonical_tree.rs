//! The RFC 6962 Merkle tree over leaf hashes: roots, inclusion and
//! consistency proofs, and the compact range that appends in O(log n).

use super::*;

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
pub(super) const RUN: usize = 256;

/// The largest power of two smaller than `n` (n ≥ 2).
pub fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}
