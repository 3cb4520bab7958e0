//! Entries: what the ledger stores and hashes.
//!
//! An entry is the RFC 8785 canonical JSON of
//! `{"event":{…},"prev":HEX,"recorded_at":TIME,"seq":N,"v":V}`, where `V` is the
//! format (1 or 2) whose rules the event obeys. Because JCS sorts keys
//! and the envelope's strings need no escaping, the canonical bytes are the
//! concatenation built by [`entry_bytes`]; [`parse_entry`] checks stored bytes are
//! exactly that form.

use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::event::{Event, EventError, FORMATS};
use crate::hash::{Hash, from_hex};
use crate::rotation::{KEY_ENTRY_V, KeyAnnouncement};

/// Formats the ledger's clock for `recorded_at`: UTC, always six fractional digits,
/// so the field has a fixed width of 27 characters.
pub fn format_recorded_at(t: OffsetDateTime) -> String {
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .expect("a UTC time between years 0 and 9999 always formats")
}

/// Whether `s` has the exact `recorded_at` shape (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
pub fn is_recorded_at(s: &str) -> bool {
    // The layout first, by bytes (cheap, and verify calls this for every entry); the
    // calendar by the parser.
    let b = s.as_bytes();
    let layout = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !layout {
        return false;
    }
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let year = i32::from(two(0)) * 100 + i32::from(two(2));
    let (month, day, hour, minute, second) = (two(5), two(8), two(11), two(14), two(17));
    // The calendar by arithmetic, as the parser judges it (tested against it).
    let Ok(month) = time::Month::try_from(month) else {
        return false;
    };
    (1..=month.length(year)).contains(&day) && hour < 24 && minute < 60 && second < 60
}

/// The parser's judgement of a `recorded_at`, for the test of [`is_recorded_at`].
#[cfg(test)]
fn is_recorded_at_parsed(s: &str) -> bool {
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    s.len() == 27 && time::PrimitiveDateTime::parse(s, &f).is_ok()
}

/// The canonical bytes of an entry whose event obeys format `v`.
pub fn entry_bytes(
    seq: u64,
    prev: &Hash,
    recorded_at: &str,
    v: u8,
    event_canonical: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_canonical.len() + 160);
    write_entry(&mut out, seq, prev, recorded_at, v, event_canonical);
    out
}

/// Appends the canonical bytes of an entry to `out`.
pub fn write_entry(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &Hash,
    recorded_at: &str,
    v: u8,
    event: &[u8],
) {
    debug_assert!(is_recorded_at(recorded_at));
    debug_assert!(FORMATS.contains(&v) || v == KEY_ENTRY_V);
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(event);
    out.extend_from_slice(b",\"prev\":\"");
    // On the append path: no string is allocated for the hex or the number.
    let mut hex = [0u8; 64];
    hex::encode_to_slice(prev, &mut hex).expect("64 hex digits for 32 bytes");
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"recorded_at\":\"");
    out.extend_from_slice(recorded_at.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    std::io::Write::write_fmt(out, format_args!("{seq}")).expect("a Vec takes every write");
    out.extend_from_slice(b",\"v\":");
    out.push(b'0' + v);
    out.push(b'}');
}

/// The fields of a stored entry.
#[derive(Debug, Clone)]
pub struct ParsedEntry<'a> {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of the previous entry (or the genesis value).
    pub prev: Hash,
    /// The ledger's clock when it recorded the entry.
    pub recorded_at: &'a str,
    /// The event's canonical bytes as stored.
    pub event: &'a str,
    /// The format whose rules the event obeys (1 or 2), or 3: the `event` is a
    /// key announcement ([`crate::rotation`]), not a message's event.
    pub v: u8,
}

impl ParsedEntry<'_> {
    /// Whether this entry announces a new signing key rather than recording an event.
    pub fn is_key_entry(&self) -> bool {
        self.v == KEY_ENTRY_V
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    v: u64,
    seq: u64,
    prev: &'a str,
    recorded_at: &'a str,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Why stored bytes are not a well-formed entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Not JSON, or not an entry object.
    #[error("not an entry: {0}")]
    Malformed(String),
    /// A format version this code does not know.
    #[error("entry format version {0} is not supported (this code reads versions 1 to 3)")]
    Version(u64),
    /// `prev` is not 64 hex digits.
    #[error("`prev` is not 64 lowercase hex digits")]
    BadPrev,
    /// `recorded_at` is not in the fixed format.
    #[error("`recorded_at` {0:?} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")]
    BadRecordedAt(String),
    /// The event inside fails validation.
    #[error("event is invalid: {0}")]
    Event(EventError),
    /// The bytes are not the canonical (JCS) form of their own content.
    #[error("bytes are not in canonical (RFC 8785) form")]
    NotCanonical,
}

/// Parses stored entry bytes, cheaply: envelope only, the event is not validated.
pub fn parse_entry(bytes: &[u8]) -> Result<ParsedEntry<'_>, EntryError> {
    let env: Envelope<'_> =
        serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
    let v = match u8::try_from(env.v) {
        Ok(v) if FORMATS.contains(&v) || v == KEY_ENTRY_V => v,
        _ => return Err(EntryError::Version(env.v)),
    };
    let prev = match from_hex(env.prev) {
        Some(p) if env.prev.bytes().all(|c| !c.is_ascii_uppercase()) => p,
        _ => return Err(EntryError::BadPrev),
    };
    if !is_recorded_at(env.recorded_at) {
        return Err(EntryError::BadRecordedAt(env.recorded_at.to_string()));
    }
    Ok(ParsedEntry {
        seq: env.seq,
        prev,
        recorded_at: env.recorded_at,
        event: env.event.get(),
        v,
    })
}

/// Parses stored entry bytes by their fixed canonical layout, without a JSON parser:
/// `{"event":` EVENT `,"prev":"` 64 hex `","recorded_at":"` 27 characters
/// `","seq":` N `,"v":` V `}`. The envelope is checked completely (it is canonical or
/// refused); the event is only checked to be braces around UTF-8, not validated:
/// that is [`check_entry`]'s work, at about ten times the cost. This is what lets
/// `verify` check a chain at disk speed.
pub fn parse_envelope(bytes: &[u8]) -> Result<ParsedEntry<'_>, EntryError> {
    let fast = || -> Option<ParsedEntry<'_>> {
        let rest = bytes.strip_prefix(b"{\"event\":")?;
        let (rest, v) = match rest.strip_suffix(b"}")?.split_last_chunk::<6>()? {
            (rest, b",\"v\":1") => (rest, 1),
            (rest, b",\"v\":2") => (rest, 2),
            (rest, b",\"v\":3") => (rest, KEY_ENTRY_V),
            _ => return None,
        };
        // seq: canonical digits at the end.
        let digits = rest.iter().rev().take_while(|c| c.is_ascii_digit()).count();
        let (rest, seq_text) = rest.split_at(rest.len() - digits);
        if digits == 0 || digits > 20 || (digits > 1 && seq_text[0] == b'0') {
            return None;
        }
        let seq: u64 = std::str::from_utf8(seq_text).ok()?.parse().ok()?;
        let rest = rest.strip_suffix(b"\",\"seq\":")?;
        let (rest, recorded_at) = rest.split_at(rest.len().checked_sub(27)?);
        let recorded_at = std::str::from_utf8(recorded_at).ok()?;
        let rest = rest.strip_suffix(b"\",\"recorded_at\":\"")?;
        let (rest, prev_hex) = rest.split_at(rest.len().checked_sub(64)?);
        let rest = rest.strip_suffix(b",\"prev\":\"")?;
        if !prev_hex
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let prev = from_hex(std::str::from_utf8(prev_hex).ok()?)?;
        if rest.first() != Some(&b'{') || rest.last() != Some(&b'}') {
            return None;
        }
        let event = std::str::from_utf8(rest).ok()?;
        is_recorded_at(recorded_at).then_some(ParsedEntry {
            seq,
            prev,
            recorded_at,
            event,
            v,
        })
    };
    match fast() {
        Some(p) => Ok(p),
        // Not the canonical layout: say what is wrong, as precisely as a parser can.
        None => match parse_entry(bytes) {
            Ok(_) => Err(EntryError::NotCanonical),
            Err(e) => Err(e),
        },
    }
}

/// Parses stored entry bytes and checks everything the format promises: the event is
/// valid and both it and the envelope are in canonical form. Returns the envelope and
/// the event.
pub fn check_entry(bytes: &[u8]) -> Result<(ParsedEntry<'_>, Event), EntryError> {
    let p = parse_entry(bytes)?;
    if p.is_key_entry() {
        return Err(EntryError::Malformed(
            "a key announcement (version 3), not an event".into(),
        ));
    }
    let event = Event::from_json_as(p.event.as_bytes(), p.v).map_err(EntryError::Event)?;
    if event.canonical_bytes() != p.event.as_bytes() {
        return Err(EntryError::NotCanonical);
    }
    let rebuilt = entry_bytes(p.seq, &p.prev, p.recorded_at, p.v, event.canonical_bytes());
    if rebuilt != bytes {
        return Err(EntryError::NotCanonical);
    }
    Ok((p, event))
}

/// [`check_entry`] for a key entry of the log named `origin`: the announcement is
/// valid, canonical, and the envelope is the canonical form around it.
pub fn check_key_entry<'a>(
    bytes: &'a [u8],
    origin: &str,
) -> Result<(ParsedEntry<'a>, KeyAnnouncement), EntryError> {
    let p = parse_entry(bytes)?;
    if !p.is_key_entry() {
        return Err(EntryError::Malformed(format!(
            "version {}: an event, not a key announcement",
            p.v
        )));
    }
    let a = KeyAnnouncement::parse(p.event.as_bytes(), origin)
        .map_err(|e| EntryError::Malformed(e.to_string()))?;
    if entry_bytes(p.seq, &p.prev, p.recorded_at, p.v, p.event.as_bytes()) != bytes {
        return Err(EntryError::NotCanonical);
    }
    Ok((p, a))
}

/// The keys a store files an entry under, computed from its stored event (not
/// validated) as the writer computed them from the [`crate::Event`], by the same
/// functions.
pub struct IndexKeys {
    /// [`crate::event::id_key`].
    pub id: String,
    /// [`crate::event::message_key`].
    pub message: String,
    /// The key of a `resent`'s new message.
    pub new_message: Option<String>,
}

#[derive(serde::Deserialize)]
struct StoredFields<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    new_message: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    reporter: StoredReporter<'a>,
}

#[derive(serde::Deserialize)]
struct StoredReporter<'a> {
    #[serde(borrow)]
    org: std::borrow::Cow<'a, str>,
}

/// Reads the keys of a stored event of format `v`.
pub fn index_keys(event: &str, v: u8) -> Result<IndexKeys, String> {
    use crate::event::{id_key, message_key};
    let f: StoredFields<'_> =
        serde_json::from_str(event).map_err(|e| format!("event has no id or message: {e}"))?;
    let (from, to) = (
        f.from.as_deref().unwrap_or(""),
        f.to.as_deref().unwrap_or(""),
    );
    if v >= 2 && (f.from.is_none() || f.to.is_none()) {
        return Err("a format-2 event without `from` and `to`".into());
    }
    Ok(IndexKeys {
        id: id_key(v, &f.reporter.org, &f.id).into_owned(),
        message: message_key(v, from, to, &f.message).into_owned(),
        new_message: f
            .new_message
            .map(|n| message_key(v, from, to, &n).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashAlg, to_hex};

    #[test]
    fn recorded_at_is_judged_as_the_parser_judges_it() {
        for year in [0, 1, 4, 100, 1900, 2000, 2023, 2024, 2100, 9999] {
            for month in 0..=13 {
                for day in 0..=32 {
                    for (h, m, sec) in [(0, 0, 0), (23, 59, 59), (24, 0, 0), (0, 60, 0), (0, 0, 60)]
                    {
                        let s =
                            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.123456Z");
                        assert_eq!(is_recorded_at(&s), is_recorded_at_parsed(&s), "{s}");
                    }
                }
            }
        }
        assert!(is_recorded_at("2024-02-29T00:00:00.000000Z"));
        assert!(!is_recorded_at("2023-02-29T00:00:00.000000Z"));
        assert!(!is_recorded_at("2023-02-28T00:00:00.000000"));
    }

    #[test]
    fn built_entries_are_jcs_canonical_and_parse_back() {
        let ev = serde_json::json!({
            "id": "e1", "type": "delivered", "message": "M\u{e6}-\"1\"", "at": "2023-01-01T00:00:00+01:00",
            "reporter": {"org": "974760673", "system": "alt\u{f8}nn", "seq": 7}
        });
        let event = Event::from_value(ev).unwrap();
        let prev = HashAlg::Blake3.genesis("test");
        let at = format_recorded_at(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(at, "1970-01-01T00:00:00.000000Z");
        let bytes = entry_bytes(42, &prev, &at, 1, event.canonical_bytes());
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json_canonicalizer::to_vec(&value).unwrap(), bytes);
        let (p, e) = check_entry(&bytes).unwrap();
        assert_eq!(e.canonical_bytes(), event.canonical_bytes());
        assert_eq!((p.seq, p.prev, p.recorded_at), (42, prev, at.as_str()));
    }

    #[test]
    fn non_canonical_bytes_are_refused() {
        let ev = serde_json::json!({
            "id": "e1", "type": "expired", "message": "M1", "at": "2023-01-01T00:00:00Z",
            "reporter": {"org": "974760673", "system": "altinn"}
        });
        let event = Event::from_value(ev).unwrap();
        let at = format_recorded_at(OffsetDateTime::UNIX_EPOCH);
        let good = entry_bytes(0, &[0; 32], &at, 1, event.canonical_bytes());
        let spaced = String::from_utf8(good.clone())
            .unwrap()
            .replacen(":", ": ", 1);
        assert_eq!(
            check_entry(spaced.as_bytes()).unwrap_err(),
            EntryError::NotCanonical
        );
        let v4 = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"v\":1}", "\"v\":4}");
        assert_eq!(
            check_entry(v4.as_bytes()).unwrap_err(),
            EntryError::Version(4)
        );
        // Version 3 is a key entry: an event under it is neither an event nor a key.
        let v3 = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"v\":1}", "\"v\":3}");
        assert!(matches!(
            check_entry(v3.as_bytes()),
            Err(EntryError::Malformed(_))
        ));
        assert!(check_key_entry(v3.as_bytes(), "o").is_err());
        // A format-1 event under `"v":2` is judged by format 2's rules: it names no
        // parties, so it is invalid.
        let v2 = String::from_utf8(good)
            .unwrap()
            .replace("\"v\":1}", "\"v\":2}");
        match check_entry(v2.as_bytes()).unwrap_err() {
            EntryError::Event(e) => assert_eq!(e.field, "from"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn format_2_entries_carry_their_version_and_scoped_keys() {
        let ev = serde_json::json!({
            "id": "e1", "type": "opened", "message": "M-3", "at": "2023-01-01T00:00:00Z",
            "reporter": {"org": "964338531", "system": "websak"},
            "from": "974760673", "to": "964338531", "by_role": "saksbehandler"
        });
        let event = Event::from_value_as(ev, 2).unwrap();
        assert_eq!(event.format(), 2);
        assert_eq!(event.id_key(), "964338531\u{1f}e1");
        assert_eq!(event.key(), "974760673\u{1f}964338531\u{1f}M-3");
        let at = format_recorded_at(OffsetDateTime::UNIX_EPOCH);
        let bytes = entry_bytes(3, &[0; 32], &at, 2, event.canonical_bytes());
        assert!(bytes.ends_with(b",\"v\":2}"));
        let fast = parse_envelope(&bytes).unwrap();
        let (full, e) = check_entry(&bytes).unwrap();
        assert_eq!((fast.v, full.v), (2, 2));
        assert_eq!(e, event);
    }

    #[test]
    fn the_envelope_parser_agrees_with_the_full_check() {
        let event = Event::from_json(
            br#"{"id":"e","type":"delivered","message":"M","at":"2023-05-08T00:00:00Z","reporter":{"org":"974760673","system":"s"}}"#,
        )
        .unwrap();
        let prev = HashAlg::Sha256.genesis("t");
        let at = format_recorded_at(OffsetDateTime::UNIX_EPOCH);
        for seq in [0, 7, 10, 123456789, u64::MAX] {
            let bytes = entry_bytes(seq, &prev, &at, 1, event.canonical_bytes());
            let fast = parse_envelope(&bytes).unwrap();
            let (full, _) = check_entry(&bytes).unwrap();
            assert_eq!(
                (fast.seq, fast.prev, fast.recorded_at, fast.event, fast.v),
                (full.seq, full.prev, full.recorded_at, full.event, full.v)
            );
        }
        // A key entry: the fast parser and the full check agree on it too.
        let key = crate::checkpoint::SigningKey::generate("t").unwrap();
        let announcement = KeyAnnouncement {
            key: key.verifier(),
            reason: crate::rotation::RotationReason::Scheduled,
        };
        let bytes = entry_bytes(9, &prev, &at, KEY_ENTRY_V, &announcement.canonical_bytes());
        let fast = parse_envelope(&bytes).unwrap();
        let (full, a) = check_key_entry(&bytes, "t").unwrap();
        assert!(fast.is_key_entry() && full.is_key_entry());
        assert_eq!((fast.seq, fast.event), (full.seq, full.event));
        assert_eq!(a, announcement);
        assert!(check_key_entry(&bytes, "another").is_err());
        let good =
            String::from_utf8(entry_bytes(7, &prev, &at, 1, event.canonical_bytes())).unwrap();
        for bad in [
            good.replace(",\"seq\":7", ",\"seq\":07"),
            good.replace(",\"v\":1}", ",\"v\":4}"),
            good.replace(",\"seq\":7", ", \"seq\":7"),
            good.replacen(&to_hex(&prev)[..2], "AB", 1),
            good.replace("00.000000Z", "00.00000Z"),
            good.replace("{\"event\":", "{\"event\": "),
            format!("{good} "),
        ] {
            assert!(parse_envelope(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
