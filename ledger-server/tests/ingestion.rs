//! Channel events are decided one by one (issue 11): what maps is recorded whatever
//! else a batch holds; an unknown or fact-less type is answered per item (ignored,
//! with its reason) and counted, never refusing the rest.

mod common;

use std::time::Duration;

use common::*;
use ledger_server::Scope;
use serde_json::{Value, json};

fn value(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn metric(s: &TestServer, token: &str, line: &str) -> bool {
    for _ in 0..20 {
        if get(s, "/metrics", token).text.contains(line) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_batch_with_an_unknown_type_records_every_event_that_maps() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Audit, Scope::Admin]);
    // Another delivery than the batch fixture's first event (the same one).
    let mut published = value("altinn-correspondence-published.json");
    published["id"] = json!("0d6c2a5e-0000-4000-8000-000000000001");
    let mut batch = vec![published, value("altinn-unknown-type.json")];
    batch.extend(
        value("cloudevents-batch.json")
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    batch.push(value("altinn-attachment-published.json"));
    batch.push(value("altinn-validate-subscription.json"));
    let body = serde_json::to_string(&batch).unwrap();
    let r = cloudevents(&s, &w, BATCH, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), batch.len(), "one result per item");
    let outcomes: Vec<(&str, Option<&str>)> = results
        .iter()
        .map(|x| (x["outcome"].as_str().unwrap(), x["reason"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("recorded", None),
            ("ignored", Some("unknown_type")),
            ("recorded", None),
            ("recorded", None),
            ("recorded", None),
            ("recorded", None),
            ("ignored", Some("unsupported_type")),
            ("ignored", Some("unsupported_type")),
        ]
    );
    for (i, x) in results.iter().enumerate() {
        assert_eq!(x["index"], i);
    }
    assert!(
        results[1]["message"]
            .as_str()
            .unwrap()
            .contains("correspondencereceiverforwarded"),
        "the unknown type is named: {}",
        results[1]
    );
    assert_eq!(r.body["recorded"], 5);
    assert_eq!(r.body["ignored"], 3);
    assert_eq!(r.body["rejected"], 0);
    let receipts = r.body["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 5);
    assert_eq!(results[0]["receipt"], receipts[0]);
    assert_eq!(
        entries(&s, &w).len(),
        5,
        "the five events that map are in the log"
    );
    // The redelivery (what a channel does after a refusal) changes nothing.
    let again = cloudevents(&s, &w, BATCH, &body);
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(
        again.body["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["duplicate"] == true)
    );
    assert_eq!(entries(&s, &w).len(), 5);
    // Counted, by reason.
    for line in [
        "ledger_channel_events_total{channel=\"cloudevents\",outcome=\"unknown_type\"} 2",
        "ledger_channel_events_total{channel=\"cloudevents\",outcome=\"unsupported_type\"} 4",
    ] {
        assert!(metric(&s, &w, line), "{line}");
    }
}

#[test]
fn the_eformidling_ping_and_altinn_attachment_events_are_answered_200() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Audit]);
    let r = post(
        &s,
        "/v1/channels/eformidling",
        &w,
        "application/json",
        &fixture("eformidling-webhook-ping.json"),
    );
    assert_eq!(r.status, 200, "the ping: {}", r.text);
    assert_eq!(r.body["results"][0]["outcome"], "ignored");
    assert_eq!(r.body["results"][0]["reason"], "unsupported_type");
    assert_eq!(r.body["recorded"], 0);
    let r = post(
        &s,
        "/v1/cloudevents",
        &w,
        "application/cloudevents+json",
        &fixture("altinn-attachment-published.json"),
    );
    assert_eq!(r.status, 200, "an attachment event: {}", r.text);
    assert_eq!(r.body["results"][0]["outcome"], "ignored");
    let r = post(
        &s,
        "/v1/cloudevents",
        &w,
        "application/cloudevents+json",
        &fixture("altinn-validate-subscription.json"),
    );
    assert_eq!(r.status, 200, "the subscription check: {}", r.text);
    // eFormidling: every known status of the fixture, and one unknown status.
    let mut records = value("eformidling-statuses.json")
        .as_array()
        .unwrap()
        .clone();
    let known = records.len();
    records.push(value("eformidling-unknown-status.json"));
    let r = post(
        &s,
        "/v1/channels/eformidling",
        &w,
        "application/json",
        &serde_json::to_string(&records).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["recorded"], known);
    assert_eq!(r.body["results"][known]["reason"], "unknown_type");
    assert_eq!(entries(&s, &w).len(), known);
}

#[test]
fn malformed_items_are_named_and_only_a_wholly_bad_body_is_refused() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Audit]);
    // Not JSON at all.
    let r = post(
        &s,
        "/v1/cloudevents",
        &w,
        "application/cloudevents+json",
        "{not json",
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "malformed_json");
    // One event without its time: nothing usable, 422 naming the field.
    let mut broken = value("altinn-correspondence-published.json");
    broken.as_object_mut().unwrap().remove("time");
    let r = cloudevents(&s, &w, ONE, &broken.to_string());
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["details"][0]["reason"], "missing_field");
    assert!(entries(&s, &w).is_empty());
    // Beside a good one: the good one is recorded, the broken one named.
    broken["id"] = json!("another-id");
    let body = json!([value("altinn-correspondence-published.json"), broken]).to_string();
    let r = cloudevents(&s, &w, BATCH, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["outcome"], "recorded");
    assert_eq!(r.body["results"][1]["outcome"], "rejected");
    assert_eq!(r.body["results"][1]["reason"], "missing_field");
    assert_eq!(entries(&s, &w).len(), 1);
}

#[test]
fn an_event_conflicting_with_a_recorded_one_does_not_hold_up_the_rest() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Audit]);
    let first = value("altinn-correspondence-published.json");
    let r = cloudevents(&s, &w, ONE, &first.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    // The same source and id with another type: another ledger event under the same id.
    let mut changed = first.clone();
    changed["type"] = json!("no.altinn.correspondence.correspondencereceiverread");
    let mut other = first.clone();
    other["id"] = json!("0d6c2a5e-0000-4000-8000-000000000002");
    let body = json!([changed, other]).to_string();
    let r = cloudevents(&s, &w, BATCH, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["outcome"], "rejected");
    assert_eq!(r.body["results"][0]["reason"], "conflict");
    assert_eq!(r.body["results"][1]["outcome"], "recorded");
    assert_eq!(entries(&s, &w).len(), 2);
}

const ONE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// `POST /v1/cloudevents` as `w`.
fn cloudevents(s: &TestServer, w: &str, content_type: &str, body: &str) -> Reply {
    post(s, "/v1/cloudevents", w, content_type, body)
}

/// eFormidling has no "opened" for DPO: the recipient's INNKOMMENDE_LEVERT, relayed
/// by the integrasjonspunkt, completes the message under the default policy (it was
/// at_risk once 30 days passed, which would bury real alarms); a document with only
/// MOTTATT stays at risk.
#[test]
fn an_eformidling_document_the_recipient_took_is_completed_not_at_risk() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Read]);
    let records = value("eformidling-statuses.json");
    let records = records.as_array().unwrap();
    let of = |message_id: &str, statuses: &[&str]| -> Vec<Value> {
        records
            .iter()
            .filter(|r| {
                r["messageId"] == message_id && statuses.contains(&r["status"].as_str().unwrap())
            })
            .cloned()
            .collect()
    };
    let took = "db93ada2-e5e9-4d50-a005-7287d85ba005";
    let left = "3dfc51f7-a5f7-440a-b848-ab95222dd6c8";
    for (message, id) in [("DOC-1", took), ("DOC-2", left)] {
        let mut ev = sent(&format!("sent-{message}"), message);
        ev["at"] = json!("2025-03-14T09:15:00Z");
        ev["channel"] = json!("eformidling");
        ev["category"] = json!("document");
        ev["refs"] = json!({"eformidling_message": id});
        let r = post_event(&s, &w, &ev);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let mut body = of(took, &["MOTTATT", "INNKOMMENDE_LEVERT"]);
    body.extend(of(left, &["LEVERT"]));
    assert_eq!(body.len(), 3);
    let r = post(
        &s,
        "/v1/channels/eformidling",
        &w,
        "application/json",
        &Value::Array(body).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["recorded"], 3, "{}", r.text);
    let seq = r.body["receipts"][2]["seq"].as_u64().unwrap();
    let verdict = |message: &str| {
        let r = get(
            &s,
            &format!("/v1/messages/{message}?min_seq={seq}&now=2025-05-01T00:00:00Z"),
            &w,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        (
            r.body["evaluation"]["verdict"]
                .as_str()
                .unwrap()
                .to_string(),
            r.body["evaluation"]["reason"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(verdict("DOC-1"), ("completed".into(), "completed".into()));
    assert_eq!(
        verdict("DOC-2"),
        ("at_risk".into(), "open_deadline_passed".into())
    );
}
