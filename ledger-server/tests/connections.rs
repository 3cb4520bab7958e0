//! Connections are bounded in time and number (issue 11): clients that send their
//! headers slowly, or sit idle, are closed, on the plain and the TLS path; at the
//! connection cap newcomers wait for a free slot instead of failing.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ledger_server::Scope;

/// A request line and headers that never end.
const PARTIAL: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

/// Reads until the server closes the connection; how long that took, or None if it
/// was still open after `wait`.
fn closed_within(stream: &mut impl Read, wait: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if t.elapsed() >= wait {
                    return None;
                }
            }
            // Reset, aborted, TLS close without notify: closed by the server.
            Err(_) => return Some(t.elapsed()),
        }
        if t.elapsed() >= wait {
            return None;
        }
    }
}

fn slow_client(s: &TestServer) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.write_all(PARTIAL).unwrap();
    c
}

#[test]
fn connections_that_send_headers_slowly_are_closed_and_others_still_served() {
    let s = TestServer::start(
        "[server]\nheader_read_timeout_seconds = 8\nidle_timeout_seconds = 30\nmax_connections = 2000\n",
    );
    let reader = s.token(POLICE, &[Scope::Read]);
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..500).map(|_| slow_client(&s)).collect();
    // While they hang, a normal client is answered.
    let r = get(&s, "/v1/stats", &reader);
    assert_eq!(r.status, 200, "{}", r.text);
    // The timeout leaves room for 500 connects on a loaded 2-core CI machine (3 s
    // was once not enough); what counts is that the answer came before it.
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "answered while the slow connections were still open ({:?})",
        opened.elapsed()
    );
    // Every slow connection is closed by the server once the timeout passes.
    for (i, c) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(25).saturating_sub(opened.elapsed());
        assert!(
            closed_within(c, left).is_some(),
            "slow connection {i} still open {:?} after it started",
            opened.elapsed()
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(7900),
        "closed by the timeout, not at once ({:?})",
        opened.elapsed()
    );
    // And the server still answers.
    let r = get(&s, "/v1/stats", &reader);
    assert_eq!(r.status, 200, "{}", r.text);
    let admin = s.token(POLICE, &[Scope::Admin]);
    let want = "ledger_connections_closed_total{reason=\"header_timeout\"} 500";
    let mut m = String::new();
    for _ in 0..40 {
        m = get(&s, "/metrics", &admin).text;
        if m.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(m.contains(want), "{m}");
}

#[test]
fn at_the_connection_cap_newcomers_wait_for_a_free_slot() {
    let s = TestServer::start(
        "[server]\nheader_read_timeout_seconds = 1\nidle_timeout_seconds = 30\nmax_connections = 4\n",
    );
    let reader = s.token(POLICE, &[Scope::Read]);
    let _slow: Vec<TcpStream> = (0..4).map(|_| slow_client(&s)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // Over the cap: not refused, but served once a slow connection is closed.
    let t = Instant::now();
    let r = get(&s, "/v1/stats", &reader);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "the fifth connection was served at once ({:?}): no cap",
        t.elapsed()
    );
}

#[test]
fn idle_kept_alive_connections_are_closed() {
    let s =
        TestServer::start("[server]\nheader_read_timeout_seconds = 30\nidle_timeout_seconds = 1\n");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        match c.read(&mut buf) {
            Ok(0) => panic!("closed before answering"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let idle = closed_within(&mut c, Duration::from_secs(5));
    let idle = idle.expect("the idle connection is still open after 5 s");
    assert!(
        idle >= Duration::from_millis(800),
        "closed too early: {idle:?}"
    );
}

fn tls_client(s: &TestServer) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(repo_root().join("tests/fixtures/tls/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn on_tls_slow_handshakes_and_slow_headers_are_closed_too() {
    let tls = repo_root().join("tests/fixtures/tls");
    let s = TestServer::start(&format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\nheader_read_timeout_seconds = 1\nidle_timeout_seconds = 30\n",
        tls.join("cert.pem"),
        tls.join("key.pem")
    ));
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let opened = Instant::now();
    // No handshake at all.
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            c
        })
        .collect();
    // A handshake, then headers that never end.
    let mut slow: Vec<_> = (0..20)
        .map(|_| {
            let mut c = tls_client(&s);
            c.write_all(PARTIAL).unwrap();
            c.flush().unwrap();
            c
        })
        .collect();
    // Meanwhile a whole request is answered.
    let mut ok = tls_client(&s);
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match ok.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (i, c) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(10).saturating_sub(opened.elapsed());
        assert!(
            closed_within(c, left).is_some(),
            "connection {i} without a handshake still open"
        );
    }
    for (i, c) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(10).saturating_sub(opened.elapsed());
        assert!(
            closed_within(c, left).is_some(),
            "TLS connection {i} with slow headers still open"
        );
    }
}

#[test]
fn a_quiet_stream_is_not_taken_for_an_idle_connection() {
    let s = TestServer::start("[server]\nidle_timeout_seconds = 1\n");
    let reader = s.token(POLICE, &[Scope::Read]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        c,
        "GET /v1/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {reader}\r\n\r\n"
    )
    .unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while t.elapsed() < Duration::from_millis(3500) {
        match c.read(&mut buf) {
            Ok(0) => panic!(
                "the stream was closed after {:?}: {}",
                t.elapsed(),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e} after {:?}", t.elapsed()),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.matches("\n:").count() >= 2,
        "keep-alive comments: {text}"
    );
}
