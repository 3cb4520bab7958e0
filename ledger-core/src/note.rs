//! C2SP signed notes (c2sp.org/signed-note), read generically: the text, then an
//! empty line, then signature lines `— <key name> <base64(key id ‖ signature)>`.
//! Which signatures mean what is up to the verifiers ([`crate::checkpoint`] for the
//! log's Ed25519 key, [`crate::cosignature`] for witnesses); this module only splits
//! and checks the form, so a witness cosigns the text it received byte for byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// At most this many signature lines are read (the spec asks for at least 16; Go's
/// note package stops at 100).
pub const SIGNATURES_MAX: usize = 100;

/// Why a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not have the required form.
    #[error("malformed note: {0}")]
    Malformed(String),
}

fn bad(why: impl Into<String>) -> NoteError {
    NoteError::Malformed(why.into())
}

/// A key id: the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ key type ‖ public key)`
/// (0x01 a log's Ed25519 key, 0x04 a witness's cosignature/v1 key).
pub fn key_id(name: &str, key_type: u8, public: &[u8]) -> [u8; 4] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, key_type]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// Splits a key string `<name>+<hex id>+<base64 key>` at its first two `+` (names
/// never hold one; base64 may) and decodes the key; `None` if it has not that shape.
pub(crate) fn split_key_string(s: &str) -> Option<(&str, &str, Vec<u8>)> {
    let mut parts = s.trim().splitn(3, '+');
    let (name, id, raw) = (parts.next()?, parts.next()?, parts.next()?);
    Some((name, id, B64.decode(raw).ok()?))
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key's name.
    pub name: String,
    /// The key id: the first four bytes of the signature blob.
    pub key_id: [u8; 4],
    /// The rest of the blob (for Ed25519, the 64-byte signature; for a cosignature,
    /// an 8-byte timestamp and the signature).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// A signed note, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, with its final newline, as received.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a note at its last empty line and reads every signature line. The
    /// whole note must be UTF-8 without control characters other than newline, and
    /// end with a newline; key names are non-empty, without spaces or `+`.
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("control character in the note"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no empty line between text and signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(bad("the last signature line does not end with a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs.lines() {
            if signatures.len() == SIGNATURES_MAX {
                return Err(bad(format!("more than {SIGNATURES_MAX} signatures")));
            }
            signatures.push(parse_line(line)?);
        }
        if signatures.is_empty() {
            return Err(bad("no signature lines"));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note again: text, empty line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }
}

/// Reads one signature line (without its newline).
pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
    let rest = line
        .strip_prefix("\u{2014} ")
        .ok_or_else(|| bad(format!("signature line {line:?} does not start with '— '")))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| bad("signature line has no key name"))?;
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(bad(format!(
            "key name {name:?} is empty or has a space or '+'"
        )));
    }
    let blob = B64
        .decode(b64)
        .map_err(|_| bad(format!("the signature of {name:?} is not base64")))?;
    if blob.len() < 5 {
        return Err(bad(format!("the signature of {name:?} is too short")));
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: blob[..4].try_into().expect("4 bytes"),
        signature: blob[4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang/mod sumdb/note note_test.go: a note with two signatures.
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n\
        \u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn reads_the_go_reference_note_and_writes_it_back() {
        let n = Note::parse(GO_NOTE).unwrap();
        assert_eq!(n.signatures.len(), 2);
        assert_eq!(n.signatures[0].name, "PeterNeumann");
        assert_eq!(hex::encode(n.signatures[0].key_id), "c74f20a3");
        assert_eq!(n.signatures[1].key_id, [0xaf, 0x0c, 0xfe, 0x78]);
        assert!(n.text.ends_with("problem is.\n"));
        assert_eq!(n.to_text(), GO_NOTE);
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let cases = [
            (format!("{GO_NOTE}Unexpected line.\n"), "does not start"),
            (GO_NOTE.trim_end().to_string(), "newline"),
            (format!("\u{1}{GO_NOTE}"), "control"),
            ("text\n".to_string(), "no empty line"),
        ];
        for (note, why) in cases {
            let e = Note::parse(&note).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let sig = GO_NOTE.lines().nth(3).unwrap();
        let many = format!("t\n\n{}", format!("{sig}\n").repeat(101));
        assert!(
            Note::parse(&many)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let hundred = format!("t\n\n{}", format!("{sig}\n").repeat(100));
        assert_eq!(Note::parse(&hundred).unwrap().signatures.len(), 100);
    }
}
