//! Admission: what the ledger accepts from now on, beyond what makes an event valid.
//!
//! The format's rules (schemas/FORMAT.md §3) decide whether a stored entry is valid,
//! for ever: they cannot grow stricter without making old ledgers fail `verify
//! --deep`. Admission is checked once, when an event is offered (`ledger append`, the
//! API, the channel mappers), and may only grow stricter (FORMAT.md §3.8). It closes
//! the ways a national identity number got past the format's check:
//! - invisible characters inside the number (zero-width space, soft hyphen, word
//!   joiner: any format character or combining mark is ignored);
//! - any short run of separators between its digit groups (U+202F, en dash, `/`, `_`,
//!   two spaces, a tab or a newline; `01.01.70 12343`; a 4+7 split);
//! - the number inside a longer digit run;
//! - the number as an integer (`reporter.seq` below 10⁹: an identity number written
//!   as an integer has at least ten digits);
//!
//! and it keeps `refs` values identifier-shaped (an identifier, not a sentence or a
//! name).
//!
//! A candidate is eleven digits that are a calendar-plausible birth date (day 01–31,
//! or 41–71 for a D-number; month 01–12, or +40, +60 or +80 for H-numbers and
//! synthetic test numbers) with valid control digits, or eleven digits one of which is
//! numeric but not a decimal digit (a superscript, a circled digit), whose value
//! cannot be known, so it is refused rather than let through.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::Event;
use crate::event::{EventError, Member, Object};
use crate::ids::is_national_id;

/// Largest `reporter.seq` admitted: nine digits hold no national identity number.
pub const REPORTER_SEQ_MAX: u64 = 999_999_999;

/// Longest run of separators that still joins two digit groups into one number.
const JOINER_CHARS_MAX: usize = 3;

/// A digit as the detector sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Digit {
    Value(u8),
    /// Numeric, but not a decimal digit whose value is known.
    Unknown,
}

/// Whether `s` holds, in any of the ways people and programs write one, something
/// that is or could be a national identity number (see the module docs).
pub fn hides_national_id(s: &str) -> bool {
    if crate::ids::numeric_chars_fewer_than_eleven(s) {
        return false;
    }
    // Groups of digits run together into one chain while each joins the next (1–3
    // separators between them, no letter); every window of eleven of a chain is a
    // candidate.
    let mut chain: Vec<Digit> = Vec::new();
    let mut in_group = false;
    let mut joiner = 0usize;
    let mut broken = true;
    let ends_with_candidate =
        |chain: &[Digit]| chain.len() >= 11 && chain.windows(11).any(is_candidate);
    for c in s.chars() {
        // Invisible: format characters, combining marks, and the Hangul fillers
        // (letters by category, but default-ignorable and drawn as nothing). No
        // ASCII character is any of them.
        if !c.is_ascii()
            && (matches!(
                c.general_category(),
                GeneralCategory::Format
                    | GeneralCategory::NonspacingMark
                    | GeneralCategory::EnclosingMark
            ) || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'))
        {
            continue;
        }
        if c.is_numeric() {
            if !in_group {
                let joins = !broken && (1..=JOINER_CHARS_MAX).contains(&joiner);
                if !joins {
                    if ends_with_candidate(&chain) {
                        return true;
                    }
                    chain.clear();
                }
                in_group = true;
                joiner = 0;
                broken = false;
            }
            chain.push(digit(c));
            continue;
        }
        in_group = false;
        if c.is_alphabetic() {
            broken = true;
        } else {
            joiner += 1;
        }
    }
    ends_with_candidate(&chain)
}

/// What the ledger refuses in any text it records or shows: a national identity
/// number by the format's rule (FORMAT.md §3.5) or by admission's
/// ([`hides_national_id`]).
pub fn may_hold_national_id(s: &str) -> bool {
    crate::ids::contains_national_id(s) || hides_national_id(s)
}

fn digit(c: char) -> Digit {
    if let Some(d) = c.to_digit(10) {
        return Digit::Value(d as u8);
    }
    if c.general_category() != GeneralCategory::DecimalNumber {
        return Digit::Unknown;
    }
    // Decimal digits come in contiguous runs of ten, ascending from zero.
    let mut start = c as u32;
    for _ in 0..60 {
        match char::from_u32(start - 1) {
            Some(p) if p.general_category() == GeneralCategory::DecimalNumber => start -= 1,
            _ => break,
        }
    }
    Digit::Value(((c as u32 - start) % 10) as u8)
}

fn is_candidate(w: &[Digit]) -> bool {
    let mut d = [0u8; 11];
    for (o, x) in d.iter_mut().zip(w) {
        match x {
            Digit::Value(v) => *o = *v,
            Digit::Unknown => return true,
        }
    }
    let day = d[0] * 10 + d[1];
    let month = d[2] * 10 + d[3];
    let plausible_day = (1..=31).contains(&day) || (41..=71).contains(&day);
    let plausible_month = [0, 40, 60, 80]
        .iter()
        .any(|off| (off + 1..=off + 12).contains(&month));
    plausible_day && plausible_month && is_national_id(&d)
}

/// Checks the admission rules on an event already valid by the format: every text
/// value (but timestamps and the content digest) with [`hides_national_id`],
/// `reporter.seq` ≤ [`REPORTER_SEQ_MAX`], and every `refs` value a reference (an
/// identifier: ASCII letters, digits and `. _ : / + = -`, starting with a letter or
/// digit: never a sentence, a name with spaces or an address).
pub fn check(event: &Event) -> Result<(), EventError> {
    check_object(&canonical_object(event))
}

/// An event's canonical bytes as the rules read them.
fn canonical_object(event: &Event) -> Object<'_> {
    Object::parse(event.canonical_bytes()).expect("an event's canonical bytes are an event's shape")
}

fn check_object(v: &Object<'_>) -> Result<(), EventError> {
    if let Some(Member::UInt(seq)) = v.get_object("reporter").and_then(|r| r.get("seq"))
        && *seq > REPORTER_SEQ_MAX
    {
        return Err(refuse(
            "reporter.seq",
            format!(
                "{seq} is above {REPORTER_SEQ_MAX}: a reporter's sequence number has at most nine \
                 digits, so it can never carry a national identity number"
            ),
        ));
    }
    if let Some(refs) = v.get_object("refs") {
        for (k, val) in refs.iter() {
            let s = match val {
                Member::Str(s) => s.as_ref(),
                _ => "",
            };
            if !is_reference(s) {
                return Err(refuse(
                    &format!("refs.{k}"),
                    format!(
                        "{s:?} is not a reference: refs hold identifiers (ASCII letters, digits and \
                         . _ : / + = -), never names or sentences; keep descriptions in your own system, \
                         or use a keyed pseudonym"
                    ),
                ));
            }
        }
    }
    scan(v, "")
}

/// The fields that name a system, a role or a reason: codes, not words about people.
const CODE_FIELDS: [&str; 8] = [
    "reporter.system",
    "system",
    "from_system",
    "to_system",
    "by_role",
    "reason",
    "error",
    "status",
];

/// The admission rules for reports that come over the API (`POST /v1/events` and the
/// channel mappers), beyond [`check`]: no free text at all. `reason`, `error`,
/// `status`, `by_role` and the system names are codes and `journal_ref` an
/// identifier (the shape of a reference), and `note` is refused: what a person needs
/// to read stays in the reporter's own case system. The operator's `ledger append`
/// may still record format 1's free text (FORMAT.md §3.8).
pub fn check_api(event: &Event) -> Result<(), EventError> {
    check_api_object(&canonical_object(event))
}

/// [`check_api`] on the event's object, while it is parsed.
pub(crate) fn check_api_object(v: &Object<'_>) -> Result<(), EventError> {
    check_object(v)?;
    for path in CODE_FIELDS {
        let value = match path.split_once('.') {
            Some((a, b)) => v.get_object(a).and_then(|o| o.get_str(b)),
            None => v.get_str(path),
        };
        if let Some(s) = value
            && !is_reference(s)
        {
            return Err(refuse(
                path,
                format!(
                    "{s:?} is not a code: over the API it is one word (ASCII letters, digits and \
                     . _ : / + = -), never free text"
                ),
            ));
        }
    }
    if let Some(s) = v.get_str("journal_ref")
        && !is_reference(s)
    {
        return Err(refuse(
            "journal_ref",
            format!("{s:?} is not an identifier (ASCII letters, digits and . _ : / + = -)"),
        ));
    }
    if v.get("note").is_some() {
        return Err(refuse(
            "note",
            "free text is not accepted over the API: keep the note in your own case system \
             (the outcome says what was done)",
        ));
    }
    Ok(())
}

fn is_reference(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '+' | '=' | '-')
        })
}

/// Every key and text value of the object; `prefix` is the path of a nested one.
fn scan(v: &Object<'_>, prefix: &str) -> Result<(), EventError> {
    let path = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    for (k, x) in v.iter() {
        // The event's own keys are the format's names, valid by now; only `refs`
        // keys are the reporter's words.
        if prefix == "refs" && hides_national_id(k) {
            return Err(refuse(
                &path(k),
                "the key may hold a national identity number",
            ));
        }
        match x {
            Member::Str(s)
                if !(prefix.is_empty() && matches!(k, "at" | "expires_at" | "content_digest"))
                    && hides_national_id(s) =>
            {
                return Err(refuse(
                    &path(k),
                    "contains what may be a national identity number (its digits, perhaps split by \
                     separators or invisible characters); personal data must never enter the log: use \
                     a keyed pseudonym",
                ));
            }
            Member::Object(o) => scan(o, &path(k))?,
            _ => {}
        }
    }
    Ok(())
}

fn refuse(field: &str, reason: impl Into<String>) -> EventError {
    EventError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic, well-formed number (valid control digits, 1 January 2000).
    const FNR: &str = "01010012356";

    #[test]
    fn every_way_the_tester_wrote_one_is_found() {
        let forms = [
            FNR.to_string(),
            "0101\u{200b}0012356".into(),
            "0101\u{ad}0012356".into(),
            "010100\u{2060}12356".into(),
            "010100\u{202f}12356".into(),
            "010100\u{2013}12356".into(),
            "010100/12356".into(),
            "010100_12356".into(),
            "010100  12356".into(),
            "010100\t12356".into(),
            "010100\n12356".into(),
            "01.01.00 12356".into(),
            "0101 0012356".into(),
            format!("9{FNR}7"),
            format!("ref-{FNR}4411"),
            "０１０１００１２３５６".into(),
            "٠١٠١٠٠١٢٣٥٦".into(),
            "0101001235\u{2076}".into(),
            "0\u{301}1010012356".into(),
            "010100\u{3164}12356".into(),
            "7010100 12356".into(),
            "010100 123568".into(),
        ];
        for f in &forms {
            assert!(hides_national_id(f), "{f:?}");
        }
    }

    #[test]
    fn identifiers_of_the_trade_pass() {
        for s in [
            "974760673",
            "0192:974760673",
            "2023/00029-1",
            "POL-2023-00048",
            "b9a6eabc52f3334391e537a76da8e8ec",
            "6a1c3f0e-8d2b-4f7e-9c1a-2b3c4d5e6f70",
            "2023-05-08T09:30:00Z",
            "01010012357",
            "010100 12357",
            "a0101b0012356",
            "010100 - . 12356",
        ] {
            assert!(!hides_national_id(s), "{s:?}");
        }
    }

    #[test]
    fn admission_names_the_field() {
        let ev = |extra: &str| {
            Event::from_json(
                format!(
                    r#"{{"id":"e1","type":"sent","message":"M1","at":"2023-05-08T09:30:00Z",
                    "reporter":{{"org":"974760673","system":"websak"{extra}}},"from":"974760673","to":"964338531",
                    "channel":"altinn","category":"document","content_digest":"sha256:{}",
                    "refs":{{"websak":"2023/00029-1"}}}}"#,
                    "ab".repeat(32)
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(check(&ev(",\"seq\":12")), Ok(()));
        assert_eq!(
            check(&ev(",\"seq\":15076500565")).unwrap_err().field,
            "reporter.seq"
        );
        let named = Event::from_json(
            format!(
                r#"{{"id":"e1","type":"sent","message":"M1","at":"2023-05-08T09:30:00Z",
                "reporter":{{"org":"974760673","system":"websak"}},"from":"974760673","to":"964338531",
                "channel":"altinn","category":"document","content_digest":"sha256:{}",
                "refs":{{"barn":"Ola Nordmann f. 01.01.2015, Storgata 1"}}}}"#,
                "ab".repeat(32)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(check(&named).unwrap_err().field, "refs.barn");
        let hidden = Event::from_json(
            br#"{"id":"0101\u200b0012356","type":"expired","message":"M1","at":"2023-05-08T09:30:00Z",
            "reporter":{"org":"974760673","system":"websak"}}"#,
        )
        .unwrap();
        assert_eq!(check(&hidden).unwrap_err().field, "id");
    }
}
