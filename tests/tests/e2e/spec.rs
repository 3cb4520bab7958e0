//! The public contract: an independent Python verifier written only from
//! schemas/FORMAT.md checks stores and bundles, and the JSON Schemas agree with the
//! code on valid and invalid samples.

use std::path::Path;
use std::process::Command;

use ledger_core::Event;
use ledger_tests::{ledger_ok, python_ready, repo_root};

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = ledger_tests::output_text(&out);
    assert!(out.status.success(), "python3 {args:?} failed:\n{text}");
    text
}

fn python_fails(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "python3 {args:?} should report a fault"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_spec_verifier_accepts_real_ledgers_and_catches_a_flipped_byte() {
    if !python_ready() {
        return;
    }
    let script = repo_root().join("tests/spec/verify_ledger.py");
    let script = script.to_str().unwrap();
    let sample = repo_root().join("samples/incident-2023.jsonl");
    for hash in ["blake3", "sha256"] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        ledger_ok(
            &d,
            &["init", "--origin", "spec.example/log", "--hash", hash],
        );
        ledger_ok(&d, &["append", sample.to_str().unwrap()]);
        let key = std::fs::read_to_string(d.join("verifier.key")).unwrap();
        let out = python(&[script, "--store", d.to_str().unwrap(), "--key", key.trim()]);
        assert!(out.contains("OK: 200 entries"), "{out}");
        let b = tmp.path().join("bundle");
        ledger_ok(&d, &["export", "--out", b.to_str().unwrap()]);
        let out = python(&[script, "--bundle", b.to_str().unwrap(), "--key", key.trim()]);
        assert!(out.contains("OK: 200 entries"), "{out}");
        // A changed byte in the bundle is caught by the independent verifier too.
        let entries = b.join("entries.jsonl");
        let text = std::fs::read_to_string(&entries)
            .unwrap()
            .replacen("altinn", "altinm", 1);
        std::fs::write(&entries, text).unwrap();
        python_fails(&[script, "--bundle", b.to_str().unwrap(), "--key", key.trim()]);
    }
}

fn samples(dir: &str) -> Vec<(String, Vec<u8>)> {
    let d = repo_root().join("schemas/samples").join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (name(&p), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_code_agrees_with_the_schemas_on_every_sample() {
    let valid = samples("valid");
    let invalid = samples("invalid");
    assert!(valid.len() >= 11 && invalid.len() >= 10);
    for (n, b) in &valid {
        Event::from_json(b).unwrap_or_else(|e| panic!("code rejects valid sample {n}: {e}"));
    }
    for (n, b) in invalid.iter().chain(&samples("invalid-code-only")) {
        assert!(
            Event::from_json(b).is_err(),
            "code accepts invalid sample {n}"
        );
    }
    // Format 2 (FORMAT.md §3.9), its own samples.
    let valid = samples("v2/valid");
    let invalid = samples("v2/invalid");
    assert!(valid.len() >= 12 && invalid.len() >= 10);
    for (n, b) in &valid {
        Event::from_json_as(b, 2)
            .unwrap_or_else(|e| panic!("code rejects valid format-2 sample {n}: {e}"));
    }
    for (n, b) in invalid.iter().chain(&samples("v2/invalid-code-only")) {
        assert!(
            Event::from_json_as(b, 2).is_err(),
            "code accepts invalid format-2 sample {n}"
        );
    }
    if python_ready() {
        let out = python(&["tests/spec/check_schemas.py"]);
        assert!(out.contains("schemas:"), "{out}");
    }
}
