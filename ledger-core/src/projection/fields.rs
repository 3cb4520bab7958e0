//! The fields of a recorded event that projections read, borrowed from its
//! canonical JSON. Entries were validated when appended; a field that cannot be read
//! here means the log is corrupt, and is reported as such.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::{EventType, message_key};

use super::Instant;

#[derive(Deserialize)]
pub(crate) struct Reporter<'a> {
    #[serde(borrow)]
    pub org: Cow<'a, str>,
    #[serde(borrow)]
    pub system: Cow<'a, str>,
    pub seq: Option<u64>,
}

/// Every field any event type has; which are present depends on `type`.
#[derive(Deserialize)]
pub(crate) struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub at: Cow<'a, str>,
    #[serde(borrow)]
    pub reporter: Reporter<'a>,
    #[serde(borrow, default)]
    pub from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub content_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub expires_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub refs: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub from_system: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub to_system: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub system: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub journal_ref: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub by_role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub new_message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub outcome: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub note: Option<Cow<'a, str>>,
}

/// An event as the projections see it.
pub(crate) struct EventView<'a> {
    /// The key of the message it is about ([`crate::event::message_key`]).
    pub key: Cow<'a, str>,
    /// A `resent`'s new message's key.
    pub linked: Option<Cow<'a, str>>,
    pub kind: EventType,
    pub at: Instant,
    pub expires_at: Option<Instant>,
    pub f: Fields<'a>,
}

impl<'a> EventView<'a> {
    /// Reads an event of format `v` (its entry's).
    pub fn parse(json: &'a str, v: u8) -> Result<EventView<'a>, String> {
        let f: Fields<'a> =
            serde_json::from_str(json).map_err(|e| format!("unreadable event: {e}"))?;
        let kind = EventType::from_name(&f.kind)
            .ok_or_else(|| format!("unknown event type {:?}", f.kind))?;
        let at = Instant::parse(&f.at).ok_or_else(|| format!("bad `at` {:?}", f.at))?;
        let expires_at = match &f.expires_at {
            None => None,
            Some(t) => Some(Instant::parse(t).ok_or_else(|| format!("bad `expires_at` {t:?}"))?),
        };
        let missing = |name: &str| format!("a `{}` event without `{name}`", kind.name());
        let required: &[(&str, bool)] = match kind {
            EventType::Sent => &[
                ("from", f.from.is_some()),
                ("to", f.to.is_some()),
                ("channel", f.channel.is_some()),
                ("category", f.category.is_some()),
            ],
            EventType::HandedOff => &[
                ("from_system", f.from_system.is_some()),
                ("to_system", f.to_system.is_some()),
            ],
            EventType::Received => &[("system", f.system.is_some())],
            EventType::Resent => &[
                ("new_message", f.new_message.is_some()),
                ("channel", f.channel.is_some()),
            ],
            EventType::Resolved => &[("outcome", f.outcome.is_some())],
            _ => &[],
        };
        if let Some((name, _)) = required.iter().find(|(_, present)| !present) {
            return Err(missing(name));
        }
        if v >= 2 && (f.from.is_none() || f.to.is_none()) {
            return Err(missing("from` and `to"));
        }
        let (from, to) = (
            f.from.as_deref().unwrap_or(""),
            f.to.as_deref().unwrap_or(""),
        );
        let key = match message_key(v, from, to, &f.message) {
            Cow::Borrowed(_) => f.message.clone(),
            owned => Cow::Owned(owned.into_owned()),
        };
        let linked = f
            .new_message
            .as_deref()
            .map(|n| Cow::Owned(message_key(v, from, to, n).into_owned()));
        Ok(EventView {
            key,
            linked,
            kind,
            at,
            expires_at,
            f,
        })
    }

    /// A required string field (checked present by [`EventView::parse`]).
    pub fn req(&self, v: &Option<Cow<'a, str>>) -> String {
        self.req_str(v).to_string()
    }

    /// [`Self::req`], borrowed.
    pub fn req_str<'v>(&self, v: &'v Option<Cow<'a, str>>) -> &'v str {
        v.as_deref().unwrap_or_default()
    }
}
