//! `ledger demo`: its findings, read back through the real binary's reports, equal
//! the scenario's ground truth exactly, for two seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ledger_tests::{ledger, ledger_json, ledger_ok, reconcile};
use serde_json::Value;

const T_END: &str = "2023-06-30T00:00:00Z";

fn run_demo(dir: &Path, seed: &str) -> Value {
    let out = ledger(
        dir,
        &["--json", "demo", "--seed", seed, "--messages", "5000"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo must match its truth:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_finding_matches_the_ground_truth() {
    for seed in ["2023", "7"] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("demo");
        let summary = run_demo(&d, seed);
        assert_eq!(summary["matches_truth"], true);
        let truth: Value =
            serde_json::from_slice(&std::fs::read(d.join("truth.json")).unwrap()).unwrap();

        let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, v) in truth["verdicts"].as_object().unwrap() {
            want.entry(v.as_str().unwrap().to_string())
                .or_default()
                .insert(id.clone());
        }
        for (kind, verdict) in [
            ("lost", "lost"),
            ("late", "late"),
            ("stuck", "stuck_in_handoff"),
            ("at-risk", "at_risk"),
            ("open", "open"),
            ("completed", "completed"),
            ("resolved", "resolved"),
        ] {
            let r = ledger_json(&d, &["report", kind, "--now", T_END, "--format", "json"]);
            let got: BTreeSet<String> = r["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message"].as_str().unwrap().to_string())
                .collect();
            let expected = want.remove(verdict).unwrap_or_default();
            assert!(
                !expected.is_empty(),
                "seed {seed}: the scenario has {verdict} messages"
            );
            assert_eq!(got, expected, "seed {seed}: {kind}");
        }
        assert!(want.is_empty(), "no other verdicts: {want:?}");

        let r = ledger_json(
            &d,
            &["report", "anomalies", "--now", T_END, "--format", "json"],
        );
        let mut got_anomalies = BTreeSet::new();
        let mut got_gaps = BTreeSet::new();
        for a in r["rows"].as_array().unwrap() {
            match a["message"].as_str() {
                Some(_) => {
                    got_anomalies.insert(anomaly_of(a));
                }
                None => {
                    assert_eq!(a["kind"], "reporter_seq_gap");
                    got_gaps.insert(gap_of(a));
                }
            }
        }
        let want_anomalies: BTreeSet<_> = truth["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(anomaly_of)
            .collect();
        assert_eq!(got_anomalies, want_anomalies, "seed {seed}");
        let want_gaps: BTreeSet<_> = truth["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .map(gap_of)
            .collect();
        assert!(!want_gaps.is_empty());
        assert_eq!(got_gaps, want_gaps, "seed {seed}");

        // Reconcile through the binary: exit 1 (differences), rows as in the truth.
        let sent = d.join("police-export.csv");
        let received = d.join("municipality.csv");
        let out = reconcile(&d, &sent, &received, &["--now", T_END, "--format", "json"]);
        assert_eq!(out.status.code(), Some(1));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = reconcile_rows(&r["differences"]);
        let want = reconcile_rows(&truth["reconcile"]);
        assert_eq!(got, want, "seed {seed}");
        let classes: BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(classes.len(), 3, "all three classes occur");

        ever_lost_matches_the_ground_truth(&d, &truth, seed);

        let v = ledger_json(&d, &["--json", "replay", "--verify"]);
        assert_eq!(v["verified"], true);
        ledger_ok(&d, &["verify"]);
    }
}

type Loss = (String, String, Option<String>);

fn losses(rows: &Value) -> BTreeSet<Loss> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
                r["ended_by"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The incident's question (1): which messages were ever deleted, expired or failed
/// before anyone opened them, and how each episode ended, whatever the verdict now.
fn ever_lost_matches_the_ground_truth(d: &Path, truth: &Value, seed: &str) {
    let want = losses(&truth["ever_lost"]);
    let all = ledger_json(
        d,
        &[
            "report", "lost", "--ever", "--now", T_END, "--format", "json",
        ],
    );
    assert_eq!(all["report"], "incidents");
    assert_eq!(
        losses(&all["rows"]),
        want,
        "seed {seed}: report lost --ever"
    );
    // Most were put right later: a current-verdict report misses them.
    let now_lost = ledger_json(d, &["report", "lost", "--now", T_END, "--format", "json"]);
    let resent = want.iter().filter(|l| l.2.is_some()).count();
    assert!(resent > 0 && now_lost["count"].as_u64().unwrap() < want.len() as u64);
    for r in all["rows"].as_array().unwrap() {
        assert!(r["began_at"].is_string() && r["evidence"].as_array().unwrap().len() == 1);
        if r["ended_by"] == "resend_opened" {
            assert!(r["via"].is_string() && r["ended_at"].is_string(), "{r}");
        }
    }

    // One district's concern reports, 2020 to 2023, deleted or expired unread.
    let district = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "lost_unread" && r["category"] == "bekymringsmelding")
        .map(|r| r["from"].as_str().unwrap().to_string())
        .expect("the scenario has expired concern reports");
    let in_question = |r: &&Value| {
        r["kind"] == "lost_unread"
            && r["from"] == district.as_str()
            && r["category"] == "bekymringsmelding"
            && r["sent_at"].as_str().unwrap() >= "2020-01-01"
            && r["sent_at"].as_str().unwrap() < "2024-01-01"
    };
    let expected: BTreeSet<Loss> = losses(&Value::Array(
        all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(in_question)
            .cloned()
            .collect(),
    ));
    assert!(expected.is_subset(&want));
    // The question as a regulator asks it, the district by number or by name.
    let ask = |from: &str| {
        ledger_json(
            d,
            &[
                "report",
                "incidents",
                "--kind",
                "lost_unread",
                "--from",
                from,
                "--category",
                "bekymringsmelding",
                "--since",
                "2020-01-01",
                "--until",
                "2024-01-01",
                "--now",
                T_END,
                "--format",
                "json",
            ],
        )
    };
    let district_answer = ask(&district);
    assert_eq!(losses(&district_answer["rows"]), expected, "seed {seed}");
    assert!(!expected.is_empty());

    // The same question by the district's name, from the demo's organisations.csv.
    let name = district_answer["organisations"][&district]
        .as_str()
        .expect("the demo names its organisations")
        .to_string();
    assert!(name.ends_with("politidistrikt (demo)"), "{name}");
    let by_name = ask(&name);
    assert_eq!(by_name["rows"], district_answer["rows"]);
    let out = ledger(d, &["report", "lost", "--from", "politidistrikt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names 12 organisations"), "{err}");
    let out = ledger(d, &["report", "lost", "--from", "Atlantis"]);
    assert_eq!(out.status.code(), Some(2));
    let table = ledger_ok(
        d,
        &[
            "report", "lost", "--ever", "--from", &district, "--now", T_END,
        ],
    );
    assert!(
        table.contains(&name[..10]),
        "names beside numbers in tables:\n{table}"
    );
}

#[test]
fn the_same_seed_gives_the_same_ledger_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_demo(&tmp.path().join("a"), "11");
    let b = run_demo(&tmp.path().join("b"), "11");
    assert_eq!(a["facts_digest"], b["facts_digest"]);
    assert_eq!(a["projection_digest"], b["projection_digest"]);
    let ea = std::fs::read(tmp.path().join("a/events.jsonl")).unwrap();
    let eb = std::fs::read(tmp.path().join("b/events.jsonl")).unwrap();
    assert!(ea == eb, "byte-identical events");
    // A non-empty directory is refused.
    let out = ledger(&tmp.path().join("a"), &["demo", "--messages", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

/// Reconcile rows as (class, list, line, message, ref), from the binary's JSON or the truth.
/// The rows as (class, list, line, message, ref), sorted; a ledger row names a
/// format-2 message as FROM/TO/ID, the scenario by its bare id.
fn reconcile_rows(rows: &Value) -> Vec<(String, String, Value, String, String)> {
    let text = |x: &Value, k: &str| x[k].as_str().expect(k).to_string();
    let bare = |m: String| match ledger_core::event::key_from_path(&m) {
        Some(k) => ledger_core::event::split_message_key(&k).1.to_string(),
        None => m,
    };
    let mut out: Vec<_> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|x| {
            (
                text(x, "class"),
                text(x, "list"),
                x["line"].clone(),
                bare(text(x, "message")),
                text(x, "ref"),
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

/// (kind, message) of an anomaly row or a truth entry.
fn anomaly_of(a: &Value) -> (String, String) {
    let text = |k: &str| a[k].as_str().expect(k).to_string();
    (text("kind"), text("message"))
}

/// (org, system, from, to) of a reporter gap row or a truth entry.
fn gap_of(g: &Value) -> (String, String, u64, u64) {
    let text = |k: &str| g[k].as_str().expect(k).to_string();
    let num = |k: &str| g[k].as_u64().expect(k);
    (text("org"), text("system"), num("from"), num("to"))
}
