//! The CLI of the verifiable core, command by command.

use ledger_core::HashAlg;
use ledger_tests::{ledger, ledger_ok, repo_root};
use serde_json::Value;

fn sample() -> String {
    repo_root()
        .join("samples/incident-2023.jsonl")
        .display()
        .to_string()
}

#[test]
fn the_whole_cli_on_the_sample_data() {
    for hash in ["blake3", "sha256"] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        ledger_ok(
            &d,
            &[
                "init",
                "--origin",
                "ledger.example/bergen-bv",
                "--hash",
                hash,
            ],
        );
        let receipts = ledger_ok(&d, &["append", &sample()]);
        let lines: Vec<Value> = receipts
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines[199]["seq"], 199);
        assert!(lines.iter().all(|r| r["duplicate"] == false));

        // Appending again is idempotent: the same receipts, nothing new.
        let again = ledger_ok(&d, &["append", &sample()]);
        let again: Vec<Value> = again
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            again
                .iter()
                .zip(&lines)
                .all(|(a, b)| a["seq"] == b["seq"] && a["hash"] == b["hash"])
        );
        assert!(again.iter().all(|r| r["duplicate"] == true));

        // History: every event of one message, in order; --dir after the subcommand.
        let msg = lines[0]["id"].as_str().unwrap().to_string();
        let _ = msg;
        let h: Value =
            serde_json::from_str(&ledger_ok(&d, &["history", "POL-2022-00001", "--json"])).unwrap();
        let entries = h["entries"].as_array().unwrap();
        assert!(entries.len() >= 2);
        assert_eq!(entries[0]["event"]["type"], "sent");
        let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert!(ledger_ok(&d, &["history", "POL-2022-00001"]).contains("sent"));

        // Checkpoint: a C2SP note over all 200 entries.
        let note = ledger_ok(&d, &["checkpoint"]);
        assert!(
            note.starts_with("ledger.example/bergen-bv\n200\n"),
            "{note}"
        );
        let cp: Value = serde_json::from_str(&ledger_ok(&d, &["checkpoint", "--json"])).unwrap();
        assert_eq!(cp["size"], 200);

        // Proofs verify against the signed root.
        let alg: HashAlg = hash.parse().unwrap();
        let p: Value =
            serde_json::from_str(&ledger_ok(&d, &["prove", "inclusion", "--seq", "41"])).unwrap();
        assert_eq!(p["root"], cp["root"]);
        assert_eq!(p["leaf_hash"], lines[41]["hash"]);
        let path: Vec<[u8; 32]> = p["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                hex::decode(x.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let hx = |v: &Value| -> [u8; 32] {
            hex::decode(v.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        };
        ledger_core::merkle::verify_inclusion(
            alg,
            &hx(&p["leaf_hash"]),
            41,
            200,
            &path,
            &hx(&p["root"]),
        )
        .unwrap();
        let c: Value = serde_json::from_str(&ledger_ok(
            &d,
            &["prove", "consistency", "--from", "100", "--to", "150"],
        ))
        .unwrap();
        let cpath: Vec<[u8; 32]> = c["path"].as_array().unwrap().iter().map(hx).collect();
        ledger_core::merkle::verify_consistency(
            alg,
            100,
            150,
            &hx(&c["from_root"]),
            &hx(&c["to_root"]),
            &cpath,
        )
        .unwrap();
        let out = ledger(&d, &["prove", "inclusion", "--seq", "500"]);
        assert_eq!(out.status.code(), Some(2));

        // Verify, reindex, export, verify the bundle offline with the key.
        let key = std::fs::read_to_string(d.join("verifier.key")).unwrap();
        let v = ledger_ok(&d, &["verify", "--key", key.trim()]);
        assert!(v.starts_with("OK: 200 entries"), "{v}");
        let r: Value = serde_json::from_str(&ledger_ok(&d, &["reindex", "--json"])).unwrap();
        assert_eq!(r["identical"], true);
        for out in ["bundle", "bundle.tar"] {
            let b = tmp.path().join(out);
            ledger_ok(&d, &["export", "--out", b.to_str().unwrap()]);
            let keyarg = format!("@{}", d.join("verifier.key").display());
            let v: Value = serde_json::from_str(&ledger_ok(
                &d,
                &[
                    "verify",
                    "--bundle",
                    b.to_str().unwrap(),
                    "--key",
                    &keyarg,
                    "--json",
                ],
            ))
            .unwrap();
            assert_eq!(
                (v["ok"].as_bool(), v["entries"].as_u64()),
                (Some(true), Some(200)),
                "{v}"
            );
        }
    }
}

/// What a newcomer reads: commands grouped by who uses them, an unknown message the
/// same error in `history` and `status`, a channel's notice with its status in the
/// table, and `verify`'s root written as the checkpoint writes it.
#[test]
fn what_a_newcomer_reads_is_plain_and_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/bergen-bv"]);
    ledger_ok(&d, &["append", &sample()]);

    let help = ledger_ok(&d, &["--help"]);
    let at = |s: &str| {
        help.find(s)
            .unwrap_or_else(|| panic!("--help lacks {s:?}:\n{help}"))
    };
    assert!(at("Regulators and case handlers") < at("  history "));
    assert!(at("  history ") < at("Auditors and monitors"));
    assert!(at("Auditors and monitors") < at("  verify "));
    assert!(at("Operators") < at("  serve "));

    for cmd in ["history", "status"] {
        let out = ledger(&d, &[cmd, "POL-1999-99999"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("no event names message \"POL-1999-99999\""),
            "{cmd}: {err}"
        );
        assert!(out.stdout.is_empty(), "{cmd} printed an answer for nothing");
    }

    // Altinn's "never read": the status a notice carries is in the table, not only
    // in --json.
    let h: Value =
        serde_json::from_str(&ledger_ok(&d, &["history", "POL-2022-00017", "--json"])).unwrap();
    let sent = &h["entries"][0]["event"];
    let notice = serde_json::json!({
        "id": "altinn-notice-1", "type": "notice", "message": "POL-2022-00017",
        "at": "2022-12-12T16:10:00Z",
        "reporter": {"org": sent["from"], "system": "altinn-adapter"},
        "from": sent["from"], "to": sent["to"],
        "notice": "not_opened", "status": "never_read", "system": "altinn"
    });
    let file = tmp.path().join("notice.jsonl");
    std::fs::write(&file, format!("{notice}\n")).unwrap();
    ledger_ok(&d, &["append", file.to_str().unwrap()]);
    let table = ledger_ok(&d, &["history", "POL-2022-00017"]);
    let row = table
        .lines()
        .find(|l| l.contains("notice"))
        .unwrap_or_else(|| panic!("no notice row:\n{table}"));
    assert!(
        row.contains("not_opened: never_read (from altinn)"),
        "{row}"
    );

    // The root, as the checkpoint of the same size writes it.
    let note = ledger_ok(&d, &["checkpoint"]);
    let mut lines = note.lines();
    let size = lines.nth(1).unwrap();
    let root = lines.next().unwrap();
    let v = ledger_ok(&d, &["verify"]);
    assert!(
        v.contains(&format!("root at size {size}: {root} ")),
        "verify:\n{v}\ncheckpoint:\n{note}"
    );
    let j: Value = serde_json::from_str(&ledger_ok(&d, &["verify", "--json"])).unwrap();
    assert_eq!(j["root_line"], root);
}

#[test]
fn init_refuses_an_existing_ledger_and_the_dir_comes_from_env_or_either_side() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "o.example/x"]);
    let out = ledger(&d, &["init", "--origin", "o.example/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = std::process::Command::new(ledger_tests::ledger_bin())
        .args(["checkpoint", "--dir", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new(ledger_tests::ledger_bin())
        .arg("checkpoint")
        .env("LEDGER_DIR", &d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("o.example/x\n0\n"));
    let out = ledger(&tmp.path().join("nothing"), &["history", "M"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger init"));
}

#[test]
fn a_closed_pipe_ends_a_command_quietly_never_a_panic() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    ledger_ok(&d, &["demo", "--messages", "20000"]);
    for args in [
        // Each prints far more than a pipe's buffer (64 KiB).
        &["report", "late", "--format", "csv"][..],
        &["report", "late", "--format", "table"][..],
        &["report", "late", "--json"][..],
    ] {
        // `ledger … | head -c 16`: read a little, then close the pipe.
        let mut child = std::process::Command::new(ledger_tests::ledger_bin())
            .arg("--dir")
            .arg(&d)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn verify_privacy_names_what_older_rules_let_in_but_never_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/scan"]);
    ledger_ok(&d, &["append", &sample()]);
    // A format-2 log holds no free text: nothing to say.
    let v: Value =
        serde_json::from_str(&ledger_ok(&d, &["verify", "--privacy", "--json"])).unwrap();
    assert!(v.to_string().contains("privacy: 0 entries"), "{v}");
    // Format-1 events, as an older ledger holds them (imported with
    // --event-format 1): free-text notes.
    let old = tmp.path().join("old.jsonl");
    let lines: String = (0..4)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "id": format!("old-{i}"), "type": "resolved", "message": format!("OLD-{i}"),
                    "at": "2023-05-08T09:30:00Z",
                    "reporter": {"org": "974760673", "system": "websak"},
                    "outcome": "resent_and_confirmed",
                    "note": "resent by letter after the 2023 review; receipt confirmed by phone"
                })
            )
        })
        .collect();
    std::fs::write(&old, lines).unwrap();
    ledger_ok(
        &d,
        &["append", "--event-format", "1", old.to_str().unwrap()],
    );
    let v: Value =
        serde_json::from_str(&ledger_ok(&d, &["verify", "--privacy", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "warnings, not faults: {v}");
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let notes: Vec<&&str> = warnings.iter().filter(|w| w.contains("`note`")).collect();
    assert_eq!(notes.len(), 4, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.starts_with("privacy: 4 entries")),
        "{warnings:?}"
    );
    // The sample's notes are free text; none of it is repeated.
    assert!(!v.to_string().contains("resent by letter"), "{v}");
    // Without the flag, nothing of the kind is said.
    let v: Value = serde_json::from_str(&ledger_ok(&d, &["verify", "--json"])).unwrap();
    assert!(!v.to_string().contains("privacy"), "{v}");
}

/// Issue 11, defect 7: on a format-2 ledger (what `ledger init` makes) `ledger append`
/// takes no free text at all, so nothing about a person can reach the chain through
/// it; `--event-format 1` imports older events, still under admission's
/// national-id rules; `ledger upgrade` moves an older ledger.
#[test]
fn append_takes_no_free_text_on_a_format_2_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/text"]);
    let write = |name: &str, v: &Value| {
        let p = tmp.path().join(name);
        std::fs::write(&p, format!("{v}\n")).unwrap();
        p
    };
    let base = serde_json::json!({
        "id": "r-1", "type": "resolved", "message": "M-1", "at": "2023-05-08T09:30:00Z",
        "reporter": {"org": "974760673", "system": "websak"},
        "from": "974760673", "to": "964338531", "outcome": "false_alarm"
    });
    let cases = [
        ("note", {
            let mut v = base.clone();
            v["note"] = serde_json::json!("spoke to the mother, Kari");
            v
        }),
        (
            "reason",
            serde_json::json!({
                "id": "d-1", "type": "deleted", "message": "M-1", "at": "2023-05-08T09:30:00Z",
                "reporter": {"org": "974760673", "system": "websak"},
                "from": "974760673", "to": "964338531", "reason": "mor Kari ringte, ADHD"
            }),
        ),
        ("message", {
            let mut v = base.clone();
            v["message"] = serde_json::json!("0101\u{2060}0012356");
            v
        }),
    ];
    for (field, v) in cases {
        let p = write(&format!("{field}.jsonl"), &v);
        let out = ledger(&d, &["append", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{field}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("field `{field}`")), "{field}: {err}");
    }
    let p = write("ok.jsonl", &base);
    ledger_ok(&d, &["append", p.to_str().unwrap()]);
    // Older events, imported as such: no parties on a resolution, a note allowed by
    // format 1, but never a national identity number.
    let mut old = base.clone();
    let o = old.as_object_mut().unwrap();
    o.remove("from");
    o.remove("to");
    o.insert("id".into(), serde_json::json!("old-1"));
    o.insert("note".into(), serde_json::json!("resent by letter"));
    let p = write("old.jsonl", &old);
    let out = ledger(&d, &["append", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "format 2 by default");
    ledger_ok(&d, &["append", "--event-format", "1", p.to_str().unwrap()]);
    old["id"] = serde_json::json!("old-2");
    old["note"] = serde_json::json!("barnet 0101\u{2060}0012356");
    let p = write("old-id.jsonl", &old);
    let out = ledger(&d, &["append", "--event-format", "1", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    ledger_ok(&d, &["verify", "--deep", "--unique-ids"]);

    // An older ledger moves to format 2 by `ledger upgrade`, and only then takes it.
    let info = d.join("ledger.json");
    let text = std::fs::read_to_string(&info).unwrap();
    std::fs::write(&info, text.replace("\"format\": 2", "\"format\": 1")).unwrap();
    let p = write("new.jsonl", &{
        let mut v = base.clone();
        v["id"] = serde_json::json!("r-2");
        v
    });
    let out = ledger(&d, &["append", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger upgrade"));
    let v: Value = serde_json::from_str(&ledger_ok(&d, &["--json", "upgrade"])).unwrap();
    assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(1), Some(2)));
    ledger_ok(&d, &["append", p.to_str().unwrap()]);
    ledger_ok(&d, &["verify", "--deep", "--unique-ids"]);
}

/// `ledger append` parses in batches on every core and keeps two chunks in flight
/// (issue 15): across many batches and chunks, every line gets its receipt, in input
/// order, with consecutive seqs; a bad line in the last batch still stops the whole
/// input before anything is appended, and names its line.
#[test]
fn append_of_many_batches_answers_every_line_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/many"]);
    // More than one batch (8192 lines) and more than two chunks (4096 events).
    let n = 10_000usize;
    let line = |i: usize| {
        serde_json::json!({
            "id": format!("ev-{i}"), "type": "delivered", "message": format!("M-{}", i / 2),
            "at": "2023-05-08T09:30:00Z",
            "reporter": {"org": "974760673", "system": "websak"},
            "from": "974760673", "to": "964338531"
        })
        .to_string()
    };
    let mut text: String = (0..n).map(|i| line(i) + "\n").collect();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{text}{{\"id\": 1}}\n")).unwrap();
    let out = ledger(&d, &["append", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("line {}", n + 1)), "{err}");
    assert!(err.contains("nothing was appended"), "{err}");

    text.insert_str(0, "\n   \n");
    let good = tmp.path().join("good.jsonl");
    std::fs::write(&good, &text).unwrap();
    let receipts = ledger_ok(&d, &["append", good.to_str().unwrap()]);
    let receipts: Vec<Value> = receipts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(receipts.len(), n);
    for (i, r) in receipts.iter().enumerate() {
        assert_eq!(r["line"], i + 3, "blank lines count, and are skipped");
        assert_eq!(r["seq"], i);
        assert_eq!(r["id"], format!("ev-{i}"));
        assert_eq!(r["duplicate"], false);
    }
}

/// `scripts/demo`'s first screen shows the point: the messages that vanished and how
/// the ledger caught one (it once began with a message the sample does not hold, and
/// printed nothing).
#[test]
fn the_demo_s_first_screen_shows_a_vanished_message_and_how_it_was_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/demo"))
        .arg("--quick")
        .env("LEDGER_BIN", ledger_tests::ledger_bin())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let text = ledger_tests::output_text(&out);
    assert!(out.status.success(), "{text}");
    let at = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("no {s:?} in:\n{text}"))
    };
    assert!(at("$ ledger report lost") < at("10 lost message(s)"));
    assert!(at("$ ledger status POL-2022-00017") < at("verdict    lost (expired)"));
    assert!(at("verdict    lost (expired)") < at("$ ledger checkpoint"));
    assert!(at("open        ┆ 2022-11-19T16:10:00Z ┆ missed") < at("$ ledger checkpoint"));
    assert!(at("OK: 200 entries, chain intact") > at("$ ledger verify"));
    assert!(!text.contains("no event"), "{text}");
}
