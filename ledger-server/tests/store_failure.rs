//! A write that fails (here: the file-size limit, as a full disk would) is answered
//! 503 with Retry-After for the failing request as for those after it, and the body
//! says nothing of the failure's particulars (issue 11).
//!
//! Its own test binary: it lowers the file-size limit of the whole process.

mod common;

use common::*;
use ledger_server::Scope;
use serde_json::Value;

#[test]
fn a_failed_write_is_503_with_retry_after_for_it_and_the_requests_after_it() {
    // A write past RLIMIT_FSIZE then fails with EFBIG instead of killing the process.
    // SAFETY: setting a signal's disposition to ignore touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let alerts = receiver(0);
    let s = TestServer::start(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nretry_initial_ms = 50\n",
        alerts.url
    ));
    let w = s.token(POLICE, &[Scope::Write, Scope::Read]);
    let segment = std::fs::read_dir(s.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("a segment");
    let size = std::fs::metadata(&segment).unwrap().len();
    let _limit = FileSizeLimit::set(size + 256);
    let batch: Vec<Value> = (0..100)
        .map(|i| sent(&format!("e{i}"), &format!("M{i}")))
        .collect();
    let body = serde_json::to_string(&batch).unwrap();
    for attempt in ["the failing request", "a request after it"] {
        let r = post(&s, "/v1/events", &w, "application/json", &body);
        assert_eq!(r.status, 503, "{attempt}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "unavailable", "{attempt}");
        let after: u64 = r
            .header("retry-after")
            .unwrap_or_else(|| panic!("{attempt}: no Retry-After: {:?}", r.headers))
            .parse()
            .unwrap();
        assert!(after >= 1);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("retry"), "{attempt}: {message}");
        for leak in [".seg", "File too large", "/log/", s.dir.to_str().unwrap()] {
            assert!(
                !r.text.contains(leak),
                "{attempt}: the body shows {leak:?}: {}",
                r.text
            );
        }
    }
    let ready = agent().get(&s.url("/readyz")).call().unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "not ready after a failed write"
    );
    // The operator hears of it.
    let mut got = Vec::new();
    for _ in 0..100 {
        got = alerts.bodies.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("store_stopped")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        got.iter().any(|b| b.contains("\"kind\":\"store_stopped\"")),
        "{got:?}"
    );
}

/// The process's file-size limit, lowered while it lives. Restored on drop (also when
/// the test fails), before the test harness writes its report: its output may be a
/// file larger than the limit.
struct FileSizeLimit(libc::rlimit);

impl FileSizeLimit {
    fn set(bytes: u64) -> FileSizeLimit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: getrlimit and setrlimit read and write structs we own.
        unsafe {
            assert_eq!(
                libc::getrlimit(libc::RLIMIT_FSIZE, &mut old),
                0,
                "getrlimit"
            );
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
        }
        FileSizeLimit(old)
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_FSIZE, &self.0);
        }
    }
}
