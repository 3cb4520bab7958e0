//! Tampering with a stored ledger is caught by `ledger verify`, which names where.

use std::path::Path;

use ledger_core::checkpoint::{Checkpoint, SigningKey};
use ledger_core::entry::{entry_bytes, parse_entry};
use ledger_core::merkle::Frontier;
use ledger_core::segment::{CHECKPOINTS_MAGIC, SEGMENT_MAGIC, encode_frame, header};
use ledger_core::{HashAlg, LedgerInfo};
use ledger_tests::{event_line, ledger, ledger_ok};

const N: usize = 40;

fn seg(d: &Path) -> std::path::PathBuf {
    d.join("log").join("00000000000000000000.seg")
}

fn make(tmp: &Path) -> std::path::PathBuf {
    let d = tmp.join("data");
    ledger_ok(&d, &["init", "--origin", "t.example/log"]);
    let lines: Vec<String> = (0..N)
        .map(|i| event_line(&format!("e{i}"), &format!("M{i}")))
        .collect();
    let f = tmp.join("in.jsonl");
    std::fs::write(&f, lines.join("\n")).unwrap();
    ledger_ok(&d, &["append", f.to_str().unwrap()]);
    d
}

/// The entries of the only segment.
fn frames(d: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(seg(d)).unwrap();
    let mut out = Vec::new();
    let mut pos = 16;
    while pos < b.len() {
        let n = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(b[pos + 8..pos + 8 + n].to_vec());
        pos += 8 + n;
    }
    out
}

fn write_frames(d: &Path, entries: &[Vec<u8>]) {
    let mut b = header(SEGMENT_MAGIC, 0).to_vec();
    for e in entries {
        encode_frame(&mut b, e);
    }
    std::fs::write(seg(d), b).unwrap();
}

fn verify_fails(d: &Path, args: &[&str]) -> String {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = ledger(d, &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "verify should fail:\n{stdout}");
    stdout
}

#[test]
fn a_flipped_byte_is_caught_with_or_without_a_fixed_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    // Without fixing the CRC: the frame itself is reported.
    let mut b = std::fs::read(seg(&d)).unwrap();
    let fr = frames(&d);
    let off: usize = 16 + fr[..17].iter().map(|e| e.len() + 8).sum::<usize>() + 8 + 30;
    b[off] ^= 0x01;
    std::fs::write(seg(&d), &b).unwrap();
    let out = verify_fails(&d, &[]);
    assert!(
        out.contains("FAILED at seq 17") && out.contains("CRC"),
        "{out}"
    );

    // With the CRC recomputed: a digest character changed, still valid JSON; the
    // next entry's `prev` no longer matches.
    let mut fr = fr;
    let s = String::from_utf8(fr[17].clone())
        .unwrap()
        .replacen("abab", "abac", 1);
    fr[17] = s.into_bytes();
    write_frames(&d, &fr);
    let out = verify_fails(&d, &[]);
    assert!(
        out.contains("FAILED at seq 18") && out.contains("hash of entry 17"),
        "{out}"
    );
}

#[test]
fn a_dropped_or_reordered_entry_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let fr = frames(&d);
    let mut dropped = fr.clone();
    dropped.remove(9);
    write_frames(&d, &dropped);
    let out = verify_fails(&d, &[]);
    assert!(
        out.contains("FAILED at seq 9") && out.contains("expected seq 9, found seq 10"),
        "{out}"
    );

    let mut swapped = fr.clone();
    swapped.swap(20, 21);
    write_frames(&d, &swapped);
    let out = verify_fails(&d, &[]);
    assert!(out.contains("FAILED at seq 20"), "{out}");

    // Dropping the last entry leaves a chain that is intact but shorter than what
    // the checkpoint signs.
    let mut short = fr;
    short.pop();
    write_frames(&d, &short);
    let out = verify_fails(&d, &[]);
    assert!(
        out.contains(&format!(
            "covers {N} entries but only {} are present",
            N - 1
        )),
        "{out}"
    );
}

/// The store's own signing key, as an operator covering tracks would use it.
fn own_key(d: &Path) -> SigningKey {
    SigningKey::from_secret_string(&std::fs::read_to_string(d.join("signing.key")).unwrap())
        .unwrap()
}

/// Rewrites entries from `k` on with other content, re-chains them consistently and
/// signs a new checkpoint with `key`, as an operator covering tracks would.
fn rewrite_from(d: &Path, k: usize, key: &SigningKey) {
    rewrite_events_from(d, k, key, |_, ev| {
        ev.replace(&"ab".repeat(32), &"cd".repeat(32))
    });
}

/// Like [`rewrite_from`], with `change` giving each rewritten event's new text.
fn rewrite_events_from(
    d: &Path,
    k: usize,
    key: &SigningKey,
    change: impl Fn(usize, &str) -> String,
) {
    let info: LedgerInfo =
        serde_json::from_str(&std::fs::read_to_string(d.join("ledger.json")).unwrap()).unwrap();
    let alg: HashAlg = info.hash;
    let old = frames(d);
    let mut out = Vec::new();
    let mut prev = alg.genesis(&info.origin);
    let mut f = Frontier::new(alg);
    for (i, e) in old.iter().enumerate() {
        let bytes = if i < k {
            e.clone()
        } else {
            let p = parse_entry(e).unwrap();
            let ev = change(i, p.event);
            entry_bytes(i as u64, &prev, p.recorded_at, p.v, ev.as_bytes())
        };
        prev = alg.leaf(&bytes);
        f.push(prev, |_, _, _| {});
        out.push(bytes);
    }
    write_frames(d, &out);
    let note = key.sign(&Checkpoint {
        origin: info.origin.clone(),
        size: old.len() as u64,
        root: f.root(),
    });
    let mut ck = header(CHECKPOINTS_MAGIC, 0).to_vec();
    encode_frame(&mut ck, note.as_bytes());
    std::fs::write(d.join("checkpoints.log"), ck).unwrap();
    std::fs::write(d.join("signing.key"), key.to_secret_string()).unwrap();
    std::fs::write(d.join("verifier.key"), key.verifier().to_string()).unwrap();
    let _ = std::fs::remove_file(d.join("index.redb"));
}

#[test]
fn a_consistently_rewritten_chain_resigned_with_another_key_is_caught_by_the_trusted_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let original_key = std::fs::read_to_string(d.join("verifier.key"))
        .unwrap()
        .trim()
        .to_string();
    rewrite_from(&d, 25, &SigningKey::generate("t.example/log").unwrap());
    // Trusting the key stored beside the log, the forgery is self-consistent...
    let out = ledger_ok(&d, &["verify"]);
    assert!(out.starts_with("OK"), "{out}");
    // ...but the key the auditor holds signed none of it.
    let out = verify_fails(&d, &["--key", &original_key]);
    assert!(out.contains("no signature by key"), "{out}");
}

#[test]
fn a_history_rewritten_with_the_same_key_is_caught_by_an_older_trusted_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let key_arg = format!("@{}", d.join("verifier.key").display());
    // The auditor kept the checkpoint of an earlier export.
    let trusted = tmp.path().join("trusted.note");
    std::fs::write(&trusted, ledger_ok(&d, &["checkpoint"])).unwrap();
    let key = own_key(&d);
    rewrite_from(&d, 30, &key);
    let bundle = tmp.path().join("b");
    ledger_ok(&d, &["export", "--out", bundle.to_str().unwrap()]);
    let b = bundle.to_str().unwrap();
    // Validly signed by the real key, so without the trusted checkpoint it passes.
    assert!(ledger_ok(&d, &["verify", "--bundle", b, "--key", &key_arg]).starts_with("OK"));
    let out = verify_fails(
        &d,
        &[
            "--bundle",
            b,
            "--key",
            &key_arg,
            "--trusted",
            trusted.to_str().unwrap(),
        ],
    );
    assert!(out.contains("trusted checkpoint"), "{out}");
    assert!(out.contains("history was rewritten"), "{out}");
}

#[test]
fn a_repeated_event_id_is_caught_when_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let key = own_key(&d);
    // Entry 33 now carries the event id of entry 7: a broken idempotency promise that
    // is otherwise a valid, signed log.
    rewrite_events_from(&d, 33, &key, |i, ev| {
        if i == 33 {
            ev.replace("\"id\":\"e33\"", "\"id\":\"e7\"")
        } else {
            ev.to_string()
        }
    });
    assert!(ledger_ok(&d, &["verify"]).starts_with("OK"));
    let out = verify_fails(&d, &["--unique-ids"]);
    assert!(
        out.contains("33") && out.contains("already recorded at seq 7"),
        "{out}"
    );
}

#[test]
fn an_invalid_event_in_a_valid_chain_is_caught_by_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let key = own_key(&d);
    // Chained and signed, but entry 20's reporter has a wrong check digit: a writer
    // that skipped validation would leave this.
    rewrite_events_from(&d, 20, &key, |i, ev| {
        if i == 20 {
            ev.replacen("974760673", "974760674", 1)
        } else {
            ev.to_string()
        }
    });
    assert!(ledger_ok(&d, &["verify"]).starts_with("OK"));
    let out = verify_fails(&d, &["--deep"]);
    assert!(out.contains("20") && out.contains("check digit"), "{out}");
}

#[test]
fn a_re_keyed_ledger_against_an_older_trusted_checkpoint_is_a_fault_not_a_failure_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let trusted = tmp.path().join("trusted.note");
    std::fs::write(&trusted, ledger_ok(&d, &["checkpoint"])).unwrap();
    // Rewritten and re-signed with a new key, stored beside the log as its own.
    rewrite_from(&d, 25, &SigningKey::generate("t.example/log").unwrap());
    let out = ledger(&d, &["verify", "--trusted", trusted.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a finding, exit 1:\n{text}");
    assert!(text.contains("trusted checkpoint"), "{text}");
}

#[test]
fn a_bundle_is_never_verified_without_a_key_unless_the_auditor_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = make(tmp.path());
    let bundle = tmp.path().join("b");
    ledger_ok(&d, &["export", "--out", bundle.to_str().unwrap()]);
    let b = bundle.to_str().unwrap();
    let out = ledger(&d, &["verify", "--bundle", b]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--key") && err.contains("--insecure-no-key"),
        "{err}"
    );
    // A forgery re-signed with its own key passes only when the auditor opts out.
    rewrite_from(&d, 25, &SigningKey::generate("t.example/log").unwrap());
    let forged = tmp.path().join("forged");
    ledger_ok(&d, &["export", "--out", forged.to_str().unwrap()]);
    let out = ledger(
        &d,
        &[
            "verify",
            "--bundle",
            forged.to_str().unwrap(),
            "--insecure-no-key",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("OK") && text.contains("no --key"), "{text}");
}
