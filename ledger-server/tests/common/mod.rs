//! A `ledger serve` in the test process: a fresh ledger, `ledger.toml` as given, the
//! server on a free loopback port in a runtime of its own, and tokens for it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use ledger_core::{FileStore, HashAlg, InitOptions};
use ledger_server::tokens::TokenStore;
use ledger_server::{Scope, ServerConfig};
use serde_json::{Value, json};

pub const POLICE: &str = "974760673";
pub const KOMMUNE: &str = "964338531";

pub struct TestServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _tmp: tempfile::TempDir,
}

impl TestServer {
    /// A new ledger served with `toml` as its `ledger.toml` (paths relative to the
    /// repository's root are fine: they are made absolute by the caller).
    pub fn start(toml: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ledger");
        FileStore::init(
            &dir,
            &InitOptions {
                origin: "ledger.example/server-it".into(),
                hash: HashAlg::Blake3,
            },
        )
        .unwrap();
        std::fs::write(dir.join("ledger.toml"), toml).unwrap();
        let mut config = ServerConfig::load(&dir, None).unwrap();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_dir = dir.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(ledger_server::serve(
                serve_dir,
                config,
                async move {
                    let _ = stopped.await;
                },
                move |url| {
                    let _ = url_tx.send(url);
                },
            ))
            .map_err(|e| e.to_string())
        });
        let base = match url_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => panic!("the server did not start: {:?}", thread.join()),
        };
        let addr = base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .parse()
            .unwrap();
        TestServer {
            base,
            addr,
            dir,
            stop: Some(stop),
            thread: Some(thread),
            _tmp: tmp,
        }
    }

    pub fn token(&self, org: &str, scopes: &[Scope]) -> String {
        let mut t = TokenStore::load(&self.dir.join("tokens.json")).unwrap();
        t.create(org, scopes, None).unwrap().1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server (graceful) and waits for it.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response: status, headers we look at, and the body as JSON (or a string).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    into_reply(resp.expect("HTTP round trip"))
}

/// A response, read whole.
pub fn into_reply(resp: ureq::http::Response<ureq::Body>) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = resp.into_body().read_to_string().unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text.clone())),
        text,
    }
}

pub fn get(s: &TestServer, path: &str, token: &str) -> Reply {
    reply(
        agent()
            .get(&s.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    )
}

pub fn post(s: &TestServer, path: &str, token: &str, content_type: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(&s.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body),
    )
}

/// Posts one event (or a batch, as a JSON array) to `POST /v1/events`.
pub fn post_event(s: &TestServer, token: &str, event: &Value) -> Reply {
    post(
        s,
        "/v1/events",
        token,
        "application/json",
        &event.to_string(),
    )
}

pub fn sent(id: &str, message: &str) -> Value {
    json!({
        "id": id, "type": "sent", "message": message, "at": "2023-05-01T10:00:00Z",
        "reporter": {"org": POLICE, "system": "websak"},
        "from": POLICE, "to": KOMMUNE, "channel": "altinn", "category": "bekymringsmelding",
        "content_digest": format!("sha256:{}", "ab".repeat(32)),
        "refs": {"altinn_correspondence": format!("corr-{message}")}
    })
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cloudevents")
            .join(name),
    )
    .unwrap()
}

pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[allow(unused_imports)] // not every test binary reads streams
pub use ledger_tests::read_sse;

/// A webhook receiver on 127.0.0.1 that answers 500 to its first `fail_first`
/// requests, then 200, keeping every body it was sent.
pub struct Receiver {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[allow(dead_code)] // not every test binary receives alerts
pub fn receiver(fail_first: usize) -> Receiver {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/alerts",
                axum::routing::post(move |body: String| {
                    let kept = kept.clone();
                    async move {
                        let mut b = kept.lock().unwrap();
                        b.push(body);
                        if b.len() <= fail_first {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            axum::http::StatusCode::OK
                        }
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Receiver {
        url: format!("http://{addr}/alerts"),
        bodies,
    }
}

/// Every entry of the log, as `GET /v1/entries` gives them (`token` with audit).
#[allow(dead_code)] // not every test binary reads entries
pub fn entries(s: &TestServer, token: &str) -> Vec<serde_json::Value> {
    let r = get(s, "/v1/entries?from=0&limit=10000", token);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A stand-in mail server on loopback speaking just enough SMTP (RFC 5321) for one
/// client: each message's envelope recipients and data are kept; the first
/// `fail_first` messages are answered 451 (try again later) after their data, and a
/// recipient `nobody@…` is refused for good (550), each time it is named.
/// A message's envelope recipients, and its data as sent.
pub type Mail = (Vec<String>, String);

#[allow(dead_code)] // not every test binary receives alerts
pub struct SmtpReceiver {
    pub url: String,
    /// (RCPT TO addresses, the message as sent) of every message accepted.
    pub mails: std::sync::Arc<std::sync::Mutex<Vec<Mail>>>,
    /// Messages refused with 451.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Times a `nobody@` recipient was named (and refused with 550).
    pub nobody: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[allow(dead_code)] // not every test binary receives alerts
pub fn smtp_receiver(fail_first: usize) -> SmtpReceiver {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let nobody_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (kept, count, nobody) = (mails.clone(), refused.clone(), nobody_count.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut out) = conn else { return };
            let mut input = BufReader::new(out.try_clone().unwrap());
            let mut say = |s: &str| out.write_all(s.as_bytes()).is_ok();
            say("220 receiver.test ESMTP\r\n");
            let mut rcpt = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let ok = match verb.as_str() {
                    "EHLO" | "HELO" => say("250 receiver.test\r\n"),
                    "MAIL" => {
                        rcpt.clear();
                        say("250 OK\r\n")
                    }
                    "RCPT" => {
                        let a = line.trim_end();
                        let a = a[a.find('<').unwrap_or(0)..].trim_matches(['<', '>']);
                        if a.starts_with("nobody@") {
                            nobody.fetch_add(1, Ordering::SeqCst);
                            say("550 no such user here\r\n")
                        } else {
                            rcpt.push(a.to_string());
                            say("250 OK\r\n")
                        }
                    }
                    "DATA" => {
                        say("354 go on\r\n");
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if input.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        if count.load(Ordering::SeqCst) < fail_first {
                            count.fetch_add(1, Ordering::SeqCst);
                            say("451 try again later\r\n")
                        } else {
                            kept.lock().unwrap().push((rcpt.clone(), data));
                            say("250 queued\r\n")
                        }
                    }
                    "QUIT" => {
                        say("221 bye\r\n");
                        break;
                    }
                    _ => say("250 OK\r\n"),
                };
                if !ok {
                    break;
                }
            }
        }
    });
    SmtpReceiver {
        url: format!("smtp://{addr}"),
        mails,
        refused,
        nobody: nobody_count,
    }
}
