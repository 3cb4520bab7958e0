//! Alerts (issue 16): delivered to a local receiver, retried when it fails, and free
//! of personal data.

mod common;

use std::time::Duration;

use common::*;
use ledger_server::Scope;
use serde_json::{Value, json};

#[test]
fn a_lost_message_is_alerted_retried_until_received_and_names_no_person() {
    let r = receiver(1);
    let s = TestServer::start(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nconsole_url = \"https://ledger.example/\"\n\
         retry_initial_ms = 50\nmax_attempts = 5\n",
        r.url
    ));
    let w = s.token(POLICE, &[Scope::Write, Scope::Admin]);
    // Sent with what must never leave the ledger in an alert: its digest and refs.
    let mut lost = sent("e1", "ALERT-1");
    lost["refs"] = json!({"altinn_correspondence": "corr-secret-7731", "websak": "2023/4455-1"});
    let mut expired = json!({
        "id": "e2", "type": "expired", "message": "ALERT-1", "at": "2023-06-01T10:00:00Z",
        "reporter": {"org": POLICE, "system": "altinn-adapter"}, "from": POLICE, "to": KOMMUNE
    });
    let mut fine = sent("e3", "FINE-1");
    fine["at"] = json!("2099-01-01T00:00:00Z");
    for ev in [&mut lost, &mut expired, &mut fine] {
        let resp = post_event(&s, &w, ev);
        assert_eq!(resp.status, 200, "{}", resp.text);
    }

    // The receiver refused the first delivery; the alert came again.
    let mut got: Vec<String> = Vec::new();
    for _ in 0..200 {
        got = r.bodies.lock().unwrap().clone();
        if got.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(got.len() >= 2, "retried after a 500: {got:?}");
    assert_eq!(got[0], got[1], "the same alert, delivered again");
    let a: Value = serde_json::from_str(&got[1]).unwrap();
    assert_eq!(a["kind"], "verdict", "{a}");
    assert_eq!(a["message"]["id"], "ALERT-1");
    assert_eq!(a["message"]["verdict"], "lost");
    assert_eq!(a["message"]["sender"], POLICE);
    assert_eq!(a["message"]["recipient"], KOMMUNE);
    assert_eq!(
        a["link"],
        format!("https://ledger.example/console/#/message/{POLICE}%2F{KOMMUNE}%2FALERT-1")
    );
    for never in ["corr-secret", "2023/4455", "sha256:", "abab", "websak"] {
        assert!(
            !got[1].contains(never),
            "the alert holds {never:?}: {}",
            got[1]
        );
    }
    // Nothing about the message that is fine.
    std::thread::sleep(Duration::from_millis(500));
    let all = r.bodies.lock().unwrap().clone();
    assert!(all.iter().all(|b| !b.contains("FINE-1")), "{all:?}");
    let m = get(&s, "/metrics", &w);
    assert!(
        m.text
            .contains("ledger_alerts_total{outcome=\"delivered\"} 1"),
        "{}",
        m.text
    );
}

/// A reporting system that stops reporting is an alert, once, naming only the
/// organisation and the system.
#[test]
fn a_silent_reporter_is_alerted_once() {
    let r = receiver(0);
    let s = TestServer::start(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nretry_initial_ms = 50\nsilent_reporter_after_seconds = 1\n",
        r.url
    ));
    let w = s.token(POLICE, &[Scope::Write]);
    let mut ev = sent("e1", "QUIET-1");
    ev["at"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(post_event(&s, &w, &ev).status, 200);
    let mut got = Vec::new();
    for _ in 0..100 {
        got = r.bodies.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("silent_reporter")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let a: Value = serde_json::from_str(
        got.iter()
            .find(|b| b.contains("silent_reporter"))
            .unwrap_or_else(|| panic!("no silent-reporter alert: {got:?}")),
    )
    .unwrap();
    assert_eq!(a["reporter"]["org"], POLICE, "{a}");
    assert_eq!(a["reporter"]["system"], "websak", "{a}");
    assert!(!a.to_string().contains("QUIET-1"), "no message in it: {a}");
    std::thread::sleep(Duration::from_secs(3));
    let n = r
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.contains("silent_reporter"))
        .count();
    assert_eq!(n, 1, "said once while it stays silent");
}

#[test]
fn alerts_need_an_http_address() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("ledger.toml"),
        "[alerts]\nwebhook_url = \"mailto:ops@example\"\n",
    )
    .unwrap();
    let e = ledger_server::ServerConfig::load(d.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("alerts.webhook_url"), "{e}");
}
