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
            .contains("ledger_alerts_total{via=\"webhook\",outcome=\"delivered\"} 1"),
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

/// Alerts by e-mail (SMTP): the same alert to every recipient, each on its own: one
/// the server takes later (451) gets it on a retry, one it refuses for good (550) is
/// not tried again and keeps it from nobody else; with the link and nothing personal.
#[test]
fn an_alert_is_mailed_retried_and_names_no_person() {
    let smtp = smtp_receiver(1);
    let s = TestServer::start(&format!(
        "[alerts]\nsmtp_url = \"{}\"\nemail_from = \"Ledger <ledger@bergen.example>\"\n\
         email_to = [\"drift@bergen.example\", \"nobody@bergen.example\", \"vakt@bergen.example\"]\n\
         console_url = \"https://ledger.example\"\nretry_initial_ms = 50\nmax_attempts = 5\n",
        smtp.url
    ));
    let w = s.token(POLICE, &[Scope::Write, Scope::Admin]);
    let mut lost = sent("e1", "MAILED-1");
    lost["refs"] = json!({"altinn_correspondence": "corr-secret-7731"});
    let expired = json!({
        "id": "e2", "type": "expired", "message": "MAILED-1", "at": "2023-06-01T10:00:00Z",
        "reporter": {"org": POLICE, "system": "altinn-adapter"}, "from": POLICE, "to": KOMMUNE
    });
    for ev in [&lost, &expired] {
        assert_eq!(post_event(&s, &w, ev).status, 200);
    }
    for _ in 0..200 {
        if smtp.mails.lock().unwrap().len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mails = smtp.mails.lock().unwrap().clone();
    let mut to: Vec<&str> = mails.iter().map(|(r, _)| r[0].as_str()).collect();
    to.sort();
    assert_eq!(
        to,
        ["drift@bergen.example", "vakt@bergen.example"],
        "once each"
    );
    assert_eq!(
        smtp.refused.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first message was refused for now, and sent again"
    );
    assert_eq!(
        smtp.nobody.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a recipient refused for good is not tried again"
    );
    let (_, data) = &mails[0];
    // The body is quoted-printable: undo its soft line breaks.
    let data = &data.replace("=\r\n", "");
    let unfolded = data.replace("\r\n ", " ");
    assert!(
        unfolded.contains("Subject: [ledger] ") && unfolded.contains("MAILED-1 is lost"),
        "{data}"
    );
    assert!(
        data.contains(&format!(
            "https://ledger.example/console/#/message/{POLICE}%2F{KOMMUNE}%2FMAILED-1"
        )),
        "{data}"
    );
    for never in ["corr-secret", "sha256:", "altinn-adapter"] {
        assert!(!data.contains(never), "the mail holds {never:?}: {data}");
    }
    let m = get(&s, "/metrics", &w);
    assert!(
        m.text
            .contains("ledger_alerts_total{via=\"email\",outcome=\"given_up\"} 1"),
        "{}",
        m.text
    );
}

#[test]
fn alert_settings_are_checked_and_never_show_the_smtp_password() {
    for (toml, says) in [
        (
            "[alerts]\nconsole_url = \"https://l.example\"\n",
            "needs webhook_url",
        ),
        (
            "[alerts]\nsmtp_url = \"smtp://127.0.0.1:25\"\nemail_to = [\"a@b.example\"]\n",
            "all three",
        ),
        (
            "[alerts]\nsmtp_url = \"imap://u:hunter2@mail.example\"\nemail_from = \"l@b.example\"\nemail_to = [\"a@b.example\"]\n",
            "smtp:// or smtps://",
        ),
        (
            "[alerts]\nsmtp_url = \"smtps://u:hunter2@mail.example:notaport\"\nemail_from = \"l@b.example\"\nemail_to = [\"a@b.example\"]\n",
            "alerts.smtp_url",
        ),
        (
            "[alerts]\nsmtp_url = \"smtp://127.0.0.1:25\"\nemail_from = \"not an address\"\nemail_to = [\"a@b.example\"]\n",
            "alerts.email_from",
        ),
        (
            "[alerts]\nsmtp_url = \"smtp://u:hunter2@mail.example:587\"\nemail_from = \"l@b.example\"\nemail_to = [\"a@b.example\"]\n",
            "no TLS",
        ),
        (
            "[alerts]\nsmtp_url = \"smtp://u:hunter2@mail.example:587?tls=opportunistic\"\nemail_from = \"l@b.example\"\nemail_to = [\"a@b.example\"]\n",
            "no TLS",
        ),
        (
            "[alerts]\nsmtp_uri = \"smtps://u:hunter2@mail.example:465\"\n",
            "line 2",
        ),
        (
            "[alerts]\nsmtp_url = \"smtps://u:hunter2@mail.example\n",
            "line 2",
        ),
        (
            "[alerts]\nsmtp_url = \"smtp://127.0.0.1:25\"\nemail_from = \"l@b.example\"\nemail_to = []\n",
            "alerts.email_to",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ledger.toml"), toml).unwrap();
        let e = ledger_server::ServerConfig::load(d.path(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{toml}: {e}");
        assert!(!e.contains("hunter2"), "{toml}: {e}");
    }
    // A good one loads, and its debug form hides the address.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("ledger.toml"),
        "[alerts]\nsmtp_url = \"smtps://u:hunter2@mail.example:465\"\nemail_from = \"l@b.example\"\nemail_to = [\"a@b.example\"]\n",
    )
    .unwrap();
    let c = ledger_server::ServerConfig::load(d.path(), None).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

/// Each way has its own queue: a mail server that cannot be reached, retried slowly,
/// never holds up the webhook.
#[test]
fn a_mail_server_that_is_down_does_not_hold_up_the_webhook() {
    let r = receiver(0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = TestServer::start(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nsmtp_url = \"smtp://127.0.0.1:{port}\"\n\
         email_from = \"l@bergen.example\"\nemail_to = [\"drift@bergen.example\"]\n\
         retry_initial_ms = 60000\nmax_attempts = 3\n",
        r.url
    ));
    let w = s.token(POLICE, &[Scope::Write]);
    for (i, m) in ["SLOW-1", "SLOW-2"].iter().enumerate() {
        let ev = sent(&format!("s{i}"), m);
        assert_eq!(post_event(&s, &w, &ev).status, 200);
        let expired = json!({
            "id": format!("x{i}"), "type": "expired", "message": m, "at": "2023-06-01T10:00:00Z",
            "reporter": {"org": POLICE, "system": "altinn-adapter"}, "from": POLICE, "to": KOMMUNE
        });
        assert_eq!(post_event(&s, &w, &expired).status, 200);
    }
    let mut got = Vec::new();
    for _ in 0..100 {
        got = r.bodies.lock().unwrap().clone();
        if got.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        got.iter().any(|b| b.contains("SLOW-1")) && got.iter().any(|b| b.contains("SLOW-2")),
        "both alerts by webhook while the mail waits a minute: {got:?}"
    );
}
