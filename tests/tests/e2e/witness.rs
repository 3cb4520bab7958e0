//! `ledger witness`: two commands run one, and it speaks c2sp.org/tlog-witness over
//! HTTP to a real ledger's checkpoints and proofs, answering every status the
//! protocol defines.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use ledger_core::cosignature::CosignerVerifier;
use ledger_core::note::Note;
use ledger_tests::{event_line, ledger_bin, ledger_json, ledger_ok};
use serde_json::Value;

fn start_witness(dir: &Path) -> (Child, String) {
    let mut child = Command::new(ledger_bin())
        .arg("--dir")
        .arg(dir)
        .args(["witness", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("witness.err")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("ledger witness: listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (child, base)
}

/// `ledger witness init --name witness.tilsyn.example` in `wdir`, then `witness
/// add-log` of the ledger in `ledger` (its tree hash `hash`): the witness's key.
fn witness_of(wdir: &Path, ledger: &Path, hash: &str) -> CosignerVerifier {
    let init = ledger_json(
        wdir,
        &[
            "--json",
            "witness",
            "init",
            "--name",
            "witness.tilsyn.example",
        ],
    );
    let key_file = format!("@{}", ledger.join("verifier.key").display());
    ledger_ok(
        wdir,
        &["witness", "add-log", "--key", &key_file, "--hash", hash],
    );
    init["verifier_key"].as_str().unwrap().parse().unwrap()
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

fn post(base: &str, body: &str) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("{base}/add-checkpoint"))
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().read_to_string().unwrap();
    Reply {
        status,
        content_type,
        body,
    }
}

fn append(ledger: &Path, from: usize, n: usize) {
    let file = ledger.with_extension(format!("batch{from}.jsonl"));
    let text: String = (from..from + n)
        .map(|i| event_line(&format!("e{i}"), &format!("M{i}")) + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    ledger_ok(ledger, &["append", file.to_str().unwrap()]);
}

fn checkpoint(ledger: &Path) -> (u64, String) {
    let v = ledger_json(ledger, &["--json", "checkpoint"]);
    (
        v["size"].as_u64().unwrap(),
        v["note"].as_str().unwrap().to_string(),
    )
}

fn proof_lines(ledger: &Path, from: u64, to: u64) -> String {
    let v: Value = serde_json::from_str(&ledger_ok(
        ledger,
        &[
            "prove",
            "consistency",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ],
    ))
    .unwrap();
    v["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let raw = hex::decode(h.as_str().unwrap()).unwrap();
            format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
        .collect()
}

#[test]
fn a_witness_cosigns_consistent_checkpoints_and_answers_every_status() {
    for hash in ["sha256", "blake3"] {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = tmp.path().join("ledger");
        ledger_ok(
            &ledger,
            &[
                "init",
                "--origin",
                "ledger.example/witnessed",
                "--hash",
                hash,
            ],
        );
        let wdir = tmp.path().join("witness");
        // Two commands (and adding the log) run a witness.
        let vkey = witness_of(&wdir, &ledger, hash);
        let again = ledger_tests::ledger(&wdir, &["witness", "init", "--name", "w2.example"]);
        assert_eq!(
            again.status.code(),
            Some(2),
            "a witness's key is never replaced"
        );

        append(&ledger, 0, 5);
        let (s1, cp1) = checkpoint(&ledger);
        append(&ledger, 5, 7);
        let (s2, cp2) = checkpoint(&ledger);
        let (mut child, base) = start_witness(&wdir);

        // 200: first contact, with a cosignature that verifies over the note text.
        let r = post(&base, &format!("old 0\n\n{cp1}"));
        assert_eq!(r.status, 200, "{hash}: {}", r.body);
        let text = Note::parse(&cp1).unwrap().text;
        vkey.verify_line(&text, &r.body).unwrap();
        // 409 with the size, exactly as the spec's clients parse it.
        let r = post(&base, &format!("old 0\n\n{cp2}"));
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (409, "text/x.tlog.size")
        );
        assert_eq!(r.body, format!("{s1}\n"));
        // 422: a proof that is not the proof.
        let r = post(
            &base,
            &format!("old {s1}\n{}\n{cp2}", proof_lines(&ledger, 1, s2)),
        );
        assert_eq!(r.status, 422, "{}", r.body);
        // 200 with the right proof; the monitoring endpoint shows it cosigned.
        let r = post(
            &base,
            &format!("old {s1}\n{}\n{cp2}", proof_lines(&ledger, s1, s2)),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let origin_hash = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest("ledger.example/witnessed"))
        };
        let watched = ureq::get(&format!("{base}/{origin_hash}/checkpoint"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        assert_eq!(
            watched,
            format!("{cp2}{}", r.body),
            "the last cosigned, with its cosignature"
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let none = agent
            .get(&format!("{base}/{}/checkpoint", "00".repeat(32)))
            .call()
            .unwrap();
        assert_eq!(none.status().as_u16(), 404);
        // 400: old beyond the checkpoint, or not a request at all.
        assert_eq!(post(&base, &format!("old {}\n\n{cp2}", s2 + 1)).status, 400);
        assert_eq!(post(&base, "hello").status, 400);
        // 403: the same origin signed by another key; 404: another origin.
        let other = tmp.path().join("other");
        ledger_ok(
            &other,
            &[
                "init",
                "--origin",
                "ledger.example/witnessed",
                "--hash",
                hash,
            ],
        );
        append(&other, 0, 3);
        assert_eq!(
            post(&base, &format!("old {s2}\n\n{}", checkpoint(&other).1)).status,
            403
        );
        let stranger = tmp.path().join("stranger");
        ledger_ok(&stranger, &["init", "--origin", "ledger.example/stranger"]);
        assert_eq!(
            post(&base, &format!("old 0\n\n{}", checkpoint(&stranger).1)).status,
            404
        );
        // 413 for a body over 16 KiB (axum's limit; never read whole).
        assert!(post(&base, &"x".repeat(20_000)).status >= 400);

        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        // The state outlives the process: after a restart the witness still knows s2.
        let (mut child, base) = start_witness(&wdir);
        let r = post(&base, &format!("old 0\n\n{cp2}"));
        assert_eq!((r.status, r.body), (409, format!("{s2}\n")));
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn cosign(base: &str, old: u64, proof: &str, note: &str) -> Reply {
    post(base, &format!("old {old}\n{proof}\n{note}"))
}

/// Receipts a sender keeps, checked with no network and no ledger under policies
/// of two witnesses (2-of-2 and 1-of-2), and a fork's receipt refused.
#[test]
fn receipts_verify_offline_under_a_witness_policy_and_a_forks_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    let fork = tmp.path().join("fork");
    ledger_and_fork(&ledger, &fork, "ledger.example/receipts");
    let (size, note) = checkpoint(&ledger);
    let key_file = format!("@{}", ledger.join("verifier.key").display());
    let witnesses = two_witnesses(tmp.path(), &key_file);
    // The log's checkpoint, cosigned by both (what the log will serve).
    let mut cosigned = note.clone();
    for (_, base, _) in &witnesses {
        let r = cosign(base, 0, "", &note);
        assert_eq!(r.status, 200, "{}", r.body);
        cosigned.push_str(&r.body);
    }

    // The receipt of event e3, as the sender asks for it (format 2: with its org).
    let out = ledger_tests::ledger(&ledger, &["receipt", "e3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org"));
    let file = tmp.path().join("e3.tlog-proof");
    ledger_ok(
        &ledger,
        &[
            "receipt",
            "e3",
            "--org",
            "974760673",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    assert!(text.contains("\nindex 3\n"));
    // The log serves the cosigned checkpoint: the receipt carries it.
    let with_cosigs = text.replace(&note, &cosigned);
    std::fs::write(&file, &with_cosigs).unwrap();

    let vkey = std::fs::read_to_string(ledger.join("verifier.key")).unwrap();
    let policy = |quorum: &str| {
        let p = tmp
            .path()
            .join(format!("policy-{}", quorum.replace(' ', "-")));
        std::fs::write(
            &p,
            format!(
                "log {}\nwitness tilsyn {}\nwitness politi {}\n{quorum}\n",
                vkey.trim(),
                witnesses[0].2,
                witnesses[1].2
            ),
        )
        .unwrap();
        p
    };
    let both = policy("group both all tilsyn politi\nquorum both");
    let one = policy("group one any tilsyn politi\nquorum one");
    let check = |file: &Path, p: &Path| {
        ledger_tests::ledger(
            tmp.path(),
            &[
                "--json",
                "verify-receipt",
                file.to_str().unwrap(),
                "--policy",
                p.to_str().unwrap(),
            ],
        )
    };
    for p in [&both, &one] {
        let out = check(&file, p);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["index"].as_u64(), v["size"].as_u64()),
            (Some(3), Some(size))
        );
        assert_eq!(v["event"]["id"], "e3");
    }
    // Only one cosignature: 1-of-2 holds, 2-of-2 does not.
    let one_sig = text.replace(
        &note,
        &format!("{note}{}", cosign(&witnesses[0].1, size, "", &note).body),
    );
    let one_file = tmp.path().join("one.tlog-proof");
    std::fs::write(&one_file, one_sig).unwrap();
    assert_eq!(check(&one_file, &one).status.code(), Some(0));
    let out = check(&one_file, &both);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quorum"));

    // Another entry's bytes under this path: not included.
    let forged = with_cosigs.replacen(
        &with_cosigs.lines().nth(1).unwrap().to_string(),
        &format!(
            "extra {}",
            base64::engine::general_purpose::STANDARD.encode(b"{}")
        ),
        1,
    );
    let forged_file = tmp.path().join("forged.tlog-proof");
    std::fs::write(&forged_file, forged).unwrap();
    let out = check(&forged_file, &one);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not included"));
    // A second implementation, from the specs alone, agrees on all of it.
    if ledger_tests::python_ready() {
        use ledger_tests::python_verify_receipt as py;
        for (f, p, want) in [
            (&file, &both, 0),
            (&file, &one, 0),
            (&one_file, &one, 0),
            (&one_file, &both, 1),
            (&forged_file, &one, 1),
        ] {
            let (code, said) = py(f, p);
            assert_eq!(
                code,
                Some(want),
                "{} under {}: {said}",
                f.display(),
                p.display()
            );
        }
    }

    // A fork: same origin and key, entry 3 different, re-signed. The witnesses that
    // cosigned the original refuse it, so its receipts never meet a witness quorum.
    let (fsize, fnote) = checkpoint(&fork);
    assert_eq!(fsize, size);
    for (_, base, _) in &witnesses {
        let r = cosign(base, size, "", &fnote);
        assert_eq!(r.status, 409, "same size, another root: a split view");
    }
    let ffile = tmp.path().join("fork.tlog-proof");
    ledger_ok(
        &fork,
        &[
            "receipt",
            "e3",
            "--org",
            "974760673",
            "--out",
            ffile.to_str().unwrap(),
        ],
    );
    let out = check(&ffile, &one);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (mut child, _, _) in witnesses {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The fork's entries 3..6: e3 names another message.
fn append_fork(fork: &Path) {
    let file = fork.with_extension("fork.jsonl");
    let text: String = (3..6)
        .map(|i| {
            let msg = if i == 3 {
                "M-HIDDEN".to_string()
            } else {
                format!("M{i}")
            };
            event_line(&format!("e{i}"), &msg) + "\n"
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    ledger_ok(fork, &["append", file.to_str().unwrap()]);
}

/// SIGKILL at any moment never makes the witness cosign two roots for one size, and
/// never lets it forget a size it cosigned: a client races a log and its fork (the
/// same key) against a witness killed again and again.
#[test]
fn a_witness_killed_at_any_moment_never_cosigns_two_roots_for_one_size() {
    use ledger_core::checkpoint::{Checkpoint, SigningKey};
    use ledger_core::{HashAlg, merkle};
    use std::collections::BTreeMap;

    let tmp = tempfile::tempdir().unwrap();
    let origin = "ledger.example/killed";
    let log = SigningKey::generate(origin).unwrap();
    let wdir = tmp.path().join("witness");
    ledger_ok(
        &wdir,
        &["witness", "init", "--name", "witness.crash.example"],
    );
    ledger_ok(
        &wdir,
        &[
            "witness",
            "add-log",
            "--key",
            &log.verifier().to_string(),
            "--hash",
            "sha256",
        ],
    );

    // Two histories under one key: they agree up to 10 entries, then differ.
    let alg = HashAlg::Sha256;
    let leaves = |fork: bool| -> Vec<[u8; 32]> {
        (0..4000)
            .map(|i| {
                let tag = if fork && i >= 10 { "fork" } else { "log" };
                alg.leaf(format!("{tag} {i}").as_bytes())
            })
            .collect()
    };
    let histories = [leaves(false), leaves(true)];
    let note = |h: usize, n: u64| {
        log.sign(&Checkpoint {
            origin: origin.into(),
            size: n,
            root: merkle::root_of(alg, &histories[h][..n as usize]),
        })
    };
    let proof = |h: usize, old: u64, new: u64| -> String {
        let src = (alg, &histories[h][..]);
        merkle::consistency_proof(alg, &src, old, new)
            .unwrap()
            .iter()
            .map(|x| format!("{}\n", base64::engine::general_purpose::STANDARD.encode(x)))
            .collect()
    };

    let mut cosigned: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let mut floor = 0u64;
    let mut refused = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    // At least 25 kills, and on until the race has cosigned enough sizes to mean
    // something: how much a witness does before its random kill depends on the
    // machine's speed, and a slow one needs more rounds (bounded).
    let mut round = 0;
    while round < 25 || (cosigned.len() <= 20 && round < 200) {
        round += 1;
        let (mut child, base) = start_witness(&wdir);
        // What the witness holds now: never below what it cosigned before the kill.
        let r = post(&base, &format!("old 0\n\n{}", note(0, 0)));
        let have: u64 = if r.status == 200 {
            0
        } else {
            r.body.trim().parse().unwrap()
        };
        assert!(
            have >= floor,
            "round {round}: the witness forgot size {floor} (has {have})"
        );
        let killer = {
            let pid = child.id();
            let wait = 5 + next(100);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(wait));
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            })
        };
        let mut at = have;
        for _ in 0..500 {
            if at >= 3990 {
                break;
            }
            let h = next(2) as usize;
            let to = at + 1 + next(5);
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let body = format!("old {at}\n{}\n{}", proof(h, at, to), note(h, to));
            let Ok(resp) = agent.post(&format!("{base}/add-checkpoint")).send(&body) else {
                break; // killed
            };
            let status = resp.status().as_u16();
            let text = resp.into_body().read_to_string().unwrap_or_default();
            match status {
                200 => {
                    let root = merkle::root_of(alg, &histories[h][..to as usize]);
                    if let Some(prev) = cosigned.insert(to, root) {
                        assert_eq!(prev, root, "two roots cosigned for size {to}");
                    }
                    floor = floor.max(to);
                    at = to;
                }
                409 => at = text.trim().parse().unwrap_or(at),
                422 => refused += 1, // the other history: refused, as it must be
                other => panic!("round {round}: unexpected {other}: {text}"),
            }
        }
        killer.join().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        cosigned.len() > 20,
        "the race cosigned too little to mean anything: {} sizes, {refused} refused",
        cosigned.len()
    );
}

fn readyz(base: &str) -> String {
    ureq::get(&format!("{base}/readyz"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The whole loop on loopback: `ledger serve` submits its checkpoints to two
/// witnesses, keeps their cosignatures, serves the cosigned checkpoint, and its
/// receipts verify offline under 2-of-2; a fork of it shown to the same witnesses is
/// refused and raises the fork's alarm.
#[test]
fn a_served_log_is_cosigned_and_its_fork_raises_the_alarm() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    let fork = tmp.path().join("fork");
    ledger_and_fork(&ledger, &fork, "ledger.example/served");

    let key_file = format!("@{}", ledger.join("verifier.key").display());
    let witnesses = two_witnesses(tmp.path(), &key_file);
    let vkey = std::fs::read_to_string(ledger.join("verifier.key")).unwrap();
    let policy = format!(
        "log {}\nwitness tilsyn {} {}\nwitness politi {} {}\ngroup both all tilsyn politi\nquorum both\n",
        vkey.trim(),
        witnesses[0].2,
        witnesses[0].1,
        witnesses[1].2,
        witnesses[1].1
    );
    for dir in [&ledger, &fork] {
        std::fs::write(dir.join("witness.policy"), &policy).unwrap();
    }
    let policy_file = tmp.path().join("reader.policy");
    std::fs::write(&policy_file, &policy).unwrap();

    let (mut server, base) = ledger_tests::serve(&ledger);
    wait_for("the cosigned checkpoint", || {
        ledger.join("checkpoint.cosigned").exists()
    });
    let note = std::fs::read_to_string(ledger.join("checkpoint.cosigned")).unwrap();
    assert_eq!(Note::parse(&note).unwrap().signatures.len(), 3, "{note}");
    // The server's /v1/checkpoint is that note.
    let v = ledger_tests::token(&ledger, "974760673", "ledger:audit");
    let served = ureq::get(&format!("{base}/v1/checkpoint"))
        .header("Authorization", &format!("Bearer {}", v.as_str()))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(served, note);
    assert_eq!(readyz(&base), "ready\n");

    // The fork, served to the same witnesses: refused, and the fork's server says so.
    let (mut forked, fork_base) = ledger_tests::serve(&fork);
    wait_for("the fork's alarm", || {
        readyz(&fork_base).contains("witness alarm")
    });
    let alarm = readyz(&fork_base);
    // Same size as the original's cosigned checkpoint, another root.
    assert!(alarm.contains("split view"), "{alarm}");
    assert!(!fork.join("checkpoint.cosigned").exists());
    assert!(
        std::fs::read_to_string(fork.join("serve.err"))
            .unwrap()
            .contains("ALARM")
    );

    // A receipt taken while the server runs carries the cosigned checkpoint and
    // verifies offline under 2-of-2.
    let file = tmp.path().join("e4.tlog-proof");
    let said = receipt_verifies(&ledger, "e4", &file, &policy_file);
    assert!(said.contains("cosigned by: tilsyn, politi"), "{said}");
    // The same receipt from the API, to the sending organisation's read token.
    let read: Value = serde_json::from_str(&ledger_ok(
        &ledger,
        &[
            "--json",
            "token",
            "create",
            "--org",
            "974760673",
            "--scope",
            "ledger:read",
        ],
    ))
    .unwrap();
    let api_receipt = ureq::get(&format!("{base}/v1/receipts?seq=4"))
        .header(
            "Authorization",
            &format!("Bearer {}", read["token"].as_str().unwrap()),
        )
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(api_receipt, std::fs::read_to_string(&file).unwrap());
    // A sender may wait for its receipt in the append itself.
    live_receipt_verifies(&ledger, &base, "e-live", &policy_file);

    for child in [&mut server, &mut forked] {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    for (mut child, _, _) in witnesses {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The PostgreSQL store submits to its witnesses the same way (the witnessing thread
/// reads checkpoints and proofs through the store, whichever it is).
#[test]
fn a_postgres_ledger_is_cosigned_too() {
    let Some((url, _db)) = crate::postgres::database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(
        &ledger,
        &[
            "init",
            "--origin",
            "ledger.example/pg-witnessed",
            "--hash",
            "sha256",
            "--store",
            &url,
        ],
    );
    append(&ledger, 0, 4);
    let wdir = tmp.path().join("witness");
    let wkey = witness_of(&wdir, &ledger, "sha256");
    let (mut witness, wbase) = start_witness(&wdir);
    let policy = format!(
        "log {}\nwitness w {} {wbase}\nquorum w\n",
        std::fs::read_to_string(ledger.join("verifier.key"))
            .unwrap()
            .trim(),
        wkey
    );
    std::fs::write(ledger.join("witness.policy"), &policy).unwrap();
    let policy_file = tmp.path().join("reader.policy");
    std::fs::write(&policy_file, &policy).unwrap();
    let (mut server, base) = ledger_tests::serve(&ledger);
    wait_for("the PostgreSQL ledger's cosigned checkpoint", || {
        ledger.join("checkpoint.cosigned").exists()
    });
    // An append with nothing after it is checkpointed and cosigned all the same.
    live_receipt_verifies(&ledger, &base, "e-live", &policy_file);
    ledger_tests::stop(&mut server);
    let file = tmp.path().join("e2.tlog-proof");
    receipt_verifies(&ledger, "e2", &file, &policy_file);
    let _ = witness.kill();
    let _ = witness.wait();
}

fn fetch(url: &str, token: Option<&str>) -> (u16, Vec<u8>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().read_to_vec().unwrap();
    (status, body, cache)
}

/// A monitor checks the log from c2sp.org/tlog-tiles alone: the checkpoint, the hash
/// tiles (no token) and the entry bundles (audit scope) rebuild the signed root.
#[test]
fn the_tiles_rebuild_the_signed_root_for_a_monitor() {
    use ledger_core::{HashAlg, merkle};
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    sha256_ledger(&ledger, "ledger.example/tiled");
    append(&ledger, 0, 300);
    let audit = ledger_tests::token(&ledger, "889640782", "ledger:audit");
    let token = audit.clone();
    let (mut server, base) = ledger_tests::serve(&ledger);

    let (st, note, cache) = fetch(&format!("{base}/tlog/checkpoint"), None);
    assert_eq!((st, cache.as_str()), (200, "max-age=2"));
    let note = String::from_utf8(note).unwrap();
    let key: ledger_core::VerifierKey = std::fs::read_to_string(ledger.join("verifier.key"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cp = key.verify(&note).unwrap();
    assert_eq!(cp.size, 300);

    // Level 0: one full tile and a partial one of 44; level 1: a partial of width 1.
    let (st, full, cache) = fetch(&format!("{base}/tlog/tile/0/000"), None);
    assert_eq!((st, full.len()), (200, 256 * 32));
    assert!(cache.contains("immutable"));
    let (_, part, _) = fetch(&format!("{base}/tlog/tile/0/001.p/44"), None);
    assert_eq!(part.len(), 44 * 32);
    let (_, top, _) = fetch(&format!("{base}/tlog/tile/1/000.p/1"), None);
    let leaves: Vec<[u8; 32]> = full
        .chunks(32)
        .chain(part.chunks(32))
        .map(|c| c.try_into().unwrap())
        .collect();
    let alg = HashAlg::Sha256;
    assert_eq!(top, merkle::root_of(alg, &leaves[..256]).to_vec());
    assert_eq!(
        merkle::root_of(alg, &leaves),
        cp.root,
        "the tiles rebuild the signed root"
    );

    // Entry bundles: u16 length-prefixed entries hashing to the level-0 tile.
    let (st, _, _) = fetch(&format!("{base}/tlog/tile/entries/000"), None);
    assert_eq!(
        st, 401,
        "entries say who wrote to whom: not without a token"
    );
    let (st, bundle, cache) = fetch(&format!("{base}/tlog/tile/entries/001.p/44"), Some(&token));
    assert_eq!(st, 200);
    assert!(
        cache.starts_with("private,"),
        "a shared cache must not hand entries behind a token to others: {cache}"
    );
    let mut at = 0;
    let mut i = 256;
    while at < bundle.len() {
        let n = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
        assert_eq!(
            alg.leaf(&bundle[at + 2..at + 2 + n]),
            leaves[i],
            "entry {i}"
        );
        at += 2 + n;
        i += 1;
    }
    assert_eq!(i, 300);

    // Tiles beyond the checkpoint, and paths that are not tiles, are 404s.
    for path in [
        "0/001",
        "0/001.p/45",
        "0/1",
        "2/000.p/1",
        "entries/x001/000",
    ] {
        let (st, _, _) = fetch(&format!("{base}/tlog/tile/{path}"), Some(&token));
        assert_eq!(st, 404, "{path}");
    }
    ledger_tests::stop(&mut server);
}

/// `ledger --json --token TOKEN mirror --from FROM --into INTO --key KEY`, run in `cwd`.
fn mirror_run(cwd: &Path, from: &str, into: &Path, token: &str, key: &str) -> std::process::Output {
    ledger_tests::ledger(
        cwd,
        &[
            "--json",
            "--token",
            token,
            "mirror",
            "--from",
            from,
            "--into",
            into.to_str().unwrap(),
            "--key",
            key,
        ],
    )
}

/// `ledger mirror` keeps a checked copy through the tiles, answers questions from
/// it, and stops with a clear message on a rollback or a rewritten history (a fork
/// of the log under the same key).
#[test]
fn a_mirror_follows_the_log_and_stops_at_a_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    sha256_ledger(&ledger, "ledger.example/mirrored");
    append(&ledger, 0, 3);
    let fork = tmp.path().join("fork");
    ledger_tests::copy_dir(&ledger, &fork);
    append(&ledger, 3, 297);
    append_fork(&fork);
    let key = format!("@{}", ledger.join("verifier.key").display());
    let token = |dir: &Path| ledger_tests::token(dir, "889640782", "ledger:audit");
    let (t_log, t_fork) = (token(&ledger), token(&fork));
    let (mut server, base) = ledger_tests::serve(&ledger);
    let (mut forked, fork_base) = ledger_tests::serve(&fork);
    let mirror = |from: &str, into: &Path, tok: &str| mirror_run(tmp.path(), from, into, tok, &key);

    let m = tmp.path().join("mirror");
    let out = mirror(&base, &m, &t_log);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(0), Some(300)));
    // Again: nothing new. The copy answers questions, read-only.
    let v: Value = serde_json::from_slice(&mirror(&base, &m, &t_log).stdout).unwrap();
    assert_eq!(v["to"], 300);
    let h = ledger_json(&m, &["--json", "history", "M150"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 1);
    // The operator's off-site copy restores into a ledger that signs on with its key
    // (docs/operations.md: a mirror is the newest copy there is).
    let restored = tmp.path().join("restored");
    let out = ledger_tests::ledger(
        tmp.path(),
        &[
            "restore",
            "--from",
            m.to_str().unwrap(),
            "--into",
            restored.to_str().unwrap(),
            "--signing-key",
            ledger.join("signing.key").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", ledger_tests::output_text(&out));
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, ledger_tests::sent_json("after-restore", "M-R") + "\n").unwrap();
    ledger_ok(&restored, &["append", one.to_str().unwrap()]);
    let v = ledger_ok(&restored, &["verify", "--key", &key]);
    assert!(v.starts_with("OK: 301 entries"), "{v}");

    // An interrupted round leaves entries past the mirror's checkpoint: never
    // checked, so the next round cuts them off, says so, and goes on.
    let entries = m.join("entries.jsonl");
    let kept = std::fs::read(&entries).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&entries)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"event\":{\"half\":").unwrap();
    drop(f);
    let out = mirror(&base, &m, &t_log);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted round"));
    assert_eq!(std::fs::read(&entries).unwrap(), kept);
    // A damaged copy is found, not trusted or repaired.
    let mut bad = kept.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&entries, &bad).unwrap();
    let out = mirror(&base, &m, &t_log);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DAMAGED"), "{err}");
    assert_eq!(
        std::fs::read(&entries).unwrap(),
        bad,
        "reported, not repaired"
    );
    std::fs::write(&entries, &kept).unwrap();

    // The fork (6 entries) after the original (300): a rollback, refused.
    let out = mirror(&fork_base, &m, &t_fork);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("went back in time"));
    // A mirror of the fork, then the original: a rewritten history, refused, and
    // nothing written.
    let m2 = tmp.path().join("mirror-of-fork");
    assert_eq!(mirror(&fork_base, &m2, &t_fork).status.code(), Some(0));
    let before = std::fs::read(m2.join("entries.jsonl")).unwrap();
    let out = mirror(&base, &m2, &t_log);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INCONSISTENT") && err.contains("rewritten"),
        "{err}"
    );
    assert_eq!(std::fs::read(m2.join("entries.jsonl")).unwrap(), before);

    for child in [&mut server, &mut forked] {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

/// An operator may serve entry bundles to anyone (`privacy.public_entry_bundles`):
/// then a monitor mirrors the log with no token, naming its hash.
#[test]
fn public_entry_bundles_let_anyone_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(&ledger, &["init", "--origin", "ledger.example/open"]);
    append(&ledger, 0, 300);
    std::fs::write(
        ledger.join("ledger.toml"),
        "[privacy]\npublic_entry_bundles = true\n",
    )
    .unwrap();
    let (mut server, base) = ledger_tests::serve(&ledger);
    let (st, _, cache) = fetch(&format!("{base}/tlog/tile/entries/000"), None);
    assert_eq!(
        (st, cache.as_str()),
        (200, "public, max-age=31536000, immutable")
    );
    let key = format!("@{}", ledger.join("verifier.key").display());
    let m = tmp.path().join("mirror");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "mirror",
            "--from",
            &base,
            "--into",
            m.to_str().unwrap(),
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        ledger_tests::ledger(tmp.path(), &args)
    };
    let out = run(&[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hash"));
    // The wrong hash: the tree does not come out to the signed root.
    let out = run(&["--hash", "sha256"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("INCONSISTENT"));
    let out = run(&["--hash", "blake3"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["to"], 300);
    assert!(
        ledger_ok(&m, &["verify", "--key", &key]).starts_with("OK: 300 entries"),
        "the copy verifies"
    );
    ledger_tests::stop(&mut server);
}

/// One event through `POST /v1/events?proofs=true` of the server at `base`, with no
/// append after it: the answer carries its receipt, cosigned, which verifies offline
/// under `policy`.
fn live_receipt_verifies(ledger: &Path, base: &str, id: &str, policy: &Path) {
    let write = ledger_tests::token(ledger, "974760673", "ledger:write");
    let answer: Value = serde_json::from_str(
        &ureq::post(&format!("{base}/v1/events?proofs=true"))
            .header("Authorization", &format!("Bearer {}", write.as_str()))
            .header("Content-Type", "application/json")
            .send(&event_line(id, &format!("M-{id}")))
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["proofs_pending"], false, "{answer}");
    let file = policy.with_file_name(format!("{id}.tlog-proof"));
    std::fs::write(&file, answer["receipts"][0]["proof"].as_str().unwrap()).unwrap();
    let out = ledger_tests::ledger(
        policy.parent().unwrap(),
        &[
            "verify-receipt",
            file.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A new SHA-256 ledger (what any C2SP witness and tlog-proof tool can check) at `dir`.
fn sha256_ledger(dir: &Path, origin: &str) {
    ledger_ok(dir, &["init", "--origin", origin, "--hash", "sha256"]);
}

/// A ledger of 6 entries, and its fork by whoever holds its key: a copy at size 3
/// that goes on with another entry 3 (same origin, same key, re-signed).
fn ledger_and_fork(ledger: &Path, fork: &Path, origin: &str) {
    sha256_ledger(ledger, origin);
    append(ledger, 0, 3);
    ledger_tests::copy_dir(ledger, fork);
    append(ledger, 3, 3);
    append_fork(fork);
}

/// Two running witnesses of the ledger whose verifier key is `key_file` (`@path`):
/// (process, base URL, public key) each.
fn two_witnesses(tmp: &Path, key_file: &str) -> Vec<(Child, String, String)> {
    ["witness.tilsyn.example", "witness.politiet.example"]
        .into_iter()
        .map(|name| {
            let wdir = tmp.join(name);
            // Two commands: init (with the log) and serve.
            let v = ledger_json(
                &wdir,
                &[
                    "--json", "witness", "init", "--name", name, "--log", key_file, "--hash",
                    "sha256",
                ],
            );
            assert_eq!(v["logs"].as_array().unwrap().len(), 1, "{v}");
            let (child, base) = start_witness(&wdir);
            (child, base, v["verifier_key"].as_str().unwrap().to_string())
        })
        .collect()
}

/// `ledger receipt EVENT --org …` into `file`, then `ledger verify-receipt` of it
/// under `policy`, which must hold; what the verifier said.
fn receipt_verifies(ledger: &Path, event: &str, file: &Path, policy: &Path) -> String {
    let f = file.to_str().unwrap();
    ledger_ok(
        ledger,
        &["receipt", event, "--org", "974760673", "--out", f],
    );
    let dir = file.parent().unwrap();
    let out = ledger_tests::ledger(
        dir,
        &["verify-receipt", f, "--policy", policy.to_str().unwrap()],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    said
}

/// `witness init --log` checks every log key before it creates anything: a bad one
/// leaves no half-made witness behind.
#[test]
fn witness_init_with_a_bad_log_key_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wdir = tmp.path().join("w");
    let out = ledger_tests::ledger(
        &wdir,
        &[
            "witness",
            "init",
            "--name",
            "witness.example",
            "--log",
            "not-a-key",
            "--hash",
            "sha256",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log not-a-key"));
    assert!(!wdir.join("witness.key").exists());
    // A log's hash is never guessed: a wrong guess refuses its second checkpoint.
    let key = ledger_core::checkpoint::SigningKey::generate("ledger.example/x")
        .unwrap()
        .verifier()
        .to_string();
    let out = ledger_tests::ledger(
        &wdir,
        &[
            "witness",
            "init",
            "--name",
            "witness.example",
            "--log",
            &key,
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log needs --hash"));
    assert!(!wdir.join("witness.key").exists());
}

/// A quorum that never comes is an alarm after `witnessing.quorum_within_seconds`,
/// even while appends go on and every second brings a newer checkpoint to wait for.
#[test]
fn a_quorum_that_never_comes_is_an_alarm_under_steady_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(&ledger, &["init", "--origin", "ledger.example/unwitnessed"]);
    let wkey = ledger_tests::ledger(
        &tmp.path().join("w"),
        &[
            "--json",
            "witness",
            "init",
            "--name",
            "witness.gone.example",
        ],
    );
    let wkey: Value = serde_json::from_slice(&wkey.stdout).unwrap();
    // The witness never runs: port 1 on loopback refuses every connection.
    std::fs::write(
        ledger.join("witness.policy"),
        format!(
            "log {}\nwitness gone {} http://127.0.0.1:1\nquorum gone\n",
            std::fs::read_to_string(ledger.join("verifier.key"))
                .unwrap()
                .trim(),
            wkey["verifier_key"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::write(
        ledger.join("ledger.toml"),
        "[witnessing]\nquorum_within_seconds = 2\n",
    )
    .unwrap();
    let token = |scope: &str| ledger_tests::token(&ledger, "974760673", scope);
    let (write, admin) = (token("ledger:write"), token("ledger:admin"));
    let (mut server, base) = ledger_tests::serve(&ledger);
    let started = std::time::Instant::now();
    let mut i = 0;
    while !readyz(&base).contains("has not reached the witness quorum within 2 s") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no quorum_late alarm: {}",
            readyz(&base)
        );
        let r = ureq::post(&format!("{base}/v1/events"))
            .header("Authorization", &format!("Bearer {write}"))
            .header("Content-Type", "application/json")
            .send(&event_line(&format!("steady{i}"), &format!("M-steady{i}")))
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let metrics = ureq::get(&format!("{base}/metrics"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ledger_witness_alarms{")
                && l.contains("quorum_late")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(!ledger.join("checkpoint.cosigned").exists());
    ledger_tests::stop(&mut server);
}

/// A receipt of a BLAKE3 ledger (the default) verifies with no --hash: the verifier
/// finds the tree's hash and says which; naming the wrong one fails.
#[test]
fn verify_receipt_finds_the_trees_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(&ledger, &["init", "--origin", "ledger.example/b3"]);
    append(&ledger, 0, 5);
    let policy = tmp.path().join("b3.policy");
    std::fs::write(
        &policy,
        format!(
            "log {}\nquorum none\n",
            std::fs::read_to_string(ledger.join("verifier.key"))
                .unwrap()
                .trim()
        ),
    )
    .unwrap();
    let file = tmp.path().join("e2.tlog-proof");
    ledger_ok(
        &ledger,
        &[
            "receipt",
            "e2",
            "--org",
            "974760673",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "verify-receipt",
            file.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ledger_tests::ledger(tmp.path(), &args)
    };
    let out = verify(&[]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["hash"].as_str()),
        (Some(true), Some("blake3"))
    );
    let out = verify(&["--hash", "sha256"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("not included"), "{v}");
}

/// A witnessed log whose key was lost and replaced (FORMAT.md §17): the witness takes
/// the new key only from the log's key history, keeps what it cosigned, and cosigns
/// the new key's checkpoint only with a consistency proof from there; a copy re-keyed
/// by someone else can neither hand the witness its key nor be cosigned.
#[test]
fn a_witness_follows_a_key_rotation_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(&ledger, &["init", "--origin", "ledger.example/rotating"]);
    let wdir = tmp.path().join("witness");
    let vkey = witness_of(&wdir, &ledger, "blake3");
    append(&ledger, 0, 5);
    let (s1, cp1) = checkpoint(&ledger);
    let (mut child, base) = start_witness(&wdir);
    assert_eq!(post(&base, &format!("old 0\n\n{cp1}")).status, 200);

    // The key is lost; the ledger goes on under a new one, announced in its log.
    std::fs::remove_file(ledger.join("signing.key")).unwrap();
    let rekeyed = tmp.path().join("rekeyed");
    let restore = |into: &Path, reason: &str| {
        ledger_ok(
            &ledger,
            &[
                "restore",
                "--from",
                ledger.to_str().unwrap(),
                "--into",
                into.to_str().unwrap(),
                "--new-key",
                reason,
            ],
        )
    };
    restore(&rekeyed, "lost");
    append(&rekeyed, 5, 3);
    let (s2, cp2) = checkpoint(&rekeyed);
    assert_eq!(s2, s1 + 4, "the key entry and three events");
    let proof = proof_lines(&rekeyed, s1, s2);
    // Until the witness is given the new key, it refuses the new key's checkpoints.
    assert_eq!(cosign(&base, s1, &proof, &cp2).status, 403);

    // The witness takes the new key from the log's key history, which names the key
    // it holds before the new one.
    let history = format!("@{}", rekeyed.join("verifier.key").display());
    let r = ledger_json(
        &wdir,
        &[
            "--json", "witness", "add-log", "--key", &history, "--hash", "blake3",
        ],
    );
    assert_eq!(
        r["rotated_from"].as_str().unwrap(),
        std::fs::read_to_string(ledger.join("verifier.key"))
            .unwrap()
            .trim()
    );
    assert_eq!(r["new_key_from_size"], s1 + 1);
    // Someone else re-keys a copy of the log. Its history names the old key too (so a
    // witness's operator takes a history only from the log's operator, by a channel
    // they trust), but not the key the witness holds now: refused.
    let forged = tmp.path().join("forged");
    restore(&forged, "compromised");
    append(&forged, 50, 3);
    let forged_history = format!("@{}", forged.join("verifier.key").display());
    let out = ledger_tests::ledger(
        &wdir,
        &[
            "witness",
            "add-log",
            "--key",
            &forged_history,
            "--hash",
            "blake3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        ledger_tests::output_text(&out)
    );
    assert!(ledger_tests::output_text(&out).contains("rotation its key history records"));
    // A fresh log of the same origin is no rotation either.
    let stranger = tmp.path().join("stranger");
    ledger_ok(&stranger, &["init", "--origin", "ledger.example/rotating"]);
    let out = ledger_tests::ledger(
        &wdir,
        &[
            "witness",
            "add-log",
            "--key",
            &format!("@{}", stranger.join("verifier.key").display()),
            "--hash",
            "blake3",
        ],
    );
    assert_eq!(out.status.code(), Some(2));

    let _ = child.kill();
    let _ = child.wait();
    let (mut child, base) = start_witness(&wdir);
    // What it cosigned under the old key is kept: it asks for a proof from s1.
    let r = post(&base, &format!("old 0\n\n{cp2}"));
    assert_eq!((r.status, r.body), (409, format!("{s1}\n")));
    // The new key signing a size before its start (one the old key signed) is not
    // the log's checkpoint.
    let old_vkey: ledger_core::VerifierKey = std::fs::read_to_string(ledger.join("verifier.key"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let new_signer = ledger_core::SigningKey::from_secret_string(
        &std::fs::read_to_string(rekeyed.join("signing.key")).unwrap(),
    )
    .unwrap();
    let backdated = new_signer.sign(&old_vkey.verify(&cp1).unwrap());
    let r = post(&base, &format!("old {s1}\n\n{backdated}"));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = cosign(&base, s1, &proof, &cp2);
    assert_eq!(r.status, 200, "{}", r.body);
    vkey.verify_line(&Note::parse(&cp2).unwrap().text, &r.body)
        .unwrap();
    // The forged copy's checkpoint is signed by a key the witness does not hold.
    let (s3, cp3) = checkpoint(&forged);
    assert_eq!(
        cosign(&base, s2, &proof_lines(&forged, s2.min(s3), s3), &cp3).status,
        403
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A mirror across a key rotation: with the key it held, it stops and says why; given
/// the ledger's new key history it takes the key entry and what follows, and the copy
/// verifies under that history.
#[test]
fn a_mirror_follows_a_key_rotation_once_given_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    ledger_ok(&ledger, &["init", "--origin", "ledger.example/mirror-rot"]);
    append(&ledger, 0, 5);
    let token = |dir: &Path| ledger_tests::token(dir, "889640782", "ledger:audit");
    let old_key = format!("@{}", ledger.join("verifier.key").display());
    let m = tmp.path().join("mirror");
    let mirror = |base: &str, tok: &str, key: &str| mirror_run(tmp.path(), base, &m, tok, key);
    let t = token(&ledger);
    let (mut server, base) = ledger_tests::serve(&ledger);
    let out = mirror(&base, &t, &old_key);
    assert!(out.status.success(), "{}", ledger_tests::output_text(&out));
    ledger_tests::stop(&mut server);

    std::fs::remove_file(ledger.join("signing.key")).unwrap();
    let rekeyed = tmp.path().join("rekeyed");
    ledger_ok(
        &ledger,
        &[
            "restore",
            "--from",
            ledger.to_str().unwrap(),
            "--into",
            rekeyed.to_str().unwrap(),
            "--new-key",
            "lost",
        ],
    );
    append(&rekeyed, 5, 3);
    let t = token(&rekeyed);
    let (mut server, base) = ledger_tests::serve(&rekeyed);
    let out = mirror(&base, &t, &old_key);
    assert_ne!(out.status.code(), Some(0));
    let err = ledger_tests::output_text(&out);
    assert!(err.contains("does not verify with your key"), "{err}");
    // A history that puts the new key at another size than the log's key entry:
    // the entry is refused, and nothing written.
    let text = std::fs::read_to_string(rekeyed.join("verifier.key")).unwrap();
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, text.replace(" 6\n", " 7\n")).unwrap();
    let out = mirror(&base, &t, &format!("@{}", wrong.display()));
    assert_ne!(out.status.code(), Some(0));
    let err = ledger_tests::output_text(&out);
    assert!(err.contains("entry 5 announces the signing key"), "{err}");
    let history = format!("@{}", rekeyed.join("verifier.key").display());
    let out = mirror(&base, &t, &history);
    assert!(out.status.success(), "{}", ledger_tests::output_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(5), Some(9)));
    let ok = ledger_ok(&m, &["verify", "--key", &history]);
    assert!(ok.starts_with("OK: 9 entries"), "{ok}");
    // `verify --server` takes the server's key history (GET /v1/ledger's key_history)
    // and checks it against yours.
    let ok = ledger_ok(
        tmp.path(),
        &[
            "--server", &base, "--token", &t, "verify", "--key", &history,
        ],
    );
    assert!(ok.starts_with("OK: 9 entries"), "{ok}");
    ledger_tests::stop(&mut server);
}
