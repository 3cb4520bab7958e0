//! Witness cosignatures, `cosignature/v1` (c2sp.org/tlog-cosignature), Ed25519:
//! a witness's statement that, as of a time, the largest consistent tree it has seen
//! for a log has this root.
//!
//! Signed message: `cosignature/v1\ntime <t>\n` followed by the checkpoint's note
//! text exactly as received (extension lines included). The line is
//! `— <name> base64(key id ‖ t as u64 big-endian ‖ 64-byte signature)`, and the key
//! id is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key). Keys are
//! written `name+hexid+base64(0x04 ‖ public key)` (verifier) and
//! `PRIVATE+KEY+name+hexid+base64(0x04 ‖ seed)` (the witness's own, secret).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _};

use crate::note::{NoteSignature, parse_line};

/// The signature type byte of timestamped Ed25519 cosignatures.
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Why a cosigner key or cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// A key string does not have the required shape.
    #[error("malformed witness key: {0}")]
    BadKey(String),
    /// The cosignature line does not have the required shape.
    #[error("malformed cosignature: {0}")]
    Malformed(String),
    /// The cosignature does not verify.
    #[error("the cosignature by {0:?} does not verify")]
    BadSignature(String),
}

fn bad_key(why: impl Into<String>) -> CosignatureError {
    CosignatureError::BadKey(why.into())
}

/// Checks a witness name: non-empty, printable ASCII without spaces or `+`
/// (a schema-less URL such as `witness.example/w1`).
fn check_name(name: &str) -> Result<(), CosignatureError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'+');
    if ok {
        Ok(())
    } else {
        Err(bad_key(format!(
            "name {name:?} must be 1–256 printable ASCII characters without spaces or '+'"
        )))
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    crate::note::key_id(name, TYPE_COSIGNATURE_V1, public)
}

/// The message a cosignature signs.
pub fn message(note_text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{note_text}")
}

/// A witness's own key (secret).
pub struct CosignerKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl CosignerKey {
    /// A new random key for the witness named `name`.
    pub fn generate(name: &str) -> Result<CosignerKey, CosignatureError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| bad_key(format!("no randomness: {e}")))?;
        Ok(CosignerKey::from_seed(name, seed))
    }

    /// The key of a known seed (tests and known-answer vectors).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> CosignerKey {
        CosignerKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> CosignerVerifier {
        let public = self.key.verifying_key();
        CosignerVerifier {
            name: self.name.clone(),
            id: key_id(&self.name, public.as_bytes()),
            key: public,
        }
    }

    /// The cosignature line (with its newline) over a checkpoint's note text at
    /// `time` (POSIX seconds).
    pub fn cosign(&self, note_text: &str, time: u64) -> String {
        let sig = self.key.sign(message(note_text, time).as_bytes());
        let mut signature = time.to_be_bytes().to_vec();
        signature.extend_from_slice(&sig.to_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.verifier().id,
            signature,
        }
        .line()
    }

    /// The secret key string.
    pub fn to_secret_string(&self) -> String {
        let mut raw = vec![TYPE_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.verifier().id),
            B64.encode(raw)
        )
    }

    /// Parses a secret key string.
    pub fn from_secret_string(s: &str) -> Result<CosignerKey, CosignatureError> {
        let rest = s
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad_key("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, raw) = crate::note::split_key_string(rest)
            .ok_or_else(|| bad_key("expected PRIVATE+KEY+name+id+base64 key"))?;
        check_name(name)?;
        if raw.len() != 33 || raw[0] != TYPE_COSIGNATURE_V1 {
            return Err(bad_key(
                "not a cosignature/v1 key (0x04 and a 32-byte seed)",
            ));
        }
        let key = CosignerKey::from_seed(name, raw[1..].try_into().expect("32 bytes"));
        if hex::encode(key.verifier().id) != id {
            return Err(bad_key("key id does not match the key"));
        }
        Ok(key)
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({})", self.name)
    }
}

/// A witness's public key: checks its cosignatures.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerVerifier {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl CosignerVerifier {
    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether a signature line claims to be this key's (name and key id).
    pub fn claims(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.id
    }

    /// Checks a signature line of this key over `note_text`; its timestamp.
    pub fn verify(&self, note_text: &str, sig: &NoteSignature) -> Result<u64, CosignatureError> {
        if !self.claims(sig) {
            return Err(CosignatureError::BadSignature(self.name.clone()));
        }
        if sig.signature.len() != 8 + 64 {
            return Err(CosignatureError::Malformed(format!(
                "the cosignature by {:?} is {} bytes, not 8 + 64",
                self.name,
                sig.signature.len() + 4
            )));
        }
        let time = u64::from_be_bytes(sig.signature[..8].try_into().expect("8 bytes"));
        if time > i64::MAX as u64 {
            return Err(CosignatureError::Malformed(
                "timestamp beyond 2^63 - 1".into(),
            ));
        }
        let s: [u8; 64] = sig.signature[8..].try_into().expect("64 bytes");
        self.key
            .verify_strict(
                message(note_text, time).as_bytes(),
                &Signature::from_bytes(&s),
            )
            .map_err(|_| CosignatureError::BadSignature(self.name.clone()))?;
        Ok(time)
    }

    /// Checks one cosignature line (with or without its newline) over `note_text`.
    pub fn verify_line(&self, note_text: &str, line: &str) -> Result<u64, CosignatureError> {
        let sig = parse_line(line.trim_end_matches('\n'))
            .map_err(|e| CosignatureError::Malformed(e.to_string()))?;
        self.verify(note_text, &sig)
    }
}

impl fmt::Display for CosignerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![TYPE_COSIGNATURE_V1];
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

impl fmt::Debug for CosignerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerVerifier({self})")
    }
}

impl FromStr for CosignerVerifier {
    type Err = CosignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, id, raw) = crate::note::split_key_string(s)
            .ok_or_else(|| bad_key("expected name+keyid+base64 key"))?;
        check_name(name)?;
        if raw.len() != 33 || raw[0] != TYPE_COSIGNATURE_V1 {
            return Err(bad_key(
                "not a cosignature/v1 verifier key (expected 0x04 followed by 32 bytes)",
            ));
        }
        let public: [u8; 32] = raw[1..].try_into().expect("32 bytes");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad_key("not a valid Ed25519 point"))?;
        let expected = key_id(name, &public);
        if hex::encode(expected) != id {
            return Err(bad_key("key id does not match name and key"));
        }
        Ok(CosignerVerifier {
            name: name.to_string(),
            id: expected,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
    /// FORMAT.md §14's size-2 checkpoint text.
    const TEXT: &str = "ledger.example/demo\n2\nAkkiJUScnea+sS1AC70HmCjkvd5aRq7KDbEmOX6SXuo=\n";

    fn key() -> CosignerKey {
        CosignerKey::from_seed(
            "witness.example/w1",
            hex::decode(SEED).unwrap().try_into().unwrap(),
        )
    }

    #[test]
    fn known_answer_key_id_vkey_and_line() {
        // Computed with Python `cryptography` from the spec alone (docs/dev notes §8 E).
        let v = key().verifier();
        assert_eq!(hex::encode(v.key_id()), "20324abe");
        assert_eq!(
            v.to_string(),
            "witness.example/w1+20324abe+BCmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X"
        );
        assert_eq!(
            key().cosign(TEXT, 1679315147),
            "\u{2014} witness.example/w1 IDJKvgAAAABkGFDLtnbhi9TW3OtUxnZNSeKBnB/EPhI5yZHtEjxhkmo8Ni0yXe8x0DPl/b+BO70GZe7Prg3TH5/kwWiyN+e8l3TJBQ==\n"
        );
        assert_eq!(
            message(TEXT, 1679315147).len(),
            98,
            "cosignature/v1, the time line, then the text"
        );
    }

    #[test]
    fn a_native_witness_vkey_from_the_wild_parses() {
        // transparency-dev/formats note_cosigv1_test.go.
        let v: CosignerVerifier =
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
                .parse()
                .unwrap();
        assert_eq!(v.name(), "remora.n621.de");
        // A log key (type 0x01) is not a witness key.
        let e = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
            .parse::<CosignerVerifier>()
            .unwrap_err();
        assert!(e.to_string().contains("0x04"), "{e}");
    }

    #[test]
    fn the_spec_examples_timestamp_is_read() {
        // c2sp.org/tlog-cosignature: 76 bytes, key id 8d66cf3f, time 1679315147.
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let sig = parse_line(line).unwrap();
        assert_eq!(hex::encode(sig.key_id), "8d66cf3f");
        assert_eq!(
            u64::from_be_bytes(sig.signature[..8].try_into().unwrap()),
            1679315147
        );
    }

    #[test]
    fn cosignatures_verify_and_forgeries_do_not() {
        let k = key();
        let v = k.verifier();
        let line = k.cosign(TEXT, 1700000000);
        assert_eq!(v.verify_line(TEXT, &line).unwrap(), 1700000000);
        // Another text, another time, another key: refused.
        let other = TEXT.replace("\n2\n", "\n3\n");
        assert!(v.verify_line(&other, &line).is_err());
        let mut sig = parse_line(line.trim_end()).unwrap();
        sig.signature[7] ^= 1;
        assert!(v.verify(TEXT, &sig).is_err());
        let stranger = CosignerKey::from_seed("witness.example/w1", [7; 32]);
        assert!(v.verify_line(TEXT, &stranger.cosign(TEXT, 1)).is_err());
        // Keys round-trip.
        let again = CosignerKey::from_secret_string(&k.to_secret_string()).unwrap();
        assert_eq!(again.verifier(), v);
        assert_eq!(v.to_string().parse::<CosignerVerifier>().unwrap(), v);
    }
}
