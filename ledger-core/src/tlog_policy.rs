//! Witness policies (c2sp.org/tlog-policy): which logs, which witnesses, and how
//! many of them must have cosigned a checkpoint before a reader trusts it.
//!
//! ```text
//! log ledger.example/bergen-bv+7b8488d1+AQOh…            # the log's key (type 0x01)
//! witness tilsyn witness.tilsyn.example+20324abe+BCms… https://witness.tilsyn.example
//! witness politi witness.politiet.example+1a2b3c4d+BOvN…
//! group both all tilsyn politi
//! quorum both
//! ```
//!
//! `group <name> all|any|<k> <member>…`: satisfied when at least k of its members are
//! (a member is a witness or an earlier group; each name is a member at most once in
//! the file). `quorum none` needs no cosignature.

use std::collections::HashSet;

use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::cosignature::CosignerVerifier;
use crate::note::Note;

/// Why a policy file, or a checkpoint under it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy file is malformed: where and why.
    #[error("policy line {line}: {reason}")]
    Malformed {
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint is not signed by any of the policy's logs.
    #[error("the checkpoint is not signed by a log this policy names: {0}")]
    NotSignedByLog(String),
    /// A cosignature claiming a known witness's key does not verify.
    #[error("the cosignature of witness {0:?} does not verify: the note is refused")]
    BadCosignature(String),
    /// Not enough witnesses cosigned.
    #[error("the witness quorum {quorum:?} is not met: cosigned by {cosigned:?}")]
    QuorumNotMet {
        /// The quorum's name.
        quorum: String,
        /// The witnesses whose cosignatures verified.
        cosigned: Vec<String>,
    },
}

/// A witness the policy names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// Its name in the policy.
    pub name: String,
    /// Its key.
    pub key: CosignerVerifier,
    /// Its submission prefix, if given.
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    k: usize,
    members: Vec<Member>,
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<(VerifierKey, Option<String>)>,
    witnesses: Vec<Witness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
}

/// What a checkpoint showed under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The witnesses (policy names) whose cosignatures verified, with their time.
    pub cosigned: Vec<(String, u64)>,
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut p = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        let mut used: HashSet<String> = HashSet::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let bad = |reason: String| PolicyError::Malformed { line, reason };
            if let Some(b) = raw
                .bytes()
                .find(|&b| b != b'\t' && !(0x20..=0x7e).contains(&b) && b < 0x80)
            {
                return Err(bad(format!("byte 0x{b:02x} is not allowed")));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            if words.is_empty() || words[0].starts_with('#') {
                continue;
            }
            match words[0] {
                "log" => {
                    let (key, url) = match words[1..] {
                        [k] => (k, None),
                        [k, u] => (k, Some(u.to_string())),
                        _ => return Err(bad("log takes a key and an optional URL".into())),
                    };
                    let key: VerifierKey = key.parse().map_err(|e| bad(format!("log key: {e}")))?;
                    if p.logs.iter().any(|(k, _)| *k == key) {
                        return Err(bad("this log key is listed twice".into()));
                    }
                    p.logs.push((key, url));
                }
                "witness" => {
                    let (name, key, url) = match words[1..] {
                        [n, k] => (n, k, None),
                        [n, k, u] => (n, k, Some(u.to_string())),
                        _ => {
                            return Err(bad(
                                "witness takes a name, a key and an optional URL".into()
                            ));
                        }
                    };
                    p.define(name, &bad)?;
                    let key: CosignerVerifier =
                        key.parse().map_err(|e| bad(format!("witness key: {e}")))?;
                    if p.witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(bad("this witness key is listed twice".into()));
                    }
                    p.witnesses.push(Witness {
                        name: name.to_string(),
                        key,
                        url,
                    });
                }
                "group" => {
                    let [_, name, threshold, members @ ..] = &words[..] else {
                        return Err(bad("group takes a name, all|any|k and members".into()));
                    };
                    if members.is_empty() {
                        return Err(bad("a group needs at least one member".into()));
                    }
                    p.define(name, &bad)?;
                    let mut list = Vec::new();
                    for m in members {
                        if !used.insert(m.to_string()) {
                            return Err(bad(format!("{m:?} is a member more than once")));
                        }
                        list.push(p.member(m).ok_or_else(|| {
                            bad(format!("{m:?} is not a witness or group defined above"))
                        })?);
                    }
                    let n = list.len();
                    let k = match *threshold {
                        "all" => n,
                        "any" => 1,
                        t => t
                            .parse::<usize>()
                            .ok()
                            .filter(|k| (1..=n).contains(k) && !t.starts_with('0'))
                            .ok_or_else(|| {
                                bad(format!("threshold {t:?} is not all, any or 1..={n}"))
                            })?,
                    };
                    p.groups.push(Group {
                        name: name.to_string(),
                        k,
                        members: list,
                    });
                }
                "quorum" => {
                    if quorum_seen {
                        return Err(bad("a policy has exactly one quorum line".into()));
                    }
                    quorum_seen = true;
                    let [_, name] = &words[..] else {
                        return Err(bad("quorum takes one name".into()));
                    };
                    if *name != "none" {
                        p.quorum = Some(p.member(name).ok_or_else(|| {
                            bad(format!("{name:?} is not a witness or group defined above"))
                        })?);
                    }
                }
                other => return Err(bad(format!("unknown keyword {other:?}"))),
            }
        }
        if !quorum_seen {
            return Err(PolicyError::Malformed {
                line: text.split('\n').count(),
                reason: "no quorum line (write `quorum none` to need no witness)".into(),
            });
        }
        if p.logs.is_empty() {
            return Err(PolicyError::Malformed {
                line: 1,
                reason: "no log line".into(),
            });
        }
        Ok(p)
    }

    fn define(&self, name: &str, bad: &dyn Fn(String) -> PolicyError) -> Result<(), PolicyError> {
        if name == "none" || self.member(name).is_some() {
            return Err(bad(format!("{name:?} is already defined (or reserved)")));
        }
        Ok(())
    }

    fn member(&self, name: &str) -> Option<Member> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(i));
        }
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(Member::Group)
    }

    /// The witnesses it names.
    pub fn witnesses(&self) -> &[Witness] {
        &self.witnesses
    }

    /// The log keys it names.
    pub fn logs(&self) -> impl Iterator<Item = &VerifierKey> {
        self.logs.iter().map(|(k, _)| k)
    }

    /// Whether it needs any cosignature.
    pub fn needs_witnesses(&self) -> bool {
        self.quorum.is_some()
    }

    fn satisfied(&self, m: &Member, ok: &[bool]) -> bool {
        match m {
            Member::Witness(i) => ok[*i],
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members.iter().filter(|m| self.satisfied(m, ok)).count() >= g.k
            }
        }
    }

    /// Checks a cosigned checkpoint: signed by one of the logs (key name = origin),
    /// every cosignature of a known witness valid, and the quorum met. Signatures of
    /// unknown keys are ignored.
    pub fn verify(&self, note: &str) -> Result<Verified, PolicyError> {
        let mut checkpoint = None;
        let mut last_err = String::from("no log key matches");
        for (key, _) in &self.logs {
            match key.verify(note) {
                Ok(cp) => {
                    checkpoint = Some(cp);
                    break;
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        let checkpoint = checkpoint.ok_or(PolicyError::NotSignedByLog(last_err))?;
        let parsed = Note::parse(note).map_err(|e| PolicyError::NotSignedByLog(e.to_string()))?;
        let mut ok = vec![false; self.witnesses.len()];
        let mut cosigned = Vec::new();
        for (i, w) in self.witnesses.iter().enumerate() {
            for sig in parsed.signatures.iter().filter(|s| w.key.claims(s)) {
                let time = w
                    .key
                    .verify(&parsed.text, sig)
                    .map_err(|_| PolicyError::BadCosignature(w.name.clone()))?;
                if !ok[i] {
                    cosigned.push((w.name.clone(), time));
                }
                ok[i] = true;
            }
        }
        if let Some(q) = &self.quorum
            && !self.satisfied(q, &ok)
        {
            let quorum = match q {
                Member::Witness(i) => self.witnesses[*i].name.clone(),
                Member::Group(g) => self.groups[*g].name.clone(),
            };
            return Err(PolicyError::QuorumNotMet {
                quorum,
                cosigned: cosigned.into_iter().map(|c| c.0).collect(),
            });
        }
        Ok(Verified {
            checkpoint,
            cosigned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SigningKey;
    use crate::cosignature::CosignerKey;

    fn setup() -> (SigningKey, [CosignerKey; 3], String) {
        let log = SigningKey::from_secret_string(
            "PRIVATE+KEY+ledger.example/demo+7b8488d1+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
        )
        .unwrap();
        let ws = [
            CosignerKey::from_seed("w1.example", [1; 32]),
            CosignerKey::from_seed("w2.example", [2; 32]),
            CosignerKey::from_seed("w3.example", [3; 32]),
        ];
        let policy = format!(
            "# two of three\nlog {}\nwitness a {} https://w1.example\n  witness\tb {}\nwitness c {}\ngroup two 2 a b c\nquorum two\n",
            log.verifier(),
            ws[0].verifier(),
            ws[1].verifier(),
            ws[2].verifier()
        );
        (log, ws, policy)
    }

    fn cosigned(log: &SigningKey, by: &[&CosignerKey]) -> String {
        let note = log.sign(&Checkpoint {
            origin: "ledger.example/demo".into(),
            size: 5,
            root: [9; 32],
        });
        let text = Note::parse(&note).unwrap().text;
        let mut out = note;
        for w in by {
            out.push_str(&w.cosign(&text, 1_700_000_000));
        }
        out
    }

    #[test]
    fn a_quorum_of_witnesses_is_counted_through_groups() {
        let (log, ws, text) = setup();
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.witnesses().len(), 3);
        let v = p.verify(&cosigned(&log, &[&ws[0], &ws[2]])).unwrap();
        assert_eq!(v.checkpoint.size, 5);
        assert_eq!(v.cosigned.len(), 2);
        let e = p.verify(&cosigned(&log, &[&ws[1]])).unwrap_err();
        assert!(matches!(e, PolicyError::QuorumNotMet { .. }), "{e}");
        // An unknown cosigner counts for nothing, and is no error.
        let stranger = CosignerKey::from_seed("w9.example", [9; 32]);
        assert!(p.verify(&cosigned(&log, &[&ws[0], &stranger])).is_err());
        // A bad cosignature from a known key refuses the note.
        let mut forged = cosigned(&log, &[&ws[0], &ws[1]]);
        let last = forged.trim_end().rfind('\n').unwrap() + 1;
        let line = forged[last..].to_string();
        forged.replace_range(last.., &line.replacen('A', "B", 1));
        assert!(p.verify(&forged).is_err());
        // Another log's checkpoint is refused whatever its cosignatures.
        let other = SigningKey::generate("ledger.example/demo").unwrap();
        assert!(matches!(
            p.verify(&cosigned(&other, &[&ws[0], &ws[1], &ws[2]])),
            Err(PolicyError::NotSignedByLog(_))
        ));
    }

    #[test]
    fn nested_groups_any_all_and_none() {
        let (log, ws, _) = setup();
        let p = Policy::parse(&format!(
            "log {}\nwitness a {}\nwitness b {}\nwitness c {}\ngroup ab any a b\ngroup both all ab c\nquorum both\n",
            log.verifier(),
            ws[0].verifier(),
            ws[1].verifier(),
            ws[2].verifier()
        ))
        .unwrap();
        assert!(p.verify(&cosigned(&log, &[&ws[1], &ws[2]])).is_ok());
        assert!(p.verify(&cosigned(&log, &[&ws[0], &ws[1]])).is_err());
        let none = Policy::parse(&format!("log {}\nquorum none\n", log.verifier())).unwrap();
        assert!(!none.needs_witnesses());
        assert!(none.verify(&cosigned(&log, &[])).is_ok());
    }

    #[test]
    fn malformed_policies_are_named_by_line() {
        let (log, ws, _) = setup();
        let (l, a) = (log.verifier(), ws[0].verifier());
        for (text, line, why) in [
            (format!("log {l}\n"), 2, "no quorum"),
            (
                format!("log {l}\nquorum none\nquorum none\n"),
                3,
                "exactly one",
            ),
            (
                format!("log {l}\nwitness a {a}\nquorum b\n"),
                3,
                "not a witness",
            ),
            (
                format!("log {l}\nwitness a {a}\ngroup g 2 a\nquorum g\n"),
                3,
                "threshold",
            ),
            (
                format!("log {l}\nwitness a {a}\ngroup g 1 a a\nquorum g\n"),
                3,
                "more than once",
            ),
            (
                format!(
                    "log {l}\nwitness a {a}\nwitness a {}\nquorum a\n",
                    ws[1].verifier()
                ),
                3,
                "already defined",
            ),
            (format!("log {l}\nwitness a {l}\nquorum a\n"), 2, "0x04"),
            (format!("log {a}\nquorum none\n"), 1, "log key"),
            (
                format!("log {l}\nwitnesses a {a}\nquorum none\n"),
                2,
                "unknown keyword",
            ),
            (format!("log {l}\nquorum none\x01\n"), 2, "not allowed"),
        ] {
            match Policy::parse(&text) {
                Err(PolicyError::Malformed { line: got, reason }) => {
                    assert_eq!(got, line, "{text}: {reason}");
                    assert!(reason.contains(why), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
