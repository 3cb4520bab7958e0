//! Keyed pseudonyms: personal identifiers never reach the log, only an HMAC of them
//! under a key kept outside the log. Destroying the key makes every pseudonym made
//! with it unlinkable to the person it stood for.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use ledger_core::admission::may_hold_national_id;
use ledger_core::ids::check_orgnr;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every pseudonym.
pub const PREFIX: &str = "pn:";

/// Makes keyed pseudonyms: `"pn:"` + the first 32 hex digits of
/// HMAC-SHA256(key, domain ‖ 0x00 ‖ value).
///
/// The key never leaves this value (its `Debug` does not show it). Keep it outside the
/// log; destroy it to make the pseudonyms unlinkable.
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer { key: <hidden> }")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with this 32-byte secret key.
    pub fn new(key: [u8; 32]) -> Self {
        Pseudonymizer { key }
    }

    /// The pseudonym of `value` in `domain` (e.g. `"person"`): `"pn:"` + the first 32
    /// lowercase hex digits of HMAC-SHA256(key, domain ‖ 0x00 ‖ value). The domain keeps
    /// one kind of identifier from colliding with another; it should not contain NUL.
    ///
    /// In the rare case (about 1 in 7 000) where those 32 hex digits hold a run of
    /// eleven decimal digits that the ledger would refuse as a national identity number,
    /// the same digits are written in four groups of eight joined by `_`, so that every
    /// pseudonym passes the ledger's validation.
    pub fn pseudonym(&self, domain: &str, value: &str) -> String {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(domain.as_bytes());
        mac.update(&[0u8]);
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        token(PREFIX, tag.as_slice())
    }

    /// A party (the `subject` or `alternativesubject` of an Altinn event, or any other
    /// party reference) as it may be stored, logged or returned:
    ///
    /// - an organisation (`urn:altinn:organization:identifier-no:<orgnr>`,
    ///   `/organisation/<orgnr>`, `0192:<orgnr>` or a bare organisation number, with a
    ///   valid check digit) is returned unchanged (trimmed);
    /// - a person (`urn:altinn:person:identifier-no:<id>`, `/person/<id>`, or a bare
    ///   eleven-digit number) becomes the pseudonym of the identifier in the domain
    ///   `person`, so all three spellings of one person give the same pseudonym;
    /// - anything else (Altinn party ids such as `/party/50015641`, which also point at
    ///   people, or text holding a national identity number) becomes the pseudonym of
    ///   the whole string in the domain `party`.
    pub fn scrub_party(&self, urn: &str) -> String {
        let s = urn.trim();
        if is_organisation(s) {
            return s.to_string();
        }
        for prefix in ["urn:altinn:person:identifier-no:", "/person/"] {
            if let Some(rest) = strip_prefix_ignore_case(s, prefix) {
                return self.pseudonym("person", rest.trim());
            }
        }
        if s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit()) {
            return self.pseudonym("person", s);
        }
        self.pseudonym("party", s)
    }
}

/// Whether `s` names an organisation by a valid organisation number (and nothing
/// that could be a national identity number).
fn is_organisation(s: &str) -> bool {
    if may_hold_national_id(s) {
        return false;
    }
    for prefix in [
        "urn:altinn:organization:identifier-no:",
        "urn:altinn:organisation:identifier-no:",
        "/organisation/",
        "/organization/",
        "0192:",
    ] {
        if let Some(rest) = strip_prefix_ignore_case(s, prefix) {
            return check_orgnr(rest).is_ok();
        }
    }
    check_orgnr(s).is_ok()
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// `prefix` + the first 16 bytes of `bytes` as 32 lowercase hex digits; if that would
/// contain what the ledger refuses as a national identity number, the digits are
/// grouped by eight with the letter `g` (a run of at most eight digits, and a letter
/// ends any number, so the grouped form never holds one).
pub(crate) fn token(prefix: &str, bytes: &[u8]) -> String {
    assert!(bytes.len() >= 16, "a token takes 16 bytes");
    let hex = hex::encode(&bytes[..16]);
    let plain = format!("{prefix}{hex}");
    if !may_hold_national_id(&plain) {
        return plain;
    }
    let groups: Vec<&str> = (0..4).map(|i| &hex[i * 8..i * 8 + 8]).collect();
    format!("{prefix}{}", groups.join("g"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FNR: &str = "15076500565";

    fn pz() -> Pseudonymizer {
        Pseudonymizer::new([7u8; 32])
    }

    #[test]
    fn pseudonyms_are_keyed_hmac_sha256_truncated_to_32_hex_digits() {
        // Known answers, computed independently (Python hmac + hashlib).
        assert_eq!(
            pz().pseudonym("person", FNR),
            "pn:63817a34184f316b2fbfff011b00698a"
        );
        assert_eq!(
            pz().pseudonym("party", "/party/50015641"),
            "pn:112278b6087f19aa991bce376e575c38"
        );
        let p = pz().pseudonym("person", FNR);
        assert_eq!(p.len(), 35);
        assert!(
            p[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Deterministic, domain-separated, keyed.
        assert_eq!(p, pz().pseudonym("person", FNR));
        assert_ne!(p, pz().pseudonym("party", FNR));
        assert_ne!(p, Pseudonymizer::new([8u8; 32]).pseudonym("person", FNR));
        assert!(!p.contains(FNR));
        assert!(!may_hold_national_id(&p));
    }

    #[test]
    fn organisations_are_kept_and_people_are_pseudonymized() {
        let pz = pz();
        for org in [
            "urn:altinn:organization:identifier-no:974760673",
            "/organisation/964338531",
            "0192:991825827",
            "974760673",
        ] {
            assert_eq!(pz.scrub_party(org), org);
        }
        let person = pz.pseudonym("person", FNR);
        for p in [
            format!("urn:altinn:person:identifier-no:{FNR}"),
            format!("/person/{FNR}"),
            FNR.to_string(),
            format!(" urn:altinn:person:identifier-no:{FNR} "),
        ] {
            let s = pz.scrub_party(&p);
            assert_eq!(s, person, "{p}");
            assert!(!s.contains(FNR));
        }
        // A party id, an organisation URN with a bad check digit, and an
        // organisation URN that holds a national identity number instead.
        let org_holding_fnr = format!("urn:altinn:organization:identifier-no:{FNR}");
        for other in [
            "/party/50015641",
            "urn:altinn:organization:identifier-no:974760674",
            org_holding_fnr.as_str(),
        ] {
            let s = pz.scrub_party(other);
            assert!(s.starts_with(PREFIX), "{other}: {s}");
            assert!(!s.contains(FNR));
        }
    }

    #[test]
    fn a_token_never_holds_a_national_identity_number() {
        // 32 hex digits that hold the valid synthetic number 01010012356.
        let bytes = hex::decode("a01010012356bcdefabcdefabcdefabc").unwrap();
        assert!(may_hold_national_id("pn:a01010012356bcdefabcdefabcdefabc"));
        let t = token(PREFIX, &bytes);
        assert_eq!(t, "pn:a0101001g2356bcdegfabcdefagbcdefabc");
        assert!(!may_hold_national_id(&t));
        // The common case is the plain form.
        let plain = token("ce-", &[0xab; 32]);
        assert_eq!(plain, format!("ce-{}", "ab".repeat(16)));
    }

    #[test]
    fn the_key_is_not_shown() {
        assert_eq!(format!("{:?}", pz()), "Pseudonymizer { key: <hidden> }");
    }
}
