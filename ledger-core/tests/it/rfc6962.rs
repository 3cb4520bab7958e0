//! The published RFC 6962 SHA-256 vectors (transparency-dev/merkle; provenance in
//! the fixture's `source`): roots, inclusion and consistency proofs, and the
//! negative cases, through our generic tree code.

use ledger_core::HashAlg;
use ledger_core::merkle::{self, root_of};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/rfc6962_vectors.json")).unwrap()
}

fn h(v: &Value) -> Option<[u8; 32]> {
    hex::decode(v.as_str().unwrap()).ok()?.try_into().ok()
}

fn hs(v: &Value) -> Option<Vec<[u8; 32]>> {
    v.as_array().unwrap().iter().map(h).collect()
}

fn leaves() -> Vec<[u8; 32]> {
    vectors()["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| HashAlg::Sha256.leaf(&hex::decode(l.as_str().unwrap()).unwrap()))
        .collect()
}

#[test]
fn published_roots() {
    let ls = leaves();
    let v = vectors();
    for r in v["roots"].as_array().unwrap() {
        let size = r["size"].as_u64().unwrap() as usize;
        assert_eq!(
            root_of(HashAlg::Sha256, &ls[..size]),
            h(&r["root"]).unwrap(),
            "size {size}"
        );
    }
}

#[test]
fn published_inclusion_proofs_are_generated_and_verify() {
    let alg = HashAlg::Sha256;
    let ls = leaves();
    let v = vectors();
    let cases = v["inclusion"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let (i, n) = (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let want = hs(&c["path"]).unwrap();
        let src = (alg, &ls[..n as usize]);
        assert_eq!(
            merkle::inclusion_proof(alg, &src, i, n).unwrap(),
            want,
            "index {i} size {n}"
        );
        let root = root_of(alg, &ls[..n as usize]);
        merkle::verify_inclusion(alg, &ls[i as usize], i, n, &want, &root).unwrap();
    }
}

#[test]
fn published_consistency_proofs_are_generated_and_verify() {
    let alg = HashAlg::Sha256;
    let ls = leaves();
    let v = vectors();
    for c in v["consistency"].as_array().unwrap() {
        let (m, n) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
        let want = hs(&c["proof"]).unwrap();
        let src = (alg, &ls[..n as usize]);
        assert_eq!(
            merkle::consistency_proof(alg, &src, m, n).unwrap(),
            want,
            "{m} → {n}"
        );
        let (r1, r2) = (
            root_of(alg, &ls[..m as usize]),
            root_of(alg, &ls[..n as usize]),
        );
        merkle::verify_consistency(alg, m, n, &r1, &r2, &want).unwrap();
    }
}

#[test]
fn published_negative_inclusion_cases_are_rejected() {
    let v = vectors();
    let cases = v["inclusion_invalid"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let why = c["why"].as_str().unwrap();
        let (Some(leaf), Some(root), Some(path)) = (h(&c["leaf"]), h(&c["root"]), hs(&c["path"]))
        else {
            continue; // a value that is not 32 bytes can never verify
        };
        let r = merkle::verify_inclusion(
            HashAlg::Sha256,
            &leaf,
            c["index"].as_u64().unwrap(),
            c["size"].as_u64().unwrap(),
            &path,
            &root,
        );
        assert!(r.is_err(), "accepted: {why}");
    }
}

#[test]
fn published_negative_consistency_cases_are_rejected() {
    let v = vectors();
    let cases = v["consistency_invalid"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let why = c["why"].as_str().unwrap();
        let (Some(r1), Some(r2), Some(proof)) = (h(&c["root1"]), h(&c["root2"]), hs(&c["proof"]))
        else {
            continue;
        };
        let r = merkle::verify_consistency(
            HashAlg::Sha256,
            c["size1"].as_u64().unwrap(),
            c["size2"].as_u64().unwrap(),
            &r1,
            &r2,
            &proof,
        );
        assert!(r.is_err(), "accepted: {why}");
    }
}
