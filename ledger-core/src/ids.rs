//! Norwegian identifiers the ledger checks: organisation numbers, which every event
//! carries, and national identity numbers, which must never enter the log.

/// Check digit of an organisation number from its first eight digits (mod 11, weights
/// 3 2 7 6 5 4 3 2), or `None` where the remainder makes every number invalid.
fn orgnr_check_digit(first8: &[u8]) -> Option<u8> {
    const W: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
    let sum: u32 = first8.iter().zip(W).map(|(d, w)| u32::from(*d) * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

/// Why a string is not an organisation number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrgNrError {
    /// Not exactly nine ASCII digits.
    #[error("must be exactly 9 digits")]
    NotNineDigits,
    /// The first eight digits admit no check digit.
    #[error("no organisation number starts with these 8 digits (mod-11 remainder 1)")]
    NoCheckDigit,
    /// The ninth digit is not the mod-11 check digit.
    #[error("wrong check digit {found} (mod 11 gives {expected})")]
    WrongCheckDigit {
        /// The check digit the first eight digits give.
        expected: u8,
        /// The ninth digit.
        found: u8,
    },
}

/// Checks a Norwegian organisation number: nine digits, the last a mod-11 check digit.
pub fn check_orgnr(s: &str) -> Result<(), OrgNrError> {
    let b = s.as_bytes();
    if b.len() != 9 || !b.iter().all(u8::is_ascii_digit) {
        return Err(OrgNrError::NotNineDigits);
    }
    let digits: Vec<u8> = b.iter().map(|c| c - b'0').collect();
    let expected = orgnr_check_digit(&digits[..8]).ok_or(OrgNrError::NoCheckDigit)?;
    if digits[8] != expected {
        return Err(OrgNrError::WrongCheckDigit {
            expected,
            found: digits[8],
        });
    }
    Ok(())
}

/// Completes eight digits to a valid organisation number, if any exists.
pub fn complete_orgnr(first8: &str) -> Option<String> {
    let b = first8.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digits: Vec<u8> = b.iter().map(|c| c - b'0').collect();
    orgnr_check_digit(&digits).map(|c| format!("{first8}{c}"))
}

/// Whether eleven digits carry the two mod-11 control digits of a national identity
/// number (fødselsnummer or D-number).
pub(crate) fn is_national_id(d: &[u8; 11]) -> bool {
    const W1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
    const W2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let control = |ws: &[u32], n: usize| -> Option<u8> {
        let sum: u32 = d[..n].iter().zip(ws).map(|(x, w)| u32::from(*x) * w).sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            c => Some(c as u8),
        }
    };
    control(&W1, 9) == Some(d[9]) && control(&W2, 10) == Some(d[10])
}

/// Whether `s` holds something that is, or could be, a national identity number.
/// Such a string must not enter the log.
///
/// Caught: a maximal run of exactly eleven ASCII digits with valid control digits;
/// the same written as six digits, one separator (space, no-break space, `-` or `.`)
/// and five digits, as people write them; and any run of eleven numeric characters
/// that are not all ASCII digits (fullwidth `０１…`, Arabic-Indic and the like), whose
/// control digits this check does not compute, so it refuses them all rather than let
/// one through.
pub fn contains_national_id(s: &str) -> bool {
    // Fewer than eleven numeric characters cannot hold one (the common case).
    if numeric_chars_fewer_than_eleven(s) {
        return false;
    }
    // Runs of numeric characters: (start char index, length, all ASCII).
    let chars: Vec<char> = s.chars().collect();
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_numeric() {
            i += 1;
            continue;
        }
        let start = i;
        let mut ascii = true;
        while i < chars.len() && chars[i].is_numeric() {
            ascii &= chars[i].is_ascii_digit();
            i += 1;
        }
        runs.push((start, i - start, ascii));
    }
    let digits = |from: usize, n: usize, out: &mut Vec<u8>| {
        out.extend(chars[from..from + n].iter().map(|c| *c as u8 - b'0'));
    };
    for (k, &(start, len, ascii)) in runs.iter().enumerate() {
        if len == 11 {
            if !ascii {
                return true;
            }
            let mut d = Vec::with_capacity(11);
            digits(start, 11, &mut d);
            if is_national_id(d.as_slice().try_into().expect("eleven digits")) {
                return true;
            }
        }
        if let Some(&(next, next_len, next_ascii)) = runs.get(k + 1) {
            let separated =
                next == start + len + 1 && matches!(chars[start + len], ' ' | '\u{a0}' | '-' | '.');
            if separated && len == 6 && next_len == 5 {
                if !(ascii && next_ascii) {
                    return true;
                }
                let mut d = Vec::with_capacity(11);
                digits(start, 6, &mut d);
                digits(next, 5, &mut d);
                if is_national_id(d.as_slice().try_into().expect("eleven digits")) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether `s` holds fewer than eleven numeric characters, and so no identity
/// number however written; for ASCII text by its bytes.
pub(crate) fn numeric_chars_fewer_than_eleven(s: &str) -> bool {
    if s.is_ascii() {
        // A count with no early exit vectorizes; ids are short.
        s.bytes().filter(u8::is_ascii_digit).count() < 11
    } else {
        s.chars().filter(|c| c.is_numeric()).nth(10).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_organisation_numbers_pass() {
        // Brønnøysundregistrene, NAV, Bergen kommune.
        for s in ["974760673", "889640782", "964338531"] {
            assert_eq!(check_orgnr(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_organisation_numbers_are_named() {
        assert_eq!(check_orgnr("97476067"), Err(OrgNrError::NotNineDigits));
        assert_eq!(check_orgnr("97476067a"), Err(OrgNrError::NotNineDigits));
        assert_eq!(
            check_orgnr("974760674"),
            Err(OrgNrError::WrongCheckDigit {
                expected: 3,
                found: 4
            })
        );
        assert_eq!(complete_orgnr("97476067").as_deref(), Some("974760673"));
    }

    #[test]
    fn national_ids_are_found_only_as_whole_valid_runs() {
        // A synthetic, well-formed test number (valid control digits).
        let fnr = "01010012356";
        assert!(contains_national_id(fnr));
        assert!(contains_national_id(&format!("child {fnr} at school")));
        assert!(!contains_national_id("01010012357"));
        assert!(!contains_national_id(&format!("9{fnr}")));
        assert!(!contains_national_id("2023/12345-6"));
        // As people write them, and in digits that are not ASCII.
        assert!(contains_national_id("f.nr. 010100 12356"));
        assert!(contains_national_id("010100-12356"));
        assert!(!contains_national_id("010100 12357"));
        assert!(!contains_national_id("2010100 12356"));
        assert!(contains_national_id("０１０１００１２３５６"));
        assert!(contains_national_id("٠١٠١٠٠١٢٣٥٦"));
        assert!(!contains_national_id("０１０１００１２３５"));
    }
}
