//! Projection digests (docs/projections.md §6): a hash over the canonical projection
//! state, so two replays (or two machines) can show they agree in one line.

use serde_json::{Value, json};

use crate::hash::{Hash, HashAlg};

use super::facts::Facts;
use super::verdict::Evaluator;
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

fn jcs_line(out: &mut Vec<u8>, v: &Value) {
    out.extend(serde_json_canonicalizer::to_vec(v).expect("json values canonicalize"));
    out.push(b'\n');
}

fn sorted_ids(facts: &Facts) -> Vec<&str> {
    let mut ids: Vec<&str> = facts.messages().map(|(k, _)| k).collect();
    // JCS and this order agree for the ASCII ids of practice; bytes are the rule.
    ids.sort_unstable();
    ids
}

/// `H("ledger-projection/3 facts\n" ‖ header ‖ one line per message ‖ per stream)`.
pub fn facts_digest(facts: &Facts, alg: HashAlg) -> Hash {
    let mut out = b"ledger-projection/3 facts\n".to_vec();
    jcs_line(
        &mut out,
        &json!({"covered": facts.covered(), "skew_seconds": SKEW_SECONDS}),
    );
    for id in sorted_ids(facts) {
        let m = facts.message(id).expect("listed");
        let mut v = serde_json::to_value(m).expect("facts serialize");
        if let Value::Object(o) = &mut v {
            o.remove("first_other");
            o.remove("last_activity");
            o.insert("kind".into(), json!("message"));
            o.insert("message".into(), json!(id));
            o.insert("status".into(), json!(m.status().name()));
        }
        jcs_line(&mut out, &v);
    }
    for (org, system, s) in facts.streams() {
        let mut v = serde_json::to_value(s).expect("streams serialize");
        if let Value::Object(o) = &mut v {
            o.insert("kind".into(), json!("stream"));
            o.insert("org".into(), json!(org));
            o.insert("system".into(), json!(system));
        }
        jcs_line(&mut out, &v);
    }
    alg.digest(&[&out])
}

/// The evaluation digest: facts, policy and time, then each message's judgement.
pub fn evaluation_digest(eval: &Evaluator<'_>, policy: &Policy, alg: HashAlg) -> Digests {
    let facts = facts_digest(eval.facts(), alg);
    let policy_digest = policy.digest(alg);
    let mut out = b"ledger-projection/3 evaluation\n".to_vec();
    jcs_line(
        &mut out,
        &json!({
            "facts": crate::hash::to_hex(&facts),
            "policy": crate::hash::to_hex(&policy_digest),
            "now": eval.now().to_string(),
        }),
    );
    for id in sorted_ids(eval.facts()) {
        let e = eval.evaluate(id).expect("listed");
        let anomalies: Vec<Value> = e
            .evaluated_anomalies
            .iter()
            .map(|(k, seq)| json!({"kind": k.name(), "hop_seq": seq}))
            .collect();
        jcs_line(
            &mut out,
            &json!({
                "message": e.message,
                "verdict": e.verdict.name(),
                "reason": e.reason,
                "via": e.via,
                "expires_at": e.expires_at.map(|t| t.to_string()),
                "expires_source": e.expires_source,
                "deadlines": e.deadlines,
                "anomalies": anomalies,
            }),
        );
    }
    Digests {
        facts,
        policy: policy_digest,
        evaluation: alg.digest(&[&out]),
    }
}
