//! The tenant boundary, as a matrix: every endpoint × every scope × a message of the
//! caller's own, another organisation's, and none; and every event type reported by
//! a party, a non-party and a channel operator (README "Who can write what").
//!
//! Invariants: a non-party is answered exactly as if the message did not exist;
//! nothing a non-party sends is recorded; the stream gives no one more than
//! `/v1/messages` does.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ledger_server::Scope;
use serde_json::{Value, json};

/// A third organisation, party to nothing.
const OTHER: &str = "957241867";
/// A channel operator, named in `[tenant] channel_operators`.
const OPERATOR: &str = "991825827";

/// A format-2 event of `org` about the message (POLICE, KOMMUNE, `message`); set
/// `from` and `to` for another.
fn event(id: &str, kind: &str, message: &str, org: &str) -> Value {
    let mut v = json!({
        "id": id, "type": kind, "message": message, "at": "2023-05-02T10:00:00Z",
        "reporter": {"org": org, "system": "case"}, "from": POLICE, "to": KOMMUNE,
    });
    let o = v.as_object_mut().unwrap();
    match kind {
        "opened" => {
            o.insert("by_role".into(), json!("saksbehandler"));
        }
        "deleted" => {
            o.insert("reason".into(), json!("retention"));
        }
        "failed" => {
            o.insert("error".into(), json!("timeout"));
        }
        "handed_off" => {
            o.insert("from_system".into(), json!("fiks-mottak"));
            o.insert("to_system".into(), json!("familia"));
        }
        "received" => {
            o.insert("system".into(), json!("familia"));
        }
        "resent" => {
            o.insert("new_message".into(), json!(format!("{message}-BREV")));
            o.insert("channel".into(), json!("letter"));
        }
        "resolved" => {
            o.insert("outcome".into(), json!("false_alarm"));
        }
        "notice" => {
            o.insert("notice".into(), json!("not_opened"));
            o.insert("status".into(), json!("reminded"));
            o.insert("system".into(), json!("altinn"));
        }
        _ => {}
    }
    v
}

const NON_SENT: [&str; 11] = [
    "delivered",
    "handed_off",
    "received",
    "opened",
    "acknowledged",
    "expired",
    "deleted",
    "failed",
    "resent",
    "resolved",
    "notice",
];

/// The error body without the parts that name the request itself.
fn normalized(r: &Reply) -> (u16, Value) {
    let mut b = r.body.clone();
    if let Some(e) = b.get_mut("error") {
        e.as_object_mut().unwrap().remove("message");
    }
    (r.status, b)
}

/// How the police's message M-OWN-1 is named where another organisation may use the
/// same id.
const OWN: &str = "974760673/964338531/M-OWN-1";

/// The ids of a message's history, once the projection reflects every entry recorded
/// so far (`reg` holds `ledger:regulator`).
fn history_ids(s: &TestServer, reg: &str, message: &str) -> Vec<String> {
    let size = get(s, "/v1/ledger", reg).body["size"].as_u64().unwrap();
    let r = get(
        s,
        &format!("/v1/messages/{message}?min_seq={}", size.saturating_sub(1)),
        reg,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["history"]
        .as_array()
        .or_else(|| r.body["entries"].as_array())
        .map(|h| {
            h.iter()
                .map(|e| {
                    e["event"]["id"]
                        .as_str()
                        .or(e["id"].as_str())
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn reads_answer_a_non_party_as_if_the_message_did_not_exist() {
    let s = TestServer::start("");
    let police_w = s.token(POLICE, &[Scope::Write]);
    assert_eq!(
        post_event(&s, &police_w, &sent("e-own", "M-OWN-1")).status,
        200
    );
    // Questions are answered once the projection reflects the entry.
    let reg = s.token(OTHER, &[Scope::Regulator]);
    assert_eq!(history_ids(&s, &reg, "M-OWN-1"), ["e-own"]);

    let none = String::new();
    let tokens: Vec<(&str, String)> = vec![
        ("no token", none),
        ("police read", s.token(POLICE, &[Scope::Read])),
        ("kommune read", s.token(KOMMUNE, &[Scope::Read])),
        ("other read", s.token(OTHER, &[Scope::Read])),
        ("other write", s.token(OTHER, &[Scope::Write])),
        ("other audit", s.token(OTHER, &[Scope::Audit])),
        ("other regulator", s.token(OTHER, &[Scope::Regulator])),
        ("other admin", s.token(OTHER, &[Scope::Admin])),
    ];
    // (endpoint, expected status per principal, in the order above)
    let q = "now=2023-06-01T00:00:00Z";
    let matrix: Vec<(String, [u16; 8])> = vec![
        (
            format!("/v1/messages/M-OWN-1?{q}"),
            [401, 200, 200, 404, 403, 403, 200, 403],
        ),
        (
            format!("/v1/messages/M-NONE-2?{q}"),
            [401, 404, 404, 404, 403, 403, 404, 403],
        ),
        (
            format!("/v1/messages?{q}"),
            [401, 200, 200, 200, 403, 403, 200, 403],
        ),
        (
            format!("/v1/reports/lost?{q}"),
            [401, 200, 200, 200, 403, 403, 200, 403],
        ),
        (
            format!("/v1/stats?{q}"),
            [401, 200, 200, 200, 403, 403, 200, 403],
        ),
        // Checkpoints and proofs are hashes and sizes: every party may check them.
        (
            "/v1/checkpoint".into(),
            [401, 200, 200, 200, 200, 200, 200, 403],
        ),
        // What identifies the log (its key, its witness policy) is public by nature.
        (
            "/v1/ledger".into(),
            [401, 200, 200, 200, 200, 200, 200, 403],
        ),
        // Who you are, to anyone who is someone.
        (
            "/v1/whoami".into(),
            [401, 200, 200, 200, 200, 200, 200, 200],
        ),
        // The console's files are public; its data come from the API above.
        (
            "/console/app.js".into(),
            [200, 200, 200, 200, 200, 200, 200, 200],
        ),
        // A receipt carries the entry: within the entry reach only.
        (
            "/v1/receipts?seq=0".into(),
            [401, 200, 200, 404, 404, 200, 200, 403],
        ),
        // The whole log, to those who audit it.
        (
            "/v1/bundle".into(),
            [401, 403, 403, 403, 403, 200, 200, 403],
        ),
        (
            "/v1/entries?from=0&limit=10".into(),
            [401, 403, 403, 403, 403, 200, 200, 403],
        ),
        (
            "/v1/proofs/inclusion?seq=0".into(),
            [401, 200, 200, 200, 200, 200, 200, 403],
        ),
        ("/metrics".into(), [401, 403, 403, 403, 403, 403, 403, 200]),
    ];
    for (path, want) in &matrix {
        for ((who, token), want) in tokens.iter().zip(want) {
            let r = get(&s, path, token);
            assert_eq!(r.status, *want, "{who} GET {path}: {}", r.text);
        }
    }
    // "Not yours" and "does not exist" are the same answer.
    let other = &tokens[3].1;
    let a = get(&s, &format!("/v1/messages/M-OWN-1?{q}"), other);
    let b = get(&s, &format!("/v1/messages/M-NONE-2?{q}"), other);
    assert_eq!(normalized(&a), normalized(&b));
    assert_eq!(
        a.text.replace("M-OWN-1", "M-X"),
        b.text.replace("M-NONE-2", "M-X")
    );
    // Lists, reports and stats hold none of another organisation's messages.
    for path in [
        format!("/v1/messages?{q}"),
        format!("/v1/reports/lost?{q}"),
        format!("/v1/stats?{q}"),
    ] {
        let r = get(&s, &path, other);
        assert!(!r.text.contains("M-OWN-1"), "{path}: {}", r.text);
    }
    let r = get(&s, &format!("/v1/stats?{q}"), other);
    assert!(
        !r.text.contains("\"count\":1"),
        "another's message counted: {}",
        r.text
    );
}

#[test]
fn writes_by_a_non_party_are_refused_as_for_an_unknown_message_and_record_nothing() {
    let s = TestServer::start(&format!("[tenant]\nchannel_operators = [\"{OPERATOR}\"]\n"));
    let police = s.token(POLICE, &[Scope::Write]);
    let kommune = s.token(KOMMUNE, &[Scope::Write]);
    let other = s.token(OTHER, &[Scope::Write]);
    let operator = s.token(OPERATOR, &[Scope::Write]);
    let reg = s.token(OTHER, &[Scope::Regulator]);
    assert_eq!(
        post_event(&s, &police, &sent("e-own", "M-OWN-1")).status,
        200
    );
    let before = history_ids(&s, &reg, OWN);
    assert_eq!(before, ["e-own"]);

    for kind in NON_SENT {
        // Another organisation, about a message it is no party of, and about none.
        let on_own = post_event(
            &s,
            &other,
            &event(&format!("x-{kind}"), kind, "M-OWN-1", OTHER),
        );
        let on_none = post_event(
            &s,
            &other,
            &event(&format!("y-{kind}"), kind, "M-NONE-2", OTHER),
        );
        assert_eq!(on_own.status, 403, "{kind}: {}", on_own.text);
        assert_eq!(on_own.body["error"]["code"], "not_a_party", "{kind}");
        assert_eq!(normalized(&on_own), normalized(&on_none), "{kind}");
        assert_eq!(on_own.text, on_none.text, "{kind}: the answers differ");
    }
    assert_eq!(history_ids(&s, &reg, OWN), before, "nothing recorded");

    // A `sent` declared for another organisation, and one for a message id that
    // another sender already uses.
    let mut forged = sent("e-forged", "M-FORGED-4");
    forged["reporter"]["org"] = json!(OTHER);
    let r = post_event(&s, &other, &forged);
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (403, json!("not_a_party")),
        "{}",
        r.text
    );
    // The same message id used by another sender is that sender's own message
    // (format 2: a message is (from, to, id)); the police's is untouched.
    let mut squat = sent("e-squat", "M-OWN-1");
    squat["reporter"]["org"] = json!(OTHER);
    squat["from"] = json!(OTHER);
    let r = post_event(&s, &other, &squat);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["receipts"][0]["duplicate"], false, "{}", r.text);
    assert_eq!(history_ids(&s, &reg, OWN), before);

    // A party reports its own side's facts only: the recipient's system says it was
    // opened, the sender's says it resent.
    for (token, org, kind) in [
        (&police, POLICE, "opened"),
        (&police, POLICE, "acknowledged"),
        (&police, POLICE, "received"),
        (&kommune, KOMMUNE, "resent"),
    ] {
        let r = post_event(
            &s,
            token,
            &event(&format!("w-{kind}"), kind, "M-OWN-1", org),
        );
        assert_eq!(
            (r.status, r.body["error"]["code"].clone()),
            (403, json!("wrong_side")),
            "{org} {kind}: {}",
            r.text
        );
    }
    assert_eq!(history_ids(&s, &reg, OWN), before);

    // A resend cannot link to another organisation's message (it would borrow its
    // facts): its new message keeps the resender's parties, so it is the
    // resender's own; the mappers' ids are theirs to make.
    let mut own_x = sent("e-x-own", "M-X-5");
    own_x["reporter"]["org"] = json!(OTHER);
    own_x["from"] = json!(OTHER);
    own_x["to"] = json!(POLICE);
    own_x["refs"] = json!({"case": "x-5"});
    assert_eq!(post_event(&s, &other, &own_x).status, 200);
    let mut borrow = event("x-resent", "resent", "M-X-5", OTHER);
    borrow["from"] = json!(OTHER);
    borrow["to"] = json!(POLICE);
    borrow["new_message"] = json!("M-OWN-1");
    let r = post_event(&s, &other, &borrow);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(history_ids(&s, &reg, OWN), before, "borrowed");
    let mut synthetic = sent("e-syn", "altinn-correspondence:corr-9");
    synthetic["refs"] = json!({"case": "s-9"});
    let r = post_event(&s, &police, &synthetic);
    assert_eq!(r.body["error"]["code"], "not_a_party", "{}", r.text);
    assert_eq!(history_ids(&s, &reg, OWN), before);
    // A batch may name its message before the sent that declares it, and a resend's
    // new message in the same batch.
    let mut resend = event("n-3", "resent", "M-NEW-6", POLICE);
    resend["new_message"] = json!("M-NEW-6-BREV");
    let batch = json!([
        event("n-1", "delivered", "M-NEW-6", POLICE),
        sent("n-2", "M-NEW-6"),
        resend,
        event("n-4", "delivered", "M-NEW-6-BREV", POLICE),
    ]);
    let r = post_event(&s, &police, &batch);
    assert_eq!(r.status, 200, "{}", r.text);

    // Parties and the channel operator are heard.
    for (token, org, kind) in [
        (&kommune, KOMMUNE, "opened"),
        (&kommune, KOMMUNE, "acknowledged"),
        (&police, POLICE, "delivered"),
        (&operator, OPERATOR, "expired"),
    ] {
        let r = post_event(
            &s,
            token,
            &event(&format!("p-{kind}"), kind, "M-OWN-1", org),
        );
        assert_eq!(r.status, 200, "{org} {kind}: {}", r.text);
    }
    // A sent and its receipt-side events in one request by the sender's own party.
    let batch = json!([
        sent("e-b1", "M-BATCH-3"),
        event("e-b2", "delivered", "M-BATCH-3", POLICE)
    ]);
    assert_eq!(post_event(&s, &police, &batch).status, 200);

    // A conflict names no seq (the entry may be another organisation's).
    let mut clash = event("p-opened", "opened", "M-OWN-1", OTHER);
    clash["by_role"] = json!("other");
    let r = post_event(&s, &other, &clash);
    assert!(matches!(r.status, 403 | 409), "{}", r.text);
    let r = post_event(&s, &kommune, &{
        let mut v = event("p-opened", "opened", "M-OWN-1", KOMMUNE);
        v["by_role"] = json!("leder");
        v
    });
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(!r.text.contains("seq"), "{}", r.text);
}

#[test]
fn a_channel_event_never_finds_another_organisations_message() {
    let s = TestServer::start("");
    let police = s.token(POLICE, &[Scope::Write]);
    let other = s.token(OTHER, &[Scope::Write]);
    let reg = s.token(OTHER, &[Scope::Regulator]);
    assert_eq!(
        post_event(&s, &police, &sent("e-own", "M-OWN-1")).status,
        200
    );
    let before = history_ids(&s, &reg, "M-OWN-1");
    // An Altinn "read" for the police's correspondence, and for one nobody declared.
    let read = |corr: &str, id: &str| {
        json!({
            "specversion": "1.0", "id": id,
            "type": "no.altinn.correspondence.correspondencereceiverread",
            "source": "https://platform.tt02.altinn.no/correspondence/api/v1/correspondence",
            "resourceinstance": corr, "time": "2023-05-02T10:00:00Z",
            "subject": format!("/organisation/{OTHER}"),
        })
    };
    let on_own = post(
        &s,
        "/v1/cloudevents",
        &other,
        "application/cloudevents+json",
        &read("corr-M-OWN-1", "ce-1").to_string(),
    );
    let on_none = post(
        &s,
        "/v1/cloudevents",
        &other,
        "application/cloudevents+json",
        &read("corr-NOBODY-9", "ce-2").to_string(),
    );
    assert_eq!(
        on_own.status, on_none.status,
        "{} / {}",
        on_own.text, on_none.text
    );
    let unmatched = |r: &Reply| r.body["receipts"][0]["unmatched"].clone();
    assert_eq!(unmatched(&on_own), unmatched(&on_none));
    assert_eq!(
        history_ids(&s, &reg, "M-OWN-1"),
        before,
        "attached to another's message"
    );
}

/// Opens `GET /v1/stream` and returns a reader of its events.
fn open_stream(s: &TestServer, token: &str) -> BufReader<TcpStream> {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    write!(
        c,
        "GET /v1/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
    }
    r
}

/// Every event the stream sends until it falls quiet (the read times out).
fn drain(r: &mut BufReader<TcpStream>) -> Vec<(String, Value)> {
    read_sse(r, usize::MAX)
        .into_iter()
        .map(|(event, _, data)| (event, data))
        .collect()
}

#[test]
fn the_stream_gives_no_one_more_than_the_questions_do() {
    let s = TestServer::start("[server]\nsweep_interval_seconds = 1\n");
    let police = s.token(POLICE, &[Scope::Write]);
    let kommune = s.token(KOMMUNE, &[Scope::Write]);
    let mut regulator = open_stream(&s, &s.token(OTHER, &[Scope::Regulator]));
    let mut audit = open_stream(&s, &s.token(OTHER, &[Scope::Audit]));
    let mut other_read = open_stream(&s, &s.token(OTHER, &[Scope::Read]));
    let mut other_write = open_stream(&s, &s.token(OTHER, &[Scope::Write]));
    assert_eq!(
        post_event(&s, &police, &sent("e-own", "M-OWN-1")).status,
        200
    );
    for kind in ["delivered", "opened", "acknowledged"] {
        let org = if kind == "delivered" { POLICE } else { KOMMUNE };
        let token = if kind == "delivered" {
            &police
        } else {
            &kommune
        };
        let r = post_event(
            &s,
            token,
            &event(&format!("p-{kind}"), kind, "M-OWN-1", org),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let reg = drain(&mut regulator);
    assert!(
        reg.iter().any(|(e, _)| e == "verdict"),
        "the regulator sees verdict changes: {reg:?}"
    );
    assert_eq!(reg.iter().filter(|(e, _)| e == "receipt").count(), 4);
    let aud = drain(&mut audit);
    assert_eq!(
        aud.iter().filter(|(e, _)| e == "receipt").count(),
        4,
        "{aud:?}"
    );
    assert!(
        !aud.iter().any(|(e, _)| e == "verdict"),
        "an audit token gets no verdicts (/v1/messages refuses it): {aud:?}"
    );
    for (who, got) in [
        ("other read", drain(&mut other_read)),
        ("other write", drain(&mut other_write)),
    ] {
        assert!(
            got.iter().all(|(e, _)| e != "receipt" && e != "verdict"),
            "{who} sees another's message: {got:?}"
        );
    }
}

/// A fourth organisation.
const THIRD: &str = "889640782";

/// Issue 11, defects 4 and 6: an organisation that uses another's message id or
/// event id first makes its own message and its own event; it neither takes the
/// other's message (404 for its owner, its entries to the squatter) nor blocks the
/// other's event, and a channel id it declared too does not hide the owner's message.
#[test]
fn identifiers_are_each_organisations_own() {
    let s = TestServer::start("");
    let police = s.token(POLICE, &[Scope::Write]);
    let other = s.token(OTHER, &[Scope::Write]);
    let kommune = s.token(KOMMUNE, &[Scope::Write]);
    let reg = s.token(OTHER, &[Scope::Regulator]);

    // The squatter first: the same message id, the same event id, the same
    // correspondence id.
    let mut squat = sent("e-police-1", "M-SQ");
    squat["reporter"]["org"] = json!(OTHER);
    squat["from"] = json!(OTHER);
    squat["to"] = json!(THIRD);
    let r = post_event(&s, &other, &squat);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_event(&s, &police, &sent("e-police-1", "M-SQ"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["receipts"][0]["duplicate"], false, "{}", r.text);
    let police_seq = r.body["receipts"][0]["seq"].as_u64().unwrap();

    // Each reads its own message by the id it knows.
    let q = format!("now=2023-06-01T00:00:00Z&min_seq={police_seq}");
    for (org, token) in [(POLICE, &police), (OTHER, &other)] {
        let read = s.token(org, &[Scope::Read]);
        let _ = token;
        let r = get(&s, &format!("/v1/messages/M-SQ?{q}"), &read);
        assert_eq!(r.status, 200, "{org}: {}", r.text);
        assert_eq!(r.body["from"], org, "{org}: {}", r.text);
        assert_eq!(r.body["message"], "M-SQ");
        let reporters: Vec<&str> = r.body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event"]["reporter"]["org"].as_str().unwrap())
            .collect();
        assert_eq!(
            reporters,
            [org],
            "{org} sees only its own message's entries"
        );
    }
    // The regulator sees both, and is asked to choose.
    let r = get(&s, &format!("/v1/messages/M-SQ?{q}"), &reg);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "ambiguous_message");
    assert_eq!(
        r.body["error"]["details"]["candidates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = get(
        &s,
        &format!("/v1/messages/{POLICE}/{KOMMUNE}/M-SQ?{q}"),
        &reg,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["from"], POLICE);
    // Another organisation asking by the full name learns nothing either.
    let third_read = s.token(THIRD, &[Scope::Read]);
    let a = get(
        &s,
        &format!("/v1/messages/{POLICE}/{KOMMUNE}/M-SQ?{q}"),
        &third_read,
    );
    let b = get(
        &s,
        &format!("/v1/messages/{POLICE}/{KOMMUNE}/M-NONE?{q}"),
        &third_read,
    );
    assert_eq!((a.status, b.status), (404, 404));
    assert_eq!(normalized(&a), normalized(&b));

    // The recipient's channel event finds the police's message, though the squatter
    // declared the same correspondence id first.
    let read = json!({
        "specversion": "1.0", "id": "ce-sq-1",
        "type": "no.altinn.correspondence.correspondencereceiverread",
        "source": "https://platform.tt02.altinn.no/correspondence/api/v1/correspondence",
        "resourceinstance": "corr-M-SQ", "time": "2023-05-02T10:00:00Z",
        "subject": format!("/organisation/{KOMMUNE}"),
    });
    let r = post(
        &s,
        "/v1/cloudevents",
        &kommune,
        "application/cloudevents+json",
        &read.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["receipts"][0]["unmatched"], false, "{}", r.text);
    let seq = r.body["receipts"][0]["seq"].as_u64().unwrap();
    let r = get(
        &s,
        &format!("/v1/messages/{POLICE}/{KOMMUNE}/M-SQ?now=2023-06-01T00:00:00Z&min_seq={seq}"),
        &reg,
    );
    assert!(r.body["facts"]["opened"].is_object(), "{}", r.text);

    // An event id is its reporter's own: re-sending the police's id with other
    // content conflicts only with the police's own entry.
    let mut changed = sent("e-police-1", "M-SQ");
    changed["category"] = json!("underretning");
    let r = post_event(&s, &police, &changed);
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(!r.text.contains("seq"), "{}", r.text);
}

#[test]
fn incidents_late_reports_and_past_answers_stay_inside_the_boundary() {
    let s = TestServer::start("");
    let police_w = s.token(POLICE, &[Scope::Write]);
    // Sent and deleted unread in May 2023, recorded today: a loss, reported late.
    assert_eq!(
        post_event(&s, &police_w, &sent("e-own", "M-OWN-1")).status,
        200
    );
    let deleted = event("e-del", "deleted", "M-OWN-1", POLICE);
    assert_eq!(post_event(&s, &police_w, &deleted).status, 200);
    let reg = s.token(OTHER, &[Scope::Regulator]);
    assert_eq!(history_ids(&s, &reg, "M-OWN-1").len(), 2);

    let police = s.token(POLICE, &[Scope::Read]);
    let other = s.token(OTHER, &[Scope::Read]);
    let q = "now=2023-06-01";
    let own = get(&s, &format!("/v1/reports/incidents?{q}"), &police);
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.body["rows"][0]["kind"], "lost_unread");
    assert_eq!(own.body["rows"][0]["cause"], "deleted");
    let own_late = get(&s, "/v1/reports/reported-late", &police);
    assert_eq!(own_late.body["count"], 2, "{}", own_late.text);

    // Another organisation sees none of it, through any question or time axis.
    for path in [
        format!("/v1/reports/incidents?{q}"),
        format!("/v1/reports/lost?ever=true&{q}"),
        format!("/v1/reports/lost?ever=true&{q}&from={POLICE}"),
        "/v1/reports/reported-late".to_string(),
        "/v1/reports/reported-late?over=1s&as_of=2023-05-03".to_string(),
        format!("/v1/reports/incidents?as_of=2023-05-03&party={POLICE}"),
        format!("/v1/messages?as_of=2023-05-03&{}", "verdict=lost"),
    ] {
        let r = get(&s, &path, &other);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(!r.text.contains("M-OWN-1"), "{path}: {}", r.text);
        let n = r.body["count"].as_u64().or(r.body["total"].as_u64());
        assert_eq!(n, Some(0), "{path}: {}", r.text);
    }
    let stats = get(&s, &format!("/v1/stats?by=from,month&{q}"), &other);
    assert_eq!(stats.body["groups"], json!([]), "{}", stats.text);
    // As of a past date, "not yours" is still "does not exist".
    let a = get(&s, "/v1/messages/M-OWN-1?as_of=2023-05-03", &other);
    let b = get(&s, "/v1/messages/M-NONE-2?as_of=2023-05-03", &other);
    assert_eq!((a.status, b.status), (404, 404));
    assert_eq!(normalized(&a), normalized(&b));

    // Hostile or malformed parameters are named 400s (or 404 for a checkpoint that
    // was never signed), never a partial answer.
    for (path, status) in [
        ("/v1/stats?by=from,from", 400),
        ("/v1/stats?by=weather", 400),
        ("/v1/reports/lost?as_of=2023-13-45", 400),
        ("/v1/reports/lost?as_of=2023-05-01&now=2023-05-01", 400),
        ("/v1/reports/reported-late?over=-1h", 400),
        ("/v1/reports/completed?ever=true", 400),
        ("/v1/reports/incidents?kind=vanished", 400),
        ("/v1/reports/lost?over=1h", 400),
        ("/v1/reports/lost?from=Nobody%20Municipality", 400),
        ("/v1/reports/lost?at_checkpoint=999999", 404),
        ("/v1/reports/weather", 404),
    ] {
        let r = get(&s, path, &police);
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert!(r.text.contains("\"error\""), "{path}: {}", r.text);
    }
}

/// Reconcile shows a party only its own messages: another organisation's list row
/// about someone else's message reads as not recorded, with no verdict.
#[test]
fn reconcile_sees_only_what_the_token_may_see() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write]);
    let r = post_event(&s, &w, &sent("e-rec", "M-REC"));
    assert_eq!(r.status, 200, "{}", r.text);
    let seq = r.body["receipts"][0]["seq"].as_u64().unwrap();
    let body = json!({
        "sent": "message,ref,at\nM-REC,,2023-05-01\n",
        "received": "message,ref,at\n",
    })
    .to_string();
    let ask = |token: &str| {
        let r = post(
            &s,
            &format!("/v1/reconcile?now=2023-06-01T00:00:00Z&min_seq={seq}"),
            token,
            "application/json",
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    };
    let mine = ask(&s.token(POLICE, &[Scope::Read]));
    assert_eq!(mine["summary"]["sent_not_in_ledger"], 0, "{mine}");
    let theirs = ask(&s.token(OTHER, &[Scope::Read]));
    assert_eq!(theirs["summary"]["sent_not_in_ledger"], 1, "{theirs}");
    assert!(
        !theirs.to_string().contains("open") && !theirs.to_string().contains("at_risk"),
        "{theirs}"
    );
    let reg = ask(&s.token(OTHER, &[Scope::Regulator]));
    assert_eq!(reg["summary"]["sent_not_in_ledger"], 0, "{reg}");
    // A list that cannot be read is a 400 naming the line.
    let r = post(
        &s,
        "/v1/reconcile",
        &s.token(POLICE, &[Scope::Read]),
        "application/json",
        &json!({"sent": "message,at\nM1,not-a-date\n", "received": ""}).to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = post(&s, "/v1/reconcile", &w, "application/json", &body);
    assert_eq!(
        r.status, 403,
        "a write-only token reads nothing: {}",
        r.text
    );
}
