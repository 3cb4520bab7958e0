//! Merkle proofs: generation (`merkle::inclusion_proof`, `consistency_proof`,
//! `subtree_root`, `Frontier`) and verification (`verify_inclusion`,
//! `verify_consistency`, and `InclusionProof::verify` / `ConsistencyProof::verify`).
//!
//! Three parts, each on structured input:
//! - a real tree of up to 300 fuzzer-made leaves held in memory: the recursive root,
//!   the frontier's root, the subtree source's root agree; proofs of fuzzer-chosen
//!   leaves and sizes verify; a flipped bit, a dropped or an added hash, another leaf,
//!   or a rewritten old leaf make them fail;
//! - a "virtual" tree of any size up to 2^64 − 1 whose leaves are all one hash but
//!   one (its perfect subtrees cost O(64) to compute): the same properties at sizes
//!   where index arithmetic could overflow;
//! - arbitrary proofs (indexes, sizes, paths, roots): never a panic, and whatever
//!   verifies has exactly the length the generator makes for those sizes.
#![no_main]

use arbitrary::Arbitrary;
use ledger_core::hash::{Hash, HashAlg};
use ledger_core::merkle::{
    Frontier, SubtreeSource, consistency_proof, inclusion_proof, root_of, subtree_root,
    verify_consistency, verify_inclusion,
};
use ledger_core::{ConsistencyProof, InclusionProof};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    sha256: bool,
    /// Real tree: its size (mod 301) and leaf seed.
    small_size: u16,
    seed: u32,
    /// Virtual tree: size, and the one leaf that differs.
    big_size: u64,
    odd_leaf: u64,
    /// Which leaf and which older size to prove, as fractions of the size.
    index: u64,
    old: u64,
    /// What to tamper with: which hash, which bit.
    tamper_at: u8,
    tamper_bit: u8,
    /// Arbitrary proofs.
    raw_index: u64,
    raw_size: u64,
    raw_old: u64,
    raw_root: Hash,
    raw_old_root: Hash,
    raw_leaf: Hash,
    raw_path: Vec<Hash>,
}

/// Leaves all equal to `base` but the one at `odd`, which is `other`: perfect
/// subtree hashes in O(level).
struct Virtual {
    alg: HashAlg,
    odd: u64,
    /// `same[l]`: a perfect subtree of 2^l `base` leaves.
    same: Vec<Hash>,
    /// `with_odd[l]`: the perfect subtree of level l that holds leaf `odd`.
    with_odd: Vec<Hash>,
}

impl Virtual {
    fn new(alg: HashAlg, odd: u64, base: Hash, other: Hash) -> Self {
        let mut same = vec![base];
        let mut with_odd = vec![other];
        for l in 0..64 {
            let s = same[l];
            same.push(alg.node(&s, &s));
            let o = with_odd[l];
            with_odd.push(if (odd >> l) & 1 == 0 {
                alg.node(&o, &s)
            } else {
                alg.node(&s, &o)
            });
        }
        Virtual {
            alg,
            odd,
            same,
            with_odd,
        }
    }
    fn leaf(&self, i: u64) -> Hash {
        self.perfect(0, i).unwrap()
    }
}

impl SubtreeSource for Virtual {
    type Error = std::convert::Infallible;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let _ = self.alg;
        let l = level as usize;
        Ok(if level < 64 && self.odd >> level == index {
            self.with_odd[l]
        } else {
            self.same[l]
        })
    }
}

/// Every perfect subtree is the same hash: good enough to learn a proof's length.
struct Blank;
impl SubtreeSource for Blank {
    type Error = std::convert::Infallible;
    fn perfect(&self, _: u32, _: u64) -> Result<Hash, Self::Error> {
        Ok([0; 32])
    }
}

fn flip(mut p: Vec<Hash>, at: u8, bit: u8) -> Vec<Hash> {
    if !p.is_empty() {
        let i = usize::from(at) % p.len();
        p[i][usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    }
    p
}

fn check_tree<S: SubtreeSource<Error = std::convert::Infallible>>(
    alg: HashAlg,
    src: &S,
    leaf: impl Fn(u64) -> Hash,
    size: u64,
    input: &Input,
) {
    let root = subtree_root(alg, src, 0, size).unwrap();
    let frontier = Frontier::from_source(alg, src, size).unwrap();
    assert_eq!(frontier.size(), size);
    assert_eq!(
        frontier.root(),
        root,
        "frontier root differs at size {size}"
    );

    // Inclusion.
    if size > 0 {
        let index = input.index % size;
        let path = inclusion_proof(alg, src, index, size).unwrap();
        assert!(path.len() <= 64);
        let proof = InclusionProof {
            seq: index,
            size,
            leaf_hash: leaf(index),
            root,
            path: path.clone(),
        };
        assert_eq!(proof.verify(alg), Ok(()), "inclusion of {index} in {size}");
        let bad = flip(path.clone(), input.tamper_at, input.tamper_bit);
        if !path.is_empty() {
            assert!(verify_inclusion(alg, &leaf(index), index, size, &bad, &root).is_err());
            assert!(verify_inclusion(alg, &leaf(index), index, size, &path[1..], &root).is_err());
            assert!(
                verify_inclusion(
                    alg,
                    &leaf(index),
                    index,
                    size,
                    &path[..path.len() - 1],
                    &root
                )
                .is_err()
            );
        }
        let mut longer = path.clone();
        longer.push(root);
        assert!(verify_inclusion(alg, &leaf(index), index, size, &longer, &root).is_err());
        let mut other_leaf = leaf(index);
        other_leaf[usize::from(input.tamper_bit) % 32] ^= 0x80;
        assert!(verify_inclusion(alg, &other_leaf, index, size, &path, &root).is_err());
        assert!(verify_inclusion(alg, &leaf(index), index, size, &path, &other_leaf).is_err());
    }

    // Consistency with an older size.
    let old = match size.checked_add(1) {
        Some(m) => input.old % m,
        None => input.old,
    };
    let old_root = subtree_root(alg, src, 0, old).unwrap();
    let path = consistency_proof(alg, src, old, size).unwrap();
    assert!(path.len() <= 128);
    let proof = ConsistencyProof {
        from: old,
        to: size,
        from_root: old_root,
        to_root: root,
        path: path.clone(),
    };
    assert_eq!(proof.verify(alg), Ok(()), "consistency {old} → {size}");
    if !path.is_empty() {
        let bad = flip(path.clone(), input.tamper_at, input.tamper_bit);
        assert!(verify_consistency(alg, old, size, &old_root, &root, &bad).is_err());
        assert!(verify_consistency(alg, old, size, &old_root, &root, &path[1..]).is_err());
    }
    if old > 0 && old < size {
        let mut other = old_root;
        other[usize::from(input.tamper_bit) % 32] ^= 1;
        assert!(verify_consistency(alg, old, size, &other, &root, &path).is_err());
        assert!(verify_consistency(alg, old, size, &old_root, &other, &path).is_err());
        // Reversed sizes never verify.
        assert!(verify_consistency(alg, size, old, &root, &old_root, &path).is_err());
    }
}

fuzz_target!(|input: Input| {
    let alg = if input.sha256 {
        HashAlg::Sha256
    } else {
        HashAlg::Blake3
    };

    // A real tree in memory.
    let n = usize::from(input.small_size % 301);
    let leaves: Vec<Hash> = (0..n as u64)
        .map(|i| alg.leaf(&[input.seed.to_le_bytes(), (i as u32).to_le_bytes()].concat()))
        .collect();
    let src = (alg, leaves.as_slice());
    let mut f = Frontier::new(alg);
    for l in &leaves {
        f.push(*l, |_, _, _| {});
    }
    let root = root_of(alg, &leaves);
    assert_eq!(f.root(), root);
    assert_eq!(subtree_root(alg, &src, 0, n as u64).unwrap(), root);
    check_tree(alg, &src, |i| leaves[i as usize], n as u64, &input);
    // Rewriting an old leaf breaks consistency with every later size.
    if n >= 2 {
        let old = 1 + input.old % (n as u64 - 1);
        let mut forged = leaves.clone();
        let at = (input.index % old) as usize;
        forged[at] = alg.leaf(b"rewritten");
        let proof = consistency_proof(alg, &src, old, n as u64).unwrap();
        assert!(
            verify_consistency(
                alg,
                old,
                n as u64,
                &root_of(alg, &forged[..old as usize]),
                &root,
                &proof
            )
            .is_err()
        );
    }

    // A virtual tree of any size.
    let v = Virtual::new(alg, input.odd_leaf, alg.leaf(b"base"), alg.leaf(b"odd"));
    let size = input.big_size;
    // It agrees with the real thing where the real thing fits in memory.
    let m = (input.small_size % 70) as u64;
    let explicit: Vec<Hash> = (0..m).map(|i| v.leaf(i)).collect();
    assert_eq!(
        subtree_root(alg, &v, 0, m).unwrap(),
        root_of(alg, &explicit)
    );
    check_tree(alg, &v, |i| v.leaf(i), size, &input);
    if size > 0 {
        // The odd leaf is told from the others.
        let index = input.index % size;
        let root = subtree_root(alg, &v, 0, size).unwrap();
        let path = inclusion_proof(alg, &v, index, size).unwrap();
        let wrong = if index == v.odd {
            v.same[0]
        } else {
            v.with_odd[0]
        };
        assert!(verify_inclusion(alg, &wrong, index, size, &path, &root).is_err());
    }

    // Arbitrary proofs.
    let (index, size, old) = (input.raw_index, input.raw_size, input.raw_old);
    let path = &input.raw_path;
    if verify_inclusion(alg, &input.raw_leaf, index, size, path, &input.raw_root).is_ok() {
        let want = inclusion_proof(alg, &Blank, index, size).unwrap().len();
        assert_eq!(
            path.len(),
            want,
            "an inclusion proof of the wrong length verified"
        );
    }
    if verify_consistency(alg, old, size, &input.raw_old_root, &input.raw_root, path).is_ok() {
        let want = consistency_proof(alg, &Blank, old, size).unwrap().len();
        assert_eq!(
            path.len(),
            want,
            "a consistency proof of the wrong length verified"
        );
    }
    // Arbitrary paths against a real root: only the true path (there is one) verifies.
    if n > 0 {
        let index = index % n as u64;
        if verify_inclusion(alg, &leaves[index as usize], index, n as u64, path, &root).is_ok() {
            assert_eq!(*path, inclusion_proof(alg, &src, index, n as u64).unwrap());
        }
    }
});
