//! The projections through the real binary: status, report, stats, replay,
//! reconcile, in every output format, with --as-of, --now and --policy.

use std::path::Path;

use ledger_core::projection::Instant;
use ledger_tests::{ledger, ledger_json, ledger_ok, message_ids, reconcile, report_ids};
use serde_json::{Value, json};

const DAY: i64 = 86_400;
const POLICE: &str = "948842327";
const KOMMUNE: &str = "977019397";
const OTHER: &str = "957241867";

fn t(offset: i64) -> String {
    Instant::parse("2023-01-02T09:00:00Z")
        .unwrap()
        .plus_seconds(offset)
        .to_string()
}

struct Events {
    lines: Vec<Value>,
    n: usize,
}

impl Events {
    fn new(prefix: usize) -> Events {
        Events {
            lines: Vec::new(),
            n: prefix,
        }
    }

    fn push(&mut self, mut v: Value) -> &mut Self {
        self.n += 1;
        v["id"] = json!(format!("ev-{}", self.n));
        if v.get("reporter").is_none() {
            v["reporter"] = json!({"org": POLICE, "system": "websak", "seq": self.n});
        }
        // Format 2: every event names its message's parties.
        if v.get("from").is_none() {
            v["from"] = json!(POLICE);
            v["to"] = json!(KOMMUNE);
        }
        self.lines.push(v);
        self
    }

    fn sent(&mut self, msg: &str, category: &str, channel: &str, at: String) -> &mut Self {
        self.push(
            json!({"type": "sent", "message": msg, "at": at, "from": POLICE,
            "to": KOMMUNE, "channel": channel, "category": category,
            "content_digest": format!("sha256:{}", "ab".repeat(32)),
            "refs": {"websak": format!("2023/{msg}"), "altinn": format!("corr-{msg}")}}),
        )
    }

    fn ev(&mut self, kind: &str, msg: &str, at: String, extra: Value) -> &mut Self {
        let mut v = json!({"type": kind, "message": msg, "at": at});
        if let Value::Object(o) = extra {
            for (k, x) in o {
                v[k] = x;
            }
        }
        self.push(v)
    }

    fn append(&mut self, dir: &Path) {
        let file = dir.with_extension(format!("batch{}.jsonl", self.n));
        let text: String = self.lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&file, text).unwrap();
        ledger_ok(dir, &["append", file.to_str().unwrap()]);
        self.lines.clear();
    }
}

fn init(tmp: &Path) -> std::path::PathBuf {
    let d = tmp.join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/projections"]);
    d
}

/// One log holding every verdict, judged at t0 + 60 d.
fn every_verdict(d: &Path) {
    let mut e = Events::new(0);
    let b = "bekymringsmelding";
    // completed
    e.sent("OK", b, "altinn", t(0))
        .ev("opened", "OK", t(DAY), json!({"by_role": "leder"}))
        .ev("acknowledged", "OK", t(2 * DAY), json!({}));
    // lost
    e.sent("LOST", b, "altinn", t(0))
        .ev("expired", "LOST", t(30 * DAY), json!({}));
    // a chain of three: late original, completed resends
    e.sent("A", b, "altinn", t(0))
        .ev("expired", "A", t(30 * DAY), json!({}))
        .ev(
            "resent",
            "A",
            t(31 * DAY),
            json!({"new_message": "A2", "channel": "eformidling"}),
        )
        .ev(
            "failed",
            "A2",
            t(31 * DAY + 3600),
            json!({"error": "no_route"}),
        )
        .ev(
            "resent",
            "A2",
            t(32 * DAY),
            json!({"new_message": "A3", "channel": "letter"}),
        )
        .ev("received", "A3", t(34 * DAY), json!({"system": "post"}))
        .ev("acknowledged", "A3", t(35 * DAY), json!({}));
    // stuck in hand-off
    e.sent("STUCK", b, "portal", t(0)).ev(
        "handed_off",
        "STUCK",
        t(300),
        json!({"from_system": "fiks-mottak", "to_system": "familia"}),
    );
    // at risk: opened, never acknowledged
    e.sent("RISK", b, "altinn", t(0))
        .ev("opened", "RISK", t(DAY), json!({"by_role": "leder"}));
    // open: sent 2 days before now, a document with a 30-day deadline
    e.sent("NEW", "document", "eformidling", t(58 * DAY));
    // resolved
    e.sent("RES", b, "altinn", t(0))
        .ev("expired", "RES", t(30 * DAY), json!({}))
        .ev(
            "resolved",
            "RES",
            t(40 * DAY),
            json!({"outcome": "false_alarm"}),
        );
    // an orphan open, and a reporter gap (seq jumps by 5)
    e.n += 5;
    e.ev("opened", "GHOST", t(DAY), json!({"by_role": "leder"}));
    e.append(d);
}

#[test]
fn reports_find_every_verdict_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    every_verdict(&d);
    let now = t(60 * DAY);
    let cases = [
        ("lost", vec!["LOST"]),
        ("late", vec!["A"]),
        ("stuck", vec!["STUCK"]),
        ("at-risk", vec!["RISK"]),
        ("open", vec!["NEW"]),
        ("completed", vec!["A2", "A3", "GHOST", "OK"]),
        ("resolved", vec!["RES"]),
    ];
    for (kind, want) in &cases {
        let r = ledger_json(&d, &["report", kind, "--now", &now, "--format", "json"]);
        assert_eq!(message_ids(&r), *want, "{kind}");
        assert_eq!(r["count"], want.len());
        // --json is the same as --format json
        let r2 = ledger_json(&d, &["--json", "report", kind, "--now", &now]);
        assert_eq!(r, r2);
    }
    let late = ledger_json(&d, &["report", "late", "--now", &now, "--format", "json"]);
    let a = &late["rows"][0];
    assert_eq!(a["reason"], "opened_late");
    assert_eq!(a["via"], "A3");
    assert_eq!(a["resent_to"], "A3");

    // CSV: a header and one row per message, parseable.
    let csv = ledger_ok(
        &d,
        &["report", "completed", "--now", &now, "--format", "csv"],
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "message,verdict,reason,category,channel,from,to,sent_at,due,opened_at,via,resent_to,anomalies,resolved_by,from_name,to_name"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("A2,completed,completed,bekymringsmelding,eformidling,"))
    );
    // Table: the ids appear.
    let table = ledger_ok(&d, &["report", "stuck", "--now", &now]);
    assert!(
        table.contains("STUCK") && table.contains("handoff_unreceived"),
        "{table}"
    );

    // Filters: --channel on the effective channel; --to. An orphan matches no filter
    // on what only a `sent` says, but a format-2 orphan names its parties.
    assert_eq!(
        report_ids(&d, "completed", &["--now", &now, "--channel", "letter"]),
        vec!["A3"]
    );
    assert_eq!(
        report_ids(&d, "completed", &["--now", &now, "--to", KOMMUNE]),
        vec!["A2", "A3", "GHOST", "OK"]
    );
    assert_eq!(
        report_ids(&d, "completed", &["--now", &now, "--to", OTHER]),
        Vec::<String>::new()
    );
    assert_eq!(
        report_ids(&d, "open", &["--now", &now, "--since", &t(50 * DAY)]),
        vec!["NEW"]
    );
    assert_eq!(
        report_ids(&d, "open", &["--now", &now, "--until", &t(50 * DAY)]),
        Vec::<String>::new()
    );
    // Dates as people type them: the start of that day, UTC.
    let day = &t(50 * DAY)[..10];
    let sent_day = &t(58 * DAY)[..10];
    let next_day = &t(59 * DAY)[..10];
    assert_eq!(
        report_ids(&d, "open", &["--now", &now, "--since", day]),
        vec!["NEW"]
    );
    assert_eq!(
        report_ids(&d, "open", &["--now", &now, "--until", next_day]),
        vec!["NEW"],
    );
    assert_eq!(
        report_ids(&d, "open", &["--now", &now, "--until", sent_day]),
        Vec::<String>::new(),
        "--until a date ends before that day"
    );
    let out = ledger_tests::ledger(&d, &["report", "open", "--since", "01.01.2023"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a date"));

    // Anomalies: the orphan, the evaluated hand-off, the reporter gap.
    let r = ledger_json(
        &d,
        &["report", "anomalies", "--now", &now, "--format", "json"],
    );
    let kinds: Vec<(String, String)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["message"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("event_for_unknown_message".into(), "GHOST".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("handoff_never_received".into(), "STUCK".into())),
        "{kinds:?}"
    );
    let gap = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "reporter_seq_gap")
        .expect("a gap");
    assert_eq!(
        (
            gap["org"].as_str(),
            gap["from"].as_u64(),
            gap["to"].as_u64()
        ),
        (Some(POLICE), Some(21), Some(25))
    );
    let only = ledger_json(
        &d,
        &[
            "report",
            "anomalies",
            "--kind",
            "reporter_seq_gap",
            "--now",
            &now,
            "--format",
            "json",
        ],
    );
    assert_eq!(only["count"], 1);

    // Stats add up, and group.
    let s = ledger_json(&d, &["stats", "--now", &now, "--format", "json"]);
    let all = &s["groups"][0];
    assert_eq!(all["group"], "all");
    assert_eq!(all["total"], 10);
    assert_eq!(all["verdicts"]["completed"], 4);
    assert_eq!(all["verdicts"]["lost"], 1);
    let s = ledger_json(
        &d,
        &[
            "stats", "--by", "channel", "--now", &now, "--format", "json",
        ],
    );
    let groups: Vec<&str> = s["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        vec!["altinn", "eformidling", "letter", "portal", "unknown"]
    );
    let csv = ledger_ok(
        &d,
        &["stats", "--by", "month", "--now", &now, "--format", "csv"],
    );
    assert!(csv.starts_with("group,total,lost,stuck_in_handoff,at_risk,late,open,completed,resolved,with_anomalies,lost_unread,failed,handoff_never_received,never_delivered,opened_late,ack_late,with_incidents\n2023-01,"), "{csv}");

    // Bad arguments are usage errors that say what is wrong.
    let out = ledger(&d, &["report", "lost", "--channel", "pigeon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pigeon"));
    let out = ledger(&d, &["report", "lost", "--now", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ledger(&d, &["report", "lost", "--now", &now, "--as-of", &now]);
    assert_eq!(out.status.code(), Some(2));
    let out = ledger(&d, &["report", "anomalies", "--kind", "weird"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_shows_the_chain_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    every_verdict(&d);
    let now = t(60 * DAY);
    for (msg, verdict) in [
        ("A", "late"),
        ("A2", "completed"),
        ("A3", "completed"),
        ("STUCK", "stuck_in_handoff"),
        ("GHOST", "completed"),
    ] {
        let s = ledger_json(&d, &["status", msg, "--now", &now, "--json"]);
        assert_eq!(s["evaluation"]["verdict"], verdict, "{msg}");
    }
    let s = ledger_json(&d, &["status", "A3", "--now", &now, "--json"]);
    assert_eq!(s["facts"]["resent_from"]["message"], "A2");
    assert_eq!(
        s["evaluation"]["category"], "bekymringsmelding",
        "inherited through two links"
    );
    // The history of a resend includes the entry that declared it.
    let types: Vec<&str> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["resent", "received", "acknowledged"]);
    let text = ledger_ok(&d, &["status", "A", "--now", &now]);
    assert!(
        text.contains("late (opened_late)")
            && text.contains("via A3")
            && text.contains("resent as  A2"),
        "{text}"
    );
    let out = ledger(&d, &["status", "NOPE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOPE"));
}

fn last_recorded_at(d: &Path, msg: &str) -> String {
    let h = ledger_json(d, &["--json", "history", msg]);
    h["entries"].as_array().unwrap().last().unwrap()["recorded_at"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn known_at_answers_what_the_ledger_knew_then() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    let start = Instant::now();
    let mut e = Events::new(0);
    let b = "bekymringsmelding";
    e.sent("M", b, "altinn", start.plus_seconds(-8 * DAY).to_string());
    // A chain of three whose last link is declared before the cut.
    e.sent("C", b, "altinn", start.plus_seconds(-40 * DAY).to_string())
        .ev(
            "expired",
            "C",
            start.plus_seconds(-10 * DAY).to_string(),
            json!({}),
        )
        .ev(
            "resent",
            "C",
            start.plus_seconds(-9 * DAY).to_string(),
            json!({"new_message": "C2", "channel": "eformidling"}),
        )
        .ev(
            "failed",
            "C2",
            start.plus_seconds(-9 * DAY + 60).to_string(),
            json!({"error": "x"}),
        )
        .ev(
            "resent",
            "C2",
            start.plus_seconds(-2 * DAY).to_string(),
            json!({"new_message": "C3", "channel": "letter"}),
        );
    e.append(&d);
    let cut = last_recorded_at(&d, "M");
    let c = Instant::parse(&cut).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    e.ev(
        "opened",
        "M",
        c.plus_seconds(-6 * DAY).to_string(),
        json!({"by_role": "leder"}),
    )
    .ev(
        "acknowledged",
        "M",
        c.plus_seconds(-5 * DAY).to_string(),
        json!({}),
    )
    .ev(
        "received",
        "C3",
        c.plus_seconds(-DAY).to_string(),
        json!({"system": "post"}),
    )
    .ev(
        "acknowledged",
        "C3",
        c.plus_seconds(-DAY + 60).to_string(),
        json!({}),
    );
    e.append(&d);

    let then = ledger_json(&d, &["status", "M", "--known-at", &cut, "--json"]);
    assert_eq!(then["evaluation"]["verdict"], "at_risk");
    assert_eq!(
        then["history"].as_array().unwrap().len(),
        1,
        "the open was not yet recorded"
    );
    let what_if = ledger_json(&d, &["status", "M", "--now", &cut, "--json"]);
    assert_eq!(what_if["evaluation"]["verdict"], "completed");

    let at_risk = ledger_json(
        &d,
        &["report", "at-risk", "--known-at", &cut, "--format", "json"],
    );
    assert!(message_ids(&at_risk).contains(&"M".to_string()));
    let lost = ledger_json(
        &d,
        &["report", "lost", "--known-at", &cut, "--format", "json"],
    );
    assert_eq!(message_ids(&lost), vec!["C", "C2"]);
    let open = ledger_json(
        &d,
        &["report", "open", "--known-at", &cut, "--format", "json"],
    );
    assert_eq!(message_ids(&open), vec!["C3"]);
    for msg in ["C", "C2", "C3"] {
        let s = ledger_json(&d, &["status", msg, "--now", &cut, "--json"]);
        let v = s["evaluation"]["verdict"].as_str().unwrap().to_string();
        assert!(v == "completed" || v == "late", "{msg} now {v}");
    }
    // The head projection was not touched by --known-at questions.
    let s = ledger_json(&d, &["stats", "--now", &cut, "--format", "json"]);
    assert_eq!(s["covered"], 10);
}

#[test]
fn replay_is_deterministic_and_a_policy_change_changes_verdicts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    let mut e = Events::new(0);
    e.sent("L", "bekymringsmelding", "altinn", t(0))
        .ev("opened", "L", t(9 * DAY), json!({"by_role": "leder"}))
        .ev("acknowledged", "L", t(10 * DAY), json!({}));
    e.append(&d);
    let now = t(20 * DAY);
    let r1 = ledger_json(&d, &["--json", "replay", "--now", &now]);
    let r2 = ledger_json(&d, &["--json", "replay", "--now", &now]);
    for k in ["facts_digest", "policy_digest", "projection_digest"] {
        assert_eq!(r1[k], r2[k], "{k}");
    }
    let v = ledger_json(&d, &["--json", "replay", "--verify", "--now", &now]);
    assert_eq!(v["verified"], true);
    // Without --now, the evaluation time is the last entry's recorded_at.
    let a = ledger_json(&d, &["--json", "replay"]);
    let b = ledger_json(&d, &["--json", "replay"]);
    assert_eq!(a["projection_digest"], b["projection_digest"]);

    let relaxed = tmp.path().join("relaxed.toml");
    let text = ledger_core::projection::DEFAULT_POLICY.replacen(
        "category = \"bekymringsmelding\"\nopen_within = \"7d\"",
        "category = \"bekymringsmelding\"\nopen_within = \"10d\"",
        1,
    );
    std::fs::write(&relaxed, text).unwrap();
    let p = relaxed.to_str().unwrap();
    let r3 = ledger_json(&d, &["--json", "replay", "--now", &now, "--policy", p]);
    assert_eq!(r3["facts_digest"], r1["facts_digest"]);
    assert_ne!(r3["policy_digest"], r1["policy_digest"]);
    assert_ne!(r3["projection_digest"], r1["projection_digest"]);
    let s = ledger_json(&d, &["status", "L", "--now", &now, "--json"]);
    assert_eq!(s["evaluation"]["verdict"], "late");
    let s = ledger_json(&d, &["status", "L", "--now", &now, "--json", "--policy", p]);
    assert_eq!(s["evaluation"]["verdict"], "completed");
    // <dir>/policy.toml is picked up without a flag.
    std::fs::copy(&relaxed, d.join("policy.toml")).unwrap();
    let s = ledger_json(&d, &["status", "L", "--now", &now, "--json"]);
    assert_eq!(s["evaluation"]["verdict"], "completed");
    // A bad policy names its line and changes nothing.
    std::fs::write(
        d.join("policy.toml"),
        "version = 1\n[defaults]\nopen_within = \"soon\"\n",
    )
    .unwrap();
    let out = ledger(&d, &["report", "late", "--now", &now]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("soon"), "{err}");
}

#[test]
fn a_damaged_projection_is_reported_and_rebuilt_and_verify_catches_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    every_verdict(&d);
    let now = t(60 * DAY);
    let before = ledger_json(&d, &["report", "lost", "--now", &now, "--format", "json"]);
    let file = d.join("projection.facts");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let out = ledger(&d, &["report", "lost", "--now", &now, "--format", "json"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum") && err.contains("rebuilt"), "{err}");
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(before["rows"], after["rows"]);
    // Incremental catch-up equals a full replay.
    let mut e = Events::new(100);
    e.ev("opened", "LOST", t(31 * DAY), json!({"by_role": "leder"}));
    e.append(&d);
    let r = ledger_json(&d, &["report", "late", "--now", &now, "--format", "json"]);
    assert!(message_ids(&r).contains(&"LOST".to_string()));
    let v = ledger_json(&d, &["--json", "replay", "--verify"]);
    assert_eq!(v["verified"], true, "{v}");
}

#[test]
fn reconcile_compares_both_lists_with_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    every_verdict(&d);
    let now = t(60 * DAY);
    let sent = tmp.path().join("police.csv");
    std::fs::write(
        &sent,
        "\u{feff}message,ref,at,extra\nOK,2023/OK,2023-01-02T09:00:00Z,x\n,2023/LOST,,y\nNOT-IN-LEDGER,,,z\n",
    )
    .unwrap();
    let received = tmp.path().join("kommune.jsonl");
    std::fs::write(
        &received,
        "{\"ref\":\"corr-OK\"}\n\n{\"message\":\"SURPRISE\",\"at\":\"2023-01-03T00:00:00Z\"}\n",
    )
    .unwrap();
    let out = reconcile(&d, &sent, &received, &["--now", &now, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "differences found");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("extra"),
        "the ignored column is named"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String, String)> = r["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["class"].as_str().unwrap().to_string(),
                x["message"].as_str().unwrap().to_string(),
                x["ledger_verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "sent_not_in_ledger".to_string(),
                "NOT-IN-LEDGER".to_string(),
                String::new()
            ),
            (
                "in_ledger_not_received".to_string(),
                "LOST".to_string(),
                "lost".to_string()
            ),
            (
                "received_not_sent".to_string(),
                "SURPRISE".to_string(),
                String::new()
            ),
        ]
    );
    let out = reconcile(&d, &sent, &received, &["--now", &now, "--format", "csv"]);
    assert_eq!(out.status.code(), Some(1));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.starts_with("class,list,line,message,ref,at,ledger_message,ledger_verdict\n"),
        "{csv}"
    );
    // Bad input: exit 2, the line named, nothing compared.
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "message,ref,at\nM1,,not-a-time\n").unwrap();
    let out = reconcile(&d, &bad, &received, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 12: `reconcile` reads a case system's own export (a BOM, semicolons,
/// Norwegian headers and dates) with a column map, and names bad rows.
#[test]
fn reconcile_reads_a_real_export_with_a_column_map() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    let mut e = Events::new(0);
    e.sent("POL-1", "bekymringsmelding", "altinn", t(0));
    e.sent("POL-2", "bekymringsmelding", "altinn", t(0));
    e.append(&d);
    let sent = tmp.path().join("websak.csv");
    std::fs::write(
        &sent,
        "\u{feff}Saksnr;Dokumentnr;Tittel;Mottaker;Dato\n\
         2023/1;POL-1;\"Bekymring; barn\";964338531;02.01.2023\n\
         2023/2;POL-2;Melding;964338531;02.01.2023 10:15\n",
    )
    .unwrap();
    let received = tmp.path().join("familia.csv");
    std::fs::write(&received, "Journalnr;Dokument\nJ-1;POL-1\n").unwrap();
    let now = t(60 * DAY);
    let out = reconcile(
        &d,
        &sent,
        &received,
        &[
            "--sent-map",
            "message=Dokumentnr,ref=Saksnr,at=Dato",
            "--received-map",
            "message=Dokument,ref=Journalnr",
            "--now",
            &now,
            "--format",
            "json",
        ],
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{r}");
    let rows: Vec<(String, String)> = r["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["class"].as_str().unwrap().to_string(),
                x["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![("in_ledger_not_received".to_string(), "POL-2".to_string())]
    );
    // A bad date is named by file and line; nothing is compared.
    std::fs::write(&received, "Journalnr;Dokument;Dato\nJ-1;POL-1;31.02.2023\n").unwrap();
    let out = reconcile(
        &d,
        &sent,
        &received,
        &[
            "--map",
            "message=Dokumentnr,ref=Saksnr,at=Dato",
            "--received-map",
            "message=Dokument,at=Dato",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("familia.csv:2") && err.contains("31.02.2023"),
        "{err}"
    );
}

/// Issue 12: a report names the signed checkpoint it stands on, and `--at-checkpoint`
/// answers over exactly the entries a checkpoint covers, as anyone holding the log up
/// to it can recompute.
#[test]
fn reports_name_their_checkpoint_and_recompute_at_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(tmp.path());
    let mut e = Events::new(0);
    e.sent("C1", "bekymringsmelding", "altinn", t(0));
    e.sent("C2", "bekymringsmelding", "altinn", t(0));
    e.append(&d);
    let cp = ledger_json(&d, &["--json", "checkpoint"]);
    let size = cp["size"].as_u64().unwrap();
    assert_eq!(size, 2);
    let mut e = Events::new(10);
    e.sent("C3", "bekymringsmelding", "altinn", t(0));
    e.append(&d);

    let now = t(60 * DAY);
    let head = ledger_json(&d, &["report", "lost", "--now", &now, "--format", "json"]);
    assert_eq!(head["covered"], 3);
    assert!(head["checkpoint"]["size"].as_u64().unwrap() <= 3, "{head}");
    assert_eq!(
        head["checkpoint"]["origin"], "ledger.example/projections",
        "{head}"
    );
    let at_two = || {
        ledger_json(
            &d,
            &[
                "report",
                "lost",
                "--now",
                &now,
                "--at-checkpoint",
                "2",
                "--format",
                "json",
            ],
        )
    };
    let at = at_two();
    assert_eq!(at["covered"], 2, "{at}");
    assert_eq!(at["checkpoint"]["size"], 2);
    assert_eq!(at["checkpoint"]["note"], cp["note"]);
    assert_eq!(at["checkpoint"]["root"], cp["root"]);
    assert_eq!(at["checkpoint"]["entries_after"], 0);
    assert_eq!(message_ids(&at), vec!["C1", "C2"]);
    assert_eq!(message_ids(&head), vec!["C1", "C2", "C3"]);
    // The same answer twice: the same document.
    let again = at_two();
    assert_eq!(again, at);
    // Status too; a size no checkpoint was signed at is refused.
    let s = ledger_json(&d, &["--json", "status", "C2", "--at-checkpoint", "2"]);
    assert_eq!(s["message"], "C2", "{s}");
    assert_eq!(
        (s["covered"].as_u64(), s["checkpoint"]["size"].as_u64()),
        (Some(2), Some(2))
    );
    let out = ledger(&d, &["status", "C3", "--at-checkpoint", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no event names message \"C3\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ledger(&d, &["report", "lost", "--at-checkpoint", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint was signed at size 1"));
}
