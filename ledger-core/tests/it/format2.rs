//! Format 2 (schemas/FORMAT.md §3.9): scoped identifiers, parties on every event, no
//! free text; old ledgers keep working and move by `upgrade`.

use ledger_core::event::{id_key, message_key};
use ledger_core::projection::{self, Evaluator, Policy};
use ledger_core::verify::{VerifyOptions, verify_store};
use ledger_core::{Event, FileStore, HashAlg, InitOptions, Store, StoreError};
use serde_json::{Value, json};

const A: &str = "974760673";
const B: &str = "964338531";
const D: &str = "889640782";

fn v2(v: Value) -> Result<Event, ledger_core::EventError> {
    Event::from_json_as(v.to_string().as_bytes(), 2)
}

fn sent(id: &str, message: &str, from: &str, to: &str) -> Value {
    json!({"id": id, "type": "sent", "message": message, "at": "2023-05-08T09:30:00Z",
           "reporter": {"org": from, "system": "websak"}, "from": from, "to": to,
           "channel": "altinn", "category": "bekymringsmelding",
           "content_digest": format!("sha256:{}", "ab".repeat(32))})
}

fn other(id: &str, kind: &str, message: &str, org: &str, from: &str, to: &str) -> Value {
    let mut v = json!({"id": id, "type": kind, "message": message, "at": "2023-05-09T09:30:00Z",
           "reporter": {"org": org, "system": "websak"}, "from": from, "to": to});
    match kind {
        "opened" => v["by_role"] = json!("saksbehandler"),
        "resolved" => v["outcome"] = json!("false_alarm"),
        "deleted" => v["reason"] = json!("retention"),
        _ => {}
    }
    v
}

fn store() -> (tempfile::TempDir, std::path::PathBuf, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    FileStore::init(
        &path,
        &InitOptions {
            origin: "test.example/v2".into(),
            hash: HashAlg::Sha256,
        },
    )
    .unwrap();
    let s = FileStore::open(&path).unwrap().0;
    (dir, path, s)
}

/// Every event re-validated by its entry's format, every id unique in its namespace.
fn verifies_deep(path: &std::path::Path) {
    let opts = VerifyOptions {
        unique_ids: true,
        deep: true,
        ..Default::default()
    };
    let report = verify_store(path, &opts, &()).unwrap();
    assert!(report.ok(), "{:?}", report.faults);
}

#[test]
fn a_format_2_event_names_its_parties_and_holds_no_free_text() {
    assert!(v2(sent("e1", "M1", A, B)).is_ok());
    assert!(v2(other("e2", "delivered", "M1", A, A, B)).is_ok());
    // Every type names from and to.
    let mut v = other("e2", "delivered", "M1", A, A, B);
    v.as_object_mut().unwrap().remove("to");
    assert_eq!(v2(v).unwrap_err().field, "to");
    // Format 1 had no parties on a delivery: there they are unknown fields.
    let e = Event::from_json(
        other("e2", "delivered", "M1", A, A, B)
            .to_string()
            .as_bytes(),
    );
    assert_eq!(e.unwrap_err().field, "from");
    // No note; reasons, errors, refs are codes and identifiers.
    let mut v = other("e3", "resolved", "M1", A, A, B);
    v["note"] = json!("spoke to the mother, Kari");
    assert_eq!(v2(v.clone()).unwrap_err().field, "note");
    assert!(
        Event::from_json(v.to_string().as_bytes()).is_err(),
        "format 1 needs from on sent only"
    );
    let mut v = other("e4", "deleted", "M1", A, A, B);
    v["reason"] = json!("mor Kari ringte");
    assert_eq!(v2(v).unwrap_err().field, "reason");
    let mut v = sent("e5", "M1", A, B);
    v["refs"] = json!({"barn": "Ola Nordmann f. 01.01.2015"});
    assert_eq!(v2(v).unwrap_err().field, "refs.barn");
    let mut v = sent("e6", "M1", A, B);
    v["reporter"]["seq"] = json!(1_010_012_356u64);
    assert_eq!(v2(v).unwrap_err().field, "reporter.seq");
    // A national identity number hidden by a zero-width space.
    let v = sent("e7", "0101\u{200b}0012356", A, B);
    assert_eq!(v2(v).unwrap_err().field, "message");
}

#[test]
fn two_organisations_may_use_one_id_and_neither_touches_the_other() {
    let (_d, path, s) = store();
    // D first, with the ids A will use.
    let r = s
        .append(vec![v2(sent("e-1", "M-3", D, B)).unwrap()])
        .unwrap();
    let r2 = s
        .append(vec![
            v2(sent("e-1", "M-3", A, B)).unwrap(),
            v2(other("e-2", "opened", "M-3", B, A, B)).unwrap(),
        ])
        .unwrap();
    assert!(!r2[0].duplicate, "A's event is its own");
    assert_ne!(r[0].seq, r2[0].seq);
    assert_eq!(s.event_seq(&id_key(2, A, "e-1")).unwrap(), Some(r2[0].seq));
    assert_eq!(s.event_seq(&id_key(2, D, "e-1")).unwrap(), Some(r[0].seq));
    assert_eq!(
        s.event_seq("e-1").unwrap(),
        None,
        "no format-1 event of that id"
    );

    // Two messages; B's opening is A's message's only.
    let facts = projection::replay(&s, s.size(), &mut |_| {}).unwrap();
    let policy = Policy::default_policy();
    let now = projection::Instant::parse("2023-06-01T00:00:00Z").unwrap();
    let eval = Evaluator::new(&facts, &policy, now);
    let ka = message_key(2, A, B, "M-3");
    let kd = message_key(2, D, B, "M-3");
    assert!(facts.message(&ka).unwrap().opened.is_some());
    assert!(facts.message(&kd).unwrap().opened.is_none());
    assert_eq!(eval.evaluate(&kd).unwrap().from, Some(D));
    let mut found = facts.find("M-3");
    found.sort();
    let mut want = vec![ka.as_ref(), kd.as_ref()];
    want.sort();
    assert_eq!(found, want);
    let path_a = format!("{A}/{B}/M-3");
    assert_eq!(facts.find(&path_a), vec![ka.as_ref()]);
    assert_eq!(
        projection::find_messages(&s, &path_a).unwrap(),
        vec![ka.to_string()]
    );
    // Answers show the bare id.
    let e = serde_json::to_value(eval.evaluate(&ka).unwrap()).unwrap();
    assert_eq!(e["message"], "M-3");

    // A non-party's fact is flagged and moves nothing.
    let late = v2(other("x-1", "resolved", "M-3", D, A, B)).unwrap();
    s.append(vec![late]).unwrap();
    let facts = projection::replay(&s, s.size(), &mut |_| {}).unwrap();
    let m = facts.message(&ka).unwrap();
    assert!(m.resolved.is_none(), "a non-party resolved nothing");
    assert!(
        m.anomalies
            .iter()
            .any(|a| a.kind.name() == "non_party_report"),
        "{:?}",
        m.anomalies
    );

    // A party's resolution counts, and every answer says who resolved it.
    s.append(vec![v2(other("r-1", "resolved", "M-3", B, A, B)).unwrap()])
        .unwrap();
    let facts = projection::replay(&s, s.size(), &mut |_| {}).unwrap();
    let r = facts.message(&ka).unwrap().resolved.as_ref().unwrap();
    assert_eq!((r.by.as_str(), r.via.as_str()), (B, "websak"));
    let eval = Evaluator::new(&facts, &policy, now);
    let e = serde_json::to_value(eval.evaluate(&ka).unwrap()).unwrap();
    assert_eq!(
        (e["verdict"].as_str(), e["resolved_by"].as_str()),
        (Some("resolved"), Some(B))
    );

    // Verify: a repeat of an id within one organisation is a fault, across two not.
    drop(s);
    verifies_deep(&path);
}

#[test]
fn a_format_1_ledger_takes_format_2_only_after_upgrade() {
    let (_d, path, s) = store();
    drop(s);
    // Make it an older ledger: format 1.
    let info = path.join("ledger.json");
    let text = std::fs::read_to_string(&info)
        .unwrap()
        .replace("\"format\": 2", "\"format\": 1");
    std::fs::write(&info, text).unwrap();
    let s = FileStore::open(&path).unwrap().0;
    let old = Event::from_json(sent("o-1", "M-1", A, B).to_string().as_bytes()).unwrap();
    s.append(vec![old]).unwrap();
    let e = s
        .append(vec![v2(sent("n-1", "M-2", A, B)).unwrap()])
        .unwrap_err();
    assert!(matches!(e, StoreError::FormatTooNew { .. }), "{e}");
    assert!(e.to_string().contains("ledger upgrade"), "{e}");
    drop(s);
    assert_eq!(FileStore::upgrade(&path, 2).unwrap(), 1);
    assert_eq!(FileStore::upgrade(&path, 2).unwrap(), 2, "idempotent");
    let s = FileStore::open(&path).unwrap().0;
    s.append(vec![v2(sent("n-1", "M-2", A, B)).unwrap()])
        .unwrap();
    drop(s);
    verifies_deep(&path);
}

#[test]
fn verify_faults_a_format_2_entry_in_a_format_1_ledger() {
    let (_d, path, s) = store();
    s.append(vec![v2(sent("n-1", "M-2", A, B)).unwrap()])
        .unwrap();
    drop(s);
    let info = path.join("ledger.json");
    let text = std::fs::read_to_string(&info)
        .unwrap()
        .replace("\"format\": 2", "\"format\": 1");
    std::fs::write(&info, text).unwrap();
    let report = verify_store(&path, &VerifyOptions::default(), &()).unwrap();
    assert!(!report.ok());
    assert!(
        report.faults[0].what.contains("format 2"),
        "{:?}",
        report.faults
    );
}
