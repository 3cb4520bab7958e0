//! The edge-case table of docs/projections.md §2.5, row by row, plus the anomaly
//! rules of §3. Each row builds real entries (canonical events in entry bytes) and
//! applies them as replay does.

use serde_json::{Value, json};

use super::*;
use crate::Event;
use crate::entry::entry_bytes;

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
const POLICE: &str = "948842327";
const KOMMUNE: &str = "977019397";
const OTHER: &str = "957241867";
const LATE_RECORD: &str = "2030-01-01T00:00:00.000000Z";

fn t0() -> Instant {
    Instant::parse("2023-01-02T09:00:00Z").unwrap()
}

fn ts(offset: i64) -> String {
    let s = t0().plus_seconds(offset).to_string();
    // Whole seconds in events, as reporters write them.
    format!("{}Z", &s[..19])
}

struct Log {
    facts: Facts,
    n: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            facts: Facts::default(),
            n: 0,
        }
    }

    fn push_recorded(&mut self, mut v: Value, recorded_at: &str) -> u64 {
        let obj = v.as_object_mut().unwrap();
        obj.entry("id").or_insert(json!(format!("e{}", self.n)));
        obj.entry("reporter")
            .or_insert(json!({"org": POLICE, "system": "test"}));
        let event = Event::from_value(v).expect("valid test event");
        let seq = self.n;
        let bytes = entry_bytes(seq, &[0; 32], recorded_at, 1, event.canonical_bytes());
        self.facts.apply_entry(seq, &bytes).expect("applies");
        self.n += 1;
        seq
    }

    fn push(&mut self, v: Value) -> u64 {
        self.push_recorded(v, LATE_RECORD)
    }

    fn sent(&mut self, msg: &str, category: &str, channel: &str, at: i64) -> u64 {
        self.push(
            json!({"type": "sent", "message": msg, "at": ts(at), "from": POLICE,
            "to": KOMMUNE, "channel": channel, "category": category,
            "content_digest": format!("sha256:{}", "ab".repeat(32))}),
        )
    }

    fn ev(&mut self, kind: &str, msg: &str, at: i64) -> u64 {
        let mut v = json!({"type": kind, "message": msg, "at": ts(at)});
        let o = v.as_object_mut().unwrap();
        match kind {
            "opened" => {
                o.insert("by_role".into(), json!("saksbehandler"));
            }
            "deleted" => {
                o.insert("reason".into(), json!("cleanup"));
            }
            "failed" => {
                o.insert("error".into(), json!("timeout"));
            }
            _ => {}
        }
        self.push(v)
    }

    fn resent(&mut self, msg: &str, new: &str, channel: &str, at: i64) -> u64 {
        self.push(json!({"type": "resent", "message": msg, "at": ts(at),
            "new_message": new, "channel": channel}))
    }

    fn handed_off(&mut self, msg: &str, to_system: &str, at: i64) -> u64 {
        self.push(json!({"type": "handed_off", "message": msg, "at": ts(at),
            "from_system": "fiks-mottak", "to_system": to_system}))
    }

    fn received(&mut self, msg: &str, system: &str, at: i64) -> u64 {
        self.push(json!({"type": "received", "message": msg, "at": ts(at), "system": system}))
    }

    fn resolved(&mut self, msg: &str, outcome: &str, at: i64) -> u64 {
        self.push(json!({"type": "resolved", "message": msg, "at": ts(at), "outcome": outcome}))
    }

    fn eval_with<'a>(&'a self, msg: &str, now: i64, policy: &'a Policy) -> Evaluation<'a> {
        Evaluator::new(&self.facts, policy, t0().plus_seconds(now))
            .evaluate(msg)
            .unwrap_or_else(|| panic!("{msg} unknown"))
    }

    fn eval(&self, msg: &str, now: i64) -> Evaluation<'_> {
        static DEFAULT: std::sync::LazyLock<Policy> =
            std::sync::LazyLock::new(Policy::default_policy);
        self.eval_with(msg, now, &DEFAULT)
    }

    fn verdict(&self, msg: &str, now: i64) -> (Verdict, String) {
        let e = self.eval(msg, now);
        (e.verdict, e.reason.to_string())
    }

    fn recorded(&self, msg: &str) -> Vec<(AnomalyKind, u64)> {
        self.facts
            .message(msg)
            .unwrap()
            .anomalies
            .iter()
            .map(|a| (a.kind, a.seq))
            .collect()
    }

    fn evaluated(&self, msg: &str, now: i64) -> Vec<AnomalyKind> {
        self.eval(msg, now)
            .evaluated_anomalies
            .iter()
            .map(|a| a.0)
            .collect()
    }
}

fn v(verdict: Verdict, reason: &str) -> (Verdict, String) {
    (verdict, reason.to_string())
}

const B: &str = "bekymringsmelding";
const D: &str = "document";

#[test]
fn rows_1_to_3_open_deadline_boundary() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("delivered", "A", MIN);
    assert_eq!(l.verdict("A", DAY), v(Verdict::Open, "in_flight"));
    assert_eq!(l.verdict("A", 7 * DAY), v(Verdict::Open, "in_flight"));
    assert_eq!(
        l.verdict("A", 7 * DAY + 1),
        v(Verdict::AtRisk, "open_deadline_passed")
    );
    assert!(l.recorded("A").is_empty());
}

#[test]
fn rows_4_to_7_expiry_warning_and_passing() {
    let mut l = Log::new();
    l.sent("D", D, "altinn", 0);
    assert_eq!(l.verdict("D", 22 * DAY), v(Verdict::Open, "in_flight"));
    assert_eq!(
        l.verdict("D", 23 * DAY),
        v(Verdict::AtRisk, "expiry_warning")
    );
    assert_eq!(l.verdict("D", 30 * DAY), v(Verdict::Lost, "expiry_passed"));
    let e = l.eval("D", 30 * DAY);
    assert_eq!(e.expires_source, Some(ExpirySource::Policy));

    let mut l = Log::new();
    l.push(
        json!({"type": "sent", "message": "E", "at": ts(0), "from": POLICE, "to": KOMMUNE,
        "channel": "eformidling", "category": D, "expires_at": ts(10 * DAY),
        "content_digest": format!("sha256:{}", "cd".repeat(32))}),
    );
    assert_eq!(l.verdict("E", 3 * DAY - 1), v(Verdict::Open, "in_flight"));
    assert_eq!(
        l.verdict("E", 3 * DAY),
        v(Verdict::AtRisk, "expiry_warning")
    );
    assert_eq!(l.eval("E", 0).expires_source, Some(ExpirySource::Event));
}

#[test]
fn rows_8_to_13_open_and_acknowledge_deadlines() {
    // (opened, acknowledged, now, expected verdict and reason)
    type Row = (i64, Option<i64>, i64, (Verdict, &'static str));
    let cases: [Row; 6] = [
        (
            2 * DAY,
            Some(3 * DAY),
            20 * DAY,
            (Verdict::Completed, "completed"),
        ),
        (2 * DAY, None, 5 * DAY, (Verdict::Open, "awaiting_ack")),
        (
            2 * DAY,
            None,
            14 * DAY + 1,
            (Verdict::AtRisk, "ack_deadline_passed"),
        ),
        (
            2 * DAY,
            Some(15 * DAY),
            20 * DAY,
            (Verdict::Late, "ack_late"),
        ),
        (
            9 * DAY,
            Some(10 * DAY),
            20 * DAY,
            (Verdict::Late, "opened_late"),
        ),
        (
            7 * DAY,
            Some(8 * DAY),
            20 * DAY,
            (Verdict::Completed, "completed"),
        ),
    ];
    for (row, (opened, ack, now, want)) in cases.into_iter().enumerate() {
        let mut l = Log::new();
        l.sent("A", B, "altinn", 0);
        l.ev("opened", "A", opened);
        if let Some(a) = ack {
            l.ev("acknowledged", "A", a);
        }
        assert_eq!(l.verdict("A", now), v(want.0, want.1), "row {}", row + 8);
    }
}

#[test]
fn rows_14_to_18_losses_and_what_outranks_them() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    assert_eq!(l.verdict("A", 31 * DAY), v(Verdict::Lost, "expired"));

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", 3 * DAY);
    l.ev("acknowledged", "A", 4 * DAY);
    l.ev("expired", "A", 30 * DAY);
    assert_eq!(l.verdict("A", 31 * DAY), v(Verdict::Completed, "completed"));

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("deleted", "A", 2 * DAY);
    assert_eq!(l.verdict("A", 3 * DAY), v(Verdict::Lost, "deleted"));

    let mut l = Log::new();
    l.sent("A", D, "eformidling", 0);
    l.ev("failed", "A", 10 * MIN);
    assert_eq!(l.verdict("A", HOUR), v(Verdict::Lost, "failed"));
    l.ev("delivered", "A", 2 * HOUR);
    l.ev("opened", "A", DAY);
    assert_eq!(l.verdict("A", 2 * DAY), v(Verdict::Completed, "completed"));
}

#[test]
fn rows_19_to_20_a_resend_by_letter_counts_for_the_original() {
    for (recv, ack, want_a) in [
        (3 * DAY, 4 * DAY, v(Verdict::Completed, "completed")),
        (8 * DAY, 9 * DAY, v(Verdict::Late, "opened_late")),
    ] {
        let mut l = Log::new();
        l.sent("A", B, "email", 0);
        l.ev("failed", "A", HOUR);
        l.resent("A", "A2", "letter", DAY);
        l.received("A2", "post", recv);
        l.ev("acknowledged", "A2", ack);
        assert_eq!(l.verdict("A", 20 * DAY), want_a);
        let e = l.eval("A", 20 * DAY);
        assert_eq!(e.via, Some("A2"));
        assert_eq!(e.resent_to, Some("A2"));
        assert_eq!(
            l.verdict("A2", 20 * DAY),
            v(Verdict::Completed, "completed")
        );
        assert_eq!(l.eval("A2", 0).category, Some(B), "inherited");
        assert!(l.recorded("A2").is_empty(), "declared by a resend: known");
    }
}

fn chain_of_three(l: &mut Log) {
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    l.resent("A", "A2", "eformidling", 31 * DAY);
    l.ev("failed", "A2", 31 * DAY + HOUR);
    l.resent("A2", "A3", "letter", 32 * DAY);
    l.received("A3", "post", 34 * DAY);
    l.ev("acknowledged", "A3", 35 * DAY);
}

#[test]
fn rows_21_to_24_resend_chains_of_three_and_resolutions() {
    let mut l = Log::new();
    chain_of_three(&mut l);
    assert_eq!(l.verdict("A", 60 * DAY), v(Verdict::Late, "opened_late"));
    assert_eq!(l.eval("A", 60 * DAY).via, Some("A3"));
    assert_eq!(l.eval("A", 60 * DAY).resent_to, Some("A3"));
    assert_eq!(
        l.verdict("A2", 60 * DAY),
        v(Verdict::Completed, "completed")
    );
    assert_eq!(
        l.verdict("A3", 60 * DAY),
        v(Verdict::Completed, "completed")
    );

    let mut r = Log::new();
    chain_of_three(&mut r);
    r.resolved("A", "resent_and_confirmed", 36 * DAY);
    for m in ["A", "A2", "A3"] {
        assert_eq!(
            r.verdict(m, 60 * DAY),
            v(Verdict::Resolved, "resent_and_confirmed"),
            "{m}"
        );
    }

    let mut r = Log::new();
    chain_of_three(&mut r);
    r.resolved("A2", "known_via_other_channel", 36 * DAY);
    assert_eq!(
        r.verdict("A", 60 * DAY).0,
        Verdict::Late,
        "never closes an ancestor"
    );
    assert_eq!(r.verdict("A2", 60 * DAY).0, Verdict::Resolved);
    assert_eq!(r.verdict("A3", 60 * DAY).0, Verdict::Resolved);

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    l.resent("A", "A2", "letter", 31 * DAY);
    assert_eq!(l.verdict("A", 33 * DAY), v(Verdict::Lost, "expired"));
    assert_eq!(l.verdict("A2", 33 * DAY), v(Verdict::Open, "in_flight"));
}

#[test]
fn rows_25_to_32_hand_offs() {
    let portal = |l: &mut Log| {
        l.sent("P", B, "portal", 0);
        l.handed_off("P", "familia", 5 * MIN)
    };
    let mut l = Log::new();
    portal(&mut l);
    l.received("P", "familia", 6 * MIN);
    l.ev("opened", "P", DAY);
    l.ev("acknowledged", "P", 2 * DAY);
    assert_eq!(l.verdict("P", 20 * DAY), v(Verdict::Completed, "completed"));
    assert!(l.evaluated("P", 20 * DAY).is_empty());

    let mut l = Log::new();
    let hop = portal(&mut l);
    assert_eq!(l.verdict("P", DAY + 5 * MIN), v(Verdict::Open, "in_flight"));
    assert!(l.evaluated("P", DAY + 5 * MIN).is_empty());
    assert_eq!(
        l.verdict("P", DAY + 6 * MIN),
        v(Verdict::StuckInHandoff, "handoff_unreceived")
    );
    assert_eq!(
        l.eval("P", DAY + 6 * MIN).evaluated_anomalies,
        vec![(AnomalyKind::HandoffNeverReceived, hop)]
    );
    assert_eq!(l.facts.message("P").unwrap().status(), Status::InHandoff);

    let mut l = Log::new();
    portal(&mut l);
    l.received("P", "websak", 6 * MIN);
    assert_eq!(l.verdict("P", 2 * DAY).0, Verdict::StuckInHandoff);

    let mut l = Log::new();
    portal(&mut l);
    l.received("P", "familia", 4 * MIN);
    assert_eq!(
        l.verdict("P", 2 * DAY),
        v(Verdict::Open, "in_flight"),
        "within skew"
    );

    let mut l = Log::new();
    portal(&mut l);
    l.received("P", "familia", 5 * MIN - 121);
    assert_eq!(
        l.verdict("P", 2 * DAY).0,
        Verdict::StuckInHandoff,
        "beyond skew"
    );

    let mut l = Log::new();
    portal(&mut l);
    l.ev("deleted", "P", HOUR);
    assert_eq!(l.verdict("P", 2 * DAY), v(Verdict::Lost, "deleted"));
    assert_eq!(
        l.evaluated("P", 2 * DAY),
        vec![AnomalyKind::HandoffNeverReceived]
    );

    let mut l = Log::new();
    portal(&mut l);
    l.ev("opened", "P", DAY);
    l.ev("acknowledged", "P", 2 * DAY);
    assert_eq!(l.verdict("P", 20 * DAY), v(Verdict::Completed, "completed"));
    assert_eq!(
        l.evaluated("P", 20 * DAY),
        vec![AnomalyKind::HandoffNeverReceived]
    );

    let mut l = Log::new();
    portal(&mut l);
    l.received("P", "familia", 6 * MIN);
    assert_eq!(
        l.verdict("P", 8 * DAY),
        v(Verdict::AtRisk, "open_deadline_passed"),
        "received is not opened"
    );

    // A receipt that arrives before its hand-off still matches it.
    let mut l = Log::new();
    l.sent("P", B, "portal", 0);
    l.received("P", "familia", 6 * MIN);
    l.handed_off("P", "familia", 5 * MIN);
    assert_eq!(l.verdict("P", 2 * DAY), v(Verdict::Open, "in_flight"));
}

/// Issue 12, custody: once the recipient's system took the message out of the channel,
/// the channel's expiry no longer applies.
#[test]
fn rows_50_to_52_custody_stops_the_channel_expiry() {
    // 50: handed off out of Altinn, never received: stuck, however long ago.
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    let hop = l.handed_off("A", "familia", DAY);
    assert_eq!(
        l.verdict("A", 40 * DAY),
        v(Verdict::StuckInHandoff, "handoff_unreceived")
    );
    assert_eq!(
        l.eval("A", 40 * DAY).evaluated_anomalies,
        vec![(AnomalyKind::HandoffNeverReceived, hop)]
    );
    // No expiry warning either, before the hand-off's due.
    let mut l = Log::new();
    l.sent("A", D, "altinn", 0);
    l.handed_off("A", "familia", DAY);
    l.received("A", "familia", DAY + MIN);
    assert_eq!(l.verdict("A", 25 * DAY), v(Verdict::Open, "in_flight"));
    // 51: the channel deletes its own copy after the hand-off: still stuck, not lost.
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.handed_off("A", "familia", DAY);
    l.ev("expired", "A", 30 * DAY);
    assert_eq!(
        l.verdict("A", 40 * DAY),
        v(Verdict::StuckInHandoff, "handoff_unreceived")
    );
    // 52: expired before anyone took it out of the channel: lost.
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    l.handed_off("A", "familia", 31 * DAY);
    assert_eq!(l.verdict("A", 40 * DAY), v(Verdict::Lost, "expired"));
    // A deletion counts whenever it comes.
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.handed_off("A", "familia", DAY);
    l.ev("deleted", "A", 2 * DAY);
    assert_eq!(l.verdict("A", 40 * DAY), v(Verdict::Lost, "deleted"));
}

#[test]
fn rows_33_to_34_ack_is_an_open_signal_and_resolution_closes() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("acknowledged", "A", 2 * DAY);
    assert_eq!(l.verdict("A", 20 * DAY), v(Verdict::Completed, "completed"));
    assert!(l.recorded("A").is_empty());

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    l.resolved("A", "false_alarm", 40 * DAY);
    assert_eq!(
        l.verdict("A", 41 * DAY),
        v(Verdict::Resolved, "false_alarm")
    );
    assert_eq!(l.facts.message("A").unwrap().status(), Status::Resolved);
}

#[test]
fn rows_35_to_39_recorded_anomalies() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", HOUR);
    let d = l.ev("delivered", "A", 2 * HOUR);
    l.ev("acknowledged", "A", DAY);
    assert_eq!(l.verdict("A", 20 * DAY).0, Verdict::Completed);
    assert_eq!(
        l.recorded("A"),
        vec![(AnomalyKind::OpenedBeforeDelivered, d)]
    );

    let mut l = Log::new();
    let o = l.ev("opened", "A", HOUR);
    l.sent("A", B, "altinn", 0);
    l.ev("acknowledged", "A", DAY);
    assert_eq!(l.verdict("A", 20 * DAY).0, Verdict::Completed);
    assert_eq!(
        l.recorded("A"),
        vec![(AnomalyKind::EventForUnknownMessage, o)]
    );

    let mut l = Log::new();
    let o = l.ev("opened", "X", HOUR);
    assert_eq!(
        l.verdict("X", 100 * DAY),
        v(Verdict::Completed, "completed")
    );
    assert_eq!(
        l.recorded("X"),
        vec![(AnomalyKind::EventForUnknownMessage, o)]
    );
    assert_eq!(l.facts.message("X").unwrap().status(), Status::Opened);
    assert!(
        l.eval("X", 0).deadlines.is_empty(),
        "an orphan has no deadlines"
    );

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("deleted", "A", 2 * DAY);
    let o = l.ev("opened", "A", 3 * DAY);
    assert_eq!(
        l.verdict("A", 20 * DAY),
        v(Verdict::AtRisk, "ack_deadline_passed")
    );
    assert_eq!(l.recorded("A"), vec![(AnomalyKind::EventAfterDeletion, o)]);

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    let mut second = json!({"type": "sent", "message": "A", "at": ts(0), "from": POLICE,
        "to": OTHER, "channel": "altinn", "category": B,
        "content_digest": format!("sha256:{}", "ab".repeat(32))});
    second["id"] = json!("second");
    let s2 = l.push(second);
    assert_eq!(l.verdict("A", DAY).0, Verdict::Open);
    assert_eq!(l.eval("A", DAY).to, Some(KOMMUNE));
    let a = &l.facts.message("A").unwrap().anomalies;
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].kind, a[0].seq), (AnomalyKind::DuplicateSent, s2));
    assert_eq!(a[0].detail.as_deref(), Some("to"));
}

#[test]
fn rows_40_to_41_resend_conflicts_and_orphan_resends() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.sent("B", B, "altinn", 0);
    l.resent("A", "B", "letter", HOUR);
    let bad = l.resent("B", "A", "letter", 2 * HOUR);
    assert_eq!(l.recorded("B"), vec![(AnomalyKind::ResendConflict, bad)]);
    assert_eq!(
        l.facts.message("B").unwrap().anomalies[0].detail.as_deref(),
        Some("cycle")
    );
    assert!(l.facts.message("A").unwrap().resent_from.is_none());
    assert_eq!(l.verdict("A", DAY).0, Verdict::Open);
    assert_eq!(l.verdict("B", DAY).0, Verdict::Open);

    // Claimed by another message.
    l.sent("C", B, "altinn", 0);
    let bad = l.resent("C", "B", "letter", 3 * HOUR);
    let c = &l.facts.message("C").unwrap().anomalies;
    assert_eq!((c[0].kind, c[0].seq), (AnomalyKind::ResendConflict, bad));
    assert_eq!(c[0].detail.as_deref(), Some("already_resent_from:A"));
    // The same link again is no anomaly.
    l.resent("A", "B", "letter", 4 * HOUR);
    assert!(l.recorded("A").is_empty());

    let mut l = Log::new();
    let r = l.resent("X", "Y", "letter", 0);
    l.received("Y", "post", 3 * DAY);
    assert_eq!(
        l.recorded("X"),
        vec![(AnomalyKind::ResendOfUnknownMessage, r)]
    );
    assert_eq!(l.verdict("X", 5 * DAY), v(Verdict::Completed, "completed"));
    assert_eq!(l.eval("X", 5 * DAY).via, Some("Y"));
    assert_eq!(l.verdict("Y", 5 * DAY), v(Verdict::Completed, "completed"));
    assert_eq!(l.eval("Y", 5 * DAY).category, None);
}

#[test]
fn row_43_at_after_recorded() {
    let mut l = Log::new();
    let recorded = "2023-01-02T09:00:00.000000Z";
    let s = l.push_recorded(
        json!({"type": "sent", "message": "A", "at": ts(HOUR), "from": POLICE, "to": KOMMUNE,
            "channel": "altinn", "category": B, "content_digest": format!("sha256:{}", "ab".repeat(32))}),
        recorded,
    );
    assert_eq!(l.recorded("A"), vec![(AnomalyKind::AtAfterRecorded, s)]);
    l.push_recorded(
        json!({"type": "delivered", "message": "A", "at": ts(2 * MIN)}),
        recorded,
    );
    let future = l
        .recorded("A")
        .iter()
        .filter(|a| a.0 == AnomalyKind::AtAfterRecorded)
        .count();
    assert_eq!(future, 1, "2 minutes ahead is within the skew");
}

fn stream_event(l: &mut Log, n: u64) -> u64 {
    l.push(
        json!({"type": "delivered", "message": format!("M{n}"), "at": ts(0),
        "id": format!("s{n}-{}", l.n),
        "reporter": {"org": POLICE, "system": "altinn-adapter", "seq": n}}),
    )
}

#[test]
fn rows_44_to_46_reporter_streams() {
    let mut l = Log::new();
    stream_event(&mut l, 1);
    stream_event(&mut l, 2);
    let four = stream_event(&mut l, 4);
    let s = &l.facts.stream(POLICE, "altinn-adapter").unwrap();
    assert_eq!(
        s.gaps,
        vec![Gap {
            from: 3,
            to: 3,
            detected_seq: four
        }]
    );
    stream_event(&mut l, 3);
    assert!(
        l.facts
            .stream(POLICE, "altinn-adapter")
            .unwrap()
            .gaps
            .is_empty()
    );

    let mut l = Log::new();
    stream_event(&mut l, 1);
    stream_event(&mut l, 2);
    let dup = stream_event(&mut l, 2);
    let s = &l.facts.stream(POLICE, "altinn-adapter").unwrap();
    assert_eq!(
        s.duplicates,
        vec![Duplicate {
            reporter_seq: 2,
            seq: dup
        }]
    );

    let mut l = Log::new();
    let five = stream_event(&mut l, 5);
    assert_eq!(
        l.facts.stream(POLICE, "altinn-adapter").unwrap().gaps,
        vec![Gap {
            from: 1,
            to: 4,
            detected_seq: five
        }]
    );
    stream_event(&mut l, 3);
    assert_eq!(
        l.facts.stream(POLICE, "altinn-adapter").unwrap().gaps.len(),
        2,
        "split"
    );
    for n in [4, 1, 2] {
        stream_event(&mut l, n);
    }
    let s = &l.facts.stream(POLICE, "altinn-adapter").unwrap();
    assert!(s.gaps.is_empty() && s.duplicates.is_empty());
    assert_eq!((s.max, s.count), (5, 5));
}

#[test]
fn row_47_policy_change_changes_verdicts_and_nothing_else() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", 9 * DAY);
    l.ev("acknowledged", "A", 10 * DAY);
    let default = Policy::default_policy();
    let relaxed = Policy::parse(&DEFAULT_POLICY.replacen(
        "category = \"bekymringsmelding\"\nopen_within = \"7d\"",
        "category = \"bekymringsmelding\"\nopen_within = \"10d\"",
        1,
    ))
    .unwrap();
    assert_eq!(l.eval_with("A", 20 * DAY, &default).verdict, Verdict::Late);
    assert_eq!(
        l.eval_with("A", 20 * DAY, &relaxed).verdict,
        Verdict::Completed
    );
    let now = t0().plus_seconds(20 * DAY);
    let alg = crate::HashAlg::Blake3;
    let a = evaluation_digest(&Evaluator::new(&l.facts, &default, now), &default, alg);
    let b = evaluation_digest(&Evaluator::new(&l.facts, &relaxed, now), &relaxed, alg);
    assert_eq!(a.facts, b.facts);
    assert_ne!(a.policy, b.policy);
    assert_ne!(a.evaluation, b.evaluation);
}

#[test]
fn rows_48_to_49_out_of_order_times() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    let r = l.received("A", "familia", -HOUR);
    assert_eq!(l.verdict("A", DAY).0, Verdict::Open);
    assert_eq!(l.recorded("A"), vec![(AnomalyKind::EventBeforeSent, r)]);
    assert_eq!(
        l.facts.message("A").unwrap().anomalies[0].detail.as_deref(),
        Some("received")
    );

    // The late `sent` raises it against the earlier event.
    let mut l = Log::new();
    l.received("A", "familia", -HOUR);
    let s = l.sent("A", B, "altinn", 0);
    assert!(l.recorded("A").contains(&(AnomalyKind::EventBeforeSent, s)));

    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", 3 * DAY);
    let a = l.ev("acknowledged", "A", 2 * DAY);
    assert_eq!(l.verdict("A", 20 * DAY), v(Verdict::Completed, "completed"));
    assert_eq!(
        l.eval("A", 20 * DAY).opened_at,
        Some(t0().plus_seconds(2 * DAY))
    );
    assert_eq!(
        l.recorded("A"),
        vec![(AnomalyKind::AcknowledgedBeforeOpened, a)]
    );
}

#[test]
fn deletion_arriving_after_the_activity_is_flagged_once() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", 3 * DAY);
    let d = l.ev("deleted", "A", 2 * DAY);
    assert_eq!(l.recorded("A"), vec![(AnomalyKind::EventAfterDeletion, d)]);
    l.ev("expired", "A", DAY);
    assert_eq!(
        l.recorded("A").len(),
        1,
        "already flagged against an earlier end"
    );
}

#[test]
fn incremental_equals_replay_and_digests_are_stable() {
    let mut l = Log::new();
    chain_of_three(&mut l);
    l.sent("P", B, "portal", 0);
    l.handed_off("P", "familia", 5 * MIN);
    stream_event(&mut l, 3);
    let alg = crate::HashAlg::Blake3;
    let d1 = facts_digest(&l.facts, alg);
    let mut copy = l.facts.clone();
    assert_eq!(facts_digest(&copy, alg), d1);
    // Through the persisted form.
    let bytes = super::persist::encode(&copy, Some("tail".into())).unwrap();
    let (back, tail) = super::persist::decode(&bytes).unwrap();
    assert_eq!(tail.as_deref(), Some("tail"));
    copy = back;
    assert_eq!(copy, l.facts);
    assert_eq!(facts_digest(&copy, alg), d1);
}

#[test]
fn status_follows_each_lifecycle_step() {
    let mut l = Log::new();
    let status = |l: &Log| l.facts.message("P").unwrap().status();
    l.ev("delivered", "P", 0);
    assert_eq!(
        status(&l),
        Status::Delivered,
        "an orphan shows its own events"
    );
    let mut l = Log::new();
    l.ev("expired", "Q", 0);
    assert_eq!(l.facts.message("Q").unwrap().status(), Status::Expired);
    let mut l = Log::new();
    l.push(json!({"type": "handed_off", "message": "U", "at": ts(0),
        "from_system": "a", "to_system": "b"}));
    assert_eq!(l.facts.message("U").unwrap().status(), Status::InHandoff);

    let mut l = Log::new();
    l.sent("P", B, "portal", 0);
    assert_eq!(status(&l), Status::Sent);
    l.ev("delivered", "P", MIN);
    assert_eq!(status(&l), Status::Delivered);
    l.handed_off("P", "familia", 5 * MIN);
    assert_eq!(status(&l), Status::InHandoff);
    l.received("P", "familia", 6 * MIN);
    assert_eq!(status(&l), Status::Received);
    l.ev("failed", "P", 7 * MIN);
    assert_eq!(status(&l), Status::Failed);
    l.ev("expired", "P", 8 * MIN);
    assert_eq!(status(&l), Status::Expired);
    l.ev("deleted", "P", 9 * MIN);
    assert_eq!(status(&l), Status::Deleted);
    l.ev("opened", "P", 10 * MIN);
    assert_eq!(status(&l), Status::Opened);
    l.ev("acknowledged", "P", 11 * MIN);
    assert_eq!(status(&l), Status::Acknowledged);
    l.resolved("P", "false_alarm", 12 * MIN);
    assert_eq!(status(&l), Status::Resolved);
    // Only the latest resolution counts, whatever the arrival order.
    l.resolved("P", "unrecoverable", 11 * MIN);
    let r = l.facts.message("P").unwrap().resolved.clone().unwrap();
    assert_eq!((r.outcome.as_str(), r.count), ("false_alarm", 2));
    // First events keep the earliest time, and count every report.
    l.ev("opened", "P", 5 * MIN);
    let o = l.facts.message("P").unwrap().opened.clone().unwrap();
    assert_eq!((o.at, o.count), (t0().plus_seconds(5 * MIN), 2));
}

#[test]
fn a_report_by_no_party_of_the_message_is_a_recorded_anomaly() {
    let mut l = Log::new();
    l.sent("M1", "bekymringsmelding", "altinn", 0);
    let by = |org: &str, system: &str| json!({"org": org, "system": system});
    // The recipient opens it: a party.
    l.push(
        json!({"type": "opened", "message": "M1", "at": ts(HOUR), "by_role": "leder",
        "reporter": by(KOMMUNE, "familia")}),
    );
    // A third organisation settles it: recorded, and flagged.
    let settled = l.push(
        json!({"type": "resolved", "message": "M1", "at": ts(2 * HOUR),
        "outcome": "false_alarm", "reporter": by(OTHER, "websak")}),
    );
    // A channel reports for either side: not flagged.
    l.push(
        json!({"type": "acknowledged", "message": "M1", "at": ts(3 * HOUR),
        "reporter": by(OTHER, "altinn")}),
    );
    // A `sent` declared for another organisation.
    let forged = l.push(
        json!({"type": "sent", "message": "M2", "at": ts(0), "from": KOMMUNE,
        "to": POLICE, "channel": "altinn", "category": "document",
        "content_digest": format!("sha256:{}", "ab".repeat(32)), "reporter": by(OTHER, "websak")}),
    );
    let found = |msg: &str| -> Vec<(u64, Option<String>)> {
        l.facts
            .message(msg)
            .unwrap()
            .anomalies
            .iter()
            .filter(|a| a.kind == AnomalyKind::NonPartyReport)
            .map(|a| (a.seq, a.detail.clone()))
            .collect()
    };
    assert_eq!(
        found("M1"),
        vec![(settled, Some(format!("resolved reported by {OTHER}")))]
    );
    assert_eq!(
        found("M2"),
        vec![(forged, Some(format!("sent reported by {OTHER}")))]
    );
    assert_eq!(l.facts.parties("M1"), Some((POLICE, KOMMUNE)));
}

// ---------------------------------------------------------------------------------
// Incidents (§2.6): episodes that stay counted whatever the verdict is now.

/// (kind, began_at offset, cause, ended_by, ended_at offset) of a message's incidents.
type Episode = (
    IncidentKind,
    i64,
    Option<String>,
    Option<&'static str>,
    Option<i64>,
);

impl Log {
    fn incidents(&self, msg: &str, now: i64) -> Vec<Episode> {
        let policy = Policy::default_policy();
        let eval = Evaluator::new(&self.facts, &policy, t0().plus_seconds(now));
        let e = eval.evaluate(msg).expect("known");
        let off = |t: Instant| ((t.nanos() - t0().nanos()) / 1_000_000_000) as i64;
        eval.incidents(&e)
            .into_iter()
            .map(|i| {
                (
                    i.kind,
                    off(i.began_at),
                    i.cause.map(str::to_string),
                    i.ended_by,
                    i.ended_at.map(off),
                )
            })
            .collect()
    }
}

fn ep(
    kind: IncidentKind,
    began: i64,
    cause: Option<&str>,
    ended_by: Option<&'static str>,
    ended: Option<i64>,
) -> Episode {
    (kind, began, cause.map(str::to_string), ended_by, ended)
}

#[test]
fn incident_expired_unread_stays_counted_after_the_resend_is_opened() {
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("delivered", "A", 10 * MIN);
    l.ev("expired", "A", 30 * DAY);
    l.resent("A", "A-BREV", "letter", 100 * DAY);
    l.received("A-BREV", "websak", 103 * DAY);
    assert_eq!(l.verdict("A", 200 * DAY), v(Verdict::Late, "opened_late"));
    assert_eq!(
        l.incidents("A", 200 * DAY),
        vec![
            // Not opened within its 7 days, then overtaken by the loss.
            ep(
                IncidentKind::OpenedLate,
                7 * DAY,
                None,
                Some("lost"),
                Some(30 * DAY)
            ),
            ep(
                IncidentKind::LostUnread,
                30 * DAY,
                Some("expired"),
                Some("resend_opened"),
                Some(103 * DAY)
            ),
        ]
    );
    // Before the deadline, nothing went wrong; without the resend, the loss is open
    // (a resend made after T is left out by an event-time as-of, §5).
    assert!(l.incidents("A", 7 * DAY).is_empty());
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("expired", "A", 30 * DAY);
    assert_eq!(
        l.incidents("A", 50 * DAY)[1],
        ep(
            IncidentKind::LostUnread,
            30 * DAY,
            Some("expired"),
            None,
            None
        )
    );
}

#[test]
fn incident_expiry_passing_is_a_loss_and_a_deadline_at_the_loss_is_not_separate() {
    let mut l = Log::new();
    l.sent("A", D, "altinn", 0);
    l.ev("delivered", "A", 10 * MIN);
    // Document: open within 30 days, Altinn expiry after 30 days, the same instant.
    assert_eq!(
        l.incidents("A", 40 * DAY),
        vec![ep(
            IncidentKind::LostUnread,
            30 * DAY,
            Some("expiry_passed"),
            None,
            None
        )]
    );
    assert!(l.incidents("A", 30 * DAY - 1).is_empty());
}

#[test]
fn incident_stuck_handoff_stays_an_incident_when_resolved_or_received_late() {
    let mut l = Log::new();
    l.sent("A", B, "portal", 0);
    l.handed_off("A", "familia", DAY);
    l.resolved("A", "known_via_other_channel", 60 * DAY);
    assert_eq!(
        l.verdict("A", 70 * DAY),
        v(Verdict::Resolved, "known_via_other_channel")
    );
    assert_eq!(
        l.incidents("A", 70 * DAY),
        vec![
            ep(
                IncidentKind::HandoffNeverReceived,
                2 * DAY,
                None,
                Some("resolved"),
                Some(60 * DAY)
            ),
            // It reached the recipient's side (the hand-off), so it is opened late.
            ep(
                IncidentKind::OpenedLate,
                7 * DAY,
                None,
                Some("resolved"),
                Some(60 * DAY)
            ),
        ]
    );
    // Without the resolution: both open, however long ago (custody: no expiry).
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.handed_off("A", "familia", DAY);
    let kinds: Vec<_> = l
        .incidents("A", 400 * DAY)
        .into_iter()
        .map(|i| (i.0, i.3))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (IncidentKind::HandoffNeverReceived, None),
            (IncidentKind::OpenedLate, None)
        ]
    );
    // Received late: ended by the receipt.
    let mut l = Log::new();
    l.sent("A", D, "portal", 0);
    l.handed_off("A", "familia", DAY);
    l.received("A", "familia", 3 * DAY);
    assert_eq!(
        l.incidents("A", 10 * DAY),
        vec![ep(
            IncidentKind::HandoffNeverReceived,
            2 * DAY,
            None,
            Some("received"),
            Some(3 * DAY)
        )]
    );
}

#[test]
fn incident_never_delivered_differs_from_opened_late() {
    let mut l = Log::new();
    l.sent("A", D, "email", 0);
    assert_eq!(
        l.incidents("A", 31 * DAY),
        vec![ep(IncidentKind::NeverDelivered, 30 * DAY, None, None, None)]
    );
    l.ev("delivered", "A", 35 * DAY);
    assert_eq!(
        l.incidents("A", 40 * DAY),
        vec![ep(
            IncidentKind::NeverDelivered,
            30 * DAY,
            None,
            Some("delivered"),
            Some(35 * DAY)
        )]
    );
    let mut l = Log::new();
    l.sent("A", D, "email", 0);
    l.ev("delivered", "A", DAY);
    l.ev("opened", "A", 32 * DAY);
    assert_eq!(
        l.incidents("A", 40 * DAY),
        vec![ep(
            IncidentKind::OpenedLate,
            30 * DAY,
            None,
            Some("opened"),
            Some(32 * DAY)
        )]
    );
}

#[test]
fn incident_failure_ack_late_and_what_is_no_incident() {
    // Failed, resent, the resend opened.
    let mut l = Log::new();
    l.sent("A", D, "eformidling", 0);
    l.ev("failed", "A", 10 * MIN);
    l.resent("A", "A-R1", "letter", DAY);
    l.received("A-R1", "websak", 3 * DAY);
    assert_eq!(
        l.incidents("A", 40 * DAY),
        vec![ep(
            IncidentKind::Failed,
            10 * MIN,
            Some("timeout"),
            Some("resend_opened"),
            Some(3 * DAY)
        )]
    );
    // Opened in time, acknowledged late.
    let mut l = Log::new();
    l.sent("A", B, "altinn", 0);
    l.ev("opened", "A", DAY);
    l.ev("acknowledged", "A", 20 * DAY);
    assert_eq!(
        l.incidents("A", 40 * DAY),
        vec![ep(
            IncidentKind::AckLate,
            14 * DAY,
            None,
            Some("acknowledged"),
            Some(20 * DAY)
        )]
    );
    // Opened before the expiry: no loss. Resolved before the deletion: no incident.
    let mut l = Log::new();
    l.sent("A", D, "altinn", 0);
    l.ev("opened", "A", DAY);
    l.ev("expired", "A", 30 * DAY);
    assert!(l.incidents("A", 40 * DAY).is_empty());
    let mut l = Log::new();
    l.sent("A", D, "email", 0);
    l.resolved("A", "false_alarm", 5 * DAY);
    l.ev("deleted", "A", 6 * DAY);
    assert!(l.incidents("A", 40 * DAY).is_empty());
}

#[test]
fn evaluation_lines_are_the_canonicalizers() {
    // Every shape a judgement takes: resends (via), expiry, hand-offs missed and
    // met (anomalies, hop deadlines), acknowledgement deadlines, resolutions, and an
    // id outside ASCII.
    let mut l = Log::new();
    chain_of_three(&mut l);
    l.sent("P", B, "portal", 0);
    l.handed_off("P", "familia", 5 * MIN);
    l.sent("Q", D, "altinn", 0);
    l.handed_off("Q", "websak", HOUR);
    l.received("Q", "websak", 2 * HOUR);
    l.sent("R", "underretning", "eformidling", 0);
    l.resolved("R", "known_via_other_channel", DAY);
    l.sent("Ø-brev 7", D, "letter", 0);
    let policy = Policy::default_policy();
    for now in [DAY, 40 * DAY, 400 * DAY] {
        let eval = Evaluator::new(&l.facts, &policy, t0().plus_seconds(now));
        for (id, _) in l.facts.messages() {
            let e = eval.evaluate(id).unwrap();
            let mut fast = Vec::new();
            super::digest::evaluation_line(&mut fast, &e);
            let anomalies: Vec<Value> = e
                .evaluated_anomalies
                .iter()
                .map(|(k, seq)| json!({"kind": k.name(), "hop_seq": seq}))
                .collect();
            let reference = json!({
                "message": e.message,
                "verdict": e.verdict.name(),
                "reason": e.reason,
                "via": e.via,
                "expires_at": e.expires_at.map(|t| t.to_string()),
                "expires_source": e.expires_source,
                "deadlines": e.deadlines,
                "anomalies": anomalies,
            });
            let mut slow = serde_json_canonicalizer::to_vec(&reference).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap(),
                "{id} at {now}"
            );
        }
    }
}

#[test]
fn a_message_s_facts_stay_compact() {
    // Held for every message: a million of them must fit in a few hundred megabytes
    // (issue 15). Rare parts are boxed, times are aligned to eight.
    assert!(std::mem::size_of::<super::facts::MessageFacts>() <= 424);
    assert_eq!(std::mem::align_of::<super::facts::MessageFacts>(), 8);
}

/// Channels with no "opened" (eFormidling DPO, Fiks IO): the recipient's own system
/// taking the message completes it, instead of every such message turning at_risk
/// once its open deadline passes. Elsewhere a receipt is still not a reading.
#[test]
fn an_end_to_end_receipt_completes_a_message_where_the_channel_has_no_open() {
    let mut l = Log::new();
    // eFormidling: MOTTATT (delivered), then INNKOMMENDE_LEVERT (received).
    l.sent("E", "document", "eformidling", 0);
    l.ev("delivered", "E", 5 * MIN);
    l.received("E", "eformidling", 10 * MIN);
    // Fiks IO, a concern report (open within 7 d, acknowledge within 14 d):
    // the case system's `mottatt` receipt.
    l.sent("F", "bekymringsmelding", "fiks_io", 0);
    l.received("F", "fiks-io", HOUR);
    // Received late: met, but late.
    l.sent("G", "bekymringsmelding", "fiks_io", 0);
    l.received("G", "fiks-io", 10 * DAY);
    // Not received: at risk as before.
    l.sent("H", "document", "eformidling", 0);
    l.ev("delivered", "H", 5 * MIN);
    // Altinn has an "opened": a receipt there is an import, not a reading.
    l.sent("A", "bekymringsmelding", "altinn", 0);
    l.received("A", "familia", 10 * MIN);
    // A letter's receipt is its open signal, but not a concern report's
    // acknowledgement.
    l.sent("L", "bekymringsmelding", "letter", 0);
    l.received("L", "post", DAY);

    let now = 40 * DAY;
    assert_eq!(
        l.verdict("E", now),
        (Verdict::Completed, "completed".into())
    );
    assert_eq!(
        l.verdict("F", now),
        (Verdict::Completed, "completed".into())
    );
    let f = l.eval("F", now);
    assert!(
        f.deadlines
            .iter()
            .all(|d| d.state == DeadlineState::Met && d.at == Some(t0().plus_seconds(HOUR))),
        "{:?}",
        f.deadlines
    );
    assert_eq!(l.verdict("G", now), (Verdict::Late, "opened_late".into()));
    assert_eq!(
        l.verdict("H", now),
        (Verdict::AtRisk, "open_deadline_passed".into())
    );
    assert_eq!(
        l.verdict("A", 8 * DAY),
        (Verdict::AtRisk, "open_deadline_passed".into())
    );
    assert_eq!(
        l.verdict("L", now),
        (Verdict::AtRisk, "ack_deadline_passed".into())
    );
}
