//! Reconcile (projections.md §7): compares what a sender says it sent and what a
//! receiver says it got with what the ledger knows.
//!
//! Two halves: [`parse_list`] reads one list (CSV or JSON Lines) strictly and all or
//! nothing, because comparing half a list would report the missing half as lost
//! messages; [`reconcile`] compares parsed lists against a [`LedgerView`], which the
//! projection implements. Nothing here reads files or knows about the command line.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::event::parse_time;

/// At most this many bad rows are listed in a [`ListError`]; a list broken throughout
/// (the wrong file, say) would otherwise bury the first, telling lines.
pub const MAX_REPORTED_PROBLEMS: usize = 50;

pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One row of a list: what a sender says it sent or a receiver says it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    /// The physical line (from 1) of the file on which the row starts.
    pub line: u64,
    /// The message id the row names; `None` when empty.
    pub message: Option<String>,
    /// A reference the row names (e.g. the channel's id); `None` when empty.
    pub r#ref: Option<String>,
    /// When, exactly as given (checked to be RFC 3339, not normalised, since it is only
    /// echoed back to the user); `None` when empty.
    pub at: Option<String>,
}

/// Which list, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// The `--sent` list.
    Sent,
    /// The `--received` list.
    Received,
}

impl ListKind {
    /// The name used in the `list` column: `sent` or `received`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
        }
    }
}

/// One bad row of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The physical line (from 1) on which the row starts.
    pub line: u64,
    /// What is wrong with it; several faults of one row are joined by `; `.
    pub reason: String,
}

/// Parse errors: every bad row with its line and why; a bad list compares nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The list cannot be read at all (no header row, a required column missing or
    /// given twice), so its rows were not looked at.
    #[error("{name}:{line}: {reason}")]
    Header {
        /// The list's file name, as given to [`parse_list`].
        name: String,
        /// The line of the header (1 when there is none).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Some rows are bad. The display has one `name:line: reason` line per row.
    #[error("{}", render_problems(.name, .problems, .omitted))]
    Rows {
        /// The list's file name, as given to [`parse_list`].
        name: String,
        /// The first [`MAX_REPORTED_PROBLEMS`] bad rows, in file order.
        problems: Vec<RowProblem>,
        /// How many further bad rows there are beyond `problems`.
        omitted: usize,
    },
}

impl ListError {
    /// The list's file name, as given to [`parse_list`].
    pub fn name(&self) -> &str {
        match self {
            Self::Header { name, .. } | Self::Rows { name, .. } => name,
        }
    }
}

fn render_problems(name: &str, problems: &[RowProblem], omitted: &usize) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{name}:{}: {}", p.line, p.reason))
        .collect();
    if *omitted > 0 {
        lines.push(format!("{name}: {omitted} more bad rows not listed"));
    }
    lines.join("\n")
}

/// A list that parsed cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// The rows in file order.
    pub rows: Vec<ListRow>,
    /// Things the user should know that do not make the list bad, each prefixed with
    /// the file name (e.g. CSV columns that were ignored, all named in one warning).
    pub warnings: Vec<String>,
}

/// How to read a list that is not in reconcile's own shape: a real case-system
/// export, with its own column names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// (field, column): the list's column holding each of `message`, `ref`, `at`.
    /// With a map, a field neither mapped nor present as a column is empty in every
    /// row (an export may have no reference column), but at least `message` or `ref`
    /// must be there.
    pub map: Vec<(String, String)>,
}

impl ListOptions {
    /// Parses `message=Dokumentnr,ref=Saksnr,at=Dato` (the CLI's `--map`).
    pub fn parse_map(text: &str) -> Result<ListOptions, String> {
        let mut map: Vec<(String, String)> = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (field, column) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not FIELD=COLUMN (e.g. message=Dokumentnr)"))?;
            let field = field.trim();
            if !REQUIRED.contains(&field) {
                return Err(format!(
                    "{field:?} is not a field reconcile reads (message, ref, at)"
                ));
            }
            if map.iter().any(|(f, _)| f == field) {
                return Err(format!("{field} is mapped twice"));
            }
            map.push((field.to_owned(), column.trim().to_owned()));
        }
        if map.is_empty() {
            return Err("the map is empty (e.g. message=Dokumentnr,at=Dato)".into());
        }
        Ok(ListOptions { map })
    }
}

/// Parses one list in reconcile's own shape; see [`parse_list_with`].
pub fn parse_list(name: &str, bytes: &[u8]) -> Result<ParsedList, ListError> {
    parse_list_with(name, bytes, &ListOptions::default())
}

/// Parses one list. Chooses CSV or JSON Lines by the file name extension (`.csv`;
/// `.jsonl` or `.ndjson`, in any case), else by the first non-blank byte (`{` → JSON
/// Lines, anything else, including nothing, → CSV). A leading UTF-8 BOM is dropped.
///
/// Every bad row is reported (up to [`MAX_REPORTED_PROBLEMS`], then counted), not just
/// the first, so that one run shows the user everything to fix.
///
/// CSV: the delimiter is sniffed from the header line (the most frequent of `,`, `;`
/// and tab outside quotes; a comma when none occurs), and with [`ListOptions::map`]
/// the columns are the export's own. `at` may be RFC 3339, a date (`2018-07-01`) or a
/// Norwegian date (`01.07.2018`, optionally with `HH:MM` or `HH:MM:SS`); it is echoed
/// as given.
pub fn parse_list_with(
    name: &str,
    bytes: &[u8],
    opts: &ListOptions,
) -> Result<ParsedList, ListError> {
    // Stripped here rather than left to the csv crate so that its byte offsets are
    // offsets into the slice `record_line` looks at.
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if is_json_lines(name, bytes) {
        parse_json_lines(name, bytes)
    } else {
        parse_csv(name, bytes, opts)
    }
}

/// The delimiter of a CSV file, from its first line: the most frequent of `,` `;` tab
/// outside double quotes; ties and none go to the comma.
pub(crate) fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in bytes.iter().take_while(|&&b| b != b'\n') {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3)
        .max_by_key(|&i| (counts[i], usize::from(i == 0)))
        .expect("three");
    if counts[best] == 0 {
        return b',';
    }
    [b',', b';', b'\t'][best]
}

/// Whether `at` is a time a list may give: RFC 3339, `YYYY-MM-DD`, or `DD.MM.YYYY`
/// with an optional ` HH:MM` or ` HH:MM:SS`.
fn is_list_time(at: &str) -> bool {
    if parse_time(at).is_some() || crate::projection::Instant::parse_input(at).is_ok() {
        return true;
    }
    let (date, time) = match at.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (at, None),
    };
    let d: Vec<&str> = date.split('.').collect();
    let num = |s: &str, len: usize| s.len() == len && s.bytes().all(|c| c.is_ascii_digit());
    if d.len() != 3 || !num(d[0], 2) || !num(d[1], 2) || !num(d[2], 4) {
        return false;
    }
    let iso = format!("{}-{}-{}", d[2], d[1], d[0]);
    if crate::projection::Instant::parse_input(&iso).is_err() {
        return false;
    }
    match time {
        None => true,
        Some(t) => {
            let p: Vec<&str> = t.split(':').collect();
            (p.len() == 2 || p.len() == 3)
                && p.iter().all(|x| num(x, 2))
                && p[0] < "24"
                && p[1] < "60"
                && p.get(2).is_none_or(|s| *s < "60")
        }
    }
}

fn is_json_lines(name: &str, bytes: &[u8]) -> bool {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => false,
        Some("jsonl" | "ndjson") => true,
        _ => bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

#[derive(Default)]
struct Problems {
    kept: Vec<RowProblem>,
    omitted: usize,
}

impl Problems {
    fn push(&mut self, line: u64, reason: String) {
        if self.kept.len() < MAX_REPORTED_PROBLEMS {
            self.kept.push(RowProblem { line, reason });
        } else {
            self.omitted += 1;
        }
    }

    fn finish(
        self,
        name: &str,
        rows: Vec<ListRow>,
        warnings: Vec<String>,
    ) -> Result<ParsedList, ListError> {
        if self.kept.is_empty() {
            Ok(ParsedList { rows, warnings })
        } else {
            Err(ListError::Rows {
                name: name.to_owned(),
                problems: self.kept,
                omitted: self.omitted,
            })
        }
    }
}

/// The per-row rules shared by both formats; empty strings have already become `None`.
fn check_row(
    line: u64,
    message: Option<String>,
    r#ref: Option<String>,
    at: Option<String>,
) -> Result<ListRow, String> {
    let mut reasons = Vec::new();
    if message.is_none() && r#ref.is_none() {
        reasons.push("message and ref are both empty".to_owned());
    }
    if let Some(at) = &at
        && !is_list_time(at)
    {
        reasons.push(format!(
            "at {at:?} is not a time (RFC 3339, 2018-07-01, or 01.07.2018 with an optional \
             HH:MM[:SS])"
        ));
    }
    if reasons.is_empty() {
        Ok(ListRow {
            line,
            message,
            r#ref,
            at,
        })
    } else {
        Err(reasons.join("; "))
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

// ---------------------------------------------------------------------------------
// CSV

struct Columns {
    message: Option<usize>,
    r#ref: Option<usize>,
    at: Option<usize>,
    width: usize,
    ignored: Vec<String>,
}

const REQUIRED: [&str; 3] = ["message", "ref", "at"];

impl Columns {
    /// Column names are matched exactly (case and spaces count), like JSON keys: a
    /// near miss such as `Message` then shows up by name in the ignored-columns
    /// warning next to the missing-column error.
    fn from_header(header: &csv::ByteRecord, opts: &ListOptions) -> Result<Self, String> {
        let mut names = Vec::with_capacity(header.len());
        for (i, field) in header.iter().enumerate() {
            let name = std::str::from_utf8(field)
                .map_err(|_| format!("header column {} is not valid UTF-8", i + 1))?;
            names.push(name.trim());
        }
        let mapped = !opts.map.is_empty();
        // The column each field is read from: the map's, else the field's own name.
        let column_of = |field: &str| -> String {
            opts.map
                .iter()
                .find(|(f, _)| f == field)
                .map_or_else(|| field.to_owned(), |(_, c)| c.clone())
        };
        let mut found = [None; 3];
        let mut faults = Vec::new();
        for (slot, want) in found.iter_mut().zip(REQUIRED) {
            let column = column_of(want);
            let explicit = opts.map.iter().any(|(f, _)| f == want);
            let mut at = names.iter().enumerate().filter(|(_, n)| **n == column);
            match (at.next(), at.next()) {
                (Some((i, _)), None) => *slot = Some(i),
                // With a map, an unmapped field the export lacks is empty in every row.
                (None, _) if mapped && !explicit => {}
                (None, _) if explicit => faults.push(format!(
                    "the header has no `{column}` column (mapped to {want})"
                )),
                (None, _) => faults.push(format!("the header has no `{want}` column")),
                (Some((a, _)), Some((b, _))) => faults.push(format!(
                    "the header has a `{want}` column twice (columns {} and {})",
                    a + 1,
                    b + 1
                )),
            }
        }
        if mapped && found[0].is_none() && found[1].is_none() && faults.is_empty() {
            faults.push("neither `message` nor `ref` is among the columns".to_owned());
        }
        let ignored: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !found.contains(&Some(*i)))
            .map(|(_, n)| format!("{n:?}"))
            .collect();
        if !faults.is_empty() {
            let mut reason = faults.join("; ");
            reason.push_str(if mapped {
                " (map the export's columns with message=COLUMN,ref=COLUMN,at=COLUMN"
            } else {
                " (it needs message, ref and at, in any order, or a column map"
            });
            if !ignored.is_empty() {
                reason.push_str("; other columns: ");
                reason.push_str(&ignored.join(", "));
            }
            reason.push(')');
            return Err(reason);
        }
        Ok(Self {
            message: found[0],
            r#ref: found[1],
            at: found[2],
            width: names.len(),
            ignored,
        })
    }
}

fn parse_csv(name: &str, bytes: &[u8], opts: &ListOptions) -> Result<ParsedList, ListError> {
    // Headers are read as an ordinary record so that the header is checked by our
    // rules, and `flexible` lets a ragged row be reported with the others instead of
    // surfacing as a reader error.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(sniff_delimiter(bytes))
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let header_error = |line: u64, reason: String| ListError::Header {
        name: name.to_owned(),
        line,
        reason,
    };
    match reader.read_byte_record(&mut record) {
        Ok(true) => {}
        Ok(false) => {
            return Err(header_error(
                1,
                "no header row (a CSV list needs columns message, ref and at)".to_owned(),
            ));
        }
        Err(e) => return Err(header_error(csv_error_line(&e), format!("bad CSV: {e}"))),
    }
    let columns = Columns::from_header(&record, opts)
        .map_err(|reason| header_error(record_line(bytes, &record), reason))?;
    let mut warnings = Vec::new();
    if !columns.ignored.is_empty() {
        warnings.push(format!(
            "{name}: ignoring columns not used by reconcile: {}",
            columns.ignored.join(", ")
        ));
    }

    let mut rows = Vec::new();
    let mut problems = Problems::default();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Reading from a slice cannot fail and `flexible` rules out ragged-row
                // errors, so this is unexpected; stop rather than risk looping on it.
                problems.push(csv_error_line(&e), format!("bad CSV: {e}"));
                break;
            }
        }
        let line = record_line(bytes, &record);
        if record.len() != columns.width {
            problems.push(
                line,
                format!(
                    "the row has {} fields, the header has {}",
                    record.len(),
                    columns.width
                ),
            );
            continue;
        }
        // Every field is checked, not only the three used: a list that is not UTF-8
        // anywhere was probably exported in another encoding throughout.
        if let Some(i) = record.iter().position(|f| std::str::from_utf8(f).is_err()) {
            problems.push(line, format!("field {} is not valid UTF-8", i + 1));
            continue;
        }
        let text = |i: Option<usize>| {
            record
                .get(i?)
                .and_then(|f| std::str::from_utf8(f).ok())
                .map(|s| s.trim().to_owned())
                .and_then(non_empty)
        };
        match check_row(
            line,
            text(columns.message),
            text(columns.r#ref),
            text(columns.at),
        ) {
            Ok(row) => rows.push(row),
            Err(reason) => problems.push(line, reason),
        }
    }
    problems.finish(name, rows, warnings)
}

/// The line on which a record starts. The csv crate stamps a record with the reader's
/// position from before it skipped any blank lines (and, for CRLF files, possibly
/// before the `\n` ending the previous record), so a row after blank lines would be
/// blamed on the first blank one; counting the terminators between that position and
/// the record's first byte gives the physical line. A record never starts with a line
/// terminator, so this adds nothing when the position is already exact.
fn record_line(input: &[u8], record: &csv::ByteRecord) -> u64 {
    let Some(pos) = record.position() else {
        return 1;
    };
    let start = usize::try_from(pos.byte())
        .unwrap_or(usize::MAX)
        .min(input.len());
    let skipped = input[start..]
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|&&b| b == b'\n')
        .count();
    pos.line() + skipped as u64
}

fn csv_error_line(e: &csv::Error) -> u64 {
    e.position().map_or(1, csv::Position::line)
}

// ---------------------------------------------------------------------------------
// JSON Lines

/// One JSON Lines row. `deny_unknown_fields` and the derive's duplicate-key check make
/// the object strict; `deserialize_with` makes `null` an error instead of "absent",
/// since the format says the values are strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    #[serde(default, deserialize_with = "some_string")]
    message: Option<String>,
    #[serde(default, rename = "ref", deserialize_with = "some_string")]
    r#ref: Option<String>,
    #[serde(default, deserialize_with = "some_string")]
    at: Option<String>,
}

fn some_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn parse_json_lines(name: &str, bytes: &[u8]) -> Result<ParsedList, ListError> {
    let mut rows = Vec::new();
    let mut problems = Problems::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            problems.push(line, "the line is not valid UTF-8".to_owned());
            continue;
        };
        // A serde-derived struct also accepts a JSON array (fields by position), which
        // is not "one object per line".
        if raw.trim_ascii_start().first() != Some(&b'{') {
            problems.push(line, "the line is not a JSON object".to_owned());
            continue;
        }
        match serde_json::from_str::<JsonRow>(text) {
            Ok(j) => match check_row(
                line,
                j.message.and_then(non_empty),
                j.r#ref.and_then(non_empty),
                j.at.and_then(non_empty),
            ) {
                Ok(row) => rows.push(row),
                Err(reason) => problems.push(line, reason),
            },
            Err(e) => problems.push(line, json_reason(&e)),
        }
    }
    problems.finish(name, rows, Vec::new())
}

/// serde_json's message ends in " at line 1 column N", where line 1 is the line within
/// the one-line text parsed; the file line is reported separately, so keep the column.
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON: {what}")
        }
        _ => what.to_owned(),
    };
    if e.column() > 0 {
        format!("{what} (column {})", e.column())
    } else {
        what
    }
}

// ---------------------------------------------------------------------------------
// Comparison

/// What reconcile needs from the ledger's projection (implemented elsewhere).
pub trait LedgerView {
    /// Whether a message with this id is known (has a `sent`, or was declared by a resend).
    fn is_known(&self, message: &str) -> bool;
    /// The known messages a list row's message id names: the message itself, or
    /// (format 2, where organisations may use the same id) each message of that id.
    fn named(&self, message: &str) -> Vec<String> {
        if self.is_known(message) {
            vec![message.to_string()]
        } else {
            Vec::new()
        }
    }
    /// Known messages one of whose `sent.refs` values equals `r` (any key).
    fn messages_with_ref(&self, r: &str) -> Vec<String>;
    /// The message's refs as (key, value), its origin time (UTC RFC 3339) and its
    /// evaluated verdict name.
    fn describe(&self, message: &str) -> Option<LedgerMessage>;
}

/// What the ledger says about one message, for the ledger columns of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerMessage {
    /// The message's `sent.refs` as (key, value), in any order.
    pub refs: Vec<(String, String)>,
    /// `origin_at` (§2.1) as UTC RFC 3339; `None` for an orphan.
    pub origin_at: Option<String>,
    /// The evaluated verdict's name (e.g. `completed`).
    pub verdict: String,
}

/// The kind of a difference. The order of the variants is the report's sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffClass {
    /// A `--sent` row that matches no known message.
    SentNotInLedger,
    /// A message in scope that no `--received` row matches.
    InLedgerNotReceived,
    /// A `--received` row that matches no known message.
    ReceivedNotSent,
    /// A row whose ref matches several known messages (data quality; the row is also
    /// reported in its own list's unmatched class).
    AmbiguousRef,
}

impl DiffClass {
    /// Every class, in report order.
    pub const ALL: [Self; 4] = [
        Self::SentNotInLedger,
        Self::InLedgerNotReceived,
        Self::ReceivedNotSent,
        Self::AmbiguousRef,
    ];

    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::SentNotInLedger => "sent_not_in_ledger",
            Self::InLedgerNotReceived => "in_ledger_not_received",
            Self::ReceivedNotSent => "received_not_sent",
            Self::AmbiguousRef => "ambiguous_ref",
        }
    }
}

/// One reported difference: a row of the §7 output, fields in column order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The class.
    pub class: DiffClass,
    /// `sent`, `received` or `ledger` (for [`DiffClass::InLedgerNotReceived`]).
    pub list: &'static str,
    /// The row's line in its list; `None` for ledger rows.
    pub line: Option<u64>,
    /// The row's message, or for a ledger row the ledger message; empty when none.
    pub message: String,
    /// The row's ref, or for a ledger row its refs as `key=value` sorted and joined by
    /// `;`; empty when none.
    #[serde(rename = "ref")]
    pub r#ref: String,
    /// The row's `at` as given, or for a ledger row its `origin_at`; empty when none.
    pub at: String,
    /// The ledger message the row is about: the message itself for a ledger row, the
    /// candidates joined by `;` (sorted) for an ambiguous ref; empty otherwise.
    pub ledger_message: String,
    /// The evaluated verdict of the ledger message, where there is exactly one; empty
    /// otherwise.
    pub ledger_verdict: String,
}

impl Difference {
    fn sort_key(&self) -> (DiffClass, u8, Option<u64>, &str, &str, &str, &str) {
        let list = match self.list {
            "sent" => 0,
            "received" => 1,
            _ => 2,
        };
        (
            self.class,
            list,
            self.line,
            self.message.as_str(),
            self.r#ref.as_str(),
            self.at.as_str(),
            self.ledger_message.as_str(),
        )
    }
}

/// How a row fared against the candidates.
enum Found {
    One(String),
    Several(Vec<String>),
    Nothing,
}

fn find(row: &ListRow, ledger: &dyn LedgerView) -> Found {
    if let Some(m) = &row.message {
        let mut named = ledger.named(m);
        match named.len() {
            0 => {}
            1 => return Found::One(named.pop().expect("one")),
            _ => {
                named.sort();
                return Found::Several(named);
            }
        }
    }
    let Some(r) = &row.r#ref else {
        return Found::Nothing;
    };
    // Only known messages are candidates (§7); filtering here keeps that true even if
    // a view's ref index also holds messages it does not count as known.
    let mut hits: Vec<String> = ledger
        .messages_with_ref(r)
        .into_iter()
        .filter(|m| ledger.is_known(m))
        .collect();
    hits.sort();
    hits.dedup();
    if hits.len() > 1 {
        Found::Several(hits)
    } else {
        hits.pop().map_or(Found::Nothing, Found::One)
    }
}

/// Compares one row, pushing its differences; returns the message it matched.
fn compare_row(
    row: &ListRow,
    kind: ListKind,
    ledger: &dyn LedgerView,
    out: &mut Vec<Difference>,
) -> Option<String> {
    let list_row = |class: DiffClass, ledger_message: String| Difference {
        class,
        list: kind.name(),
        line: Some(row.line),
        message: row.message.clone().unwrap_or_default(),
        r#ref: row.r#ref.clone().unwrap_or_default(),
        at: row.at.clone().unwrap_or_default(),
        ledger_message,
        ledger_verdict: String::new(),
    };
    match find(row, ledger) {
        Found::One(m) => return Some(m),
        Found::Nothing => {}
        Found::Several(candidates) => {
            out.push(list_row(DiffClass::AmbiguousRef, candidates.join(";")));
        }
    }
    let unmatched = match kind {
        ListKind::Sent => DiffClass::SentNotInLedger,
        ListKind::Received => DiffClass::ReceivedNotSent,
    };
    out.push(list_row(unmatched, String::new()));
    None
}

fn ledger_row(message: &str, ledger: &dyn LedgerView) -> Difference {
    let found = ledger.describe(message).unwrap_or_default();
    // `message` as the lists name it (its bare id); `ledger_message` the ledger's
    // own name for it (FROM/TO/ID in format 2).
    let bare = match crate::event::key_from_path(message) {
        Some(k) => crate::event::split_message_key(&k).1.to_string(),
        None => message.to_owned(),
    };
    let mut refs = found.refs;
    refs.sort();
    let refs: Vec<String> = refs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Difference {
        class: DiffClass::InLedgerNotReceived,
        list: "ledger",
        line: None,
        message: bare,
        r#ref: refs.join(";"),
        at: found.origin_at.unwrap_or_default(),
        ledger_message: message.to_owned(),
        ledger_verdict: found.verdict,
    }
}

/// The differences between the lists and the ledger (§7), sorted by class (in
/// [`DiffClass`] order), then list (`sent`, `received`, `ledger`), then line (ledger
/// rows, which have none, first), then message.
///
/// A row matches message `M` when its `message` is a known id; failing that (no
/// message, or an unknown one), when its `ref` equals a value of exactly one known
/// message's refs, under any key. A row naming a known message is not checked against
/// its ref.
///
/// A ref that matches several known messages gives **two** rows: an
/// [`DiffClass::AmbiguousRef`] row naming the candidates, and, because §7 says such a
/// row counts as unmatched, the row's own [`DiffClass::SentNotInLedger`] or
/// [`DiffClass::ReceivedNotSent`] row. So the three classes stay complete on their own
/// and `ambiguous_ref` explains some of their rows. None of the candidates enters the
/// scope or counts as received.
///
/// `extra_scope` holds the ids of the candidates passing the user's filters when any
/// filter was given (empty otherwise); the caller computes it. Ids in it that the
/// ledger does not know are ignored. The scope is the messages matched by a sent row
/// plus `extra_scope`; each of them that no received row matches gives an
/// [`DiffClass::InLedgerNotReceived`] row.
pub fn reconcile(
    sent: &[ListRow],
    received: &[ListRow],
    ledger: &dyn LedgerView,
    extra_scope: &[String],
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut scope = BTreeSet::new();
    for row in sent {
        if let Some(m) = compare_row(row, ListKind::Sent, ledger, &mut out) {
            scope.insert(m);
        }
    }
    let mut got = BTreeSet::new();
    for row in received {
        if let Some(m) = compare_row(row, ListKind::Received, ledger, &mut out) {
            got.insert(m);
        }
    }
    scope.extend(extra_scope.iter().filter(|m| ledger.is_known(m)).cloned());
    for m in scope.difference(&got) {
        out.push(ledger_row(m, ledger));
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    out
}

/// The number of differences in each class, in [`DiffClass::ALL`] order (zeros
/// included), for the summary line.
pub fn summary(diffs: &[Difference]) -> [(DiffClass, usize); 4] {
    DiffClass::ALL.map(|c| (c, diffs.iter().filter(|d| d.class == c).count()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const T0: &str = "2023-01-02T09:00:00Z";

    struct Fake(BTreeMap<String, LedgerMessage>);

    impl LedgerView for Fake {
        fn is_known(&self, message: &str) -> bool {
            self.0.contains_key(message)
        }

        fn messages_with_ref(&self, r: &str) -> Vec<String> {
            self.0
                .iter()
                .filter(|(_, d)| d.refs.iter().any(|(_, v)| v == r))
                .map(|(m, _)| m.clone())
                .collect()
        }

        fn describe(&self, message: &str) -> Option<LedgerMessage> {
            self.0.get(message).cloned()
        }
    }

    fn ledger() -> Fake {
        let entry = |id: &str, refs: &[(&str, &str)], verdict: &str| {
            let refs = refs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let found = LedgerMessage {
                refs,
                origin_at: Some(T0.to_owned()),
                verdict: verdict.to_owned(),
            };
            (id.to_owned(), found)
        };
        Fake(BTreeMap::from([
            entry("M1", &[("altinn", "A1")], "completed"),
            entry("M2", &[("sak", "S2"), ("altinn", "A2")], "open"),
            entry("M3", &[("altinn", "DUP")], "open"),
            entry("M4", &[("eformidling", "DUP")], "lost"),
            entry("M5", &[], "lost"),
        ]))
    }

    fn row(line: u64, message: &str, r: &str) -> ListRow {
        ListRow {
            line,
            message: non_empty(message.to_owned()),
            r#ref: non_empty(r.to_owned()),
            at: None,
        }
    }

    fn parse(name: &str, text: &str) -> ParsedList {
        parse_list(name, text.as_bytes()).expect("list should parse")
    }

    fn problems(name: &str, bytes: &[u8]) -> Vec<RowProblem> {
        match parse_list(name, bytes) {
            Err(ListError::Rows { problems, .. }) => problems,
            other => panic!("expected bad rows, got {other:?}"),
        }
    }

    fn lines(problems: &[RowProblem]) -> Vec<u64> {
        problems.iter().map(|p| p.line).collect()
    }

    // --- CSV ---------------------------------------------------------------------

    #[test]
    fn csv_with_bom_and_extra_columns_warns_once() {
        let list = parse(
            "sent.csv",
            "\u{feff}message,ref,at,note,channel\nM1,A1,2023-01-02T09:00:00Z,hi,altinn\n",
        );
        assert_eq!(
            list.rows,
            vec![ListRow {
                line: 2,
                message: Some("M1".into()),
                r#ref: Some("A1".into()),
                at: Some(T0.into()),
            }]
        );
        assert_eq!(list.warnings.len(), 1, "{:?}", list.warnings);
        let w = &list.warnings[0];
        assert!(w.starts_with("sent.csv: "), "{w}");
        assert!(w.contains("\"note\"") && w.contains("\"channel\""), "{w}");
    }

    #[test]
    fn csv_without_extra_columns_has_no_warning() {
        let list = parse("sent.csv", "message,ref,at\nM1,,\n");
        assert!(list.warnings.is_empty());
        assert_eq!(list.rows, vec![row(2, "M1", "")]);
    }

    #[test]
    fn csv_columns_in_any_order() {
        let list = parse(
            "r.csv",
            "at,ref,message\n2023-01-02T10:00:00+01:00,A1,M1\n,A2,\n",
        );
        assert_eq!(list.rows.len(), 2);
        assert_eq!(list.rows[0].message.as_deref(), Some("M1"));
        assert_eq!(list.rows[0].r#ref.as_deref(), Some("A1"));
        // Kept as given, not normalised to UTC.
        assert_eq!(
            list.rows[0].at.as_deref(),
            Some("2023-01-02T10:00:00+01:00")
        );
        assert_eq!(list.rows[1], row(3, "", "A2"));
    }

    #[test]
    fn csv_quoted_fields_keep_commas_newlines_and_quotes() {
        let text = "message,ref,at\n\"M,1\",\"first\nsecond\",\n\"M\"\"2\",r2,\nM3,r3,\n";
        let list = parse("s.csv", text);
        assert_eq!(
            list.rows,
            vec![
                row(2, "M,1", "first\nsecond"),
                row(4, "M\"2", "r2"),
                row(5, "M3", "r3"),
            ]
        );
    }

    #[test]
    fn csv_crlf_and_blank_lines_keep_physical_line_numbers() {
        let list = parse(
            "s.csv",
            "message,ref,at\r\n\r\nM1,,\r\nM2,,\r\n\r\n\r\nM3,,\r\n",
        );
        assert_eq!(
            list.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4, 7]
        );
        let bad = problems("s.csv", b"message,ref,at\n\nM1,,\n\n\n,,\n");
        assert_eq!(lines(&bad), vec![6]);
    }

    #[test]
    fn csv_missing_header_column_is_named() {
        let err = parse_list("s.csv", b"message,at,note\nM1,,x\n").unwrap_err();
        let ListError::Header { name, line, reason } = &err else {
            panic!("expected a header error, got {err:?}");
        };
        assert_eq!((name.as_str(), *line), ("s.csv", 1));
        assert!(reason.contains("no `ref` column"), "{reason}");
        assert!(!reason.contains("no `message`"), "{reason}");
        assert!(err.to_string().starts_with("s.csv:1: "), "{err}");
    }

    #[test]
    fn csv_header_problems_are_all_named() {
        let err = parse_list("s.csv", b"Message,ref,ref\n").unwrap_err();
        let reason = err.to_string();
        assert!(reason.contains("no `message` column"), "{reason}");
        assert!(
            reason.contains("`ref` column twice (columns 2 and 3)"),
            "{reason}"
        );
        assert!(reason.contains("no `at` column"), "{reason}");
        assert!(reason.contains("\"Message\""), "{reason}");
    }

    #[test]
    fn empty_csv_has_no_header() {
        for bytes in [&b""[..], b"\xEF\xBB\xBF", b"\n\n"] {
            let err = parse_list("s.csv", bytes).unwrap_err();
            assert!(matches!(err, ListError::Header { line: 1, .. }), "{err:?}");
        }
    }

    #[test]
    fn csv_header_only_is_an_empty_list() {
        assert_eq!(parse("s.csv", "message,ref,at\n"), ParsedList::default());
    }

    #[test]
    fn message_and_ref_both_empty_is_an_error() {
        let bad = problems("s.csv", b"message,ref,at\nM1,,\n,,2023-01-02T09:00:00Z\n");
        assert_eq!(lines(&bad), vec![3]);
        assert_eq!(bad[0].reason, "message and ref are both empty");
    }

    #[test]
    fn bad_timestamps_are_errors() {
        let text = "message,ref,at\n\
                    M1,,2023-01-02 09:00:00Z\n\
                    M2,,2023-02-30T00:00:00Z\n\
                    M3,,2023-01-02T09:00:00Z\n\
                    M4,,2023-01-02T09:00:00\n\
                    M5,,yesterday\n";
        let bad = problems("s.csv", text.as_bytes());
        assert_eq!(lines(&bad), vec![2, 3, 5, 6]);
        assert!(
            bad[0].reason.contains("is not a time (RFC 3339"),
            "{}",
            bad[0].reason
        );
        assert!(bad[0].reason.contains("\"2023-01-02 09:00:00Z\""));
    }

    #[test]
    fn faults_of_one_row_are_joined() {
        let bad = problems("s.csv", b"message,ref,at\n,,soon\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("both empty"), "{}", bad[0].reason);
        assert!(bad[0].reason.contains("\"soon\""), "{}", bad[0].reason);
    }

    #[test]
    fn csv_ragged_rows_and_bad_utf8_are_errors() {
        let mut bytes = b"message,ref,at\nM1,,\nM2\nM3,,,\nM4,r4,\n".to_vec();
        bytes.extend_from_slice(b"M\xFF5,,\nM6,,\n");
        let bad = problems("s.csv", &bytes);
        assert_eq!(lines(&bad), vec![3, 4, 6]);
        assert!(
            bad[0].reason.contains("1 fields, the header has 3"),
            "{}",
            bad[0].reason
        );
        assert!(bad[1].reason.contains("4 fields"), "{}", bad[1].reason);
        assert!(bad[2].reason.contains("UTF-8"), "{}", bad[2].reason);
    }

    #[test]
    fn all_bad_rows_are_collected_up_to_a_cap() {
        let mut text = String::from("message,ref,at\n");
        for _ in 0..(MAX_REPORTED_PROBLEMS + 10) {
            text.push_str(",,\n");
        }
        let err = parse_list("big.csv", text.as_bytes()).unwrap_err();
        let ListError::Rows {
            problems, omitted, ..
        } = &err
        else {
            panic!("expected bad rows, got {err:?}");
        };
        assert_eq!(problems.len(), MAX_REPORTED_PROBLEMS);
        assert_eq!(*omitted, 10);
        assert_eq!(problems[0].line, 2);
        let shown = err.to_string();
        assert!(shown.starts_with("big.csv:2: message and ref"), "{shown}");
        assert!(
            shown.ends_with("big.csv: 10 more bad rows not listed"),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), MAX_REPORTED_PROBLEMS + 1);
        assert_eq!(err.name(), "big.csv");
    }

    // --- JSON Lines --------------------------------------------------------------

    #[test]
    fn json_lines_skip_blank_lines_and_keep_line_numbers() {
        let text = "{\"message\":\"M1\",\"ref\":\"A1\",\"at\":\"2023-01-02T09:00:00Z\"}\n\
                    \n   \n\
                    {\"ref\":\"A2\"}\r\n\
                    { \"at\" : \"2023-01-02T09:00:00Z\", \"message\" : \"M3\" }\n";
        let list = parse("r.jsonl", text);
        assert!(list.warnings.is_empty());
        assert_eq!(
            list.rows,
            vec![
                ListRow {
                    line: 1,
                    message: Some("M1".into()),
                    r#ref: Some("A1".into()),
                    at: Some(T0.into()),
                },
                row(4, "", "A2"),
                ListRow {
                    line: 5,
                    message: Some("M3".into()),
                    r#ref: None,
                    at: Some(T0.into()),
                },
            ]
        );
    }

    /// Issue 12: a real case-system export (semicolons, a BOM, Norwegian headers and
    /// dates), read with a column map; bad rows named by line.
    #[test]
    fn a_norwegian_export_reads_with_a_column_map() {
        let text = "\u{feff}Saksnr;Dokumentnr;Tittel;Mottaker;Dato\n\
                    2018/101;POL-1;\"Bekymring; barn\";964338531;01.07.2018\n\
                    2018/102;POL-2;Melding;964338531;02.07.2018 13:45\n\
                    2018/103;;Melding;964338531;03.07.2018\n";
        let opts = ListOptions::parse_map("message=Dokumentnr, ref=Saksnr, at=Dato").unwrap();
        let list = parse_list_with("eksport.csv", text.as_bytes(), &opts).unwrap();
        assert_eq!(list.rows.len(), 3);
        assert_eq!(list.rows[0].message.as_deref(), Some("POL-1"));
        assert_eq!(list.rows[0].r#ref.as_deref(), Some("2018/101"));
        assert_eq!(list.rows[1].at.as_deref(), Some("02.07.2018 13:45"));
        assert_eq!(list.rows[2].message, None);
        assert!(
            list.warnings[0].contains("\"Tittel\""),
            "{:?}",
            list.warnings
        );
        // Without the map the header is refused, naming the way out.
        let e = parse_list("eksport.csv", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column map"), "{e}");
        // Bad dates and a missing mapped column are named.
        let bad = "Dokumentnr;Dato\nPOL-1;31.02.2018\nPOL-2;1.7.2018\nPOL-3;01.07.2018 25:00\n";
        let only = ListOptions::parse_map("message=Dokumentnr,at=Dato").unwrap();
        match parse_list_with("e.csv", bad.as_bytes(), &only).unwrap_err() {
            ListError::Rows { problems, .. } => {
                assert_eq!(lines(&problems), vec![2, 3, 4]);
            }
            other => panic!("{other}"),
        }
        let e = parse_list_with("e.csv", bad.as_bytes(), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `Saksnr` column (mapped to ref)"), "{e}");
        assert!(
            ListOptions::parse_map("to=Mottaker")
                .unwrap_err()
                .contains("not a field")
        );
        // Tabs and commas are sniffed too.
        let tabs = "message\tref\tat\nM1\tA1\t2023-01-02T09:00:00Z\n";
        assert_eq!(parse_list("t.csv", tabs.as_bytes()).unwrap().rows.len(), 1);
    }

    #[test]
    fn json_lines_are_strict() {
        let mut bytes = Vec::new();
        for line in [
            &br#"{"message":"M1","extra":"x"}"#[..],
            br#"{"message":5}"#,
            br#"["M1","A1",""]"#,
            br#"{"message":null,"ref":"A1"}"#,
            br#"{"message":"M1""#,
            br#"{}"#,
            br#"{"message":"M1","message":"M2"}"#,
            b"{\"message\":\"M\xFF\"}",
            br#"{"message":"","ref":""}"#,
            br#"{"message":"M1"} {"message":"M2"}"#,
            br#"{"message":"M1","at":"02/01/2023"}"#,
            br#"{"message":"M9"}"#,
        ] {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let bad = problems("r.ndjson", &bytes);
        assert_eq!(lines(&bad), (1..=11).collect::<Vec<u64>>());
        let reason = |line: u64| &bad[usize::try_from(line).unwrap() - 1].reason;
        assert!(reason(1).contains("unknown field `extra`"), "{}", reason(1));
        assert!(reason(1).contains("(column "), "{}", reason(1));
        assert!(!reason(1).contains("at line"), "{}", reason(1));
        assert!(reason(2).contains("expected a string"), "{}", reason(2));
        assert!(reason(3).contains("not a JSON object"), "{}", reason(3));
        assert!(reason(4).contains("null"), "{}", reason(4));
        assert!(reason(5).starts_with("invalid JSON"), "{}", reason(5));
        assert_eq!(reason(6), "message and ref are both empty");
        assert!(
            reason(7).contains("duplicate field `message`"),
            "{}",
            reason(7)
        );
        assert!(reason(8).contains("UTF-8"), "{}", reason(8));
        assert_eq!(reason(9), "message and ref are both empty");
        assert!(reason(10).starts_with("invalid JSON"), "{}", reason(10));
        assert!(reason(11).contains("RFC 3339"), "{}", reason(11));
    }

    #[test]
    fn empty_json_lines_file_is_an_empty_list() {
        assert_eq!(parse("r.jsonl", ""), ParsedList::default());
        assert_eq!(parse("r.jsonl", "\n  \n"), ParsedList::default());
    }

    #[test]
    fn format_is_chosen_by_extension_then_content() {
        // Unknown extension: sniffed.
        let list = parse("list.txt", "\u{feff}  \n{\"message\":\"M1\"}\n");
        assert_eq!(list.rows, vec![row(2, "M1", "")]);
        let list = parse("-", "message,ref,at\nM1,,\n");
        assert_eq!(list.rows, vec![row(2, "M1", "")]);
        // The extension wins over the content, in any case.
        assert_eq!(
            parse("R.NDJSON", "{\"ref\":\"A1\"}").rows,
            vec![row(1, "", "A1")]
        );
        assert_eq!(parse("dir.v2/R.JsonL", "{\"ref\":\"A1\"}").rows.len(), 1);
        let err = parse_list("list.CSV", b"{\"message\":\"M1\"}\n").unwrap_err();
        assert!(matches!(err, ListError::Header { .. }), "{err:?}");
        let err = parse_list("list.jsonl", b"message,ref,at\n").unwrap_err();
        assert!(matches!(err, ListError::Rows { .. }), "{err:?}");
    }

    // --- Comparison --------------------------------------------------------------

    #[test]
    fn a_clean_match_gives_no_rows() {
        let sent = [row(2, "M1", ""), row(3, "", "S2")];
        let received = [row(2, "", "A1"), row(3, "M2", "whatever")];
        let diffs = reconcile(&sent, &received, &ledger(), &[]);
        assert!(diffs.is_empty(), "{diffs:#?}");
        assert_eq!(summary(&diffs).map(|(_, n)| n), [0; 4]);
    }

    #[test]
    fn refs_match_under_any_key_and_after_an_unknown_message() {
        // `S2` is M2's second ref key; `X1` is unknown so the ref decides.
        let sent = [row(2, "X1", "S2")];
        let received = [row(7, "", "A2")];
        assert!(reconcile(&sent, &received, &ledger(), &[]).is_empty());
    }

    #[test]
    fn unmatched_rows_and_unreceived_messages() {
        let sent = [row(2, "M1", ""), row(3, "X1", "nope")];
        let received = [row(2, "Y1", "")];
        let diffs = reconcile(&sent, &received, &ledger(), &[]);
        assert_eq!(
            diffs,
            vec![
                Difference {
                    class: DiffClass::SentNotInLedger,
                    list: "sent",
                    line: Some(3),
                    message: "X1".into(),
                    r#ref: "nope".into(),
                    at: String::new(),
                    ledger_message: String::new(),
                    ledger_verdict: String::new(),
                },
                Difference {
                    class: DiffClass::InLedgerNotReceived,
                    list: "ledger",
                    line: None,
                    message: "M1".into(),
                    r#ref: "altinn=A1".into(),
                    at: T0.into(),
                    ledger_message: "M1".into(),
                    ledger_verdict: "completed".into(),
                },
                Difference {
                    class: DiffClass::ReceivedNotSent,
                    list: "received",
                    line: Some(2),
                    message: "Y1".into(),
                    r#ref: String::new(),
                    at: String::new(),
                    ledger_message: String::new(),
                    ledger_verdict: String::new(),
                },
            ]
        );
    }

    #[test]
    fn a_received_row_for_a_message_not_in_the_sent_list_is_not_a_difference() {
        // M1 is known, so the receiver's row matches a candidate; without filters M1 is
        // not in scope, so nothing is expected of it either.
        assert!(reconcile(&[], &[row(2, "M1", "")], &ledger(), &[]).is_empty());
    }

    #[test]
    fn an_ambiguous_ref_is_reported_and_counts_as_unmatched() {
        let sent = [ListRow {
            at: Some(T0.into()),
            ..row(4, "", "DUP")
        }];
        let diffs = reconcile(&sent, &[], &ledger(), &[]);
        assert_eq!(diffs.len(), 2, "{diffs:#?}");
        assert_eq!(diffs[0].class, DiffClass::SentNotInLedger);
        assert_eq!(diffs[0].ledger_message, "");
        assert_eq!(diffs[1].class, DiffClass::AmbiguousRef);
        assert_eq!(diffs[1].list, "sent");
        assert_eq!(diffs[1].line, Some(4));
        assert_eq!(diffs[1].r#ref, "DUP");
        assert_eq!(diffs[1].at, T0);
        assert_eq!(diffs[1].ledger_message, "M3;M4");
        assert_eq!(diffs[1].ledger_verdict, "");
        // Neither candidate entered the scope.
        assert!(diffs.iter().all(|d| d.list != "ledger"));
    }

    #[test]
    fn a_known_message_wins_over_an_ambiguous_ref() {
        let sent = [row(2, "M3", "DUP")];
        let received = [row(2, "M3", "")];
        assert!(reconcile(&sent, &received, &ledger(), &[]).is_empty());
    }

    #[test]
    fn filters_add_to_the_scope() {
        let scope = ["M5".to_owned(), "M2".to_owned(), "GHOST".to_owned()];
        let received = [row(9, "", "S2")];
        let diffs = reconcile(&[], &received, &ledger(), &scope);
        assert_eq!(diffs.len(), 1, "{diffs:#?}");
        let d = &diffs[0];
        assert_eq!(
            (d.class, d.list, d.line, d.message.as_str()),
            (DiffClass::InLedgerNotReceived, "ledger", None, "M5")
        );
        assert_eq!(d.r#ref, "");
        assert_eq!(d.at, T0);
        assert_eq!(d.ledger_verdict, "lost");
    }

    #[test]
    fn ledger_refs_are_sorted_key_value_pairs() {
        let diffs = reconcile(&[row(2, "M2", "")], &[], &ledger(), &[]);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].r#ref, "altinn=A2;sak=S2");
        assert_eq!(diffs[0].ledger_verdict, "open");
    }

    #[test]
    fn several_rows_may_match_one_message() {
        let sent = [row(2, "M1", ""), row(3, "", "A1")];
        let diffs = reconcile(&sent, &[], &ledger(), &[]);
        assert_eq!(diffs.len(), 1, "{diffs:#?}");
        assert_eq!(diffs[0].message, "M1");
    }

    #[test]
    fn differences_are_sorted_by_class_list_line_message() {
        let sent = [
            row(3, "X9", ""),
            row(2, "X8", ""),
            row(4, "M1", ""),
            row(5, "", "DUP"),
            row(2, "X7", ""),
        ];
        let received = [row(3, "", "DUP"), row(2, "Y1", "")];
        let scope = ["M2".to_owned()];
        let diffs = reconcile(&sent, &received, &ledger(), &scope);
        let got: Vec<(DiffClass, &str, Option<u64>, &str)> = diffs
            .iter()
            .map(|d| (d.class, d.list, d.line, d.message.as_str()))
            .collect();
        use DiffClass::*;
        assert_eq!(
            got,
            vec![
                (SentNotInLedger, "sent", Some(2), "X7"),
                (SentNotInLedger, "sent", Some(2), "X8"),
                (SentNotInLedger, "sent", Some(3), "X9"),
                (SentNotInLedger, "sent", Some(5), ""),
                (InLedgerNotReceived, "ledger", None, "M1"),
                (InLedgerNotReceived, "ledger", None, "M2"),
                (ReceivedNotSent, "received", Some(2), "Y1"),
                (ReceivedNotSent, "received", Some(3), ""),
                (AmbiguousRef, "sent", Some(5), ""),
                (AmbiguousRef, "received", Some(3), ""),
            ]
        );
        assert_eq!(
            summary(&diffs),
            [
                (SentNotInLedger, 4),
                (InLedgerNotReceived, 2),
                (ReceivedNotSent, 2),
                (AmbiguousRef, 2),
            ]
        );
    }

    #[test]
    fn parsed_lists_reconcile_end_to_end() {
        let sent = parse(
            "sent.csv",
            "\u{feff}ref,message,at,subject\n\
             A1,,2023-01-02T09:00:00Z,\"Hello, world\"\n\
             ,M2,,\n",
        );
        let received = parse(
            "received.jsonl",
            "{\"ref\":\"A1\"}\n\n{\"message\":\"Z\"}\n",
        );
        let diffs = reconcile(&sent.rows, &received.rows, &ledger(), &[]);
        let got: Vec<(DiffClass, Option<u64>, &str)> = diffs
            .iter()
            .map(|d| (d.class, d.line, d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (DiffClass::InLedgerNotReceived, None, "M2"),
                (DiffClass::ReceivedNotSent, Some(3), "Z"),
            ]
        );
    }

    #[test]
    fn differences_serialize_with_report_names() {
        let diffs = reconcile(&[row(2, "X1", "r")], &[], &ledger(), &["M5".to_owned()]);
        let v = serde_json::to_value(&diffs).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"class": "sent_not_in_ledger", "list": "sent", "line": 2, "message": "X1",
                 "ref": "r", "at": "", "ledger_message": "", "ledger_verdict": ""},
                {"class": "in_ledger_not_received", "list": "ledger", "line": null,
                 "message": "M5", "ref": "", "at": T0, "ledger_message": "M5",
                 "ledger_verdict": "lost"},
            ])
        );
    }

    #[test]
    fn class_names_match_serde() {
        for c in DiffClass::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        assert_eq!(ListKind::Sent.name(), "sent");
        assert_eq!(ListKind::Received.name(), "received");
    }
}
