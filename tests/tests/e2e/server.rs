//! `ledger serve` end to end: the real binary on a free loopback port, spoken to over
//! HTTP. Each test starts its own server on its own ledger.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledger_core::HashAlg;
use ledger_tests::{ledger_bin, ledger_ok, repo_root};
use serde_json::{Value, json};

const POLICE: &str = "974760673";
const KOMMUNE: &str = "964338531";
const OTHER: &str = "937884117";
/// A valid Norwegian national identity number (synthetic, the Skatteetaten test range).
const NATIONAL_ID: &str = "15076500565";

struct Server {
    child: Child,
    base: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// `ledger init` + `ledger serve --listen 127.0.0.1:0`, with `config` as ledger.toml.
    fn start(config: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ledger");
        ledger_ok(&dir, &["init", "--origin", "ledger.example/server-test"]);
        if !config.is_empty() {
            std::fs::write(dir.join("ledger.toml"), config).unwrap();
        }
        Self::spawn(dir, tmp)
    }

    fn spawn(dir: PathBuf, tmp: tempfile::TempDir) -> Server {
        let (child, base) = ledger_tests::serve(&dir);
        Server {
            child,
            base,
            dir,
            _tmp: tmp,
        }
    }

    /// SIGTERM, then a new server process on the same ledger (a new port).
    fn restart(&mut self) {
        self.stop();
        let tmp = tempfile::tempdir().unwrap();
        let fresh = Self::spawn(self.dir.clone(), tmp);
        let mut old = std::mem::replace(self, fresh);
        // The old process is gone; the new value keeps the ledger's directory alive.
        std::mem::swap(&mut self._tmp, &mut old._tmp);
    }

    fn token(&self, org: &str, scopes: &str) -> String {
        let v: Value = serde_json::from_str(&ledger_ok(
            &self.dir,
            &["--json", "token", "create", "--org", org, "--scope", scopes],
        ))
        .unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait: the graceful path.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.err")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ledger_tests::http_agent()
}

/// (status, body) of a request; `body` None is a GET.
fn call(url: &str, token: Option<&str>, content_type: &str, body: Option<&str>) -> (u16, String) {
    let a = agent();
    let resp = match body {
        None => {
            let mut r = a.get(url);
            if let Some(t) = token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            r.call()
        }
        Some(b) => {
            let mut r = a.post(url).header("Content-Type", content_type);
            if let Some(t) = token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            r.send(b)
        }
    }
    .expect("HTTP round trip");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap();
    (status, text)
}

fn get(s: &Server, path: &str, token: &str) -> (u16, Value) {
    let (st, body) = call(&s.url(path), Some(token), "", None);
    (
        st,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn post(s: &Server, path: &str, token: &str, body: &str) -> (u16, Value) {
    let (st, body) = call(&s.url(path), Some(token), "application/json", Some(body));
    (
        st,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn sent(id: &str, message: &str, from: &str, to: &str) -> Value {
    json!({
        "id": id, "type": "sent", "message": message, "at": "2023-05-01T10:00:00Z",
        "reporter": {"org": from, "system": "websak"},
        "from": from, "to": to, "channel": "altinn", "category": "bekymringsmelding",
        "content_digest": format!("sha256:{}", "ab".repeat(32)),
        "refs": {"altinn_correspondence": format!("corr-{message}")}
    })
}

/// Polls until the server's projection has seen `message` (it follows the log).
fn wait_for_message(s: &Server, token: &str, message: &str) -> Value {
    for _ in 0..100 {
        let (st, v) = get(
            s,
            &format!("/v1/messages/{message}?now=2023-05-20T00:00:00Z"),
            token,
        );
        if st == 200 {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{message} never became visible; log:\n{}", s.log());
}

/// Posts `sent` events for messages M0 … M{n−1} and waits until the last is visible.
fn post_messages(s: &Server, token: &str, n: usize) {
    for i in 0..n {
        let ev = sent(&format!("e{i}"), &format!("M{i}"), POLICE, KOMMUNE);
        let (st, v) = post(s, "/v1/events", token, &ev.to_string());
        assert_eq!(st, 200, "{v}");
    }
    wait_for_message(s, token, &format!("M{}", n - 1));
}

fn entries(s: &Server, token: &str) -> Vec<Value> {
    let (st, body) = call(
        &s.url("/v1/entries?from=0&limit=10000"),
        Some(token),
        "",
        None,
    );
    assert_eq!(st, 200, "{body}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn appends_questions_proofs_and_entries_over_http() {
    let mut s = Server::start("");
    let w = s.token(POLICE, "ledger:write,ledger:read");
    let audit = s.token(OTHER, "ledger:audit,ledger:regulator,ledger:admin");

    // One event, an array, and JSON Lines.
    let (st, v) = post(
        &s,
        "/v1/events",
        &w,
        &sent("e1", "M1", POLICE, KOMMUNE).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["receipts"][0]["seq"], 0);
    let batch = json!([
        sent("e2", "M2", POLICE, KOMMUNE),
        sent("e3", "M3", POLICE, KOMMUNE)
    ]);
    let (st, v) = post(&s, "/v1/events", &w, &batch.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["receipts"][1]["seq"], 2);
    let lines = format!(
        "{}\n{}\n",
        json!({"id": "e4", "type": "delivered", "message": "M1", "at": "2023-05-01T10:05:00Z",
               "reporter": {"org": POLICE, "system": "altinn"}, "from": POLICE, "to": KOMMUNE}),
        json!({"id": "e5", "type": "opened", "message": "M1", "at": "2023-05-02T10:05:00Z",
               "reporter": {"org": POLICE, "system": "altinn"}, "by_role": "saksbehandler",
               "from": POLICE, "to": KOMMUNE})
    );
    let (st, v) = call(
        &s.url("/v1/events"),
        Some(&w),
        "application/x-ndjson",
        Some(&lines),
    );
    assert_eq!(st, 200, "{v}");
    let last_seq = serde_json::from_str::<Value>(&v).unwrap()["receipts"][1]["seq"]
        .as_u64()
        .unwrap();

    // A retry gets the same receipt; the same id with other content is a conflict.
    let (st, v) = post(
        &s,
        "/v1/events",
        &w,
        &sent("e1", "M1", POLICE, KOMMUNE).to_string(),
    );
    assert_eq!(
        (st, v["receipts"][0]["duplicate"].clone()),
        (200, json!(true))
    );
    assert_eq!(v["receipts"][0]["seq"], 0);
    let (st, v) = post(
        &s,
        "/v1/events",
        &w,
        &sent("e1", "M9", POLICE, KOMMUNE).to_string(),
    );
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");

    // Bad input: 422 naming the index and field; nothing of the batch recorded.
    let mut bad = sent("e6", "M6", POLICE, KOMMUNE);
    bad["channel"] = json!("pigeon");
    let (st, v) = post(
        &s,
        "/v1/events",
        &w,
        &json!([sent("e7", "M7", POLICE, KOMMUNE), bad]).to_string(),
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["index"], 1);
    assert_eq!(v["error"]["details"][0]["field"], "channel");
    let (st, v) = post(&s, "/v1/events", &w, "{not json");
    assert_eq!(st, 400, "{v}");

    // The message, as now and as of before its open, once the answer reflects the
    // last receipt (min_seq: a read right after a receipt may otherwise come first).
    let (st, m) = get(
        &s,
        &format!("/v1/messages/M1?now=2023-05-20T00:00:00Z&min_seq={last_seq}"),
        &w,
    );
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["status"], "opened");
    assert_eq!(m["history"].as_array().unwrap().len(), 3);
    let (st, v) = get(&s, "/v1/messages/M1?as_of=2000-01-01T00:00:00Z", &w);
    assert_eq!(st, 404, "nothing was recorded by then: {v}");

    // Listing with a stable cursor: three messages, pages of two.
    let (st, p1) = get(&s, "/v1/messages?limit=2&now=2023-05-20T00:00:00Z", &w);
    assert_eq!(st, 200, "{p1}");
    assert_eq!(p1["total"], 3);
    let cursor = p1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, p2) = get(
        &s,
        &format!("/v1/messages?limit=2&cursor={cursor}&now=2023-05-20T00:00:00Z"),
        &w,
    );
    let ids: Vec<&str> = p1["rows"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["rows"].as_array().unwrap())
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(p2["next_cursor"].is_null());
    // M2 and M3 were never opened; M1 was, but its acknowledgement is overdue.
    let (st, v) = get(&s, "/v1/reports/at-risk?now=2023-05-20T00:00:00Z", &w);
    assert_eq!((st, v["count"].clone()), (200, json!(3)), "{v}");
    assert_eq!(v["rows"][0]["reason"], "ack_deadline_passed");
    let (st, v) = get(&s, "/v1/stats?by=to&now=2023-05-20T00:00:00Z", &w);
    assert_eq!(st, 200);
    assert_eq!(v["groups"][0]["total"], 3);
    let (st, _) = get(&s, "/v1/reports/nonsense", &w);
    assert_eq!(st, 404);

    // Checkpoints, proofs and entries, checked here against the ledger's own rules.
    let (st, note) = call(&s.url("/v1/checkpoint"), Some(&audit), "", None);
    assert_eq!(st, 200);
    assert!(note.starts_with("ledger.example/server-test\n"), "{note}");
    let (st, v) = get(&s, "/v1/checkpoints?from=0", &audit);
    assert_eq!(st, 200, "{v}");
    assert!(!v["checkpoints"].as_array().unwrap().is_empty());
    let size = v["checkpoints"][0]["size"].as_u64().unwrap();
    let (st, one) = get(&s, &format!("/v1/checkpoints?size={size}"), &audit);
    assert_eq!(
        (st, one["checkpoints"][0]["size"].as_u64()),
        (200, Some(size)),
        "{one}"
    );
    let (st, _) = get(&s, "/v1/checkpoints?size=999999", &audit);
    assert_eq!(st, 404);
    let rows = entries(&s, &audit);
    assert_eq!(rows.len(), 5);
    let (st, v) = get(&s, "/v1/proofs/inclusion?seq=1&size=5", &audit);
    assert_eq!(st, 200, "{v}");
    let leaf = HashAlg::Blake3.leaf(serde_json::to_string(&rows[1]).unwrap().as_bytes());
    assert_eq!(
        v["leaf_hash"],
        ledger_core::hash::to_hex(&leaf),
        "the proof is for the entry served"
    );
    let (st, v) = get(&s, "/v1/proofs/consistency?from=2&to=5", &audit);
    assert_eq!(st, 200, "{v}");
    assert!(!v["path"].as_array().unwrap().is_empty(), "{v}");

    // Operations.
    let (st, body) = call(&s.url("/healthz"), None, "", None);
    assert_eq!((st, body.as_str()), (200, "ok\n"));
    let (st, _) = call(&s.url("/readyz"), None, "", None);
    assert_eq!(st, 200);
    let (st, metrics) = call(&s.url("/metrics"), Some(&audit), "", None);
    assert_eq!(st, 200);
    assert!(
        metrics.contains("ledger_appended_events_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"conflict\""), "{metrics}");
    assert!(
        metrics.contains("ledger_append_commit_seconds_bucket"),
        "{metrics}"
    );

    s.stop();
    assert!(s.log().contains("stopped"), "{}", s.log());
    // The graceful stop left a ledger that verifies.
    ledger_ok(&s.dir, &["verify"]);
}

/// An ES256 JWT in Maskinporten's shape.
fn jwt(key: &str, claims: Value) -> String {
    let pem = std::fs::read(repo_root().join("tests/fixtures/jwt").join(key)).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("issuer-1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(org: &str, scope: &str, aud: &str, exp: u64) -> Value {
    json!({
        "iss": "https://test.maskinporten.no/", "aud": aud, "exp": exp, "iat": now(),
        "scope": scope, "client_id": "test-client",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{org}")}
    })
}

#[test]
fn every_refusal_has_its_status_and_records_nothing() {
    let jwks = repo_root().join("tests/fixtures/jwt/jwks.json");
    let s = Server::start(&format!(
        "[auth.jwt]\njwks_file = {jwks:?}\nissuer = \"https://test.maskinporten.no/\"\naudience = \"https://ledger.test/\"\n"
    ));
    let writer = s.token(POLICE, "ledger:write,ledger:read");
    let reader = s.token(KOMMUNE, "ledger:read");
    let outsider = s.token(OTHER, "ledger:read");
    let audit = s.token(OTHER, "ledger:audit");
    let ev = sent("e1", "M1", POLICE, KOMMUNE).to_string();

    let (st, v) = {
        let (st, b) = call(&s.url("/v1/events"), None, "application/json", Some(&ev));
        (st, b)
    };
    assert_eq!(st, 401, "no token: {v}");
    let (st, _) = post(&s, "/v1/events", "ldg_00000000_forged", &ev);
    assert_eq!(st, 401, "unknown static token");
    let aud = "https://ledger.test/";
    let expired = jwt(
        "issuer-es256.pem",
        claims(POLICE, "ledger:write", aud, now() - 3600),
    );
    let (st, v) = post(&s, "/v1/events", &expired, &ev);
    assert_eq!(st, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    let wrong_aud = jwt(
        "issuer-es256.pem",
        claims(POLICE, "ledger:write", "https://elsewhere/", now() + 600),
    );
    let (st, v) = post(&s, "/v1/events", &wrong_aud, &ev);
    assert_eq!(st, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("audience"),
        "{v}"
    );
    let forged = jwt(
        "stranger-es256.pem",
        claims(POLICE, "ledger:write", aud, now() + 600),
    );
    let (st, v) = post(&s, "/v1/events", &forged, &ev);
    assert_eq!(st, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{v}"
    );
    let read_only = jwt(
        "issuer-es256.pem",
        claims(POLICE, "ledger:read", aud, now() + 600),
    );
    let (st, v) = post(&s, "/v1/events", &read_only, &ev);
    assert_eq!(st, 403, "wrong scope: {v}");
    let (st, v) = post(&s, "/v1/events", &reader, &ev);
    assert_eq!(st, 403, "a reader cannot write: {v}");
    let other_org = sent("e1", "M1", KOMMUNE, POLICE).to_string();
    let (st, v) = post(&s, "/v1/events", &writer, &other_org);
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (403, json!("foreign_reporter")),
        "{v}"
    );
    let (st, _) = call(&s.url("/v1/entries"), Some(&audit), "", None);
    assert_eq!(st, 200);
    assert!(entries(&s, &audit).is_empty(), "nothing was recorded");

    // A valid JWT writes; the static reader of the recipient reads; an outsider does not.
    let good = jwt(
        "issuer-es256.pem",
        claims(POLICE, "ledger:write ledger:read", aud, now() + 600),
    );
    let (st, v) = post(&s, "/v1/events", &good, &ev);
    assert_eq!(st, 200, "{v}");
    wait_for_message(&s, &reader, "M1");
    let (st, v) = get(&s, "/v1/messages/M1", &outsider);
    assert_eq!(st, 404, "another org's message is not disclosed: {v}");
    let (_, v) = get(&s, "/v1/reports/open?now=2023-05-02T00:00:00Z", &outsider);
    assert_eq!(v["count"], 0, "{v}");
    let (st, _) = get(&s, "/v1/entries", &reader);
    assert_eq!(st, 403, "entries need ledger:audit");
    let (st, _) = call(&s.url("/metrics"), Some(&reader), "", None);
    assert_eq!(st, 403, "metrics need ledger:admin");

    // Limits: a batch over the limit is 413 with a JSON body.
    let big: Vec<Value> = (0..10_001)
        .map(|i| sent(&format!("b{i}"), &format!("B{i}"), POLICE, KOMMUNE))
        .collect();
    let (st, v) = post(
        &s,
        "/v1/events",
        &writer,
        &serde_json::to_string(&big).unwrap(),
    );
    assert_eq!(st, 413, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(entries(&s, &audit).len(), 1);
    // A revoked token stops working at once; `token list` shows it revoked.
    ledger_ok(
        &s.dir,
        &["token", "revoke", outsider.split('_').nth(1).unwrap()],
    );
    let (st, _) = get(&s, "/v1/messages/M1", &outsider);
    assert_eq!(st, 401, "revoked");
    assert!(ledger_ok(&s.dir, &["token", "list"]).contains("revoked"));
    // Tokens never reach the log.
    assert!(
        !s.log().contains(&writer) && !s.log().contains("ldg_"),
        "{}",
        s.log()
    );
}

#[test]
fn concurrent_retries_of_one_batch_record_it_once() {
    let s = Server::start("");
    let w = s.token(POLICE, "ledger:write");
    let audit = s.token(POLICE, "ledger:audit");
    let batch: Vec<Value> = (0..50)
        .map(|i| sent(&format!("r{i}"), &format!("R{i}"), POLICE, KOMMUNE))
        .collect();
    let body = serde_json::to_string(&batch).unwrap();
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(|| {
                    let (st, v) = post(&s, "/v1/events", &w, &body);
                    assert_eq!(st, 200, "{v}");
                    v
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let seqs = |v: &Value| -> Vec<(u64, String)> {
        v["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["seq"].as_u64().unwrap(),
                    r["hash"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    for a in &answers {
        assert_eq!(
            seqs(a),
            seqs(&answers[0]),
            "every retry gets the same receipts"
        );
    }
    let fresh: usize = answers
        .iter()
        .map(|a| {
            a["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["duplicate"] == false)
                .count()
        })
        .sum();
    assert_eq!(fresh, 50, "exactly one request appended each event");
    assert_eq!(entries(&s, &audit).len(), 50);
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        repo_root()
            .join("ledger-server/tests/fixtures/cloudevents")
            .join(name),
    )
    .unwrap()
}

#[test]
fn channel_events_are_mapped_and_personal_data_never_stored() {
    let mut s = Server::start("");
    let w = s.token(POLICE, "ledger:write,ledger:read");
    let audit = s.token(POLICE, "ledger:audit,ledger:regulator");
    // The sent event names the Altinn correspondence of the fixtures.
    let events: Value =
        serde_json::from_str(&fixture("altinn-correspondence-person-subject.json")).unwrap();
    let corr = events["resourceinstance"].as_str().unwrap().to_string();
    let mut m = sent("s1", "POL-1", POLICE, KOMMUNE);
    m["refs"] = json!({"altinn_correspondence": corr});
    let (st, v) = post(&s, "/v1/events", &w, &m.to_string());
    assert_eq!(st, 200, "{v}");
    wait_for_message(&s, &w, "POL-1");

    let body = fixture("altinn-correspondence-person-subject.json");
    assert!(
        body.contains(NATIONAL_ID),
        "the fixture carries a national id number"
    );
    let (st, v) = call(
        &s.url("/v1/cloudevents"),
        Some(&w),
        "application/cloudevents+json",
        Some(&body),
    );
    assert_eq!(st, 200, "{v}");
    assert!(!v.contains(NATIONAL_ID));
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(
        v["receipts"][0]["unmatched"], false,
        "found through the sent event's refs"
    );
    // The same channel event again is the same ledger event.
    let (_, again) = call(
        &s.url("/v1/cloudevents"),
        Some(&w),
        "application/cloudevents+json",
        Some(&body),
    );
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["receipts"][0]["duplicate"], true);

    // A batch of every Altinn type in the fixtures: all mapped or all refused.
    let (st, v) = call(
        &s.url("/v1/cloudevents"),
        Some(&w),
        "application/cloudevents-batch+json",
        Some(&fixture("altinn-correspondence-events.json")),
    );
    assert_eq!(st, 200, "{v}");
    // An unknown type is answered per item (ignored, with its name), and counted.
    let (st, v) = call(
        &s.url("/v1/cloudevents"),
        Some(&w),
        "application/cloudevents+json",
        Some(&fixture("altinn-unknown-type.json")),
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        v.contains("\"outcome\":\"ignored\"") && v.contains("unknown_type"),
        "{v}"
    );
    // eFormidling status records.
    let (st, v) = call(
        &s.url("/v1/channels/eformidling"),
        Some(&w),
        "application/json",
        Some(&fixture("eformidling-statuses.json")),
    );
    assert_eq!(st, 200, "{v}");
    assert!(!v.contains(NATIONAL_ID));

    let (_, history) = call(&s.url("/v1/messages/POL-1"), Some(&w), "", None);
    assert!(!history.contains(NATIONAL_ID));

    // A channel event for a correspondence no sent event names is recorded all the
    // same, under a synthetic message id, and reported as an anomaly.
    let mut stray: Value =
        serde_json::from_str(&fixture("altinn-correspondence-published.json")).unwrap();
    stray["id"] = json!("9b2f3c4d-0000-4000-8000-00000000beef");
    stray["resourceinstance"] = json!("0192ffff-ffff-7fff-bfff-ffffffffffff");
    let (st, v) = post(&s, "/v1/cloudevents", &w, &stray.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["receipts"][0]["unmatched"], true);
    let mut found = false;
    for _ in 0..100 {
        let (_, r) = get(
            &s,
            "/v1/reports/anomalies?kind=event_for_unknown_message",
            &audit,
        );
        if r["rows"].as_array().unwrap().iter().any(|a| {
            a["message"]
                .as_str()
                .is_some_and(|m| m.contains("0192ffff-ffff-7fff-bfff-ffffffffffff"))
        }) {
            found = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(found, "the unmatched channel event is reported");
    let admin = s.token(POLICE, "ledger:admin");
    let (_, metrics) = call(&s.url("/metrics"), Some(&admin), "", None);
    assert!(
        metrics.contains(
            "ledger_channel_events_total{channel=\"cloudevents\",outcome=\"unknown_type\"} 1"
        ),
        "{metrics}"
    );
    let all = entries(&s, &audit);
    assert!(
        all.iter().any(|e| e["event"]["type"] == "opened"),
        "receiverread became opened"
    );
    s.stop();
    // Nowhere in the store's files, nor in the server's log.
    for f in walk(&s.dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(NATIONAL_ID.len())
                .any(|w| w == NATIONAL_ID.as_bytes()),
            "{} holds the national id number",
            f.display()
        );
    }
    assert!(!s.log().contains(NATIONAL_ID));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Reads SSE events (event, id, data) until `n` have arrived.
fn sse(
    s: &Server,
    token: &str,
    last_event_id: Option<&str>,
    query: &str,
    n: usize,
) -> Vec<(String, String, Value)> {
    let a = agent();
    let mut r = a
        .get(&s.url(&format!("/v1/stream{query}")))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        r = r.header("Last-Event-ID", id);
    }
    let resp = r.call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let out = ledger_tests::read_sse(&mut reader, n);
    let _ = reader.get_mut().read(&mut [0u8; 0]);
    out
}

#[test]
fn the_stream_delivers_receipts_and_verdict_changes_and_resumes() {
    let s = Server::start("");
    let w = s.token(POLICE, "ledger:write,ledger:read");
    let outsider = s.token(OTHER, "ledger:read");
    post_messages(&s, &w, 3);
    // From the start of the log: three receipts, then (these messages are long past
    // their expiry by the server's clock) nothing more until something happens.
    let first = sse(&s, &w, None, "?from_seq=0", 2);
    assert_eq!(
        first.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["receipt", "receipt"]
    );
    assert_eq!(first[0].2["seq"], 0);
    // Resume after the second: the third receipt comes next, nothing repeated.
    let rest = sse(&s, &w, Some(&first[1].1), "", 1);
    assert_eq!(rest[0].0, "receipt");
    assert_eq!(rest[0].2["seq"], 2);
    // A verdict change: M0 opened.
    let opened = json!({"id": "o0", "type": "opened", "message": "M0", "at": "2023-05-02T10:00:00Z",
        "reporter": {"org": POLICE, "system": "altinn"}, "by_role": "saksbehandler",
        "from": POLICE, "to": KOMMUNE});
    let (st, _) = post(&s, "/v1/events", &w, &opened.to_string());
    assert_eq!(st, 200);
    let next = sse(&s, &w, Some(&rest[0].1), "", 2);
    assert_eq!(next[0].0, "receipt");
    assert_eq!(next[0].2["id"], "o0");
    assert_eq!(next[1].0, "verdict");
    assert_eq!(next[1].2["message"], "M0");
    // After a restart, receipts resume from the log; verdict changes of the old
    // process are gone, and the stream says so.
    let mut s = s;
    s.restart();
    let (st, _) = post(
        &s,
        "/v1/events",
        &w,
        &sent("late", "M9", POLICE, KOMMUNE).to_string(),
    );
    assert_eq!(st, 200);
    let after = sse(&s, &w, Some(&next[1].1), "", 2);
    assert_eq!(after[0].0, "gap", "{after:?}");
    assert_eq!(
        (after[1].0.as_str(), after[1].2["id"].clone()),
        ("receipt", json!("late"))
    );
    // An outsider's stream carries none of it.
    let (st, _) = call(
        &s.url("/v1/stream?from_seq=0"),
        Some("ldg_bad_token"),
        "",
        None,
    );
    assert_eq!(st, 401);
    let bad = agent()
        .get(&s.url("/v1/stream"))
        .header("Authorization", &format!("Bearer {outsider}"))
        .header("Last-Event-ID", "nonsense")
        .call()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

/// `ledger --server URL --token T …` runs the commands against the server.
fn remote(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(ledger_bin())
        .args(["--server", &s.base, "--token", token])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_asks_the_server_and_verifies_it_without_trusting_it() {
    let s = Server::start("");
    let w = s.token(POLICE, "ledger:write,ledger:read");
    let audit = s.token(OTHER, "ledger:audit,ledger:regulator");
    post_messages(&s, &w, 20);
    let ok = |args: &[&str], token: &str| {
        let out = remote(&s, token, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let h = ok(&["history", "M3"], &w);
    assert!(h.contains("sent") && h.contains("974760673/websak"), "{h}");
    let st: Value = serde_json::from_str(&ok(
        &["--json", "status", "M3", "--now", "2023-05-20T00:00:00Z"],
        &w,
    ))
    .unwrap();
    assert_eq!(st["evaluation"]["verdict"], "at_risk");
    let csv = ok(
        &[
            "report",
            "at-risk",
            "--now",
            "2023-05-20T00:00:00Z",
            "--format",
            "csv",
        ],
        &w,
    );
    assert_eq!(csv.lines().count(), 21, "a header and 20 rows: {csv}");
    assert!(ok(&["checkpoint"], &audit).starts_with("ledger.example/server-test\n"));
    let proof: Value =
        serde_json::from_str(&ok(&["prove", "inclusion", "--seq", "3"], &audit)).unwrap();
    assert_eq!(proof["seq"], 3);

    // Remote verify against the key the auditor holds.
    let key = std::fs::read_to_string(s.dir.join("verifier.key")).unwrap();
    let out = ok(&["verify", "--key", key.trim()], &audit);
    assert!(out.starts_with("OK"), "{out}");
    // Against another ledger's key, the signatures do not verify.
    let other = tempfile::tempdir().unwrap();
    ledger_ok(
        &other.path().join("l"),
        &["init", "--origin", "ledger.example/server-test"],
    );
    let wrong = std::fs::read_to_string(other.path().join("l/verifier.key")).unwrap();
    let out = remote(&s, &audit, &["verify", "--key", wrong.trim()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without the audit scope the server refuses, and the CLI says why.
    let out = remote(&s, &w, &["verify", "--insecure-no-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger:audit"));
}

#[test]
fn sigterm_drains_appends_in_flight() {
    let mut s = Server::start("");
    let w = s.token(POLICE, "ledger:write,ledger:read");
    // Clients write until the server goes away; every acknowledged event must be in
    // the log afterwards, and the log must verify.
    let acked: Vec<String> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|c| {
                let (s, w) = (&s, &w);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..100_000 {
                        let id = format!("d{c}-{i}");
                        let body = sent(&id, &format!("D{c}-{i}"), POLICE, KOMMUNE).to_string();
                        let a = agent();
                        let r = a
                            .post(&s.url("/v1/events"))
                            .header("Authorization", &format!("Bearer {w}"))
                            .header("Content-Type", "application/json")
                            .send(&body);
                        match r {
                            Ok(resp) if resp.status().as_u16() == 200 => acked.push(id),
                            _ => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(600));
        let _ = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    s.stop();
    assert!(
        acked.len() > 10,
        "the clients got going ({} acknowledged)",
        acked.len()
    );
    ledger_ok(&s.dir, &["verify"]);
    let recorded = ledger_tests::recorded_event_ids(&s.dir);
    for id in &acked {
        assert!(
            recorded.contains(id),
            "acknowledged {id} is missing after the stop"
        );
    }
}

#[test]
fn tls_when_a_certificate_is_configured() {
    let tls = repo_root().join("tests/fixtures/tls");
    let s = Server::start(&format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        tls.join("cert.pem"),
        tls.join("key.pem")
    ));
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let audit = s.token(POLICE, "ledger:audit");
    // The CLI trusts the private CA it is given, and only then.
    let out = Command::new(ledger_bin())
        .args(["--server", &s.base, "--token", &audit, "--ca-cert"])
        .arg(tls.join("ca.pem"))
        .arg("checkpoint")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ledger.example/server-test\n"));
    let out = Command::new(ledger_bin())
        .args(["--server", &s.base, "--token", &audit, "checkpoint"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown CA is refused");
    // Plain HTTP to the TLS port gets no answer.
    let plain = s.base.replace("https://", "http://");
    let r = agent().get(&format!("{plain}/healthz")).call();
    assert!(r.is_err() || r.unwrap().status().as_u16() != 200);
}

#[test]
fn plain_http_off_loopback_and_bad_tls_files_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    ledger_ok(&dir, &["init", "--origin", "ledger.example/server-test"]);
    let out = Command::new(ledger_bin())
        .arg("--dir")
        .arg(&dir)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    std::fs::write(
        dir.join("ledger.toml"),
        "[server]\ntls_cert = \"missing.pem\"\ntls_key = \"missing-key.pem\"\n",
    )
    .unwrap();
    let out = Command::new(ledger_bin())
        .arg("--dir")
        .arg(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn jwt_scope_names_are_the_ones_configured() {
    // Real Maskinporten scopes carry their owner's prefix.
    let jwks = repo_root().join("tests/fixtures/jwt/jwks.json");
    let s = Server::start(&format!(
        "[auth.jwt]\njwks_file = {jwks:?}\nissuer = \"https://test.maskinporten.no/\"\naudience = \"https://ledger.test/\"\n\
         [auth.jwt.scopes]\nwrite = \"digdir:meldingslogg.skriv\"\nread = [\"digdir:meldingslogg.les\", \"digdir:meldingslogg.skriv\"]\n"
    ));
    let aud = "https://ledger.test/";
    let ev = sent("e1", "M1", POLICE, KOMMUNE).to_string();
    let token = |scope: &str| jwt("issuer-es256.pem", claims(POLICE, scope, aud, now() + 600));
    // The built-in names no longer grant anything once names are configured.
    let (st, v) = post(&s, "/v1/events", &token("ledger:write"), &ev);
    assert_eq!(st, 403, "{v}");
    let (st, v) = post(&s, "/v1/events", &token("digdir:meldingslogg.skriv"), &ev);
    assert_eq!(st, 200, "{v}");
    // One name may grant two scopes.
    let both = token("digdir:meldingslogg.skriv");
    wait_for_message(&s, &both, "M1");
    let (st, _) = get(&s, "/v1/messages/M1", &token("digdir:meldingslogg.les"));
    assert_eq!(st, 200);
    let (st, _) = get(&s, "/v1/messages/M1", &token("ledger:read"));
    assert_eq!(st, 403);
}

/// The load generator BENCHMARKS.md quotes runs each of its modes against a real
/// server without a failed request: appends, reads of messages, and receipts.
#[test]
fn the_load_generator_runs_every_mode_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    ledger_ok(&dir, &["init", "--origin", "ledger.example/load"]);
    let token = ledger_tests::token(&dir, "974760673", "ledger:write,ledger:read");
    let (mut server, base) = ledger_tests::serve(&dir);
    for mode in [None, Some("--read"), Some("--receipts")] {
        let mut args = vec![
            "--json",
            "--server",
            &base,
            "--token",
            &token,
            "bench-load",
            "--org",
            "974760673",
            "--clients",
            "4",
            "--seconds",
            "1",
        ];
        args.extend(mode);
        let out = ledger_tests::ledger(tmp.path(), &args);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {v}");
        assert_eq!(v["errors"], 0, "{mode:?}: {v}");
        assert!(v["requests"].as_u64().unwrap() > 0, "{mode:?}: {v}");
    }
    ledger_tests::stop(&mut server);
}
