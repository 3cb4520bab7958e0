//! Channel hooks (issue 16): each channel's real-shaped deliveries, its validation
//! handshake included, through the secret address `ledger channel add` makes; and
//! what a wrong, revoked, misused or another organisation's address can do.

mod common;

use common::*;
use ledger_server::Scope;
use ledger_server::tokens::TokenStore;
use serde_json::{Value, json};

/// A third organisation, party to nothing below.
const OTHER: &str = "957241867";

fn hook(s: &TestServer, org: &str, channel: &str) -> String {
    let mut t = TokenStore::load(&s.dir.join("tokens.json")).unwrap();
    t.create_hook(org, channel, None).unwrap().1
}

fn value(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn deliver(s: &TestServer, secret: &str, body: &Value) -> Reply {
    post_hook(s, secret, &body.to_string())
}

fn post_hook(s: &TestServer, secret: &str, body: &str) -> Reply {
    let resp = agent()
        .post(s.url(&format!("/v1/hooks/{secret}")))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    into_reply(resp)
}

fn outcomes(r: &Reply) -> Vec<String> {
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{}{}",
                x["outcome"].as_str().unwrap(),
                x["reason"]
                    .as_str()
                    .map(|r| format!(":{r}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn each_channel_s_deliveries_arrive_through_its_hook_handshake_first() {
    let s = TestServer::start("");
    let police = s.token(POLICE, &[Scope::Write, Scope::Read, Scope::Audit]);

    // Altinn Events: the subscription check first (200, nothing recorded), then the
    // Correspondence events of a message the police sent.
    let altinn = hook(&s, POLICE, "altinn");
    let r = deliver(&s, &altinn, &value("altinn-validate-subscription.json"));
    assert_eq!(
        r.status, 200,
        "the subscription check is answered 200: {}",
        r.text
    );
    assert_eq!(outcomes(&r), ["ignored:unsupported_type"]);
    assert!(entries(&s, &police).is_empty());
    let published = value("altinn-correspondence-published.json");
    let mut ev = sent("sent-1", "POL-1");
    ev["refs"] = json!({"altinn_correspondence": published["resourceinstance"]});
    assert_eq!(post_event(&s, &police, &ev).status, 200);
    let r = deliver(&s, &altinn, &json!([published]));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(outcomes(&r), ["recorded"]);
    assert_eq!(r.body["receipts"][0]["unmatched"], false, "{}", r.text);
    let all = value("altinn-correspondence-events.json");
    let r = deliver(&s, &altinn, &all);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["recorded"].as_u64().unwrap() > 0, "{}", r.text);

    // eFormidling: the integrasjonspunkt's ping, then a status push and records of
    // its status API.
    let efm = hook(&s, POLICE, "eformidling");
    let r = deliver(&s, &efm, &value("eformidling-webhook-ping.json"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["recorded"], 0);
    let r = deliver(&s, &efm, &value("eformidling-webhook-status.json"));
    assert_eq!(
        (r.status, r.body["recorded"].as_u64()),
        (200, Some(1)),
        "{}",
        r.text
    );
    let statuses = value("eformidling-statuses.json");
    let r = deliver(&s, &efm, &statuses);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["recorded"].as_u64().unwrap() as usize,
        statuses.as_array().unwrap().len(),
        "{}",
        r.text
    );

    // Fiks IO: an adapter's CloudEvents of the receipts.
    let fiks = hook(&s, POLICE, "fiks");
    let r = deliver(&s, &fiks, &value("fiks-bekymringsmelding-receipts.json"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["recorded"], 3, "{}", r.text);

    // Each is recorded as the organisation's own report, by the channel's adapter.
    let recorded = entries(&s, &police);
    assert!(
        recorded
            .iter()
            .all(|e| e["event"]["reporter"]["org"] == POLICE),
        "{recorded:?}"
    );
}

#[test]
fn a_wrong_revoked_misused_or_foreign_hook_records_nothing_it_should_not() {
    let s = TestServer::start("");
    let police = s.token(POLICE, &[Scope::Write, Scope::Read, Scope::Audit]);
    let altinn = hook(&s, POLICE, "altinn");
    let published = value("altinn-correspondence-published.json");

    // A wrong secret: one character changed.
    let mut wrong = altinn.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let r = deliver(&s, &wrong, &published);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_hook");
    assert!(!r.text.contains(&wrong), "the secret is not echoed");
    // A bearer token is no hook, and a hook is no bearer token.
    assert_eq!(deliver(&s, &police, &published).status, 401);
    let r = post_event(&s, &altinn, &sent("e1", "M1"));
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(entries(&s, &police).is_empty());

    // One channel's hook is not a way in for another's events.
    let r = deliver(&s, &altinn, &value("fiks-bekymringsmelding-receipts.json"));
    assert_eq!(r.status, 422, "{}", r.text);
    let efm = hook(&s, POLICE, "eformidling");
    let r = deliver(&s, &efm, &published);
    assert_ne!(
        r.status, 200,
        "a CloudEvent is no eFormidling record: {}",
        r.text
    );
    assert!(entries(&s, &police).is_empty());

    // Another organisation's hook cannot reach the police's message: the event
    // resolves to nothing of theirs (an unmatched message of its own), and the
    // police's message is untouched.
    let mut ev = sent("sent-1", "POL-1");
    ev["refs"] = json!({"altinn_correspondence": published["resourceinstance"]});
    assert_eq!(post_event(&s, &police, &ev).status, 200);
    let foreign = hook(&s, OTHER, "altinn");
    let r = deliver(&s, &foreign, &published);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["receipts"][0]["unmatched"], true, "{}", r.text);
    let seq = r.body["receipts"][0]["seq"].as_u64().unwrap();
    let m = get(
        &s,
        &format!("/v1/messages/POL-1?min_seq={seq}&now=2025-03-20T00:00:00Z"),
        &police,
    );
    assert_eq!(m.status, 200, "{}", m.text);
    let history = m.body["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "only the police's own sent: {}", m.text);

    // Revoked: refused from the next request on.
    let id = altinn
        .strip_prefix("ldg_")
        .unwrap()
        .split('_')
        .next()
        .unwrap()
        .to_string();
    TokenStore::load(&s.dir.join("tokens.json"))
        .unwrap()
        .revoke(&id)
        .unwrap();
    let r = deliver(&s, &altinn, &published);
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn a_hook_past_its_rate_is_answered_429_with_retry_after() {
    let s = TestServer::start("[server]\nhook_requests_per_minute = 3\n");
    let efm = hook(&s, POLICE, "eformidling");
    let ping = value("eformidling-webhook-ping.json");
    for _ in 0..3 {
        assert_eq!(deliver(&s, &efm, &ping).status, 200);
    }
    let r = deliver(&s, &efm, &ping);
    assert_eq!(r.status, 429, "{}", r.text);
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&after), "{after}");
    // Another hook has its own allowance.
    let other = hook(&s, POLICE, "eformidling");
    assert_eq!(deliver(&s, &other, &ping).status, 200);
}
