//! Altinn 3 Correspondence events (CloudEvents from Altinn Events).
//!
//! Altinn publishes `no.altinn.correspondence.<eventtype in lower case>` with an empty
//! `data`: the correspondence id is in `resourceinstance`, the party the copy is
//! addressed to in `subject` (`urn:altinn:organization:identifier-no:<orgnr>` or
//! `urn:altinn:person:identifier-no:<national id>`) and `alternativesubject`
//! (`/organisation/<orgnr>`, `/person/<national id>`). Many events are published twice,
//! once to the sender and once to the recipient, each with its own CloudEvent id.
//!
//! Only the correspondence id is taken from the event (to find the message) with its
//! `time`; the parties are never copied.

use super::{
    CloudEvent, Draft, Fact, MapContext, MapError, Mapped, finish, id_like, req_str, resolve,
    shown, utc_at,
};

/// Every Altinn correspondence event type starts with this.
pub(crate) const TYPE_PREFIX: &str = "no.altinn.correspondence.";
/// The `refs` key of a `sent` event that holds the correspondence id.
pub const REF_KEY: &str = "altinn_correspondence";
/// Prefix of the synthetic message id of an unmatched correspondence.
pub const SYNTHETIC_PREFIX: &str = "altinn-correspondence";
/// `reporter.system` of the mapped events.
pub const SYSTEM: &str = "altinn";

/// What one correspondence event type becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    Delivered,
    Opened,
    Acknowledged,
    Deleted,
    Failed,
    Notice(&'static str),
    /// Known, but about something other than a message.
    Unsupported(&'static str),
}

const ATTACHMENT: Rule =
    Rule::Unsupported("attachment events describe a file, not a message; nothing is recorded");

/// The mapping table (the type after `no.altinn.correspondence.`, in lower case).
/// `docs/cloudevents.md` explains each row.
pub(crate) const TABLE: &[(&str, Rule)] = &[
    // Pre-publication: created, not yet in anyone's inbox.
    ("correspondenceinitialized", Rule::Notice("status")),
    // In the recipient's inbox: the channel made it available.
    ("correspondencepublished", Rule::Delivered),
    // Never published: malware in an attachment, recipient not found, bankrupt …
    ("correspondencepublishfailed", Rule::Failed),
    // The recipient is reserved against digital post (KRR): never published.
    ("correspondencereceiverreserved", Rule::Failed),
    ("correspondencereceiverread", Rule::Opened),
    ("correspondencereceiverconfirmed", Rule::Acknowledged),
    // A reply proves neither reading nor acknowledgement by itself.
    ("correspondencereceiverreplied", Rule::Notice("status")),
    // Published when the due date passes without a read / a confirmation.
    (
        "correspondencereceiverneverread",
        Rule::Notice("not_opened"),
    ),
    (
        "correspondencereceiverneverconfirmed",
        Rule::Notice("not_acknowledged"),
    ),
    ("correspondencearchived", Rule::Notice("archived")),
    // Removed from Altinn, by the recipient or by Altinn.
    ("correspondencepurged", Rule::Deleted),
    // Notifications (e-mail/SMS) about the correspondence: it stays in the inbox.
    ("notificationcreated", Rule::Notice("status")),
    (
        "correspondencenotificationcreationfailed",
        Rule::Notice("notification_failed"),
    ),
    (
        "correspondencenotificationfailed",
        Rule::Notice("notification_failed"),
    ),
    (
        "correspondencenotificationallfailed",
        Rule::Notice("notification_failed"),
    ),
    (
        "correspondencenotificationdelivered",
        Rule::Notice("status"),
    ),
    (
        "correspondencenotificationreminderdelivered",
        Rule::Notice("status"),
    ),
    // Attachments.
    ("attachmentinitialized", ATTACHMENT),
    ("attachmentuploadprocessing", ATTACHMENT),
    ("attachmentpublished", ATTACHMENT),
    ("attachmentuploadfailed", ATTACHMENT),
    ("attachmentpurged", ATTACHMENT),
    ("attachmentdownloaded", ATTACHMENT),
    ("attachmentexpired", ATTACHMENT),
];

/// The rule of a type that starts with [`TYPE_PREFIX`] (in any case).
pub(crate) fn rule(ty: &str) -> Result<Rule, MapError> {
    let lower = ty.to_ascii_lowercase();
    let suffix = lower.strip_prefix(TYPE_PREFIX).unwrap_or(&lower);
    match TABLE
        .iter()
        .find(|(name, _)| *name == suffix)
        .map(|(_, r)| *r)
    {
        Some(Rule::Unsupported(why)) => Err(MapError::UnsupportedType {
            source_type: shown(ty),
            why,
        }),
        Some(rule) => Ok(rule),
        None => Err(MapError::UnknownType {
            source_type: shown(ty),
            known: "not an Altinn 3 Correspondence event type this server maps; the known \
                    no.altinn.correspondence.* types are listed in docs/cloudevents.md",
        }),
    }
}

/// Maps one correspondence event whose type has the rule `rule`.
pub(crate) fn map(
    ce: &CloudEvent<'_>,
    rule: Rule,
    cx: &MapContext<'_>,
) -> Result<Mapped, MapError> {
    let code = ce.ty.to_ascii_lowercase();
    let code = code
        .strip_prefix(TYPE_PREFIX)
        .unwrap_or(code.as_str())
        .to_string();
    let corr = req_str(
        ce.fields,
        "resourceinstance",
        "the correspondence id (Altinn puts it in `resourceinstance`); the ledger finds the \
         message through the `altinn_correspondence` ref of its `sent` event",
    )?;
    let corr = id_like("resourceinstance", corr)?;
    let at = utc_at("time", ce.time)?;
    let fact = match rule {
        Rule::Delivered => Fact::Delivered,
        Rule::Opened => Fact::Opened {
            by_role: "recipient",
        },
        Rule::Acknowledged => Fact::Acknowledged,
        Rule::Deleted => Fact::Deleted { reason: code },
        Rule::Failed => Fact::Failed { error: code },
        Rule::Notice(notice) => Fact::Notice {
            notice,
            status: code,
        },
        Rule::Unsupported(why) => {
            return Err(MapError::UnsupportedType {
                source_type: shown(ce.ty),
                why,
            });
        }
    };
    let (message, matched) = resolve(cx, &[(REF_KEY, SYNTHETIC_PREFIX, corr)]);
    Ok(finish(
        cx,
        Draft {
            id: ce.event_id(cx),
            message,
            matched,
            at,
            system: SYSTEM,
            fact,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::super::testkit::*;
    use super::super::{describe, is_subscription_validation, map_cloudevent};
    use super::*;

    const EVENTS: &str =
        include_str!("../../tests/fixtures/cloudevents/altinn-correspondence-events.json");
    const PUBLISHED: &str =
        include_str!("../../tests/fixtures/cloudevents/altinn-correspondence-published.json");
    const PERSON: &str =
        include_str!("../../tests/fixtures/cloudevents/altinn-correspondence-person-subject.json");
    const C1: &str = "b74add46-8835-4923-9e16-8e912e8e30db";
    const C2: &str = "0ef519ec-7d02-4ffe-8b8a-cc079f7fce21";
    const C3: &str = "fdae9d6b-7d4d-4d37-8c08-2f8c452f28aa";
    const C4: &str = "23340e86-f3d9-4d41-8fd1-dbcb4f2e97dc";

    /// The ledger type (and notice kind) each correspondence type must become.
    const EXPECTED: &[(&str, &str)] = &[
        ("correspondenceinitialized", "notice/status"),
        ("correspondencepublished", "delivered"),
        ("correspondencepublishfailed", "failed"),
        ("correspondencereceiverreserved", "failed"),
        ("correspondencereceiverread", "opened"),
        ("correspondencereceiverconfirmed", "acknowledged"),
        ("correspondencereceiverreplied", "notice/status"),
        ("correspondencereceiverneverread", "notice/not_opened"),
        (
            "correspondencereceiverneverconfirmed",
            "notice/not_acknowledged",
        ),
        ("correspondencearchived", "notice/archived"),
        ("correspondencepurged", "deleted"),
        ("notificationcreated", "notice/status"),
        (
            "correspondencenotificationcreationfailed",
            "notice/notification_failed",
        ),
        (
            "correspondencenotificationfailed",
            "notice/notification_failed",
        ),
        (
            "correspondencenotificationallfailed",
            "notice/notification_failed",
        ),
        ("correspondencenotificationdelivered", "notice/status"),
        (
            "correspondencenotificationreminderdelivered",
            "notice/status",
        ),
    ];

    fn resolver() -> FakeResolver {
        FakeResolver::default()
            .with(REF_KEY, C1, "POL-OST-2025-0001")
            .with(REF_KEY, C2, "POL-OST-2025-0002")
            .with(REF_KEY, C3, "POL-OST-2025-0003")
            .with(REF_KEY, C4, "POL-OST-2025-0004")
    }

    fn suffix(ce: &Value) -> String {
        ce["type"]
            .as_str()
            .unwrap()
            .strip_prefix(TYPE_PREFIX)
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_correspondence_type_maps_to_its_ledger_type() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let events = array(EVENTS);
        let seen: BTreeSet<String> = events.iter().map(suffix).collect();
        let expected: BTreeSet<String> = EXPECTED.iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(
            seen, expected,
            "the fixture holds one event of every mapped type"
        );
        for ce in &events {
            let s = suffix(ce);
            let want = EXPECTED.iter().find(|(t, _)| *t == s).unwrap().1;
            let m = map_cloudevent(ce, &c).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(kind(&m), want, "{s}");
            assert!(m.matched, "{s}");
            assert_valid(&m);
            let ev = &m.event;
            assert_eq!(ev["reporter"]["org"], POLICE);
            assert_eq!(ev["reporter"]["system"], SYSTEM);
            assert!(
                ev["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("POL-OST-2025-000")
            );
            // Status codes, never text: the notice status, the failed error and the
            // deleted reason are the channel's own type name.
            match want {
                "failed" => assert_eq!(ev["error"], s.as_str()),
                "deleted" => assert_eq!(ev["reason"], s.as_str()),
                "opened" => assert_eq!(ev["by_role"], "recipient"),
                w if w.starts_with("notice/") => assert_eq!(ev["status"], s.as_str()),
                _ => {}
            }
            // No party, no resource, no CloudEvent attribute is copied.
            let text = serde_json::to_string(ev).unwrap();
            for leak in ["urn:altinn", "/organisation/", "resource", "subject"] {
                assert!(!text.contains(leak), "{s}: {text}");
            }
        }
    }

    #[test]
    fn the_table_and_the_expectations_agree() {
        for (name, want) in EXPECTED {
            let r = rule(&format!("{TYPE_PREFIX}{name}")).unwrap();
            let got = match r {
                Rule::Delivered => "delivered".to_string(),
                Rule::Opened => "opened".into(),
                Rule::Acknowledged => "acknowledged".into(),
                Rule::Deleted => "deleted".into(),
                Rule::Failed => "failed".into(),
                Rule::Notice(n) => format!("notice/{n}"),
                Rule::Unsupported(_) => "unsupported".into(),
            };
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn published_is_a_delivery_and_no_transport_event_is_a_receipt() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let m = map_cloudevent(&one(PUBLISHED), &c).unwrap();
        assert_eq!(m.event["type"], "delivered");
        // Altinn reports nothing that is the receiving system's own import.
        for ce in array(EVENTS) {
            let m = map_cloudevent(&ce, &c).unwrap();
            assert_ne!(m.event["type"], "received", "{}", suffix(&ce));
        }
    }

    #[test]
    fn times_become_utc() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let events = array(EVENTS);
        let find = |s: &str| events.iter().find(|e| suffix(e) == s).unwrap().clone();
        let m = map_cloudevent(&find("correspondencereceiverread"), &c).unwrap();
        assert_eq!(m.event["at"], "2025-03-24T12:15:48.902331Z");
        let m = map_cloudevent(&find("correspondencepublished"), &c).unwrap();
        assert_eq!(m.event["at"], "2025-03-14T08:02:11.5732941Z");
    }

    #[test]
    fn an_unmatched_correspondence_is_recorded_under_a_synthetic_message() {
        let r = FakeResolver::default();
        let p = pz();
        let m = map_cloudevent(&one(PUBLISHED), &cx(POLICE, &r, &p)).unwrap();
        assert!(!m.matched);
        assert_eq!(m.event["message"], format!("{SYNTHETIC_PREFIX}:{C1}"));
        assert_valid(&m);
        // A correspondence id the ledger would refuse is pseudonymized in the id.
        let mut ce = one(PUBLISHED);
        ce["resourceinstance"] = format!("x{FNR}").into();
        let m = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap();
        let msg = m.event["message"].as_str().unwrap();
        assert!(msg.starts_with("altinn-correspondence:pn:"), "{msg}");
        assert!(!serde_json::to_string(&m.event).unwrap().contains(FNR));
        assert_valid(&m);
    }

    #[test]
    fn the_same_event_maps_to_the_same_id() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let a = map_cloudevent(&one(PUBLISHED), &c).unwrap();
        let b = map_cloudevent(&one(PUBLISHED), &c).unwrap();
        assert_eq!(a, b);
        // "ce-" + the first 32 hex digits of SHA-256("974760673\n" + source + "\n" + id),
        // computed independently (Python hashlib).
        assert_eq!(a.event["id"], "ce-375c3ff4e9b0e093ff63060dbe0cc4b6");
        // Another CloudEvent id, or another reporter, is another ledger event.
        let mut other = one(PUBLISHED);
        other["id"] = "0b8a4be4-6f1e-4c0e-8f53-2f1f0d0f6a10".into();
        assert_ne!(
            map_cloudevent(&other, &c).unwrap().event["id"],
            a.event["id"]
        );
        let bergen = cx(BERGEN, &r, &p);
        assert_ne!(
            map_cloudevent(&one(PUBLISHED), &bergen).unwrap().event["id"],
            a.event["id"]
        );
        // Matching does not change the id: only the source event does.
        let none = FakeResolver::default();
        let u = map_cloudevent(&one(PUBLISHED), &cx(POLICE, &none, &p)).unwrap();
        assert_eq!(u.event["id"], a.event["id"]);
    }

    #[test]
    fn a_national_identity_number_in_the_subject_goes_nowhere() {
        let r = FakeResolver::default();
        let p = pz();
        let ce = one(PERSON);
        assert!(ce.to_string().contains(FNR), "the fixture carries one");
        let m = map_cloudevent(&ce, &cx(BERGEN, &r, &p)).unwrap();
        assert_eq!(kind(&m), "notice/not_opened");
        let text = serde_json::to_string(&m.event).unwrap();
        assert!(!text.contains(FNR), "{text}");
        assert!(!text.contains("person"), "{text}");
        assert_valid(&m);
        // What a log line would say about it.
        let d = describe(&ce, &p);
        assert!(!d.contains(FNR), "{d}");
        assert!(d.contains("pn:"), "{d}");
        // An error about such an event does not echo it either.
        let mut bad = ce.clone();
        bad["time"] = FNR.into();
        let e = map_cloudevent(&bad, &cx(BERGEN, &r, &p)).unwrap_err();
        assert!(!e.to_string().contains(FNR), "{e}");
        let mut bad = ce.clone();
        bad["type"] = format!("no.altinn.correspondence.x{FNR}").into();
        let e = map_cloudevent(&bad, &cx(BERGEN, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(!e.to_string().contains(FNR), "{e}");
    }

    #[test]
    fn an_unknown_type_is_refused_by_name() {
        let r = resolver();
        let p = pz();
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-unknown-type.json"
        ));
        let e = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(
            e.to_string()
                .contains("no.altinn.correspondence.correspondencereceiverforwarded"),
            "{e}"
        );
    }

    #[test]
    fn attachment_events_and_subscription_checks_are_not_mapped() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-attachment-published.json"
        ));
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "unsupported_type");
        assert!(e.to_string().contains("attachmentpublished"), "{e}");
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-validate-subscription.json"
        ));
        assert!(is_subscription_validation(&ce));
        assert!(!is_subscription_validation(&one(PUBLISHED)));
        assert_eq!(
            map_cloudevent(&ce, &c).unwrap_err().reason(),
            "unsupported_type"
        );
    }

    #[test]
    fn a_missing_correspondence_id_is_named() {
        let r = resolver();
        let p = pz();
        let mut ce = one(PUBLISHED);
        ce.as_object_mut().unwrap().remove("resourceinstance");
        let e = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "missing_field");
        assert!(e.to_string().contains("`resourceinstance`"), "{e}");
        ce["resourceinstance"] = "two words".into();
        let e = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        ce["resourceinstance"] = 42.into();
        let e = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
    }

    #[test]
    fn types_are_matched_without_regard_to_case() {
        let r = resolver();
        let p = pz();
        let mut ce = one(PUBLISHED);
        ce["type"] = "no.altinn.correspondence.CorrespondencePublished".into();
        let m = map_cloudevent(&ce, &cx(POLICE, &r, &p)).unwrap();
        assert_eq!(m.event["type"], "delivered");
    }
}
