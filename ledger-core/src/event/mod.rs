//! Events: what a reporter submits, validated against the rules of `schemas/`.
//!
//! An [`Event`] can only be built by [`Event::from_json`], so holding one means the
//! JSON was well-formed, strict (no duplicate keys, no floats, integers below 2^53),
//! matched its type's schema and carried no national identity number. It keeps the
//! event's RFC 8785 canonical bytes, which are what the entry embeds.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod object;

pub(crate) use object::{Member, Object};

use crate::ids::{check_orgnr, contains_national_id};
use crate::limits;

/// The kinds of event, one per JSON Schema in `schemas/events/`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// The sender sent the message over a channel.
    Sent,
    /// The channel made it available to the recipient (a transport fact only).
    Delivered,
    /// The message moved between two systems on the same side.
    HandedOff,
    /// The receiving system imported and stored it: the end-to-end receipt.
    Received,
    /// Someone at the recipient opened it.
    Opened,
    /// The recipient acknowledged it.
    Acknowledged,
    /// The channel deleted it at the end of its lifetime.
    Expired,
    /// Someone deleted it.
    Deleted,
    /// Sending or delivery failed.
    Failed,
    /// It was sent again, as a new message.
    Resent,
    /// A person closed the case of this message with an outcome.
    Resolved,
    /// A channel said something about the message that is none of the above: not
    /// opened or not acknowledged by the channel's deadline, a failed notification,
    /// archived, or a transport status (format 1, added with the channel mappers).
    Notice,
}

impl EventType {
    /// Every type, in schema order.
    pub const ALL: [EventType; 12] = [
        EventType::Sent,
        EventType::Delivered,
        EventType::HandedOff,
        EventType::Received,
        EventType::Opened,
        EventType::Acknowledged,
        EventType::Expired,
        EventType::Deleted,
        EventType::Failed,
        EventType::Resent,
        EventType::Resolved,
        EventType::Notice,
    ];

    /// The `type` value in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Sent => "sent",
            EventType::Delivered => "delivered",
            EventType::HandedOff => "handed_off",
            EventType::Received => "received",
            EventType::Opened => "opened",
            EventType::Acknowledged => "acknowledged",
            EventType::Expired => "expired",
            EventType::Deleted => "deleted",
            EventType::Failed => "failed",
            EventType::Resent => "resent",
            EventType::Resolved => "resolved",
            EventType::Notice => "notice",
        }
    }

    /// Parses the `type` value.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Channels a message travels over.
pub const CHANNELS: [&str; 8] = [
    "altinn",
    "eformidling",
    "fiks_io",
    "portal",
    "letter",
    "email",
    "api",
    "other",
];

/// The `reporter.system` names of channel adapters (the server's mappers): a channel
/// reports facts about the messages it carries for either party, so its reports are
/// not a non-party's (docs/projections.md, `non_party_report`).
pub const CHANNEL_SYSTEMS: [&str; 4] =
    ["altinn", "eformidling", "fiks-io", "fiks-bekymringsmelding"];

/// Categories of message.
pub const CATEGORIES: [&str; 4] = ["bekymringsmelding", "underretning", "document", "other"];

/// Outcomes of a `resolved` event.
pub const OUTCOMES: [&str; 4] = [
    "known_via_other_channel",
    "resent_and_confirmed",
    "unrecoverable",
    "false_alarm",
];

/// Kinds of a `notice` event.
pub const NOTICES: [&str; 5] = [
    "not_opened",
    "not_acknowledged",
    "notification_failed",
    "archived",
    "status",
];

/// Why an event was rejected: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// Dotted path of the offending field (`reporter.org`), empty for the whole event.
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "field `{}`: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for EventError {}

fn err(field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The event formats this code reads: an entry's `v` names the rules its event
/// obeys (FORMAT.md §1, §3.9).
pub const FORMATS: std::ops::RangeInclusive<u8> = 1..=2;

/// The format new ledgers write, and the API accepts.
pub const FORMAT_LATEST: u8 = 2;

/// Separates the parts of a scoped key. A control character, which no identifier
/// may hold, so a format-2 key never equals a format-1 identifier.
pub const KEY_SEPARATOR: char = '\u{1f}';
const KEY_SEPARATOR_STR: &str = "\u{1f}";

/// The idempotency key of an event: format 1, its `id`; format 2, the pair
/// (`reporter.org`, `id`), so one organisation's ids never collide with another's.
pub fn id_key<'a>(format: u8, org: &str, id: &'a str) -> std::borrow::Cow<'a, str> {
    if format >= 2 {
        [org, KEY_SEPARATOR_STR, id].concat().into()
    } else {
        id.into()
    }
}

/// The key of the message an event is about: format 1, its `message`; format 2, the
/// triple (`from`, `to`, `message`), so a message id is the sender's and recipient's
/// own and nobody else can claim or probe it.
pub fn message_key<'a>(
    format: u8,
    from: &str,
    to: &str,
    message: &'a str,
) -> std::borrow::Cow<'a, str> {
    if format >= 2 {
        [from, KEY_SEPARATOR_STR, to, KEY_SEPARATOR_STR, message]
            .concat()
            .into()
    } else {
        message.into()
    }
}

/// Takes a message key apart: (`from`, `to`) for a format-2 key, and the bare
/// message id. The only function that reads a key's inside.
pub fn split_message_key(key: &str) -> (Option<(&str, &str)>, &str) {
    let mut parts = key.splitn(3, KEY_SEPARATOR);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(from), Some(to), Some(message)) => (Some((from, to)), message),
        _ => (None, key),
    }
}

/// The key a reader names as `FROM/TO/ID` (two organisation numbers' digits, then
/// the message id), or `None` when `name` has not that form.
pub fn key_from_path(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let form = b.len() > 20
        && b[9] == b'/'
        && b[19] == b'/'
        && b[..9].iter().chain(&b[10..19]).all(u8::is_ascii_digit);
    form.then(|| message_key(2, &name[..9], &name[10..19], &name[20..]).into_owned())
}

/// The second name a store files a format-2 message's entries under: its bare id
/// behind the separator (so it equals no key and no format-1 id). Asking the store
/// for it finds every format-2 message of that id, whoever its parties are; the
/// caller then keeps those it may show.
pub fn bare_alias(key: &str) -> Option<String> {
    match split_message_key(key) {
        (Some(_), id) => Some(format!("{KEY_SEPARATOR}{id}")),
        (None, _) => None,
    }
}

/// A validated event with its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    format: u8,
    id: String,
    kind: EventType,
    message: String,
    new_message: Option<String>,
    reporter_org: String,
    sender: Option<String>,
    recipient: Option<String>,
    /// Format 2 only: the scoped keys (format 1's are the bare ids).
    id_key: Option<String>,
    key: Option<String>,
    linked_key: Option<String>,
    canonical: Vec<u8>,
}

impl Event {
    /// Parses and validates one event from JSON text by the rules of format 1.
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        Self::from_json_as(bytes, 1)
    }

    /// Parses and validates one event by the rules of the given format (1 or 2).
    pub fn from_json_as(bytes: &[u8], format: u8) -> Result<Event, EventError> {
        // Whitespace may make the input larger than its canonical form, but not by
        // more than this; anything larger is refused before parsing.
        if bytes.len() > 4 * limits::EVENT_BYTES_MAX {
            return Err(err(
                "",
                format!(
                    "event is {} bytes; the limit is {} bytes (canonical)",
                    bytes.len(),
                    limits::EVENT_BYTES_MAX
                ),
            ));
        }
        check_format(format)?;
        // One pass over the text for an event-shaped object; whatever it cannot read
        // takes the general path, which finds the error (both apply the same rules).
        if let Some(object) = Object::parse(bytes) {
            return Self::from_object(&object, format);
        }
        let strict: StrictValue =
            serde_json::from_slice(bytes).map_err(|e| err("", format!("malformed JSON: {e}")))?;
        Self::from_value_as(strict.0, format)
    }

    /// Validates an already parsed value by the rules of format 1. Floats and large
    /// integers are rejected here as well, so values built in code obey the same
    /// rules as parsed text.
    pub fn from_value(value: Value) -> Result<Event, EventError> {
        Self::from_value_as(value, 1)
    }

    /// Validates an already parsed value by the rules of the given format (1 or 2).
    pub fn from_value_as(value: Value, format: u8) -> Result<Event, EventError> {
        check_format(format)?;
        check_numbers_and_depth(&value, "", 0)?;
        let map = value
            .as_object()
            .ok_or_else(|| err("", "an event must be a JSON object"))?;
        Self::from_object(&Object::of(map), format)
    }

    fn from_object(obj: &Object<'_>, format: u8) -> Result<Event, EventError> {
        let Valid {
            id,
            kind,
            message,
            new_message,
            parties,
            reporter_org,
        } = validate(obj, format)?;
        let canonical = obj
            .canonical()
            .ok_or_else(|| err("", "cannot canonicalize: not an event's shape"))?;
        if canonical.len() > limits::EVENT_BYTES_MAX {
            return Err(err(
                "",
                format!(
                    "event is {} bytes in canonical form; the limit is {} bytes",
                    canonical.len(),
                    limits::EVENT_BYTES_MAX
                ),
            ));
        }
        let (mut id_key_v2, mut key, mut linked_key) = (None, None, None);
        if format >= 2 {
            // Format 2 has no free text: the rules admission applies to every new
            // report are, for a format-2 event, part of its validity (FORMAT.md §3.9).
            crate::admission::check_api_object(obj)?;
            let (from, to) = parties.unwrap_or_default();
            id_key_v2 = Some(id_key(format, reporter_org, id).into_owned());
            key = Some(message_key(format, from, to, message).into_owned());
            linked_key = new_message.map(|n| message_key(format, from, to, n).into_owned());
        }
        Ok(Event {
            format,
            id: id.to_string(),
            kind,
            message: message.to_string(),
            new_message: new_message.map(str::to_string),
            reporter_org: reporter_org.to_string(),
            sender: parties.map(|p| p.0.to_string()),
            recipient: parties.map(|p| p.1.to_string()),
            id_key: id_key_v2,
            key,
            linked_key,
            canonical,
        })
    }

    /// The format whose rules this event obeys (its entry's `v`).
    pub fn format(&self) -> u8 {
        self.format
    }

    /// The key under which the store deduplicates it: see [`id_key`].
    pub fn id_key(&self) -> &str {
        self.id_key.as_deref().unwrap_or(&self.id)
    }

    /// The key of the message it is about: see [`message_key`].
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.message)
    }

    /// The key of a `resent`'s new message.
    pub fn linked_key(&self) -> Option<&str> {
        self.linked_key.as_deref().or(self.new_message.as_deref())
    }

    /// The reporter's idempotency key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event's type.
    pub fn kind(&self) -> EventType {
        self.kind
    }

    /// The message this event is about.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The other message this event names: the `new_message` of a `resent`. The
    /// message index lists the event under it too, so a resend's history shows
    /// the entry that declared it.
    pub fn linked_message(&self) -> Option<&str> {
        self.new_message.as_deref()
    }

    /// The sending organisation (`from`): of a `sent` in format 1, of every event in
    /// format 2; `None` for other format-1 types.
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    /// The receiving organisation (`to`), as [`Event::sender`].
    pub fn recipient(&self) -> Option<&str> {
        self.recipient.as_deref()
    }

    /// The organisation that reported it (`reporter.org`).
    pub fn reporter_org(&self) -> &str {
        &self.reporter_org
    }

    /// RFC 8785 canonical JSON of the event: the bytes embedded in its entry.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }
}

fn check_format(format: u8) -> Result<(), EventError> {
    if !FORMATS.contains(&format) {
        return Err(err(
            "",
            format!("event format {format} is not supported (this build reads 1 and 2)"),
        ));
    }
    Ok(())
}

/// RFC 8785 (JCS) bytes of a value whose numbers are all integers (validation has
/// refused the rest; the projection digests' values hold only integers too). When every number is below 2^53 in magnitude, every object key is ASCII and the map iterates in sorted
/// order — always so for a valid event (its keys are fixed names and `refs` keys of
/// `a–z0–9_`, and serde_json's map is a BTreeMap) — JCS is exactly serde_json's
/// compact output: UTF-16 key order equals byte order for ASCII, and the two escape
/// strings and print integers alike. That path is several times faster; anything else
/// goes through the general canonicalizer. A property test holds them equal.
pub(crate) fn canonical_json(value: &Value) -> Result<Vec<u8>, EventError> {
    fn plain(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                let mut prev: Option<&str> = None;
                m.iter().all(|(k, v)| {
                    let ordered = k.is_ascii() && prev.is_none_or(|p| p < k.as_str());
                    prev = Some(k);
                    ordered && plain(v)
                })
            }
            Value::Array(a) => a.iter().all(plain),
            // JCS prints numbers as IEEE doubles: exact only below 2^53 (the format's
            // own limit, so valid events never reach the general path for this).
            Value::Number(n) => n.as_i64().is_some_and(|i| i.unsigned_abs() < 1 << 53),
            _ => true,
        }
    }
    let out = if plain(value) {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    } else {
        serde_json_canonicalizer::to_vec(value).map_err(|e| e.to_string())
    };
    out.map_err(|e| err("", format!("cannot canonicalize: {e}")))
}

/// Parses an RFC 3339 timestamp in the format's strict syntax (FORMAT.md 3.3):
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` and `Z` in either case.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if !is_timestamp_syntax(s.as_bytes()) {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The syntax half of the timestamp rule, byte for byte the schema's pattern; the
/// calendar half (real dates, leap seconds) is left to the parser.
fn is_timestamp_syntax(b: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let two = |at: usize| u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0');
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed
        || !(1..=12).contains(&two(5))
        || !(1..=31).contains(&two(8))
        || two(11) > 23
        || two(14) > 59
        || two(17) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let d = [*h1, *h2, *m1, *m2];
            d.iter().all(u8::is_ascii_digit)
                && (d[0] - b'0') * 10 + (d[1] - b'0') <= 23
                && (d[2] - b'0') * 10 + (d[3] - b'0') <= 59
        }
        _ => false,
    }
}

fn check_numbers_and_depth(v: &Value, path: &str, depth: usize) -> Result<(), EventError> {
    if depth > limits::JSON_DEPTH_MAX {
        return Err(err(path, "nested too deeply"));
    }
    match v {
        Value::Number(n) => {
            let ok = n
                .as_u64()
                .map(|u| u < limits::JSON_INT_MAX)
                .unwrap_or(false)
                || n.as_i64()
                    .map(|i| i.unsigned_abs() < limits::JSON_INT_MAX)
                    .unwrap_or(false);
            if !ok {
                return Err(err(
                    path,
                    format!("{n} is not allowed: numbers must be integers of magnitude below 2^53"),
                ));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_numbers_and_depth(x, &format!("{path}[{i}]"), depth + 1)?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                check_numbers_and_depth(x, &p, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the fields of one JSON object, remembering which were read so that the
/// rest can be reported as unknown.
struct Fields<'o, 'a> {
    object: &'o Object<'a>,
    prefix: &'o str,
    /// The names asked for, for the error that lists them.
    known: Vec<&'static str>,
    /// The members asked for, by index: bits for the first 64, a list beyond (only
    /// an object with unknown members has more).
    found: u64,
    found_beyond: Vec<usize>,
}

impl<'o, 'a> Fields<'o, 'a> {
    fn new(object: &'o Object<'a>, prefix: &'o str) -> Self {
        Fields {
            object,
            prefix,
            known: Vec::with_capacity(16),
            found: 0,
            found_beyond: Vec::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'o Member<'a>> {
        self.known.push(key);
        let i = self.object.position(key)?;
        match 1u64.checked_shl(i as u32) {
            Some(bit) if i < 64 => self.found |= bit,
            _ => self.found_beyond.push(i),
        }
        Some(self.object.at(i).1)
    }

    fn opt_str(&mut self, key: &'static str) -> Result<Option<&'o str>, EventError> {
        match self.get(key) {
            None => Ok(None),
            Some(Member::Str(s)) => Ok(Some(s)),
            Some(other) => Err(err(
                self.path(key),
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    fn req_str(&mut self, key: &'static str) -> Result<&'o str, EventError> {
        self.opt_str(key)?
            .ok_or_else(|| err(self.path(key), "is required"))
    }

    fn finish(self) -> Result<(), EventError> {
        // Members are in key order: the first unknown one is the least.
        let unknown = (0..self.object.len())
            .find(|&i| {
                if i < 64 {
                    self.found & (1 << i) == 0
                } else {
                    !self.found_beyond.contains(&i)
                }
            })
            .map(|i| self.object.at(i).0);
        if let Some(k) = unknown {
            let mut allowed = self.known.clone();
            allowed.sort();
            return Err(err(
                self.path(k),
                format!("unknown field (allowed here: {})", allowed.join(", ")),
            ));
        }
        Ok(())
    }
}

/// What kind of JSON value `v` is, in words for error messages ("a string").
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shape rules of a string field.
#[derive(Clone, Copy)]
enum Text {
    /// Ids: 1..=128 characters, no control characters, no surrounding whitespace.
    Id,
    /// Names of systems and roles: 1..=128 characters, no control characters.
    Name,
    /// Free text: 1..=2048 characters; tabs and newlines allowed.
    Free,
    /// A pseudonym: 1..=128 characters, no whitespace.
    Token,
}

fn check_text(path: &str, s: &str, rule: Text) -> Result<(), EventError> {
    let max = match rule {
        Text::Id => limits::ID_CHARS_MAX,
        Text::Name | Text::Token => limits::NAME_CHARS_MAX,
        Text::Free => limits::TEXT_CHARS_MAX,
    };
    let n = s.chars().count();
    if n == 0 {
        return Err(err(path, "must not be empty"));
    }
    if n > max {
        return Err(err(path, format!("is {n} characters; the limit is {max}")));
    }
    let bad_control =
        |c: char| c.is_control() && !(matches!(rule, Text::Free) && (c == '\n' || c == '\t'));
    if s.chars().any(bad_control) {
        return Err(err(path, "must not contain control characters"));
    }
    if matches!(rule, Text::Id) && s.trim() != s {
        return Err(err(path, "must not start or end with whitespace"));
    }
    if matches!(rule, Text::Token) && s.chars().any(char::is_whitespace) {
        return Err(err(path, "must not contain whitespace"));
    }
    if contains_national_id(s) {
        return Err(err(
            path,
            "contains what looks like a national identity number; personal data must never \
             enter the log (use a keyed pseudonym)",
        ));
    }
    Ok(())
}

fn check_time(path: &str, s: &str) -> Result<(), EventError> {
    if parse_time(s).is_none() {
        return Err(err(
            path,
            format!("{s:?} is not an RFC 3339 timestamp (e.g. 2023-05-08T09:30:00Z)"),
        ));
    }
    Ok(())
}

fn check_orgnr_field(path: &str, s: &str) -> Result<(), EventError> {
    check_orgnr(s).map_err(|e| err(path, format!("{s:?} is not an organisation number: {e}")))
}

fn check_enum(path: &str, s: &str, allowed: &[&str]) -> Result<(), EventError> {
    if !allowed.contains(&s) {
        return Err(err(
            path,
            format!("{s:?} is not one of: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

fn check_digest(path: &str, s: &str) -> Result<(), EventError> {
    let hex = s
        .strip_prefix("blake3:")
        .or_else(|| s.strip_prefix("sha256:"));
    match hex {
        Some(h) if h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(())
        }
        _ => Err(err(
            path,
            "must be \"blake3:\" or \"sha256:\" followed by 64 lowercase hex digits (a digest of \
             the content, never the content)",
        )),
    }
}

/// What an event's fields say, once they are valid.
struct Valid<'o> {
    id: &'o str,
    kind: EventType,
    message: &'o str,
    /// A `resent`'s new message.
    new_message: Option<&'o str>,
    /// `from` and `to`: of a `sent` in format 1, of every event in format 2.
    parties: Option<(&'o str, &'o str)>,
    reporter_org: &'o str,
}

fn validate<'o>(obj: &'o Object<'_>, format: u8) -> Result<Valid<'o>, EventError> {
    let mut f = Fields::new(obj, "");
    let type_name = f.req_str("type")?;
    let kind = EventType::from_name(type_name).ok_or_else(|| {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        err(
            "type",
            format!("{type_name:?} is not one of: {}", names.join(", ")),
        )
    })?;
    let id = f.req_str("id")?;
    check_text("id", id, Text::Id)?;
    let message = f.req_str("message")?;
    check_text("message", message, Text::Id)?;
    check_time("at", f.req_str("at")?)?;
    let reporter_org = match f.get("reporter") {
        None => return Err(err("reporter", "is required")),
        Some(Member::Object(r)) => {
            let mut rf = Fields::new(r, "reporter");
            let org = rf.req_str("org")?;
            check_orgnr_field("reporter.org", org)?;
            check_text("reporter.system", rf.req_str("system")?, Text::Name)?;
            match rf.get("seq") {
                None => {}
                Some(Member::UInt(s)) if *s >= 1 => {}
                Some(_) => return Err(err("reporter.seq", "must be an integer ≥ 1")),
            }
            rf.finish()?;
            org
        }
        Some(other) => {
            return Err(err(
                "reporter",
                format!("expected an object, found {}", other.kind()),
            ));
        }
    };
    let mut parties = None;
    let mut new_message = None;
    if format >= 2 || kind == EventType::Sent {
        // Every format-2 event names its message's parties: the message is theirs.
        let from = f.req_str("from")?;
        check_orgnr_field("from", from)?;
        let to = f.req_str("to")?;
        check_orgnr_field("to", to)?;
        parties = Some((from, to));
    }
    match kind {
        EventType::Sent => {
            check_enum("channel", f.req_str("channel")?, &CHANNELS)?;
            check_enum("category", f.req_str("category")?, &CATEGORIES)?;
            check_digest("content_digest", f.req_str("content_digest")?)?;
            if let Some(t) = f.opt_str("expires_at")? {
                check_time("expires_at", t)?;
            }
            match f.get("refs") {
                None => {}
                Some(Member::Object(refs)) => {
                    if refs.is_empty() || refs.len() > limits::REFS_COUNT_MAX {
                        return Err(err(
                            "refs",
                            format!("must hold 1 to {} entries", limits::REFS_COUNT_MAX),
                        ));
                    }
                    for (k, v) in refs.iter() {
                        let path = format!("refs.{k}");
                        let key_ok = k.len() <= 32
                            && k.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
                            && k.bytes()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
                        if !key_ok {
                            return Err(err(
                                path,
                                "a system name must be 1–32 characters of a–z, 0–9 and _, starting with a letter",
                            ));
                        }
                        let Member::Str(s) = v else {
                            return Err(err(
                                path,
                                format!("expected a string, found {}", v.kind()),
                            ));
                        };
                        if contains_national_id(k) {
                            return Err(err(
                                path,
                                "the key contains what looks like a national identity number; \
                                 personal data must never enter the log",
                            ));
                        }
                        check_text(&path, s, Text::Id)?;
                    }
                }
                Some(other) => {
                    return Err(err(
                        "refs",
                        format!("expected an object, found {}", other.kind()),
                    ));
                }
            }
        }
        EventType::HandedOff => {
            check_text("from_system", f.req_str("from_system")?, Text::Name)?;
            check_text("to_system", f.req_str("to_system")?, Text::Name)?;
        }
        EventType::Received => {
            check_text("system", f.req_str("system")?, Text::Name)?;
            if let Some(j) = f.opt_str("journal_ref")? {
                check_text("journal_ref", j, Text::Free)?;
            }
        }
        EventType::Opened => {
            check_text("by_role", f.req_str("by_role")?, Text::Name)?;
            if let Some(b) = f.opt_str("by")? {
                check_text("by", b, Text::Token)?;
            }
        }
        EventType::Deleted => check_text("reason", f.req_str("reason")?, Text::Free)?,
        EventType::Failed => check_text("error", f.req_str("error")?, Text::Free)?,
        EventType::Resent => {
            let new = f.req_str("new_message")?;
            check_text("new_message", new, Text::Id)?;
            if new == message {
                return Err(err("new_message", "must differ from `message`"));
            }
            new_message = Some(new);
            check_enum("channel", f.req_str("channel")?, &CHANNELS)?;
        }
        EventType::Resolved => {
            check_enum("outcome", f.req_str("outcome")?, &OUTCOMES)?;
            // Format 2 has no `note`: it is then an unknown field.
            if format == 1
                && let Some(n) = f.opt_str("note")?
            {
                check_text("note", n, Text::Free)?;
            }
        }
        EventType::Notice => {
            check_enum("notice", f.req_str("notice")?, &NOTICES)?;
            check_text("status", f.req_str("status")?, Text::Id)?;
            if let Some(s) = f.opt_str("system")? {
                check_text("system", s, Text::Name)?;
            }
        }
        EventType::Delivered | EventType::Acknowledged | EventType::Expired => {}
    }
    f.finish()?;
    Ok(Valid {
        id,
        kind,
        message,
        new_message,
        parties,
        reporter_org,
    })
}

/// A JSON value parsed under the ledger's strict rules: duplicate object keys,
/// floats and integers of magnitude 2^53 or more are errors, with their position.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        if v.unsigned_abs() >= limits::JSON_INT_MAX {
            return Err(E::custom(format!("integer {v} is not below 2^53")));
        }
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        if v >= limits::JSON_INT_MAX {
            return Err(E::custom(format!("integer {v} is not below 2^53")));
        }
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrictValue, E> {
        // The value is not echoed: as an f64 it may no longer be what was written
        // (7.0 would print as 7).
        Err(E::custom(
            "a number with a fraction, an exponent or 2^64 or more is not allowed: only \
             integers below 2^53, written without '.' or 'e'",
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate field {k:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sent() -> Value {
        serde_json::json!({
            "id": "ev-1", "type": "sent", "message": "MSG-1", "at": "2023-05-08T09:30:00Z",
            "reporter": {"org": "974760673", "system": "websak", "seq": 1},
            "from": "974760673", "to": "964338531", "channel": "altinn",
            "category": "bekymringsmelding",
            "content_digest": format!("sha256:{}", "ab".repeat(32)),
            "refs": {"altinn": "c0ffee"}
        })
    }

    fn reject(v: Value) -> EventError {
        Event::from_value(v).expect_err("should be rejected")
    }

    #[test]
    fn a_valid_event_keeps_canonical_bytes() {
        let e = Event::from_json(sent().to_string().as_bytes()).unwrap();
        assert_eq!(e.kind(), EventType::Sent);
        assert_eq!(e.id(), "ev-1");
        let text = std::str::from_utf8(e.canonical_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"at":"2023-05-08T09:30:00Z","category":"#),
            "{text}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = sent();
        v["reporter"]["org"] = "974760674".into();
        let e = reject(v);
        assert_eq!(e.field, "reporter.org");
        assert!(e.reason.contains("check digit"), "{e}");

        let mut v = sent();
        v["colour"] = "blue".into();
        assert_eq!(reject(v).field, "colour");

        let mut v = sent();
        v["channel"] = "pigeon".into();
        assert_eq!(reject(v).field, "channel");

        let mut v = sent();
        v.as_object_mut().unwrap().remove("content_digest");
        assert_eq!(reject(v).to_string(), "field `content_digest`: is required");
    }

    #[test]
    fn strict_json_rules() {
        let text = sent().to_string();
        for (bad, reason) in [
            (text.replacen("{", r#"{"id":"x","#, 1), "duplicate"),
            (text.replace(r#""seq":1"#, r#""seq":1.0"#), "not allowed"),
            (
                text.replace(r#""seq":1"#, r#""seq":9007199254740992"#),
                "2^53",
            ),
            (r#"{"id": "#.to_string(), "malformed"),
        ] {
            let e = Event::from_json(bad.as_bytes()).unwrap_err();
            assert!(e.reason.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn national_identity_numbers_are_refused() {
        let v = serde_json::json!({
            "id": "ev-2", "type": "opened", "message": "MSG-1", "at": "2023-05-08T09:30:00Z",
            "reporter": {"org": "974760673", "system": "familia"},
            "by_role": "saksbehandler", "by": "01010012356"
        });
        assert_eq!(reject(v).field, "by");
    }

    #[test]
    fn refs_keys_are_checked_for_national_identity_numbers() {
        let mut v = sent();
        v["refs"] = serde_json::json!({"x01010012356": "1"});
        assert_eq!(reject(v).field, "refs.x01010012356");
    }

    #[test]
    fn timestamps_follow_the_strict_syntax() {
        for ok in [
            "2023-05-08T09:30:00Z",
            "2023-05-08t09:30:00z",
            "2023-05-08T09:30:00.123456789123+02:00",
            "2016-12-31T23:59:60Z",
            "2023-05-08T09:30:00-23:59",
        ] {
            assert!(parse_time(ok).is_some(), "{ok}");
        }
        for bad in [
            "2023-05-08 09:30:00Z",
            "2023-05-08_09:30:00Z",
            "2023-05-08T09:30Z",
            "2023-05-08T09:30:00",
            "2023-05-08T09:30:00.Z",
            "2023-05-08T09:30:00+0200",
            "2023-05-08T09:30:00+24:00",
            "2023-02-30T09:30:00Z",
            "2023-13-08T09:30:00Z",
            "+2023-05-08T09:30:00Z",
            "2023-05-08T09:30:00Z ",
            "２０２３-05-08T09:30:00Z",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
        let mut v = sent();
        v["at"] = "2023-05-08 09:30:00Z".into();
        assert_eq!(reject(v).field, "at");
    }

    #[test]
    fn a_float_is_refused_without_misquoting_it() {
        let text = sent().to_string().replace(r#""seq":1"#, r#""seq":7.0"#);
        let e = Event::from_json(text.as_bytes()).unwrap_err();
        assert!(!e.reason.contains("number 7 "), "{e}");
        assert!(e.reason.contains("fraction"), "{e}");
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::canonical_json;
    use proptest::prelude::*;
    use serde_json::Value;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-(1i64 << 53) - 2..(1i64 << 53) + 2).prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            // Any Unicode scalar: controls, quotes, backslashes, astral planes.
            any::<String>().prop_map(Value::from),
            "[\\\"\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}/<>&a-z]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map("[a-z_][a-z0-9_]{0,7}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn fast_path_equals_the_general_canonicalizer(v in value()) {
            let general = serde_json_canonicalizer::to_vec(&v).unwrap();
            prop_assert_eq!(canonical_json(&v).unwrap(), general);
        }
    }

    #[test]
    fn non_ascii_keys_take_the_general_path() {
        // UTF-16 order differs from byte order here: U+FF61 sorts after U+1F600 in
        // UTF-8 but before it in UTF-16.
        let v: Value = serde_json::from_str(r#"{"\ud83d\ude00":1,"\uff61":2}"#).unwrap();
        assert_eq!(
            canonical_json(&v).unwrap(),
            serde_json_canonicalizer::to_vec(&v).unwrap()
        );
    }
}

#[cfg(test)]
mod one_pass_tests;
