//! `ledger channel add` as an operator runs it (docs/channels.md): the printed
//! address works against the real `ledger serve`, the listing never shows a secret,
//! and revocation takes effect on a running server.

use ledger_tests::{http_agent, ledger, ledger_json, ledger_ok, output_text, serve, stop};
use serde_json::Value;

const POLICE: &str = "974760673";

fn post(url: &str, body: &str) -> (u16, Value) {
    let resp = http_agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_channel_address_made_by_the_cli_is_answered_by_the_server_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "ledger.example/channels"]);
    let (mut child, base) = serve(&d);

    // The steps name the channel's own terms; the address is printed once.
    let out = ledger(
        &d,
        &["channel", "add", "altinn", "--org", POLICE, "--url", &base],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(url.starts_with(&format!("{base}/v1/hooks/ldg_")), "{url}");
    for term in [
        "endPoint",
        "altinn:events.subscribe",
        "validatesubscription",
    ] {
        assert!(text.contains(term), "the steps say {term}: {text}");
    }
    assert!(
        text.contains("plain HTTP"),
        "an http:// address is warned of: {text}"
    );

    // Altinn's subscription check, then an attachment event (no fact): both 200.
    let check = std::fs::read_to_string(
        ledger_tests::repo_root()
            .join("ledger-server/tests/fixtures/cloudevents/altinn-validate-subscription.json"),
    )
    .unwrap();
    let (status, body) = post(&url, &check);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "ignored");

    // The listing shows the hook, never its secret.
    let listed = ledger_json(&d, &["--json", "channel", "list"]);
    let secret = url.rsplit('/').next().unwrap();
    assert!(!listed.to_string().contains(secret));
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["channel"], "altinn");
    // An API token is not revoked through `channel`, nor a hook listed as a token's.
    let out = ledger(&d, &["channel", "revoke", "no-such"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    ledger_ok(&d, &["channel", "revoke", &id]);
    let (status, body) = post(&url, &check);
    assert_eq!(status, 401, "revoked on the running server: {body}");
    assert_eq!(body["error"]["code"], "invalid_hook");
    stop(&mut child);
}
