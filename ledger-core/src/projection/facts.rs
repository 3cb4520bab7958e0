//! Facts: what the log says about each message and each reporter's stream, applied
//! entry by entry in seq order. Policy- and clock-free (docs/projections.md §1, §3.1),
//! so a policy change never needs a rebuild.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entry;
use crate::event::EventType;

use super::fields::EventView;
use super::messages::{MessageMap, Shard};
use super::names::{Name, Names};
use super::{Instant, ProjectionError, SKEW_SECONDS};

/// What is odd in the story the ledger was told. Recorded anomalies are facts;
/// `HandoffNeverReceived` is evaluated against a policy and a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// An event for a message the ledger had no `sent` (or resend) for at the time.
    EventForUnknownMessage,
    /// A `resent` of a message the ledger had no `sent` for at the time.
    ResendOfUnknownMessage,
    /// A second `sent` for the same message (the first keeps its fields).
    DuplicateSent,
    /// An event dated before the message was sent.
    EventBeforeSent,
    /// Opened before the channel delivered it.
    OpenedBeforeDelivered,
    /// Acknowledged before it was opened.
    AcknowledgedBeforeOpened,
    /// Activity after the message was deleted or expired.
    EventAfterDeletion,
    /// A resend link refused: the new message already had a parent, or a cycle.
    ResendConflict,
    /// An event dated after the ledger recorded it (a clock in the future).
    AtAfterRecorded,
    /// Reporter sequence numbers never seen: reports that never reached the ledger.
    ReporterSeqGap,
    /// A reporter sequence number seen twice.
    ReporterSeqDuplicate,
    /// A hand-off whose target system never reported `received` in time.
    HandoffNeverReceived,
    /// An event reported by an organisation that is neither the message's sender nor
    /// its recipient (nor a channel carrying it), or a `sent` whose reporter is not
    /// its `from`: recorded (the operator may record anything), never silent.
    NonPartyReport,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 13] = [
        AnomalyKind::EventForUnknownMessage,
        AnomalyKind::ResendOfUnknownMessage,
        AnomalyKind::DuplicateSent,
        AnomalyKind::EventBeforeSent,
        AnomalyKind::OpenedBeforeDelivered,
        AnomalyKind::AcknowledgedBeforeOpened,
        AnomalyKind::EventAfterDeletion,
        AnomalyKind::ResendConflict,
        AnomalyKind::AtAfterRecorded,
        AnomalyKind::ReporterSeqGap,
        AnomalyKind::ReporterSeqDuplicate,
        AnomalyKind::HandoffNeverReceived,
        AnomalyKind::NonPartyReport,
    ];

    /// The snake_case name used in output and filters.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::EventForUnknownMessage => "event_for_unknown_message",
            AnomalyKind::ResendOfUnknownMessage => "resend_of_unknown_message",
            AnomalyKind::DuplicateSent => "duplicate_sent",
            AnomalyKind::EventBeforeSent => "event_before_sent",
            AnomalyKind::OpenedBeforeDelivered => "opened_before_delivered",
            AnomalyKind::AcknowledgedBeforeOpened => "acknowledged_before_opened",
            AnomalyKind::EventAfterDeletion => "event_after_deletion",
            AnomalyKind::ResendConflict => "resend_conflict",
            AnomalyKind::AtAfterRecorded => "at_after_recorded",
            AnomalyKind::ReporterSeqGap => "reporter_seq_gap",
            AnomalyKind::ReporterSeqDuplicate => "reporter_seq_duplicate",
            AnomalyKind::HandoffNeverReceived => "handoff_never_received",
            AnomalyKind::NonPartyReport => "non_party_report",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<AnomalyKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One recorded anomaly of a message, raised by the entry at `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The entry that raised it.
    pub seq: u64,
    /// The counterpart entry, where there is one.
    pub other_seq: Option<u64>,
    /// Particulars (an event type, a message id), where useful.
    pub detail: Option<String>,
}

/// The first `sent` of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Its entry.
    pub seq: u64,
    /// When it was sent.
    pub at: Instant,
    /// Sending organisation.
    pub from: Name,
    /// Receiving organisation.
    pub to: Name,
    /// Channel.
    pub channel: Name,
    /// Category.
    pub category: Name,
    /// Digest of the content.
    pub content_digest: ContentDigest,
    /// When the channel will delete it, if the sender said.
    pub expires_at: Option<Instant>,
    /// Identifiers in other systems.
    pub refs: Refs,
}

/// A `sent` event's `refs`: identifiers in other systems, by key. Usually one or two,
/// so a sorted list (a map node would cost half a kilobyte per message); the keys
/// (system names) shared like the other names; serialized as a map, as in the event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs(Vec<(Name, Box<str>)>);

impl Refs {
    /// From (key, value) pairs in any order; the last of a repeated key wins, as in
    /// a map.
    pub(crate) fn new<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        names: &mut Names,
    ) -> Refs {
        let map: BTreeMap<&str, &str> = pairs.collect();
        Refs(
            map.into_iter()
                .map(|(k, v)| (names.intern(k), Box::from(v)))
                .collect(),
        )
    }

    /// (key, value) pairs, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The values, by key.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, v)| &**v)
    }

    /// The value of one key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Refs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Refs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (Name::from(k), v.into_boxed_str()))
            .collect();
        Ok(Refs(pairs))
    }
}

/// The digest of a message's content as a `sent` gave it: `blake3:` or `sha256:`
/// and 32 bytes, held as the bytes (a third of the text's size, and no allocation);
/// written and read as the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentDigest {
    /// `blake3:` and the digest.
    Blake3([u8; 32]),
    /// `sha256:` and the digest.
    Sha256([u8; 32]),
    /// Any other text (validation lets none through; kept as written, never lost).
    Other(Box<str>),
}

impl ContentDigest {
    /// From its text.
    pub fn new(s: &str) -> ContentDigest {
        let bytes = |hex: &str| {
            // Lowercase only, so that the text written back is the text read.
            let nibble = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let hex = hex.as_bytes();
            if hex.len() != 64 {
                return None;
            }
            let mut out = [0u8; 32];
            for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
            }
            Some(out)
        };
        if let Some(d) = s.strip_prefix("blake3:").and_then(bytes) {
            ContentDigest::Blake3(d)
        } else if let Some(d) = s.strip_prefix("sha256:").and_then(bytes) {
            ContentDigest::Sha256(d)
        } else {
            ContentDigest::Other(s.into())
        }
    }
}

#[cfg(test)]
#[test]
fn content_digests_read_back_as_written() {
    for s in [
        format!("blake3:{}", "0a".repeat(32)),
        format!("sha256:{}", "f9".repeat(32)),
        format!("sha256:{}", "F9".repeat(32)),
        format!("sha256:{}", "f9".repeat(31)),
        "md5:abc".to_string(),
    ] {
        assert_eq!(ContentDigest::new(&s).to_string(), s);
    }
    assert!(matches!(
        ContentDigest::new(&format!("blake3:{}", "0a".repeat(32))),
        ContentDigest::Blake3(d) if d == [0x0a; 32]
    ));
}

impl std::fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentDigest::Blake3(d) => write!(f, "blake3:{}", hex::encode(d)),
            ContentDigest::Sha256(d) => write!(f, "sha256:{}", hex::encode(d)),
            ContentDigest::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for ContentDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ContentDigest::new(&String::deserialize(d)?))
    }
}

/// A resend link between two messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The other message's key. Shown to people (JSON) as its bare id: both ends of
    /// a link have the same parties; stored (postcard) whole.
    #[serde(serialize_with = "link_message")]
    pub message: String,
    /// The `resent` entry.
    pub seq: u64,
    /// When it was resent.
    pub at: Instant,
    /// The new message's channel.
    pub channel: Name,
}

fn link_message<S: serde::Serializer>(key: &str, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(crate::event::split_message_key(key).1)
    } else {
        s.serialize_str(key)
    }
}

/// The first event of a type (smallest `at`, ties by seq) and how many there were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// When.
    pub at: Instant,
    /// Its entry.
    pub seq: u64,
    /// How many events of this type.
    pub count: u32,
    /// The type's text field (`by_role`, `reason`, `error`), if it has one: a code,
    /// shared like the other names.
    pub detail: Option<Name>,
}

/// One hand-off between systems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Its entry.
    pub seq: u64,
    /// When.
    pub at: Instant,
    /// From which system.
    pub from_system: String,
    /// To which system.
    pub to_system: String,
    /// The `received` of the target system that matches it (§1.3), if any.
    pub received_seq: Option<u64>,
}

/// One `received`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Its entry.
    pub seq: u64,
    /// When.
    pub at: Instant,
    /// The receiving system.
    pub system: String,
    /// Its journal reference.
    pub journal_ref: Option<String>,
}

/// The closing `resolved` (largest `at`, ties by seq).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// When.
    pub at: Instant,
    /// Its entry.
    pub seq: u64,
    /// The outcome.
    pub outcome: String,
    /// A note, if given (format 1 only).
    pub note: Option<String>,
    /// How many `resolved` events.
    pub count: u32,
    /// Who resolved it: the reporting organisation (`reporter.org`).
    pub by: String,
    /// Through which of its systems (`reporter.system`).
    pub via: String,
}

/// Everything recorded about one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFacts {
    /// Entries whose event is about this message, ascending.
    pub seqs: Vec<u64>,
    /// The first `sent`.
    pub sent: Option<Sent>,
    /// The accepted resend that declared this message.
    pub resent_from: Option<Box<Link>>,
    /// Accepted resends of this message, by seq.
    pub resent_to: Vec<Link>,
    /// First `delivered`.
    pub delivered: Option<Box<Mark>>,
    /// Hand-offs, by seq.
    pub handoffs: Vec<Hop>,
    /// Receipts, by seq.
    pub receipts: Vec<Receipt>,
    /// First `opened` (detail: `by_role`).
    pub opened: Option<Box<Mark>>,
    /// First `acknowledged`.
    pub acknowledged: Option<Box<Mark>>,
    /// First `expired`.
    pub expired: Option<Box<Mark>>,
    /// First `deleted` (detail: `reason`).
    pub deleted: Option<Box<Mark>>,
    /// First `failed` (detail: `error`).
    pub failed: Option<Box<Mark>>,
    /// The closing `resolved`.
    pub resolved: Option<Box<Resolution>>,
    /// Recorded anomalies, by (seq, kind).
    pub anomalies: Vec<Anomaly>,
    /// Earliest non-`sent` event (for `event_before_sent` when `sent` comes late).
    first_other: Option<(Instant, u64, EventType)>,
    /// Latest activity (delivered, handed off, received, opened, acknowledged).
    last_activity: Option<(Instant, u64)>,
}

/// A message's lifecycle from its own events (§1.4); a description, not the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A `resolved` closed it.
    Resolved,
    /// Acknowledged.
    Acknowledged,
    /// Opened.
    Opened,
    /// Deleted.
    Deleted,
    /// Expired.
    Expired,
    /// Failed.
    Failed,
    /// A hand-off has no matching receipt yet.
    InHandoff,
    /// Received by a system.
    Received,
    /// Delivered by the channel.
    Delivered,
    /// Sent, nothing since.
    Sent,
    /// Never sent: only other events name it.
    Unknown,
}

impl Status {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Resolved => "resolved",
            Status::Acknowledged => "acknowledged",
            Status::Opened => "opened",
            Status::Deleted => "deleted",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::InHandoff => "in_handoff",
            Status::Received => "received",
            Status::Delivered => "delivered",
            Status::Sent => "sent",
            Status::Unknown => "unknown",
        }
    }
}

impl MessageFacts {
    /// Points this message's names at the shared copies in `names`.
    pub(crate) fn share_names(&mut self, names: &mut Names) {
        if let Some(s) = &mut self.sent {
            for n in [&mut s.from, &mut s.to, &mut s.channel, &mut s.category] {
                names.share(n);
            }
        }
        for l in self
            .resent_from
            .iter_mut()
            .map(|l| &mut **l)
            .chain(&mut self.resent_to)
        {
            names.share(&mut l.channel);
        }
        if let Some(s) = &mut self.sent {
            for (k, _) in &mut s.refs.0 {
                names.share(k);
            }
        }
        for m in [
            &mut self.delivered,
            &mut self.opened,
            &mut self.acknowledged,
            &mut self.expired,
            &mut self.deleted,
            &mut self.failed,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(d) = &mut m.detail {
                names.share(d);
            }
        }
    }

    /// Known: sent, or declared by an accepted resend. Otherwise an orphan.
    pub fn is_known(&self) -> bool {
        self.sent.is_some() || self.resent_from.is_some()
    }

    /// The lifecycle status.
    pub fn status(&self) -> Status {
        if self.resolved.is_some() {
            Status::Resolved
        } else if self.acknowledged.is_some() {
            Status::Acknowledged
        } else if self.opened.is_some() {
            Status::Opened
        } else if self.deleted.is_some() {
            Status::Deleted
        } else if self.expired.is_some() {
            Status::Expired
        } else if self.failed.is_some() {
            Status::Failed
        } else if self.handoffs.iter().any(|h| h.received_seq.is_none()) {
            Status::InHandoff
        } else if !self.receipts.is_empty() {
            Status::Received
        } else if self.delivered.is_some() {
            Status::Delivered
        } else if self.is_known() {
            Status::Sent
        } else {
            Status::Unknown
        }
    }

    /// The earliest of deleted, expired and an explicit `expires_at`: after it,
    /// activity is an anomaly.
    fn end(&self) -> Option<(Instant, u64, &'static str)> {
        let candidates = [
            self.deleted.as_ref().map(|d| (d.at, d.seq, "deleted")),
            self.expired.as_ref().map(|d| (d.at, d.seq, "expired")),
            self.sent
                .as_ref()
                .and_then(|s| s.expires_at.map(|t| (t, s.seq, "expires_at"))),
        ];
        candidates.into_iter().flatten().min_by_key(|c| (c.0, c.1))
    }

    /// Raises `kind` at `seq` when `x`, which must not come before `y`, is dated more
    /// than the skew before it. Both are (at, seq); the anomaly names the other one
    /// of the two as its counterpart.
    fn not_before(
        &mut self,
        kind: AnomalyKind,
        seq: u64,
        x: Option<(Instant, u64)>,
        y: Option<(Instant, u64)>,
        detail: Option<&str>,
    ) {
        if let (Some(x), Some(y)) = (x, y)
            && x.0 < skewed(y.0, -1)
        {
            let other = if x.1 == seq { y.1 } else { x.1 };
            self.raise(kind, seq, Some(other), detail.map(str::to_string));
        }
    }

    fn raise(&mut self, kind: AnomalyKind, seq: u64, other: Option<u64>, detail: Option<String>) {
        self.anomalies.push(Anomaly {
            kind,
            seq,
            other_seq: other,
            detail,
        });
    }
}

/// A gap in a reporter's `seq`: numbers `from..=to` never seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing number.
    pub from: u64,
    /// Last missing number.
    pub to: u64,
    /// The ledger entry that first made them missing.
    pub detected_seq: u64,
}

/// A reporter `seq` seen again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The repeated number.
    pub reporter_seq: u64,
    /// The entry that repeated it.
    pub seq: u64,
}

/// One reporter's stream (`reporter.org`, `reporter.system`), over events carrying
/// `reporter.seq`. "Seen" means `≤ max` and not in a gap, so no set of numbers is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Highest number seen.
    pub max: u64,
    /// Events counted.
    pub count: u64,
    /// Missing ranges, ascending.
    pub gaps: Vec<Gap>,
    /// Repeated numbers, by seq.
    pub duplicates: Vec<Duplicate>,
}

impl Stream {
    fn observe(&mut self, n: u64, seq: u64) {
        self.count += 1;
        if n > self.max {
            if n > self.max + 1 {
                self.gaps.push(Gap {
                    from: self.max + 1,
                    to: n - 1,
                    detected_seq: seq,
                });
            }
            self.max = n;
            return;
        }
        // Regression is normal (parallel submitters); only a number seen before counts.
        match self.gaps.iter().position(|g| g.from <= n && n <= g.to) {
            Some(i) => {
                let g = self.gaps[i].clone();
                let mut parts = Vec::with_capacity(2);
                if g.from < n {
                    parts.push(Gap {
                        to: n - 1,
                        ..g.clone()
                    });
                }
                if n < g.to {
                    parts.push(Gap { from: n + 1, ..g });
                }
                self.gaps.splice(i..=i, parts);
            }
            None => self.duplicates.push(Duplicate {
                reporter_seq: n,
                seq,
            }),
        }
    }
}

/// The facts of a log prefix: every message and every reporter stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    covered: u64,
    messages: MessageMap,
    /// org → system → stream (nested so a lookup borrows, not allocates).
    streams: BTreeMap<String, BTreeMap<String, Stream>>,
    /// The names the messages share.
    names: Names,
}

fn skewed(t: Instant, sign: i64) -> Instant {
    t.plus_seconds(sign * SKEW_SECONDS)
}

impl Facts {
    /// Entries applied: the facts describe the log prefix `0 .. covered`.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// The facts of one message.
    pub fn message(&self, id: &str) -> Option<&MessageFacts> {
        self.messages.get(id)
    }

    /// The sender and recipient of a message: its own `sent`'s, or for a resend the
    /// nearest ancestor's (a resend keeps its parties). `None` while no `sent` is
    /// known in its line.
    pub fn parties(&self, id: &str) -> Option<(&str, &str)> {
        let mut cur = self.messages.get(id)?;
        for _ in 0..=self.messages.len() {
            if let Some(s) = &cur.sent {
                return Some((&s.from, &s.to));
            }
            cur = self.messages.get(&cur.resent_from.as_ref()?.message)?;
        }
        None
    }

    /// The message's id as stored, and its facts.
    pub(crate) fn get(&self, id: &str) -> Option<(&str, &MessageFacts)> {
        self.messages
            .get_key_value(id)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The keys of the messages a reader may mean by `id`: the format-1 message of
    /// that id; the format-2 message `FROM/TO/ID` when `id` has that form; and every
    /// format-2 message whose bare id is `id` (two organisations may use one id).
    /// The caller keeps those it may show.
    pub fn find(&self, id: &str) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some((k, _)) = self.messages.get_key_value(id) {
            out.push(k.as_str());
        }
        if let Some(key) = crate::event::key_from_path(id)
            && let Some((k, _)) = self.messages.get_key_value(&key)
        {
            out.push(k.as_str());
        }
        for k in self.messages.scoped_keys(id) {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// Every message, in no particular order.
    pub fn messages(&self) -> impl Iterator<Item = (&str, &MessageFacts)> {
        self.messages.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of messages.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// The messages' shards, for work split across threads.
    pub(crate) fn shards(&self) -> &[Shard] {
        self.messages.shards()
    }

    /// Streams, for persisting.
    pub(crate) fn stream_map(&self) -> &BTreeMap<String, BTreeMap<String, Stream>> {
        &self.streams
    }

    /// Reassembles persisted facts.
    pub(crate) fn from_parts(
        covered: u64,
        messages: MessageMap,
        streams: BTreeMap<String, BTreeMap<String, Stream>>,
        names: Vec<Names>,
    ) -> Facts {
        // Each shard's messages share names among themselves; entries applied from
        // now on share the first shard's (a name may exist once per shard: a few
        // hundred strings sixteen times over, still a small, hot set).
        Facts {
            covered,
            messages,
            streams,
            names: names.into_iter().next().unwrap_or_default(),
        }
    }

    /// Every reporter stream, by (org, system).
    pub fn streams(&self) -> impl Iterator<Item = (&str, &str, &Stream)> {
        self.streams.iter().flat_map(|(org, systems)| {
            systems
                .iter()
                .map(move |(system, s)| (org.as_str(), system.as_str(), s))
        })
    }

    /// One reporter's stream.
    pub fn stream(&self, org: &str, system: &str) -> Option<&Stream> {
        self.streams.get(org)?.get(system)
    }

    /// Applies the entry at `seq` (its bytes as stored). Entries must come in seq order.
    pub fn apply_entry(&mut self, seq: u64, bytes: &[u8]) -> Result<(), ProjectionError> {
        self.apply_entry_noting(seq, bytes, &mut |_| {})
    }

    /// As [`Facts::apply_entry`], but an event that happened after `happened_by`
    /// (its `at`) is passed over: the facts of "how it stood at T" (§5). The entry
    /// still counts as covered.
    pub fn apply_entry_happened_by(
        &mut self,
        seq: u64,
        bytes: &[u8],
        happened_by: Instant,
    ) -> Result<(), ProjectionError> {
        let bad = |reason: String| ProjectionError::BadEntry { seq, reason };
        let parsed = entry::parse_envelope(bytes).map_err(|e| bad(e.to_string()))?;
        if parsed.is_key_entry() {
            return self.pass_over(seq);
        }
        let view = EventView::parse(parsed.event, parsed.v).map_err(bad)?;
        if view.at <= happened_by {
            return self.apply_entry(seq, bytes);
        }
        self.pass_over(seq)
    }

    /// Counts the entry at `seq` as covered without a fact from it.
    fn pass_over(&mut self, seq: u64) -> Result<(), ProjectionError> {
        if seq != self.covered {
            return Err(ProjectionError::OutOfOrder {
                expected: self.covered,
                got: seq,
            });
        }
        self.covered = seq + 1;
        Ok(())
    }

    /// As [`Facts::apply_entry`], and names the messages whose facts it changed (the
    /// event's message, and a resend's new message) to `touched`.
    pub fn apply_entry_noting(
        &mut self,
        seq: u64,
        bytes: &[u8],
        touched: &mut dyn FnMut(&str),
    ) -> Result<(), ProjectionError> {
        let bad = |reason: String| ProjectionError::BadEntry { seq, reason };
        let parsed = entry::parse_envelope(bytes).map_err(|e| bad(e.to_string()))?;
        if parsed.seq != seq {
            return Err(bad(format!("entry says seq {}", parsed.seq)));
        }
        if parsed.is_key_entry() {
            // A key announcement: no message's fact.
            return self.pass_over(seq);
        }
        let recorded_at = Instant::parse(parsed.recorded_at)
            .ok_or_else(|| bad(format!("bad recorded_at {:?}", parsed.recorded_at)))?;
        let view = EventView::parse(parsed.event, parsed.v).map_err(bad)?;
        self.apply(seq, recorded_at, &view)?;
        touched(&view.key);
        if let Some(n) = &view.linked {
            touched(n);
        }
        Ok(())
    }

    /// Applies an entry of a subset of the log (one message family): seqs ascend
    /// but may skip. Stream state is then partial.
    pub(crate) fn apply_sparse(
        &mut self,
        seq: u64,
        bytes: &[u8],
        happened_by: Option<Instant>,
    ) -> Result<(), ProjectionError> {
        if seq < self.covered {
            return Err(ProjectionError::OutOfOrder {
                expected: self.covered,
                got: seq,
            });
        }
        self.covered = seq;
        match happened_by {
            Some(t) => self.apply_entry_happened_by(seq, bytes, t),
            None => self.apply_entry(seq, bytes),
        }
    }

    /// Whether the event's reporter is no party of its message (as known so far): a
    /// `sent` reported by another than its `from`, or any other event reported by
    /// neither the sender nor the recipient, unless it comes from a channel system.
    fn non_party(&self, v: &EventView<'_>) -> bool {
        let org: &str = &v.f.reporter.org;
        if v.kind == EventType::Sent {
            return v.f.from.as_deref().is_some_and(|f| f != org);
        }
        if crate::event::CHANNEL_SYSTEMS.contains(&&*v.f.reporter.system) {
            return false;
        }
        // Format 2: the event names its parties; format 1: the first `sent` did.
        let parties = match crate::event::split_message_key(&v.key) {
            (Some(p), _) => Some(p),
            (None, _) => self.parties(&v.key),
        };
        parties.is_some_and(|(from, to)| org != from && org != to)
    }

    pub(crate) fn apply(
        &mut self,
        seq: u64,
        recorded_at: Instant,
        v: &EventView<'_>,
    ) -> Result<(), ProjectionError> {
        if seq != self.covered {
            return Err(ProjectionError::OutOfOrder {
                expected: self.covered,
                got: seq,
            });
        }
        self.covered = seq + 1;
        if let Some(n) = v.f.reporter.seq {
            let (org, system): (&str, &str) = (&v.f.reporter.org, &v.f.reporter.system);
            if !self.streams.contains_key(org) {
                self.streams.insert(org.to_string(), BTreeMap::new());
            }
            let systems = self.streams.get_mut(org).expect("inserted");
            match systems.get_mut(system) {
                Some(s) => s.observe(n, seq),
                None => {
                    let mut s = Stream::default();
                    s.observe(n, seq);
                    systems.insert(system.to_string(), s);
                }
            }
        }
        let id: &str = &v.key;
        let non_party = self.non_party(v);
        let m = self.messages.entry(id);
        if non_party {
            let detail = format!("{} reported by {}", v.kind.name(), v.f.reporter.org);
            m.raise(AnomalyKind::NonPartyReport, seq, None, Some(detail));
        }
        m.seqs.push(seq);
        if non_party && v.key.contains(crate::event::KEY_SEPARATOR) {
            // A format-2 fact from a non-party is in the history and flagged, and
            // moves nothing: no deadline, verdict or link (docs/projections.md §1.1).
            return Ok(());
        }
        if v.at > skewed(recorded_at, 1) {
            m.raise(AnomalyKind::AtAfterRecorded, seq, None, None);
        }
        match v.kind {
            EventType::Sent => {}
            EventType::Resent if !m.is_known() => {
                m.raise(AnomalyKind::ResendOfUnknownMessage, seq, None, None)
            }
            _ if !m.is_known() => m.raise(AnomalyKind::EventForUnknownMessage, seq, None, None),
            _ => {}
        }
        let this = (v.at, seq);
        if v.kind != EventType::Sent {
            let sent = m.sent.as_ref().map(|s| (s.at, s.seq));
            let detail = Some(v.kind.name());
            m.not_before(AnomalyKind::EventBeforeSent, seq, Some(this), sent, detail);
            if m.first_other.is_none_or(|(at, s, _)| (v.at, seq) < (at, s)) {
                m.first_other = Some((v.at, seq, v.kind));
            }
        }
        let end_before = m.end();
        let activity = matches!(
            v.kind,
            EventType::Delivered
                | EventType::HandedOff
                | EventType::Received
                | EventType::Opened
                | EventType::Acknowledged
        );
        if activity {
            if let Some((end, end_seq, what)) = end_before
                && v.at > skewed(end, 1)
            {
                m.raise(
                    AnomalyKind::EventAfterDeletion,
                    seq,
                    Some(end_seq),
                    Some(what.into()),
                );
            }
            if m.last_activity.is_none_or(|(at, _)| v.at > at) {
                m.last_activity = Some((v.at, seq));
            }
        }
        match v.kind {
            EventType::Sent => apply_sent(m, seq, v, &mut self.names),
            EventType::Delivered => {
                if m.delivered.is_none() {
                    let opened = when(&m.opened);
                    m.not_before(
                        AnomalyKind::OpenedBeforeDelivered,
                        seq,
                        opened,
                        Some(this),
                        None,
                    );
                }
                mark(&mut m.delivered, v.at, seq, None, &mut self.names);
            }
            EventType::Opened => {
                let delivered = when(&m.delivered);
                m.not_before(
                    AnomalyKind::OpenedBeforeDelivered,
                    seq,
                    Some(this),
                    delivered,
                    None,
                );
                if m.opened.is_none() {
                    let acked = when(&m.acknowledged);
                    m.not_before(
                        AnomalyKind::AcknowledgedBeforeOpened,
                        seq,
                        acked,
                        Some(this),
                        None,
                    );
                }
                mark(
                    &mut m.opened,
                    v.at,
                    seq,
                    v.f.by_role.as_deref(),
                    &mut self.names,
                );
            }
            EventType::Acknowledged => {
                let opened = when(&m.opened);
                m.not_before(
                    AnomalyKind::AcknowledgedBeforeOpened,
                    seq,
                    Some(this),
                    opened,
                    None,
                );
                mark(&mut m.acknowledged, v.at, seq, None, &mut self.names);
            }
            EventType::Expired => mark(&mut m.expired, v.at, seq, None, &mut self.names),
            EventType::Deleted => mark(
                &mut m.deleted,
                v.at,
                seq,
                v.f.reason.as_deref(),
                &mut self.names,
            ),
            EventType::Failed => mark(
                &mut m.failed,
                v.at,
                seq,
                v.f.error.as_deref(),
                &mut self.names,
            ),
            EventType::HandedOff => {
                let to_system = v.req(&v.f.to_system);
                let received_seq = m
                    .receipts
                    .iter()
                    .filter(|r| r.system == to_system && r.at >= skewed(v.at, -1))
                    .min_by_key(|r| (r.at, r.seq))
                    .map(|r| r.seq);
                m.handoffs.push(Hop {
                    seq,
                    at: v.at,
                    from_system: v.req(&v.f.from_system),
                    to_system,
                    received_seq,
                });
            }
            EventType::Received => {
                let system = v.req(&v.f.system);
                let receipts = &m.receipts;
                for h in m.handoffs.iter_mut() {
                    if h.to_system != system || v.at < skewed(h.at, -1) {
                        continue;
                    }
                    let better = match h.received_seq {
                        None => true,
                        Some(cur) => receipts
                            .iter()
                            .find(|r| r.seq == cur)
                            .is_some_and(|r| (v.at, seq) < (r.at, r.seq)),
                    };
                    if better {
                        h.received_seq = Some(seq);
                    }
                }
                m.receipts.push(Receipt {
                    seq,
                    at: v.at,
                    system,
                    journal_ref: v.f.journal_ref.as_deref().map(str::to_string),
                });
            }
            EventType::Resolved => {
                let newer = m
                    .resolved
                    .as_ref()
                    .is_none_or(|r| (v.at, seq) > (r.at, r.seq));
                let count = m.resolved.as_ref().map_or(0, |r| r.count) + 1;
                if newer {
                    m.resolved = Some(Box::new(Resolution {
                        at: v.at,
                        seq,
                        outcome: v.req(&v.f.outcome),
                        note: v.f.note.as_deref().map(str::to_string),
                        count,
                        by: v.f.reporter.org.to_string(),
                        via: v.f.reporter.system.to_string(),
                    }));
                } else if let Some(r) = m.resolved.as_mut() {
                    r.count = count;
                }
            }
            // A channel's notice is history (and an anomaly when its message is
            // unknown), not a verdict input: the policy's own deadlines judge.
            EventType::Resent | EventType::Notice => {}
        }
        // A new, earlier end makes earlier-reported activity late (checked once).
        if let (Some((end, _, what)), Some((act, act_seq))) = (m.end(), m.last_activity) {
            let newly = end_before.is_none_or(|(old, _, _)| end < old);
            let already = end_before.is_some_and(|(old, _, _)| act > skewed(old, 1));
            if newly && !activity && act > skewed(end, 1) && !already {
                m.raise(
                    AnomalyKind::EventAfterDeletion,
                    seq,
                    Some(act_seq),
                    Some(what.into()),
                );
            }
        }
        if v.kind == EventType::Resent {
            self.link(seq, v);
        }
        Ok(())
    }

    /// §1.2: accept a resend link unless it would give a message two parents or
    /// close a cycle.
    fn link(&mut self, seq: u64, v: &EventView<'_>) {
        let from: &str = &v.key;
        let to = v.linked.as_deref().unwrap_or_default().to_string();
        let channel = self.names.intern(v.req_str(&v.f.channel));
        let existing = self.messages.get(&to).and_then(|n| n.resent_from.as_ref());
        let conflict = match existing {
            Some(l) if l.message == from => return,
            Some(l) => Some(format!(
                "already_resent_from:{}",
                crate::event::split_message_key(&l.message).1
            )),
            None if self.is_ancestor(&to, from) => Some("cycle".to_string()),
            None => None,
        };
        if let Some(detail) = conflict {
            let m = self.messages.get_mut(from).expect("applied");
            m.raise(AnomalyKind::ResendConflict, seq, None, Some(detail));
            return;
        }
        let m = self.messages.get_mut(from).expect("applied");
        m.resent_to.push(Link {
            message: to.clone(),
            seq,
            at: v.at,
            channel: channel.clone(),
        });
        let n = self.messages.entry(&to);
        n.resent_from = Some(Box::new(Link {
            message: from.to_string(),
            seq,
            at: v.at,
            channel,
        }));
    }

    /// Whether `candidate` is `of` or one of its ancestors through accepted links.
    fn is_ancestor(&self, candidate: &str, of: &str) -> bool {
        let mut cur = Some(of);
        // Accepted links form a forest, so this ends; the bound guards corrupt state.
        for _ in 0..=self.messages.len() {
            match cur {
                None => return false,
                Some(c) if c == candidate => return true,
                Some(c) => {
                    cur = self
                        .messages
                        .get(c)
                        .and_then(|m| m.resent_from.as_ref())
                        .map(|l| l.message.as_str())
                }
            }
        }
        false
    }
}

/// (at, seq) of a first-event mark.
fn when(mark: &Option<Box<Mark>>) -> Option<(Instant, u64)> {
    mark.as_ref().map(|m| (m.at, m.seq))
}

fn mark(
    slot: &mut Option<Box<Mark>>,
    at: Instant,
    seq: u64,
    detail: Option<&str>,
    names: &mut Names,
) {
    match slot {
        None => {
            *slot = Some(Box::new(Mark {
                at,
                seq,
                count: 1,
                detail: detail.map(|d| names.intern(d)),
            }))
        }
        Some(m) => {
            m.count += 1;
            if (at, seq) < (m.at, m.seq) {
                m.at = at;
                m.seq = seq;
                m.detail = detail.map(|d| names.intern(d));
            }
        }
    }
}

fn apply_sent(m: &mut MessageFacts, seq: u64, v: &EventView<'_>, names: &mut Names) {
    let refs = Refs::new(
        v.f.refs
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_ref(), v.as_ref())),
        names,
    );
    let new = Sent {
        seq,
        at: v.at,
        from: names.intern(v.req_str(&v.f.from)),
        to: names.intern(v.req_str(&v.f.to)),
        channel: names.intern(v.req_str(&v.f.channel)),
        category: names.intern(v.req_str(&v.f.category)),
        content_digest: ContentDigest::new(&v.req(&v.f.content_digest)),
        expires_at: v.expires_at,
        refs,
    };
    if let Some(first) = &m.sent {
        let mut differing = Vec::new();
        for (name, same) in [
            ("at", first.at == new.at),
            ("from", first.from == new.from),
            ("to", first.to == new.to),
            ("channel", first.channel == new.channel),
            ("category", first.category == new.category),
            ("content_digest", first.content_digest == new.content_digest),
            ("expires_at", first.expires_at == new.expires_at),
            ("refs", first.refs == new.refs),
        ] {
            if !same {
                differing.push(name);
            }
        }
        let other = first.seq;
        let detail = (!differing.is_empty()).then(|| differing.join(","));
        m.raise(AnomalyKind::DuplicateSent, seq, Some(other), detail);
        return;
    }
    if let Some((at, other, kind)) = m.first_other {
        let detail = Some(kind.name());
        m.not_before(
            AnomalyKind::EventBeforeSent,
            seq,
            Some((at, other)),
            Some((v.at, seq)),
            detail,
        );
    }
    m.sent = Some(new);
}
