//! Signed checkpoints (C2SP signed notes): `VerifierKey::verify`, the key-string
//! and key-history parsers and `split_notes`.
//!
//! Properties, beyond "never panics":
//! - a note signed by a fixed key for a fuzzer-chosen size and root verifies to that
//!   checkpoint; after any single-byte change (replace, insert, delete) it either
//!   fails or verifies to the very same checkpoint, never to another one;
//! - arbitrary text that verifies names the key's origin and starts with the
//!   canonical body of the checkpoint returned;
//! - a verifier key string that parses prints back as given (trimmed) and parses
//!   again to an equal key; a private key string that parses prints back as given,
//!   and its notes verify with its own verifier key; a key history that parses
//!   prints back to an equal history, and what it verifies the key in force at the
//!   note's size verifies alike;
//! - `split_notes` loses nothing but the empty lines between notes, and splits two
//!   signed notes joined by an empty line back into the two.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ledger_core::checkpoint::{Checkpoint, SigningKey, VerifierKey, split_notes};
use libfuzzer_sys::fuzz_target;

/// The fuzz corpus's key (made by `ledger init --origin fuzz.example/ledger`; it
/// signs nothing but fuzz inputs).
const ORIGIN: &str = "fuzz.example/ledger";
const SECRET: &str =
    "PRIVATE+KEY+fuzz.example/ledger+aed5f773+AYAv1qetRPsLN6EXovh1n53+9frBocmjihtrnY/fCr7b";
const VERIFIER: &str = "fuzz.example/ledger+aed5f773+AfueVY754L+b9D5D2WMBjLcN47yFSh1mSFhOKPs0IZOG";

fn keys() -> &'static (SigningKey, VerifierKey) {
    static K: OnceLock<(SigningKey, VerifierKey)> = OnceLock::new();
    K.get_or_init(|| {
        let sk = SigningKey::from_secret_string(SECRET).expect("fuzz signing key");
        let vk: VerifierKey = VERIFIER.parse().expect("fuzz verifier key");
        assert_eq!(sk.verifier(), vk);
        (sk, vk)
    })
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Replace { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Delete { at: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    size: u64,
    root: [u8; 32],
    mutation: Mutation,
    text: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let (sk, vk) = keys();

    // A real note, and every single-byte change of it.
    let cp = Checkpoint {
        origin: ORIGIN.to_string(),
        size: input.size,
        root: input.root,
    };
    let note = sk.sign(&cp);
    assert_eq!(vk.verify(&note), Ok(cp.clone()));
    let mut bytes = note.clone().into_bytes();
    match input.mutation {
        Mutation::Replace { at, byte } => {
            let at = usize::from(at) % bytes.len();
            bytes[at] = byte;
        }
        Mutation::Insert { at, byte } => {
            let at = usize::from(at) % (bytes.len() + 1);
            bytes.insert(at, byte);
        }
        Mutation::Delete { at } => {
            let at = usize::from(at) % bytes.len();
            bytes.remove(at);
        }
    }
    if let Ok(text) = std::str::from_utf8(&bytes)
        && let Ok(other) = vk.verify(text)
    {
        assert_eq!(
            other, cp,
            "a one-byte change verifies to another checkpoint:\n{text}"
        );
    }

    // Arbitrary text as a note.
    let text = input.text;
    if let Ok(c) = vk.verify(text) {
        assert_eq!(c.origin, ORIGIN);
        assert!(
            text.starts_with(&c.body()),
            "verified note does not start with its canonical body: {text:?}"
        );
    }

    // Key strings.
    if let Ok(k) = text.parse::<VerifierKey>() {
        assert_eq!(
            k.to_string(),
            text.trim(),
            "verifier key does not print back"
        );
        assert_eq!(k.to_string().parse::<VerifierKey>().as_ref(), Ok(&k));
        let _ = k.verify(&note);
    }
    // Key histories (verifier.key after a rotation, FORMAT.md §17): what parses
    // prints back as it reads, and checks a note with the key in force at its size.
    if let Ok(h) = text.parse::<ledger_core::KeyHistory>() {
        let printed = h.to_string();
        assert_eq!(
            printed.parse::<ledger_core::KeyHistory>().as_ref(),
            Ok(&h),
            "a key history does not print back: {printed:?}"
        );
        if let Ok(c) = h.verify(&note) {
            assert_eq!(h.key_for(c.size).verify(&note), Ok(c));
        }
    }
    if let Ok(s) = SigningKey::from_secret_string(text) {
        assert_eq!(
            s.to_secret_string(),
            text.trim_end(),
            "signing key does not print back"
        );
        let own = Checkpoint {
            origin: s.name().to_string(),
            ..cp.clone()
        };
        assert_eq!(
            s.verifier().verify(&s.sign(&own)),
            Ok(own),
            "a signing key that parses signs notes its own verifier refuses: {:?}",
            s.name()
        );
        let printed = s.verifier().to_string();
        assert_eq!(
            printed.parse::<VerifierKey>().as_ref(),
            Ok(&s.verifier()),
            "a signing key that parses has a verifier key that does not: {printed:?}"
        );
    }

    // split_notes.
    check_split(text);
    let next = sk.sign(&Checkpoint {
        size: cp.size.wrapping_add(1),
        ..cp.clone()
    });
    assert_eq!(
        split_notes(&format!("{note}\n{next}")),
        vec![note.clone(), next.clone()]
    );
    check_split(&format!("{note}\n{text}"));
});

/// The notes are the text, in order, less single empty lines between them (tracked as
/// the set of positions the text can have reached: a "\n" may be skipped or not).
fn check_split(text: &str) {
    let notes = split_notes(text);
    let mut at = std::collections::BTreeSet::from([0usize]);
    for (i, n) in notes.iter().enumerate() {
        assert!(!n.is_empty(), "empty note");
        let mut next = std::collections::BTreeSet::new();
        for &p in &at {
            for q in [p, p + 1] {
                if (q == p || (i > 0 && text[p..].starts_with('\n')))
                    && text.get(q..).is_some_and(|t| t.starts_with(n.as_str()))
                {
                    next.insert(q + n.len());
                }
            }
        }
        assert!(
            !next.is_empty(),
            "note {i} is not where the text continues: {text:?} → {notes:?}"
        );
        at = next;
    }
    assert!(
        at.iter()
            .any(|&p| p == text.len() || (p + 1 == text.len() && text.ends_with('\n'))),
        "text lost: {text:?} → {notes:?}"
    );
}
