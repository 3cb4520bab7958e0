//! The questions the projections answer: `status`, `report`, `stats`, `replay`,
//! `reconcile`. Glue only: the rules live in `ledger_core::projection`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::borrow::Cow;

use ledger_core::Store;
use ledger_core::directory::Directory;
use ledger_core::projection::{
    self, Evaluator, Facts, Filter, IncidentKind, Instant, Policy, Verdict,
};
use ledger_core::questions::{
    self, Basis, Header, QuestionError, ReportKind, ReportOptions, Timing,
};
use ledger_core::reconcile;
use serde_json::json;

use crate::{InputError, output};

/// When to judge, and under which policy.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct When {
    /// How it stood at T (event time): only events that happened by T, judged at T.
    /// A date (2023-05-08, meaning 00:00 UTC) or an RFC 3339 time.
    #[arg(long, value_name = "T", conflicts_with = "now")]
    pub as_of: Option<String>,
    /// What the ledger knew at T (record time): only entries recorded by T; judged at
    /// T unless --as-of or --now says otherwise. Combine with --as-of for "how it
    /// stood at one time, as the ledger knew it at another".
    #[arg(long, value_name = "T", conflicts_with = "at_checkpoint")]
    pub known_at: Option<String>,
    /// Judge deadlines at this time instead of the clock (what-if questions); a
    /// date or an RFC 3339 time. Events are not cut at it: that is --as-of.
    #[arg(long, value_name = "T")]
    pub now: Option<String>,
    /// Answer over exactly the entries a signed checkpoint covers (its size, as
    /// `ledger checkpoint` or a report's `checkpoint` shows it): anyone holding the
    /// log up to that checkpoint recomputes the same answer. Combine with --now to
    /// fix the judging time.
    #[arg(long, value_name = "SIZE")]
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

/// A question's error as the command line names it: `--since "x": …`.
pub(crate) fn input_error(e: QuestionError) -> anyhow::Error {
    match e {
        QuestionError::BadParameter { name, reason } => {
            anyhow!(InputError(format!("--{} {reason}", name.replace('_', "-"))))
        }
        QuestionError::NoCheckpoint(n) => anyhow!(InputError(format!(
            "--at-checkpoint {n}: no checkpoint was signed at size {n} (`ledger checkpoint` \
             shows the newest; a report's `checkpoint.size` names one)"
        ))),
        other => anyhow!(other),
    }
}

impl When {
    pub(crate) fn timing(&self) -> Result<Timing> {
        questions::When {
            as_of: self.as_of.clone(),
            known_at: self.known_at.clone(),
            now: self.now.clone(),
            at_checkpoint: self.at_checkpoint,
        }
        .timing()
        .map_err(input_error)
    }
}

impl Filters {
    pub(crate) fn which(&self) -> questions::Which {
        questions::Which {
            from: self.from.clone(),
            to: self.to.clone(),
            party: self.party.clone(),
            category: self.category.clone(),
            channel: self.channel.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }

    fn to_filter(&self, names: &Directory) -> Result<Filter> {
        self.which().filter_in(names).map_err(input_error)
    }
}

/// The policy in force: --policy, else <dir>/policy.toml, else the built-in one.
pub(crate) fn load_policy(dir: &Path, flag: Option<&Path>) -> Result<(Policy, String)> {
    let (path, source) = match flag {
        Some(p) => (Some(p.to_path_buf()), p.display().to_string()),
        None => {
            let p = dir.join("policy.toml");
            if p.exists() {
                // Named as the server names it, so answers are the same documents.
                (Some(p), "policy.toml".to_string())
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

/// The policy a command judges under and the names it shows, owned for the
/// command's life.
pub(crate) struct Judge {
    pub policy: Policy,
    pub source: String,
    pub names: Directory,
}

impl Judge {
    pub(crate) fn load(dir: &Path, when: &When) -> Result<Judge> {
        let (policy, source) = load_policy(dir, when.policy.as_deref())?;
        let names = Directory::load(dir).map_err(|e| anyhow!(InputError(e.to_string())))?;
        Ok(Judge {
            policy,
            source,
            names,
        })
    }

    /// How a table shows an organisation: its name and number, or the number alone.
    fn label(&self, number: Option<&str>) -> String {
        match number {
            None => String::new(),
            Some(n) => match self.names.name(n) {
                Some(name) => format!("{name} ({n})"),
                None => n.to_string(),
            },
        }
    }
}

/// The facts and time a question is answered over: the persisted head projection
/// (caught up, and saved if it moved), or a replay in memory for --as-of,
/// --known-at and --at-checkpoint, never touching the persisted projection.
pub(crate) fn basis<'a>(
    dir: &Path,
    store: &dyn Store,
    when: &When,
    judge: &'a Judge,
) -> Result<Basis<'a>> {
    let timing = when.timing()?;
    let bar = output::progress_count("projecting");
    let size = store.size();
    bar.0.set_length(size);
    let b = Basis::new(
        store,
        timing,
        &judge.policy,
        &judge.source,
        || {
            head_facts(dir, store, &bar)
                .map(Cow::Owned)
                .map_err(|e| QuestionError::BadParameter {
                    name: "dir",
                    reason: format!("{e:#}"),
                })
        },
        &mut |k| bar.0.set_position(k),
    )
    .map_err(input_error)?
    .named(&judge.names);
    bar.0.finish_and_clear();
    Ok(b)
}

/// A basis lives for one command of a process that exits right after; freeing a
/// million messages one allocation at a time would cost a sixth of a report, so the
/// facts are left to the process's exit.
fn leave(b: Basis<'_>) {
    std::mem::forget(b);
}

/// The footer line of a table: what the answer was computed over.
fn over(h: &Header) -> String {
    let covered = h.covered;
    let mut s = match &h.checkpoint {
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
    };
    if let Some(t) = h.as_of {
        s.push_str(&format!(
            ", as it stood at {} (events that happened by then)",
            short(Some(t))
        ));
    }
    if let Some(t) = h.known_at {
        s.push_str(&format!(
            ", as the ledger knew it at {} (entries recorded by then)",
            short(Some(t))
        ));
    }
    s
}

/// Set when the ledger is read through a read-only snapshot (see `open_reader`):
/// nothing may be written into its directory, not even the derived projection
/// (a running server owns it; a bundle is evidence).
static READ_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn set_read_only() {
    READ_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn read_only() -> bool {
    READ_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

fn head_facts(dir: &Path, store: &dyn Store, bar: &output::Bar) -> Result<Facts> {
    if read_only() {
        // The persisted projection may lag or lead this snapshot: replay it.
        return Ok(projection::replay(store, store.size(), &mut |k| {
            bar.0.set_position(k)
        })?);
    }
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

use ledger_core::report_table::short;

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
pub(crate) enum ReportName {
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
    /// Everything that ever went wrong, as episodes (also after a resend or a
    /// resolution put it right): --kind lost_unread,failed,... selects kinds.
    Incidents,
    /// Events the ledger learned of more than --over (24h) after they happened: a
    /// finding of their own (backfills, a reporter that was down, a clock that lies).
    ReportedLate,
    /// In flight within deadlines.
    Open,
    /// Opened (and acknowledged) in time.
    Completed,
    /// Closed by a `resolved` event.
    Resolved,
}

impl ReportName {
    /// The name in `GET /v1/reports/{kind}`.
    pub(crate) fn path_name(self) -> &'static str {
        match self {
            ReportName::Lost => "lost",
            ReportName::AtRisk => "at-risk",
            ReportName::Late => "late",
            ReportName::Stuck => "stuck",
            ReportName::Anomalies => "anomalies",
            ReportName::Incidents => "incidents",
            ReportName::ReportedLate => "reported-late",
            ReportName::Open => "open",
            ReportName::Completed => "completed",
            ReportName::Resolved => "resolved",
        }
    }
}

pub(crate) fn report(
    dir: &Path,
    store: &dyn Store,
    name: ReportName,
    opts: ReportOptions<'_>,
    query: &Query,
    as_json: bool,
) -> Result<u8> {
    let format = query.format(as_json);
    let kind = ReportKind::parse(name.path_name(), &opts).map_err(input_error)?;
    let judge = Judge::load(dir, &query.when)?;
    let filter = query.filters.to_filter(&judge.names)?;
    let b = basis(dir, store, &query.when, &judge)?;
    let answer = questions::report(store, &b, &kind, &filter).map_err(input_error)?;
    if format == Format::Json {
        output::json(&answer)?;
        leave(b);
        return Ok(0);
    }
    let count = answer.count;
    let what = match &kind {
        ReportKind::Verdict(v) => format!("{} message(s)", v.name()),
        ReportKind::Anomalies(_) => "anomalies".to_string(),
        ReportKind::ReportedLate { over_seconds } => {
            format!("event(s) recorded more than {over_seconds} s after they happened")
        }
        ReportKind::Incidents { kinds, open_only } => format!(
            "{}incident(s){}",
            if *open_only { "open " } else { "" },
            if kinds.is_empty() {
                String::new()
            } else {
                format!(
                    " of kind {}",
                    kinds
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
    };
    // Tables name organisations beside their numbers; CSV keeps the number in its
    // column and adds the names at the end, so scripts keep their column positions
    // (ledger_core::report_table: the API's CSV is the same file).
    let table = ledger_core::report_table::Table::of(&answer.rows);
    if format == Format::Csv {
        let csv = table.to_csv(|n| judge.names.name(n).map(str::to_string));
        std::io::stdout().lock().write_all(csv.as_bytes())?;
    } else {
        let mut rows = table.rows;
        for r in &mut rows {
            for &c in &table.org_columns {
                r[c] = judge.label(Some(r[c].as_str()).filter(|x| !x.is_empty()));
            }
        }
        print_rows(format, &table.header, rows)?;
    }
    // The footer goes to stderr, so the table or CSV on stdout stays clean; it says
    // what a regulator needs to recompute the answer.
    eprintln!(
        "{count} {what}, judged at {} under the {} policy (digest {}), {}; rows digest {}",
        short(Some(answer.header.now)),
        answer.header.policy,
        &answer.header.policy_digest[..16],
        over(&answer.header),
        &answer.digest[..16]
    );
    leave(b);
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
    by: &[By],
    having: Option<&str>,
    query: &Query,
    as_json: bool,
) -> Result<u8> {
    let format = query.format(as_json);
    let names: Vec<&str> = by
        .iter()
        .map(|b| match b {
            By::From => "from",
            By::To => "to",
            By::Channel => "channel",
            By::Category => "category",
            By::Month => "month",
        })
        .collect();
    let group = questions::Grouping {
        by: questions::group_by(
            Some(&names.join(","))
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str()),
        )
        .map_err(input_error)?,
        having: having
            .map(questions::having)
            .transpose()
            .map_err(input_error)?,
    };
    let judge = Judge::load(dir, &query.when)?;
    let filter = query.filters.to_filter(&judge.names)?;
    let b = basis(dir, store, &query.when, &judge)?;
    let answer = questions::stats(store, &b, &group, &filter);
    if format == Format::Json {
        output::json(&answer)?;
        leave(b);
        return Ok(0);
    }
    // One column per key when there are several (charts want them apart).
    let keys: Vec<&'static str> = answer.by.clone();
    let mut header: Vec<&str> = if keys.len() > 1 {
        keys.clone()
    } else {
        vec!["group"]
    };
    header.push("total");
    header.extend(Verdict::ALL.iter().map(|v| v.name()));
    header.push("with_anomalies");
    header.extend(IncidentKind::ALL.iter().map(|k| k.name()));
    header.push("with_incidents");
    let cells = answer
        .groups
        .iter()
        .map(|r| {
            let show = |k: &str, v: &String| match k {
                "from" | "to" if format == Format::Table => judge.label(Some(v)),
                _ => v.clone(),
            };
            let mut c: Vec<String> = if keys.len() > 1 {
                keys.iter().map(|k| show(k, &r.keys[k])).collect()
            } else {
                match keys.first() {
                    Some(k) => vec![show(k, &r.group)],
                    None => vec![r.group.clone()],
                }
            };
            c.push(r.total.to_string());
            c.extend(
                Verdict::ALL
                    .iter()
                    .map(|v| r.verdicts[v.name()].to_string()),
            );
            c.push(r.with_anomalies.to_string());
            c.extend(
                IncidentKind::ALL
                    .iter()
                    .map(|k| r.incidents[k.name()].to_string()),
            );
            c.push(r.with_incidents.to_string());
            c
        })
        .collect();
    print_rows(format, &header, cells)?;
    eprintln!(
        "judged at {} under the {} policy (digest {}), {}",
        short(Some(answer.header.now)),
        answer.header.policy,
        &answer.header.policy_digest[..16],
        over(&answer.header)
    );
    leave(b);
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
    questions::message_path(key)
}

pub(crate) fn status(
    dir: &Path,
    store: &dyn Store,
    name: &str,
    when: &When,
    as_json: bool,
) -> Result<u8> {
    let key = resolve_message(store, name)?;
    let judge = Judge::load(dir, when)?;
    let timing = when.timing()?;
    let Some((facts, cp)) = questions::message_facts(store, &key, &timing).map_err(input_error)?
    else {
        let when_note = match (timing.as_of, timing.known_at) {
            (Some(t), _) => format!(" that happened by {}", short(Some(t))),
            (None, Some(t)) => format!(" recorded by {}", short(Some(t))),
            _ => String::new(),
        };
        return Err(anyhow!(InputError(format!(
            "no event{when_note} names message {name:?}"
        ))));
    };
    let checkpoint = match cp {
        Some(c) => Some(c),
        None => questions::checkpoint_within(store, facts.covered())?,
    };
    let b = Basis {
        facts: Cow::Owned(facts),
        now: timing.judged_at(Instant::now()),
        timing,
        policy: &judge.policy,
        policy_source: &judge.source,
        checkpoint,
        directory: &judge.names,
    };
    let a = questions::message(store, &b, &key)
        .map_err(input_error)?
        .ok_or_else(|| anyhow!(InputError(format!("no event names message {name:?}"))))?;
    if as_json {
        output::json(&a)?;
        return Ok(0);
    }
    let (e, m) = (&a.evaluation, a.facts);
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
    println!("status     {}", a.status);
    println!(
        "sent       {} {} → {} via {} ({})",
        if e.origin_at.is_some() {
            short(e.origin_at)
        } else {
            "never (unknown message)".into()
        },
        e.from.map_or("-".into(), |f| judge.label(Some(f))),
        e.to.map_or("-".into(), |t| judge.label(Some(t))),
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
        "judged at  {} under the {} policy, {}",
        short(Some(a.header.now)),
        a.header.policy,
        over(&a.header)
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
    if !a.incidents.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            "incident", "cause", "began", "ended by", "ended", "evidence",
        ]);
        for i in &a.incidents {
            t.add_row([
                i.kind.name().to_string(),
                i.cause.unwrap_or_default().to_string(),
                short(Some(i.began_at)),
                match (i.ended_by, i.via) {
                    (Some(b), Some(v)) => format!("{b} ({})", bare_of(v)),
                    (Some(b), None) => b.to_string(),
                    (None, _) => "(still open)".to_string(),
                },
                short(i.ended_at),
                i.evidence
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        println!("{t}");
    }
    if !m.anomalies.is_empty() || !e.evaluated_anomalies.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["anomaly", "seq", "other seq", "detail"]);
        for an in &m.anomalies {
            t.add_row([
                an.kind.name().to_string(),
                an.seq.to_string(),
                an.other_seq.map(|s| s.to_string()).unwrap_or_default(),
                an.detail.clone().unwrap_or_default(),
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
    println!("{}", output::history_table(&a.history));
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
    if when.as_of.is_some() || when.known_at.is_some() || when.at_checkpoint.is_some() {
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
    let now = match when.timing()?.now {
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
    } else if !read_only() {
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
            (None, false) if read_only() => println!("read-only: the projection was not saved"),
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
    let judge = Judge::load(dir, when)?;
    let filter = query.filters.to_filter(&judge.names)?;
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
    let b = basis(dir, store, when, &judge)?;
    let answer = questions::reconcile(
        store,
        &b,
        &sent_list,
        &received_list,
        &filter,
        &ledger_core::projection::Filter::default(),
    );
    let diffs = &answer.differences;
    if format == Format::Json {
        output::json(&answer)?;
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
            let parts: Vec<String> = reconcile::summary(diffs)
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
