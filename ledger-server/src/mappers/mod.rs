//! Channel mappers: events and status records of Altinn 3 Correspondence, eFormidling
//! and KS Fiks turned into ledger events (format 1).
//!
//! Pure and synchronous: no I/O, no clock, no randomness. The same channel event maps
//! to the same ledger event, byte for byte, so a retried delivery is idempotent. The
//! mapping table, and why each row is what it is, is in `docs/cloudevents.md`.
//!
//! What never leaves a mapper: free text (descriptions, error texts, titles), the
//! parties of a channel event (persons' national identity numbers among them), and any
//! value the ledger would refuse as a national identity number. Error messages show
//! input values only through [`shown`], which redacts such numbers.

pub mod altinn;
pub mod eformidling;
pub mod fiks;
pub mod pseudonym;

pub use pseudonym::Pseudonymizer;

use ledger_core::admission::may_hold_national_id;
use ledger_core::ids::check_orgnr;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::UtcOffset;

/// The prefixes of the message ids the mappers make for channel events that match no
/// `sent` (`<prefix>:<channel id>`): no reporter may declare such a message itself.
pub const SYNTHETIC_PREFIXES: [&str; 5] = [
    "altinn-correspondence:",
    "eformidling-message:",
    "eformidling-conversation:",
    "fiks-message:",
    "fiks-bekymringsmelding:",
];

/// Finds the ledger message a channel identifier belongs to, through the `refs` of `sent` events.
pub trait RefResolver {
    /// `key` is a refs key of a `sent` event (e.g. "altinn_correspondence",
    /// "eformidling_conversation", "fiks_message"), `value` its value.
    fn message_by_ref(&self, key: &str, value: &str) -> Option<String>;

    /// As [`RefResolver::message_by_ref`], among the messages `party` sends or
    /// receives only: another organisation's earlier use of the same channel id
    /// does not hide the party's own message.
    fn message_for_party(&self, party: &str, key: &str, value: &str) -> Option<String> {
        let _ = party;
        self.message_by_ref(key, value)
    }
}

/// Who reports (from the authenticated token) and how to map.
pub struct MapContext<'a> {
    /// 9-digit organisation number of the token: the mapped event's `reporter.org`.
    pub reporter_org: &'a str,
    /// Finds the message of a channel identifier.
    pub resolver: &'a dyn RefResolver,
    /// Makes keyed pseudonyms of what must not be stored in the clear.
    pub pseudonymizer: &'a Pseudonymizer,
    /// The event format to make (the ledger's): format 2 names the message's parties
    /// on every event.
    pub format: u8,
}

/// One mapped ledger event: the JSON object of a ledger event (format 1), ready for
/// `ledger_core::Event::from_json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The ledger event.
    pub event: Value,
    /// false: no `sent` event's refs matched; the message id is synthetic (e.g.
    /// `altinn-correspondence:<id>`), and the projections report the event as
    /// `event_for_unknown_message`.
    pub matched: bool,
}

/// The `notice` kinds (the `notice` field of a `notice` event).
pub use ledger_core::event::NOTICES as NOTICE_KINDS;

/// Type of the event Altinn Events sends to a new webhook subscription to check the
/// endpoint. It carries no message fact: the server should answer it with 200 and
/// map nothing (see [`is_subscription_validation`]).
pub const ALTINN_VALIDATE_SUBSCRIPTION: &str = "platform.events.validatesubscription";

/// Why a channel event could not be mapped. Messages say what, where and why; input
/// values in them are shown through [`shown`] (at most 100 characters, national
/// identity numbers redacted), so an error can be logged and returned as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// Not a CloudEvent 1.0 in structured JSON mode.
    #[error("not a CloudEvent 1.0 in structured JSON mode: {why}")]
    NotCloudEvent {
        /// What is wrong.
        why: String,
    },
    /// Not an eFormidling status record (nor an integrasjonspunkt webhook payload).
    #[error("not an eFormidling status record: {why}")]
    NotStatusRecord {
        /// What is wrong.
        why: String,
    },
    /// A type (or status, or state) this server does not know.
    #[error("unknown source type {source_type:?}: {known}")]
    UnknownType {
        /// The type, status or state as received (shown: redacted, shortened).
        source_type: String,
        /// What is known instead.
        known: &'static str,
    },
    /// A known type that carries no fact about a message, so nothing is mapped.
    #[error("source type {source_type:?} is not mapped: {why}")]
    UnsupportedType {
        /// The type as received (shown: redacted, shortened).
        source_type: String,
        /// Why it is not mapped.
        why: &'static str,
    },
    /// A required field is absent (or null).
    #[error("missing field `{field}`: {what}")]
    MissingField {
        /// The field, dotted for nested ones (`data.svarPaMelding`).
        field: &'static str,
        /// What it holds and why it is needed.
        what: &'static str,
    },
    /// A field is present but unusable.
    #[error("field `{field}`: {why}")]
    BadField {
        /// The field, dotted for nested ones.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The token's organisation is not a valid organisation number.
    #[error("the reporting organisation {org:?} is not an organisation number: {why}")]
    BadReporter {
        /// The organisation as given (shown).
        org: String,
        /// What is wrong with it.
        why: String,
    },
}

impl MapError {
    /// A short stable reason label for the metrics counter, e.g. "unknown_type".
    pub fn reason(&self) -> &'static str {
        match self {
            MapError::NotCloudEvent { .. } => "not_cloudevent",
            MapError::NotStatusRecord { .. } => "not_status_record",
            MapError::UnknownType { .. } => "unknown_type",
            MapError::UnsupportedType { .. } => "unsupported_type",
            MapError::MissingField { .. } => "missing_field",
            MapError::BadField { .. } => "bad_field",
            MapError::BadReporter { .. } => "bad_reporter",
        }
    }
}

/// Maps one CloudEvent (structured JSON) by its `type`: Altinn correspondence or Fiks
/// types. eFormidling status records are not CloudEvents: see [`map_eformidling`].
///
/// A batch (a JSON array) is refused: map each of its elements.
pub fn map_cloudevent(ce: &Value, cx: &MapContext<'_>) -> Result<Mapped, MapError> {
    check_reporter(cx)?;
    let fields = match ce {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(MapError::NotCloudEvent {
                why: "a JSON array is a batch: map each of its elements".into(),
            });
        }
        other => {
            return Err(MapError::NotCloudEvent {
                why: format!("expected a JSON object, found {}", kind_of(other)),
            });
        }
    };
    match fields.get("specversion") {
        None | Some(Value::Null) => {
            return Err(MapError::NotCloudEvent {
                why: "no `specversion` attribute (a CloudEvent 1.0 has \"specversion\": \"1.0\")"
                    .into(),
            });
        }
        Some(Value::String(v)) if v == "1.0" => {}
        Some(Value::String(v)) => {
            return Err(MapError::NotCloudEvent {
                why: format!("`specversion` is {:?}; only \"1.0\" is accepted", shown(v)),
            });
        }
        Some(other) => {
            return Err(MapError::NotCloudEvent {
                why: format!(
                    "`specversion` must be the string \"1.0\", found {}",
                    kind_of(other)
                ),
            });
        }
    }
    let ty = req_str(
        fields,
        "type",
        "the CloudEvent type, which decides the mapping",
    )?;
    let lower = ty.to_ascii_lowercase();
    // The type decides first, so an unknown type is reported as such even when other
    // attributes are missing too.
    let channel = if lower.starts_with(altinn::TYPE_PREFIX) {
        Channel::Altinn(altinn::rule(ty)?)
    } else if lower.starts_with(fiks::TYPE_PREFIX) {
        Channel::Fiks(fiks::rule(ty)?)
    } else if lower == ALTINN_VALIDATE_SUBSCRIPTION {
        return Err(MapError::UnsupportedType {
            source_type: shown(ty),
            why: "Altinn Events checks a new subscription with it; answer 200 and record nothing",
        });
    } else {
        return Err(MapError::UnknownType {
            source_type: shown(ty),
            known: "mapped are the Altinn 3 Correspondence types (no.altinn.correspondence.*) \
                    and the KS Fiks concern-report types (no.ks.fiks.*) listed in \
                    docs/cloudevents.md; eFormidling status records go to their own endpoint",
        });
    };
    let id = req_str(
        fields,
        "id",
        "the CloudEvent id; with `source` it makes the ledger event id",
    )?;
    check_no_control("id", id)?;
    let source = req_str(
        fields,
        "source",
        "the CloudEvent source; with `id` it makes the ledger event id",
    )?;
    check_no_control("source", source)?;
    let time = req_str(
        fields,
        "time",
        "when the channel event happened: the ledger event's `at`",
    )?;
    let ce = CloudEvent {
        ty,
        id,
        source,
        time,
        fields,
    };
    match channel {
        Channel::Altinn(rule) => altinn::map(&ce, rule, cx),
        Channel::Fiks(rule) => fiks::map(&ce, rule, cx),
    }
}

/// Maps one eFormidling status record: an element of the integrasjonspunkt's
/// `GET /api/statuses` (`{id, convId, lastUpdate, status, description, messageId,
/// conversationId}`), or the body of its webhook push (`{createdTs, resource:
/// "messages", event: "status", messageId, conversationId, direction,
/// serviceIdentifier, status, description}`).
pub fn map_eformidling(rec: &Value, cx: &MapContext<'_>) -> Result<Mapped, MapError> {
    check_reporter(cx)?;
    eformidling::map(rec, cx)
}

/// Whether `ce` is the event Altinn Events sends to validate a new webhook
/// subscription: the server should answer it with 200 and map nothing.
pub fn is_subscription_validation(ce: &Value) -> bool {
    ce.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case(ALTINN_VALIDATE_SUBSCRIPTION))
}

/// A one-line description of a channel event that is safe to log or return: its type
/// (or status), id, source and channel id, and its parties scrubbed (organisations
/// kept, persons as pseudonyms). Never free text.
pub fn describe(v: &Value, pz: &Pseudonymizer) -> String {
    let Some(m) = v.as_object() else {
        return format!("<{}>", kind_of(v));
    };
    let mut parts: Vec<String> = Vec::new();
    for key in [
        "type",
        "status",
        "event",
        "id",
        "source",
        "resourceinstance",
        "messageId",
        "conversationId",
    ] {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            parts.push(format!("{key}={:?}", shown(s)));
        } else if let Some(n) = m.get(key).filter(|v| v.is_number()) {
            parts.push(format!("{key}={}", shown(&n.to_string())));
        }
    }
    for key in ["subject", "alternativesubject"] {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            parts.push(format!("{key}={:?}", shown(&pz.scrub_party(s))));
        }
    }
    if parts.is_empty() {
        "<object without known attributes>".into()
    } else {
        parts.join(" ")
    }
}

/// A value as it may appear in an error, a log line or a response: at most 100
/// characters, and never anything that looks like a national identity number.
pub fn shown(s: &str) -> String {
    const MAX: usize = 100;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    if may_hold_national_id(s) || may_hold_national_id(&out) {
        return "<redacted: holds what looks like a national identity number>".into();
    }
    out
}

// ---------------------------------------------------------------------------------
// Shared by the channel mappers.

enum Channel {
    Altinn(altinn::Rule),
    Fiks(fiks::Rule),
}

/// The attributes of a CloudEvent every mapper needs, checked present.
pub(crate) struct CloudEvent<'a> {
    pub ty: &'a str,
    pub id: &'a str,
    pub source: &'a str,
    pub time: &'a str,
    pub fields: &'a Map<String, Value>,
}

impl CloudEvent<'_> {
    /// The ledger event id: `"ce-"` + the first 32 hex digits of
    /// SHA-256(reporter org ‖ "\n" ‖ source ‖ "\n" ‖ id). CloudEvents promise that
    /// source + id identify an event, so a redelivery maps to the same ledger event;
    /// the reporter is part of it so that two organisations forwarding one channel
    /// event record two facts instead of one refusing the other as a conflict.
    pub(crate) fn event_id(&self, cx: &MapContext<'_>) -> String {
        event_id("ce-", &[cx.reporter_org, self.source, self.id])
    }
}

/// What a channel event says about a message, in ledger terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fact {
    /// `delivered`: the channel made it available to the recipient.
    Delivered,
    /// `received`: the receiving system imported and stored it.
    Received { system: &'static str },
    /// `opened`, by someone in this role.
    Opened { by_role: &'static str },
    /// `acknowledged`.
    Acknowledged,
    /// `expired`: the channel ended its lifetime.
    Expired,
    /// `deleted`, for this reason (a status code, never free text).
    Deleted { reason: String },
    /// `failed`, with this error (a status code, never free text).
    Failed { error: String },
    /// `notice`: a channel fact with no other home.
    Notice {
        notice: &'static str,
        status: String,
    },
}

/// Everything a ledger event needs besides the reporter.
pub(crate) struct Draft {
    pub id: String,
    pub message: String,
    pub matched: bool,
    pub at: String,
    pub system: &'static str,
    pub fact: Fact,
}

/// The ledger event of a draft, reported by the token's organisation.
pub(crate) fn finish(cx: &MapContext<'_>, d: Draft) -> Mapped {
    let mut reporter = Map::new();
    reporter.insert("org".into(), Value::from(cx.reporter_org));
    reporter.insert("system".into(), Value::from(d.system));
    let mut ev = Map::new();
    let kind = match &d.fact {
        Fact::Delivered => "delivered",
        Fact::Received { .. } => "received",
        Fact::Opened { .. } => "opened",
        Fact::Acknowledged => "acknowledged",
        Fact::Expired => "expired",
        Fact::Deleted { .. } => "deleted",
        Fact::Failed { .. } => "failed",
        Fact::Notice { .. } => "notice",
    };
    ev.insert("type".into(), Value::from(kind));
    ev.insert("id".into(), Value::from(d.id));
    let mut matched = d.matched;
    match ledger_core::event::split_message_key(&d.message) {
        (Some((from, to)), id) if cx.format >= 2 => {
            ev.insert("from".into(), Value::from(from));
            ev.insert("to".into(), Value::from(to));
            ev.insert("message".into(), Value::from(id));
        }
        // Format 2, unmatched: filed in the reporter's own space (from = to = the
        // reporter), where nobody else's message is.
        (None, id) if cx.format >= 2 => {
            matched = false;
            ev.insert("from".into(), Value::from(cx.reporter_org));
            ev.insert("to".into(), Value::from(cx.reporter_org));
            ev.insert("message".into(), Value::from(id));
        }
        // Format 1 (whose messages are never format-2 keys): the id.
        (_, id) => {
            ev.insert("message".into(), Value::from(id));
        }
    }
    ev.insert("at".into(), Value::from(d.at));
    ev.insert("reporter".into(), Value::Object(reporter));
    match d.fact {
        Fact::Delivered | Fact::Acknowledged | Fact::Expired => {}
        Fact::Received { system } => {
            ev.insert("system".into(), Value::from(system));
        }
        Fact::Opened { by_role } => {
            ev.insert("by_role".into(), Value::from(by_role));
        }
        Fact::Deleted { reason } => {
            ev.insert("reason".into(), Value::from(reason));
        }
        Fact::Failed { error } => {
            ev.insert("error".into(), Value::from(error));
        }
        Fact::Notice { notice, status } => {
            ev.insert("notice".into(), Value::from(notice));
            ev.insert("status".into(), Value::from(status));
        }
    }
    Mapped {
        event: Value::Object(ev),
        matched,
    }
}

/// The message of a channel event: the first `(refs key, value)` a `sent` event
/// declared, in order; else a synthetic id `<prefix>:<value>` of the first candidate
/// (`matched` false). A value that cannot stand in an id (too long, or holding what
/// looks like a national identity number) is replaced by its keyed pseudonym there.
pub(crate) fn resolve(
    cx: &MapContext<'_>,
    candidates: &[(&'static str, &'static str, &str)],
) -> (String, bool) {
    for (key, _, value) in candidates {
        if let Some(m) = cx.resolver.message_by_ref(key, value) {
            // A format-2 event needs its message's parties; a format-1 message
            // (begun before `ledger upgrade`) cannot give them.
            if cx.format >= 2 && ledger_core::event::split_message_key(&m).0.is_none() {
                continue;
            }
            return (m, true);
        }
    }
    let (key, prefix, value) = candidates
        .first()
        .expect("a channel event names at least one channel id");
    (synthetic_message(cx, key, prefix, value), false)
}

fn synthetic_message(cx: &MapContext<'_>, key: &str, prefix: &str, value: &str) -> String {
    let plain = format!("{prefix}:{value}");
    if plain.chars().count() <= ledger_core::limits::ID_CHARS_MAX && !may_hold_national_id(&plain) {
        plain
    } else {
        format!("{prefix}:{}", cx.pseudonymizer.pseudonym(key, value))
    }
}

/// `prefix` + the first 32 hex digits of SHA-256 of the parts joined by "\n" (the
/// parts hold no control characters, so the joining is unambiguous).
pub(crate) fn event_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    pseudonym::token(prefix, digest.as_slice())
}

/// A channel timestamp (RFC 3339 with an offset) as the ledger's `at`, in UTC:
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the fraction as given less trailing zeros
/// (none when zero). `2025-03-14T09:02:11.5732941+01:00` → `2025-03-14T08:02:11.5732941Z`.
pub(crate) fn utc_at(field: &'static str, s: &str) -> Result<String, MapError> {
    let t = ledger_core::event::parse_time(s).ok_or_else(|| MapError::BadField {
        field,
        why: format!(
            "{:?} is not an RFC 3339 date-time with seconds and an offset \
             (e.g. 2025-03-14T08:02:11.573294Z or 2025-03-14T09:02:11+01:00)",
            shown(s)
        ),
    })?;
    let out_of_range = || MapError::BadField {
        field,
        why: format!("{:?} is outside the years 0000–9999 in UTC", shown(s)),
    };
    let u = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(out_of_range)?;
    let year = u.year();
    if !(0..=9999).contains(&year) {
        return Err(out_of_range());
    }
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        year,
        u8::from(u.month()),
        u.day(),
        u.hour(),
        u.minute(),
        u.second()
    );
    let nanos = u.nanosecond();
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    Ok(out)
}

/// A required string field: present, a string, not blank.
pub(crate) fn req_str<'a>(
    m: &'a Map<String, Value>,
    field: &'static str,
    what: &'static str,
) -> Result<&'a str, MapError> {
    opt_str(m, field)?.ok_or(MapError::MissingField { field, what })
}

/// An optional string field: absent, null and blank are all "not given".
pub(crate) fn opt_str<'a>(
    m: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, MapError> {
    // Nested fields are named with dots in errors; look up the last part.
    let key = field.rsplit('.').next().unwrap_or(field);
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(MapError::BadField {
            field,
            why: format!("expected a string, found {}", kind_of(other)),
        }),
    }
}

/// A channel identifier: 1–128 characters, no whitespace, no control characters.
pub(crate) fn id_like<'a>(field: &'static str, s: &'a str) -> Result<&'a str, MapError> {
    let n = s.chars().count();
    if n == 0 || n > ledger_core::limits::ID_CHARS_MAX {
        return Err(MapError::BadField {
            field,
            why: format!(
                "is {n} characters; an identifier has 1 to {}",
                ledger_core::limits::ID_CHARS_MAX
            ),
        });
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(MapError::BadField {
            field,
            why: format!(
                "{:?} is not an identifier: it holds spaces or control characters",
                shown(s)
            ),
        });
    }
    Ok(s)
}

fn check_no_control(field: &'static str, s: &str) -> Result<(), MapError> {
    if s.chars().any(char::is_control) {
        return Err(MapError::BadField {
            field,
            why: "must not contain control characters".into(),
        });
    }
    Ok(())
}

fn check_reporter(cx: &MapContext<'_>) -> Result<(), MapError> {
    check_orgnr(cx.reporter_org).map_err(|e| MapError::BadReporter {
        org: shown(cx.reporter_org),
        why: e.to_string(),
    })
}

pub(crate) use ledger_core::event::kind_of;

#[cfg(test)]
pub(crate) mod testkit {
    //! Shared by the mappers' tests: a resolver over a map, a context, and a check
    //! that a mapped event is one the ledger accepts.

    use std::collections::HashMap;

    use serde_json::Value;

    use super::{MapContext, Mapped, Pseudonymizer, RefResolver};

    /// A valid synthetic national identity number (control digits checked).
    pub(crate) const FNR: &str = "15076500565";
    /// Reporting organisations: a police stand-in and Bergen kommune.
    pub(crate) const POLICE: &str = "974760673";
    pub(crate) const BERGEN: &str = "964338531";

    /// A resolver over (refs key, value) → message.
    #[derive(Default)]
    pub(crate) struct FakeResolver(pub HashMap<(String, String), String>);

    impl FakeResolver {
        pub(crate) fn with(mut self, key: &str, value: &str, message: &str) -> Self {
            self.0
                .insert((key.to_string(), value.to_string()), message.to_string());
            self
        }
    }

    impl RefResolver for FakeResolver {
        fn message_by_ref(&self, key: &str, value: &str) -> Option<String> {
            self.0.get(&(key.to_string(), value.to_string())).cloned()
        }
    }

    pub(crate) fn pz() -> Pseudonymizer {
        Pseudonymizer::new([7u8; 32])
    }

    pub(crate) fn cx<'a>(
        org: &'a str,
        resolver: &'a FakeResolver,
        pseudonymizer: &'a Pseudonymizer,
    ) -> MapContext<'a> {
        MapContext {
            reporter_org: org,
            resolver,
            pseudonymizer,
            format: 1,
        }
    }

    /// The elements of a fixture holding a JSON array.
    pub(crate) fn array(text: &str) -> Vec<Value> {
        match serde_json::from_str(text).expect("fixture is JSON") {
            Value::Array(a) => a,
            other => panic!("fixture is not an array: {other}"),
        }
    }

    pub(crate) fn one(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is JSON")
    }

    /// The mapped event passes the ledger's own validation.
    pub(crate) fn assert_valid(m: &Mapped) {
        if let Err(e) = ledger_core::Event::from_value(m.event.clone()) {
            panic!("{e}: {}", m.event);
        }
    }

    /// The event's type, and its notice kind for a `notice`.
    pub(crate) fn kind(m: &Mapped) -> String {
        let ty = m.event["type"].as_str().unwrap();
        if ty == "notice" {
            format!("notice/{}", m.event["notice"].as_str().unwrap())
        } else {
            ty.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn times_are_normalised_to_utc() {
        for (input, want) in [
            ("2025-03-14T08:02:11.573294Z", "2025-03-14T08:02:11.573294Z"),
            (
                "2025-03-14T08:02:11.5732941+00:00",
                "2025-03-14T08:02:11.5732941Z",
            ),
            ("2025-03-14T09:02:11.5+01:00", "2025-03-14T08:02:11.5Z"),
            ("2025-03-14T09:02:11.000+01:00", "2025-03-14T08:02:11Z"),
            ("2025-03-31t01:30:00+02:00", "2025-03-30T23:30:00Z"),
            ("2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00Z"),
        ] {
            assert_eq!(utc_at("time", input).unwrap(), want, "{input}");
        }
        for bad in [
            "2021-11-08T09:24:45",
            "2025-03-14 08:02:11Z",
            "2025-03-14T08:02Z",
            "2025-03-14T08:02:11+0100",
            "",
        ] {
            let e = utc_at("time", bad).unwrap_err();
            assert_eq!(e.reason(), "bad_field", "{bad}");
            assert!(e.to_string().contains("`time`"), "{e}");
        }
    }

    #[test]
    fn shown_values_never_hold_a_national_identity_number() {
        assert_eq!(shown("correspondencepublished"), "correspondencepublished");
        let s = shown(&format!("urn:altinn:person:identifier-no:{FNR}"));
        assert!(!s.contains(FNR), "{s}");
        // Cutting a longer run must not leave one behind.
        let long = format!("{}{FNR}12", "x".repeat(89));
        assert!(!shown(&long).contains(FNR));
        assert_eq!(shown(&"a".repeat(150)).chars().count(), 101);
    }

    #[test]
    fn the_reporter_must_be_an_organisation_number() {
        let r = FakeResolver::default();
        let p = pz();
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-correspondence-published.json"
        ));
        for org in ["974760674", "12345", FNR] {
            let e = map_cloudevent(&ce, &cx(org, &r, &p)).unwrap_err();
            assert_eq!(e.reason(), "bad_reporter", "{org}");
            assert!(!e.to_string().contains(FNR));
        }
    }

    #[test]
    fn a_batch_and_other_non_cloudevents_are_refused() {
        let r = FakeResolver::default();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let batch = one(include_str!(
            "../../tests/fixtures/cloudevents/cloudevents-batch.json"
        ));
        let e = map_cloudevent(&batch, &c).unwrap_err();
        assert_eq!(e.reason(), "not_cloudevent");
        assert!(e.to_string().contains("batch"), "{e}");
        let mut ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-correspondence-published.json"
        ));
        ce.as_object_mut().unwrap().remove("specversion");
        assert_eq!(
            map_cloudevent(&ce, &c).unwrap_err().reason(),
            "not_cloudevent"
        );
        ce["specversion"] = "0.3".into();
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert!(e.to_string().contains("0.3"), "{e}");
        ce["specversion"] = "1.0".into();
        ce.as_object_mut().unwrap().remove("time");
        assert_eq!(
            map_cloudevent(&ce, &c).unwrap_err(),
            MapError::MissingField {
                field: "time",
                what: "when the channel event happened: the ledger event's `at`"
            }
        );
        let mut ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-correspondence-published.json"
        ));
        ce["type"] = "com.example.something.happened".into();
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(
            e.to_string().contains("com.example.something.happened"),
            "{e}"
        );
    }

    #[test]
    fn every_event_of_the_batch_maps_and_none_leaks_the_national_id() {
        let r = FakeResolver::default();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let batch = array(include_str!(
            "../../tests/fixtures/cloudevents/cloudevents-batch.json"
        ));
        assert_eq!(batch.len(), 4);
        for ce in &batch {
            let m = map_cloudevent(ce, &c).unwrap();
            assert_valid(&m);
            assert!(!m.matched);
            assert!(!serde_json::to_string(&m.event).unwrap().contains(FNR));
            assert!(!describe(ce, &p).contains(FNR), "{}", describe(ce, &p));
        }
    }

    #[test]
    fn event_ids_are_deterministic_and_reporter_scoped() {
        let a = event_id("ce-", &[POLICE, "https://platform.altinn.no/x", "1"]);
        assert_eq!(
            a,
            event_id("ce-", &[POLICE, "https://platform.altinn.no/x", "1"])
        );
        assert_ne!(
            a,
            event_id("ce-", &[BERGEN, "https://platform.altinn.no/x", "1"])
        );
        assert_ne!(
            a,
            event_id("ce-", &[POLICE, "https://platform.altinn.no/x", "2"])
        );
        assert_eq!(a.len(), 35);
        assert!(a.starts_with("ce-"));
    }
}
