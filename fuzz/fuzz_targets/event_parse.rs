//! `Event::from_json` on arbitrary bytes.
//!
//! Properties, beyond "never panics":
//! - the canonical bytes of an accepted event are accepted again and are a fixed point
//!   (same canonical bytes, id, type, message, linked message and reporter);
//! - they are RFC 8785 output: equal to what the general JCS canonicalizer makes of
//!   them (the event module takes a faster path for plain values);
//! - they stay within `EVENT_BYTES_MAX`;
//! - the parsed value is accepted by `Event::from_value` to the same bytes (the server
//!   builds mapped events that way);
//! - an entry built around the event passes the full entry check.
#![no_main]

use ledger_core::Event;
use ledger_core::entry::{check_entry, entry_bytes, parse_envelope};
use ledger_core::limits::EVENT_BYTES_MAX;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Both formats (FORMAT.md §3.9), by the input's length.
    let format = 1 + (data.len() % 2) as u8;
    let Ok(event) = Event::from_json_as(data, format) else {
        return;
    };
    assert_eq!(event.format(), format);
    let canonical = event.canonical_bytes();
    assert!(
        canonical.len() <= EVENT_BYTES_MAX,
        "canonical event over the limit"
    );

    // A fixed point: canonical bytes parse to themselves.
    let again = Event::from_json_as(canonical, format).unwrap_or_else(|e| {
        panic!(
            "canonical bytes of an accepted event are refused: {e}\n{}",
            String::from_utf8_lossy(canonical)
        )
    });
    assert_eq!(
        again.canonical_bytes(),
        canonical,
        "canonical form is not idempotent"
    );
    assert_eq!(again.id(), event.id());
    assert_eq!(again.kind(), event.kind());
    assert_eq!(again.message(), event.message());
    assert_eq!(again.linked_message(), event.linked_message());
    assert_eq!(again.reporter_org(), event.reporter_org());
    assert_eq!(again, event);

    // RFC 8785 by an independent implementation.
    let value: serde_json::Value = serde_json::from_slice(canonical).expect("canonical is JSON");
    let jcs = serde_json_canonicalizer::to_vec(&value).expect("JCS of a parsed value");
    assert_eq!(
        jcs,
        canonical,
        "canonical bytes differ from RFC 8785:\n ours {}\n jcs  {}",
        String::from_utf8_lossy(canonical),
        String::from_utf8_lossy(&jcs)
    );

    // The same JSON given as a value (what the mappers and the server hand over).
    let original: serde_json::Value = serde_json::from_slice(data).expect("accepted input is JSON");
    let from_value =
        Event::from_value_as(original, format).expect("from_value refuses what from_json took");
    assert_eq!(from_value.canonical_bytes(), canonical);

    // The event inside an entry: the full check and the envelope parser agree.
    let prev = ledger_core::HashAlg::Sha256.leaf(canonical);
    let bytes = entry_bytes(
        data.len() as u64,
        &prev,
        "2023-05-08T12:34:56.789012Z",
        event.format(),
        canonical,
    );
    let (full, ev) = check_entry(&bytes).expect("an entry built from a valid event checks");
    assert_eq!(ev.canonical_bytes(), canonical);
    let fast = parse_envelope(&bytes).expect("an entry built from a valid event parses");
    assert_eq!(
        (fast.seq, fast.prev, fast.recorded_at, fast.event),
        (full.seq, full.prev, full.recorded_at, full.event)
    );
});
