//! The questions the projections answer: `status`, `report`, `stats`, `replay`,
//! `reconcile`. Glue only: the rules live in `ledger_core::projection`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ledger_core::projection::{
    self, AnomalyKind, AnomalyRow, Evaluation, Evaluator, Facts, Filter, GroupBy, Instant, Policy,
    Verdict,
};
use ledger_core::reconcile::{self, LedgerMessage, LedgerView};
use ledger_core::{Store, event};
use serde_json::{Value, json};

use crate::{InputError, output};

/// When to judge, and under which policy.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct When {
    /// Answer as the ledger knew it at this time: only entries recorded by then, and
    /// deadlines judged at then (a date, 2023-05-08 meaning 00:00 UTC, or an RFC 3339
    /// time).
    #[arg(long, value_name = "T", conflicts_with = "now")]
    pub as_of: Option<String>,
    /// Judge deadlines at this time instead of the clock, over all entries (what-if
    /// questions, and logs of past years appended today); a date or an RFC 3339 time.
    #[arg(long, value_name = "T")]
    pub now: Option<String>,
    /// Answer over exactly the entries a signed checkpoint covers (its size, as
    /// `ledger checkpoint` or a report's `checkpoint` shows it): anyone holding the
    /// log up to that checkpoint recomputes the same answer. Combine with --now to
    /// fix the judging time.
    #[arg(long, value_name = "SIZE", conflicts_with = "as_of")]
    pub at_checkpoint: Option<u64>,
    /// Deadline policy (TOML). Default: <dir>/policy.toml if present, else the
    /// built-in policy/default.toml.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// Which messages.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct Filters {
    /// Only messages from this organisation (org number).
    #[arg(long, value_name = "ORGNR")]
    pub from: Option<String>,
    /// Only messages to this organisation (org number).
    #[arg(long, value_name = "ORGNR")]
    pub to: Option<String>,
    /// Only messages this organisation sent or received (org number).
    #[arg(long, value_name = "ORGNR")]
    pub party: Option<String>,
    /// Only this category (bekymringsmelding, underretning, document, other).
    #[arg(long)]
    pub category: Option<String>,
    /// Only this channel (altinn, eformidling, fiks_io, portal, letter, email, api, other).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only messages sent at or after T: a date (2023-01-01, meaning 00:00 UTC that
    /// day) or an RFC 3339 time.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only messages sent before T (a date means 00:00 UTC that day, so
    /// `--until 2024-01-01` ends with 2023).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

/// Output format of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
    /// CSV for spreadsheets.
    Csv,
}

/// What every listing question takes: which messages, when, and how to print.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct Query {
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub when: When,
    /// table, json or csv (default: table, or json with --json).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

impl Query {
    fn format(&self, json: bool) -> Format {
        self.format
            .unwrap_or(if json { Format::Json } else { Format::Table })
    }
}

impl When {
    /// `--as-of` and `--now`, parsed.
    fn times(&self) -> Result<(Option<Instant>, Option<Instant>)> {
        let parse =
            |flag: &str, v: &Option<String>| v.as_deref().map(|s| time_arg(flag, s)).transpose();
        Ok((parse("--as-of", &self.as_of)?, parse("--now", &self.now)?))
    }
}

fn time_arg(flag: &str, s: &str) -> Result<Instant> {
    Instant::parse_input(s).map_err(|e| anyhow!(InputError(format!("{flag} {e}"))))
}

impl Filters {
    fn to_filter(&self) -> Result<Filter> {
        if let Some(c) = &self.category
            && !event::CATEGORIES.contains(&c.as_str())
        {
            return Err(anyhow!(InputError(format!(
                "--category {c:?} is not one of: {}",
                event::CATEGORIES.join(", ")
            ))));
        }
        if let Some(c) = &self.channel
            && !event::CHANNELS.contains(&c.as_str())
        {
            return Err(anyhow!(InputError(format!(
                "--channel {c:?} is not one of: {}",
                event::CHANNELS.join(", ")
            ))));
        }
        for (flag, org) in [
            ("--from", &self.from),
            ("--to", &self.to),
            ("--party", &self.party),
        ] {
            if let Some(o) = org {
                ledger_core::ids::check_orgnr(o)
                    .map_err(|e| anyhow!(InputError(format!("{flag} {o:?}: {e}"))))?;
            }
        }
        Ok(Filter {
            from: self.from.clone(),
            to: self.to.clone(),
            category: self.category.clone(),
            channel: self.channel.clone(),
            since: self
                .since
                .as_deref()
                .map(|s| time_arg("--since", s))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| time_arg("--until", s))
                .transpose()?,
            party: self.party.clone(),
        })
    }
}

/// The policy in force: --policy, else <dir>/policy.toml, else the built-in one.
pub(crate) fn load_policy(dir: &Path, flag: Option<&Path>) -> Result<(Policy, String)> {
    let (path, source) = match flag {
        Some(p) => (Some(p.to_path_buf()), p.display().to_string()),
        None => {
            let p = dir.join("policy.toml");
            if p.exists() {
                let shown = p.display().to_string();
                (Some(p), shown)
            } else {
                (None, "built-in default".to_string())
            }
        }
    };
    let policy = match path {
        None => Policy::default_policy(),
        Some(p) => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
            Policy::parse(&text)
                .map_err(|e| anyhow!(InputError(format!("{}: {e}", p.display()))))?
        }
    };
    Ok((policy, source))
}

/// Facts and the evaluation time for a question.
pub(crate) struct Basis {
    pub facts: Facts,
    pub now: Instant,
    pub as_of: Option<Instant>,
    pub policy: Policy,
    pub policy_source: String,
    /// The signed checkpoint the answer is tied to: the one it was computed over
    /// (`--at-checkpoint`), else the newest one within the entries it covers.
    pub checkpoint: Option<ledger_core::SignedCheckpoint>,
}

/// A Basis lives for one command of a process that exits right after; freeing a
/// million messages one allocation at a time would cost a sixth of a report, so the
/// facts are left to the process's exit.
impl Drop for Basis {
    fn drop(&mut self) {
        std::mem::forget(std::mem::take(&mut self.facts));
    }
}

impl Basis {
    pub fn evaluator(&self) -> Evaluator<'_> {
        Evaluator::new(&self.facts, &self.policy, self.now)
    }

    fn header(&self, store: &dyn Store) -> Value {
        let checkpoint = checkpoint_json(store, self.checkpoint.as_ref(), self.facts.covered());
        json!({
            "covered": self.facts.covered(),
            "checkpoint": checkpoint,
            "now": self.now,
            "as_of": self.as_of,
            "policy": self.policy_source,
            "policy_digest": hex::encode(self.policy.digest(store.info().hash)),
        })
    }

    /// The footer line of a table: what the answer was computed over.
    fn over(&self) -> String {
        let covered = self.facts.covered();
        match &self.checkpoint {
            Some(c) if c.size == covered => {
                format!("over {covered} entries (signed checkpoint {covered})")
            }
            Some(c) => format!(
                "over {covered} entries ({} after the signed checkpoint {}; `--at-checkpoint {}` answers over exactly it)",
                covered - c.size,
                c.size,
                c.size
            ),
            None => format!("over {covered} entries"),
        }
    }
}

/// A checkpoint as answers name it: origin, size, root, the signed note, and how many
/// of the `covered` entries came after it.
fn checkpoint_json(
    store: &dyn Store,
    cp: Option<&ledger_core::SignedCheckpoint>,
    covered: u64,
) -> Option<Value> {
    cp.map(|c| {
        let root = store
            .verifier_key()
            .verify(&c.note)
            .map(|p| hex::encode(p.root))
            .unwrap_or_default();
        json!({
            "origin": store.info().origin,
            "size": c.size,
            "root": root,
            "note": c.note,
            "entries_after": covered.saturating_sub(c.size),
        })
    })
}

/// The newest signed checkpoint within the first `covered` entries.
fn checkpoint_within(
    store: &dyn Store,
    covered: u64,
) -> Result<Option<ledger_core::SignedCheckpoint>> {
    let latest = store.latest_checkpoint()?;
    if latest.size <= covered {
        return Ok(Some(latest));
    }
    Ok(store
        .checkpoints(0, usize::MAX)?
        .into_iter()
        .rev()
        .find(|c| c.size <= covered))
}

/// Loads the persisted facts (caught up, and saved if they moved), or for --as-of
/// replays the prefix in memory, never touching the persisted projection.
pub(crate) fn basis(dir: &Path, store: &dyn Store, when: &When) -> Result<Basis> {
    let (policy, policy_source) = load_policy(dir, when.policy.as_deref())?;
    let (as_of, now_flag) = when.times()?;
    let bar = output::progress_count("projecting");
    let mut checkpoint = None;
    let facts = match (as_of, when.at_checkpoint) {
        (Some(t), _) => {
            let n = projection::prefix_at(store, t)?;
            bar.0.set_length(n);
            projection::replay(store, n, &mut |k| bar.0.set_position(k))?
        }
        (None, Some(n)) => {
            let cp = store
                .checkpoints(n, 1)?
                .into_iter()
                .find(|c| c.size == n)
                .ok_or_else(|| {
                    anyhow!(InputError(format!(
                        "--at-checkpoint {n}: no checkpoint was signed at size {n} (`ledger checkpoint` \
                         shows the newest; a report's `checkpoint.size` names one)"
                    )))
                })?;
            checkpoint = Some(cp);
            bar.0.set_length(n);
            projection::replay(store, n, &mut |k| bar.0.set_position(k))?
        }
        (None, None) => head_facts(dir, store, &bar)?,
    };
    bar.0.finish_and_clear();
    if checkpoint.is_none() {
        // The newest signed state within what the answer covers.
        checkpoint = checkpoint_within(store, facts.covered())?;
    }
    Ok(Basis {
        facts,
        now: as_of.or(now_flag).unwrap_or_else(Instant::now),
        as_of,
        policy,
        policy_source,
        checkpoint,
    })
}

fn head_facts(dir: &Path, store: &dyn Store, bar: &output::Bar) -> Result<Facts> {
    bar.0.set_length(store.size());
    let (facts, report) = projection::load_or_rebuild(dir, store, &mut |k| bar.0.set_position(k))?;
    if let Some(why) = &report.rebuilt_because {
        eprintln!(
            "warning: the persisted projection ({}) was not used: {why}; rebuilt it from the log",
            projection::FILE_NAME
        );
    }
    if (report.applied > 0 || report.rebuilt_because.is_some())
        && let Err(e) = projection::save(dir, store, &facts)
    {
        eprintln!("warning: could not persist the projection: {e}");
    }
    Ok(facts)
}

fn short(t: Option<Instant>) -> String {
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

/// The columns of an anomaly report (the JSON fields of a row, in order).
pub(crate) const ANOMALY_COLUMNS: [&str; 9] = [
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

/// The columns of a verdict report, as table and CSV headers.
pub(crate) const REPORT_COLUMNS: [&str; 14] = [
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

fn report_cells(e: &Evaluation) -> [String; 14] {
    let o = |v: &Option<&str>| v.unwrap_or_default().to_string();
    let bare = |v: &Option<&str>| {
        v.map(|k| ledger_core::event::split_message_key(k).1)
            .unwrap_or_default()
            .to_string()
    };
    [
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
        bare(&e.via),
        bare(&e.resent_to),
        (e.recorded_anomalies + e.evaluated_anomalies.len()).to_string(),
        o(&e.resolved_by),
    ]
}

pub(crate) fn print_rows(format: Format, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for r in rows {
                w.write_record(r)?;
            }
            w.flush()?;
        }
        _ => {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(header);
            for r in rows {
                t.add_row(r);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

/// What `ledger report` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportKind {
    /// Expired, deleted or failed unopened, and no resend opened.
    Lost,
    /// A deadline passed without its event, or expiry is near.
    AtRisk,
    /// Opened or acknowledged after the deadline.
    Late,
    /// Handed off between systems and never received.
    Stuck,
    /// Every anomaly: odd stories, unknown messages, reporter gaps.
    Anomalies,
    /// In flight within deadlines.
    Open,
    /// Opened (and acknowledged) in time.
    Completed,
    /// Closed by a `resolved` event.
    Resolved,
}

impl ReportKind {
    /// The name in `GET /v1/reports/{kind}`.
    pub(crate) fn path_name(self) -> &'static str {
        match self {
            ReportKind::Lost => "lost",
            ReportKind::AtRisk => "at-risk",
            ReportKind::Late => "late",
            ReportKind::Stuck => "stuck",
            ReportKind::Anomalies => "anomalies",
            ReportKind::Open => "open",
            ReportKind::Completed => "completed",
            ReportKind::Resolved => "resolved",
        }
    }
}

pub(crate) fn report(
    dir: &Path,
    store: &dyn Store,
    kind: ReportKind,
    anomaly_kind: Option<&str>,
    query: &Query,
    as_json: bool,
) -> Result<u8> {
    let (when, format) = (&query.when, query.format(as_json));
    let filter = query.filters.to_filter()?;
    let anomaly_kind = anomaly_kind
        .map(|k| {
            AnomalyKind::from_name(k).ok_or_else(|| {
                let names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
                anyhow!(InputError(format!(
                    "--kind {k:?} is not one of: {}",
                    names.join(", ")
                )))
            })
        })
        .transpose()?;
    let b = basis(dir, store, when)?;
    let eval = b.evaluator();
    if kind == ReportKind::Anomalies {
        let rows = projection::anomaly_rows(&eval, &filter, anomaly_kind);
        return print_anomalies(store, &b, rows, format);
    }
    if anomaly_kind.is_some() {
        return Err(anyhow!(InputError(
            "--kind applies to `report anomalies` only".into()
        )));
    }
    let verdict = match kind {
        ReportKind::Lost => Verdict::Lost,
        ReportKind::AtRisk => Verdict::AtRisk,
        ReportKind::Late => Verdict::Late,
        ReportKind::Stuck => Verdict::StuckInHandoff,
        ReportKind::Open => Verdict::Open,
        ReportKind::Completed => Verdict::Completed,
        ReportKind::Resolved => Verdict::Resolved,
        ReportKind::Anomalies => unreachable!("handled above"),
    };
    let rows = projection::report(&eval, &[verdict], &filter);
    if format == Format::Json {
        let mut v = b.header(store);
        v["verdict"] = json!(verdict.name());
        v["count"] = json!(rows.len());
        v["messages"] = serde_json::to_value(&rows)?;
        output::json(&v)?;
        return Ok(0);
    }
    let count = rows.len();
    print_rows(
        format,
        &REPORT_COLUMNS,
        rows.iter().map(|e| report_cells(e).to_vec()).collect(),
    )?;
    if format == Format::Table {
        eprintln!(
            "{count} {} message(s), judged at {} under the {} policy, {}",
            verdict.name(),
            short(Some(b.now)),
            b.policy_source,
            b.over()
        );
    }
    Ok(0)
}

fn print_anomalies(
    store: &dyn Store,
    b: &Basis,
    rows: Vec<AnomalyRow>,
    format: Format,
) -> Result<u8> {
    if format == Format::Json {
        let mut v = b.header(store);
        v["count"] = json!(rows.len());
        v["anomalies"] = serde_json::to_value(&rows)?;
        output::json(&v)?;
        return Ok(0);
    }
    let header = ANOMALY_COLUMNS;
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    let count = rows.len();
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.name().to_string(),
                r.message
                    .as_deref()
                    .map(|k| ledger_core::event::split_message_key(k).1.to_string())
                    .unwrap_or_default(),
                o(&r.org),
                o(&r.system),
                r.seq.to_string(),
                n(r.other_seq),
                o(&r.detail),
                n(r.from),
                n(r.to),
            ]
        })
        .collect();
    print_rows(format, &header, cells)?;
    if format == Format::Table {
        eprintln!("{count} anomalies");
    }
    Ok(0)
}

/// How `ledger stats` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum By {
    /// Sender organisation.
    From,
    /// Recipient organisation.
    To,
    /// Channel.
    Channel,
    /// Category.
    Category,
    /// Month the message was sent (UTC).
    Month,
}

pub(crate) fn stats(
    dir: &Path,
    store: &dyn Store,
    by: Option<By>,
    query: &Query,
    as_json: bool,
) -> Result<u8> {
    let (when, format) = (&query.when, query.format(as_json));
    let filter = query.filters.to_filter()?;
    let b = basis(dir, store, when)?;
    let group = match by {
        None => GroupBy::All,
        Some(By::From) => GroupBy::From,
        Some(By::To) => GroupBy::To,
        Some(By::Channel) => GroupBy::Channel,
        Some(By::Category) => GroupBy::Category,
        Some(By::Month) => GroupBy::Month,
    };
    let rows = projection::stats(&b.evaluator(), group, &filter);
    if format == Format::Json {
        let mut v = b.header(store);
        v["by"] = json!(by.map(|b| format!("{b:?}").to_lowercase()));
        v["groups"] = serde_json::to_value(&rows)?;
        output::json(&v)?;
        return Ok(0);
    }
    let mut header = vec!["group", "total"];
    header.extend(Verdict::ALL.iter().map(|v| v.name()));
    header.push("with_anomalies");
    let cells = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.group.clone(), r.total.to_string()];
            c.extend(
                Verdict::ALL
                    .iter()
                    .map(|v| r.verdicts[v.name()].to_string()),
            );
            c.push(r.with_anomalies.to_string());
            c
        })
        .collect();
    print_rows(format, &header, cells)?;
    Ok(0)
}

/// The one message a reader names: a bare id, or `FROM/TO/ID` where organisations
/// use the same id (format 2). Several candidates are an error that names them.
pub(crate) fn resolve_message(store: &dyn Store, name: &str) -> Result<String> {
    let keys = projection::find_messages(store, name)?;
    match keys.len() {
        0 => Err(anyhow!(InputError(format!(
            "no event names message {name:?}"
        )))),
        1 => Ok(keys.into_iter().next().expect("one")),
        n => {
            let names: Vec<String> = keys.iter().map(|k| path_of(k)).collect();
            Err(anyhow!(InputError(format!(
                "{n} messages have the id {name:?}; name one as FROM/TO/ID: {}",
                names.join(", ")
            ))))
        }
    }
}

/// A message key's bare id (a resend family shares its parties, so within one
/// message's answer the bare ids of its relatives are unambiguous).
fn bare_of(key: &str) -> &str {
    ledger_core::event::split_message_key(key).1
}

/// How a reader names a message key: `FROM/TO/ID` (format 2) or its id (format 1).
pub(crate) fn path_of(key: &str) -> String {
    match ledger_core::event::split_message_key(key) {
        (Some((f, t)), id) => format!("{f}/{t}/{id}"),
        (None, id) => id.to_string(),
    }
}

pub(crate) fn status(
    dir: &Path,
    store: &dyn Store,
    name: &str,
    when: &When,
    as_json: bool,
) -> Result<u8> {
    let key = resolve_message(store, name)?;
    let message = key.as_str();
    let (policy, policy_source) = load_policy(dir, when.policy.as_deref())?;
    let (as_of, now_flag) = when.times()?;
    let now = as_of.or(now_flag).unwrap_or_else(Instant::now);
    let upto = match (as_of, when.at_checkpoint) {
        (Some(t), _) => projection::prefix_at(store, t)?,
        (None, Some(n)) => {
            if store.checkpoint_at(n)?.is_none() {
                return Err(anyhow!(InputError(format!(
                    "--at-checkpoint {n}: no checkpoint was signed at size {n}"
                ))));
            }
            n
        }
        (None, None) => store.size(),
    };
    let Some(facts) = projection::family_facts(store, message, upto)? else {
        let when_note = as_of
            .map(|t| format!(" as of {}", short(Some(t))))
            .unwrap_or_default();
        return Err(anyhow!(InputError(format!(
            "no event names message {name:?}{when_note}"
        ))));
    };
    let eval = Evaluator::new(&facts, &policy, now);
    let e = eval
        .evaluate(message)
        .ok_or_else(|| anyhow!(InputError(format!("no event names message {name:?}"))))?;
    let m = facts.message(message).expect("evaluated");
    let seqs: Vec<u64> = store
        .message_seqs(message)?
        .into_iter()
        .filter(|&s| s < upto)
        .collect();
    let history = output::history_rows(store, &seqs)?;
    if as_json {
        output::json(&json!({
            "message": e.id(),
            "from": e.from,
            "to": e.to,
            "covered": upto,
            "checkpoint": checkpoint_json(store, checkpoint_within(store, upto)?.as_ref(), upto),
            "now": now,
            "as_of": as_of,
            "policy": policy_source,
            "policy_digest": hex::encode(policy.digest(store.info().hash)),
            "status": m.status().name(),
            "evaluation": e,
            "facts": m,
            "history": output::history_json(&history),
        }))?;
        return Ok(0);
    }
    let o = |v: &Option<&str>| v.unwrap_or("-").to_string();
    println!("message    {}", e.id());
    println!(
        "verdict    {} ({}){}",
        e.verdict.name(),
        e.reason,
        e.due
            .map(|d| format!(", due {}", short(Some(d))))
            .unwrap_or_default()
    );
    println!("status     {}", m.status().name());
    println!(
        "sent       {} {} → {} via {} ({})",
        if e.origin_at.is_some() {
            short(e.origin_at)
        } else {
            "never (unknown message)".into()
        },
        o(&e.from),
        o(&e.to),
        o(&e.channel),
        o(&e.category)
    );
    if let Some(l) = &m.resent_from {
        println!(
            "resent of  {} at {}",
            path_of(&l.message),
            short(Some(l.at))
        );
    }
    for l in &m.resent_to {
        println!(
            "resent as  {} at {} via {}",
            bare_of(&l.message),
            short(Some(l.at)),
            l.channel
        );
    }
    if let Some(t) = e.opened_at {
        let via = e
            .via
            .as_ref()
            .map(|v| format!(" (via {})", bare_of(v)))
            .unwrap_or_default();
        println!("opened     {}{via}", short(Some(t)));
    }
    if let Some(x) = e.expires_at {
        let src = match e.expires_source {
            Some(projection::ExpirySource::Event) => "sent event",
            _ => "policy",
        };
        println!("expires    {} ({src})", short(Some(x)));
    }
    println!(
        "judged at  {}{} under the {policy_source} policy",
        short(Some(now)),
        if as_of.is_some() {
            " (as of: entries recorded by then)"
        } else {
            ""
        }
    );
    if !e.deadlines.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["deadline", "due", "state", "met at"]);
        for d in &e.deadlines {
            let kind = match d.hop_seq {
                Some(s) => format!("handoff_receive (hop at seq {s})"),
                None => serde_json::to_value(d.kind)?
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            };
            let state = serde_json::to_value(d.state)?
                .as_str()
                .unwrap_or("")
                .to_string();
            t.add_row([kind, short(Some(d.due)), state, short(d.at)]);
        }
        println!("{t}");
    }
    if !m.anomalies.is_empty() || !e.evaluated_anomalies.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["anomaly", "seq", "other seq", "detail"]);
        for a in &m.anomalies {
            t.add_row([
                a.kind.name().to_string(),
                a.seq.to_string(),
                a.other_seq.map(|s| s.to_string()).unwrap_or_default(),
                a.detail.clone().unwrap_or_default(),
            ]);
        }
        for (k, seq) in &e.evaluated_anomalies {
            t.add_row([
                k.name().to_string(),
                seq.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        println!("{t}");
    }
    println!("{}", output::history_table(&history));
    Ok(0)
}

pub(crate) fn replay(
    dir: &Path,
    store: &dyn Store,
    verify: bool,
    when: &When,
    as_json: bool,
) -> Result<u8> {
    let (policy, policy_source) = load_policy(dir, when.policy.as_deref())?;
    if when.as_of.is_some() || when.at_checkpoint.is_some() {
        return Err(anyhow!(InputError(
            "replay rebuilds the head projection; use --now T to choose the evaluation time".into()
        )));
    }
    let size = store.size();
    let bar = output::progress_count("replaying");
    bar.0.set_length(size);
    let started = std::time::Instant::now();
    let facts = projection::replay(store, size, &mut |k| bar.0.set_position(k))?;
    let elapsed = started.elapsed();
    bar.0.finish_and_clear();
    let now = match when.times()?.1 {
        Some(t) => t,
        None => projection::recorded_at_before(store, size)?,
    };
    let alg = store.info().hash;
    let eval = Evaluator::new(&facts, &policy, now);
    let digests = projection::evaluation_digest(&eval, &policy, alg);
    let mut differs = None;
    if verify {
        let (persisted, report) = projection::load_or_rebuild(dir, store, &mut |_| {})?;
        if let Some(why) = report.rebuilt_because {
            differs = Some(format!("the persisted projection is unusable: {why}"));
        } else if report.loaded == 0 && size > 0 {
            differs = Some("there is no persisted projection to compare".into());
        } else if persisted != facts {
            let first = first_difference(&facts, &persisted);
            differs = Some(format!(
                "the persisted projection (caught up from {} entries) differs from a fresh replay{first}",
                report.loaded
            ));
        }
    } else {
        projection::save(dir, store, &facts)?;
    }
    let rate = size as f64 / elapsed.as_secs_f64().max(1e-9);
    if as_json {
        output::json(&json!({
            "covered": facts.covered(),
            "messages": facts.message_count(),
            "seconds": elapsed.as_secs_f64(),
            "events_per_second": rate.round(),
            "now": now,
            "policy": policy_source,
            "facts_digest": hex::encode(digests.facts),
            "policy_digest": hex::encode(digests.policy),
            "projection_digest": hex::encode(digests.evaluation),
            "verified": verify.then_some(differs.is_none()),
            "difference": differs,
        }))?;
    } else {
        println!(
            "replayed {} entries ({} messages) in {:.2} s ({:.0} events/s)",
            facts.covered(),
            facts.message_count(),
            elapsed.as_secs_f64(),
            rate
        );
        println!("facts digest       {}", hex::encode(digests.facts));
        println!(
            "policy digest      {} ({policy_source})",
            hex::encode(digests.policy)
        );
        println!("evaluated at       {}", now);
        println!("projection digest  {}", hex::encode(digests.evaluation));
        match (&differs, verify) {
            (None, true) => println!("verified: the persisted projection equals a fresh replay"),
            (Some(d), _) => println!("MISMATCH: {d}"),
            (None, false) => println!("saved to {}", dir.join(projection::FILE_NAME).display()),
        }
    }
    Ok(if differs.is_some() {
        crate::EXIT_FAULTS
    } else {
        0
    })
}

fn first_difference(a: &Facts, b: &Facts) -> String {
    let mut ids: Vec<&str> = a.messages().map(|(k, _)| k).collect();
    ids.extend(b.messages().map(|(k, _)| k));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if a.message(id) != b.message(id) {
            return format!("; first at message {id:?}");
        }
    }
    if !a.streams().eq(b.streams()) {
        return "; in the reporter streams".into();
    }
    String::new()
}

/// The projection as reconcile sees it.
pub(crate) struct View<'a> {
    eval: Evaluator<'a>,
    by_ref: std::collections::HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> View<'a> {
    pub(crate) fn new(eval: Evaluator<'a>) -> View<'a> {
        let mut by_ref: std::collections::HashMap<&str, Vec<&str>> = Default::default();
        for (key, m) in eval.facts().messages() {
            if let Some(s) = &m.sent {
                for v in s.refs.values() {
                    by_ref.entry(v).or_default().push(key);
                }
            }
        }
        for v in by_ref.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        View { eval, by_ref }
    }
}

impl View<'_> {
    /// The key of a message as reconcile names it ([`path_of`]).
    fn key_of(&self, name: &str) -> Option<&str> {
        self.eval
            .facts()
            .find(name)
            .into_iter()
            .find(|k| path_of(k) == name)
    }
}

/// Reconcile names messages as readers do ([`path_of`]): a format-1 message by its
/// id, a format-2 message as FROM/TO/ID; a list row's bare id names every message
/// of that id.
impl LedgerView for View<'_> {
    fn is_known(&self, message: &str) -> bool {
        self.key_of(message)
            .and_then(|k| self.eval.facts().message(k))
            .is_some_and(|m| m.is_known())
    }
    fn named(&self, message: &str) -> Vec<String> {
        let facts = self.eval.facts();
        facts
            .find(message)
            .into_iter()
            .filter(|k| facts.message(k).is_some_and(|m| m.is_known()))
            .map(path_of)
            .collect()
    }
    fn messages_with_ref(&self, r: &str) -> Vec<String> {
        self.by_ref
            .get(r)
            .map(|v| v.iter().map(|k| path_of(k)).collect())
            .unwrap_or_default()
    }
    fn describe(&self, name: &str) -> Option<LedgerMessage> {
        let message = self.key_of(name)?;
        let m = self.eval.facts().message(message)?;
        let e = self.eval.evaluate(message)?;
        Some(LedgerMessage {
            refs: m
                .sent
                .as_ref()
                .map(|s| {
                    s.refs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            origin_at: e.origin_at.map(|t| short(Some(t))),
            verdict: e.verdict.name().to_string(),
        })
    }
}

/// A list to read, and how (its column map).
pub(crate) type ListSource<'a> = (&'a Path, reconcile::ListOptions);

pub(crate) fn reconcile(
    dir: &Path,
    store: &dyn Store,
    (sent, received): (ListSource<'_>, ListSource<'_>),
    query: &Query,
    as_json: bool,
) -> Result<u8> {
    let (when, format) = (&query.when, query.format(as_json));
    let filter = query.filters.to_filter()?;
    let read = |(p, opts): &ListSource<'_>| -> Result<reconcile::ParsedList> {
        let bytes = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
        let list = reconcile::parse_list_with(&p.display().to_string(), &bytes, opts)
            .map_err(|e| anyhow!(InputError(e.to_string())))?;
        for w in &list.warnings {
            eprintln!("warning: {w}");
        }
        Ok(list)
    };
    let sent_list = read(&sent)?;
    let received_list = read(&received)?;
    let b = basis(dir, store, when)?;
    let eval = b.evaluator();
    let scope: Vec<String> = if filter.is_empty() {
        Vec::new()
    } else {
        eval.evaluate_all()
            .filter(|e| e.origin_at.is_some() && filter.matches(e))
            .map(|e| path_of(e.message))
            .collect()
    };
    let view = View::new(b.evaluator());
    let diffs = reconcile::reconcile(&sent_list.rows, &received_list.rows, &view, &scope);
    let summary = reconcile::summary(&diffs);
    if format == Format::Json {
        let mut v = b.header(store);
        v["summary"] = json!(
            summary
                .iter()
                .map(|(c, n)| (c.name().to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
        );
        v["differences"] = serde_json::to_value(&diffs)?;
        output::json(&v)?;
    } else {
        let header = [
            "class",
            "list",
            "line",
            "message",
            "ref",
            "at",
            "ledger_message",
            "ledger_verdict",
        ];
        let cells = diffs
            .iter()
            .map(|d| {
                vec![
                    d.class.name().to_string(),
                    d.list.to_string(),
                    d.line.map(|l| l.to_string()).unwrap_or_default(),
                    d.message.clone(),
                    d.r#ref.clone(),
                    d.at.clone(),
                    d.ledger_message.clone(),
                    d.ledger_verdict.clone(),
                ]
            })
            .collect();
        print_rows(format, &header, cells)?;
        if format == Format::Table {
            let parts: Vec<String> = summary
                .iter()
                .map(|(c, n)| format!("{n} {}", c.name()))
                .collect();
            eprintln!("{}", parts.join(", "));
        }
    }
    Ok(if diffs.is_empty() {
        0
    } else {
        crate::EXIT_FAULTS
    })
}
