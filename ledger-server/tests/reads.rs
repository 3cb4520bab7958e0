//! What a read reflects, and how to wait for a receipt (issue 11); the stream's
//! bounds: stream clients and replays from the log are capped, and a replay delivers
//! every receipt in order.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ledger_server::Scope;
use serde_json::Value;

fn covered(r: &Reply) -> u64 {
    r.header("ledger-covered")
        .unwrap_or_else(|| panic!("no Ledger-Covered header: {:?}", r.headers))
        .parse()
        .unwrap()
}

#[test]
fn a_read_with_min_seq_reflects_the_receipt() {
    let s = TestServer::start("[server]\nrequest_timeout_seconds = 4\n");
    let w = s.token(POLICE, &[Scope::Write, Scope::Read]);
    for i in 0..40 {
        let m = format!("M{i}");
        let r = post_event(&s, &w, &sent(&format!("e{i}"), &m));
        assert_eq!(r.status, 200, "{}", r.text);
        let seq = r.body["receipts"][0]["seq"].as_u64().unwrap();
        // Right after the receipt, with min_seq: the message is there.
        let r = get(
            &s,
            &format!("/v1/messages/{m}?min_seq={seq}&now=2023-05-02T00:00:00Z"),
            &w,
        );
        assert_eq!(r.status, 200, "{m} at seq {seq}: {}", r.text);
        assert!(covered(&r) > seq, "{:?}", r.headers);
        assert_eq!(r.body["covered"].as_u64(), Some(covered(&r)));
        let r = get(
            &s,
            &format!("/v1/messages?min_seq={seq}&now=2023-05-02T00:00:00Z"),
            &w,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["total"], i + 1, "every message so far is listed");
        assert!(covered(&r) > seq);
        let r = get(
            &s,
            &format!("/v1/stats?min_seq={seq}&now=2023-05-02T00:00:00Z"),
            &w,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["groups"][0]["total"], i + 1, "{}", r.body);
        let r = get(
            &s,
            &format!("/v1/reports/open?min_seq={seq}&now=2023-05-02T00:00:00Z"),
            &w,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["count"], i + 1, "{}", r.body);
        assert!(covered(&r) > seq);
    }
    // Every question says what it reflects, asked for or not.
    let r = get(&s, "/v1/stats", &w);
    assert_eq!(covered(&r), r.body["covered"].as_u64().unwrap());
    // A seq the log does not hold: 400 at once (no request is held waiting for it).
    let t = Instant::now();
    let r = get(&s, "/v1/stats?min_seq=1000000", &w);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "out_of_range");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let r = get(&s, "/v1/stats?min_seq=9223372036854775808", &w);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = get(&s, "/v1/stats?min_seq=x", &w);
    assert_eq!(r.status, 400, "{}", r.text);
}

/// Opens `GET /v1/stream?from_seq=0` on a socket with a tiny receive buffer and reads
/// only the status line: the server is left writing into a full socket, replaying.
fn stalled_replay(s: &TestServer, token: &str) -> TcpStream {
    use std::os::fd::AsRawFd;
    let mut c = TcpStream::connect(s.addr).unwrap();
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt reads `size` (a c_int we own) for the socket we own.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    write!(
        c,
        "GET /v1/stream?from_seq=0 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    c
}

fn stream(s: &TestServer, token: &str, query: &str) -> Result<impl std::io::BufRead, Reply> {
    let resp = agent()
        .get(&s.url(&format!("/v1/stream{query}")))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", "text/event-stream")
        .call()
        .unwrap();
    if resp.status().as_u16() != 200 {
        return Err(into_reply(resp));
    }
    Ok(BufReader::new(resp.into_body().into_reader()))
}

#[test]
fn streams_and_replays_are_capped_and_a_replay_delivers_every_receipt_in_order() {
    let s = TestServer::start("[server]\nmax_stream_clients = 3\nmax_replaying_streams = 1\n");
    let w = s.token(POLICE, &[Scope::Write, Scope::Read]);
    const N: u64 = 30_000;
    for b in 0..N / 5000 {
        let batch: Vec<Value> = (b * 5000..(b + 1) * 5000)
            .map(|i| sent(&format!("e{i}"), &format!("M{i}")))
            .collect();
        let r = post_event(&s, &w, &serde_json::json!(batch));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = get(&s, &format!("/v1/stats?min_seq={}", N - 1), &w);
    assert_eq!(r.status, 200, "{}", r.text);

    // One replay runs; a second is refused while it does.
    let replaying = stalled_replay(&s, &w);
    let refused = stream(&s, &w, "?from_seq=0")
        .err()
        .expect("a second replay");
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "too_many_replays");
    assert!(refused.header("retry-after").is_some());
    // Live streams (from the newest entry) are no replay: up to the client cap.
    let live1 = stream(&s, &w, "").ok().expect("a live stream");
    let live2 = stream(&s, &w, "").ok().expect("a second live stream");
    let over = stream(&s, &w, "").err().expect("a fourth stream");
    assert_eq!(over.status, 503, "{}", over.text);
    assert_eq!(over.body["error"]["code"], "too_many_streams");
    assert!(over.header("retry-after").is_some());

    // Once the first replay's client goes, a replay from 0 delivers every receipt, in order.
    drop(replaying);
    let t = Instant::now();
    let mut reader = loop {
        match stream(&s, &w, "?from_seq=0") {
            Ok(r) => break r,
            Err(r) if r.status == 503 && t.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(r) => panic!("{} {}", r.status, r.text),
        }
    };
    let mut next = 0u64;
    while next < N {
        let got = read_sse(&mut reader, 1);
        assert_eq!(got.len(), 1, "the stream ended at seq {next}");
        let (event, id, data) = &got[0];
        if event != "receipt" {
            continue;
        }
        assert_eq!(data["seq"].as_u64(), Some(next), "{data}");
        assert_eq!(data["id"], format!("e{next}"));
        assert!(
            id.starts_with(&format!("{}-", next + 1)),
            "id {id} at seq {next}"
        );
        next += 1;
    }
    drop((live1, live2));
}

/// Several groupings in one question count exactly what each asked alone counts,
/// and the paged, sorted report and its CSV keep the whole answer's count and digest.
#[test]
fn one_question_of_several_groupings_and_a_paged_report_answer_as_their_parts() {
    let s = TestServer::start("");
    let w = s.token(POLICE, &[Scope::Write, Scope::Read]);
    for i in 0..12 {
        let mut ev = sent(&format!("g{i}"), &format!("MG{i}"));
        ev["at"] = Value::String(format!("2023-0{}-0{}T10:00:00Z", 1 + i % 3, 1 + i % 5));
        let r = post_event(&s, &w, &ev);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let q = "now=2023-12-01T00:00:00Z&min_seq=11";
    let many = get(&s, &format!("/v1/stats?{q}&by=all;month;to,month"), &w);
    assert_eq!(many.status, 200, "{}", many.text);
    for (i, by) in ["all", "month", "to,month"].iter().enumerate() {
        let one = get(&s, &format!("/v1/stats?{q}&by={by}"), &w);
        let groups = if i == 0 {
            &many.body["groups"]
        } else {
            &many.body["also"][i - 1]["groups"]
        };
        assert_eq!(groups, &one.body["groups"], "by={by}");
    }
    assert_eq!(
        many.body["also"][1]["by"],
        serde_json::json!(["to", "month"])
    );
    let r = get(&s, &format!("/v1/stats?{q}&by=all;all;all;all;all"), &w);
    assert_eq!(r.status, 400, "{}", r.text);

    // A grouping's `:count` lists only its groups where that count is above zero.
    // Every message here is lost (unread until the channel's expiry), none at risk.
    for count in [
        "lost",
        "at_risk",
        "lost_unread",
        "opened_late",
        "with_incidents",
    ] {
        let r = get(&s, &format!("/v1/stats?{q}&by=all;to,month:{count}"), &w);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["also"][0]["having"], count);
        assert!(r.body.get("having").is_none(), "{}", r.text);
        let value = |g: &Value| {
            g["verdicts"][count]
                .as_u64()
                .or(g["incidents"][count].as_u64())
                .or(g[count].as_u64())
                .unwrap()
        };
        let expected: Vec<&Value> = many.body["also"][1]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| value(g) > 0)
            .collect();
        let got: Vec<&Value> = r.body["also"][0]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(got, expected, "having {count}");
        let none = ["at_risk", "opened_late"].contains(&count);
        assert_eq!(got.is_empty(), none, "{count}: {}", r.text);
    }
    let r = get(&s, &format!("/v1/stats?{q}&by=to:nope"), &w);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("lost_unread"),
        "the error lists the counts: {}",
        r.text
    );

    // A report, whole, then paged and sorted: the same rows, count and digest.
    let whole = get(&s, &format!("/v1/reports/incidents?{q}"), &w);
    assert_eq!(whole.status, 200, "{}", whole.text);
    let n = whole.body["count"].as_u64().unwrap();
    assert!(n >= 12, "{}", whole.text);
    let page = get(
        &s,
        &format!("/v1/reports/incidents?{q}&sort=-message&offset=2&limit=3"),
        &w,
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        (page.body["count"].as_u64(), &page.body["digest"]),
        (Some(n), &whole.body["digest"])
    );
    let mut ids: Vec<String> = whole.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.reverse();
    let got: Vec<&str> = page.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[2..5].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let bad = get(&s, &format!("/v1/reports/incidents?{q}&sort=nope"), &w);
    assert_eq!(bad.status, 400, "{}", bad.text);
    let csv = get(&s, &format!("/v1/reports/incidents?{q}&format=csv"), &w);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(
        csv.header("ledger-rows-digest"),
        whole.body["digest"].as_str()
    );
    assert_eq!(
        csv.text.lines().count() as u64,
        n + 1,
        "a header line and every row"
    );
    assert!(csv.text.starts_with("message,kind,cause,"), "{}", csv.text);
}
