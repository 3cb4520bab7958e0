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
        value
            .len()
            .is_multiple_of(3)
            .then(|| format!("M-{}-{}", key.len(), value.len()))
    }
}

const ORG: &str = "974760673";

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let pz = Pseudonymizer::new([7; 32]);
    let cx = MapContext {
        reporter_org: ORG,
        resolver: &Resolver,
        pseudonymizer: &pz,
    };
    let items: Vec<&Value> = match &value {
        Value::Array(a) => a.iter().chain([&value]).collect(),
        v => vec![v],
    };
    for v in items {
        let ce = map_cloudevent(v, &cx);
        check(v, &ce);
        assert_eq!(
            map_cloudevent(v, &cx),
            ce,
            "map_cloudevent is not deterministic"
        );
        let ef = map_eformidling(v, &cx);
        check(v, &ef);
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

fn check(input: &Value, r: &Result<Mapped, MapError>) {
    match r {
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
