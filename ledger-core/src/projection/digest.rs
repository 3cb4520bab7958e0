//! Projection digests (docs/projections.md §6): a hash over the canonical projection
//! state, so two replays (or two machines) can show they agree in one line.

use serde::Serialize;
use serde_json::{Value, json};

use crate::hash::{Hash, HashAlg};

use super::Instant;
use super::facts::Facts;
use super::verdict::{DeadlineKind, DeadlineState, Evaluation, Evaluator, ExpirySource};
use super::{Policy, SKEW_SECONDS};

/// The three digests `replay` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// Over the facts: independent of policy and time.
    pub facts: Hash,
    /// Over the policy.
    pub policy: Hash,
    /// Over the evaluation (commits to facts, policy and time): the projection digest.
    pub evaluation: Hash,
}

/// Appends `v` in JCS (RFC 8785) and a newline (the events' canonicalizer: serde_json
/// where that is JCS already, the general one otherwise).
fn jcs_line(out: &mut Vec<u8>, v: &Value) {
    out.extend(crate::event::canonical_json(v).expect("json values canonicalize"));
    out.push(b'\n');
}

fn sorted_ids(facts: &Facts) -> Vec<&str> {
    let mut ids: Vec<&str> = facts.messages().map(|(k, _)| k).collect();
    // JCS and this order agree for the ASCII ids of practice; bytes are the rule.
    ids.sort_unstable();
    ids
}

/// H(`head` ‖ the line of each of `ids`, in order ‖ `tail`). Lines are built on every
/// core, a round of slices at a time, and hashed in order as each round ends, so
/// memory holds one round, not every line.
fn digest_lines<'a>(
    alg: HashAlg,
    head: &[u8],
    ids: &[&'a str],
    line: impl Fn(&mut Vec<u8>, &'a str) + Sync,
    tail: &[u8],
) -> Hash {
    const SLICE: usize = 4096;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut h = alg.hasher();
    h.update(head);
    let mut buffers: Vec<Vec<u8>> = (0..threads).map(|_| Vec::new()).collect();
    let line = &line;
    for round in ids.chunks(SLICE * threads) {
        std::thread::scope(|scope| {
            for (slice, out) in round.chunks(SLICE).zip(buffers.iter_mut()) {
                out.clear();
                scope.spawn(move || {
                    for id in slice {
                        line(out, id);
                    }
                });
            }
        });
        for out in buffers.iter().take(round.len().div_ceil(SLICE)) {
            h.update(out);
        }
    }
    h.update(tail);
    h.finalize()
}

/// `H("ledger-projection/3 facts\n" ‖ header ‖ one line per message ‖ per stream)`.
pub fn facts_digest(facts: &Facts, alg: HashAlg) -> Hash {
    let mut head = b"ledger-projection/3 facts\n".to_vec();
    jcs_line(
        &mut head,
        &json!({"covered": facts.covered(), "skew_seconds": SKEW_SECONDS}),
    );
    let ids = sorted_ids(facts);
    let line = |out: &mut Vec<u8>, id: &str| {
        let m = facts.message(id).expect("listed");
        let mut v = serde_json::to_value(m).expect("facts serialize");
        if let Value::Object(o) = &mut v {
            o.remove("first_other");
            o.remove("last_activity");
            o.insert("kind".into(), json!("message"));
            o.insert("message".into(), json!(id));
            o.insert("status".into(), json!(m.status().name()));
        }
        jcs_line(out, &v);
    };
    let mut tail = Vec::new();
    for (org, system, s) in facts.streams() {
        let mut v = serde_json::to_value(s).expect("streams serialize");
        if let Value::Object(o) = &mut v {
            o.insert("kind".into(), json!("stream"));
            o.insert("org".into(), json!(org));
            o.insert("system".into(), json!(system));
        }
        jcs_line(&mut tail, &v);
    }
    digest_lines(alg, &head, &ids, line, &tail)
}

/// One message's judgement as its digest line has it. The fields (and those of the
/// structs inside) are declared in JCS order (by key bytes; every key is ASCII) and
/// every number is an integer within 2^53, so serde_json writes the canonical line
/// directly, with no value tree (a test holds it to the canonicalizer).
#[derive(Serialize)]
struct EvaluationLine<'a> {
    anomalies: Vec<AnomalyLine>,
    deadlines: Vec<DeadlineLine>,
    expires_at: Option<Instant>,
    expires_source: Option<ExpirySource>,
    message: &'a str,
    reason: &'a str,
    verdict: &'static str,
    via: Option<&'a str>,
}

#[derive(Serialize)]
struct AnomalyLine {
    hop_seq: u64,
    kind: &'static str,
}

#[derive(Serialize)]
struct DeadlineLine {
    at: Option<Instant>,
    due: Instant,
    hop_seq: Option<u64>,
    kind: DeadlineKind,
    state: DeadlineState,
}

/// Appends the digest line of `e` and a newline.
pub(super) fn evaluation_line(out: &mut Vec<u8>, e: &Evaluation<'_>) {
    let line = EvaluationLine {
        anomalies: e
            .evaluated_anomalies
            .iter()
            .map(|(k, seq)| AnomalyLine {
                hop_seq: *seq,
                kind: k.name(),
            })
            .collect(),
        deadlines: e
            .deadlines
            .iter()
            .map(|d| DeadlineLine {
                at: d.at,
                due: d.due,
                hop_seq: d.hop_seq,
                kind: d.kind,
                state: d.state,
            })
            .collect(),
        expires_at: e.expires_at,
        expires_source: e.expires_source,
        message: e.message,
        reason: e.reason,
        verdict: e.verdict.name(),
        via: e.via,
    };
    serde_json::to_writer(&mut *out, &line).expect("a line serializes");
    out.push(b'\n');
}

/// The evaluation digest: facts, policy and time, then each message's judgement.
pub fn evaluation_digest(eval: &Evaluator<'_>, policy: &Policy, alg: HashAlg) -> Digests {
    let facts = facts_digest(eval.facts(), alg);
    let policy_digest = policy.digest(alg);
    let mut head = b"ledger-projection/3 evaluation\n".to_vec();
    jcs_line(
        &mut head,
        &json!({
            "facts": crate::hash::to_hex(&facts),
            "policy": crate::hash::to_hex(&policy_digest),
            "now": eval.now().to_string(),
        }),
    );
    let ids = sorted_ids(eval.facts());
    let line = |out: &mut Vec<u8>, id: &str| {
        evaluation_line(out, &eval.evaluate(id).expect("listed"));
    };
    Digests {
        facts,
        policy: policy_digest,
        evaluation: digest_lines(alg, &head, &ids, line, &[]),
    }
}
