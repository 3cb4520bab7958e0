//! An event's JSON object as the event rules read it, borrowed from its text.
//!
//! An event is a flat object of strings with two nested objects (`reporter`, `refs`)
//! and one integer (`reporter.seq`). [`Object::parse`] reads exactly that shape in one
//! pass over the input: strings without escapes stay borrowed, members are sorted by
//! key, and nothing else is built. Anything outside the shape (an array, a boolean,
//! a negative number, deeper nesting, a duplicate key, malformed text) makes it give
//! up, and the caller takes the general path through a `serde_json::Value`, which
//! finds and words the error; [`Object::of`] then borrows that value. Both paths
//! feed the same rules, so an input gets the same answer either way.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::limits;

/// A JSON object: its members sorted by key (byte order, which is RFC 8785's order
/// for the ASCII keys of a valid event), no key twice.
#[derive(Debug, PartialEq)]
pub(crate) struct Object<'a> {
    members: Vec<(Cow<'a, str>, Member<'a>)>,
    /// Whether its borrowed strings are JSON text as written (no escape, so none
    /// needed), rather than decoded values.
    raw: bool,
}

/// One member's value.
#[derive(Debug, PartialEq)]
pub(crate) enum Member<'a> {
    Str(Cow<'a, str>),
    /// An integer in `0..2^53`.
    UInt(u64),
    Object(Object<'a>),
    /// Any other value, by its kind in words ("an array"); never in a valid event.
    Other(&'static str),
}

impl Member<'_> {
    /// What kind of JSON value this is, in words for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Member::Str(_) => "a string",
            Member::UInt(_) => "a number",
            Member::Object(_) => "an object",
            Member::Other(kind) => kind,
        }
    }
}

/// Deepest object nesting the one-pass reader takes: the event and its `reporter`
/// and `refs`.
const FAST_DEPTH: u8 = 2;

impl<'a> Object<'a> {
    /// Reads an event-shaped object from JSON text in one pass, or `None` when the
    /// text is anything else (the general path then says what is wrong).
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Object<'a>> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let object = ObjectSeed { depth: 1 }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(object)
    }

    /// Borrows a parsed value's object.
    pub(crate) fn of(map: &'a Map<String, Value>) -> Object<'a> {
        let mut members: Vec<_> = map
            .iter()
            .map(|(k, v)| {
                let member = match v {
                    Value::String(s) => Member::Str(Cow::Borrowed(s)),
                    Value::Number(n) => match n.as_u64() {
                        Some(u) if u < limits::JSON_INT_MAX => Member::UInt(u),
                        _ => Member::Other("a number"),
                    },
                    Value::Object(m) => Member::Object(Object::of(m)),
                    other => Member::Other(super::kind_of(other)),
                };
                (Cow::Borrowed(k.as_str()), member)
            })
            .collect();
        // A `Map` iterates in key order unless serde_json's `preserve_order` is on.
        members.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
        Object {
            members,
            raw: false,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Member<'a>> {
        self.members
            .binary_search_by(|(k, _)| key_order(k, key))
            .ok()
            .map(|i| &self.members[i].1)
    }

    /// The string member `key`, if it is one.
    pub(crate) fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Member::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The object member `key`, if it is one.
    pub(crate) fn get_object(&self, key: &str) -> Option<&Object<'a>> {
        match self.get(key) {
            Some(Member::Object(o)) => Some(o),
            _ => None,
        }
    }

    /// The members in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Member<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The index of member `key` in key order.
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.members
            .binary_search_by(|(k, _)| key_order(k, key))
            .ok()
    }

    /// The member at `index` in key order.
    pub(crate) fn at(&self, index: usize) -> (&str, &Member<'a>) {
        let (k, v) = &self.members[index];
        (k, v)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The RFC 8785 (JCS) bytes of the object, or `None` if it holds what JCS would
    /// order or print differently from this writer (a non-ASCII key, a value that
    /// is not a string, an integer or an object): never so for a valid event.
    ///
    /// JCS sorts keys by UTF-16 code units, which is byte order for ASCII; it escapes
    /// strings as serde_json does (`\"`, `\\`, `\b \f \n \r \t`, other controls as
    /// lowercase `\u00xx`, nothing else) and prints integers below 2^53 as digits.
    pub(crate) fn canonical(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out)?;
        Some(out)
    }

    fn write_canonical(&self, out: &mut Vec<u8>) -> Option<()> {
        out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !k.is_ascii() {
                return None;
            }
            Self::write_str(out, k, self.raw && matches!(k, Cow::Borrowed(_)));
            out.push(b':');
            match v {
                Member::Str(s) => {
                    Self::write_str(out, s, self.raw && matches!(s, Cow::Borrowed(_)))
                }
                Member::UInt(n) => write!(out, "{n}").ok()?,
                Member::Object(o) => o.write_canonical(out)?,
                Member::Other(_) => return None,
            }
        }
        out.push(b'}');
        Some(())
    }

    /// Writes `s` as a JSON string; `verbatim` when it was read from JSON text
    /// without an escape.
    fn write_str(out: &mut Vec<u8>, s: &str, verbatim: bool) {
        if verbatim {
            // Read from the text with no escape: it holds no quote, backslash or
            // control character, so it is its own JSON.
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(out, s).expect("a string serializes into memory");
        }
    }
}

/// Byte order of two keys, by an inlined loop: keys are short, and a call to
/// `memcmp` per comparison cost more than the comparison.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.as_bytes().iter().cmp(b.as_bytes().iter())
}

/// Reads one object, nested at most [`FAST_DEPTH`] deep.
struct ObjectSeed {
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Object<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Object<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event-shaped JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let value = map.next_value_seed(MemberSeed { depth: self.depth })?;
            members.push((key, value));
        }
        members.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
        if members
            .windows(2)
            .any(|w| key_order(&w[0].0, &w[1].0).is_eq())
        {
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(Object { members, raw: true })
    }
}

/// Reads a string, borrowed when the text holds it without escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Reads a member's value: a string, an integer below 2^53 or a nested object.
struct MemberSeed {
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer or an object")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Member<'de>, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Member<'de>, E> {
        if v >= limits::JSON_INT_MAX {
            return Err(E::custom("integer not below 2^53"));
        }
        Ok(Member::UInt(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
        if self.depth >= FAST_DEPTH {
            return Err(de::Error::custom("nested deeper than an event"));
        }
        ObjectSeed {
            depth: self.depth + 1,
        }
        .visit_map(map)
        .map(Member::Object)
    }
}
