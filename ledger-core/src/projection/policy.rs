//! Deadline policy (docs/projections.md §4): TOML, with defaults shipped in
//! `policy/default.toml`. A policy is never baked into stored events: evaluating the
//! same facts under another policy gives that policy's verdicts for all history.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use crate::event::{CATEGORIES, CHANNELS};
use crate::hash::{Hash, HashAlg};

/// The built-in policy, `policy/default.toml`.
pub const DEFAULT_POLICY: &str = include_str!("../../../policy/default.toml");

/// A policy that cannot be used, with the line it is on when known.
#[derive(Debug, thiserror::Error)]
#[error("{}policy: {reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct PolicyError {
    /// 1-based line in the policy text.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// The six keys, resolved for one message. Durations in seconds; `None` = no such
/// deadline (or no warning, or never stuck).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Open within this long of the send.
    pub open_within: Option<i64>,
    /// Acknowledge within this long of the send.
    pub ack_within: Option<i64>,
    /// The channel deletes it this long after the send (unless `sent.expires_at`).
    pub expires_after: Option<i64>,
    /// Warn this long before expiry.
    pub warn_before_expiry: Option<i64>,
    /// A hand-off must be received within this long.
    pub handoff_receive_within: Option<i64>,
    /// A `received` counts as the open signal (letters).
    pub received_counts_as_opened: bool,
    /// A `received` completes the message: it is the open signal and the
    /// acknowledgement, for channels that carry neither (eFormidling DPO, Fiks IO),
    /// where the recipient's own system confirming it took the message is the
    /// end-to-end receipt.
    pub received_completes: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Keys {
    open_within: Option<Option<i64>>,
    ack_within: Option<Option<i64>>,
    expires_after: Option<Option<i64>>,
    warn_before_expiry: Option<Option<i64>>,
    handoff_receive_within: Option<Option<i64>>,
    received_counts_as_opened: Option<bool>,
    received_completes: Option<bool>,
}

impl Keys {
    /// Fills what `self` leaves unset from `other`.
    fn or(self, other: &Keys) -> Keys {
        Keys {
            open_within: self.open_within.or(other.open_within),
            ack_within: self.ack_within.or(other.ack_within),
            expires_after: self.expires_after.or(other.expires_after),
            warn_before_expiry: self.warn_before_expiry.or(other.warn_before_expiry),
            handoff_receive_within: self.handoff_receive_within.or(other.handoff_receive_within),
            received_counts_as_opened: self
                .received_counts_as_opened
                .or(other.received_counts_as_opened),
            received_completes: self.received_completes.or(other.received_completes),
        }
    }

    fn to_json(self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let mut dur = |k: &str, v: Option<Option<i64>>| {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        };
        dur("open_within", self.open_within);
        dur("ack_within", self.ack_within);
        dur("expires_after", self.expires_after);
        dur("warn_before_expiry", self.warn_before_expiry);
        dur("handoff_receive_within", self.handoff_receive_within);
        if let Some(b) = self.received_counts_as_opened {
            m.insert("received_counts_as_opened".into(), json!(b));
        }
        // Set only where written, so that a policy written before the key existed
        // keeps its digest.
        if let Some(b) = self.received_completes {
            m.insert("received_completes".into(), json!(b));
        }
        m
    }
}

/// A parsed, checked policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    defaults: Keys,
    /// (category, channel) → keys; `None` matches any.
    rules: BTreeMap<(Option<String>, Option<String>), Keys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    defaults: toml::Spanned<RawKeys>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawKeys>>,
}

/// The keys of `[defaults]` and of a `[[rule]]` (whose selector is `category` and/or
/// `channel`; serde's `flatten` would lose the spans that name lines in errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    category: Option<toml::Spanned<String>>,
    channel: Option<toml::Spanned<String>>,
    open_within: Option<toml::Spanned<String>>,
    ack_within: Option<toml::Spanned<String>>,
    expires_after: Option<toml::Spanned<String>>,
    warn_before_expiry: Option<toml::Spanned<String>>,
    handoff_receive_within: Option<toml::Spanned<String>>,
    received_counts_as_opened: Option<bool>,
    received_completes: Option<bool>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses `"<n>s|m|h|d"` or `"none"` into seconds.
pub fn parse_duration(s: &str) -> Result<Option<i64>, String> {
    if s == "none" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{s:?} is not a duration: write <n>s, <n>m, <n>h or <n>d (d = 86400 s), or \"none\""
        )
    };
    let (digits, unit) = s.split_at(s.len().saturating_sub(1));
    let scale: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(scale)
        .filter(|&v| v < (1i64 << 53))
        .map(Some)
        .ok_or_else(|| format!("{s:?} is too long (limit 2^53 seconds)"))
}

impl Policy {
    /// The built-in default policy.
    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY).expect("the built-in policy parses")
    }

    /// Parses and checks a policy; an error names the line.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map(|s| line_of(text, s.start)),
            reason: e.message().to_string(),
        })?;
        if raw.version != 1 {
            return Err(PolicyError {
                line: None,
                reason: format!(
                    "version {} is not supported (this ledger reads version 1)",
                    raw.version
                ),
            });
        }
        if raw.defaults.get_ref().category.is_some() || raw.defaults.get_ref().channel.is_some() {
            return Err(PolicyError {
                line: Some(line_of(text, raw.defaults.span().start)),
                reason: "[defaults] applies to every message: `category` and `channel` belong in a [[rule]]".into(),
            });
        }
        let defaults = keys(text, raw.defaults.get_ref())?;
        let missing: Vec<&str> = [
            ("open_within", defaults.open_within.is_none()),
            ("ack_within", defaults.ack_within.is_none()),
            ("expires_after", defaults.expires_after.is_none()),
            ("warn_before_expiry", defaults.warn_before_expiry.is_none()),
            (
                "handoff_receive_within",
                defaults.handoff_receive_within.is_none(),
            ),
            (
                "received_counts_as_opened",
                defaults.received_counts_as_opened.is_none(),
            ),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| k)
        .collect();
        if !missing.is_empty() {
            return Err(PolicyError {
                line: None,
                reason: format!(
                    "[defaults] must set every key; missing: {}",
                    missing.join(", ")
                ),
            });
        }
        let mut rules = BTreeMap::new();
        for spanned in &raw.rule {
            let line = line_of(text, spanned.span().start);
            let r = spanned.get_ref();
            let pick = |v: &Option<toml::Spanned<String>>, allowed: &[&str], what: &str| match v {
                None => Ok(None),
                Some(s) if allowed.contains(&s.get_ref().as_str()) => Ok(Some(s.get_ref().clone())),
                Some(s) => Err(PolicyError {
                    line: Some(line_of(text, s.span().start)),
                    reason: format!(
                        "{what} {:?} is not one of: {}",
                        s.get_ref(),
                        allowed.join(", ")
                    ),
                }),
            };
            let category = pick(&r.category, &CATEGORIES, "category")?;
            let channel = pick(&r.channel, &CHANNELS, "channel")?;
            if category.is_none() && channel.is_none() {
                return Err(PolicyError {
                    line: Some(line),
                    reason: "a [[rule]] must select on `category`, `channel` or both".into(),
                });
            }
            let k = keys(text, r)?;
            let selector = (category, channel);
            if rules.insert(selector.clone(), k).is_some() {
                return Err(PolicyError {
                    line: Some(line),
                    reason: format!(
                        "a second rule for category {:?} and channel {:?}",
                        selector.0.as_deref().unwrap_or("any"),
                        selector.1.as_deref().unwrap_or("any")
                    ),
                });
            }
        }
        Ok(Policy { defaults, rules })
    }

    /// The rule for a message; an unknown category or channel matches only rules
    /// that do not select on it.
    pub fn rule(&self, category: Option<&str>, channel: Option<&str>) -> Rule {
        // A policy has a handful of rules: one scan, comparing no more than needed and
        // allocating nothing, since this runs for every message of a report.
        let (mut both, mut cat, mut ch) = (None, None, None);
        for ((c, h), k) in &self.rules {
            match (c.as_deref(), h.as_deref()) {
                (Some(c), Some(h)) if Some(c) == category && Some(h) == channel => both = Some(k),
                (Some(c), None) if Some(c) == category => cat = Some(k),
                (None, Some(h)) if Some(h) == channel => ch = Some(k),
                _ => {}
            }
        }
        let none = Keys::default();
        let (both, cat, ch) = (
            both.unwrap_or(&none),
            cat.unwrap_or(&none),
            ch.unwrap_or(&none),
        );
        let k = both.or(cat).or(ch).or(&self.defaults);
        Rule {
            open_within: k.open_within.flatten(),
            ack_within: k.ack_within.flatten(),
            expires_after: k.expires_after.flatten(),
            warn_before_expiry: k.warn_before_expiry.flatten(),
            handoff_receive_within: k.handoff_receive_within.flatten(),
            received_counts_as_opened: k.received_counts_as_opened.unwrap_or(false),
            // Optional even in [defaults] (it came after version 1's other keys).
            received_completes: k.received_completes.unwrap_or(false),
        }
    }

    /// The normalised policy as JSON: comments and layout do not change it.
    pub fn normalised(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .map(|((cat, ch), k)| {
                let mut m = k.to_json();
                if let Some(c) = cat {
                    m.insert("category".into(), json!(c));
                }
                if let Some(h) = ch {
                    m.insert("channel".into(), json!(h));
                }
                serde_json::Value::Object(m)
            })
            .collect();
        json!({"version": 1, "defaults": self.defaults.to_json(), "rules": rules})
    }

    /// `H("ledger-policy/1\n" ‖ JCS(normalised))`.
    pub fn digest(&self, alg: HashAlg) -> Hash {
        let jcs = serde_json_canonicalizer::to_vec(&self.normalised()).expect("json");
        alg.digest(&[b"ledger-policy/1\n", &jcs])
    }
}

fn keys(text: &str, raw: &RawKeys) -> Result<Keys, PolicyError> {
    let dur = |v: &Option<toml::Spanned<String>>| -> Result<Option<Option<i64>>, PolicyError> {
        match v {
            None => Ok(None),
            Some(s) => parse_duration(s.get_ref())
                .map(Some)
                .map_err(|reason| PolicyError {
                    line: Some(line_of(text, s.span().start)),
                    reason,
                }),
        }
    };
    Ok(Keys {
        open_within: dur(&raw.open_within)?,
        ack_within: dur(&raw.ack_within)?,
        expires_after: dur(&raw.expires_after)?,
        warn_before_expiry: dur(&raw.warn_before_expiry)?,
        handoff_receive_within: dur(&raw.handoff_receive_within)?,
        received_counts_as_opened: raw.received_counts_as_opened,
        received_completes: raw.received_completes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_resolves_most_specific_first() {
        let p = Policy::default_policy();
        let b = p.rule(Some("bekymringsmelding"), Some("altinn"));
        assert_eq!(b.open_within, Some(7 * 86_400));
        assert_eq!(b.ack_within, Some(14 * 86_400));
        assert_eq!(b.expires_after, Some(30 * 86_400));
        assert_eq!(b.warn_before_expiry, Some(7 * 86_400));
        assert!(!b.received_counts_as_opened);
        let d = p.rule(Some("document"), Some("altinn"));
        assert_eq!(d.open_within, Some(30 * 86_400));
        assert_eq!(d.ack_within, None);
        assert_eq!(d.expires_after, Some(30 * 86_400));
        assert!(!d.received_completes);
        let letter = p.rule(None, Some("letter"));
        assert!(letter.received_counts_as_opened);
        assert!(!letter.received_completes);
        for channel in ["eformidling", "fiks_io"] {
            for category in [None, Some("bekymringsmelding"), Some("document")] {
                assert!(
                    p.rule(category, Some(channel)).received_completes,
                    "{channel}"
                );
            }
        }
        assert_eq!(letter.open_within, Some(30 * 86_400));
        assert_eq!(p.rule(None, None).handoff_receive_within, Some(86_400));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(Some(604_800)));
        assert_eq!(parse_duration("0s"), Ok(Some(0)));
        assert_eq!(parse_duration("none"), Ok(None));
        for bad in [
            "",
            "d",
            "07d",
            "-1d",
            "1w",
            "1.5h",
            " 1d",
            "1 d",
            "99999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let base = "version = 1\n[defaults]\nopen_within = \"30d\"\nack_within = \"none\"\n\
                    expires_after = \"none\"\nwarn_before_expiry = \"7d\"\n\
                    handoff_receive_within = \"24h\"\nreceived_counts_as_opened = false\n";
        assert!(Policy::parse(base).is_ok());
        let e = Policy::parse(&format!("{base}[[rule]]\ncategory = \"x\"\n")).unwrap_err();
        assert_eq!(e.line, Some(10), "{e}");
        let e = Policy::parse(&format!(
            "{base}[[rule]]\nchannel = \"altinn\"\nopen_within = \"3 days\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = Policy::parse(&format!(
            "{base}[[rule]]\nchannel = \"altinn\"\nopen_witin = \"3d\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("open_witin"), "{e}");
        let e = Policy::parse(&format!(
            "{base}[[rule]]\nchannel = \"altinn\"\n[[rule]]\nchannel = \"altinn\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        let e = Policy::parse(&format!("{base}[[rule]]\nopen_within = \"3d\"\n")).unwrap_err();
        assert!(e.to_string().contains("must select"), "{e}");
        let e = Policy::parse(&base.replace("ack_within = \"none\"\n", "")).unwrap_err();
        assert!(e.to_string().contains("missing: ack_within"), "{e}");
        let e = Policy::parse(&base.replace("version = 1", "version = 2")).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
    }

    #[test]
    fn digest_ignores_comments_and_order() {
        let p = Policy::default_policy();
        let stripped: String = DEFAULT_POLICY
            .lines()
            .map(|l| l.split(" #").next().unwrap().trim_end())
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let q = Policy::parse(&stripped).unwrap();
        assert_eq!(p.digest(HashAlg::Blake3), q.digest(HashAlg::Blake3));
        let changed = Policy::parse(&DEFAULT_POLICY.replace(
            "open_within = \"7d\"\nack_within = \"14d\"\n\n[[rule]]\ncategory = \"underretning\"",
            "open_within = \"10d\"\nack_within = \"14d\"\n\n[[rule]]\ncategory = \"underretning\"",
        ))
        .unwrap();
        assert_ne!(p.digest(HashAlg::Blake3), changed.digest(HashAlg::Blake3));
    }
}
