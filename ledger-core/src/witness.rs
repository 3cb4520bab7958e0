//! A witness (c2sp.org/tlog-witness): cosigns a log's checkpoint only if it is
//! consistent with the last checkpoint it cosigned for that log, so a log cannot show
//! two histories to the parties that rely on its witnesses.
//!
//! This module is the protocol's logic and its durable state, without HTTP (the
//! server maps [`AddError::status`] onto responses). The state is one small file per
//! log (`state/<hex sha256(origin)>.json`: size, root, and the note cosigned),
//! replaced atomically (write, fsync, rename, fsync the directory) before a
//! cosignature leaves [`Witness::add_checkpoint`], under one lock, so the check and
//! the update are one step and no two roots are ever cosigned for one size, whatever
//! the moment of a crash.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::checkpoint::VerifierKey;
use crate::cosignature::CosignerKey;
use crate::hash::{Hash, HashAlg};
use crate::merkle;
use crate::note::Note;

/// At most this many consistency proof lines (the protocol's limit).
pub const PROOF_LINES_MAX: usize = 63;
/// The largest request body read (the reference witness's limit).
pub const REQUEST_BYTES_MAX: usize = 16 * 1024;

/// A log the witness witnesses: its origin, its key, and its tree's hash function
/// (RFC 6962's structure with SHA-256, or with BLAKE3 for this project's BLAKE3
/// ledgers; schemas/FORMAT.md §7, §16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessedLog {
    /// The log's key; its name is the origin.
    pub key: VerifierKey,
    /// The first checkpoint size `key` signs: 0, or, after the log replaced its key
    /// (FORMAT.md §17), the size its key history gives the new key.
    pub key_from: u64,
    /// The hash function of its Merkle tree.
    pub hash: HashAlg,
}

/// Why a checkpoint was not cosigned, as the protocol answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// 400: the request is malformed, or its old size is beyond the checkpoint.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no signature of the log's key verifies.
    #[error("the checkpoint is not signed by the log's key: {0}")]
    NotSigned(String),
    /// 404: the witness does not witness this origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 409 with the witness's size: the client's old size is not the last cosigned.
    #[error("the last checkpoint cosigned for this log has size {0}")]
    Conflict(u64),
    /// 409 without a size: same size, another root. A split view.
    #[error(
        "split view: size {size} was cosigned with root {cosigned}, this checkpoint says {offered}"
    )]
    SplitView {
        /// The size.
        size: u64,
        /// The root the witness cosigned (hex).
        cosigned: String,
        /// The root offered (hex).
        offered: String,
    },
    /// 422: the consistency proof does not verify. A rewritten history, or a bad proof.
    #[error("the consistency proof from size {old} to {new} does not verify: {reason}")]
    BadProof {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
        /// Why.
        reason: String,
    },
    /// 500: the state could not be made durable; nothing was cosigned.
    #[error("the witness's state could not be saved: {0}")]
    State(String),
}

impl AddError {
    /// The HTTP status the protocol gives it.
    pub fn status(&self) -> u16 {
        match self {
            AddError::BadRequest(_) => 400,
            AddError::NotSigned(_) => 403,
            AddError::UnknownOrigin(_) => 404,
            AddError::Conflict(_) | AddError::SplitView { .. } => 409,
            AddError::BadProof { .. } => 422,
            AddError::State(_) => 500,
        }
    }
}

/// The last checkpoint cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// The log.
    pub origin: String,
    /// Its size.
    pub size: u64,
    /// Its root (hex).
    pub root: String,
    /// The checkpoint note as received, and the cosignature given.
    pub note: String,
}

/// A running witness: its key, the logs it witnesses, and its state.
pub struct Witness {
    key: CosignerKey,
    logs: HashMap<String, WitnessedLog>,
    state_dir: PathBuf,
    /// Per log, under its own lock: requests for different logs check and persist
    /// in parallel (their fsyncs share the file system's journal commits).
    latest: HashMap<String, Mutex<Option<Latest>>>,
}

/// The request of `add-checkpoint`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    /// The size the client believes the witness has.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint.
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: String,
}

impl AddRequest {
    /// Parses a request body: `old N`, up to 63 base64 hashes, an empty line, the
    /// checkpoint.
    pub fn parse(body: &[u8]) -> Result<AddRequest, AddError> {
        let bad = |why: &str| AddError::BadRequest(why.to_string());
        if body.len() > REQUEST_BYTES_MAX {
            return Err(bad("the request is larger than 16 KiB"));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("the request is not UTF-8"))?;
        let (first, mut rest) = text
            .split_once('\n')
            .ok_or_else(|| bad("no old size line"))?;
        let n = first
            .strip_prefix("old ")
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        let old = n
            .parse::<u64>()
            .ok()
            .filter(|_| n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())))
            .ok_or_else(|| bad("the old size is not a decimal without leading zeroes"))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| bad("no empty line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == PROOF_LINES_MAX {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let h: Hash = B64
                .decode(line)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("a proof line is not the base64 of 32 bytes"))?;
            proof.push(h);
        }
        if old == 0 && !proof.is_empty() {
            return Err(AddError::BadProof {
                old,
                new: 0,
                reason: "the proof from size 0 must be empty".into(),
            });
        }
        Ok(AddRequest {
            old,
            proof,
            checkpoint: rest.to_string(),
        })
    }

    /// The request a log sends a witness that holds size `old` of it: the consistency
    /// proof from `old` to the checkpoint `note` of `size` entries, read through the
    /// store (embedded or PostgreSQL alike).
    pub fn from_store(
        store: &dyn crate::Store,
        old: u64,
        size: u64,
        note: &str,
    ) -> Result<AddRequest, crate::store::StoreError> {
        Ok(AddRequest {
            old,
            proof: store.consistency_proof(old, size)?.path,
            checkpoint: note.to_string(),
        })
    }

    /// The request body.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

fn state_file(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.json",
        hex::encode(sha2::Sha256::digest(origin))
    ))
}

impl Witness {
    /// A witness with `key`, witnessing `logs`, its state in `state_dir` (created if
    /// missing; every state file there is read and checked).
    pub fn open(
        key: CosignerKey,
        logs: Vec<WitnessedLog>,
        state_dir: &Path,
    ) -> Result<Witness, AddError> {
        let io = |what: &str, e: std::io::Error| {
            AddError::State(format!("{what} {}: {e}", state_dir.display()))
        };
        std::fs::create_dir_all(state_dir).map_err(|e| io("create", e))?;
        let logs: HashMap<String, WitnessedLog> = logs
            .into_iter()
            .map(|l| (l.key.name().to_string(), l))
            .collect();
        let mut latest: HashMap<String, Mutex<Option<Latest>>> = HashMap::new();
        for origin in logs.keys() {
            latest.insert(origin.clone(), Mutex::new(None));
            let path = state_file(state_dir, origin);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let l: Latest = serde_json::from_slice(&bytes).map_err(|e| {
                        AddError::State(format!("{} is damaged: {e}", path.display()))
                    })?;
                    if &l.origin != origin {
                        return Err(AddError::State(format!(
                            "{} holds origin {:?}, not {origin:?}",
                            path.display(),
                            l.origin
                        )));
                    }
                    latest.insert(origin.clone(), Mutex::new(Some(l)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("read", e)),
            }
        }
        Ok(Witness {
            key,
            logs,
            state_dir: state_dir.to_path_buf(),
            latest,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The origins it witnesses.
    pub fn origins(&self) -> Vec<String> {
        self.logs.keys().cloned().collect()
    }

    /// The last checkpoint cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<Latest> {
        self.latest.get(origin)?.lock().expect("lock").clone()
    }

    /// Handles an `add-checkpoint` body at `now` (POSIX seconds): the cosignature
    /// line(s) to answer 200 with, or why not. Checks in the protocol's order:
    /// malformed (400), unknown origin (404), log signature (403), old size beyond
    /// the checkpoint (400), old size not the last cosigned (409 with it), same
    /// size with another root (409, a split view), consistency proof (422). The new
    /// state is durable before the cosignature is returned.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, AddError> {
        let req = AddRequest::parse(body)?;
        let note = Note::parse(&req.checkpoint)
            .map_err(|e| AddError::BadRequest(format!("the checkpoint: {e}")))?;
        let origin = note.text.split('\n').next().unwrap_or_default().to_string();
        let log = self
            .logs
            .get(&origin)
            .ok_or_else(|| AddError::UnknownOrigin(origin.clone()))?;
        let cp = log
            .key
            .verify(&req.checkpoint)
            .map_err(|e| AddError::NotSigned(e.to_string()))?;
        if cp.size < log.key_from {
            return Err(AddError::NotSigned(format!(
                "the log's key signs from size {}; size {} was its key's before",
                log.key_from, cp.size
            )));
        }
        if req.old > cp.size {
            return Err(AddError::BadRequest(format!(
                "old size {} is larger than the checkpoint's {}",
                req.old, cp.size
            )));
        }
        let mut latest = self.latest[&origin].lock().expect("lock");
        let (have_size, have_root) = match latest.as_ref() {
            Some(l) => (l.size, l.root.clone()),
            None => (0, hex::encode(log.hash.empty())),
        };
        if req.old != have_size {
            return Err(AddError::Conflict(have_size));
        }
        let root_hex = hex::encode(cp.root);
        if req.old == cp.size {
            if root_hex != have_root && cp.size > 0 {
                return Err(AddError::SplitView {
                    size: cp.size,
                    cosigned: have_root,
                    offered: root_hex,
                });
            }
            if !req.proof.is_empty() {
                return Err(AddError::BadProof {
                    old: req.old,
                    new: cp.size,
                    reason: "the proof between equal sizes must be empty".into(),
                });
            }
        } else if req.old > 0 {
            let old_root: Hash = hex::decode(&have_root)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| AddError::State("a stored root is not 32 bytes".into()))?;
            merkle::verify_consistency(log.hash, req.old, cp.size, &old_root, &cp.root, &req.proof)
                .map_err(|e| AddError::BadProof {
                    old: req.old,
                    new: cp.size,
                    reason: e.to_string(),
                })?;
        }
        let line = self.key.cosign(&note.text, now);
        let next = Latest {
            origin: origin.clone(),
            size: cp.size,
            root: root_hex,
            note: format!("{}{line}", req.checkpoint),
        };
        self.persist(&next)?;
        *latest = Some(next);
        Ok(line)
    }

    fn persist(&self, l: &Latest) -> Result<(), AddError> {
        let path = state_file(&self.state_dir, &l.origin);
        let tmp = path.with_extension("json.tmp");
        let fail = |what: &str, e: std::io::Error| {
            AddError::State(format!("{what} {}: {e}", path.display()))
        };
        let bytes = serde_json::to_vec(l).expect("state serializes");
        let mut f = std::fs::File::create(&tmp).map_err(|e| fail("create", e))?;
        f.write_all(&bytes).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("fsync", e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| fail("rename", e))?;
        std::fs::File::open(&self.state_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync the directory of", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, SigningKey};
    use crate::cosignature::CosignerVerifier;

    const ORIGIN: &str = "ledger.example/witnessed";

    struct Tree {
        alg: HashAlg,
        leaves: Vec<Hash>,
    }

    impl Tree {
        fn new(alg: HashAlg, n: usize) -> Tree {
            Tree {
                alg,
                leaves: (0..n)
                    .map(|i| alg.leaf(format!("entry {i}").as_bytes()))
                    .collect(),
            }
        }
        fn root(&self, n: usize) -> Hash {
            merkle::root_of(self.alg, &self.leaves[..n])
        }
        fn proof(&self, old: usize, new: usize) -> Vec<Hash> {
            let src = (self.alg, &self.leaves[..]);
            merkle::consistency_proof(self.alg, &src, old as u64, new as u64).unwrap()
        }
    }

    fn note(log: &SigningKey, tree: &Tree, n: usize) -> String {
        log.sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: n as u64,
            root: tree.root(n),
        })
    }

    fn body(old: usize, proof: &[Hash], checkpoint: &str) -> Vec<u8> {
        AddRequest {
            old: old as u64,
            proof: proof.to_vec(),
            checkpoint: checkpoint.to_string(),
        }
        .to_body()
        .into_bytes()
    }

    fn witness(dir: &Path, log: &SigningKey, alg: HashAlg) -> Witness {
        Witness::open(
            CosignerKey::from_seed("witness.example/w1", [5; 32]),
            vec![WitnessedLog {
                key: log.verifier(),
                key_from: 0,
                hash: alg,
            }],
            dir,
        )
        .unwrap()
    }

    #[test]
    fn every_status_of_the_protocol_in_order() {
        for alg in [HashAlg::Sha256, HashAlg::Blake3] {
            let tmp = tempfile::tempdir().unwrap();
            let log = SigningKey::generate(ORIGIN).unwrap();
            let w = witness(tmp.path(), &log, alg);
            let tree = Tree::new(alg, 20);
            let v: CosignerVerifier =
                CosignerKey::from_seed("witness.example/w1", [5; 32]).verifier();

            // First contact: old 0, no proof: cosigned, and the line verifies.
            let cp8 = note(&log, &tree, 8);
            let line = w.add_checkpoint(&body(0, &[], &cp8), 1000).unwrap();
            let text = Note::parse(&cp8).unwrap().text;
            assert_eq!(v.verify_line(&text, &line).unwrap(), 1000);
            assert_eq!(w.latest(ORIGIN).unwrap().size, 8);

            // 409 with the size when the client is behind or ahead.
            let cp12 = note(&log, &tree, 12);
            let e = w.add_checkpoint(&body(0, &[], &cp12), 1).unwrap_err();
            assert_eq!((e.status(), e.clone()), (409, AddError::Conflict(8)));
            let e = w
                .add_checkpoint(&body(9, &tree.proof(9, 12), &cp12), 1)
                .unwrap_err();
            assert_eq!(e, AddError::Conflict(8));
            // 422: a proof that does not lead from 8 to 12.
            let e = w
                .add_checkpoint(&body(8, &tree.proof(7, 12), &cp12), 1)
                .unwrap_err();
            assert_eq!(e.status(), 422, "{e}");
            // 200: a good proof.
            w.add_checkpoint(&body(8, &tree.proof(8, 12), &cp12), 2)
                .unwrap();
            // The same checkpoint again: cosigned again (old = size, same root).
            w.add_checkpoint(&body(12, &[], &cp12), 3).unwrap();
            // 409 without a size: size 12 with another root (a fork).
            let fork = Tree::new(alg, 11);
            let mut forked = fork.leaves.clone();
            forked.push(alg.leaf(b"rewritten"));
            let fork = Tree {
                alg,
                leaves: forked,
            };
            let e = w
                .add_checkpoint(&body(12, &[], &note(&log, &fork, 12)), 4)
                .unwrap_err();
            assert!(matches!(e, AddError::SplitView { size: 12, .. }), "{e}");
            // A fork that extends: its proof from 12 cannot verify: 422.
            let mut longer = fork.leaves.clone();
            longer.extend((0..4).map(|i| alg.leaf(&[i])));
            let fork = Tree {
                alg,
                leaves: longer,
            };
            let e = w
                .add_checkpoint(&body(12, &fork.proof(12, 16), &note(&log, &fork, 16)), 5)
                .unwrap_err();
            assert_eq!(e.status(), 422);
            // 400: old beyond the checkpoint; garbage.
            let e = w.add_checkpoint(&body(13, &[], &cp12), 1).unwrap_err();
            assert_eq!(e.status(), 400);
            for garbage in [
                &b"old 012\n\n"[..],
                b"new 1\n\n",
                b"old 1\nnot base64\n\n",
                b"",
            ] {
                assert_eq!(w.add_checkpoint(garbage, 1).unwrap_err().status(), 400);
            }
            // 403: signed by another key under the same origin.
            let impostor = SigningKey::generate(ORIGIN).unwrap();
            let e = w
                .add_checkpoint(
                    &body(12, &tree.proof(12, 16), &note(&impostor, &tree, 16)),
                    1,
                )
                .unwrap_err();
            assert_eq!(e.status(), 403);
            // 404: an origin it does not witness.
            let other = SigningKey::generate("ledger.example/other").unwrap();
            let cp = other.sign(&Checkpoint {
                origin: "ledger.example/other".into(),
                size: 1,
                root: [1; 32],
            });
            assert_eq!(
                w.add_checkpoint(&body(0, &[], &cp), 1)
                    .unwrap_err()
                    .status(),
                404
            );
            // Nothing refused moved the state.
            assert_eq!(w.latest(ORIGIN).unwrap().size, 12);
        }
    }

    #[test]
    fn the_state_survives_a_restart_and_never_goes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let log = SigningKey::generate(ORIGIN).unwrap();
        let tree = Tree::new(HashAlg::Sha256, 10);
        {
            let w = witness(tmp.path(), &log, HashAlg::Sha256);
            w.add_checkpoint(&body(0, &[], &note(&log, &tree, 5)), 1)
                .unwrap();
        }
        let w = witness(tmp.path(), &log, HashAlg::Sha256);
        assert_eq!(w.latest(ORIGIN).unwrap().size, 5);
        assert_eq!(
            w.add_checkpoint(&body(0, &[], &note(&log, &tree, 9)), 1)
                .unwrap_err(),
            AddError::Conflict(5)
        );
        w.add_checkpoint(&body(5, &tree.proof(5, 9), &note(&log, &tree, 9)), 2)
            .unwrap();
        // A damaged state file is refused at open, never taken for "no state".
        let file = state_file(tmp.path(), ORIGIN);
        std::fs::write(&file, b"{\"origin\":").unwrap();
        assert!(
            Witness::open(
                CosignerKey::from_seed("witness.example/w1", [5; 32]),
                vec![WitnessedLog {
                    key: log.verifier(),
                    key_from: 0,
                    hash: HashAlg::Sha256
                }],
                tmp.path()
            )
            .is_err()
        );
    }
}

/// Known answers from transparency-dev/merkle `testdata/consistency/1/happy-path.json`
/// (SHA-256, RFC 6962): what the witness's 422 check accepts and refuses.
#[cfg(test)]
mod known_answers {
    use super::*;

    fn h(s: &str) -> Hash {
        B64.decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn the_go_references_consistency_vector_holds_and_its_corruptions_do_not() {
        let root1 = h("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=");
        let root2 = h("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=");
        let proof = [
            h("lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c="),
            h("Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4="),
            h("a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="),
        ];
        let alg = HashAlg::Sha256;
        merkle::verify_consistency(alg, 1, 8, &root1, &root2, &proof).unwrap();
        // wrong-root1, wrong-root2, truncated-proof, trailing-garbage, swapped sizes.
        let mut bad_root = root1;
        bad_root[0] ^= 1;
        assert!(merkle::verify_consistency(alg, 1, 8, &bad_root, &root2, &proof).is_err());
        assert!(merkle::verify_consistency(alg, 1, 8, &root1, &bad_root, &proof).is_err());
        assert!(merkle::verify_consistency(alg, 1, 8, &root1, &root2, &proof[..2]).is_err());
        let mut longer = proof.to_vec();
        longer.push(root1);
        assert!(merkle::verify_consistency(alg, 1, 8, &root1, &root2, &longer).is_err());
        assert!(merkle::verify_consistency(alg, 8, 1, &root2, &root1, &proof).is_err());
        // Under BLAKE3 the same bytes prove nothing.
        assert!(merkle::verify_consistency(HashAlg::Blake3, 1, 8, &root1, &root2, &proof).is_err());
    }
}
