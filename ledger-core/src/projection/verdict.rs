//! Evaluation: facts + policy + a time ("now") → deadlines and a verdict per message
//! (docs/projections.md §2). Nothing here is persisted; it is cheap to recompute, so
//! a policy change takes effect at the next question.

use serde::Serialize;

use super::Instant;
use super::facts::{AnomalyKind, Facts, MessageFacts, Resolution};
use super::policy::{Policy, Rule};

/// What a regulator filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// In flight, within its deadlines.
    Open,
    /// A deadline passed without the event it waits for, or expiry is near.
    AtRisk,
    /// Opened or acknowledged after its deadline.
    Late,
    /// Opened (and acknowledged, where required) in time.
    Completed,
    /// Expired, deleted or failed without being opened, and no resend was opened.
    Lost,
    /// Handed off between systems and never received.
    StuckInHandoff,
    /// A `resolved` event closed it.
    Resolved,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Lost,
        Verdict::StuckInHandoff,
        Verdict::AtRisk,
        Verdict::Late,
        Verdict::Open,
        Verdict::Completed,
        Verdict::Resolved,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::AtRisk => "at_risk",
            Verdict::Late => "late",
            Verdict::Completed => "completed",
            Verdict::Lost => "lost",
            Verdict::StuckInHandoff => "stuck_in_handoff",
            Verdict::Resolved => "resolved",
        }
    }

    /// Parses a name; the report spellings `at-risk` and `stuck` are accepted too.
    pub fn from_name(s: &str) -> Option<Verdict> {
        match s {
            "at-risk" => Some(Verdict::AtRisk),
            "stuck" | "stuck-in-handoff" => Some(Verdict::StuckInHandoff),
            _ => Self::ALL.into_iter().find(|v| v.name() == s),
        }
    }
}

/// Which deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// Opened within `open_within` of the send.
    Open,
    /// Acknowledged within `ack_within` of the send.
    Acknowledge,
    /// A hand-off received within `handoff_receive_within`.
    HandoffReceive,
}

/// Where a deadline stands at the evaluation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineState {
    /// Its event came at or before `due`.
    Met,
    /// Its event came after `due`.
    MetLate,
    /// No event, and `due` has passed.
    Missed,
    /// No event yet, `due` not passed.
    Pending,
}

/// One deadline of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// Which.
    pub kind: DeadlineKind,
    /// The hand-off it belongs to.
    pub hop_seq: Option<u64>,
    /// When it falls due.
    pub due: Instant,
    /// Where it stands.
    pub state: DeadlineState,
    /// When the event that satisfied it happened.
    pub at: Option<Instant>,
}

/// Where `expires_at` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirySource {
    /// The `sent` event's `expires_at`.
    Event,
    /// The policy's `expires_after`.
    Policy,
}

fn bare_id<S: serde::Serializer>(key: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(crate::event::split_message_key(key).1)
}

fn bare_ids<S: serde::Serializer>(key: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_some(crate::event::split_message_key(k).1),
        None => s.serialize_none(),
    }
}

impl Evaluation<'_> {
    /// The message's own id (a format-2 key without its parties).
    pub fn id(&self) -> &str {
        crate::event::split_message_key(self.message).1
    }
}

/// A message judged under a policy at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation<'a> {
    /// The message's key ([`crate::event::message_key`]); answers show its bare id
    /// and its parties.
    #[serde(serialize_with = "bare_id")]
    pub message: &'a str,
    /// The verdict.
    pub verdict: Verdict,
    /// Why (a fixed word per verdict rule, or the resolution's outcome).
    pub reason: &'a str,
    /// Effective category (inherited by resends).
    pub category: Option<&'a str>,
    /// Effective channel.
    pub channel: Option<&'a str>,
    /// Effective sender.
    pub from: Option<&'a str>,
    /// Effective recipient.
    pub to: Option<&'a str>,
    /// When it was sent (or resent as this message).
    pub origin_at: Option<Instant>,
    /// The due time of the deadline that decided the verdict.
    pub due: Option<Instant>,
    /// The earliest open signal in its resend chain.
    pub opened_at: Option<Instant>,
    /// The resend that gave that signal, when not the message itself.
    #[serde(serialize_with = "bare_ids")]
    pub via: Option<&'a str>,
    /// The last message of its resend chain, when it was resent.
    #[serde(serialize_with = "bare_ids")]
    pub resent_to: Option<&'a str>,
    /// Who resolved it (the reporting organisation of the deciding `resolved`), when
    /// it was resolved.
    pub resolved_by: Option<&'a str>,
    /// When the channel deletes it.
    pub expires_at: Option<Instant>,
    /// Where `expires_at` came from.
    pub expires_source: Option<ExpirySource>,
    /// Its deadlines.
    pub deadlines: Vec<Deadline>,
    /// Evaluated anomalies (hand-offs never received in time), by hop seq.
    pub evaluated_anomalies: Vec<(AnomalyKind, u64)>,
    /// Number of recorded anomalies.
    pub recorded_anomalies: usize,
}

/// Open and acknowledgement signals of a resend chain.
pub(crate) struct ChainSignals<'a> {
    /// The earliest open signal: (at, seq, the resend that gave it, None when the
    /// message itself did).
    pub open: Option<(Instant, u64, Option<&'a str>)>,
    /// The earliest acknowledgement: (at, seq).
    pub ack: Option<(Instant, u64)>,
    /// Messages in the chain.
    pub len: usize,
}

/// A message's first `received` (at, seq).
fn first_receipt(m: &MessageFacts) -> Option<(Instant, u64)> {
    m.receipts.iter().map(|r| (r.at, r.seq)).min()
}

/// Judges messages of one set of facts under one policy at one time.
pub struct Evaluator<'a> {
    facts: &'a Facts,
    policy: &'a Policy,
    now: Instant,
}

impl<'a> Evaluator<'a> {
    /// An evaluator at time `now`.
    pub fn new(facts: &'a Facts, policy: &'a Policy, now: Instant) -> Self {
        Evaluator { facts, policy, now }
    }

    /// The evaluation time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The facts judged.
    pub fn facts(&self) -> &'a Facts {
        self.facts
    }

    /// The message and its ancestors, nearest first (accepted links only).
    fn lineage(
        &self,
        id: &'a str,
        m: &'a MessageFacts,
    ) -> impl Iterator<Item = (&'a str, &'a MessageFacts)> + 'a {
        let facts = self.facts;
        let mut cur = Some((id, m));
        let mut steps = 0usize;
        std::iter::from_fn(move || {
            let (c, m) = cur?;
            steps += 1;
            if steps > 1 && steps > facts.message_count() + 1 {
                return None;
            }
            cur = m.resent_from.as_ref().and_then(|l| facts.get(&l.message));
            Some((c, m))
        })
    }

    /// The message and every resend reachable from it.
    fn descendants(&self, id: &'a str, m: &'a MessageFacts) -> Vec<(&'a str, &'a MessageFacts)> {
        let mut out = vec![(id, m)];
        if m.resent_to.is_empty() {
            return out;
        }
        let mut stack: Vec<&str> = m
            .resent_to
            .iter()
            .rev()
            .map(|l| l.message.as_str())
            .collect();
        while let Some(c) = stack.pop() {
            if out.len() > self.facts.message_count() {
                break;
            }
            if let Some((c, m)) = self.facts.get(c) {
                out.push((c, m));
                stack.extend(m.resent_to.iter().rev().map(|l| l.message.as_str()));
            }
        }
        out
    }

    fn rule_of(&self, id: &'a str, m: &'a MessageFacts) -> Rule {
        let sent = self.lineage(id, m).find_map(|(_, m)| m.sent.as_ref());
        let category = sent.map(|s| &*s.category);
        let channel = m
            .sent
            .as_ref()
            .map(|s| &*s.channel)
            .or(m.resent_from.as_ref().map(|l| &*l.channel));
        self.policy.rule(category, channel)
    }

    /// The earliest open signal of one message, under its own rule.
    fn open_signal(&self, m: &'a MessageFacts, rule: &Rule) -> Option<(Instant, u64)> {
        let receipt = (rule.received_counts_as_opened || rule.received_completes)
            .then(|| first_receipt(m))
            .flatten();
        [
            m.opened.as_ref().map(|o| (o.at, o.seq)),
            m.acknowledged.as_ref().map(|a| (a.at, a.seq)),
            receipt,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The earliest acknowledgement of one message, under its own rule: its
    /// `acknowledged`, or its first receipt where a receipt completes a message.
    fn ack_signal(&self, m: &'a MessageFacts, rule: &Rule) -> Option<(Instant, u64)> {
        let receipt = rule.received_completes.then(|| first_receipt(m)).flatten();
        [m.acknowledged.as_ref().map(|a| (a.at, a.seq)), receipt]
            .into_iter()
            .flatten()
            .min()
    }

    /// The earliest open signal and acknowledgement in the message's resend chain
    /// (itself and every resend reachable from it): a resend's open counts for the
    /// original, however long the chain.
    pub(crate) fn chain_signals(&self, id: &'a str, m: &'a MessageFacts) -> ChainSignals<'a> {
        self.chain_signals_ruled(id, m, &self.rule_of(id, m))
    }

    /// [`Self::chain_signals`] with the message's own rule already known.
    fn chain_signals_ruled(
        &self,
        id: &'a str,
        m: &'a MessageFacts,
        own: &Rule,
    ) -> ChainSignals<'a> {
        // Most messages were never resent: their chain is themselves, with nothing
        // to collect.
        let own_ack = self.ack_signal(m, own);
        if m.resent_to.is_empty() {
            return ChainSignals {
                open: self.open_signal(m, own).map(|(at, seq)| (at, seq, None)),
                ack: own_ack,
                len: 1,
            };
        }
        let chain = self.descendants(id, m);
        let mut open: Option<(Instant, u64, Option<&'a str>)> = None;
        let mut ack: Option<(Instant, u64)> = None;
        for (i, (d, dm)) in chain.iter().enumerate() {
            let rule = if i == 0 { *own } else { self.rule_of(d, dm) };
            if let Some((at, seq)) = self.open_signal(dm, &rule)
                && open.is_none_or(|(oa, os, _)| (at, seq) < (oa, os))
            {
                open = Some((at, seq, (i > 0 && *d != id).then_some(*d)));
            }
            if let Some(a) = self.ack_signal(dm, &rule)
                && ack.is_none_or(|x| a < x)
            {
                ack = Some(a);
            }
        }
        ChainSignals {
            open,
            ack,
            len: chain.len(),
        }
    }

    /// The `resolved` that closes the message: its own or its nearest ancestor's.
    pub(crate) fn resolution_of(&self, id: &'a str, m: &'a MessageFacts) -> Option<&'a Resolution> {
        self.lineage(id, m).find_map(|(_, m)| m.resolved.as_deref())
    }

    /// Judges one message; `None` if the ledger has never heard of it.
    pub fn evaluate(&self, id: &str) -> Option<Evaluation<'a>> {
        let (id, m) = self.facts.get(id)?;
        Some(self.evaluate_known(id, m))
    }

    /// Judges every message, in no particular order.
    pub fn evaluate_all(&self) -> impl Iterator<Item = Evaluation<'a>> + '_ {
        self.facts
            .messages()
            .map(|(id, m)| self.evaluate_known(id, m))
    }

    pub(crate) fn evaluate_known(&self, id: &'a str, m: &'a MessageFacts) -> Evaluation<'a> {
        let now = self.now;
        let sent = self.lineage(id, m).find_map(|(_, m)| m.sent.as_ref());
        let origin_at = m
            .sent
            .as_ref()
            .map(|s| s.at)
            .or(m.resent_from.as_ref().map(|l| l.at));
        let channel = m
            .sent
            .as_ref()
            .map(|s| &*s.channel)
            .or(m.resent_from.as_ref().map(|l| &*l.channel));
        let rule = self.rule_of(id, m);
        let (expires_at, expires_source) = match (
            m.sent.as_ref().and_then(|s| s.expires_at),
            origin_at,
            rule.expires_after,
        ) {
            (Some(t), _, _) => (Some(t), Some(ExpirySource::Event)),
            (None, Some(o), Some(d)) => (Some(o.plus_seconds(d)), Some(ExpirySource::Policy)),
            _ => (None, None),
        };
        let signals = self.chain_signals_ruled(id, m, &rule);
        let (open, ack) = (signals.open, signals.ack.map(|a| a.0));
        let chain_len = signals.len;
        let resolution = self.resolution_of(id, m);

        let due = |within: Option<i64>| origin_at.zip(within).map(|(o, w)| o.plus_seconds(w));
        let state = |due: Instant, at: Option<Instant>| match at {
            Some(a) if a <= due => DeadlineState::Met,
            Some(_) => DeadlineState::MetLate,
            None if now > due => DeadlineState::Missed,
            None => DeadlineState::Pending,
        };
        let open_due = due(rule.open_within);
        let ack_due = due(rule.ack_within);
        let open_at = open.map(|o| o.0);
        let mut deadlines = Vec::new();
        if let Some(d) = open_due {
            deadlines.push(Deadline {
                kind: DeadlineKind::Open,
                hop_seq: None,
                due: d,
                state: state(d, open_at),
                at: open_at,
            });
        }
        if let Some(d) = ack_due {
            deadlines.push(Deadline {
                kind: DeadlineKind::Acknowledge,
                hop_seq: None,
                due: d,
                state: state(d, ack),
                at: ack,
            });
        }
        let mut evaluated_anomalies = Vec::new();
        let mut stuck_due = None;
        if let Some(w) = rule.handoff_receive_within {
            for h in &m.handoffs {
                let d = h.at.plus_seconds(w);
                let at = h
                    .received_seq
                    .and_then(|s| m.receipts.iter().find(|r| r.seq == s))
                    .map(|r| r.at);
                let st = match (h.received_seq, now > d) {
                    (Some(_), _) => {
                        if at.is_some_and(|a| a <= d) {
                            DeadlineState::Met
                        } else {
                            DeadlineState::MetLate
                        }
                    }
                    (None, true) => DeadlineState::Missed,
                    (None, false) => DeadlineState::Pending,
                };
                if st == DeadlineState::Missed {
                    evaluated_anomalies.push((AnomalyKind::HandoffNeverReceived, h.seq));
                    stuck_due = stuck_due.or(Some(d));
                }
                deadlines.push(Deadline {
                    kind: DeadlineKind::HandoffReceive,
                    hop_seq: Some(h.seq),
                    due: d,
                    state: st,
                    at,
                });
            }
        }

        // Custody (docs/projections.md §2.2): once the recipient's system took the
        // message out of the channel (its first hand-off), the channel's expiry no
        // longer applies; an expiry before that still does.
        let custody_from = m.handoffs.iter().map(|h| h.at).min();
        let channel_holds = |t: Instant| custody_from.is_none_or(|c| t < c);

        let (verdict, reason, decided): (Verdict, &'a str, Option<Instant>) = if let Some(r) =
            resolution
        {
            (Verdict::Resolved, r.outcome.as_str(), None)
        } else if let Some(o) = open_at {
            match (open_due, ack_due) {
                (Some(d), _) if o > d => (Verdict::Late, "opened_late", Some(d)),
                (_, Some(d)) if ack.is_some_and(|a| a > d) => (Verdict::Late, "ack_late", Some(d)),
                (_, Some(d)) if ack.is_none() && now > d => {
                    (Verdict::AtRisk, "ack_deadline_passed", Some(d))
                }
                (_, Some(d)) if ack.is_none() => (Verdict::Open, "awaiting_ack", Some(d)),
                _ => (Verdict::Completed, "completed", None),
            }
        } else if let Some(r) = [
            m.expired
                .as_ref()
                .filter(|x| channel_holds(x.at))
                .map(|_| "expired"),
            m.deleted.as_ref().map(|_| "deleted"),
            m.failed.as_ref().map(|_| "failed"),
            expires_at
                .filter(|&e| now >= e && channel_holds(e))
                .map(|_| "expiry_passed"),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            let decided = (r == "expiry_passed").then_some(expires_at).flatten();
            (Verdict::Lost, r, decided)
        } else if let Some(d) = stuck_due {
            (Verdict::StuckInHandoff, "handoff_unreceived", Some(d))
        } else if let Some(d) = open_due.filter(|&d| now > d) {
            (Verdict::AtRisk, "open_deadline_passed", Some(d))
        } else if let Some(e) = expires_at.filter(|&e| {
            custody_from.is_none()
                && rule
                    .warn_before_expiry
                    .is_some_and(|w| now >= e.plus_seconds(-w))
        }) {
            (Verdict::AtRisk, "expiry_warning", Some(e))
        } else {
            (Verdict::Open, "in_flight", open_due)
        };

        let mut last = None;
        let mut cur = m;
        for _ in 0..chain_len {
            match cur.resent_to.last() {
                Some(l) => {
                    last = Some(l.message.as_str());
                    match self.facts.message(&l.message) {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => break,
            }
        }
        Evaluation {
            message: id,
            verdict,
            reason,
            category: sent.map(|s| &*s.category),
            channel,
            from: sent
                .map(|s| &*s.from)
                .or_else(|| crate::event::split_message_key(id).0.map(|p| p.0)),
            to: sent
                .map(|s| &*s.to)
                .or_else(|| crate::event::split_message_key(id).0.map(|p| p.1)),
            origin_at,
            due: decided,
            opened_at: open_at,
            via: open.and_then(|o| o.2),
            resent_to: last,
            resolved_by: m.resolved.as_ref().map(|r| r.by.as_str()),
            expires_at,
            expires_source,
            deadlines,
            evaluated_anomalies,
            recorded_anomalies: m.anomalies.len(),
        }
    }
}
