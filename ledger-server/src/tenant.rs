//! The tenant boundary, in one place: which messages, entries and stream items a
//! principal may see, and which events it may report. Every handler (questions, the
//! stream, the audit endpoints, the write endpoints) asks here; nothing else looks at
//! scopes to decide reach. README "Who can write what" is the rule in words.
//!
//! Reading:
//! - `ledger:regulator` sees everything; `ledger:audit` sees every entry (checkpoints,
//!   proofs, raw entries and receipts are about the whole log), but no verdicts;
//! - `ledger:read` sees a message when the principal's organisation is its sender or
//!   its recipient (inherited through resends), and the entries it reported itself;
//! - `ledger:write` alone sees the receipts of its own reports, nothing else.
//!
//! A message the principal may not see is answered as if it did not exist (404), so
//! the boundary does not leak which message ids exist.
//!
//! Writing (`ledger:write`): every event is reported by the token's organisation;
//! a `sent` declares that organisation as its sender, for a message id no other
//! sender has used; any other event is about a message the organisation is a party
//! of (sender or recipient), or it is a channel operator named in `ledger.toml`. A
//! refusal is decided from the request and the recorded parties only, and an unknown
//! message is refused exactly as another organisation's is.

use ledger_core::Event;
use ledger_core::event::EventType;
use ledger_core::projection::{Evaluation, Facts, Filter};
use serde_json::json;

use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::mappers::RefResolver;
use crate::projector::VerdictChange;

/// How much of the ledger's messages a principal reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every message.
    All,
    /// Messages this organisation sent or received.
    Party(String),
}

/// How much of the log's entries (receipts) a principal reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryReach {
    /// Every entry.
    All,
    /// Entries about messages this organisation is a party of, and its own reports.
    Party(String),
    /// Only the entries this organisation reported itself.
    Own(String),
}

/// What a principal receives on `GET /v1/stream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAccess {
    /// Receipts of entries.
    pub receipts: EntryReach,
    /// Verdict changes, if any.
    pub verdicts: Option<Reach>,
}

/// The principal's reach over messages; 403 without a reading scope.
pub fn message_reach(p: &Principal) -> Result<Reach, ApiError> {
    if p.has(Scope::Regulator) {
        return Ok(Reach::All);
    }
    p.require(&[Scope::Read, Scope::Regulator])?;
    Ok(Reach::Party(p.org.clone()))
}

/// The principal's reach over entries; 403 without any scope that reads or writes.
pub fn entry_reach(p: &Principal) -> Result<EntryReach, ApiError> {
    if p.has(Scope::Regulator) || p.has(Scope::Audit) {
        return Ok(EntryReach::All);
    }
    if p.has(Scope::Read) {
        return Ok(EntryReach::Party(p.org.clone()));
    }
    p.require(&[Scope::Read, Scope::Write, Scope::Audit, Scope::Regulator])?;
    Ok(EntryReach::Own(p.org.clone()))
}

/// What the principal receives on the stream: receipts as far as its entry reach
/// goes, verdict changes only as far as its message reach goes (an audit or a
/// write-only token gets none: `/v1/messages` refuses them too).
pub fn stream_access(p: &Principal) -> Result<StreamAccess, ApiError> {
    Ok(StreamAccess {
        receipts: entry_reach(p)?,
        verdicts: message_reach(p).ok(),
    })
}

/// Narrows a question's filter to the principal's reach.
pub fn scoped(reach: &Reach, mut filter: Filter) -> Filter {
    if let Reach::Party(org) = reach {
        filter.party = Some(org.clone());
    }
    filter
}

/// The predicate itself: whether a message with these parties is within reach.
pub fn may_see_parties(reach: &Reach, from: Option<&str>, to: Option<&str>) -> bool {
    match reach {
        Reach::All => true,
        Reach::Party(org) => from == Some(org.as_str()) || to == Some(org.as_str()),
    }
}

/// The keys of the messages a reader may mean by `id` (a bare id or `FROM/TO/ID`)
/// and may see: within reach by their parties.
pub fn find_messages(reach: &Reach, facts: &Facts, id: &str) -> Vec<String> {
    facts
        .find(id)
        .into_iter()
        .filter(|k| {
            let parties = facts
                .parties(k)
                .or(ledger_core::event::split_message_key(k).0);
            match parties {
                Some((f, t)) => may_see_parties(reach, Some(f), Some(t)),
                None => *reach == Reach::All,
            }
        })
        .map(str::to_string)
        .collect()
}

/// Whether an evaluated message is within reach.
pub fn may_see(reach: &Reach, e: &Evaluation<'_>) -> bool {
    may_see_parties(reach, e.from, e.to)
}

/// Whether a verdict change is within reach.
pub fn may_see_change(reach: &Reach, c: &VerdictChange) -> bool {
    may_see_parties(reach, c.sender.as_deref(), c.recipient.as_deref())
}

/// Whether an entry is within reach: `message_visible` says whether its message is
/// within the given message reach (asked only when it matters).
pub fn may_see_entry(
    reach: &EntryReach,
    reporter_org: &str,
    message_visible: impl FnOnce(&Reach) -> bool,
) -> bool {
    match reach {
        EntryReach::All => true,
        EntryReach::Own(org) => reporter_org == org,
        EntryReach::Party(org) => {
            reporter_org == org || message_visible(&Reach::Party(org.clone()))
        }
    }
}

/// 403 unless the principal may fetch raw entries (and the whole log's metadata).
pub fn require_audit(p: &Principal) -> Result<(), ApiError> {
    p.require(&[Scope::Audit, Scope::Regulator])
}

/// 403 unless the principal holds any scope that reads or writes: checkpoints and
/// proofs are hashes and sizes, so every party may check the log it relies on.
pub fn require_any(p: &Principal) -> Result<(), ApiError> {
    p.require(&[Scope::Read, Scope::Write, Scope::Audit, Scope::Regulator])
}

/// Which endpoint reports: a party's own system (`/v1/events`), or a channel's events
/// mapped for a party (`/v1/cloudevents`, `/v1/channels/…`), which may relay the
/// other side's facts as the channel saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `POST /v1/events`.
    Events,
    /// A channel endpoint.
    Channel,
}

/// Whether a party's adapter relays what a channel says (`reporter.system` names a
/// channel: `ledger_core::event::CHANNEL_SYSTEMS`), as a sender's Altinn adapter
/// reports the recipient's reading.
fn relayed_from_channel(e: &Event) -> bool {
    serde_json::from_slice::<serde_json::Value>(e.canonical_bytes())
        .ok()
        .and_then(|v| v["reporter"]["system"].as_str().map(str::to_string))
        .is_some_and(|s| ledger_core::event::CHANNEL_SYSTEMS.contains(&s.as_str()))
}

/// Whether the principal's organisation runs a channel (`[tenant] channel_operators`).
fn is_operator(p: &Principal, operators: &[String]) -> bool {
    operators.contains(&p.org)
}

/// 403 unless the principal may report every one of `events` (README "Who can write
/// what"): reported by its own organisation; a `sent` from itself, for a message id
/// no other sender has used; any other event about a message it is a party of, as
/// recorded in `facts` or declared by an earlier `sent` of the same request, unless
/// it is a channel operator. An unknown message is refused exactly as another
/// organisation's message is, so the answer tells nothing of other organisations.
/// Then each side reports its own facts (`wrong_side`): handed_off, received, opened
/// and acknowledged are the recipient's (a sender relays them only through a channel
/// endpoint), resent the sender's.
pub fn authorize_events(
    p: &Principal,
    events: &[Event],
    facts: &Facts,
    operators: &[String],
    via: Via,
) -> Result<(), ApiError> {
    p.require(&[Scope::Write])?;
    let foreign: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.reporter_org() != p.org)
        .map(|(i, _)| i)
        .collect();
    if !foreign.is_empty() {
        return Err(ApiError::forbidden(
            "foreign_reporter",
            format!(
                "reporter.org must be the token's organisation {}; {} event(s) report for another (first at index {}); nothing was recorded",
                p.org,
                foreign.len(),
                foreign[0]
            ),
        )
        .with_details(json!({ "indexes": foreign })));
    }
    let operator = is_operator(p, operators);
    if events.iter().all(|e| e.format() >= 2) {
        return authorize_scoped(p, events, operator);
    }
    // Messages this request declares itself, wherever in the batch: its `sent`s (from
    // the principal, for ids not in use) and the new messages of its resends (which
    // keep the parties of what they resend).
    let mut declared: Vec<(&str, &str, &str)> = Vec::new();
    for e in events {
        if e.kind() == EventType::Sent
            && e.sender() == Some(p.org.as_str())
            && facts.parties(e.message()).is_none()
        {
            declared.push((e.message(), &p.org, e.recipient().unwrap_or_default()));
        }
    }
    for e in events {
        if let (EventType::Resent, Some(new)) = (e.kind(), e.linked_message())
            && facts.message(new).is_none()
            && let Some((f, t)) = facts.parties(e.message()).or_else(|| {
                declared
                    .iter()
                    .find(|d| d.0 == e.message())
                    .map(|d| (d.1, d.2))
            })
        {
            declared.push((new, f, t));
        }
    }
    let mut refused: Vec<usize> = Vec::new();
    let mut wrong_side: Vec<usize> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let recorded = facts.parties(e.message());
        let in_request = declared
            .iter()
            .find(|(m, _, _)| *m == e.message())
            .map(|&(_, f, t)| (f, t));
        let parties = recorded.or(in_request);
        let ok = match e.kind() {
            EventType::Sent => {
                let from = e.sender().unwrap_or_default();
                let own_id = parties.is_none_or(|(f, _)| f == from);
                // The ids of unmatched channel events are the mappers' to make.
                let reserved = crate::mappers::SYNTHETIC_PREFIXES
                    .iter()
                    .any(|x| e.message().starts_with(x));
                from == p.org && own_id && !reserved
            }
            // A resend links two messages: the new one must be unknown or the
            // principal's own, or a resend would borrow another's facts (and tell
            // that it exists).
            EventType::Resent => {
                let party = |m: &str| {
                    facts
                        .parties(m)
                        .or_else(|| declared.iter().find(|d| d.0 == m).map(|d| (d.1, d.2)))
                        .is_some_and(|(f, t)| f == p.org || t == p.org)
                };
                let new_ok = e
                    .linked_message()
                    .is_some_and(|n| facts.message(n).is_none() || party(n));
                (operator || parties.is_some_and(|(f, t)| f == p.org || t == p.org)) && new_ok
            }
            _ => operator || parties.is_some_and(|(f, t)| f == p.org || t == p.org),
        };
        if !ok {
            refused.push(i);
            continue;
        }
        // A party, but is it its side's fact? What happens at the recipient is the
        // recipient's to report (or a channel's, through the channel endpoints, where
        // a sender relays what its channel says); a resend is the sender's.
        let side_ok = operator
            || match e.kind() {
                EventType::HandedOff
                | EventType::Received
                | EventType::Opened
                | EventType::Acknowledged => {
                    via == Via::Channel
                        || parties.is_some_and(|(_, t)| t == p.org)
                        || relayed_from_channel(e)
                }
                EventType::Resent => parties.is_some_and(|(f, _)| f == p.org),
                _ => true,
            };
        if !side_ok {
            wrong_side.push(i);
        }
    }
    refusal(
        &refused,
        &wrong_side,
        format!(
            "are about a message your organisation {org} is not a party of, or not recorded yet \
             (a sent must be from {org} and use a message id no other sender has used)",
            org = p.org
        ),
    )
}

/// The tenant rule for format-2 events, which name their message's parties
/// (`from`, `to`) and whose message is the triple (`from`, `to`, `message`): decided
/// from the events and the token alone. Whether any message exists never enters
/// the answer, and no organisation can reach another's message by its id, since
/// the id is scoped by the parties.
fn authorize_scoped(p: &Principal, events: &[Event], operator: bool) -> Result<(), ApiError> {
    let org = p.org.as_str();
    let mut refused: Vec<usize> = Vec::new();
    let mut wrong_side: Vec<usize> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (from, to) = (
            e.sender().unwrap_or_default(),
            e.recipient().unwrap_or_default(),
        );
        let party = org == from || org == to;
        let (allowed, own_side) = match e.kind() {
            EventType::Sent => {
                // The ids of unmatched channel events are the mappers' to make.
                let reserved = crate::mappers::SYNTHETIC_PREFIXES
                    .iter()
                    .any(|x| e.message().starts_with(x));
                (party && !reserved, from == org)
            }
            EventType::Resent => (party, from == org),
            EventType::HandedOff
            | EventType::Received
            | EventType::Opened
            | EventType::Acknowledged => (
                party || operator,
                operator || to == org || relayed_from_channel(e),
            ),
            EventType::Resolved => (party, true),
            _ => (party || operator, true),
        };
        if !allowed {
            refused.push(i);
        } else if !own_side {
            wrong_side.push(i);
        }
    }
    refusal(
        &refused,
        &wrong_side,
        format!(
            "name a message whose `from` and `to` are not your organisation {org}: report only \
             about messages your organisation sends or receives"
        ),
    )
}

/// The answer to a write the tenant rule judged: Ok, or 403 naming the events it
/// refuses (`not_a_party` first, else `wrong_side`) by index. Nothing is recorded.
fn refusal(refused: &[usize], wrong_side: &[usize], not_a_party: String) -> Result<(), ApiError> {
    if let Some(&first) = refused.first() {
        return Err(ApiError::forbidden(
            "not_a_party",
            format!(
                "{} event(s) (first at index {first}) {not_a_party}; nothing was recorded",
                refused.len()
            ),
        )
        .with_details(json!({ "indexes": refused })));
    }
    if let Some(&first) = wrong_side.first() {
        return Err(ApiError::forbidden(
            "wrong_side",
            format!(
                "{} event(s) (first at index {first}) report the other side's fact: sent and \
                 resent are the sender's (`from`) to report; handed_off, received, opened and \
                 acknowledged the recipient's (`to`), or a channel's (the channel endpoints, or a \
                 reporter.system naming a channel); nothing was recorded",
                wrong_side.len()
            ),
        )
        .with_details(json!({ "indexes": wrong_side })));
    }
    Ok(())
}

/// Resolves channel identifiers (a correspondence id, a conversation id) to messages,
/// for one principal: only to messages its organisation is a party of (any message,
/// for a channel operator). Another organisation's message is then "unmatched", the
/// same answer as an identifier nobody declared, so a channel event can neither
/// settle another's message nor tell that it exists.
pub struct PartyResolver<'a> {
    inner: &'a dyn RefResolver,
    facts: &'a Facts,
    org: &'a str,
    operator: bool,
}

impl<'a> PartyResolver<'a> {
    /// The principal's resolver over `inner` (the projection's refs) and `facts`.
    pub fn new(
        p: &'a Principal,
        inner: &'a dyn RefResolver,
        facts: &'a Facts,
        operators: &[String],
    ) -> PartyResolver<'a> {
        PartyResolver {
            inner,
            facts,
            org: &p.org,
            operator: is_operator(p, operators),
        }
    }
}

impl RefResolver for PartyResolver<'_> {
    fn message_by_ref(&self, key: &str, value: &str) -> Option<String> {
        if self.operator {
            return self.inner.message_by_ref(key, value);
        }
        let m = self.inner.message_for_party(self.org, key, value)?;
        let (from, to) = self.facts.parties(&m)?;
        (from == self.org || to == self.org).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[Scope]) -> Principal {
        Principal {
            org: "974760673".into(),
            scopes: scopes.to_vec(),
            subject: "token:t".into(),
        }
    }

    #[test]
    fn each_scope_reaches_what_the_rule_says() {
        let org = "974760673".to_string();
        let cases: [(&[Scope], Option<Reach>, Option<EntryReach>); 6] = [
            (&[Scope::Regulator], Some(Reach::All), Some(EntryReach::All)),
            (&[Scope::Audit], None, Some(EntryReach::All)),
            (
                &[Scope::Read],
                Some(Reach::Party(org.clone())),
                Some(EntryReach::Party(org.clone())),
            ),
            (&[Scope::Write], None, Some(EntryReach::Own(org.clone()))),
            (&[Scope::Admin], None, None),
            (&[], None, None),
        ];
        for (scopes, messages, entries) in cases {
            let p = principal(scopes);
            assert_eq!(message_reach(&p).ok(), messages, "{scopes:?}");
            assert_eq!(entry_reach(&p).ok(), entries.clone(), "{scopes:?}");
            let stream = stream_access(&p).ok();
            assert_eq!(stream.as_ref().map(|s| s.receipts.clone()), entries);
            assert_eq!(stream.and_then(|s| s.verdicts), messages);
        }
    }
}
