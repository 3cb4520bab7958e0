//! Answers a regulator can rely on (issue 12): event-time as-of over backfilled
//! data, reports recomputed from an export bundle with no signing key, the CLI
//! answering while `ledger serve` holds the ledger, and the CLI's `--json` being the
//! very document the API returns.

use std::path::{Path, PathBuf};

use ledger_tests::{ledger, ledger_json, ledger_ok};
use serde_json::{Value, json};

const POLICE: &str = "948842327";
const KOMMUNE: &str = "977019397";
const B: &str = "bekymringsmelding";

/// Format-2 events from the police to the municipality, numbered as they come.
struct Log {
    lines: Vec<Value>,
    n: usize,
}

impl Log {
    fn new() -> Log {
        Log {
            lines: Vec::new(),
            n: 0,
        }
    }

    fn ev(&mut self, kind: &str, msg: &str, at: &str, extra: Value) -> &mut Self {
        self.n += 1;
        let mut v = json!({
            "id": format!("ev-{}", self.n), "type": kind, "message": msg, "at": at,
            "from": POLICE, "to": KOMMUNE,
            "reporter": {"org": POLICE, "system": "websak", "seq": self.n},
        });
        if let Value::Object(o) = extra {
            for (k, x) in o {
                v[k] = x;
            }
        }
        self.lines.push(v);
        self
    }

    fn sent(&mut self, msg: &str, channel: &str, at: &str) -> &mut Self {
        self.ev(
            "sent",
            msg,
            at,
            json!({"channel": channel, "category": B,
                "content_digest": format!("sha256:{}", "ab".repeat(32))}),
        )
    }

    fn append(&mut self, dir: &Path) {
        let file = dir.with_extension(format!("batch{}.jsonl", self.n));
        let text: String = self.lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&file, text).unwrap();
        ledger_ok(dir, &["append", file.to_str().unwrap()]);
        self.lines.clear();
    }
}

fn init(tmp: &Path) -> PathBuf {
    let d = tmp.join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/answers"]);
    d
}

/// 2021's story, recorded today: X expired unread in February and was resent by
/// letter in June; Y was opened in time; Z was handed off and never received.
fn backfill(d: &Path) {
    let mut l = Log::new();
    l.sent("X", "altinn", "2021-01-10T09:00:00Z")
        .ev("delivered", "X", "2021-01-10T09:10:00Z", json!({}))
        .ev("expired", "X", "2021-02-09T09:00:00Z", json!({}))
        .ev(
            "resent",
            "X",
            "2021-06-01T09:00:00Z",
            json!({"new_message": "X-BREV", "channel": "letter"}),
        )
        .ev(
            "received",
            "X-BREV",
            "2021-06-04T09:00:00Z",
            json!({"system": "post"}),
        )
        .sent("Y", "altinn", "2021-01-11T09:00:00Z")
        .ev(
            "opened",
            "Y",
            "2021-01-12T09:00:00Z",
            json!({"by_role": "saksbehandler"}),
        )
        .ev("acknowledged", "Y", "2021-01-13T09:00:00Z", json!({}))
        .sent("Z", "portal", "2021-01-12T09:00:00Z")
        .ev(
            "handed_off",
            "Z",
            "2021-01-12T09:20:00Z",
            json!({"from_system": "fiks-mottak", "to_system": "familia"}),
        );
    l.append(d);
}

fn ids(answer: &Value) -> Vec<String> {
    let mut v: Vec<String> = answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn as_of_is_event_time_and_known_at_is_record_time_on_backfilled_data() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    backfill(&d);
    let t = "2021-03-01";

    // How it stood on 1 March 2021: X lost (the resend came later), Z stuck.
    let then = ledger_json(&d, &["status", "X", "--as-of", t, "--json"]);
    assert_eq!(then["evaluation"]["verdict"], "lost", "{then}");
    assert_eq!(then["as_of"], "2021-03-01T00:00:00.000000000Z");
    assert_eq!(then["now"], then["as_of"], "as-of judges at T");
    let types: Vec<&str> = then["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["sent", "delivered", "expired"], "nothing after T");
    assert_eq!(then["incidents"][1]["kind"], "lost_unread");
    assert_eq!(then["incidents"][1]["ended_by"], Value::Null);

    let lost = ledger_json(&d, &["report", "lost", "--as-of", t, "--json"]);
    assert_eq!(ids(&lost), ["X"]);
    let stuck = ledger_json(&d, &["report", "stuck", "--as-of", t, "--json"]);
    assert_eq!(ids(&stuck), ["Z"]);
    // --now judges at T but counts the resend made after T: the old, wrong answer.
    let what_if = ledger_json(&d, &["report", "lost", "--now", t, "--json"]);
    assert!(ids(&what_if).is_empty());
    let stats = ledger_json(&d, &["stats", "--as-of", t, "--json"]);
    assert_eq!(stats["groups"][0]["verdicts"]["lost"], 1);
    assert_eq!(stats["groups"][0]["incidents"]["lost_unread"], 1);
    // Per sender and month: the chart of "lost per month per district" in one question.
    let chart = ledger_json(&d, &["stats", "--by", "from,month", "--json"]);
    assert_eq!(chart["by"], json!(["from", "month"]));
    let jan = &chart["groups"][0];
    assert_eq!(jan["group"], format!("{POLICE}/2021-01"));
    assert_eq!(jan["keys"], json!({"from": POLICE, "month": "2021-01"}));
    assert_eq!(jan["total"], 3, "X, Y and Z; the resend was sent in June");
    assert_eq!(jan["incidents"]["lost_unread"], 1);
    assert_eq!(jan["incidents"]["handoff_never_received"], 1);
    let csv = ledger_ok(&d, &["stats", "--by", "from,month", "--format", "csv"]);
    assert!(csv.starts_with("from,month,total,"), "{csv}");
    // Only the groups that had one: here the months with a message lost unread.
    let lost = ledger_json(
        &d,
        &[
            "stats",
            "--by",
            "from,month",
            "--having",
            "lost_unread",
            "--json",
        ],
    );
    assert_eq!(lost["having"], "lost_unread");
    let all = chart["groups"].as_array().unwrap();
    let with: Vec<&Value> = all
        .iter()
        .filter(|g| g["incidents"]["lost_unread"].as_u64() > Some(0))
        .collect();
    assert!(!with.is_empty() && with.len() < all.len(), "{chart}");
    assert_eq!(
        lost["groups"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        with
    );
    let out = ledger(&d, &["stats", "--having", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let history = ledger_json(&d, &["--json", "history", "X", "--as-of", t]);
    assert_eq!(history["entries"].as_array().unwrap().len(), 3);

    // Today: X is late (its resend was opened) but its loss stays counted.
    let now = ledger_json(&d, &["status", "X", "--json"]);
    assert_eq!(now["evaluation"]["verdict"], "late");
    let ever = ledger_json(&d, &["report", "lost", "--ever", "--json"]);
    assert_eq!(ids(&ever), ["X"]);
    assert_eq!(ever["rows"][0]["ended_by"], "resend_opened");
    assert_eq!(ever["rows"][0]["via"], "X-BREV");
    let stuck_now = ledger_json(&d, &["report", "stuck", "--json"]);
    assert_eq!(
        ids(&stuck_now),
        ["Z"],
        "custody: no channel expiry after the hand-off"
    );

    // Record time: the ledger knew nothing in 2021, whatever the events say.
    let out = ledger(&d, &["status", "X", "--known-at", t]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recorded by 2021-03-01"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let known = ledger_json(&d, &["report", "lost", "--known-at", t, "--json"]);
    assert_eq!(known["covered"], 0);
    // Both axes at once: as it stood in March 2021, as the ledger knows it today.
    let both = ledger_json(
        &d,
        &[
            "report",
            "lost",
            "--as-of",
            t,
            "--known-at",
            "2999-01-01",
            "--json",
        ],
    );
    assert_eq!(ids(&both), ["X"]);

    // Every event here was reported years after it happened: a finding of its own.
    let late = ledger_json(&d, &["report", "reported-late", "--json"]);
    assert_eq!(late["report"], "reported_late");
    assert_eq!(late["count"], 10);
    assert_eq!(late["rows"][0]["type"], "sent");
    assert!(late["rows"][0]["delay_seconds"].as_i64().unwrap() > 365 * 86_400);
    let none = ledger_json(
        &d,
        &["report", "reported-late", "--over", "36500d", "--json"],
    );
    assert_eq!(none["count"], 0);
    let then = ledger_json(&d, &["report", "reported-late", "--as-of", t, "--json"]);
    assert_eq!(
        then["count"], 8,
        "the resend and its receipt happened after T"
    );
    let out = ledger(&d, &["report", "reported-late", "--over", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--over"));

    // Bad combinations are usage errors that say what is wrong.
    let out = ledger(&d, &["report", "lost", "--as-of", t, "--now", t]);
    assert_eq!(out.status.code(), Some(2));
    let out = ledger(&d, &["report", "completed", "--ever"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ever"));
    let out = ledger(&d, &["report", "incidents", "--kind", "vanished"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lost_unread"));
}

#[test]
fn a_bundle_without_the_signing_key_answers_every_question_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    backfill(&d);
    let cp: Value = ledger_json(&d, &["--json", "checkpoint"]);
    let size = cp["size"].as_u64().unwrap().to_string();
    let bundle = tmp.path().join("audit.bundle");
    ledger_ok(&d, &["export", "--out", bundle.to_str().unwrap()]);
    assert!(!bundle.join("signing.key").exists());
    // A copy of the store's directory without its key reads the same way.
    let copy = tmp.path().join("copy");
    ledger_tests::copy_dir(&d, &copy);
    std::fs::remove_file(copy.join("signing.key")).unwrap();

    let ask = |dir: &Path, args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--at-checkpoint", &size, "--now", "2023-01-01", "--json"]);
        ledger_json(dir, &all)
    };
    for q in [
        &["report", "lost", "--ever"][..],
        &["report", "incidents"][..],
        &["report", "stuck"][..],
        &["stats", "--by", "month"][..],
        &["status", "X"][..],
    ] {
        let original = ask(&d, q);
        for other in [&bundle, &copy] {
            let again = ask(other, q);
            assert_eq!(again, original, "{q:?} on {}", other.display());
        }
        if q[0] == "report" {
            assert_eq!(original["checkpoint"]["size"].to_string(), size);
            assert_eq!(original["digest"].as_str().unwrap().len(), 64);
        }
    }
    // `--dir BUNDLE verify` verifies it as a bundle, and wants the key you hold.
    let key = std::fs::read_to_string(d.join("verifier.key")).unwrap();
    ledger_ok(&bundle, &["verify", "--key", key.trim()]);
    assert_eq!(ledger(&bundle, &["verify"]).status.code(), Some(2));
    let h = ledger_json(&bundle, &["--json", "history", "X"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 4);
    ledger_ok(&bundle, &["prove", "inclusion", "--seq", "2"]);
    // Only appending needs the key, and it says so.
    let f = tmp.path().join("one.jsonl");
    std::fs::write(&f, "").unwrap();
    for dir in [&bundle, &copy] {
        let out = ledger(dir, &["append", f.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0));
    }
    // A damaged bundle is refused, naming what is wrong, never answered.
    let entries = bundle.join("entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    std::fs::write(&entries, text.replacen("\"expired\"", "\"deleted\"", 1)).unwrap();
    let out = ledger(&bundle, &["report", "lost"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chain") || err.contains("checkpoint"), "{err}");
}

fn api_get(base: &str, path: &str, token: &str) -> Value {
    let body = ureq::get(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_body()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_cli_answers_while_serve_runs_with_the_documents_the_api_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    backfill(&d);
    let v: Value = serde_json::from_str(&ledger_ok(
        &d,
        &[
            "--json",
            "token",
            "create",
            "--org",
            POLICE,
            "--scope",
            "ledger:regulator",
        ],
    ))
    .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let (mut child, base) = ledger_tests::serve(&d);
    let pairs: [(&[&str], String); 6] = [
        (
            &["report", "lost", "--now", "2023-01-01"],
            "/v1/reports/lost?now=2023-01-01".into(),
        ),
        (
            &["report", "lost", "--ever", "--now", "2023-01-01"],
            "/v1/reports/lost?ever=true&now=2023-01-01".into(),
        ),
        (
            &[
                "report",
                "incidents",
                "--kind",
                "handoff_never_received",
                "--as-of",
                "2021-03-01",
            ],
            "/v1/reports/incidents?kind=handoff_never_received&as_of=2021-03-01".into(),
        ),
        (
            &["stats", "--by", "month", "--now", "2023-01-01"],
            "/v1/stats?by=month&now=2023-01-01".into(),
        ),
        (
            &["status", "X", "--as-of", "2021-03-01"],
            "/v1/messages/X?as_of=2021-03-01".into(),
        ),
        (
            &["report", "anomalies", "--now", "2023-01-01"],
            "/v1/reports/anomalies?now=2023-01-01".into(),
        ),
    ];
    for (args, path) in pairs {
        let mut all = args.to_vec();
        all.push("--json");
        let out = ledger(&d, &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} while serving: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        let api = api_get(&base, &path, &token);
        assert_eq!(cli, api, "{args:?} and GET {path}");
    }
    // Writing still needs the server: the CLI refuses, saying why.
    let f = tmp.path().join("none.jsonl");
    std::fs::write(&f, "").unwrap();
    let out = ledger(&d, &["append", f.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
