//! The RFC 6962 §2.1 Merkle tree over the log's entries, with the ledger's hash.
//!
//! Leaves are entry hashes (H(0x00 ‖ entry)); a node is H(0x01 ‖ left ‖ right); the
//! empty tree's root is H of no bytes. Proofs are generated as RFC 6962 §2.1.1–2.1.2
//! define them and checked with the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms, so any
//! RFC 6962 tool checks them unmodified when the ledger uses SHA-256.
//!
//! Proof generation reads only *perfect* subtrees (2^level leaves, aligned), which the
//! store keeps, so a proof costs O(log n) reads rather than a scan.

use crate::hash::{Hash, HashAlg};

/// A source of perfect subtree hashes: node `index` at `level` covers leaves
/// `[index << level, (index + 1) << level)`. Level 0 is the leaf hashes.
pub trait SubtreeSource {
    /// The error a lookup can fail with.
    type Error;
    /// Hash of one perfect subtree that is complete in the tree being proven.
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Leaf hashes held in memory, for tests and for verifiers that read every entry.
impl SubtreeSource for (HashAlg, &[Hash]) {
    type Error = std::convert::Infallible;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let (alg, leaves) = *self;
        let start = (index << level) as usize;
        let end = ((index + 1) << level) as usize;
        Ok(root_of(alg, &leaves[start..end]))
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Merkle tree hash of leaf hashes held in memory (the RFC's MTH, recursively).
pub fn root_of(alg: HashAlg, leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => alg.empty(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            alg.node(&root_of(alg, &leaves[..k]), &root_of(alg, &leaves[k..]))
        }
    }
}

/// MTH of leaves `[start, end)` of a tree, where the range is a node of the RFC tree.
pub fn subtree_root<S: SubtreeSource>(
    alg: HashAlg,
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(alg.empty());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return src.perfect(level, start >> level);
    }
    let k = split(n);
    let left = subtree_root(alg, src, start, start + k)?;
    let right = subtree_root(alg, src, start + k, end)?;
    Ok(alg.node(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962
/// PATH), deepest sibling first.
///
/// # Panics
/// If `index >= size` (callers check the request first).
pub fn inclusion_proof<S: SubtreeSource>(
    alg: HashAlg,
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(
        index < size,
        "inclusion proof of leaf {index} in tree of size {size}"
    );
    let mut path = Vec::new();
    let (mut start, mut end, mut m) = (0u64, size, index);
    // Walk down from the root; siblings are collected top-down and reversed at the end.
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            path.push(subtree_root(alg, src, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_root(alg, src, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of the first `old` and `new` leaves
/// (RFC 6962 PROOF), deepest node first. Empty when `old` is 0 or equals `new`.
///
/// # Panics
/// If `old > new` (callers check the request first).
pub fn consistency_proof<S: SubtreeSource>(
    alg: HashAlg,
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(old <= new, "consistency proof from {old} to larger {new}");
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(proof);
    }
    let (mut start, mut end, mut m, mut whole) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(subtree_root(alg, src, start, end)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(subtree_root(alg, src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_root(alg, src, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for the tree shape.
    #[error("proof has the wrong length for the tree sizes")]
    WrongLength,
    /// The old size is larger than the new size.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesReversed {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The hashes do not lead to the expected root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    alg: HashAlg,
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = alg.node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = alg.node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2). A proof from size 0 must be
/// empty (the empty tree is a prefix of every tree).
pub fn verify_consistency(
    alg: HashAlg,
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *old_root == alg.empty() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (nodes[0], nodes[0]);
    for c in &nodes[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = alg.node(c, &fr);
            sr = alg.node(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = alg.node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: one perfect subtree per set bit of its size.
///
/// Appending a leaf costs O(1) amortised and reports every perfect subtree it
/// completes, which is what the store indexes; the root of the current size is
/// O(log n). Verifiers use it to check a whole log in flat memory.
#[derive(Clone, Debug)]
pub struct Frontier {
    alg: HashAlg,
    size: u64,
    /// (level, hash), largest subtree first.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new(alg: HashAlg) -> Self {
        Frontier {
            alg,
            size: 0,
            nodes: Vec::with_capacity(64),
        }
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its perfect subtrees.
    pub fn from_source<S: SubtreeSource>(
        alg: HashAlg,
        src: &S,
        size: u64,
    ) -> Result<Self, S::Error> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                nodes.push((level, src.perfect(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Frontier { alg, size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; `completed(level, index, hash)` is called for the leaf itself
    /// and for every perfect subtree the leaf completes, lowest level first.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut index = self.size;
        completed(0, index, &leaf);
        let mut cur = (0u32, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            let h = self.alg.node(&left, &cur.1);
            index >>= 1;
            cur = (level + 1, h);
            completed(cur.0, index, &h);
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// Root of the tree of the current size.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => self.alg.empty(),
            Some(&(_, last)) => it.fold(last, |acc, (_, h)| self.alg.node(h, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(alg: HashAlg, n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| alg.leaf(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn frontier_root_matches_recursive_root() {
        for alg in [HashAlg::Blake3, HashAlg::Sha256] {
            let ls = leaves(alg, 70);
            let mut f = Frontier::new(alg);
            assert_eq!(f.root(), alg.empty());
            for (i, l) in ls.iter().enumerate() {
                f.push(*l, |_, _, _| {});
                assert_eq!(f.root(), root_of(alg, &ls[..=i]), "size {}", i + 1);
            }
        }
    }

    #[test]
    fn frontier_reports_every_perfect_subtree() {
        let alg = HashAlg::Blake3;
        let ls = leaves(alg, 37);
        let mut f = Frontier::new(alg);
        let mut seen = Vec::new();
        for l in &ls {
            f.push(*l, |level, index, h| seen.push((level, index, *h)));
        }
        let src = (alg, ls.as_slice());
        for (level, index, h) in &seen {
            assert_eq!(*h, src.perfect(*level, *index).unwrap());
        }
        // 37 leaves complete 37 + 18 + 9 + 4 + 2 + 1 perfect subtrees.
        assert_eq!(seen.len(), 37 + 18 + 9 + 4 + 2 + 1);
        let rebuilt = Frontier::from_source(alg, &src, 37).unwrap();
        assert_eq!(rebuilt.root(), f.root());
    }

    proptest! {
        #[test]
        fn inclusion_proofs_round_trip(size in 1u64..300, idx in 0u64..300, sha in any::<bool>()) {
            let alg = if sha { HashAlg::Sha256 } else { HashAlg::Blake3 };
            let idx = idx % size;
            let ls = leaves(alg, size as usize);
            let src = (alg, ls.as_slice());
            let root = root_of(alg, &ls);
            let path = inclusion_proof(alg, &src, idx, size).unwrap();
            prop_assert!(verify_inclusion(alg, &ls[idx as usize], idx, size, &path, &root).is_ok());
            // Any other leaf, index or a shortened path fails.
            let other = (idx + 1) % size;
            if other != idx {
                prop_assert!(verify_inclusion(alg, &ls[other as usize], idx, size, &path, &root).is_err());
                prop_assert!(verify_inclusion(alg, &ls[idx as usize], other, size, &path, &root).is_err());
            }
            if !path.is_empty() {
                prop_assert!(verify_inclusion(alg, &ls[idx as usize], idx, size, &path[1..], &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_round_trip(new in 1u64..300, old in 0u64..300, sha in any::<bool>()) {
            let alg = if sha { HashAlg::Sha256 } else { HashAlg::Blake3 };
            let old = old % (new + 1);
            let ls = leaves(alg, new as usize);
            let src = (alg, ls.as_slice());
            let old_root = root_of(alg, &ls[..old as usize]);
            let new_root = root_of(alg, &ls);
            let proof = consistency_proof(alg, &src, old, new).unwrap();
            prop_assert!(verify_consistency(alg, old, new, &old_root, &new_root, &proof).is_ok());
            if old > 0 && old < new {
                let mut bad = ls.clone();
                bad[(old - 1) as usize] = alg.leaf(b"rewritten");
                let bad_old_root = root_of(alg, &bad[..old as usize]);
                prop_assert!(verify_consistency(alg, old, new, &bad_old_root, &new_root, &proof).is_err());
                prop_assert!(verify_consistency(alg, old, new, &old_root, &new_root, &proof[1..]).is_err());
            }
        }
    }
}
