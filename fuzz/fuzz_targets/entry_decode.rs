//! The entry decoders (`parse_entry`, `parse_envelope`, `check_entry`) on arbitrary
//! bytes, and entries built from arbitrary events.
//!
//! Properties, beyond "never panics":
//! - the fast envelope parser and the JSON parser agree: when both accept, they give
//!   the same seq, prev, recorded_at and event bytes; the fast one accepts exactly the
//!   bytes that `entry_bytes` rebuilds from the parsed fields (with an object event);
//!   it refuses as `NotCanonical` only what the JSON parser accepts;
//! - what `check_entry` accepts, the fast parser accepts with the same fields, and the
//!   bytes are what `entry_bytes` and `write_entry` make of them;
//! - when the input is itself a valid event, the entry built around it (seq, prev
//!   and time taken from the input) round-trips through all three decoders.
#![no_main]

use ledger_core::Event;
use ledger_core::entry::{
    EntryError, check_entry, entry_bytes, format_recorded_at, is_recorded_at, parse_entry,
    parse_envelope, write_entry,
};
use ledger_core::hash::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decode(data);
    built(data);
});

fn decode(data: &[u8]) {
    let json = parse_entry(data);
    let fast = parse_envelope(data);
    let full = check_entry(data);

    if let Ok(p) = &json {
        assert!(is_recorded_at(p.recorded_at));
        let rebuilt = entry_bytes(p.seq, &p.prev, p.recorded_at, p.v, p.event.as_bytes());
        let object = p.event.starts_with('{') && p.event.ends_with('}');
        match &fast {
            Ok(f) => {
                assert_eq!(
                    (f.seq, f.prev, f.recorded_at, f.event),
                    (p.seq, p.prev, p.recorded_at, p.event),
                    "the envelope parser and the JSON parser disagree"
                );
                assert_eq!(
                    rebuilt, data,
                    "the envelope parser accepted a non-canonical layout"
                );
            }
            Err(e) => {
                assert_eq!(
                    *e,
                    EntryError::NotCanonical,
                    "JSON parses but envelope says {e}"
                );
                assert!(
                    rebuilt != data || !object,
                    "canonical layout refused by the envelope parser"
                );
            }
        }
    } else if let Err(e) = &json {
        // The fast parser may accept what JSON refuses only through its documented
        // leniency: the event is checked to be braces around UTF-8, nothing more.
        if let Ok(f) = &fast {
            assert!(f.event.starts_with('{') && f.event.ends_with('}'));
            let rebuilt = entry_bytes(f.seq, &f.prev, f.recorded_at, f.v, f.event.as_bytes());
            assert_eq!(rebuilt, data);
        } else {
            assert_eq!(fast.as_ref().unwrap_err(), e, "errors differ");
        }
        assert!(full.is_err());
    }

    if let Ok((p, event)) = &full {
        let f = fast
            .as_ref()
            .expect("check_entry accepts what parse_envelope refuses");
        assert_eq!(
            (f.seq, f.prev, f.recorded_at, f.event),
            (p.seq, p.prev, p.recorded_at, p.event)
        );
        assert_eq!(p.event.as_bytes(), event.canonical_bytes());
        let rebuilt = entry_bytes(p.seq, &p.prev, p.recorded_at, p.v, event.canonical_bytes());
        assert_eq!(rebuilt, data);
        let mut out = b"prefix".to_vec();
        write_entry(
            &mut out,
            p.seq,
            &p.prev,
            p.recorded_at,
            p.v,
            event.canonical_bytes(),
        );
        assert_eq!(&out[6..], data);
    }

    // The fast parser accepting an object event that validates canonically means the
    // full check must accept too.
    if let Ok(f) = &fast
        && let Ok(ev) = Event::from_json_as(f.event.as_bytes(), f.v)
        && ev.canonical_bytes() == f.event.as_bytes()
    {
        assert!(
            full.is_ok(),
            "valid canonical event in a canonical envelope refused: {:?}",
            full.err()
        );
    }
}

fn built(data: &[u8]) {
    // Either format: a format-2 event only when it is valid as one.
    let v = if data.first().is_some_and(|b| b % 2 == 0) {
        2
    } else {
        1
    };
    let Ok(event) = Event::from_json_as(data, v).or_else(|_| Event::from_json(data)) else {
        return;
    };
    // Fields of the entry from the input's hash, so they vary with it.
    let h = HashAlg::Blake3.leaf(data);
    let seq = u64::from_le_bytes(h[..8].try_into().unwrap()) >> (h[8] % 64);
    let prev = HashAlg::Sha256.leaf(&h);
    // Any instant in years 1..=9999, with microseconds.
    const FIRST: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs =
        FIRST + i64::from_le_bytes(h[16..24].try_into().unwrap()).rem_euclid(LAST - FIRST + 1);
    let micros = u32::from_le_bytes(h[24..28].try_into().unwrap()) % 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
        + time::Duration::microseconds(i64::from(micros));
    let at = format_recorded_at(t);
    assert!(is_recorded_at(&at), "{at}");

    let bytes = entry_bytes(seq, &prev, &at, event.format(), event.canonical_bytes());
    let (p, ev) = check_entry(&bytes).expect("built entry fails check_entry");
    assert_eq!((p.seq, p.prev, p.recorded_at), (seq, prev, at.as_str()));
    assert_eq!(ev.canonical_bytes(), event.canonical_bytes());
    let f = parse_envelope(&bytes).expect("built entry fails parse_envelope");
    assert_eq!(f.v, event.format());
    assert_eq!(
        (f.seq, f.prev, f.recorded_at, f.event),
        (p.seq, p.prev, p.recorded_at, p.event)
    );
    let j = parse_entry(&bytes).expect("built entry fails parse_entry");
    assert_eq!(j.event.as_bytes(), event.canonical_bytes());
    // Entries are canonical JSON of themselves (JCS writes numbers as IEEE doubles, so
    // only up to seq 2^53, which no log reaches).
    if seq < 1 << 53 {
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json_canonicalizer::to_vec(&value).unwrap(), bytes);
    }
}
