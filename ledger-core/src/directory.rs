//! The organisation directory: names for organisation numbers, so answers show
//! "Demo kommune 001" beside 912345678 and filters take a name. One CSV file,
//! `organisations.csv` in the ledger's directory, in the shape of the
//! Enhetsregisteret's own download (docs/organisations.md): an operator can drop the
//! real register's file there. Names are never on the chain: the directory is a
//! reader's aid, and answers name numbers whether or not it exists.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ids::check_orgnr;
use crate::reconcile::{BOM, sniff_delimiter};

/// The file in a ledger (or bundle) directory.
pub const FILE_NAME: &str = "organisations.csv";

/// Header names accepted for each column, compared case-insensitively: the
/// register's own (`organisasjonsnummer`, `navn`, `organisasjonsform.kode`) and plain
/// English ones.
const NUMBER_HEADERS: [&str; 4] = ["organisasjonsnummer", "orgnr", "org", "number"];
const NAME_HEADERS: [&str; 2] = ["navn", "name"];
const KIND_HEADERS: [&str; 4] = [
    "organisasjonsform.kode",
    "organisasjonsform",
    "kind",
    "type",
];

/// Why a directory file cannot be read, or a name cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// The file is malformed: where, and why.
    #[error("{file} line {line}{}: {reason}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
    Malformed {
        /// The file.
        file: String,
        /// The line (the header is line 1).
        line: u64,
        /// The column's header, where one is at fault.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// No organisation has that name (nor a name containing it).
    #[error(
        "no organisation is named {0:?} in {FILE_NAME} (give its organisation number, or the name as the directory spells it)"
    )]
    Unknown(String),
    /// Several organisations match the name.
    #[error("{name:?} names {total} organisations; give one of: {}{}", candidates.iter().map(|(n, m)| format!("{m} ({n})")).collect::<Vec<_>>().join(", "), if *total > candidates.len() { format!(" (and {} more)", total - candidates.len()) } else { String::new() })]
    Ambiguous {
        /// As given.
        name: String,
        /// How many match.
        total: usize,
        /// (number, name) of each, at most ten.
        candidates: Vec<(String, String)>,
    },
    /// The file could not be read.
    #[error("read {file}: {reason}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        reason: String,
    },
}

/// One organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Its number (nine digits, mod-11 checked).
    pub number: String,
    /// Its name.
    pub name: String,
    /// Its kind (organisation form code, e.g. `KOMM`), if given.
    pub kind: Option<String>,
}

/// Names for numbers. Empty when the ledger has no directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    by_number: BTreeMap<String, Organisation>,
}

/// A directory that names nothing.
pub static EMPTY: Directory = Directory {
    by_number: BTreeMap::new(),
};

impl Directory {
    /// Reads `<dir>/organisations.csv`; an empty directory if there is none.
    pub fn load(dir: &Path) -> Result<Directory, DirectoryError> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Directory::parse(&path.display().to_string(), &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Directory::default()),
            Err(e) => Err(DirectoryError::Io {
                file: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Parses a directory file: CSV with a header row, comma, semicolon or tab
    /// (sniffed), an optional UTF-8 BOM; other columns are ignored. A bad row is an
    /// error naming its line and column, never skipped.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Directory, DirectoryError> {
        let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        let bad = |line: u64, column: Option<&str>, reason: String| DirectoryError::Malformed {
            file: file.to_string(),
            line,
            column: column.map(str::to_string),
            reason,
        };
        let mut r = csv::ReaderBuilder::new()
            .delimiter(sniff_delimiter(bytes))
            .flexible(true)
            .from_reader(bytes);
        let headers = r
            .headers()
            .map_err(|e| bad(1, None, e.to_string()))?
            .clone();
        let find = |names: &[&str]| {
            headers
                .iter()
                .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
        };
        let number_col = find(&NUMBER_HEADERS).ok_or_else(|| {
            bad(
                1,
                None,
                format!(
                    "no organisation number column (one of: {})",
                    NUMBER_HEADERS.join(", ")
                ),
            )
        })?;
        let name_col = find(&NAME_HEADERS).ok_or_else(|| {
            bad(
                1,
                None,
                format!("no name column (one of: {})", NAME_HEADERS.join(", ")),
            )
        })?;
        let kind_col = find(&KIND_HEADERS);
        let mut by_number = BTreeMap::new();
        for (i, record) in r.records().enumerate() {
            let line = i as u64 + 2;
            let record = record.map_err(|e| bad(line, None, e.to_string()))?;
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let field = |col: usize| record.get(col).unwrap_or("").trim();
            let number = field(number_col).replace(' ', "");
            check_orgnr(&number)
                .map_err(|e| bad(line, Some(&headers[number_col]), format!("{number:?}: {e}")))?;
            let name = field(name_col);
            if name.is_empty() {
                return Err(bad(line, Some(&headers[name_col]), "empty name".into()));
            }
            let kind = kind_col.map(field).filter(|k| !k.is_empty());
            let org = Organisation {
                number: number.clone(),
                name: name.to_string(),
                kind: kind.map(str::to_string),
            };
            if by_number.insert(number.clone(), org).is_some() {
                return Err(bad(
                    line,
                    Some(&headers[number_col]),
                    format!("{number} is listed twice"),
                ));
            }
        }
        Ok(Directory { by_number })
    }

    /// How many organisations it names.
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    /// Whether it names none.
    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }

    /// The name of an organisation number.
    pub fn name(&self, number: &str) -> Option<&str> {
        self.by_number.get(number).map(|o| o.name.as_str())
    }

    /// Names for the numbers given that it knows, by number.
    pub fn names<'a>(
        &self,
        numbers: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, String> {
        numbers
            .into_iter()
            .filter_map(|n| self.name(n).map(|m| (n.to_string(), m.to_string())))
            .collect()
    }

    /// The organisation number a reader means: a number as given, or a name: the
    /// one organisation of exactly that name (case aside), else the one whose name
    /// begins with it, else the one whose name contains it; several at the first
    /// step that finds any are [`DirectoryError::Ambiguous`].
    pub fn resolve(&self, input: &str) -> Result<String, DirectoryError> {
        let compact = input.replace(' ', "");
        if compact.len() == 9 && compact.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(compact);
        }
        let wanted = input.trim().to_lowercase();
        let pick = |matches: Vec<&Organisation>| -> Option<Result<String, DirectoryError>> {
            match matches.len() {
                0 => None,
                1 => Some(Ok(matches[0].number.clone())),
                _ => Some(Err(DirectoryError::Ambiguous {
                    name: input.to_string(),
                    total: matches.len(),
                    candidates: matches
                        .iter()
                        .take(10)
                        .map(|o| (o.number.clone(), o.name.clone()))
                        .collect(),
                })),
            }
        };
        let exact: Vec<&Organisation> = self
            .by_number
            .values()
            .filter(|o| o.name.to_lowercase() == wanted)
            .collect();
        if let Some(r) = pick(exact) {
            return r;
        }
        let starting: Vec<&Organisation> = self
            .by_number
            .values()
            .filter(|o| o.name.to_lowercase().starts_with(&wanted))
            .collect();
        if let Some(r) = pick(starting) {
            return r;
        }
        let partial: Vec<&Organisation> = self
            .by_number
            .values()
            .filter(|o| o.name.to_lowercase().contains(&wanted))
            .collect();
        pick(partial).unwrap_or_else(|| Err(DirectoryError::Unknown(input.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "\u{feff}organisasjonsnummer;navn;organisasjonsform.kode;forretningsadresse.kommune\n\
        974760673;Øst politidistrikt (demo);ORGL;OSLO\n\
        912147347;Sør-Øst politidistrikt (demo);ORGL;\n\
        964338531;Demo kommune 001;KOMM;BERGEN\n\
        937884117;Demo kommune 002;KOMM;\n";

    #[test]
    fn reads_the_registers_shape_and_resolves_names() {
        let d = Directory::parse("organisations.csv", REGISTER.as_bytes()).unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(d.name("964338531"), Some("Demo kommune 001"));
        assert_eq!(d.resolve("ØST politidistrikt (DEMO)").unwrap(), "974760673");
        // The name it begins with, before the names it is within (Sør-Øst).
        assert_eq!(d.resolve("Øst politidistrikt").unwrap(), "974760673");
        assert_eq!(d.resolve("sør-øst").unwrap(), "912147347");
        assert!(matches!(
            d.resolve("politidistrikt"),
            Err(DirectoryError::Ambiguous { total: 2, .. })
        ));
        assert_eq!(d.resolve("974 760 673").unwrap(), "974760673");
        match d.resolve("Demo kommune") {
            Err(DirectoryError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
            other => panic!("{other:?}"),
        }
        let e = d.resolve("Demo kommune").unwrap_err().to_string();
        assert!(e.contains("Demo kommune 001 (964338531)"), "{e}");
        assert!(matches!(d.resolve("Vest"), Err(DirectoryError::Unknown(_))));
    }

    #[test]
    fn bad_rows_are_named_by_line_and_column() {
        let text = "orgnr,name\n974760673,A\n974760674,B\n";
        let e = Directory::parse("o.csv", text.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, DirectoryError::Malformed { line: 3, column: Some(c), .. } if c == "orgnr"),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("o.csv line 3, column orgnr:"),
            "{e}"
        );
        let e = Directory::parse("o.csv", b"orgnr,name\n974760673,\n").unwrap_err();
        assert!(
            e.to_string().contains("line 2, column name: empty name"),
            "{e}"
        );
        let e = Directory::parse("o.csv", b"orgnr,name\n974760673,A\n974760673,B\n").unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = Directory::parse("o.csv", b"id,title\n1,A\n").unwrap_err();
        assert!(
            e.to_string().contains("no organisation number column"),
            "{e}"
        );
    }
}
