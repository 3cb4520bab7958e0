//! eFormidling status records, from an integrasjonspunkt.
//!
//! Two shapes are accepted, both plain JSON (the integrasjonspunkt does not send
//! CloudEvents):
//!
//! - a record of `GET /api/statuses` (or `/api/statuses/peek`):
//!   `{id, convId, lastUpdate, status, description, messageId, conversationId}`;
//! - the body of its webhook push (`POST` to a subscription's `pushEndpoint`):
//!   `{createdTs, resource: "messages", event: "status", messageId, conversationId,
//!   direction, serviceIdentifier, status, description}`. A `{event: "ping"}` push is
//!   not mapped.
//!
//! `description` is free text and is never copied.

use serde_json::{Map, Value};

use super::{
    Draft, Fact, MapContext, MapError, Mapped, event_id, finish, id_like, kind_of, opt_str,
    req_str, resolve, shown, utc_at,
};

/// The `refs` key of a `sent` event that holds the eFormidling message id.
pub const REF_KEY_MESSAGE: &str = "eformidling_message";
/// The `refs` key of a `sent` event that holds the eFormidling conversation id.
pub const REF_KEY_CONVERSATION: &str = "eformidling_conversation";
/// `reporter.system` of the mapped events, and `system` of a `received`.
pub const SYSTEM: &str = "eformidling";

const KNOWN: &str = "the eFormidling statuses are OPPRETTET, SENDT, MOTTATT, LEVERT, LEST, FEIL, \
                     ANNET, INNKOMMENDE_MOTTATT, INNKOMMENDE_LEVERT and LEVETID_UTLOPT";

/// What one status becomes. `docs/cloudevents.md` explains each row.
pub(crate) fn fact_of(status: &str) -> Option<Fact> {
    let notice = || Fact::Notice {
        notice: "status",
        status: status.to_string(),
    };
    Some(match status {
        // Created in the sender's integrasjonspunkt: the `sent` comes from the sender's
        // own system.
        "OPPRETTET" => notice(),
        // Handed to the transport: an acknowledgement of sending, not of arrival.
        "SENDT" => notice(),
        // The recipient's integrasjonspunkt has it (sent back from there): available
        // to the recipient.
        "MOTTATT" => Fact::Delivered,
        // DPO/DPE: the recipient's integrasjonspunkt relays that its case system took
        // the message; DPV/DPI: in the recipient's mailbox. A transport status on the
        // sender's side either way: the receipt is the recipient's own
        // INNKOMMENDE_LEVERT.
        "LEVERT" => Fact::Delivered,
        "LEST" => Fact::Opened {
            by_role: "recipient",
        },
        "FEIL" => Fact::Failed {
            error: status.to_string(),
        },
        "ANNET" => notice(),
        // The recipient's integrasjonspunkt received it into its queue.
        "INNKOMMENDE_MOTTATT" => Fact::Delivered,
        // The recipient's case system took it from the queue (or the archive
        // accepted it): imported and stored.
        "INNKOMMENDE_LEVERT" => Fact::Received { system: SYSTEM },
        // The message's lifetime ran out before it was delivered; the integrasjonspunkt
        // gives up on it (and deletes an incoming copy).
        "LEVETID_UTLOPT" => Fact::Expired,
        _ => return None,
    })
}

/// Maps one status record or webhook body (the reporter is already checked).
pub(crate) fn map(rec: &Value, cx: &MapContext<'_>) -> Result<Mapped, MapError> {
    let m = match rec {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(MapError::NotStatusRecord {
                why: "a JSON array is a list of records: map each of its elements".into(),
            });
        }
        other => {
            return Err(MapError::NotStatusRecord {
                why: format!("expected a JSON object, found {}", kind_of(other)),
            });
        }
    };
    if m.contains_key("specversion") {
        return Err(MapError::NotStatusRecord {
            why: "this is a CloudEvent: map it with map_cloudevent".into(),
        });
    }
    let webhook = m.contains_key("event");
    if webhook {
        let event = req_str(m, "event", "the webhook event: \"status\" or \"ping\"")?;
        match event {
            "status" => {}
            "ping" => {
                return Err(MapError::UnsupportedType {
                    source_type: "eFormidling webhook ping".into(),
                    why: "the integrasjonspunkt checks the endpoint with it; answer 200 and \
                          record nothing",
                });
            }
            other => {
                return Err(MapError::UnknownType {
                    source_type: format!("eFormidling webhook event {}", shown(other)),
                    known: "an integrasjonspunkt webhook body has event \"status\" (or \"ping\")",
                });
            }
        }
    }
    let raw_status = req_str(m, "status", "the eFormidling status (OPPRETTET, SENDT, …)")?;
    let status = raw_status.trim().to_ascii_uppercase();
    let fact = fact_of(&status).ok_or_else(|| MapError::UnknownType {
        source_type: shown(raw_status),
        known: KNOWN,
    })?;
    let message_id = opt_str(m, "messageId")?
        .map(|s| id_like("messageId", s))
        .transpose()?;
    let conversation_id = opt_str(m, "conversationId")?
        .map(|s| id_like("conversationId", s))
        .transpose()?;
    let mut candidates: Vec<(&'static str, &'static str, &str)> = Vec::new();
    if let Some(v) = message_id {
        candidates.push((REF_KEY_MESSAGE, "eformidling-message", v));
    }
    if let Some(v) = conversation_id {
        candidates.push((REF_KEY_CONVERSATION, "eformidling-conversation", v));
    }
    if candidates.is_empty() {
        return Err(MapError::MissingField {
            field: "messageId",
            what: "the eFormidling message id (or `conversationId`); the ledger finds the \
                   message through the `eformidling_message` or `eformidling_conversation` ref \
                   of its `sent` event",
        });
    }
    let (id, at) = if webhook {
        let created = req_str(
            m,
            "createdTs",
            "when the integrasjonspunkt registered the status",
        )?;
        let at = utc_at("createdTs", created)?;
        let id = event_id(
            "ef-",
            &[
                cx.reporter_org,
                "webhook",
                message_id.unwrap_or(""),
                conversation_id.unwrap_or(""),
                status.as_str(),
                created,
            ],
        );
        (id, at)
    } else {
        let record_id = record_id(m)?;
        let updated = req_str(
            m,
            "lastUpdate",
            "when the integrasjonspunkt registered the status",
        )?;
        let at = utc_at("lastUpdate", updated)?;
        let id = event_id(
            "ef-",
            &[
                cx.reporter_org,
                "status",
                record_id.as_str(),
                message_id.unwrap_or(""),
                status.as_str(),
            ],
        );
        (id, at)
    };
    let (message, matched) = resolve(cx, &candidates);
    Ok(finish(
        cx,
        Draft {
            id,
            message,
            matched,
            at,
            system: SYSTEM,
            fact,
        },
    ))
}

/// The record's own `id` (a number in the integrasjonspunkt's database).
fn record_id(m: &Map<String, Value>) -> Result<String, MapError> {
    match m.get("id") {
        None | Some(Value::Null) => Err(MapError::MissingField {
            field: "id",
            what: "the status record's id; with the status it makes the ledger event id, so a \
                   record posted twice is recorded once",
        }),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(Value::String(s)) => Ok(id_like("id", s)?.to_string()),
        Some(other) => Err(MapError::BadField {
            field: "id",
            why: format!("expected an integer or a string, found {}", kind_of(other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::map_eformidling;
    use super::super::testkit::*;
    use super::*;

    const STATUSES: &str =
        include_str!("../../tests/fixtures/cloudevents/eformidling-statuses.json");
    const WEBHOOK: &str =
        include_str!("../../tests/fixtures/cloudevents/eformidling-webhook-status.json");
    const M1: &str = "db93ada2-e5e9-4d50-a005-7287d85ba005";
    const M2: &str = "3dfc51f7-a5f7-440a-b848-ab95222dd6c8";
    const M3: &str = "d2b3d9c9-22e8-49c1-965f-257e4c61034a";
    const M4: &str = "9cb2b211-8b18-442f-a535-ce8771a3bb5a";

    const EXPECTED: &[(&str, &str)] = &[
        ("OPPRETTET", "notice/status"),
        ("SENDT", "notice/status"),
        ("MOTTATT", "delivered"),
        ("LEVERT", "delivered"),
        ("LEST", "opened"),
        ("FEIL", "failed"),
        ("ANNET", "notice/status"),
        ("INNKOMMENDE_MOTTATT", "delivered"),
        ("INNKOMMENDE_LEVERT", "received"),
        ("LEVETID_UTLOPT", "expired"),
    ];

    fn resolver() -> FakeResolver {
        FakeResolver::default()
            .with(REF_KEY_MESSAGE, M1, "POL-OST-2025-0101")
            .with(REF_KEY_MESSAGE, M2, "POL-OST-2025-0102")
            .with(REF_KEY_CONVERSATION, M3, "POL-OST-2025-0103")
            .with(REF_KEY_MESSAGE, M4, "POL-OST-2025-0104")
    }

    fn status(rec: &Value) -> &str {
        rec["status"].as_str().unwrap()
    }

    #[test]
    fn every_status_maps_to_its_ledger_type() {
        let r = resolver();
        let p = pz();
        let records = array(STATUSES);
        for (s, _) in EXPECTED {
            assert!(records.iter().any(|r| status(r) == *s), "fixture lacks {s}");
        }
        for rec in &records {
            let s = status(rec);
            // The INNKOMMENDE_* records come from the recipient's integrasjonspunkt.
            let org = if s.starts_with("INNKOMMENDE_") {
                BERGEN
            } else {
                POLICE
            };
            let m = map_eformidling(rec, &cx(org, &r, &p)).unwrap_or_else(|e| panic!("{s}: {e}"));
            let want = EXPECTED.iter().find(|(t, _)| *t == s).unwrap().1;
            assert_eq!(kind(&m), want, "{s}");
            assert!(m.matched, "{s}");
            assert_valid(&m);
            assert_eq!(m.event["reporter"]["org"], org);
            assert_eq!(m.event["reporter"]["system"], SYSTEM);
            match want {
                "failed" => assert_eq!(m.event["error"], "FEIL"),
                "received" => assert_eq!(m.event["system"], SYSTEM),
                w if w.starts_with("notice/") => assert_eq!(m.event["status"], s),
                _ => {}
            }
        }
    }

    #[test]
    fn only_the_recipients_import_is_a_receipt() {
        let r = resolver();
        let p = pz();
        for rec in array(STATUSES) {
            let m = map_eformidling(&rec, &cx(POLICE, &r, &p)).unwrap();
            let received = m.event["type"] == "received";
            assert_eq!(
                received,
                status(&rec) == "INNKOMMENDE_LEVERT",
                "{}",
                status(&rec)
            );
        }
        for transport in ["SENDT", "MOTTATT", "LEVERT"] {
            assert_ne!(
                fact_of(transport),
                Some(Fact::Received { system: SYSTEM }),
                "{transport}"
            );
        }
    }

    #[test]
    fn descriptions_never_reach_the_event() {
        let r = resolver();
        let p = pz();
        for rec in array(STATUSES) {
            let m = map_eformidling(&rec, &cx(POLICE, &r, &p)).unwrap();
            let text = serde_json::to_string(&m.event).unwrap();
            assert!(!text.contains(FNR), "{text}");
            let desc = rec["description"].as_str().unwrap();
            assert!(!text.contains(desc), "{text}");
        }
        let feil = array(STATUSES)
            .into_iter()
            .find(|r| status(r) == "FEIL")
            .unwrap();
        assert!(
            feil["description"].as_str().unwrap().contains(FNR),
            "the fixture carries one"
        );
    }

    #[test]
    fn times_become_utc() {
        let r = resolver();
        let p = pz();
        let all = array(STATUSES);
        let first = &all[0];
        let m = map_eformidling(first, &cx(POLICE, &r, &p)).unwrap();
        assert_eq!(m.event["at"], "2025-03-14T08:15:02.118Z");
    }

    #[test]
    fn an_unmatched_message_is_recorded_under_a_synthetic_id() {
        let r = FakeResolver::default();
        let p = pz();
        let all = array(STATUSES);
        let first = &all[0];
        let m = map_eformidling(first, &cx(POLICE, &r, &p)).unwrap();
        assert!(!m.matched);
        assert_eq!(m.event["message"], format!("eformidling-message:{M1}"));
        assert_valid(&m);
        // Found through the conversation id when that is the ref the sender declared.
        let r = FakeResolver::default().with(REF_KEY_CONVERSATION, M1, "MSG-9");
        let m = map_eformidling(first, &cx(POLICE, &r, &p)).unwrap();
        assert!(m.matched);
        assert_eq!(m.event["message"], "MSG-9");
        // Only a conversation id: the synthetic id says so.
        let mut rec = first.clone();
        rec.as_object_mut().unwrap().remove("messageId");
        let none = FakeResolver::default();
        let m = map_eformidling(&rec, &cx(POLICE, &none, &p)).unwrap();
        assert_eq!(m.event["message"], format!("eformidling-conversation:{M1}"));
    }

    #[test]
    fn the_same_record_maps_to_the_same_id() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let records = array(STATUSES);
        let a = map_eformidling(&records[0], &c).unwrap();
        assert_eq!(a, map_eformidling(&records[0], &c).unwrap());
        assert!(a.event["id"].as_str().unwrap().starts_with("ef-"));
        let ids: std::collections::BTreeSet<String> = records
            .iter()
            .map(|r| {
                map_eformidling(r, &c).unwrap().event["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), records.len(), "every record is its own event");
        // The webhook body of a status is another report of it, with its own id.
        let w = map_eformidling(&one(WEBHOOK), &c).unwrap();
        assert!(ids.iter().all(|id| id != w.event["id"].as_str().unwrap()));
        assert_eq!(w, map_eformidling(&one(WEBHOOK), &c).unwrap());
    }

    #[test]
    fn the_webhook_body_maps_like_a_record() {
        let r = resolver();
        let p = pz();
        let m = map_eformidling(&one(WEBHOOK), &cx(POLICE, &r, &p)).unwrap();
        assert_eq!(m.event["type"], "delivered");
        assert_eq!(m.event["at"], "2025-03-14T08:47:12.955Z");
        assert_eq!(m.event["message"], "POL-OST-2025-0101");
        assert_valid(&m);
        let ping = one(include_str!(
            "../../tests/fixtures/cloudevents/eformidling-webhook-ping.json"
        ));
        let e = map_eformidling(&ping, &cx(POLICE, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "unsupported_type");
    }

    #[test]
    fn an_unknown_status_is_refused_by_name() {
        let r = resolver();
        let p = pz();
        let rec = one(include_str!(
            "../../tests/fixtures/cloudevents/eformidling-unknown-status.json"
        ));
        let e = map_eformidling(&rec, &cx(POLICE, &r, &p)).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(e.to_string().contains("KLAR_FOR_MOTTAK"), "{e}");
    }

    #[test]
    fn missing_and_bad_fields_are_named() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let first = array(STATUSES)[0].clone();
        let mut rec = first.clone();
        let o = rec.as_object_mut().unwrap();
        o.remove("messageId");
        o.remove("conversationId");
        let e = map_eformidling(&rec, &c).unwrap_err();
        assert_eq!(e.reason(), "missing_field");
        assert!(e.to_string().contains("`messageId`"), "{e}");
        let mut rec = first.clone();
        rec.as_object_mut().unwrap().remove("lastUpdate");
        assert!(
            map_eformidling(&rec, &c)
                .unwrap_err()
                .to_string()
                .contains("`lastUpdate`")
        );
        let mut rec = first.clone();
        rec.as_object_mut().unwrap().remove("id");
        assert!(
            map_eformidling(&rec, &c)
                .unwrap_err()
                .to_string()
                .contains("`id`")
        );
        let mut rec = first.clone();
        rec["lastUpdate"] = "2025-03-14T09:15:02".into();
        let e = map_eformidling(&rec, &c).unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/altinn-correspondence-published.json"
        ));
        assert_eq!(
            map_eformidling(&ce, &c).unwrap_err().reason(),
            "not_status_record"
        );
    }
}
