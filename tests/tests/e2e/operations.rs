//! The operator's runbook (docs/operations.md), scenario by scenario: a backup
//! taken while the server takes appends, restores from it, a damaged segment, a
//! lost index, a lost signing key. (A failed write or full disk: ledger-server's
//! `store_failure` tests; a PostgreSQL fail-over: `postgres::the_writer_lease_moves…`
//! and `postgres::a_database_restart…`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ledger_core::HashAlg;
use ledger_tests::{ledger, ledger_json, ledger_ok, sent_json, serve, stop, token};
use serde_json::Value;

const POLICE: &str = "974760673";

/// Posts one event; its receipt (seq, entry hash) when acknowledged.
fn post_event(base: &str, token: &str, body: &str) -> Option<(u64, String)> {
    let resp = ledger_tests::http_agent()
        .post(format!("{base}/v1/events"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()?;
    let r = &v["receipts"][0];
    Some((r["seq"].as_u64()?, r["hash"].as_str()?.to_string()))
}

/// seq → entry hash of every line of a bundle's (or backup's) `entries.jsonl`.
fn bundle_leaves(dir: &Path) -> BTreeMap<u64, String> {
    std::fs::read_to_string(dir.join("entries.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u64, hex::encode(HashAlg::Blake3.leaf(l.as_bytes()))))
        .collect()
}

/// `ledger restore --from FROM --into INTO [--signing-key KEY]`, run from `dir`.
fn restore(dir: &Path, from: &Path, into: &Path, key: Option<&Path>) -> std::process::Output {
    let mut args = vec![
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ];
    if let Some(k) = key {
        args.extend(["--signing-key", k.to_str().unwrap()]);
    }
    ledger(dir, &args)
}

/// [`restore`], which must succeed.
fn restore_ok(dir: &Path, from: &Path, into: &Path, key: Option<&Path>) -> String {
    let out = restore(dir, from, into, key);
    let text = ledger_tests::output_text(&out);
    assert!(out.status.success(), "restore failed:\n{text}");
    text
}

/// `ledger verify --bundle PATH --key KEY`, run from `dir`, which must pass.
fn verify_bundle(dir: &Path, path: &Path, key: &str) -> String {
    ledger_ok(
        dir,
        &["verify", "--bundle", path.to_str().unwrap(), "--key", key],
    )
}

fn new_ledger(root: &Path) -> std::path::PathBuf {
    let d = root.join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/ops"]);
    d
}

fn append_sent(dir: &Path, from: usize, to: usize) {
    let file = dir.with_extension(format!("{from}.jsonl"));
    let lines: Vec<String> = (from..to)
        .map(|i| sent_json(&format!("e{i}"), &format!("M{i}")))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    ledger_ok(dir, &["append", file.to_str().unwrap()]);
}

/// The scenario the issue names: a backup while producers append, then another;
/// every acknowledged entry is in the second, a restore of it verifies and appends go
/// on from where the ledger was.
#[test]
fn a_backup_under_load_restores_every_acknowledged_entry_and_appends_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    let w = token(&d, POLICE, "ledger:write");
    let (mut child, base) = serve(&d);
    let backup = tmp.path().join("backup");

    let receipts = std::thread::scope(|s| {
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (base, w) = (&base, &w);
                s.spawn(move || {
                    (0..100)
                        .filter_map(|i| {
                            let n = p * 1000 + i;
                            post_event(base, w, &sent_json(&format!("e{n}"), &format!("M{n}")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // While they append: the store is held by the server, so the backup reads
        // it without its lock, up to the newest checkpoint.
        std::thread::sleep(Duration::from_millis(150));
        let first = ledger_json(&d, &["--json", "backup", "--to", backup.to_str().unwrap()]);
        assert_eq!(first["checked"], true, "{first}");
        let mid = first["entries"].as_u64().unwrap();
        let held = bundle_leaves(&backup);
        let receipts: Vec<(u64, String)> = producers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(held.len() as u64, mid);
        for (seq, hash) in receipts.iter().filter(|(seq, _)| *seq < mid) {
            assert_eq!(held.get(seq), Some(hash), "entry {seq} in the first backup");
        }
        receipts
    });
    assert_eq!(receipts.len(), 400, "every post was acknowledged");
    // The server signs once it is idle: then the next backup covers everything.
    let mut size = 0;
    for _ in 0..100 {
        let cp = ledger_json(&d, &["--json", "checkpoint"]);
        size = cp["size"].as_u64().unwrap();
        if size == 400 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(size, 400, "the server signed the whole log");
    let second = ledger_json(&d, &["--json", "backup", "--to", backup.to_str().unwrap()]);
    assert_eq!(second["entries"], 400, "{second}");
    assert_eq!(
        second["new_entries"].as_u64().unwrap() + second["from_entries"].as_u64().unwrap(),
        400,
        "only the entries since were written: {second}"
    );
    stop(&mut child);

    // An auditor can check the backup as it is, with the key they hold.
    let key = format!("@{}", d.join("verifier.key").display());
    let v = verify_bundle(&d, &backup, &key);
    assert!(v.starts_with("OK: 400 entries"), "{v}");

    let restored = tmp.path().join("restored");
    let r = restore_ok(&d, &backup, &restored, None);
    assert!(r.starts_with("restored 400 entries"), "{r}");
    let v = ledger_ok(&restored, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 400 entries"), "{v}");
    let held = bundle_leaves(&backup);
    for (seq, hash) in &receipts {
        assert_eq!(held.get(seq), Some(hash), "acknowledged entry {seq}");
    }
    // The restored ledger goes on with its key: the next entry is 400, and its
    // checkpoints verify with the same verifier key.
    append_sent(&restored, 5000, 5001);
    let v = ledger_ok(&restored, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 401 entries"), "{v}");
}

/// What an attacker or an accident can do to a backup, and what a restore says.
#[test]
fn a_restore_refuses_a_damaged_backup_a_foreign_key_and_a_used_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 50);
    let backup = tmp.path().join("backup");
    ledger_ok(&d, &["backup", "--to", backup.to_str().unwrap()]);

    // Another ledger's backup directory is not extended with this one's entries.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let o = new_ledger(&other);
    append_sent(&o, 0, 10);
    let out = ledger(&o, &["backup", "--to", backup.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an earlier state of this ledger"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A directory holding something else is not written into.
    let used = tmp.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("notes.txt"), "mine").unwrap();
    let out = ledger(&d, &["backup", "--to", used.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(&used).unwrap().count(), 1);

    // Another ledger's signing key: refused, nothing made.
    let into = tmp.path().join("r1");
    let out = restore(&d, &backup, &into, Some(&o.join("signing.key")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("not the key that signs"), "{err}");
    assert!(!into.join("log").exists(), "nothing restored: {err}");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".restore-")),
        "the staged restore is gone"
    );

    // A bundle holds no signing key: the restore says where to get one.
    let bundle = tmp.path().join("bundle");
    ledger_ok(&d, &["export", "--out", bundle.to_str().unwrap()]);
    let out = restore(&d, &bundle, &tmp.path().join("r2"), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signing-key"));
    // With the key kept elsewhere, a bundle restores.
    restore_ok(
        &d,
        &bundle,
        &tmp.path().join("r3"),
        Some(&d.join("signing.key")),
    );

    // One changed byte in the backup's entries: refused, naming the entry.
    let entries = backup.join("entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    let at = text.match_indices("\"M17\"").next().unwrap().0;
    let mut bytes = text.into_bytes();
    bytes[at + 2] = b'9';
    std::fs::write(&entries, bytes).unwrap();
    let into = tmp.path().join("r4");
    let out = restore(&d, &backup, &into, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("18"),
        "names the entry after the changed one: {err}"
    );
    assert!(!into.join("log").exists());
}

/// Runbook: one flipped bit in the middle of the log stops every command (rightly);
/// the way back is a restore from the newest backup.
#[test]
fn a_damaged_segment_is_repaired_by_a_restore_from_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 100);
    let backup = tmp.path().join("backup");
    ledger_ok(&d, &["backup", "--to", backup.to_str().unwrap()]);

    let seg = std::fs::read_dir(d.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let out = ledger(&d, &["verify"]);
    assert_ne!(out.status.code(), Some(0), "the damage is found");

    let restored = tmp.path().join("restored");
    restore_ok(&d, &backup, &restored, None);
    let key = format!("@{}", d.join("verifier.key").display());
    let v = ledger_ok(&restored, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 100 entries"), "{v}");
    let h: Value =
        serde_json::from_str(&ledger_ok(&restored, &["--json", "history", "M50"])).unwrap();
    assert_eq!(h["entries"][0]["event"]["id"], "e50");
    append_sent(&restored, 100, 101);
}

/// Flips one byte of the event `id` in the ledger's segments.
fn damage_event(d: &Path, id: &str) {
    let needle = format!("\"id\":\"{id}\"");
    for e in std::fs::read_dir(d.join("log")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if let Some(at) = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            bytes[at + 7] ^= 0x01;
            std::fs::write(&p, bytes).unwrap();
            return;
        }
    }
    panic!("no event {id}");
}

/// Runbook: a damaged segment, and a backup older than the log. The restore takes
/// the backup, then what the damaged directory still holds after it, up to its newest
/// checkpoint over them: only what no copy holds is lost, and it says so.
#[test]
fn entries_after_the_backup_are_taken_from_the_damaged_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 100);
    let backup = tmp.path().join("backup");
    ledger_ok(&d, &["backup", "--to", backup.to_str().unwrap()]);
    append_sent(&d, 100, 150);
    append_sent(&d, 150, 200);
    let key = format!("@{}", d.join("verifier.key").display());
    // `restore --from backup --tail-from TAIL --into INTO`: its JSON and its stderr.
    let restore_tail = |tail: &Path, into: &Path| {
        let out = ledger(
            &d,
            &[
                "--json",
                "restore",
                "--from",
                backup.to_str().unwrap(),
                "--tail-from",
                tail.to_str().unwrap(),
                "--into",
                into.to_str().unwrap(),
                "--key",
                &key,
            ],
        );
        let text = ledger_tests::output_text(&out);
        assert!(out.status.success(), "{text}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // Entry 50 is damaged; the backup holds it, the directory everything after.
    damage_event(&d, "e50");
    assert_ne!(ledger(&d, &["verify"]).status.code(), Some(0));
    let before = std::fs::read(d.join("checkpoints.log")).unwrap();
    let r1 = tmp.path().join("r1");
    let (v, err) = restore_tail(&d, &r1);
    assert_eq!(v["entries"], 200, "{v}\n{err}");
    assert!(
        err.contains("took 100 entries after the source's 100"),
        "{err}"
    );
    assert!(err.contains("is damaged: skipped"), "{err}");
    let ok = ledger_ok(&r1, &["verify", "--key", &key]);
    assert!(ok.starts_with("OK: 200 entries"), "{ok}");
    let h: Value = ledger_json(&r1, &["--json", "history", "M170"]);
    assert_eq!(h["entries"][0]["event"]["id"], "e170");
    append_sent(&r1, 200, 201);
    assert_eq!(
        std::fs::read(d.join("checkpoints.log")).unwrap(),
        before,
        "the damaged directory is only read"
    );

    // Entry 170 too: no copy holds it. The restore goes to the newest checkpoint
    // before it (150) and says what was lost.
    damage_event(&d, "e170");
    let r2 = tmp.path().join("r2");
    let (v, err) = restore_tail(&d, &r2);
    assert_eq!(v["entries"], 150, "{v}\n{err}");
    assert_eq!(v["not_restored_beyond_checkpoint"], 20, "{v}");
    assert!(err.contains("entry 170 cannot be read"), "{err}");
    let ok = ledger_ok(&r2, &["verify", "--key", &key]);
    assert!(ok.starts_with("OK: 150 entries"), "{ok}");

    // Another ledger's directory continues nothing: the backup alone is restored.
    let other = tmp.path().join("other");
    ledger_ok(&other, &["init", "--origin", "ledger.example/ops"]);
    append_sent(&other, 0, 120);
    let r3 = tmp.path().join("r3");
    let (v, text) = restore_tail(&other, &r3);
    assert_eq!(v["entries"], 100, "{v}");
    assert!(text.contains("does not continue the chain"), "{text}");
}

/// Runbook: a lost index is rebuilt from the log; a lost signing key comes back from
/// the backup (which holds it), and nothing is signed with any other.
#[test]
fn a_lost_index_is_rebuilt_and_a_lost_signing_key_comes_back_from_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 30);
    let backup = tmp.path().join("backup");
    ledger_ok(&d, &["backup", "--to", backup.to_str().unwrap()]);

    std::fs::remove_file(d.join("index.redb")).unwrap();
    let r: Value = serde_json::from_str(&ledger_ok(&d, &["reindex", "--json"])).unwrap();
    assert!(r.get("identical").is_some(), "{r}");
    let h: Value = serde_json::from_str(&ledger_ok(&d, &["--json", "history", "M7"])).unwrap();
    assert_eq!(h["entries"][0]["event"]["id"], "e7");

    let key = std::fs::read(d.join("signing.key")).unwrap();
    std::fs::remove_file(d.join("signing.key")).unwrap();
    // Without its key the ledger is read-only: questions work, appends are refused.
    let h: Value = serde_json::from_str(&ledger_ok(&d, &["--json", "history", "M7"])).unwrap();
    assert_eq!(h["entries"][0]["event"]["id"], "e7");
    let file = tmp.path().join("one.jsonl");
    std::fs::write(&file, sent_json("e99", "M99") + "\n").unwrap();
    let out = ledger(&d, &["append", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    std::fs::copy(backup.join("signing.key"), d.join("signing.key")).unwrap();
    assert_eq!(std::fs::read(d.join("signing.key")).unwrap(), key);
    ledger_ok(&d, &["append", file.to_str().unwrap()]);
    let v = ledger_ok(
        &d,
        &[
            "verify",
            "--key",
            &format!("@{}", d.join("verifier.key").display()),
        ],
    );
    assert!(v.starts_with("OK: 31 entries"), "{v}");
}

/// A backup to one file: a .tar, brought up to date in place, that restores with the
/// key inside it.
#[test]
fn a_backup_to_a_tar_file_is_kept_up_to_date_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 20);
    std::fs::write(
        d.join("policy.toml"),
        ledger_core::projection::DEFAULT_POLICY,
    )
    .unwrap();
    let tar = tmp.path().join("ledger-backup.tar");
    let first = ledger_json(&d, &["--json", "backup", "--to", tar.to_str().unwrap()]);
    assert_eq!(first["entries"], 20, "{first}");
    append_sent(&d, 20, 30);
    let second = ledger_json(&d, &["--json", "backup", "--to", tar.to_str().unwrap()]);
    assert_eq!(
        (second["from_entries"].as_u64(), second["entries"].as_u64()),
        (Some(20), Some(30)),
        "{second}"
    );
    assert!(!tmp.path().join("ledger-backup.tar.partial").exists());
    // It holds the signing key: its owner alone may read it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&tar).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let key = format!("@{}", d.join("verifier.key").display());
    let v = verify_bundle(&d, &tar, &key);
    assert!(v.starts_with("OK: 30 entries"), "{v}");
    let restored = tmp.path().join("restored");
    restore_ok(&d, &tar, &restored, None);
    assert!(
        restored.join("policy.toml").is_file(),
        "the policy came back too"
    );
    let v = ledger_ok(&restored, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 30 entries"), "{v}");
    // A tar that is not a backup is not overwritten.
    let bundle = tmp.path().join("export.tar");
    ledger_ok(&d, &["export", "--out", bundle.to_str().unwrap()]);
    let before = std::fs::read(&bundle).unwrap();
    let out = ledger(&d, &["backup", "--to", bundle.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&bundle).unwrap(), before);
}

/// What the reviewer of the backup found, each now a test: a source with entries past
/// its newest checkpoint restores only up to it; a source signed by another key than
/// the one given is refused; an interrupted backup still restores and is mended by
/// the next; two backups into one place at once are refused.
#[test]
fn a_restore_stops_at_the_checkpoint_and_backups_survive_interruption_and_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 50);
    let b50 = tmp.path().join("b50");
    ledger_ok(&d, &["export", "--out", b50.to_str().unwrap()]);
    append_sent(&d, 50, 51);
    let b51 = tmp.path().join("b51");
    ledger_ok(&d, &["export", "--out", b51.to_str().unwrap()]);
    // 51 chained entries under a checkpoint of 50: the 51st is signed by nobody.
    std::fs::copy(b51.join("entries.jsonl"), b50.join("entries.jsonl")).unwrap();
    let key = format!("@{}", d.join("verifier.key").display());
    let into = tmp.path().join("r1");
    let out = restore(&d, &b50, &into, Some(&d.join("signing.key")));
    let text = ledger_tests::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("restored 50 entries"), "{text}");
    assert!(
        text.contains("1 entries after the source's newest checkpoint were not restored"),
        "{text}"
    );
    assert!(text.contains("fork"), "the restore warns of a fork: {text}");
    let v = ledger_ok(&into, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 50 entries"), "{v}");

    // The key the operator holds must be the source's.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let o = new_ledger(&other);
    let out = ledger(
        &d,
        &[
            "restore",
            "--from",
            b51.to_str().unwrap(),
            "--into",
            tmp.path().join("r2").to_str().unwrap(),
            "--signing-key",
            d.join("signing.key").to_str().unwrap(),
            "--key",
            &format!("@{}", o.join("verifier.key").display()),
        ],
    );
    let err = ledger_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not by the key you gave"), "{err}");
    assert!(!tmp.path().join("r2").join("log").exists());

    // A backup interrupted mid-append: a restore reads what backup.json holds, and
    // the next backup cuts the rest off.
    let backup = tmp.path().join("backup");
    ledger_ok(&d, &["backup", "--to", backup.to_str().unwrap()]);
    let entries = backup.join("entries.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&entries)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"event\":{\"half").unwrap();
    drop(f);
    restore_ok(&d, &backup, &tmp.path().join("r3"), None);
    append_sent(&d, 51, 52);
    let v = ledger_json(&d, &["--json", "backup", "--to", backup.to_str().unwrap()]);
    assert_eq!(
        (v["from_entries"].as_u64(), v["entries"].as_u64()),
        (Some(51), Some(52)),
        "{v}"
    );
    let v = verify_bundle(&d, &backup, &key);
    assert!(v.starts_with("OK: 52 entries"), "{v}");

    // Another backup into the same place while one runs: refused, nothing touched.
    let held = std::fs::File::open(&backup).unwrap();
    held.lock().unwrap();
    let before = std::fs::read(&entries).unwrap();
    let out = ledger(&d, &["backup", "--to", backup.to_str().unwrap()]);
    let err = ledger_tests::output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("another `ledger backup`"), "{err}");
    assert_eq!(std::fs::read(&entries).unwrap(), before);
    drop(held);
}

/// Runbook: a signing key lost with no copy anywhere. `restore --new-key` makes a new
/// ledger whose log announces a new key (FORMAT.md §17); an auditor with the new key
/// history verifies it whole, both here and with the independent Python verifier,
/// appends go on under the new key, and one who holds only the old key, or a history
/// naming another new key (someone else re-keying a copy of the log), is refused.
#[test]
fn a_lost_signing_key_with_no_copy_is_replaced_by_a_key_announced_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let d = new_ledger(tmp.path());
    append_sent(&d, 0, 30);
    let old_key = std::fs::read_to_string(d.join("verifier.key")).unwrap();
    let old_key = old_key.trim();
    let held = tmp.path().join("held-checkpoint");
    std::fs::write(&held, ledger_ok(&d, &["checkpoint"])).unwrap();
    // A policy as its parser takes it: a tab between `log` and the key.
    std::fs::write(
        d.join("witness.policy"),
        format!("log\t{old_key}\nquorum none\n"),
    )
    .unwrap();
    // A sender's receipt from before; and a thief's copy, old key and all.
    let receipt = |dir: &Path, event: &str| {
        let f = tmp.path().join(format!("{event}.tlog-proof"));
        ledger_ok(
            dir,
            &[
                "receipt",
                event,
                "--org",
                POLICE,
                "--out",
                f.to_str().unwrap(),
            ],
        );
        f
    };
    let before = receipt(&d, "e7");
    let thief = tmp.path().join("thief");
    ledger_tests::copy_dir(&d, &thief);
    std::fs::remove_file(d.join("signing.key")).unwrap();

    let new = tmp.path().join("rekeyed");
    let r = ledger_json(
        &d,
        &[
            "--json",
            "restore",
            "--from",
            d.to_str().unwrap(),
            "--into",
            new.to_str().unwrap(),
            "--new-key",
            "lost",
            "--key",
            old_key,
        ],
    );
    assert_eq!(r["key_announced_at"], 30, "{r}");
    assert_eq!(r["entries"], 31, "{r}");
    let history = std::fs::read_to_string(new.join("verifier.key")).unwrap();
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert_eq!(lines[0], old_key, "the old key is kept first");
    assert!(lines[1].ends_with(" 31"), "{history}");
    let new_key = lines[1].split(' ').next().unwrap();
    assert_eq!(r["verifier_key"], new_key);
    // The witness policy's log line names the new key now.
    assert_eq!(r["witness_policy_rewritten"], true);
    assert_eq!(
        std::fs::read_to_string(new.join("witness.policy")).unwrap(),
        format!("log {new_key}\nquorum none\n")
    );
    // A policy still naming the old key would never be met: `ledger serve` says so
    // and does not start.
    let stale = tmp.path().join("stale");
    ledger_tests::copy_dir(&new, &stale);
    std::fs::write(
        stale.join("witness.policy"),
        format!("log {old_key}\nquorum none\n"),
    )
    .unwrap();
    let mut serving = std::process::Command::new(ledger_tests::ledger_bin())
        .args([
            "--dir",
            stale.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = serving.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if status.is_none() {
        stop(&mut serving);
        panic!("ledger serve started with a policy naming the old key");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serving.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("no `log` line names this ledger's signing key"),
        "{err}"
    );
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("ledger.json")).unwrap()).unwrap();
    assert_eq!(info["format"], 3);

    // The log itself says so, at entry 30.
    let entries = tmp.path().join("entries");
    ledger_ok(&new, &["export", "--out", entries.to_str().unwrap()]);
    let last = std::fs::read_to_string(entries.join("entries.jsonl"))
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(
        last.contains(r#""reason":"lost","type":"key_rotated"},"prev":"#)
            && last.ends_with(r#","seq":30,"v":3}"#),
        "{last}"
    );

    // Verified whole with the history; the checkpoint the auditor held still counts.
    let with_history = format!("@{}", new.join("verifier.key").display());
    let v = ledger_ok(
        &new,
        &[
            "verify",
            "--deep",
            "--unique-ids",
            "--key",
            &with_history,
            "--trusted",
            held.to_str().unwrap(),
        ],
    );
    assert!(v.starts_with("OK: 31 entries"), "{v}");
    verify_bundle(&new, &entries, &with_history);
    // Appends go on, signed by the new key; questions answer as before.
    append_sent(&new, 30, 35);
    let v = ledger_ok(&new, &["verify", "--key", &with_history]);
    assert!(v.starts_with("OK: 36 entries"), "{v}");
    let h: Value = ledger_json(&new, &["--json", "history", "M7"]);
    assert_eq!(h["entries"][0]["event"]["id"], "e7");
    let h: Value = ledger_json(&new, &["--json", "history", "M33"]);
    assert_eq!(h["entries"][0]["seq"], 34);

    // Receipts: a policy naming both keys keeps the old receipts verifying; with the
    // key history, the old key counts only for the sizes before the rotation, so a
    // thief holding it cannot sign receipts for later sizes.
    let after = receipt(&new, "e33");
    append_sent(&thief, 30, 40);
    let stolen = receipt(&thief, "e35");
    let policy = tmp.path().join("both.policy");
    std::fs::write(
        &policy,
        format!("log {old_key}\nlog {new_key}\nquorum none\n"),
    )
    .unwrap();
    let verify_receipt = |f: &Path, history: bool| {
        let mut args = vec![
            "verify-receipt",
            f.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ];
        if history {
            args.extend(["--key", with_history.as_str()]);
        }
        ledger(tmp.path(), &args).status.code()
    };
    assert_eq!(verify_receipt(&before, true), Some(0));
    assert_eq!(verify_receipt(&after, true), Some(0));
    assert_eq!(
        verify_receipt(&stolen, false),
        Some(0),
        "a tlog-policy knows no sizes"
    );
    assert_eq!(verify_receipt(&stolen, true), Some(1));
    // The independent receipt checker, from the specs alone, agrees.
    if ledger_tests::python_ready() {
        let py = |f: &Path| {
            std::process::Command::new("python3")
                .arg(ledger_tests::repo_root().join("tests/spec/verify_receipt.py"))
                .arg(f)
                .args(["--policy", policy.to_str().unwrap(), "--hash", "blake3"])
                .args(["--key", with_history.as_str()])
                .output()
                .unwrap()
                .status
                .code()
        };
        assert_eq!(py(&before), Some(0));
        assert_eq!(py(&after), Some(0));
        assert_eq!(py(&stolen), Some(1));
    }

    // A verifier.key that disagrees with the log's key entry: the store refuses to
    // open (here with its index gone, so that it reads the log again).
    let tampered = tmp.path().join("tampered");
    ledger_tests::copy_dir(&new, &tampered);
    std::fs::remove_file(tampered.join("index.redb")).unwrap();
    std::fs::write(
        tampered.join("verifier.key"),
        history.replace(" 31\n", " 32\n"),
    )
    .unwrap();
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, sent_json("t1", "MT1") + "\n").unwrap();
    let out = ledger(&tampered, &["append", one.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let text = ledger_tests::output_text(&out);
    assert!(
        text.contains("entry 30 announces the signing key"),
        "{text}"
    );

    // Only the old key: every checkpoint from the announcement on is refused, and
    // the announcement itself is named.
    let out = ledger(&new, &["verify", "--key", old_key]);
    assert_eq!(out.status.code(), Some(1));
    let text = ledger_tests::output_text(&out);
    assert!(
        text.contains("entry 30 announces key") && text.contains("by a channel you trust"),
        "{text}"
    );

    // Someone else re-keys a copy of the same log: an auditor holding the real
    // history refuses it, though its chain and signatures are whole.
    let forged = tmp.path().join("forged");
    ledger_ok(
        &d,
        &[
            "restore",
            "--from",
            d.to_str().unwrap(),
            "--into",
            forged.to_str().unwrap(),
            "--new-key",
            "compromised",
        ],
    );
    let out = ledger(&forged, &["verify", "--key", &with_history]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        ledger_tests::output_text(&out)
    );
    assert!(
        ledger_tests::output_text(&out).contains("does not name there"),
        "{}",
        ledger_tests::output_text(&out)
    );

    // A rotated ledger is backed up and restored with its key like any other.
    let backup = tmp.path().join("backup");
    ledger_ok(&new, &["backup", "--to", backup.to_str().unwrap()]);
    let again = tmp.path().join("again");
    restore_ok(&new, &backup, &again, None);
    assert_eq!(
        std::fs::read_to_string(again.join("verifier.key")).unwrap(),
        history
    );
    assert!(
        again.join("witness.policy").exists(),
        "the backup carries it"
    );
    let v = ledger_ok(&again, &["verify", "--key", &with_history]);
    assert!(v.starts_with("OK: 36 entries"), "{v}");

    // The independent verifier, written from FORMAT.md alone, agrees.
    if ledger_tests::python_ready() {
        let script = ledger_tests::repo_root().join("tests/spec/verify_ledger.py");
        let py = |dir: &Path, key: &str| {
            std::process::Command::new("python3")
                .args([
                    script.to_str().unwrap(),
                    "--store",
                    dir.to_str().unwrap(),
                    "--key",
                    key,
                ])
                .output()
                .unwrap()
        };
        let out = py(&new, &with_history);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK: 36 entries"),
            "{}",
            ledger_tests::output_text(&out)
        );
        assert_eq!(py(&new, old_key).status.code(), Some(1));
        assert_eq!(py(&forged, &with_history).status.code(), Some(1));
    }
}
