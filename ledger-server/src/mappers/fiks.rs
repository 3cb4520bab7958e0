//! KS Fiks: the concern-report protocol over Fiks IO, and the states of the national
//! concern-report portal (Fiks Bekymringsmelding).
//!
//! Neither speaks CloudEvents itself; an adapter wraps what it receives, one
//! CloudEvent each (the envelope is specified in `docs/cloudevents.md`):
//!
//! - a Fiks IO receipt: `type` = its `meldingType`
//!   (`no.ks.fiks.bekymringsmelding.mottatt.v1`, `no.ks.fiks.bekymringsmelding.feilet.v1`,
//!   `no.ks.fiks.kvittering.tidsavbrudd`), `id` = its `meldingId`, `data` = the Fiks IO
//!   message metadata (`meldingId`, `meldingType`, `avsenderKontoId`, `mottakerKontoId`,
//!   `svarPaMelding`, `headere`);
//! - a portal state from `GET …/bekymringsmelding/{id}/status`: `type`
//!   `no.ks.fiks.bekymringsmelding.status.v1`, `data` = `{bekymringsmeldingId,
//!   tilstand}`.
//!
//! The body of a `feilet.v1` receipt (`feilmelding.json`, free text) is never copied,
//! nor is anything else in `data` beyond the ids.

use serde_json::{Map, Value};

use super::{
    CloudEvent, Draft, Fact, MapContext, MapError, Mapped, finish, id_like, kind_of, opt_str,
    req_str, resolve, shown, utc_at,
};

/// Every KS Fiks type starts with this.
pub(crate) const TYPE_PREFIX: &str = "no.ks.fiks.";
/// Receipt: the case system imported and stored the concern report.
pub const TYPE_MOTTATT: &str = "no.ks.fiks.bekymringsmelding.mottatt.v1";
/// Receipt: the case system could not store it (the portal falls back to letter).
pub const TYPE_FEILET: &str = "no.ks.fiks.bekymringsmelding.feilet.v1";
/// Fiks IO: the message's time to live ran out before the recipient took it.
pub const TYPE_TIDSAVBRUDD: &str = "no.ks.fiks.kvittering.tidsavbrudd";
/// A state of the concern-report portal (the envelope of this ledger's adapters).
pub const TYPE_STATUS: &str = "no.ks.fiks.bekymringsmelding.status.v1";

/// The `refs` key of a `sent` event holding the Fiks IO message id of the report.
pub const REF_KEY_MESSAGE: &str = "fiks_message";
/// The `refs` key of a `sent` event holding the portal's concern-report id.
pub const REF_KEY_REPORT: &str = "fiks_bekymringsmelding";
/// `reporter.system` of mapped Fiks IO receipts, and `system` of a `received`.
pub const SYSTEM_IO: &str = "fiks-io";
/// `reporter.system` of mapped portal states.
pub const SYSTEM_PORTAL: &str = "fiks-bekymringsmelding";

/// The concern reports themselves: content, never mapped.
const CONTENT_TYPES: [&str; 4] = [
    "no.ks.fiks.bekymringsmelding.privat.v1",
    "no.ks.fiks.bekymringsmelding.offentlig.v1",
    "no.ks.fiks.bekymringsmelding.privat.v2",
    "no.ks.fiks.bekymringsmelding.offentlig.v2",
];

const KNOWN_STATES: &str = "the portal's states are AKSEPTERT, SENDT_FAGSYSTEM, AVVIST_FAGSYSTEM, \
                            SENDT_PRINT, AVVIST_PRINT and LEVERT";

/// What one Fiks type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A Fiks IO receipt that answers (`svarPaMelding`) the report's message.
    Receipt(Receipt),
    /// A portal state.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receipt {
    Mottatt,
    Feilet,
    Tidsavbrudd,
}

/// The rule of a type that starts with [`TYPE_PREFIX`] (in any case).
pub(crate) fn rule(ty: &str) -> Result<Rule, MapError> {
    let lower = ty.to_ascii_lowercase();
    match lower.as_str() {
        TYPE_MOTTATT => Ok(Rule::Receipt(Receipt::Mottatt)),
        TYPE_FEILET => Ok(Rule::Receipt(Receipt::Feilet)),
        TYPE_TIDSAVBRUDD => Ok(Rule::Receipt(Receipt::Tidsavbrudd)),
        TYPE_STATUS => Ok(Rule::Status),
        t if CONTENT_TYPES.contains(&t) => Err(MapError::UnsupportedType {
            source_type: shown(ty),
            why: "this is the concern report itself, content the ledger never holds: report a \
                  `sent` event with its digest instead",
        }),
        _ => Err(MapError::UnknownType {
            source_type: shown(ty),
            known: "the KS Fiks types mapped are no.ks.fiks.bekymringsmelding.mottatt.v1, \
                    no.ks.fiks.bekymringsmelding.feilet.v1, no.ks.fiks.kvittering.tidsavbrudd \
                    and no.ks.fiks.bekymringsmelding.status.v1",
        }),
    }
}

/// What one portal state becomes. `docs/cloudevents.md` explains each row.
pub(crate) fn state_fact(state: &str) -> Option<Fact> {
    Some(match state {
        // The portal accepted and stored the report: nothing has moved yet.
        "AKSEPTERT" => Fact::Notice {
            notice: "status",
            status: state.to_string(),
        },
        // Put in the case system's Fiks IO account: available to it, not yet imported.
        "SENDT_FAGSYSTEM" => Fact::Delivered,
        "AVVIST_FAGSYSTEM" => Fact::Failed {
            error: state.to_string(),
        },
        // Falling back to a letter: the same report, another way.
        "SENDT_PRINT" => Fact::Notice {
            notice: "status",
            status: state.to_string(),
        },
        "AVVIST_PRINT" => Fact::Failed {
            error: state.to_string(),
        },
        // Final: confirmed to the case system, or handed to the post. The portal's
        // relay, not the case system's own receipt (that is `mottatt.v1`).
        "LEVERT" => Fact::Delivered,
        _ => return None,
    })
}

/// Maps one Fiks CloudEvent whose type has the rule `rule`.
pub(crate) fn map(
    ce: &CloudEvent<'_>,
    rule: Rule,
    cx: &MapContext<'_>,
) -> Result<Mapped, MapError> {
    let data = data_of(ce)?;
    match rule {
        Rule::Receipt(kind) => map_receipt(ce, data, kind, cx),
        Rule::Status => map_state(ce, data, cx),
    }
}

fn data_of<'a>(ce: &CloudEvent<'a>) -> Result<&'a Map<String, Value>, MapError> {
    match ce.fields.get("data") {
        None | Some(Value::Null) => Err(MapError::MissingField {
            field: "data",
            what: "the Fiks message metadata (docs/cloudevents.md gives the envelope)",
        }),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(MapError::BadField {
            field: "data",
            why: format!("expected a JSON object, found {}", kind_of(other)),
        }),
    }
}

fn map_receipt(
    ce: &CloudEvent<'_>,
    data: &Map<String, Value>,
    kind: Receipt,
    cx: &MapContext<'_>,
) -> Result<Mapped, MapError> {
    if let Some(t) = opt_str(data, "data.meldingType")?
        && !t.eq_ignore_ascii_case(ce.ty)
    {
        return Err(MapError::BadField {
            field: "data.meldingType",
            why: format!(
                "is {:?} but the CloudEvent type is {:?}; they must be the same",
                shown(t),
                shown(ce.ty)
            ),
        });
    }
    let answers = req_str(
        data,
        "data.svarPaMelding",
        "the Fiks IO message id this receipt answers; the ledger finds the message through \
         the `fiks_message` ref of its `sent` event",
    )?;
    let answers = id_like("data.svarPaMelding", answers)?;
    let report = match data.get("headere") {
        Some(Value::Object(h)) => match h.get("bekymringsmelding-id") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                Some(id_like("data.headere.bekymringsmelding-id", s)?)
            }
            _ => None,
        },
        _ => None,
    };
    let mut candidates: Vec<(&'static str, &'static str, &str)> =
        vec![(REF_KEY_MESSAGE, "fiks-message", answers)];
    if let Some(r) = report {
        candidates.push((REF_KEY_REPORT, "fiks-bekymringsmelding", r));
    }
    let fact = match kind {
        Receipt::Mottatt => Fact::Received { system: SYSTEM_IO },
        Receipt::Feilet => Fact::Failed {
            error: TYPE_FEILET.to_string(),
        },
        Receipt::Tidsavbrudd => Fact::Expired,
    };
    let at = utc_at("time", ce.time)?;
    let (message, matched) = resolve(cx, &candidates);
    Ok(finish(
        cx,
        Draft {
            id: ce.event_id(cx),
            message,
            matched,
            at,
            system: SYSTEM_IO,
            fact,
        },
    ))
}

fn map_state(
    ce: &CloudEvent<'_>,
    data: &Map<String, Value>,
    cx: &MapContext<'_>,
) -> Result<Mapped, MapError> {
    let raw = req_str(
        data,
        "data.tilstand",
        "the portal's state (AKSEPTERT, SENDT_FAGSYSTEM, …)",
    )?;
    let state = raw.trim().to_ascii_uppercase();
    let fact = state_fact(&state).ok_or_else(|| MapError::UnknownType {
        source_type: format!("{TYPE_STATUS} tilstand {}", shown(raw)),
        known: KNOWN_STATES,
    })?;
    let report = req_str(
        data,
        "data.bekymringsmeldingId",
        "the portal's concern-report id; the ledger finds the message through the \
         `fiks_bekymringsmelding` ref of its `sent` event",
    )?;
    let report = id_like("data.bekymringsmeldingId", report)?;
    let at = utc_at("time", ce.time)?;
    let (message, matched) = resolve(cx, &[(REF_KEY_REPORT, "fiks-bekymringsmelding", report)]);
    Ok(finish(
        cx,
        Draft {
            id: ce.event_id(cx),
            message,
            matched,
            at,
            system: SYSTEM_PORTAL,
            fact,
        },
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::map_cloudevent;
    use super::super::testkit::*;
    use super::*;

    const RECEIPTS: &str =
        include_str!("../../tests/fixtures/cloudevents/fiks-bekymringsmelding-receipts.json");
    const STATES: &str =
        include_str!("../../tests/fixtures/cloudevents/fiks-bekymringsmelding-status.json");
    const O1: &str = "78a8ddaa-f74d-4e01-ba2c-55a884b9eb71";
    const O2: &str = "24b27196-ef2a-4158-91a3-3489af716866";
    const BM1: &str = "6402bc6c-465f-495c-9cb1-c45f524da88a";
    const BM2: &str = "806eabc3-3d41-4e10-8e9f-1358357a884b";
    const BM3: &str = "7b2cda68-c126-499e-af21-f6c0e84198d1";
    /// The portal operator (KS) reports the receipts its Fiks IO account gets.
    const KS: &str = "971032146";

    const EXPECTED_STATES: &[(&str, &str)] = &[
        ("AKSEPTERT", "notice/status"),
        ("SENDT_FAGSYSTEM", "delivered"),
        ("AVVIST_FAGSYSTEM", "failed"),
        ("SENDT_PRINT", "notice/status"),
        ("AVVIST_PRINT", "failed"),
        ("LEVERT", "delivered"),
    ];

    fn resolver() -> FakeResolver {
        FakeResolver::default()
            .with(REF_KEY_MESSAGE, O1, "BM-PORTAL-0001")
            .with(REF_KEY_MESSAGE, O2, "BM-PORTAL-0002")
            .with(REF_KEY_REPORT, BM3, "BM-PORTAL-0003")
            .with(REF_KEY_REPORT, BM1, "POL-OST-2025-0201")
            .with(REF_KEY_REPORT, BM2, "POL-OST-2025-0202")
    }

    fn by_type<'a>(events: &'a [Value], ty: &str) -> &'a Value {
        events.iter().find(|e| e["type"] == ty).unwrap()
    }

    #[test]
    fn the_receipts_map_to_received_failed_and_expired() {
        let r = resolver();
        let p = pz();
        let c = cx(KS, &r, &p);
        let receipts = array(RECEIPTS);
        let m = map_cloudevent(by_type(&receipts, TYPE_MOTTATT), &c).unwrap();
        assert_eq!(m.event["type"], "received");
        assert_eq!(m.event["system"], SYSTEM_IO);
        assert_eq!(m.event["message"], "BM-PORTAL-0001");
        assert_eq!(m.event["at"], "2025-03-14T08:41:07.113Z");
        assert!(m.matched);
        assert_valid(&m);

        let m = map_cloudevent(by_type(&receipts, TYPE_FEILET), &c).unwrap();
        assert_eq!(m.event["type"], "failed");
        assert_eq!(m.event["error"], TYPE_FEILET);
        assert_eq!(m.event["message"], "BM-PORTAL-0002");
        assert_valid(&m);

        // A timeout is a first-class event; this one is found through the
        // bekymringsmelding-id header, as the sender declared only that ref.
        let m = map_cloudevent(by_type(&receipts, TYPE_TIDSAVBRUDD), &c).unwrap();
        assert_eq!(m.event["type"], "expired");
        assert_eq!(m.event["message"], "BM-PORTAL-0003");
        assert!(m.matched);
        assert_valid(&m);
        for ce in &receipts {
            assert_eq!(
                map_cloudevent(ce, &c).unwrap().event["reporter"]["system"],
                SYSTEM_IO
            );
        }
    }

    #[test]
    fn the_error_text_of_a_failed_receipt_is_never_copied() {
        let r = resolver();
        let p = pz();
        let receipts = array(RECEIPTS);
        let feilet = by_type(&receipts, TYPE_FEILET);
        assert!(feilet.to_string().contains(FNR), "the fixture carries one");
        let m = map_cloudevent(feilet, &cx(KS, &r, &p)).unwrap();
        let text = serde_json::to_string(&m.event).unwrap();
        assert!(!text.contains(FNR), "{text}");
        assert!(!text.contains("Kunne ikke"), "{text}");
    }

    #[test]
    fn every_portal_state_maps_to_its_ledger_type() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let states = array(STATES);
        for (s, _) in EXPECTED_STATES {
            assert!(
                states.iter().any(|e| e["data"]["tilstand"] == *s),
                "fixture lacks {s}"
            );
        }
        for ce in &states {
            let s = ce["data"]["tilstand"].as_str().unwrap();
            let want = EXPECTED_STATES.iter().find(|(t, _)| *t == s).unwrap().1;
            let m = map_cloudevent(ce, &c).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(kind(&m), want, "{s}");
            // Transport acknowledgements and the portal's relay are never a receipt.
            assert_ne!(m.event["type"], "received", "{s}");
            assert!(m.matched);
            assert_valid(&m);
            assert_eq!(m.event["reporter"]["system"], SYSTEM_PORTAL);
            assert_eq!(m.event["reporter"]["org"], POLICE);
            match want {
                "failed" => assert_eq!(m.event["error"], s),
                w if w.starts_with("notice/") => assert_eq!(m.event["status"], s),
                _ => {}
            }
        }
    }

    #[test]
    fn unmatched_reports_get_synthetic_messages() {
        let none = FakeResolver::default();
        let p = pz();
        let c = cx(POLICE, &none, &p);
        let m = map_cloudevent(&array(STATES)[0], &c).unwrap();
        assert!(!m.matched);
        assert_eq!(m.event["message"], format!("fiks-bekymringsmelding:{BM1}"));
        assert_valid(&m);
        let m = map_cloudevent(&array(RECEIPTS)[0], &c).unwrap();
        assert!(!m.matched);
        assert_eq!(m.event["message"], format!("fiks-message:{O1}"));
        assert_valid(&m);
    }

    #[test]
    fn the_same_receipt_maps_to_the_same_id() {
        let r = resolver();
        let p = pz();
        let c = cx(KS, &r, &p);
        let all = array(RECEIPTS);
        let ce = &all[0];
        let a = map_cloudevent(ce, &c).unwrap();
        assert_eq!(a, map_cloudevent(ce, &c).unwrap());
        let ids: std::collections::BTreeSet<String> = array(STATES)
            .iter()
            .map(|e| {
                map_cloudevent(e, &c).unwrap().event["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), array(STATES).len());
    }

    #[test]
    fn unknown_types_and_states_are_refused_by_name() {
        let r = resolver();
        let p = pz();
        let c = cx(POLICE, &r, &p);
        let ce = one(include_str!(
            "../../tests/fixtures/cloudevents/fiks-bekymringsmelding-status-unknown.json"
        ));
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(e.to_string().contains("ARKIVERT"), "{e}");
        let mut ce = array(RECEIPTS)[0].clone();
        ce["type"] = "no.ks.fiks.bekymringsmelding.slettet.v1".into();
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        assert!(
            e.to_string()
                .contains("no.ks.fiks.bekymringsmelding.slettet.v1"),
            "{e}"
        );
        // The report itself is content: refused, never stored.
        ce["type"] = "no.ks.fiks.bekymringsmelding.offentlig.v1".into();
        assert_eq!(
            map_cloudevent(&ce, &c).unwrap_err().reason(),
            "unsupported_type"
        );
    }

    #[test]
    fn receipt_fields_are_checked() {
        let r = resolver();
        let p = pz();
        let c = cx(KS, &r, &p);
        let base = array(RECEIPTS)[0].clone();
        let mut ce = base.clone();
        ce["data"]["meldingType"] = TYPE_FEILET.into();
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        assert!(e.to_string().contains("`data.meldingType`"), "{e}");
        let mut ce = base.clone();
        ce["data"].as_object_mut().unwrap().remove("svarPaMelding");
        let e = map_cloudevent(&ce, &c).unwrap_err();
        assert_eq!(e.reason(), "missing_field");
        assert!(e.to_string().contains("`data.svarPaMelding`"), "{e}");
        let mut ce = base.clone();
        ce.as_object_mut().unwrap().remove("data");
        assert!(
            map_cloudevent(&ce, &c)
                .unwrap_err()
                .to_string()
                .contains("`data`")
        );
        let mut ce = base;
        ce["data"] = "not an object".into();
        assert_eq!(map_cloudevent(&ce, &c).unwrap_err().reason(), "bad_field");
    }
}
