//! c2sp.org/tlog-proof@v1 against the Go reference (transparency-dev/merkle
//! `proof/tlog_proof_test.go`: the files `NewTLogProof` writes and the ones
//! `VerifyTLogProof` refuses) and against the published RFC 6962 inclusion vectors
//! (`../data/rfc6962_vectors.json`): a receipt made of a published path verifies under
//! a policy, and any change to it does not.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ledger_core::checkpoint::{Checkpoint, SigningKey};
use ledger_core::tlog_policy::Policy;
use ledger_core::tlog_proof::{ProofFileError, TlogProof};
use ledger_core::{HashAlg, merkle};
use serde_json::Value;

/// sha256("hash1"), sha256("hash2"), sha256("hash3"), base64, as the Go test builds them.
const HASH1: &str = "rzFuy5Go7nrpkhBwKy1HWPMM3eO/YePY54fXRoH5Cm4=";
const HASH2: &str = "5784L25ZFbP4hhm4ZiI+vx1RxMUyHMzeLp/3AKMlkIY=";
const HASH3: &str = "Qsqkq7e2D4+RTlv7jmUR19m9mBfecZt0JRdV2X/pe/E=";

fn hash(b64: &str) -> [u8; 32] {
    B64.decode(b64).unwrap().try_into().unwrap()
}

/// TestNewTLogProof's four cases, written out as the reference writes them: the
/// header, `extra` only when there is extra data, `index`, one hash per line, an
/// empty line, then the checkpoint verbatim.
#[test]
fn the_reference_files_byte_for_byte() {
    /// name, extra data, index, hashes, checkpoint, the file.
    type Case<'a> = (
        &'a str,
        Option<&'a [u8]>,
        u64,
        Vec<&'a str>,
        &'a str,
        &'a str,
    );
    let cases: [Case; 4] = [
        (
            "proof without extra data",
            None,
            5,
            vec![HASH1, HASH2],
            "test checkpoint\n",
            "c2sp.org/tlog-proof@v1\nindex 5\nrzFuy5Go7nrpkhBwKy1HWPMM3eO/YePY54fXRoH5Cm4=\n\
             5784L25ZFbP4hhm4ZiI+vx1RxMUyHMzeLp/3AKMlkIY=\n\ntest checkpoint\n",
        ),
        (
            "proof with extra data",
            Some(b"extra information"),
            10,
            vec![HASH1],
            "checkpoint data\n",
            "c2sp.org/tlog-proof@v1\nextra ZXh0cmEgaW5mb3JtYXRpb24=\nindex 10\n\
             rzFuy5Go7nrpkhBwKy1HWPMM3eO/YePY54fXRoH5Cm4=\n\ncheckpoint data\n",
        ),
        (
            "proof with empty hashes",
            None,
            0,
            vec![],
            "checkpoint\n",
            "c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n",
        ),
        (
            "proof with multiple hashes",
            None,
            15,
            vec![HASH1, HASH2, HASH3],
            "multi-hash checkpoint\n",
            "c2sp.org/tlog-proof@v1\nindex 15\nrzFuy5Go7nrpkhBwKy1HWPMM3eO/YePY54fXRoH5Cm4=\n\
             5784L25ZFbP4hhm4ZiI+vx1RxMUyHMzeLp/3AKMlkIY=\n\
             Qsqkq7e2D4+RTlv7jmUR19m9mBfecZt0JRdV2X/pe/E=\n\nmulti-hash checkpoint\n",
        ),
    ];
    for (name, extra, index, hashes, checkpoint, want) in cases {
        let proof = TlogProof {
            entry: extra.map(<[u8]>::to_vec),
            index,
            path: hashes.iter().map(|h| hash(h)).collect(),
            checkpoint: checkpoint.to_string(),
        };
        assert_eq!(proof.to_text(), want, "{name}: written");
        assert_eq!(TlogProof::parse(want).unwrap(), proof, "{name}: read back");
    }
}

/// TestVerifyTLogProofErrors' seven files, each refused for its own reason.
#[test]
fn the_reference_refusals() {
    let long = B64.encode([0u8; 64]);
    let cases = [
        (
            "wrong-header\nindex 0\n\ncheckpoint\n".to_string(),
            "first line",
        ),
        (
            "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n".into(),
            "extra is not base64",
        ),
        (
            "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n".into(),
            "no index line",
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n".into(),
            "not a decimal",
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n".into(),
            "not a decimal",
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n".into(),
            "base64 of 32 bytes",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{long}\n\ncheckpoint\n"),
            "base64 of 32 bytes",
        ),
    ];
    for (file, why) in cases {
        match TlogProof::parse(&file) {
            Err(ProofFileError::Malformed(m)) => assert!(m.contains(why), "{file:?}: {m}"),
            other => panic!("{file:?}: {other:?}"),
        }
    }
}

const NAME: &str = "example.com/rfc6962";

/// A fixed log key (seed 42…42), so the signed checkpoints are the same on every run.
fn log_key() -> SigningKey {
    let seed = [42u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let id = ledger_core::note::key_id(NAME, 0x01, &public);
    let mut raw = vec![0x01];
    raw.extend_from_slice(&seed);
    SigningKey::from_secret_string(&format!(
        "PRIVATE+KEY+{NAME}+{}+{}",
        hex::encode(id),
        B64.encode(raw)
    ))
    .unwrap()
}

#[test]
fn receipts_of_the_published_inclusion_paths_verify_and_altered_ones_do_not() {
    let v: Value = serde_json::from_str(include_str!("../data/rfc6962_vectors.json")).unwrap();
    let inputs: Vec<Vec<u8>> = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
        .collect();
    let alg = HashAlg::Sha256;
    let leaves: Vec<[u8; 32]> = inputs.iter().map(|i| alg.leaf(i)).collect();
    let key = log_key();
    let policy = Policy::parse(&format!("log {}\nquorum none\n", key.verifier())).unwrap();
    let cases = v["inclusion"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let (i, n) = (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let path: Vec<[u8; 32]> = c["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let root = merkle::root_of(alg, &leaves[..n as usize]);
        let note = key.sign(&Checkpoint {
            origin: NAME.into(),
            size: n,
            root,
        });
        let receipt = TlogProof {
            entry: Some(inputs[i as usize].clone()),
            index: i,
            path: path.clone(),
            checkpoint: note,
        };
        let text = receipt.to_text();
        let read = TlogProof::parse(&text).unwrap();
        let ok = read.verify(&policy, alg, None).unwrap();
        assert_eq!(
            (ok.checkpoint.size, ok.checkpoint.root),
            (n, root),
            "{i}/{n}"
        );
        // Another leaf's bytes, another index, a changed path hash, or the other hash
        // function: not included.
        let other = inputs[(i as usize + 1) % inputs.len()].clone();
        assert!(matches!(
            read.verify(&policy, alg, Some(&other)),
            Err(ProofFileError::NotIncluded { .. })
        ));
        let mut moved = read.clone();
        moved.index = (i + 1) % n;
        assert!(
            n == 1 || moved.verify(&policy, alg, None).is_err(),
            "{i}/{n}"
        );
        if !path.is_empty() {
            let mut bent = read.clone();
            bent.path[0][0] ^= 1;
            assert!(bent.verify(&policy, alg, None).is_err(), "{i}/{n}");
        }
        assert!(read.verify(&policy, HashAlg::Blake3, None).is_err());
        // A checkpoint under another key: the policy's log signature fails first.
        let stranger = SigningKey::generate(NAME).unwrap();
        let mut forged = read.clone();
        forged.checkpoint = stranger.sign(&Checkpoint {
            origin: NAME.into(),
            size: n,
            root,
        });
        assert!(matches!(
            forged.verify(&policy, alg, None),
            Err(ProofFileError::Policy(_))
        ));
    }
}
