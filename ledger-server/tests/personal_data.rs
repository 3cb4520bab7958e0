//! No national identity number gets in, however it is written (issue 11, FORMAT.md
//! §3.8): each of the outside tester's forms, in every field it was tried in, is
//! refused with the field named, and nothing is recorded.

mod common;

use common::*;
use ledger_server::Scope;
use serde_json::json;

/// A synthetic, well-formed number (valid control digits).
const FNR: &str = "01010012356";

/// The number as the outside tester wrote it: split by an invisible character, by
/// each separator people and programs put between its parts, as a date and five
/// digits, 4+7, and inside a longer run.
fn forms() -> Vec<String> {
    let (head, tail) = FNR.split_at(6);
    let mut out: Vec<String> = ["\u{200b}", "\u{ad}", "\u{2060}"]
        .iter()
        .map(|inv| format!("{}{inv}{}", &FNR[..4], &FNR[4..]))
        .collect();
    for sep in ["\u{202f}", "\u{2013}", "/", "_", "  ", "\t"] {
        out.push(format!("{head}{sep}{tail}"));
    }
    out.push(format!(
        "{}.{}.{} {tail}",
        &head[..2],
        &head[2..4],
        &head[4..]
    ));
    out.push(format!("{} {}", &FNR[..4], &FNR[4..]));
    out.push(format!("9{FNR}7"));
    out
}

#[test]
fn every_form_in_every_field_is_refused_and_named() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Audit]);
    for (k, form) in forms().into_iter().enumerate() {
        let tries = [
            ("id", {
                let mut v = sent(&format!("x{k}"), &format!("M{k}"));
                v["id"] = json!(form);
                v
            }),
            ("message", {
                let mut v = sent(&format!("m{k}"), &form);
                v.as_object_mut().unwrap().remove("refs");
                v
            }),
            ("refs.websak", {
                let mut v = sent(&format!("r{k}"), &format!("R{k}"));
                v["refs"]["websak"] = json!(form);
                v
            }),
        ];
        for (field, ev) in tries {
            let r = post_event(&s, &w, &ev);
            assert_eq!(r.status, 422, "{form:?} in {field}: {}", r.text);
            assert_eq!(r.body["error"]["details"][0]["field"], field, "{form:?}");
            assert!(!r.text.contains(FNR), "the answer repeats it: {}", r.text);
        }
    }
    // As an integer, and free text in refs.
    let mut v = sent("seq", "M-SEQ");
    v["reporter"]["seq"] = json!(15076500565u64);
    let r = post_event(&s, &w, &v);
    assert_eq!(
        r.body["error"]["details"][0]["field"], "reporter.seq",
        "{}",
        r.text
    );
    let mut v = sent("barn", "M-BARN");
    v["refs"] = json!({"barn": "Ola Nordmann f. 01.01.2015, Storgata 1"});
    let r = post_event(&s, &w, &v);
    assert_eq!(
        r.body["error"]["details"][0]["field"], "refs.barn",
        "{}",
        r.text
    );
    // Nothing of it was recorded.
    let r = get(&s, "/v1/checkpoint", &w);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("\n0\n"),
        "entries were recorded: {}",
        r.text
    );
}

#[test]
fn no_free_text_over_the_api() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write]);
    let r = post_event(&s, &w, &sent("e1", "M1"));
    assert_eq!(r.status, 200, "{}", r.text);
    let base = |kind: &str| {
        json!({"id": format!("x-{kind}"), "type": kind, "message": "M1",
               "at": "2023-05-02T10:00:00Z", "reporter": {"org": POLICE, "system": "websak"},
               "from": POLICE, "to": KOMMUNE})
    };
    let cases = [
        ("reason", {
            let mut v = base("deleted");
            v["reason"] = json!("mor Kari Nordmann ringte, ADHD-utredning");
            v
        }),
        ("error", {
            let mut v = base("failed");
            v["error"] = json!("the recipient Ola Nordmann moved");
            v
        }),
        ("note", {
            let mut v = base("resolved");
            v["outcome"] = json!("false_alarm");
            v["note"] = json!("spoke to the mother, Kari");
            v
        }),
        ("by_role", {
            let mut v = base("opened");
            v["by_role"] = json!("Kari Nordmann");
            v
        }),
        ("journal_ref", {
            let mut v = base("received");
            v["system"] = json!("familia");
            v["journal_ref"] = json!("sak om Ola, 12");
            v
        }),
    ];
    for (field, ev) in cases {
        let r = post_event(&s, &w, &ev);
        assert_eq!(r.status, 422, "{field}: {}", r.text);
        assert_eq!(r.body["error"]["details"][0]["field"], field, "{}", r.text);
    }
    // Codes and identifiers pass.
    let mut ok = base("deleted");
    ok["reason"] = json!("retention");
    let r = post_event(&s, &w, &ok);
    assert_eq!(r.status, 200, "{}", r.text);
}
