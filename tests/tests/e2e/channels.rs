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

/// A new ledger served, with a hook for `channel` made by the CLI: (directory, the
/// server, its base URL, the hook's address).
fn served_with_hook(
    root: &std::path::Path,
    channel: &str,
) -> (std::path::PathBuf, std::process::Child, String, String) {
    let d = root.join("data");
    ledger_ok(
        &d,
        &["init", "--origin", &format!("ledger.example/{channel}")],
    );
    let (child, base) = serve(&d);
    let hook = ledger_ok(
        &d,
        &["channel", "add", channel, "--org", POLICE, "--url", &base],
    )
    .trim()
    .to_string();
    (d, child, base, hook)
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

/// A stand-in integrasjonspunkt: `GET /api/statuses?page&size&sort=id,asc` over a
/// list that grows, as Spring pages it (`content`, `last`); the next `down` requests
/// are answered 503.
fn fake_integrasjonspunkt(
    records: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use axum::response::IntoResponse as _;
    serve_stand_in(axum::Router::new().route(
        "/api/statuses",
        axum::routing::get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                let (records, down) = (records.clone(), down.clone());
                async move {
                    use std::sync::atomic::Ordering;
                    if down
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let page: usize = q.get("page").unwrap().parse().unwrap();
                    let size: usize = q.get("size").unwrap().parse().unwrap();
                    assert_eq!(q.get("sort").map(String::as_str), Some("id,asc"));
                    let all = records.lock().unwrap().clone();
                    let content: Vec<Value> =
                        all.iter().skip(page * size).take(size).cloned().collect();
                    let last = (page + 1) * size >= all.len();
                    axum::Json(serde_json::json!({
                        "content": content, "last": last, "number": page, "size": size
                    }))
                    .into_response()
                }
            },
        ),
    ))
}

/// A fixture of ledger-server's real-shaped channel payloads, parsed.
fn fixture(name: &str) -> Vec<Value> {
    let path = ledger_tests::repo_root()
        .join("ledger-server/tests/fixtures/cloudevents")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Serves `app` on 127.0.0.1 from a thread of its own; its base URL.
fn serve_stand_in(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// eFormidling's webhook never retries a failed push: `ledger channel poll` fetches
/// the integrasjonspunkt's statuses instead, posts them through the hook, and resumes
/// after the last one the ledger answered.
#[test]
fn the_integrasjonspunkt_poller_posts_every_status_once_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, mut child, base, hook) = served_with_hook(tmp.path(), "eformidling");
    let fixture: Vec<Value> = fixture("eformidling-statuses.json");
    let records = std::sync::Arc::new(std::sync::Mutex::new(fixture[..7].to_vec()));
    let down = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ip = fake_integrasjonspunkt(records.clone(), down.clone());
    let state = tmp.path().join("efm-position.json");
    let poll = |expect: u64| {
        let v = ledger_json(
            &d,
            &[
                "--json",
                "channel",
                "poll",
                "eformidling",
                "--from",
                &ip,
                "--to",
                &hook,
                "--state",
                state.to_str().unwrap(),
                "--page-size",
                "3",
            ],
        );
        assert_eq!(v["posted"], expect, "{v}");
        v
    };
    // Seven statuses over three pages; then nothing new; then the rest.
    poll(7);
    poll(0);
    records.lock().unwrap().extend(fixture[7..].iter().cloned());
    let v = poll((fixture.len() - 7) as u64);
    assert_eq!(
        v["last_id"],
        fixture
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .max()
            .unwrap()
    );
    // Each status is in the ledger once.
    let audit = ledger_tests::token(&d, POLICE, "ledger:audit");
    let resp = http_agent()
        .get(format!("{base}/v1/entries?from=0&limit=1000"))
        .header("Authorization", &format!("Bearer {audit}"))
        .call()
        .unwrap();
    let text = resp.into_body().read_to_string().unwrap();
    assert_eq!(text.lines().count(), fixture.len(), "{text}");
    // A new status and a wrong address: said plainly, the position stays, and the
    // next poll to the right address posts it.
    let mut next = fixture[0].clone();
    let max = fixture
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .max()
        .unwrap();
    next["id"] = serde_json::json!(max + 1);
    next["status"] = serde_json::json!("LEST");
    records.lock().unwrap().push(next);
    let before = std::fs::read_to_string(&state).unwrap();
    let out = ledger(
        &d,
        &[
            "channel",
            "poll",
            "eformidling",
            "--from",
            &ip,
            "--to",
            &format!("{base}/v1/hooks/ldg_00000000_nope"),
            "--state",
            state.to_str().unwrap(),
            "--page-size",
            "3",
        ],
    );
    let err = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), before);
    // Following, with the hook's address in a file (kept out of `ps`): the
    // integrasjonspunkt is away for the first round, which is said and tried again,
    // and the status is posted on the next.
    down.store(1, std::sync::atomic::Ordering::SeqCst);
    let hook_file = tmp.path().join("hook.url");
    std::fs::write(&hook_file, format!("{hook}\n")).unwrap();
    let mut follower = std::process::Command::new(ledger_tests::ledger_bin())
        .args([
            "--dir",
            d.to_str().unwrap(),
            "--json",
            "channel",
            "poll",
            "eformidling",
        ])
        .args(["--from", &ip, "--to", &format!("@{}", hook_file.display())])
        .args(["--state", state.to_str().unwrap(), "--page-size", "3"])
        .args(["--follow", "--interval", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first round's report (the one after the failed round).
    let v: Value = serde_json::Deserializer::from_reader(follower.stdout.take().unwrap())
        .into_iter::<Value>()
        .next()
        .expect("a round reported")
        .unwrap();
    stop(&mut follower);
    assert_eq!(v["posted"], 1, "{v}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("HTTP 503") && err.contains("trying again"),
        "{err}"
    );
    poll(0);
    stop(&mut child);
}

/// Altinn Events' query API as a backstop: `ledger channel poll altinn` fetches the
/// resource's events after the last one the ledger answered, with the Altinn token,
/// and posts them through the hook; a second run goes on from there.
#[test]
fn the_altinn_poller_resumes_after_the_last_event_the_ledger_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, mut child, _base, hook) = served_with_hook(tmp.path(), "altinn");
    let events: Vec<Value> = fixture("altinn-correspondence-events.json");
    let shown = std::sync::Arc::new(std::sync::Mutex::new(events[..5].to_vec()));
    let served = shown.clone();
    let altinn = serve_stand_in(axum::Router::new().route(
        "/events/api/v1/events",
        axum::routing::get(
            move |headers: axum::http::HeaderMap,
                  q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                let served = served.clone();
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer altinn-test-token")
                    {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            axum::Json(Value::Null),
                        );
                    }
                    assert_eq!(
                        q.get("resource").map(String::as_str),
                        Some("urn:altinn:resource:politiet-bekymringsmelding-barnevern")
                    );
                    let all = served.lock().unwrap().clone();
                    let after = q.get("after").cloned().unwrap_or_default();
                    let start = all
                        .iter()
                        .position(|e| e["id"] == after.as_str())
                        .map_or(0, |i| i + 1);
                    let page: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
                    (axum::http::StatusCode::OK, axum::Json(Value::Array(page)))
                }
            },
        ),
    ));
    let state = tmp.path().join("altinn-position.json");
    let token_file = tmp.path().join("altinn.token");
    std::fs::write(&token_file, "altinn-test-token\n").unwrap();
    let poll = |expect: u64| {
        let v = ledger_json(
            &d,
            &[
                "--json",
                "channel",
                "poll",
                "altinn",
                "--from",
                &altinn,
                "--resource",
                "urn:altinn:resource:politiet-bekymringsmelding-barnevern",
                "--altinn-token",
                &format!("@{}", token_file.display()),
                "--to",
                &hook,
                "--state",
                state.to_str().unwrap(),
            ],
        );
        assert_eq!(v["posted"], expect, "{v}");
        v
    };
    let v = poll(5);
    assert_eq!(v["after"], events[4]["id"]);
    poll(0);
    shown.lock().unwrap().extend(events[5..8].iter().cloned());
    let v = poll(3);
    assert_eq!(v["after"], events[7]["id"]);
    stop(&mut child);
}
