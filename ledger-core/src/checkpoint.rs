//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` form,
//! signed with Ed25519, so that existing note tools check them.
//!
//! Body: `<origin>\n<size>\n<base64 root>\n`. Note: the body, an empty line, then
//! one line per signature: `— <key name> <base64(key id ‖ signature)>\n`. The key
//! name is the origin; the key id is the first 4 bytes of
//! SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). A verifier key is written
//! `name+hex(key id)+base64(0x01 ‖ public key)`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _};

use crate::hash::Hash;
use crate::limits;

/// Signature algorithm byte of Ed25519 in C2SP signed notes.
const ALG_ED25519: u8 = 0x01;

/// A Merkle root as a checkpoint's third line writes it (standard base64), so that
/// a root printed anywhere else can be compared with a checkpoint by eye.
pub fn root_line(root: &Hash) -> String {
    B64.encode(root)
}

/// What a checkpoint commits to: the log's name, its size, and its Merkle root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// Merkle root of those entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            root_line(&self.root)
        )
    }

    fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = text.split('\n');
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("missing origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("missing size line"))?;
        let size = size_line
            .parse::<u64>()
            .ok()
            .filter(|_| size_line == "0" || !size_line.starts_with('0'))
            .ok_or_else(|| bad("size line is not a decimal number"))?;
        let root_line = lines.next().ok_or_else(|| bad("missing root line"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root line is not the base64 of 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// The size a note's body names, read before any signature is checked (to choose
/// the key that must have signed it, [`crate::rotation::KeyHistory`]).
pub(crate) fn claimed_size(note: &str) -> Result<u64, CheckpointError> {
    let split = note.rfind("\n\n").ok_or_else(|| {
        CheckpointError::Malformed("no empty line between body and signatures".into())
    })?;
    Ok(Checkpoint::parse_body(&note[..split + 1])?.size)
}

/// Why a checkpoint or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note or body does not have the required shape.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// A key string does not have the required shape.
    #[error("malformed key: {0}")]
    BadKey(String),
    /// No signature line from the given key.
    #[error("no signature by key {0:?} on this checkpoint")]
    NotSigned(String),
    /// A signature line from the given key does not verify.
    #[error("the signature by key {0:?} does not verify")]
    BadSignature(String),
    /// The checkpoint is for another log.
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The origin of the ledger being checked.
        expected: String,
        /// The origin line of the checkpoint.
        found: String,
    },
}

/// Checks that `origin` can name a log and its key: 1–256 bytes of printable ASCII
/// with no spaces and no `+` (the separator of C2SP key strings).
pub fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    let ok = !origin.is_empty()
        && origin.len() <= limits::ORIGIN_BYTES_MAX
        && origin.bytes().all(|b| b.is_ascii_graphic() && b != b'+');
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::BadKey(format!(
            "origin {origin:?} must be 1–{} printable ASCII characters without spaces or '+'",
            limits::ORIGIN_BYTES_MAX
        )))
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    crate::note::key_id(name, ALG_ED25519, public)
}

/// The ledger's signing key (kept in `signing.key`, mode 0600).
pub struct SigningKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new random key named `name` (the origin).
    pub fn generate(name: &str) -> Result<SigningKey, CheckpointError> {
        check_origin(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CheckpointError::BadKey(format!("no randomness: {e}")))?;
        Ok(SigningKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The key's name (the origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        let public = self.key.verifying_key();
        VerifierKey {
            name: self.name.clone(),
            id: key_id(&self.name, public.as_bytes()),
            key: public,
        }
    }

    /// The private key string, `PRIVATE+KEY+name+hexid+base64(0x01 ‖ seed)`.
    pub fn to_secret_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        let v = self.verifier();
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(v.id),
            B64.encode(raw)
        )
    }

    /// Parses a private key string.
    pub fn from_secret_string(s: &str) -> Result<SigningKey, CheckpointError> {
        let bad = |why: &str| CheckpointError::BadKey(why.to_string());
        let rest = s
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("missing PRIVATE+KEY+ prefix"))?;
        // Names never contain '+'; base64 may, so split from the left.
        let (name, id, raw) = crate::note::split_key_string(rest)
            .ok_or_else(|| bad("expected PRIVATE+KEY+name+id+base64 key"))?;
        // A name no note may carry would sign notes its own verifier refuses.
        check_origin(name).map_err(|e| bad(&format!("the key's name: {e}")))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let seed: [u8; 32] = raw[1..].try_into().expect("32 bytes");
        let key = SigningKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        };
        if hex::encode(key.verifier().id) != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(key)
    }

    /// Signs a checkpoint; returns the whole note text.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.verifier().id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.name)
    }
}

/// A public key that checks checkpoint signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// The key's name (the origin of the log it signs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id (the first four bytes of each signature blob it makes).
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// Checks a signed note and returns the checkpoint it carries.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let split = note.rfind("\n\n").ok_or_else(|| {
            CheckpointError::Malformed("no empty line between body and signatures".into())
        })?;
        let body = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(CheckpointError::Malformed(
                "signature block does not end with a newline".into(),
            ));
        }
        let cp = Checkpoint::parse_body(body)?;
        let mut found = false;
        for line in sigs.lines() {
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                CheckpointError::Malformed(format!(
                    "signature line {line:?} does not start with '— '"
                ))
            })?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| {
                CheckpointError::Malformed("signature line has no key name".into())
            })?;
            if name != self.name {
                continue;
            }
            let blob = B64
                .decode(b64)
                .map_err(|_| CheckpointError::Malformed("signature is not base64".into()))?;
            if blob.len() < 4 || blob[..4] != self.id {
                continue;
            }
            let sig: [u8; 64] = blob[4..]
                .try_into()
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(body.as_bytes(), &Signature::from_bytes(&sig))
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            found = true;
        }
        if !found {
            return Err(CheckpointError::NotSigned(self.name.clone()));
        }
        if cp.origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name.clone(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = CheckpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| CheckpointError::BadKey(why.to_string());
        let (name, id, raw) = crate::note::split_key_string(s)
            .ok_or_else(|| bad("expected name+keyid+base64 key"))?;
        check_origin(name)?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad(
                "not an Ed25519 verifier key (expected 0x01 followed by 32 bytes)",
            ));
        }
        let public: [u8; 32] = raw[1..].try_into().expect("32 bytes");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad("not a valid Ed25519 point"))?;
        let expected_id = key_id(name, &public);
        if hex::encode(expected_id) != id {
            return Err(bad("key id does not match name and key"));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            id: expected_id,
            key,
        })
    }
}

/// Splits a file of notes separated by empty lines (`checkpoints.txt`) into notes.
///
/// A note is its body lines, one empty line, then its signature lines (each starting
/// with `— `); the next note starts at the first line after them that is not a
/// signature line, with one empty line in between.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut cur = String::new();
    let mut in_sigs = false;
    for line in text.split_inclusive('\n') {
        if in_sigs && !line.starts_with('\u{2014}') {
            notes.push(std::mem::take(&mut cur));
            in_sigs = false;
            if line == "\n" {
                continue;
            }
        }
        if !in_sigs && line == "\n" {
            in_sigs = true;
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        notes.push(cur);
    }
    notes
}

/// The file in a ledger's directory holding its newest checkpoint that reached the
/// witness quorum of its `witness.policy`: the log's note with the witnesses'
/// cosignature lines after its signature (`ledger serve` writes it, atomically).
pub const COSIGNED_FILE: &str = "checkpoint.cosigned";

/// The newest cosigned checkpoint of the ledger in `dir`, if there is one and the
/// log's own signature on it verifies under `key`: (size, the note with its
/// cosignatures). Which cosignatures count is the reader's policy's business.
pub fn read_cosigned(
    dir: &std::path::Path,
    key: &crate::rotation::KeyHistory,
) -> Option<(u64, String)> {
    let note = std::fs::read_to_string(dir.join(COSIGNED_FILE)).ok()?;
    let cp = key.verify(&note).ok()?;
    Some((cp.size, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_strings_with_plus_in_base64_round_trip() {
        for _ in 0..64 {
            let k = SigningKey::generate("o").unwrap();
            let v: VerifierKey = k.verifier().to_string().parse().unwrap();
            assert_eq!(v, k.verifier());
            SigningKey::from_secret_string(&k.to_secret_string()).unwrap();
        }
    }

    #[test]
    fn sign_verify_and_key_strings_round_trip() {
        let k = SigningKey::generate("ledger.example/bergen-bv").unwrap();
        let cp = Checkpoint {
            origin: k.name().to_string(),
            size: 42,
            root: [7; 32],
        };
        let note = k.sign(&cp);
        let v: VerifierKey = k.verifier().to_string().parse().unwrap();
        assert_eq!(v.verify(&note).unwrap(), cp);
        let k2 = SigningKey::from_secret_string(&k.to_secret_string()).unwrap();
        assert_eq!(k2.sign(&cp), note, "Ed25519 signatures are deterministic");

        let tampered = note.replacen("42", "43", 1);
        assert_eq!(
            v.verify(&tampered),
            Err(CheckpointError::BadSignature(k.name().into()))
        );
        let other = SigningKey::generate("ledger.example/bergen-bv").unwrap();
        assert!(matches!(
            other.verifier().verify(&note),
            Err(CheckpointError::NotSigned(_))
        ));
    }

    #[test]
    fn note_files_split_back_into_notes() {
        let k = SigningKey::generate("o").unwrap();
        let a = k.sign(&Checkpoint {
            origin: "o".into(),
            size: 1,
            root: [1; 32],
        });
        let b = k.sign(&Checkpoint {
            origin: "o".into(),
            size: 2,
            root: [2; 32],
        });
        assert_eq!(
            split_notes(&format!("{a}\n{b}")),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(split_notes(&a), vec![a]);
    }

    #[test]
    fn origins_are_checked() {
        assert!(check_origin("ledger.example/x").is_ok());
        assert!(check_origin("a b").is_err());
        assert!(check_origin("a+b").is_err());
        assert!(check_origin("").is_err());
    }
}
