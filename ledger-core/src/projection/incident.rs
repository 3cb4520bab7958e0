//! Incidents: what went wrong in a message's life, as episodes (docs/projections.md
//! §2.6). The verdict is where a message stands now; incidents are its history, so a
//! message deleted unread and resent months later stays counted after the resend
//! is opened.

use serde::Serialize;

use super::Instant;
use super::facts::MessageFacts;
use super::verdict::{DeadlineKind, DeadlineState, Evaluation, Evaluator};

/// What kind of thing went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Deleted or expired (by the channel, while it held the message) before anyone
    /// opened it or a resend of it.
    LostUnread,
    /// The channel reported a failure before anyone opened it or a resend of it.
    Failed,
    /// A hand-off between systems not received by its target in time.
    HandoffNeverReceived,
    /// The open deadline passed unopened although the message had reached the
    /// recipient (delivered, handed off or received).
    OpenedLate,
    /// The open deadline passed with no sign that the message ever reached the
    /// recipient.
    NeverDelivered,
    /// Opened, but the acknowledgement deadline passed without one.
    AckLate,
}

impl IncidentKind {
    /// Every kind, in report order.
    pub const ALL: [IncidentKind; 6] = [
        IncidentKind::LostUnread,
        IncidentKind::Failed,
        IncidentKind::HandoffNeverReceived,
        IncidentKind::NeverDelivered,
        IncidentKind::OpenedLate,
        IncidentKind::AckLate,
    ];

    /// The snake_case name used in output and filters.
    pub fn name(self) -> &'static str {
        match self {
            IncidentKind::LostUnread => "lost_unread",
            IncidentKind::Failed => "failed",
            IncidentKind::HandoffNeverReceived => "handoff_never_received",
            IncidentKind::OpenedLate => "opened_late",
            IncidentKind::NeverDelivered => "never_delivered",
            IncidentKind::AckLate => "ack_late",
        }
    }

    /// Parses a name (`-` for `_` accepted).
    pub fn from_name(s: &str) -> Option<IncidentKind> {
        let s = s.replace('-', "_");
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One episode of a message's life that went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident<'a> {
    /// What went wrong.
    pub kind: IncidentKind,
    /// When it went wrong (event time): the loss event, or the deadline that passed.
    pub began_at: Instant,
    /// For `lost_unread`: `deleted`, `expired` or `expiry_passed`; for `failed`: the
    /// channel's error code, when it gave one.
    pub cause: Option<&'a str>,
    /// The entries that show it: the loss event, the `sent`, or the hand-off.
    pub evidence: Vec<u64>,
    /// When it ended (event time); `None` while it is still open.
    pub ended_at: Option<Instant>,
    /// How it ended: `opened`, `resend_opened`, `acknowledged`, `received`,
    /// `delivered`, `resolved`, or `lost` (a deadline episode overtaken by a loss).
    pub ended_by: Option<&'static str>,
    /// The entry that ended it.
    pub ended_seq: Option<u64>,
    /// The resend whose open ended it, when not the message itself (bare id).
    #[serde(serialize_with = "bare_ids")]
    pub via: Option<&'a str>,
}

fn bare_ids<S: serde::Serializer>(key: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_some(crate::event::split_message_key(k).1),
        None => s.serialize_none(),
    }
}

impl Incident<'_> {
    /// Whether it has not ended.
    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// A loss that may begin an episode: (at, evidence seq, kind, cause).
type Loss<'a> = (Instant, u64, IncidentKind, Option<&'a str>);

/// An event that may end an episode: (at, seq, how, via).
type Ending<'a> = (Instant, u64, &'static str, Option<&'a str>);

/// The first of `ends` in `began ..= now`.
fn first_after<'a>(
    began: Instant,
    now: Instant,
    ends: &[Option<Ending<'a>>],
) -> Option<Ending<'a>> {
    ends.iter()
        .flatten()
        .filter(|e| e.0 >= began && e.0 <= now)
        .min_by_key(|e| (e.0, e.1))
        .copied()
}

impl<'a> Evaluator<'a> {
    /// The incidents of an evaluated message (from [`Evaluator::evaluate`]), by
    /// `began_at` then kind. Rules: docs/projections.md §2.6.
    pub fn incidents(&self, e: &Evaluation<'a>) -> Vec<Incident<'a>> {
        match self.facts().get(e.message) {
            Some((id, m)) => self.incidents_known(id, m, e),
            None => Vec::new(),
        }
    }

    /// [`Self::incidents`] of a message whose facts are at hand.
    pub(crate) fn incidents_known(
        &self,
        id: &'a str,
        m: &'a MessageFacts,
        e: &Evaluation<'a>,
    ) -> Vec<Incident<'a>> {
        let now = self.now();
        // Most messages went right: every incident needs a deadline not met in time, a
        // loss event, or an expiry passed before any open. This test is implied by
        // the rules below; it only spares the work.
        let late = |d: &super::verdict::Deadline| {
            matches!(d.state, DeadlineState::Missed | DeadlineState::MetLate)
        };
        let may_have = e.deadlines.iter().any(late)
            || m.expired.is_some()
            || m.deleted.is_some()
            || m.failed.is_some()
            || e.expires_at
                .is_some_and(|x| x <= now && e.opened_at.is_none_or(|o| o > x));
        if !may_have {
            return Vec::new();
        }
        let chain = self.chain_signals(id, m);
        let open = chain.open;
        let resolved = self
            .resolution_of(id, m)
            .map(|r| (r.at, r.seq, "resolved", None::<&str>));
        // Nothing begins after a `resolved`: the case was closed.
        let before_resolution = |t: Instant| resolved.is_none_or(|r| t < r.0);
        let opened_end = open.map(|(at, seq, via)| {
            let how = if via.is_none() {
                "opened"
            } else {
                "resend_opened"
            };
            (at, seq, how, via)
        });
        let mut out = Vec::new();

        // The loss: the first deletion, expiry (while the channel held it) or failure
        // before any open in the chain.
        let custody_from = m.handoffs.iter().map(|h| h.at).min();
        let held = |t: Instant| custody_from.is_none_or(|c| t < c);
        let expires = e.expires_at.filter(|&x| x <= now && held(x));
        let sent_seq = m.sent.as_ref().map(|s| s.seq);
        let candidates: [Option<Loss<'a>>; 4] = [
            m.expired
                .as_ref()
                .filter(|x| held(x.at))
                .map(|x| (x.at, x.seq, IncidentKind::LostUnread, Some("expired"))),
            m.deleted
                .as_ref()
                .map(|x| (x.at, x.seq, IncidentKind::LostUnread, Some("deleted"))),
            m.failed
                .as_ref()
                .map(|x| (x.at, x.seq, IncidentKind::Failed, x.detail.as_deref())),
            expires.map(|x| {
                (
                    x,
                    sent_seq.unwrap_or(0),
                    IncidentKind::LostUnread,
                    Some("expiry_passed"),
                )
            }),
        ];
        // Ties go to the recorded event over the inferred expiry (array order).
        let loss = candidates
            .into_iter()
            .enumerate()
            .filter_map(|(rank, c)| c.map(|c| (rank, c)))
            .filter(|(_, c)| c.0 <= now && open.is_none_or(|o| o.0 > c.0) && before_resolution(c.0))
            .min_by_key(|(rank, c)| (c.0, *rank))
            .map(|(_, c)| c);
        if let Some((at, seq, kind, cause)) = loss {
            let end = first_after(at, now, &[opened_end, resolved]);
            out.push(Incident {
                kind,
                began_at: at,
                cause,
                evidence: vec![seq],
                ended_at: end.map(|x| x.0),
                ended_by: end.map(|x| x.2),
                ended_seq: end.map(|x| x.1),
                via: end.and_then(|x| x.3),
            });
        }
        let lost_end = loss.map(|(at, seq, ..)| (at, seq, "lost", None));

        // Deadlines that passed (strictly after `due`, at `now`) before the loss.
        for d in &e.deadlines {
            if !(now > d.due && before_resolution(d.due) && loss.is_none_or(|l| l.0 > d.due)) {
                continue;
            }
            match d.kind {
                DeadlineKind::Open if open.is_none_or(|o| o.0 > d.due) => {
                    let arrived = arrival(m, Instant::EPOCH).filter(|a| a.0 <= d.due);
                    let (kind, ends) = if arrived.is_some() {
                        (
                            IncidentKind::OpenedLate,
                            vec![opened_end, resolved, lost_end],
                        )
                    } else {
                        let delivered = arrival(m, d.due).map(|a| (a.0, a.1, "delivered", None));
                        (
                            IncidentKind::NeverDelivered,
                            vec![delivered, opened_end, resolved, lost_end],
                        )
                    };
                    let end = first_after(d.due, now, &ends);
                    out.push(deadline_incident(kind, d.due, sent_seq, end));
                }
                DeadlineKind::Acknowledge
                    if open.is_some_and(|o| o.0 <= d.due)
                        && chain.ack.is_none_or(|a| a.0 > d.due) =>
                {
                    let acked = chain.ack.map(|(at, seq)| (at, seq, "acknowledged", None));
                    let end = first_after(d.due, now, &[acked, resolved, lost_end]);
                    out.push(deadline_incident(
                        IncidentKind::AckLate,
                        d.due,
                        sent_seq,
                        end,
                    ));
                }
                DeadlineKind::HandoffReceive => {
                    let Some(hop) = m.handoffs.iter().find(|h| Some(h.seq) == d.hop_seq) else {
                        continue;
                    };
                    if d.at.is_some_and(|a| a <= d.due) {
                        continue;
                    }
                    let received =
                        d.at.zip(hop.received_seq)
                            .map(|(at, seq)| (at, seq, "received", None));
                    let end = first_after(d.due, now, &[received, resolved]);
                    out.push(deadline_incident(
                        IncidentKind::HandoffNeverReceived,
                        d.due,
                        Some(hop.seq),
                        end,
                    ));
                }
                _ => {}
            }
        }
        out.sort_by_key(|i| (i.began_at, i.kind));
        out
    }
}

fn deadline_incident<'a>(
    kind: IncidentKind,
    due: Instant,
    evidence: Option<u64>,
    end: Option<Ending<'a>>,
) -> Incident<'a> {
    Incident {
        kind,
        began_at: due,
        cause: None,
        evidence: evidence.into_iter().collect(),
        ended_at: end.map(|x| x.0),
        ended_by: end.map(|x| x.2),
        ended_seq: end.map(|x| x.1),
        via: end.and_then(|x| x.3),
    }
}

/// The first sign, at or after `from`, that the message reached the recipient's
/// side: `delivered`, a hand-off, or a `received` (at, seq).
fn arrival(m: &MessageFacts, from: Instant) -> Option<(Instant, u64)> {
    let delivered = m.delivered.as_ref().map(|d| (d.at, d.seq));
    let hops = m.handoffs.iter().map(|h| (h.at, h.seq));
    let receipts = m.receipts.iter().map(|r| (r.at, r.seq));
    delivered
        .into_iter()
        .chain(hops)
        .chain(receipts)
        .filter(|x| x.0 >= from)
        .min()
}
