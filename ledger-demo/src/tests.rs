//! Checks of the generator, including an independent evaluation of every message by
//! the rules of `docs/projections.md` §2.3 with the default policy of §4.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::*;
use time::macros::date;

const SKEW: i64 = 120;
const M_: i64 = 60;
const H_: i64 = 3_600;
const D_: i64 = 86_400;

struct Sample {
    scenario: Scenario,
    lines: Vec<String>,
}

/// The scenario the CLI test uses: 5000 messages, seed 2023 (generated once).
fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let scenario = generate(&Options {
            seed: 2023,
            messages: 5000,
        });
        let lines = lines_of(&scenario);
        Sample { scenario, lines }
    })
}

fn lines_of(s: &Scenario) -> Vec<String> {
    let mut lines = Vec::new();
    s.for_each_event(&mut |l| {
        lines.push(l.to_owned());
        Ok(())
    })
    .expect("collecting lines cannot fail");
    lines
}

fn bytes_of(s: &Scenario) -> Vec<u8> {
    let mut out = Vec::new();
    s.write_events(&mut out).expect("writing to a Vec");
    out
}

fn parse_at(s: &str) -> i64 {
    let b = s.as_bytes();
    assert!(
        b.len() == 20 && b[10] == b'T' && b[19] == b'Z',
        "timestamp {s}"
    );
    let t = ledger_core::projection::Instant::parse(s).expect("a valid timestamp");
    (t.nanos() / 1_000_000_000) as i64
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is a string in {v}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------
// A small independent projection: facts (§1) and the verdict (§2.3).

struct Sent {
    at: i64,
    category: String,
    channel: String,
    expires_at: Option<i64>,
    refs: BTreeMap<String, String>,
}

#[derive(Default)]
struct Facts {
    sent: Option<Sent>,
    /// `resent_from`: (message, at, channel).
    parent: Option<(String, i64, String)>,
    children: Vec<String>,
    opened: Option<i64>,
    acked: Option<i64>,
    delivered: Option<i64>,
    receipts: Vec<(i64, String)>,
    hops: Vec<(i64, String)>,
    /// Some `expired`, `deleted` or `failed`.
    loss: bool,
    /// Min `at` of `expired` and `deleted`.
    removed: Option<i64>,
    resolved: bool,
    /// (at, type) of the message's own events.
    events: Vec<(i64, String)>,
}

fn min_with(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn facts(lines: &[String]) -> BTreeMap<String, Facts> {
    let mut f: BTreeMap<String, Facts> = BTreeMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let kind = text(&v, "type");
        let message = text(&v, "message");
        let at = parse_at(&text(&v, "at"));
        let x = f.entry(message.clone()).or_default();
        x.events.push((at, kind.clone()));
        match kind.as_str() {
            "sent" => {
                if x.sent.is_none() {
                    let refs = v
                        .get("refs")
                        .and_then(Value::as_object)
                        .map(|o| {
                            o.iter()
                                .map(|(k, r)| (k.clone(), r.as_str().expect("ref").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default();
                    x.sent = Some(Sent {
                        at,
                        category: text(&v, "category"),
                        channel: text(&v, "channel"),
                        expires_at: v.get("expires_at").and_then(Value::as_str).map(parse_at),
                        refs,
                    });
                }
            }
            "resent" => {
                let child = text(&v, "new_message");
                x.children.push(child.clone());
                let channel = text(&v, "channel");
                let c = f.entry(child).or_default();
                assert!(c.parent.is_none(), "one parent per message");
                c.parent = Some((message, at, channel));
            }
            "opened" => x.opened = min_with(x.opened, at),
            "acknowledged" => x.acked = min_with(x.acked, at),
            "delivered" => x.delivered = min_with(x.delivered, at),
            "received" => x.receipts.push((at, text(&v, "system"))),
            "handed_off" => x.hops.push((at, text(&v, "to_system"))),
            "expired" | "deleted" => {
                x.loss = true;
                x.removed = min_with(x.removed, at);
            }
            "failed" => x.loss = true,
            "resolved" => x.resolved = true,
            other => panic!("unexpected event type {other}"),
        }
    }
    f
}

/// The default policy (§4), looked up per key.
struct Rule {
    open: Option<i64>,
    ack: Option<i64>,
    expires: Option<i64>,
    warn: i64,
    handoff: i64,
    received_opens: bool,
}

fn rule(category: Option<&str>, channel: Option<&str>) -> Rule {
    let mut r = Rule {
        open: Some(30 * D_),
        ack: None,
        expires: None,
        warn: 7 * D_,
        handoff: 24 * H_,
        received_opens: false,
    };
    if matches!(category, Some("bekymringsmelding" | "underretning")) {
        r.open = Some(7 * D_);
        r.ack = Some(14 * D_);
    }
    match channel {
        Some("altinn") => r.expires = Some(30 * D_),
        Some("letter") => r.received_opens = true,
        _ => {}
    }
    r
}

fn category(f: &BTreeMap<String, Facts>, m: &str) -> Option<String> {
    let x = &f[m];
    match (&x.sent, &x.parent) {
        (Some(s), _) => Some(s.category.clone()),
        (None, Some(p)) => category(f, &p.0),
        (None, None) => None,
    }
}

fn channel(x: &Facts) -> Option<&str> {
    match (&x.sent, &x.parent) {
        (Some(s), _) => Some(s.channel.as_str()),
        (None, Some(p)) => Some(p.2.as_str()),
        (None, None) => None,
    }
}

fn origin(x: &Facts) -> Option<i64> {
    match (&x.sent, &x.parent) {
        (Some(s), _) => Some(s.at),
        (None, Some(p)) => Some(p.1),
        (None, None) => None,
    }
}

fn rule_of(f: &BTreeMap<String, Facts>, m: &str) -> Rule {
    rule(category(f, m).as_deref(), channel(&f[m]))
}

fn open_signal(f: &BTreeMap<String, Facts>, m: &str) -> Option<i64> {
    let x = &f[m];
    let receipt = if rule_of(f, m).received_opens {
        x.receipts.iter().map(|r| r.0).min()
    } else {
        None
    };
    [x.opened, x.acked, receipt].into_iter().flatten().min()
}

fn descendants(f: &BTreeMap<String, Facts>, m: &str, out: &mut Vec<String>) {
    out.push(m.to_owned());
    for c in &f[m].children {
        descendants(f, c, out);
    }
}

fn is_resolved(f: &BTreeMap<String, Facts>, m: &str) -> bool {
    let x = &f[m];
    x.resolved || x.parent.as_ref().is_some_and(|p| is_resolved(f, &p.0))
}

/// `at` of each hop no receipt matches (§1.3).
fn unmatched_hops(x: &Facts) -> Vec<i64> {
    x.hops
        .iter()
        .filter(|(h, to)| !x.receipts.iter().any(|(r, s)| s == to && *r >= h - SKEW))
        .map(|(h, _)| *h)
        .collect()
}

fn verdict(f: &BTreeMap<String, Facts>, m: &str, now: i64) -> &'static str {
    if is_resolved(f, m) {
        return "resolved";
    }
    let x = &f[m];
    let r = rule_of(f, m);
    let origin = origin(x);
    let mut chain = Vec::new();
    descendants(f, m, &mut chain);
    let opened = chain.iter().filter_map(|d| open_signal(f, d)).min();
    let acked = chain.iter().filter_map(|d| f[d.as_str()].acked).min();
    let due_open = origin.zip(r.open).map(|(t, d)| t + d);
    let due_ack = origin.zip(r.ack).map(|(t, d)| t + d);
    if let Some(o) = opened {
        if due_open.is_some_and(|d| o > d) {
            return "late";
        }
        if let Some(d) = due_ack {
            match acked {
                Some(a) if a > d => return "late",
                None if now > d => return "at_risk",
                None => return "open",
                Some(_) => {}
            }
        }
        return "completed";
    }
    let expires = x
        .sent
        .as_ref()
        .and_then(|s| s.expires_at)
        .or(origin.zip(r.expires).map(|(t, d)| t + d));
    if x.loss || expires.is_some_and(|e| now >= e) {
        return "lost";
    }
    if unmatched_hops(x).iter().any(|h| now > h + r.handoff) {
        return "stuck_in_handoff";
    }
    if due_open.is_some_and(|d| now > d) {
        return "at_risk";
    }
    if expires.is_some_and(|e| now >= e - r.warn) {
        return "at_risk";
    }
    "open"
}

// ---------------------------------------------------------------------------------

#[test]
fn compact_records() {
    assert_eq!(std::mem::size_of::<Ev>(), 12);
    assert!(std::mem::size_of::<Msg>() <= 24);
}

#[test]
fn time_formatting() {
    assert_eq!(time_string(T_END_AT), T_END);
    assert_eq!(parse_at(T_END), 1_688_083_200);
    assert_eq!(midnight(date!(2018 - 01 - 01)), 0);
    assert_eq!(time_string(0), "2018-01-01T00:00:00Z");
    assert_eq!(
        time_string(midnight(date!(2020 - 02 - 29)) + 13 * HOUR + 5 * MIN + 7),
        "2020-02-29T13:05:07Z"
    );
    assert_eq!(
        time_string(midnight(date!(2020 - 03 - 01)) - 1),
        "2020-02-29T23:59:59Z"
    );
    assert_eq!(time_string(REGULAR_UNTIL), "2023-05-01T00:00:00Z");
    assert_eq!(year_of(midnight(date!(2021 - 12 - 31)) + DAY - 1), 2021);
    for t in (0..T_END_AT).step_by(7_777_777) {
        let s = time_string(t);
        assert_eq!(parse_at(&s), i64::from(t) + 1_514_764_800, "{s}");
    }
}

#[test]
fn splitmix64_reference_values() {
    let mut r = SplitMix64::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    let mut r = SplitMix64::new(1_234_567);
    let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    assert_eq!(
        got,
        [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423
        ]
    );
    let mut r = SplitMix64::new(7);
    let mut seen = [false; 4];
    for _ in 0..200 {
        let x = r.range(10, 13);
        assert!((10..=13).contains(&x));
        seen[(x - 10) as usize] = true;
        assert!(r.below(3) < 3);
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let opts = Options {
        seed: 2023,
        messages: 2000,
    };
    let a = generate(&opts);
    let b = generate(&opts);
    assert_eq!(bytes_of(&a), bytes_of(&b));
    assert_eq!(a.truth(), b.truth());
    assert_eq!(a.police_export_csv(), b.police_export_csv());
    assert_eq!(a.municipality_csv(), b.municipality_csv());
    let c = generate(&Options { seed: 2024, ..opts });
    assert_ne!(bytes_of(&a), bytes_of(&c));
    assert_ne!(a.truth().verdicts, c.truth().verdicts);
}

#[test]
fn write_events_equals_for_each_event() {
    let s = sample();
    let mut joined = s.lines.join("\n");
    joined.push('\n');
    assert_eq!(bytes_of(&s.scenario), joined.into_bytes());
    assert_eq!(s.scenario.event_count(), s.lines.len());
}

#[test]
fn organisation_numbers_are_valid_and_unique() {
    let s = &sample().scenario;
    assert_eq!(s.orgs.len(), POLICE + MUNICIPALITIES + 1 + OTHER_BODIES);
    let mut seen = HashSet::new();
    for o in &s.orgs {
        let n = std::str::from_utf8(&o.number).expect("ASCII");
        assert!(n.starts_with('9'), "{n}");
        assert!(ledger_core::ids::check_orgnr(n).is_ok(), "{n}");
        assert!(seen.insert(n), "duplicate {n}");
    }
    let munis = &s.orgs[POLICE..POLICE + MUNICIPALITIES];
    assert_eq!(
        munis.iter().filter(|o| o.familia).count(),
        FAMILIA_MUNICIPALITIES
    );
    assert_eq!(
        munis
            .iter()
            .filter(|o| o.lacks_roles_from.is_some())
            .count(),
        NO_ACCESS
    );
    assert_eq!(munis.iter().filter(|o| o.broken).count(), BROKEN);
    assert!(
        s.orgs
            .iter()
            .all(|o| o.lacks_roles_from.is_none_or(|t| t < LACK_UNTIL))
    );
}

#[test]
fn every_event_is_valid() {
    for line in &sample().lines {
        if let Err(e) = ledger_core::Event::from_json_as(line.as_bytes(), 2) {
            panic!("{e}: {line}");
        }
    }
}

#[test]
fn no_long_digit_runs() {
    let s = sample();
    let longest = |t: &str| {
        let (mut best, mut run) = (0, 0);
        for b in t.bytes() {
            run = if b.is_ascii_digit() { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    };
    for line in &s.lines {
        assert!(longest(line) <= 10, "{line}");
    }
    assert!(longest(&s.scenario.police_export_csv()) <= 10);
    assert!(longest(&s.scenario.municipality_csv()) <= 10);
}

#[test]
fn ids_are_unique_and_streams_contiguous_but_for_the_gaps() {
    let s = sample();
    let mut ids = HashSet::new();
    let mut streams: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for line in &s.lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let id = text(&v, "id");
        let org = text(&v["reporter"], "org");
        let system = text(&v["reporter"], "system");
        let seq = v["reporter"]["seq"].as_u64().expect("seq");
        assert_eq!(id, format!("{system}-{org}-e{seq}"));
        assert!(ids.insert(id), "duplicate id in {line}");
        streams.entry((org, system)).or_default().push(seq);
    }
    let mut gaps = Vec::new();
    for ((org, system), seqs) in &streams {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{org}/{system} out of order"
        );
        let mut expected = 1;
        for &q in seqs {
            if q > expected {
                gaps.push(TruthGap {
                    org: org.clone(),
                    system: system.clone(),
                    from: expected,
                    to: q - 1,
                });
            }
            expected = q + 1;
        }
    }
    let truth = s.scenario.truth();
    assert_eq!(gaps, truth.gaps);
    assert!(truth.gaps.iter().all(|g| g.system == ALTINN_ADAPTER));
    let missing: u64 = truth.gaps.iter().map(|g| g.to - g.from + 1).sum();
    assert_eq!(missing as usize, s.scenario.dropped);
}

#[test]
fn the_default_scenario_has_gaps_never_at_the_end_of_a_stream() {
    let s = generate(&Options::default());
    assert!(
        s.dropped > 5,
        "about 0.2 % of the ok altinn deliveries are dropped"
    );
    let mut totals = vec![0u32; s.streams.len()];
    for e in &s.events {
        totals[usize::from(e.stream)] += 1;
    }
    for &(stream, _, to) in &s.gaps {
        assert!(to < totals[usize::from(stream)]);
        assert_eq!(s.streams[usize::from(stream)].system, ALTINN_ADAPTER);
    }
    assert_eq!(s.truth().gaps.len(), s.gaps.len());
}

#[test]
fn append_order_time_range_and_spacing() {
    let s = sample();
    let end = parse_at(T_END);
    let start = parse_at("2018-07-01T00:00:00Z");
    let mut last = i64::MIN;
    let mut per_message: HashMap<String, Vec<i64>> = HashMap::new();
    for line in &s.lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let at = parse_at(&text(&v, "at"));
        assert!(at >= last, "append order is by `at`");
        assert!((start..end).contains(&at), "{line}");
        last = at;
        per_message.entry(text(&v, "message")).or_default().push(at);
    }
    for (m, ats) in &per_message {
        assert!(
            ats.windows(2).all(|w| w[1] - w[0] >= 5 * M_),
            "{m}: {ats:?}"
        );
    }
}

#[test]
fn truth_names_exactly_the_messages_of_the_events() {
    let s = sample();
    let mut named = BTreeSet::new();
    for line in &s.lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        named.insert(text(&v, "message"));
        if let Some(n) = v.get("new_message").and_then(Value::as_str) {
            named.insert(n.to_owned());
        }
    }
    let truth = s.scenario.truth();
    let keys: BTreeSet<String> = truth.verdicts.keys().cloned().collect();
    assert_eq!(named, keys);
    let originals = keys
        .iter()
        .filter(|k| !k.starts_with("GHOST-") && !k.contains("-BREV") && !k.contains("-R"))
        .count();
    assert_eq!(originals, truth.messages);
    assert_eq!(keys.iter().filter(|k| k.starts_with("GHOST-")).count(), 10);
}

#[test]
fn verdicts_follow_the_projection_rules() {
    for (seed, messages) in [(2023, 5000), (7, 3000)] {
        let owned;
        let (scenario, lines) = if seed == 2023 {
            (&sample().scenario, &sample().lines)
        } else {
            let s = generate(&Options { seed, messages });
            let l = lines_of(&s);
            owned = (s, l);
            (&owned.0, &owned.1)
        };
        let f = facts(lines);
        let now = parse_at(T_END);
        let truth = scenario.truth();
        let mut wrong = Vec::new();
        for m in f.keys() {
            let v = verdict(&f, m, now);
            let expected = truth.verdicts.get(m).map(String::as_str);
            if expected != Some(v) {
                wrong.push(format!("{m}: rules say {v}, truth {expected:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "seed {seed}: {} wrong, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(20)]
        );
        assert_eq!(f.len(), truth.verdicts.len());
    }
}

#[test]
fn anomalies_are_exactly_the_injected_ones() {
    let s = sample();
    let f = facts(&s.lines);
    let now = parse_at(T_END);
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    let mut add = |kind: &str, m: &str| {
        found.insert((kind.to_owned(), m.to_owned()));
    };
    // Recorded anomalies that depend on arrival order (§1.1 step 2).
    let mut known = HashSet::new();
    for line in &s.lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let m = text(&v, "message");
        match text(&v, "type").as_str() {
            "sent" => {
                known.insert(m);
            }
            "resent" => {
                if !known.contains(&m) {
                    add("resend_of_unknown_message", &m);
                }
                known.insert(text(&v, "new_message"));
            }
            _ => {
                if !known.contains(&m) {
                    add("event_for_unknown_message", &m);
                }
            }
        }
    }
    // The rest; events arrive in `at` order, so the order-free conditions suffice.
    for (m, x) in &f {
        if let (Some(o), Some(d)) = (x.opened, x.delivered)
            && o < d - SKEW
        {
            add("opened_before_delivered", m);
        }
        if let (Some(a), Some(o)) = (x.acked, x.opened)
            && a < o - SKEW
        {
            add("acknowledged_before_opened", m);
        }
        if let Some(sent) = &x.sent
            && x.events
                .iter()
                .any(|(at, t)| t != "sent" && *at < sent.at - SKEW)
        {
            add("event_before_sent", m);
        }
        let gone = [x.removed, x.sent.as_ref().and_then(|s| s.expires_at)]
            .into_iter()
            .flatten()
            .min();
        if let Some(d) = gone
            && x.events.iter().any(|(at, t)| {
                matches!(
                    t.as_str(),
                    "delivered" | "handed_off" | "received" | "opened" | "acknowledged"
                ) && *at > d + SKEW
            })
        {
            add("event_after_deletion", m);
        }
        if unmatched_hops(x).iter().any(|h| now > h + 24 * H_) {
            add("handoff_never_received", m);
        }
    }
    let truth = s.scenario.truth();
    let expected: BTreeSet<(String, String)> = truth
        .anomalies
        .iter()
        .map(|a| (a.kind.clone(), a.message.clone()))
        .collect();
    assert_eq!(found, expected);
    let count = |k: &str| truth.anomalies.iter().filter(|a| a.kind == k).count();
    assert_eq!(count("opened_before_delivered"), 10);
    assert_eq!(count("event_for_unknown_message"), 10);
    assert!(count("handoff_never_received") > 0);
    assert!(
        truth.anomalies.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
}

#[test]
fn verdict_counts_are_plausible() {
    let all = [
        "open",
        "at_risk",
        "late",
        "completed",
        "lost",
        "stuck_in_handoff",
        "resolved",
    ];
    for seed in [2023, 7] {
        let owned;
        let scenario = if seed == 2023 {
            &sample().scenario
        } else {
            owned = generate(&Options {
                seed,
                messages: 5000,
            });
            &owned
        };
        let truth = scenario.truth();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in truth.verdicts.values() {
            assert!(all.contains(&v.as_str()), "{v}");
            *counts.entry(v.as_str()).or_default() += 1;
        }
        for v in all {
            assert!(
                counts.get(v).copied().unwrap_or(0) > 0,
                "seed {seed}: no {v}: {counts:?}"
            );
        }
        assert!(counts["completed"] > truth.messages / 2, "{counts:?}");
        assert!(counts["completed"] > 5 * counts["late"], "{counts:?}");
    }
}

#[test]
fn reconcile_truth_follows_from_the_lists() {
    let s = sample();
    let f = facts(&s.lines);
    let known: HashSet<&str> = f
        .iter()
        .filter(|(_, x)| x.sent.is_some() || x.parent.is_some())
        .map(|(m, _)| m.as_str())
        .collect();
    let mut by_ref: HashMap<&str, Vec<&str>> = HashMap::new();
    for (m, x) in &f {
        if let Some(sent) = &x.sent {
            for r in sent.refs.values() {
                by_ref.entry(r.as_str()).or_default().push(m.as_str());
            }
        }
    }
    let find = |message: &str, reference: &str| -> Option<String> {
        if !message.is_empty() && known.contains(message) {
            return Some(message.to_owned());
        }
        match by_ref.get(reference) {
            Some(ms) if !reference.is_empty() => {
                assert_eq!(ms.len(), 1, "ambiguous ref {reference}");
                Some(ms[0].to_owned())
            }
            _ => None,
        }
    };
    let rows = |csv: &str| -> Vec<(u64, String, String)> {
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("message,ref,at"));
        lines
            .enumerate()
            .map(|(i, l)| {
                let cols: Vec<&str> = l.split(',').collect();
                assert_eq!(cols.len(), 3, "{l}");
                parse_at(cols[2]);
                (i as u64 + 2, cols[0].to_owned(), cols[1].to_owned())
            })
            .collect()
    };
    let row = |class: &str, list: &str, line: Option<u64>, message: &str, r: &str| TruthReconcile {
        class: class.to_owned(),
        list: list.to_owned(),
        line,
        message: message.to_owned(),
        r#ref: r.to_owned(),
    };

    let mut expected = Vec::new();
    let mut scope = BTreeSet::new();
    for (line, m, r) in rows(&s.scenario.police_export_csv()) {
        match find(&m, &r) {
            Some(x) => {
                scope.insert(x);
            }
            None => expected.push(row("sent_not_in_ledger", "sent", Some(line), &m, &r)),
        }
    }
    let mut received = HashSet::new();
    for (line, m, r) in rows(&s.scenario.municipality_csv()) {
        match find(&m, &r) {
            Some(x) => {
                assert!(f[x.as_str()].opened.is_some(), "{x} was opened");
                received.insert(x);
            }
            None => expected.push(row("received_not_sent", "received", Some(line), &m, &r)),
        }
    }
    for m in &scope {
        if !received.contains(m) {
            let refs = f[m.as_str()]
                .sent
                .as_ref()
                .expect("an original")
                .refs
                .iter();
            let refs: Vec<String> = refs.map(|(k, v)| format!("{k}={v}")).collect();
            expected.push(row(
                "in_ledger_not_received",
                "ledger",
                None,
                m,
                &refs.join(";"),
            ));
        }
    }
    expected.sort_by(|a, b| reconcile_key(a).cmp(&reconcile_key(b)));
    let truth = s.scenario.truth();
    assert_eq!(expected, truth.reconcile);
    let count = |c: &str| truth.reconcile.iter().filter(|r| r.class == c).count();
    assert_eq!(count("sent_not_in_ledger"), 5);
    assert_eq!(count("received_not_sent"), 3);
    assert!(count("in_ledger_not_received") > 0);
    assert!(!received.is_empty());
}

#[test]
fn truth_round_trips_through_json() {
    let truth = sample().scenario.truth();
    let json = serde_json::to_string(truth).expect("serialize");
    assert!(json.contains("\"ref\":"));
    let back: Truth = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(&back, truth);
}

#[test]
fn tiny_scenarios() {
    for messages in [0, 1, 2, 7, 60] {
        let s = generate(&Options { seed: 1, messages });
        let lines = lines_of(&s);
        assert_eq!(lines.len(), s.event_count());
        let truth = s.truth();
        assert_eq!(truth.messages, messages);
        for line in &lines {
            assert!(
                ledger_core::Event::from_json_as(line.as_bytes(), 2).is_ok(),
                "{line}"
            );
        }
        let f = facts(&lines);
        let now = parse_at(T_END);
        for m in f.keys() {
            assert_eq!(
                Some(verdict(&f, m, now)),
                truth.verdicts.get(m).map(String::as_str)
            );
        }
    }
}
