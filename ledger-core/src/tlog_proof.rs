//! Per-entry receipts: c2sp.org/tlog-proof@v1 files a sender keeps to prove, with no
//! network and no ledger, that its event was recorded in the log a witness quorum
//! vouches for.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the entry's stored bytes>
//! index <seq>
//! <base64 hash>…            the inclusion path, leaf's sibling first
//!
//! <the checkpoint note, with the log's signature and the witnesses' cosignatures>
//! ```
//!
//! `extra` carries the entry itself (the event and its envelope), so the receipt
//! stands alone: the leaf is `H(0x00 ‖ extra)`. It is not trusted as such: it counts
//! only because its hash leads, through the path, to a root the log signed and the
//! witnesses cosigned. The hash is the log's (SHA-256, as the spec assumes, or
//! BLAKE3 for BLAKE3 ledgers: schemas/FORMAT.md §7, §16).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::{Hash, HashAlg};
use crate::merkle;
use crate::store::{Store, StoreError};
use crate::tlog_policy::{Policy, PolicyError, Verified};

/// The first line of a receipt.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a receipt could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ProofFileError {
    /// The file is not a tlog-proof.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The checkpoint fails the policy (log signature, cosignatures, quorum).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The entry is not in the checkpoint's tree (a forged or altered receipt, or the
    /// wrong hash function).
    #[error(
        "the entry at index {index} is not included in the checkpoint of size {size}: {reason}"
    )]
    NotIncluded {
        /// The index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// The entry is recorded but no checkpoint covers it yet.
    #[error(
        "entry {seq} is recorded, but the newest checkpoint covers {size} entries; a receipt \
         needs a checkpoint that covers it (the next one is signed within a second of appends)"
    )]
    NotYetCheckpointed {
        /// The entry.
        seq: u64,
        /// The newest checkpoint's size.
        size: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A receipt: one entry's inclusion proof with its checkpoint, as a tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// The entry's stored bytes (the `extra` line), if carried.
    pub entry: Option<Vec<u8>>,
    /// The entry's seq.
    pub index: u64,
    /// The inclusion path.
    pub path: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The receipt of entry `seq` against the signed `checkpoint` note (which must
    /// cover it), carrying the entry.
    pub fn build(
        store: &dyn Store,
        seq: u64,
        checkpoint: &str,
    ) -> Result<TlogProof, ProofFileError> {
        let cp = store
            .verifier_key()
            .verify(checkpoint)
            .map_err(|e| ProofFileError::Malformed(format!("the checkpoint: {e}")))?;
        if seq >= cp.size {
            return Err(ProofFileError::NotYetCheckpointed { seq, size: cp.size });
        }
        let proof = store.inclusion_proof(seq, cp.size)?;
        Ok(TlogProof {
            entry: Some(store.entry(seq)?),
            index: seq,
            path: proof.path,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(e) = &self.entry {
            out.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Reads a receipt file.
    pub fn parse(text: &str) -> Result<TlogProof, ProofFileError> {
        let bad = |why: &str| ProofFileError::Malformed(why.to_string());
        let mut rest = text;
        let mut next = || -> Result<&str, ProofFileError> {
            let (line, after) = rest.split_once('\n').ok_or_else(|| bad("cut short"))?;
            rest = after;
            Ok(line)
        };
        if next()? != HEADER {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = next()?;
        let mut entry = None;
        if let Some(b) = line.strip_prefix("extra ") {
            entry = Some(B64.decode(b).map_err(|_| bad("extra is not base64"))?);
            line = next()?;
        }
        let n = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("no index line"))?;
        let index = n
            .parse::<u64>()
            .ok()
            .filter(|_| n == "0" || !n.starts_with('0'))
            .ok_or_else(|| bad("the index is not a decimal without leading zeroes"))?;
        let mut path = Vec::new();
        loop {
            let line = next()?;
            if line.is_empty() {
                break;
            }
            if path.len() == 64 {
                return Err(bad("more than 64 path lines"));
            }
            path.push(
                B64.decode(line)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("a path line is not the base64 of 32 bytes"))?,
            );
        }
        Ok(TlogProof {
            entry,
            index,
            path,
            checkpoint: rest.to_string(),
        })
    }

    /// Checks it offline: the checkpoint under the policy (a log's signature and the
    /// witness quorum), then the entry's inclusion under `hash`. `entry` overrides
    /// the carried one.
    pub fn verify(
        &self,
        policy: &Policy,
        hash: HashAlg,
        entry: Option<&[u8]>,
    ) -> Result<Verified, ProofFileError> {
        let entry = entry.or(self.entry.as_deref()).ok_or_else(|| {
            ProofFileError::Malformed("no entry: it carries none and none was given".into())
        })?;
        let verified = policy.verify(&self.checkpoint)?;
        let cp = &verified.checkpoint;
        merkle::verify_inclusion(
            hash,
            &hash.leaf(entry),
            self.index,
            cp.size,
            &self.path,
            &cp.root,
        )
        .map_err(|e| ProofFileError::NotIncluded {
            index: self.index,
            size: cp.size,
            reason: e.to_string(),
        })?;
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_shapes_round_trip() {
        // transparency-dev/formats proof/tlog_proof_test.go TestMarshal.
        let r = TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n").unwrap();
        assert_eq!((r.index, r.path.len(), r.entry.is_none()), (0, 0, true));
        assert_eq!(r.checkpoint, "checkpoint\n");
        let h = [7u8; 32];
        let text = format!(
            "c2sp.org/tlog-proof@v1\nextra {}\nindex 10\n{}\n\ncheckpoint data\n",
            B64.encode(b"extra"),
            B64.encode(h)
        );
        let r = TlogProof::parse(&text).unwrap();
        assert_eq!(r.entry.as_deref(), Some(&b"extra"[..]));
        assert_eq!((r.index, r.path.clone()), (10, vec![h]));
        assert_eq!(r.to_text(), text);
        for bad in [
            "c2sp.org/tlog-proof@v2\nindex 0\n\nc\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\nc\n",
            "c2sp.org/tlog-proof@v1\nindex 0\nnot-base64!\n\nc\n",
            "c2sp.org/tlog-proof@v1\nindex 0\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
