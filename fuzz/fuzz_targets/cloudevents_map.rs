//! The channel mappers of the server (`ledger-server/src/mappers`: Altinn 3
//! Correspondence and KS Fiks CloudEvents, eFormidling status records) on arbitrary
//! JSON, as the server calls them: a JSON array is mapped element by element.
//!
//! The mapper sources are compiled into this target as they are (`#[path]`), because
//! they are pure functions over `ledger-core`, `serde_json`, `sha2`, `hmac` and `time`
//! and depending on the `ledger-server` crate would build its whole HTTP, TLS and
//! PostgreSQL stack (about 270 crates) into every fuzz run.
//!
//! Properties, beyond "never panics":
//! - a mapped event is a valid ledger event: `Event::from_json` of its JSON text
//!   accepts it, its canonical bytes parse to themselves, and it is reported by the
//!   token's organisation;
//! - mapping is pure: the same input maps to the same output, byte for byte;
//! - a reporting organisation that is not an organisation number is refused before
//!   anything is mapped;
//! - what may be shown of an input (`shown`, `describe`) never holds what looks like a
//!   national identity number, and `shown` is at most 101 characters.
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../ledger-server/src/mappers/mod.rs"]
mod mappers;

use ledger_core::Event;
use ledger_core::ids::contains_national_id;
use libfuzzer_sys::fuzz_target;
use mappers::{
    MapContext, MapError, Mapped, Pseudonymizer, RefResolver, describe, is_subscription_validation,
    map_cloudevent, map_eformidling, shown,
};
use serde_json::Value;

/// Resolves some channel ids to a message (as if a `sent` event declared them), so
/// both the matched and the synthetic-message paths run.
struct Resolver;

impl RefResolver for Resolver {
    fn message_by_ref(&self, key: &str, value: &str) -> Option<String> {
        let id = format!("M-{}-{}", key.len(), value.len());
        match value.len() % 6 {
            // A format-2 message the reporter sends, one format-1 message.
            0 => Some(ledger_core::event::message_key(2, ORG, "964338531", &id).into_owned()),
            3 => Some(id),
            _ => None,
        }
    }
}

const ORG: &str = "974760673";

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let pz = Pseudonymizer::new([7; 32]);
    // Both formats a ledger may take.
    let format = 1 + (data.len() % 2) as u8;
    let cx = MapContext {
        reporter_org: ORG,
        resolver: &Resolver,
        pseudonymizer: &pz,
        format,
    };
    let items: Vec<&Value> = match &value {
        Value::Array(a) => a.iter().chain([&value]).collect(),
        v => vec![v],
    };
    for v in items {
        let ce = map_cloudevent(v, &cx);
        check(v, &ce, format);
        assert_eq!(
            map_cloudevent(v, &cx),
            ce,
            "map_cloudevent is not deterministic"
        );
        let ef = map_eformidling(v, &cx);
        check(v, &ef, format);
        assert_eq!(
            map_eformidling(v, &cx),
            ef,
            "map_eformidling is not deterministic"
        );
        if is_subscription_validation(v) {
            assert!(ce.is_err(), "a subscription validation mapped to {ce:?}");
        }

        // A bad reporter is refused whatever the input.
        let bad = MapContext {
            reporter_org: "974760674",
            resolver: &Resolver,
            pseudonymizer: &pz,
            format,
        };
        assert!(matches!(
            map_cloudevent(v, &bad),
            Err(MapError::BadReporter { .. })
        ));
        assert!(matches!(
            map_eformidling(v, &bad),
            Err(MapError::BadReporter { .. })
        ));

        let d = describe(v, &pz);
        assert!(
            !contains_national_id(&d),
            "describe shows a national id: {d}"
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let out = shown(s);
        assert!(
            !contains_national_id(&out),
            "shown shows a national id: {out}"
        );
        assert!(out.chars().count() <= 101);
    }
});

fn check(input: &Value, r: &Result<Mapped, MapError>, format: u8) {
    match r {
        Ok(m) if format >= 2 => {
            let text = serde_json::to_vec(&m.event).expect("a Value serializes");
            match Event::from_json_as(&text, 2) {
                Ok(event) => {
                    assert_eq!(event.reporter_org(), ORG);
                    assert!(event.sender().is_some() && event.recipient().is_some());
                    let again = Event::from_json_as(event.canonical_bytes(), 2)
                        .expect("canonical bytes parse");
                    assert_eq!(again.canonical_bytes(), event.canonical_bytes());
                }
                // Refused only by the admission rules format 2 makes part of
                // validity (the server answers that item `invalid_event`): the same
                // event without its parties is a valid format-1 event that
                // admission refuses.
                Err(e) => {
                    let mut v1 = m.event.clone();
                    if v1["type"] != "sent" {
                        let o = v1.as_object_mut().expect("an object");
                        o.remove("from");
                        o.remove("to");
                    }
                    let event = Event::from_value(v1).unwrap_or_else(|e1| {
                        panic!("mapper made an invalid event: {e1} ({e})\n  input: {input}\n  event: {}", m.event)
                    });
                    assert!(
                        ledger_core::admission::check_api(&event).is_err(),
                        "format 2 refuses what admission accepts: {e}\n  event: {}",
                        m.event
                    );
                }
            }
        }
        Ok(m) => {
            let text = serde_json::to_vec(&m.event).expect("a Value serializes");
            let event = Event::from_json(&text).unwrap_or_else(|e| {
                panic!(
                    "mapper made an event the ledger refuses: {e}\n  input: {input}\n  event: {}",
                    m.event
                )
            });
            assert_eq!(event.reporter_org(), ORG);
            let again = Event::from_json(event.canonical_bytes()).expect("canonical bytes parse");
            assert_eq!(again.canonical_bytes(), event.canonical_bytes());
            let from_value = Event::from_value(m.event.clone()).expect("from_value");
            assert_eq!(from_value.canonical_bytes(), event.canonical_bytes());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !contains_national_id(&msg),
                "error shows a national id: {msg}"
            );
            let _ = e.reason();
        }
    }
}
