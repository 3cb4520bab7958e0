//! Key rotation: a ledger's signing key replaced by a new one, announced in the log
//! itself (FORMAT.md §17).
//!
//! The announcement is an entry of version [`KEY_ENTRY_V`] whose `event` member is a
//! [`KeyAnnouncement`]. From the size that includes it, every checkpoint is signed by
//! the announced key; the key before it signs only the sizes below. A verifier holds
//! the keys it trusts, oldest first, with the size each one signs from: a
//! [`KeyHistory`], the text of `verifier.key`.

use std::fmt;
use std::str::FromStr;

use crate::checkpoint::{Checkpoint, CheckpointError, VerifierKey, claimed_size};

/// The entry version (`"v"`) of a key announcement. A ledger that holds one has
/// `"format": 3` in `ledger.json`; its events are still written as version 2.
pub const KEY_ENTRY_V: u8 = 3;

/// Why a key was replaced: recorded in the log, for the auditor reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// No copy of the signing key is left.
    Lost,
    /// Someone else may hold the signing key.
    Compromised,
    /// Replaced on schedule; the old key is destroyed.
    Scheduled,
}

impl RotationReason {
    /// The word the log records.
    pub fn name(self) -> &'static str {
        match self {
            RotationReason::Lost => "lost",
            RotationReason::Compromised => "compromised",
            RotationReason::Scheduled => "scheduled",
        }
    }
}

impl FromStr for RotationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lost" => Ok(RotationReason::Lost),
            "compromised" => Ok(RotationReason::Compromised),
            "scheduled" => Ok(RotationReason::Scheduled),
            _ => Err(format!(
                "{s:?} is not a reason for a key rotation (lost, compromised or scheduled)"
            )),
        }
    }
}

/// What a key entry says: from the next size on, `key` signs the log's checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAnnouncement {
    /// The new verifier key (named by the log's origin).
    pub key: VerifierKey,
    /// Why the key before it was replaced.
    pub reason: RotationReason,
}

/// The member order is the canonical (sorted) order, so serde writes canonical JSON.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    key: String,
    reason: RotationReason,
    #[serde(rename = "type")]
    kind: String,
}

const TYPE: &str = "key_rotated";

/// Why a key entry or a key history was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The announcement is not of the required shape.
    #[error("malformed key announcement: {0}")]
    Malformed(String),
    /// `verifier.key` is not a key history.
    #[error("malformed key history: {0}")]
    History(String),
    /// The log's key entries and the key history disagree.
    #[error("key rotation: {0}")]
    Announcement(String),
    /// A key string inside is not a valid key.
    #[error(transparent)]
    Key(#[from] CheckpointError),
}

impl KeyAnnouncement {
    /// The canonical bytes the entry holds as its `event`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Stored {
            key: self.key.to_string(),
            reason: self.reason,
            kind: TYPE.to_string(),
        })
        .expect("strings and an enum serialize")
    }

    /// Reads the `event` of a key entry of the log named `origin`, refusing anything
    /// but the canonical bytes of a valid announcement.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<KeyAnnouncement, RotationError> {
        let bad = |why: String| RotationError::Malformed(why);
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if stored.kind != TYPE {
            return Err(bad(format!("type {:?}, expected {TYPE:?}", stored.kind)));
        }
        let key: VerifierKey = stored.key.parse()?;
        if key.name() != origin {
            return Err(bad(format!(
                "the key is named {:?}, not by the log's origin {origin:?}",
                key.name()
            )));
        }
        let a = KeyAnnouncement {
            key,
            reason: stored.reason,
        };
        if a.canonical_bytes() != bytes {
            return Err(bad("not in canonical form".into()));
        }
        Ok(a)
    }
}

/// The keys that sign a log, oldest first, each with the first checkpoint size it
/// signs: the text of `verifier.key`. A ledger never rotated has one key, from 0,
/// and its `verifier.key` is that key's line alone, as before rotation existed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHistory {
    keys: Vec<(u64, VerifierKey)>,
}

impl KeyHistory {
    /// The history of a log signed by `key` alone.
    pub fn single(key: VerifierKey) -> KeyHistory {
        KeyHistory {
            keys: vec![(0, key)],
        }
    }

    /// The log's name (every key carries it).
    pub fn name(&self) -> &str {
        self.keys[0].1.name()
    }

    /// The key that signs new checkpoints.
    pub fn current(&self) -> &VerifierKey {
        &self.keys.last().expect("never empty").1
    }

    /// Every key with the first size it signs, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = (u64, &VerifierKey)> {
        self.keys.iter().map(|(from, k)| (*from, k))
    }

    /// The key that signs the checkpoint of `size`.
    pub fn key_for(&self, size: u64) -> &VerifierKey {
        let i = self.keys.partition_point(|(from, _)| *from <= size);
        &self.keys[i.max(1) - 1].1
    }

    /// The key a key entry at `seq` must announce: the one that signs from `seq + 1`.
    pub fn announced_at(&self, seq: u64) -> Option<&VerifierKey> {
        self.keys
            .iter()
            .skip(1)
            .find(|(from, _)| *from == seq + 1)
            .map(|(_, k)| k)
    }

    /// This history with `key` signing from `from` on: refused unless `from` is past
    /// every earlier key's start and `key` is new to the history and named alike.
    pub fn then(&self, key: VerifierKey, from: u64) -> Result<KeyHistory, RotationError> {
        let bad = |why: String| RotationError::History(why);
        if key.name() != self.name() {
            return Err(bad(format!(
                "key {key} is named {:?}, the log {:?}",
                key.name(),
                self.name()
            )));
        }
        if from <= self.keys.last().expect("never empty").0 {
            return Err(bad(format!(
                "key {key} would sign from size {from}, not after the key before it"
            )));
        }
        if self.keys.iter().any(|(_, k)| k.id() == key.id()) {
            return Err(bad(format!("key {key} is in the history already")));
        }
        let mut keys = self.keys.clone();
        keys.push((from, key));
        Ok(KeyHistory { keys })
    }

    /// Checks that the key entries of a log of `size` entries, as (seq, announced key)
    /// in log order, are exactly the history's rotations up to that size: every
    /// announced key is the one the history says signs from `seq + 1`, and no
    /// rotation the history holds within the log is missing from it.
    pub fn check_announcements(
        &self,
        announced: &[(u64, VerifierKey)],
        size: u64,
    ) -> Result<(), RotationError> {
        let bad = |why: String| RotationError::Announcement(why);
        let mut expected = self.keys.iter().skip(1).filter(|(from, _)| *from <= size);
        for (seq, key) in announced {
            match expected.next() {
                Some((from, k)) if *from == seq + 1 && k == key => {}
                Some((from, k)) if k == key => {
                    return Err(bad(format!(
                        "entry {seq} announces key {key}, which the key history says signs from \
                         size {from}, not {}",
                        seq + 1
                    )));
                }
                _ => {
                    return Err(bad(format!(
                        "entry {seq} announces key {key}, which the key history you hold does not \
                         name there: obtain the ledger's verifier.key from its operator, by a \
                         channel you trust, before trusting the new key"
                    )));
                }
            }
        }
        if let Some((from, k)) = expected.next() {
            return Err(bad(format!(
                "the key history says key {k} signs from size {from}, but entry {} does not \
                 announce it",
                from - 1
            )));
        }
        Ok(())
    }

    /// Checks a signed note by the key in force at the size it names.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let size = claimed_size(note)?;
        let key = self.key_for(size);
        key.verify(note).map_err(|e| match e {
            CheckpointError::NotSigned(_) if self.keys.len() > 1 => {
                CheckpointError::NotSigned(format!("{key} (the key in force at size {size})"))
            }
            e => e,
        })
    }
}

impl fmt::Display for KeyHistory {
    /// One line per key; every key after the first followed by a space and the size
    /// it signs from. No final newline (files add one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (from, key)) in self.keys.iter().enumerate() {
            if i == 0 {
                write!(f, "{key}")?;
            } else {
                write!(f, "\n{key} {from}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for KeyHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHistory({self})")
    }
}

impl FromStr for KeyHistory {
    type Err = RotationError;
    fn from_str(s: &str) -> Result<Self, RotationError> {
        let bad = |why: String| RotationError::History(why);
        let mut lines = s.trim().lines().enumerate();
        let first = match lines.next() {
            Some((_, l)) if !l.trim().is_empty() => l.trim(),
            _ => return Err(bad("empty: expected a verifier key".into())),
        };
        if first.contains(' ') {
            return Err(bad(
                "line 1: the first key signs from size 0 and has no size after it".into(),
            ));
        }
        let mut history = KeyHistory::single(first.parse()?);
        for (i, line) in lines {
            let (key, from) = line.trim().split_once(' ').ok_or_else(|| {
                bad(format!(
                    "line {}: expected a verifier key, a space and the size it signs from",
                    i + 1
                ))
            })?;
            let from: u64 = from
                .parse()
                .ok()
                .filter(|_| from.bytes().all(|b| b.is_ascii_digit()) && !from.starts_with('0'))
                .ok_or_else(|| {
                    bad(format!(
                        "line {}: {from:?} is not a size (a decimal number above 0)",
                        i + 1
                    ))
                })?;
            history = history
                .then(key.parse()?, from)
                .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        }
        Ok(history)
    }
}

impl From<VerifierKey> for KeyHistory {
    fn from(key: VerifierKey) -> KeyHistory {
        KeyHistory::single(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SigningKey;

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "o".into(),
            size,
            root: [size as u8; 32],
        }
    }

    #[test]
    fn each_key_signs_only_its_own_sizes() {
        let (a, b) = (
            SigningKey::generate("o").unwrap(),
            SigningKey::generate("o").unwrap(),
        );
        let h = KeyHistory::single(a.verifier())
            .then(b.verifier(), 5)
            .unwrap();
        assert!(h.verify(&a.sign(&cp(4))).is_ok());
        assert!(h.verify(&b.sign(&cp(5))).is_ok());
        assert!(h.verify(&b.sign(&cp(9))).is_ok());
        // The old key past its end, and the new key before its start, are refused.
        assert!(matches!(
            h.verify(&a.sign(&cp(5))),
            Err(CheckpointError::NotSigned(_))
        ));
        assert!(h.verify(&b.sign(&cp(4))).is_err());
        assert_eq!(h.current(), &b.verifier());
    }

    #[test]
    fn announcements_must_be_the_history_s_rotations() {
        let (a, b, c) = (
            SigningKey::generate("o").unwrap(),
            SigningKey::generate("o").unwrap(),
            SigningKey::generate("o").unwrap(),
        );
        let h = KeyHistory::single(a.verifier())
            .then(b.verifier(), 5)
            .unwrap();
        assert!(h.check_announcements(&[(4, b.verifier())], 9).is_ok());
        assert!(h.check_announcements(&[], 4).is_ok(), "a copy from before");
        assert!(h.check_announcements(&[], 5).is_err(), "not announced");
        assert!(h.check_announcements(&[(3, b.verifier())], 9).is_err());
        assert!(h.check_announcements(&[(4, c.verifier())], 9).is_err());
        assert!(
            h.check_announcements(&[(4, b.verifier()), (7, c.verifier())], 9)
                .is_err()
        );
    }

    #[test]
    fn histories_round_trip_and_bad_ones_are_refused() {
        let (a, b, c) = (
            SigningKey::generate("o").unwrap(),
            SigningKey::generate("o").unwrap(),
            SigningKey::generate("o").unwrap(),
        );
        let one = KeyHistory::single(a.verifier());
        assert_eq!(
            one.to_string(),
            a.verifier().to_string(),
            "as before rotation"
        );
        let h = one
            .then(b.verifier(), 5)
            .unwrap()
            .then(c.verifier(), 9)
            .unwrap();
        let text = format!("{h}\n");
        assert_eq!(text.parse::<KeyHistory>().unwrap(), h);
        let (va, vb) = (a.verifier(), b.verifier());
        for bad in [
            String::new(),
            format!("{va} 0"),
            format!("{va}\n{vb}"),
            format!("{va}\n{vb} 0"),
            format!("{va}\n{vb} 05"),
            format!("{va}\n{vb} +5"),
            format!("{va}\n{vb}  5"),
            format!("{va}\n{vb} 5\n{} 5", c.verifier()),
            format!("{va}\n{va} 5"),
            format!("{va}\n{} 5", SigningKey::generate("p").unwrap().verifier()),
        ] {
            assert!(bad.parse::<KeyHistory>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn announcements_are_canonical_and_name_the_log() {
        let k = SigningKey::generate("o").unwrap();
        let a = KeyAnnouncement {
            key: k.verifier(),
            reason: RotationReason::Lost,
        };
        let bytes = a.canonical_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"key":"{}","reason":"lost","type":"key_rotated"}}"#,
                k.verifier()
            )
        );
        assert_eq!(KeyAnnouncement::parse(&bytes, "o").unwrap(), a);
        assert!(KeyAnnouncement::parse(&bytes, "p").is_err());
        let spaced = String::from_utf8(bytes).unwrap().replace(",", ", ");
        assert!(KeyAnnouncement::parse(spaced.as_bytes(), "o").is_err());
        assert!(
            KeyAnnouncement::parse(
                format!(
                    r#"{{"key":"{}","reason":"bored","type":"key_rotated"}}"#,
                    k.verifier()
                )
                .as_bytes(),
                "o"
            )
            .is_err()
        );
    }
}
