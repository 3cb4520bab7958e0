//! A report's rows as cells: the columns that `ledger report`'s table and CSV and
//! the API's CSV (`GET /v1/reports/{kind}?format=csv`, the console's export) share,
//! so the same question gives the same file whoever asks.

use crate::projection::{AnomalyRow, Evaluation, IncidentRow, Instant};
use crate::questions::{LateEntry, Rows};

/// The columns of a verdict report.
pub const REPORT_COLUMNS: [&str; 14] = [
    "message",
    "verdict",
    "reason",
    "category",
    "channel",
    "from",
    "to",
    "sent_at",
    "due",
    "opened_at",
    "via",
    "resent_to",
    "anomalies",
    "resolved_by",
];

/// The columns of an incident report.
pub const INCIDENT_COLUMNS: [&str; 14] = [
    "message", "kind", "cause", "began_at", "ended_by", "ended_at", "via", "evidence", "verdict",
    "category", "channel", "from", "to", "sent_at",
];

/// The columns of the reported-late finding.
pub const LATE_COLUMNS: [&str; 9] = [
    "seq",
    "message",
    "from",
    "to",
    "type",
    "at",
    "recorded_at",
    "delay_seconds",
    "reporter",
];

/// The columns of an anomaly report (the JSON fields of a row, in order).
pub const ANOMALY_COLUMNS: [&str; 9] = [
    "kind",
    "message",
    "org",
    "system",
    "seq",
    "other_seq",
    "detail",
    "from",
    "to",
];

/// Rows as cells, organisation numbers as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Column names.
    pub header: Vec<&'static str>,
    /// One vector of cells per row.
    pub rows: Vec<Vec<String>>,
    /// The columns holding organisation numbers (a table view labels them with names).
    pub org_columns: Vec<usize>,
    /// Whether the CSV adds `from_name` and `to_name` (the names of the first two
    /// `org_columns`) at the end, so scripts keep their column positions.
    pub csv_names: bool,
}

/// A time as the tables show it: RFC 3339, without zero nanoseconds.
pub fn short(t: Option<Instant>) -> String {
    match t {
        None => String::new(),
        Some(t) => {
            let s = t.to_string();
            match s.strip_suffix(".000000000Z") {
                Some(whole) => format!("{whole}Z"),
                None => s,
            }
        }
    }
}

fn bare(key: &str) -> &str {
    crate::event::split_message_key(key).1
}

fn report_cells(e: &Evaluation) -> Vec<String> {
    let o = |v: &Option<&str>| v.unwrap_or_default().to_string();
    let b = |v: &Option<&str>| v.map(bare).unwrap_or_default().to_string();
    vec![
        e.id().to_string(),
        e.verdict.name().to_string(),
        e.reason.to_string(),
        o(&e.category),
        o(&e.channel),
        o(&e.from),
        o(&e.to),
        short(e.origin_at),
        short(e.due),
        short(e.opened_at),
        b(&e.via),
        b(&e.resent_to),
        (e.recorded_anomalies + e.evaluated_anomalies.len()).to_string(),
        o(&e.resolved_by),
    ]
}

fn incident_cells(r: &IncidentRow) -> Vec<String> {
    let o = |v: &Option<&str>| v.unwrap_or_default().to_string();
    let i = &r.incident;
    vec![
        bare(r.message).to_string(),
        i.kind.name().to_string(),
        o(&i.cause),
        short(Some(i.began_at)),
        i.ended_by.unwrap_or("(open)").to_string(),
        short(i.ended_at),
        i.via.map(bare).unwrap_or_default().to_string(),
        i.evidence
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        r.verdict.name().to_string(),
        o(&r.category),
        o(&r.channel),
        o(&r.from),
        o(&r.to),
        short(r.sent_at),
    ]
}

fn late_cells(r: &LateEntry) -> Vec<String> {
    vec![
        r.seq.to_string(),
        r.message.clone(),
        r.from.clone().unwrap_or_default(),
        r.to.clone().unwrap_or_default(),
        r.kind.name().to_string(),
        short(Some(r.at)),
        short(Some(r.recorded_at)),
        r.delay_seconds.to_string(),
        format!("{}/{}", r.reporter_org, r.reporter_system),
    ]
}

fn anomaly_cells(r: &AnomalyRow) -> Vec<String> {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    vec![
        r.kind.name().to_string(),
        r.message
            .as_deref()
            .map(bare)
            .unwrap_or_default()
            .to_string(),
        o(&r.org),
        o(&r.system),
        r.seq.to_string(),
        n(r.other_seq),
        o(&r.detail),
        n(r.from),
        n(r.to),
    ]
}

impl Table {
    /// The cells of a report's rows.
    pub fn of(rows: &Rows<'_>) -> Table {
        let (header, rows, org_columns, csv_names): (&[&'static str], Vec<Vec<String>>, _, _) =
            match rows {
                Rows::Messages(r) => (
                    &REPORT_COLUMNS,
                    r.iter().map(report_cells).collect(),
                    vec![5, 6],
                    true,
                ),
                Rows::Incidents(r) => (
                    &INCIDENT_COLUMNS,
                    r.iter().map(incident_cells).collect(),
                    vec![11, 12],
                    true,
                ),
                Rows::Entries(r) => (
                    &LATE_COLUMNS,
                    r.iter().map(late_cells).collect(),
                    vec![2, 3],
                    true,
                ),
                Rows::Anomalies(r) => (
                    &ANOMALY_COLUMNS,
                    r.iter().map(anomaly_cells).collect(),
                    vec![2],
                    false,
                ),
            };
        Table {
            header: header.to_vec(),
            rows,
            org_columns,
            csv_names,
        }
    }

    /// The rows as CSV (RFC 4180, a header line first), with the organisations'
    /// names from `name` at the end where [`Table::csv_names`] says.
    pub fn to_csv(&self, name: impl Fn(&str) -> Option<String>) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = self.header.clone();
        if self.csv_names {
            header.extend(["from_name", "to_name"]);
        }
        w.write_record(&header).expect("CSV into memory");
        for r in &self.rows {
            let mut cells = r.clone();
            if self.csv_names {
                for &c in &self.org_columns[..2] {
                    cells.push(name(&r[c]).unwrap_or_default());
                }
            }
            w.write_record(&cells).expect("CSV into memory");
        }
        String::from_utf8(w.into_inner().expect("CSV into memory")).expect("UTF-8 cells")
    }
}
