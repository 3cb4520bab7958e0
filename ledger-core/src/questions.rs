//! The questions a regulator asks, asked once: the parameters (as a reader types
//! them, on the command line or in a URL), the facts and time they are answered
//! over, and the answer documents. `ledger status|history|report|stats` and the
//! API's `GET /v1/messages/…`, `/v1/reports/…` and `/v1/stats` build their answers
//! here, so `--json` prints the document the API returns (docs/projections.md §2.4,
//! §5).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::directory::{self, Directory};
use crate::event;
use crate::projection::{
    self, AnomalyKind, AnomalyRow, Evaluation, Evaluator, Facts, Filter, GroupBy, IncidentKind,
    IncidentRow, Instant, MessageFacts, Policy, ProjectionError, StatsRow, Verdict,
};
use crate::store::{SignedCheckpoint, Store, StoreError};

/// Why a question cannot be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    /// A parameter is malformed or out of place; `name` is its bare name (`since`),
    /// which the CLI shows as `--since` and the API as `since=`.
    #[error("{name}: {reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong, with the value as given.
        reason: String,
    },
    /// No checkpoint was signed at the size asked for.
    #[error(
        "at_checkpoint: no checkpoint was signed at size {0} (`ledger checkpoint` shows the newest; an answer's `checkpoint.size` names one)"
    )]
    NoCheckpoint(u64),
    /// The projection could not be built.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(name: &'static str, reason: String) -> QuestionError {
    QuestionError::BadParameter { name, reason }
}

/// Which messages, as typed: organisation numbers, a category, a channel, and a
/// send-time range (dates as people type them, or RFC 3339).
#[derive(Clone, Debug, Default)]
pub struct Which {
    /// Sender organisation.
    pub from: Option<String>,
    /// Recipient organisation.
    pub to: Option<String>,
    /// Sender or recipient.
    pub party: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Sent at or after.
    pub since: Option<String>,
    /// Sent before.
    pub until: Option<String>,
}

impl Which {
    /// The filter, every value checked.
    pub fn filter(&self) -> Result<Filter, QuestionError> {
        self.filter_in(&directory::EMPTY)
    }

    /// The filter, organisations given by name resolved through `names` (a name
    /// matching several is an error that lists them).
    pub fn filter_in(&self, names: &Directory) -> Result<Filter, QuestionError> {
        let resolve = |name: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|o| names.resolve(o).map_err(|e| bad(name, e.to_string())))
                .transpose()
        };
        let resolved = Which {
            from: resolve("from", &self.from)?,
            to: resolve("to", &self.to)?,
            party: resolve("party", &self.party)?,
            ..self.clone()
        };
        resolved.checked()
    }

    fn checked(&self) -> Result<Filter, QuestionError> {
        for (name, value, allowed) in [
            ("category", &self.category, &event::CATEGORIES[..]),
            ("channel", &self.channel, &event::CHANNELS[..]),
        ] {
            if let Some(v) = value
                && !allowed.contains(&v.as_str())
            {
                return Err(bad(
                    name,
                    format!("{v:?} is not one of: {}", allowed.join(", ")),
                ));
            }
        }
        for (name, org) in [
            ("from", &self.from),
            ("to", &self.to),
            ("party", &self.party),
        ] {
            if let Some(o) = org {
                crate::ids::check_orgnr(o).map_err(|e| bad(name, format!("{o:?}: {e}")))?;
            }
        }
        Ok(Filter {
            from: self.from.clone(),
            to: self.to.clone(),
            category: self.category.clone(),
            channel: self.channel.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            party: self.party.clone(),
        })
    }
}

fn time(name: &'static str, v: &Option<String>) -> Result<Option<Instant>, QuestionError> {
    v.as_deref()
        .map(|s| Instant::parse_input(s).map_err(|e| bad(name, e)))
        .transpose()
}

/// When, as typed: the two time axes, a judging time, a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct When {
    /// Event time: how things stood at T (only events that happened by T, judged
    /// at T).
    pub as_of: Option<String>,
    /// Record time: what the ledger knew at T (only entries recorded by T).
    pub known_at: Option<String>,
    /// Judge deadlines at this time.
    pub now: Option<String>,
    /// Answer over exactly the entries of the checkpoint of this size.
    pub at_checkpoint: Option<u64>,
}

/// [`When`], parsed and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Event-time cut-off.
    pub as_of: Option<Instant>,
    /// Record-time cut-off.
    pub known_at: Option<Instant>,
    /// Judging time, when given.
    pub now: Option<Instant>,
    /// Checkpoint size.
    pub at_checkpoint: Option<u64>,
}

impl When {
    /// Parses and checks the combination: `now` with `as_of` is refused (as-of
    /// judges at T), and so is `known_at` with `at_checkpoint` (two prefixes).
    pub fn timing(&self) -> Result<Timing, QuestionError> {
        let t = Timing {
            as_of: time("as_of", &self.as_of)?,
            known_at: time("known_at", &self.known_at)?,
            now: time("now", &self.now)?,
            at_checkpoint: self.at_checkpoint,
        };
        if t.as_of.is_some() && t.now.is_some() {
            return Err(bad(
                "now",
                "cannot be combined with as_of, which judges at its own time".into(),
            ));
        }
        if t.known_at.is_some() && t.at_checkpoint.is_some() {
            return Err(bad(
                "known_at",
                "cannot be combined with at_checkpoint: each names the entries to use".into(),
            ));
        }
        Ok(t)
    }
}

impl Timing {
    /// Whether the head projection cannot answer: a prefix or an event-time cut.
    pub fn needs_replay(&self) -> bool {
        self.as_of.is_some() || self.known_at.is_some() || self.at_checkpoint.is_some()
    }

    /// The judging time: `now`, else `as_of`, else `known_at`, else `clock`.
    pub fn judged_at(&self, clock: Instant) -> Instant {
        self.now.or(self.as_of).or(self.known_at).unwrap_or(clock)
    }

    /// The entries the answer is computed over (a prefix of the log), and the
    /// checkpoint it was asked at.
    pub fn prefix(
        &self,
        store: &dyn Store,
    ) -> Result<(u64, Option<SignedCheckpoint>), QuestionError> {
        if let Some(n) = self.at_checkpoint {
            let cp = store
                .checkpoints(n, 1)?
                .into_iter()
                .find(|c| c.size == n)
                .ok_or(QuestionError::NoCheckpoint(n))?;
            return Ok((n, Some(cp)));
        }
        match self.known_at {
            Some(t) => Ok((projection::prefix_at(store, t)?, None)),
            None => Ok((store.size(), None)),
        }
    }
}

/// A signed checkpoint as answers name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointRef {
    /// The log's origin line.
    pub origin: String,
    /// Entries it commits to.
    pub size: u64,
    /// Its root hash (hex).
    pub root: String,
    /// The signed note.
    pub note: String,
    /// How many of the answer's entries came after it.
    pub entries_after: u64,
}

/// What every answer says about what it was computed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Header {
    /// The entries it reflects: those below this seq.
    pub covered: u64,
    /// The newest signed checkpoint within them (or the one asked for).
    pub checkpoint: Option<CheckpointRef>,
    /// When deadlines were judged.
    pub now: Instant,
    /// Event-time cut-off, if any.
    pub as_of: Option<Instant>,
    /// Record-time cut-off, if any.
    pub known_at: Option<Instant>,
    /// Where the policy came from.
    pub policy: String,
    /// The policy's digest (hex).
    pub policy_digest: String,
}

/// The newest signed checkpoint within the first `covered` entries.
pub fn checkpoint_within(
    store: &dyn Store,
    covered: u64,
) -> Result<Option<SignedCheckpoint>, StoreError> {
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

fn checkpoint_ref(store: &dyn Store, c: &SignedCheckpoint, covered: u64) -> CheckpointRef {
    let root = store
        .verifier_key()
        .verify(&c.note)
        .map(|p| hex::encode(p.root))
        .unwrap_or_default();
    CheckpointRef {
        origin: store.info().origin.clone(),
        size: c.size,
        root,
        note: c.note.clone(),
        entries_after: covered.saturating_sub(c.size),
    }
}

/// The facts, time and policy an answer is computed over.
pub struct Basis<'a> {
    /// The facts.
    pub facts: Cow<'a, Facts>,
    /// The judging time.
    pub now: Instant,
    /// The cut-offs asked for.
    pub timing: Timing,
    /// The policy.
    pub policy: &'a Policy,
    /// Where it came from.
    pub policy_source: &'a str,
    /// The checkpoint named in the answer.
    pub checkpoint: Option<SignedCheckpoint>,
    /// Names for organisation numbers.
    pub directory: &'a Directory,
}

impl<'a> Basis<'a> {
    /// The basis of a question asked with `timing`: the head projection (from
    /// `head`, only called when no replay is needed) or a replay of the prefix and
    /// event-time cut asked for; the checkpoint asked at, else the newest one within
    /// the entries covered.
    pub fn new(
        store: &dyn Store,
        timing: Timing,
        policy: &'a Policy,
        policy_source: &'a str,
        head: impl FnOnce() -> Result<Cow<'a, Facts>, QuestionError>,
        progress: &mut projection::Progress<'_>,
    ) -> Result<Basis<'a>, QuestionError> {
        let (facts, checkpoint) = if timing.needs_replay() {
            let (n, cp) = timing.prefix(store)?;
            let facts = match timing.as_of {
                Some(t) => projection::replay_happened_by(store, n, t, progress)?,
                None => projection::replay(store, n, progress)?,
            };
            (Cow::Owned(facts), cp)
        } else {
            (head()?, None)
        };
        let checkpoint = match checkpoint {
            Some(c) => Some(c),
            None => checkpoint_within(store, facts.covered())?,
        };
        Ok(Basis {
            facts,
            now: timing.judged_at(Instant::now()),
            timing,
            policy,
            policy_source,
            checkpoint,
            directory: &directory::EMPTY,
        })
    }

    /// The same basis, naming organisations from `directory`.
    pub fn named(self, directory: &'a Directory) -> Basis<'a> {
        Basis { directory, ..self }
    }

    /// An evaluator over the basis.
    pub fn evaluator(&self) -> Evaluator<'_> {
        Evaluator::new(&self.facts, self.policy, self.now)
    }

    /// What the answer was computed over.
    pub fn header(&self, store: &dyn Store) -> Header {
        let covered = self.facts.covered();
        Header {
            covered,
            checkpoint: self
                .checkpoint
                .as_ref()
                .map(|c| checkpoint_ref(store, c, covered)),
            now: self.now,
            as_of: self.timing.as_of,
            known_at: self.timing.known_at,
            policy: self.policy_source.to_string(),
            policy_digest: hex::encode(self.policy.digest(store.info().hash)),
        }
    }
}

/// What a report lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Messages whose verdict is this one now.
    Verdict(Verdict),
    /// Anomalies, optionally of one kind.
    Anomalies(Option<AnomalyKind>),
    /// Events the ledger recorded more than `over_seconds` after they happened.
    ReportedLate {
        /// The threshold.
        over_seconds: i64,
    },
    /// Incidents of these kinds (all if empty); `open_only` keeps those not ended.
    Incidents {
        /// Kinds.
        kinds: Vec<IncidentKind>,
        /// Only those still open.
        open_only: bool,
    },
}

impl ReportKind {
    /// The report named as in `GET /v1/reports/{name}` and `ledger report NAME`:
    /// a verdict (`lost`, `at-risk`, `late`, `stuck`, `open`, `completed`,
    /// `resolved`), `anomalies` or `incidents`. With `ever`, a verdict report asks
    /// which messages were ever in that state: the incidents of its kinds.
    pub fn parse(name: &str, opts: &ReportOptions<'_>) -> Result<ReportKind, QuestionError> {
        let (kind, ever, open_only) = (opts.kind, opts.ever, opts.open);
        if opts.over.is_some() && name != "reported-late" {
            return Err(bad("over", "applies to `reported-late` only".into()));
        }
        let kinds = |list: &str| -> Result<Vec<IncidentKind>, QuestionError> {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|k| {
                    IncidentKind::from_name(k).ok_or_else(|| {
                        bad(
                            "kind",
                            format!(
                                "{k:?} is not an incident kind: {}",
                                IncidentKind::ALL.map(|k| k.name()).join(", ")
                            ),
                        )
                    })
                })
                .collect()
        };
        match name {
            "anomalies" => {
                if ever || open_only {
                    return Err(bad("ever", "applies to verdict reports only".into()));
                }
                let k = kind
                    .map(|k| {
                        AnomalyKind::from_name(k).ok_or_else(|| {
                            bad(
                                "kind",
                                format!(
                                    "{k:?} is not an anomaly kind: {}",
                                    AnomalyKind::ALL.map(|k| k.name()).join(", ")
                                ),
                            )
                        })
                    })
                    .transpose()?;
                Ok(ReportKind::Anomalies(k))
            }
            "reported-late" | "reported_late" => {
                if ever || open_only || kind.is_some() {
                    return Err(bad(
                        "ever",
                        "reported-late takes --over only (and the filters)".into(),
                    ));
                }
                let text = opts.over.unwrap_or(REPORTED_LATE_DEFAULT);
                let over_seconds = projection::parse_duration(text)
                    .map_err(|e| bad("over", format!("{text:?}: {e}")))?
                    .ok_or_else(|| bad("over", "must be a duration, not none".into()))?;
                Ok(ReportKind::ReportedLate { over_seconds })
            }
            "incidents" => Ok(ReportKind::Incidents {
                kinds: kind.map(kinds).transpose()?.unwrap_or_default(),
                open_only,
            }),
            _ => {
                let v = Verdict::from_name(name).ok_or_else(|| {
                    bad(
                        "report",
                        format!(
                            "no report {name:?}: lost, at-risk, late, stuck, open, completed, resolved, anomalies, incidents or reported-late"
                        ),
                    )
                })?;
                if kind.is_some() {
                    return Err(bad(
                        "kind",
                        "applies to `anomalies` and `incidents` reports only".into(),
                    ));
                }
                if !ever {
                    if open_only {
                        return Err(bad("open", "applies to incidents only".into()));
                    }
                    return Ok(ReportKind::Verdict(v));
                }
                let kinds = ever_kinds(v).ok_or_else(|| {
                    bad(
                        "ever",
                        format!("applies to lost, stuck, late and at-risk, not {}", v.name()),
                    )
                })?;
                Ok(ReportKind::Incidents {
                    kinds: kinds.to_vec(),
                    open_only,
                })
            }
        }
    }

    /// The report's name in answers.
    pub fn name(&self) -> &'static str {
        match self {
            ReportKind::Verdict(v) => v.name(),
            ReportKind::Anomalies(_) => "anomalies",
            ReportKind::ReportedLate { .. } => "reported_late",
            ReportKind::Incidents { .. } => "incidents",
        }
    }
}

/// How a report was asked for, beyond its filters, as typed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportOptions<'a> {
    /// An anomaly kind, or incident kinds (comma-separated).
    pub kind: Option<&'a str>,
    /// Who was ever in that state (the incidents of its kinds).
    pub ever: bool,
    /// Incidents not yet ended.
    pub open: bool,
    /// `reported-late`: the delay that counts as late (a policy duration).
    pub over: Option<&'a str>,
}

/// What `reported-late` counts as late unless asked otherwise.
pub const REPORTED_LATE_DEFAULT: &str = "24h";

/// The incident kinds that mean "was ever `v`" (docs/projections.md §2.6).
pub fn ever_kinds(v: Verdict) -> Option<&'static [IncidentKind]> {
    match v {
        Verdict::Lost => Some(&[IncidentKind::LostUnread, IncidentKind::Failed]),
        Verdict::StuckInHandoff => Some(&[IncidentKind::HandoffNeverReceived]),
        Verdict::Late => Some(&[IncidentKind::OpenedLate, IncidentKind::AckLate]),
        Verdict::AtRisk => Some(&[
            IncidentKind::OpenedLate,
            IncidentKind::NeverDelivered,
            IncidentKind::AckLate,
        ]),
        _ => None,
    }
}

/// The rows of a report.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Rows<'a> {
    /// Evaluated messages.
    Messages(Vec<Evaluation<'a>>),
    /// Anomalies.
    Anomalies(Vec<AnomalyRow>),
    /// Incidents.
    Incidents(Vec<IncidentRow<'a>>),
    /// Entries recorded late.
    Entries(Vec<LateEntry>),
}

/// An event the ledger learned of late: a row of `reported-late`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LateEntry {
    /// Its entry.
    pub seq: u64,
    /// Its message (bare id).
    pub message: String,
    /// The message's sender.
    pub from: Option<String>,
    /// The message's recipient.
    pub to: Option<String>,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: crate::EventType,
    /// When it happened, as reported.
    pub at: Instant,
    /// When the ledger recorded it.
    pub recorded_at: Instant,
    /// `recorded_at − at`, in seconds.
    pub delay_seconds: i64,
    /// Who reported it.
    pub reporter_org: String,
    /// Through which system.
    pub reporter_system: String,
}

/// The entries within the basis recorded more than `over` seconds after they
/// happened, of messages passing the filter, in seq order.
fn reported_late(
    store: &dyn Store,
    basis: &Basis<'_>,
    over: i64,
    filter: &Filter,
) -> Result<Vec<LateEntry>, QuestionError> {
    let eval = basis.evaluator();
    let mut rows = Vec::new();
    let mut failure = None;
    store
        .scan(0, basis.facts.covered(), &mut |seq, bytes| {
            let t = match projection::entry_times(seq, bytes) {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(()),
                Err(e) => {
                    failure = Some(e);
                    return Err(StoreError::Corrupt(format!("entry {seq} cannot be read")));
                }
            };
            if basis.timing.as_of.is_some_and(|a| t.at > a)
                || t.recorded_at <= t.at.plus_seconds(over)
            {
                return Ok(());
            }
            let Some(e) = eval.evaluate(&t.key) else {
                return Ok(());
            };
            if !filter.matches(&e) {
                return Ok(());
            }
            rows.push(LateEntry {
                seq,
                message: e.id().to_string(),
                from: e.from.map(str::to_string),
                to: e.to.map(str::to_string),
                kind: t.kind,
                at: t.at,
                recorded_at: t.recorded_at,
                delay_seconds: ((t.recorded_at.nanos() - t.at.nanos()) / 1_000_000_000) as i64,
                reporter_org: t.org,
                reporter_system: t.system,
            });
            Ok(())
        })
        .map_err(|e| match failure.take() {
            Some(p) => QuestionError::Projection(p),
            None => QuestionError::Store(e),
        })?;
    Ok(rows)
}

impl Rows<'_> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Rows::Messages(r) => r.len(),
            Rows::Anomalies(r) => r.len(),
            Rows::Incidents(r) => r.len(),
            Rows::Entries(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The answer to a report: `GET /v1/reports/{kind}` and `ledger report --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ReportAnswer<'a> {
    /// Which report.
    pub report: &'static str,
    /// What it was computed over.
    #[serde(flatten)]
    pub header: Header,
    /// For `incidents`: the kinds asked for (every kind if empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<IncidentKind>>,
    /// Rows.
    pub count: usize,
    /// Names of the organisations in the rows, by number (from the organisation
    /// directory; empty without one).
    pub organisations: BTreeMap<String, String>,
    /// `H(JCS(rows))` in hex, with the ledger's hash function: two answers with the
    /// same digest list the same rows, so a regulator compares one line.
    pub digest: String,
    /// The rows.
    pub rows: Rows<'a>,
}

/// Answers a report over a basis.
pub fn report<'a>(
    store: &dyn Store,
    basis: &'a Basis<'_>,
    kind: &ReportKind,
    filter: &Filter,
) -> Result<ReportAnswer<'a>, QuestionError> {
    let eval = basis.evaluator();
    let (rows, kinds) = match kind {
        ReportKind::Verdict(v) => (
            Rows::Messages(projection::report(&eval, &[*v], filter)),
            None,
        ),
        ReportKind::Anomalies(k) => (
            Rows::Anomalies(projection::anomaly_rows(&eval, filter, *k)),
            None,
        ),
        ReportKind::Incidents { kinds, open_only } => (
            Rows::Incidents(projection::incident_rows(&eval, kinds, filter, *open_only)),
            Some(kinds.clone()),
        ),
        ReportKind::ReportedLate { over_seconds } => (
            Rows::Entries(reported_late(store, basis, *over_seconds, filter)?),
            None,
        ),
    };
    let numbers: Vec<&str> = match &rows {
        Rows::Messages(r) => r.iter().flat_map(|e| [e.from, e.to]).flatten().collect(),
        Rows::Incidents(r) => r.iter().flat_map(|e| [e.from, e.to]).flatten().collect(),
        Rows::Anomalies(r) => r.iter().filter_map(|a| a.org.as_deref()).collect(),
        Rows::Entries(r) => r
            .iter()
            .flat_map(|e| [e.from.as_deref(), e.to.as_deref(), Some(&e.reporter_org)])
            .flatten()
            .collect(),
    };
    Ok(ReportAnswer {
        report: kind.name(),
        header: basis.header(store),
        kinds,
        count: rows.len(),
        organisations: basis.directory.names(numbers),
        digest: rows_digest(store, &rows),
        rows,
    })
}

/// `H(JCS(rows))`, hex.
pub fn rows_digest(store: &dyn Store, rows: &impl Serialize) -> String {
    let value = serde_json::to_value(rows).expect("rows serialize");
    let bytes = serde_json_canonicalizer::to_vec(&value).expect("json values canonicalize");
    hex::encode(store.info().hash.digest(&[&bytes]))
}

/// How stats group, by name: none (`all`), or keys from `from`, `to`, `channel`,
/// `category`, `month`, comma-separated (`from,month`: per sender and month).
pub fn group_by(names: Option<&str>) -> Result<Vec<GroupBy>, QuestionError> {
    let Some(list) = names.filter(|n| *n != "all") else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let k = GroupBy::from_name(n).ok_or_else(|| {
            bad(
                "by",
                format!("{n:?} is not one of all, from, to, channel, category, month"),
            )
        })?;
        if keys.contains(&k) {
            return Err(bad("by", format!("{n:?} is given twice")));
        }
        keys.push(k);
    }
    Ok(keys)
}

/// A count a stats group carries, by the name its rows give it: a verdict
/// (`lost`), an incident kind (`lost_unread`), `with_incidents` or `with_anomalies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Messages with this verdict.
    Verdict(Verdict),
    /// Incidents of this kind.
    Incident(IncidentKind),
    /// Messages with at least one incident.
    WithIncidents,
    /// Messages with at least one anomaly.
    WithAnomalies,
}

impl Count {
    /// Parses a name.
    pub fn from_name(s: &str) -> Option<Count> {
        match s {
            "with_incidents" => Some(Count::WithIncidents),
            "with_anomalies" => Some(Count::WithAnomalies),
            _ => Verdict::ALL
                .into_iter()
                .find(|v| v.name() == s)
                .map(Count::Verdict)
                .or_else(|| IncidentKind::from_name(s).map(Count::Incident)),
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Count::Verdict(v) => v.name(),
            Count::Incident(k) => k.name(),
            Count::WithIncidents => "with_incidents",
            Count::WithAnomalies => "with_anomalies",
        }
    }

    /// Its value in a row.
    pub fn of(self, row: &StatsRow) -> u64 {
        match self {
            Count::Verdict(v) => row.verdicts.get(v.name()).copied().unwrap_or(0),
            Count::Incident(k) => row.incidents.get(k.name()).copied().unwrap_or(0),
            Count::WithIncidents => row.with_incidents,
            Count::WithAnomalies => row.with_anomalies,
        }
    }
}

/// One grouping of a stats question: its keys, and the count a group must have
/// (more than zero) to be listed, if any. "Lost unread per sender and month" is a
/// few hundred groups of the twenty thousand a sender-and-month grouping has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grouping {
    /// Its keys (none: one group, `all`).
    pub by: Vec<GroupBy>,
    /// Only groups where this count is above zero.
    pub having: Option<Count>,
}

/// The answer of `GET /v1/stats` and `ledger stats --json`.
#[derive(Clone, Debug, Serialize)]
pub struct StatsAnswer {
    /// The grouping keys (empty: one group, `all`).
    pub by: Vec<&'static str>,
    /// The count every listed group has above zero, when the grouping asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub having: Option<&'static str>,
    /// What it was computed over.
    #[serde(flatten)]
    pub header: Header,
    /// Counts per group.
    pub groups: Vec<StatsRow>,
    /// Names of the organisations among the groups' keys, by number.
    pub organisations: BTreeMap<String, String>,
    /// The further groupings asked for in the same question (`by=all;month`), each
    /// counted in the same pass over the same basis.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<StatsGrouping>,
}

/// One further grouping of a [`StatsAnswer`].
#[derive(Clone, Debug, Serialize)]
pub struct StatsGrouping {
    /// Its keys.
    pub by: Vec<&'static str>,
    /// The count every listed group has above zero, if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub having: Option<&'static str>,
    /// Its groups.
    pub groups: Vec<StatsRow>,
}

/// Counts per verdict and per incident kind.
pub fn stats(
    store: &dyn Store,
    basis: &Basis<'_>,
    grouping: &Grouping,
    filter: &Filter,
) -> StatsAnswer {
    stats_many(store, basis, std::slice::from_ref(grouping), filter)
}

/// Counts under several groupings at once (at least one), each message judged once:
/// the first grouping is the answer's `by` and `groups`, the others its `also`.
pub fn stats_many(
    store: &dyn Store,
    basis: &Basis<'_>,
    groupings: &[Grouping],
    filter: &Filter,
) -> StatsAnswer {
    let keys: Vec<Vec<GroupBy>> = groupings.iter().map(|g| g.by.clone()).collect();
    let mut all = projection::stats_many(&basis.evaluator(), &keys, filter);
    for (groups, g) in all.iter_mut().zip(groupings) {
        if let Some(c) = g.having {
            groups.retain(|row| c.of(row) > 0);
        }
    }
    let numbers = all.iter().flatten().flat_map(|g| {
        ["from", "to"]
            .into_iter()
            .filter_map(|k| g.keys.get(k).map(String::as_str))
    });
    let organisations = basis.directory.names(numbers);
    let mut named = groupings
        .iter()
        .map(|g| {
            (
                g.by.iter().map(|k| k.name()).collect::<Vec<_>>(),
                g.having.map(Count::name),
            )
        })
        .zip(all.drain(..));
    let ((by, having), groups) = named.next().unwrap_or_default();
    StatsAnswer {
        by,
        having,
        header: basis.header(store),
        organisations,
        groups,
        also: named
            .map(|((by, having), groups)| StatsGrouping { by, having, groups })
            .collect(),
    }
}

/// A grouping's `having` count, by name (`ledger stats --having`).
pub fn having(name: &str) -> Result<Count, QuestionError> {
    count_named("having", name)
}

fn count_named(parameter: &'static str, name: &str) -> Result<Count, QuestionError> {
    Count::from_name(name).ok_or_else(|| {
        bad(
            parameter,
            format!(
                "{name:?} is not a verdict ({}), an incident kind ({}), with_incidents or with_anomalies",
                Verdict::ALL.map(Verdict::name).join(", "),
                IncidentKind::ALL.map(IncidentKind::name).join(", ")
            ),
        )
    })
}

/// Groupings as the API takes them: `;` between groupings, `,` between the keys of
/// one, and after a grouping's keys `:` and the count its groups must have
/// (`all;month;from,month:lost_unread`); at most four.
pub fn groupings(names: Option<&str>) -> Result<Vec<Grouping>, QuestionError> {
    let Some(text) = names else {
        return Ok(vec![Grouping::default()]);
    };
    let parts: Vec<&str> = text.split(';').collect();
    if parts.len() > 4 {
        return Err(bad(
            "by",
            format!("{} groupings; at most 4 at once", parts.len()),
        ));
    }
    parts
        .into_iter()
        .map(|p| {
            let (keys, having) = match p.split_once(':') {
                Some((keys, c)) => (keys, Some(count_named("by", c.trim())?)),
                None => (p, None),
            };
            Ok(Grouping {
                by: group_by(Some(keys))?,
                having,
            })
        })
        .collect()
}

/// One entry of a message's history.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    /// Its seq.
    pub seq: u64,
    /// When the ledger recorded it.
    pub recorded_at: String,
    /// Its leaf hash (hex).
    pub hash: String,
    /// The event, as recorded.
    pub event: serde_json::Value,
}

/// The entries `seqs`, as histories show them.
pub fn history(store: &dyn Store, seqs: &[u64]) -> Result<Vec<HistoryEntry>, QuestionError> {
    let alg = store.info().hash;
    seqs.iter()
        .map(|&seq| {
            let bytes = store.entry(seq)?;
            let p = crate::entry::parse_entry(&bytes).map_err(|e| ProjectionError::BadEntry {
                seq,
                reason: e.to_string(),
            })?;
            let event = serde_json::from_str(p.event).map_err(|e| ProjectionError::BadEntry {
                seq,
                reason: e.to_string(),
            })?;
            Ok(HistoryEntry {
                seq,
                recorded_at: p.recorded_at.to_string(),
                hash: hex::encode(alg.leaf(&bytes)),
                event,
            })
        })
        .collect()
}

/// A message's entries within what `timing` asks for: recorded within its prefix
/// and, for an event-time as-of, happened by then.
pub fn history_of(
    store: &dyn Store,
    key: &str,
    timing: &Timing,
) -> Result<Vec<HistoryEntry>, QuestionError> {
    let (n, _) = timing.prefix(store)?;
    history_within(store, key, n, timing.as_of)
}

fn history_within(
    store: &dyn Store,
    key: &str,
    n: u64,
    as_of: Option<Instant>,
) -> Result<Vec<HistoryEntry>, QuestionError> {
    let seqs: Vec<u64> = store
        .message_seqs(key)?
        .into_iter()
        .filter(|&s| s < n)
        .collect();
    let mut rows = history(store, &seqs)?;
    if let Some(t) = as_of {
        rows.retain(|r| {
            r.event
                .get("at")
                .and_then(|a| a.as_str())
                .and_then(Instant::parse)
                .is_some_and(|at| at <= t)
        });
    }
    Ok(rows)
}

/// The answer about one message: `GET /v1/messages/{id}` and `ledger status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct MessageAnswer<'a> {
    /// Its bare id.
    pub message: &'a str,
    /// Sender.
    pub from: Option<&'a str>,
    /// Recipient.
    pub to: Option<&'a str>,
    /// Names of the sender and recipient, by number.
    pub organisations: BTreeMap<String, String>,
    /// What it was computed over.
    #[serde(flatten)]
    pub header: Header,
    /// Its lifecycle status.
    pub status: &'static str,
    /// Its verdict and deadlines.
    pub evaluation: Evaluation<'a>,
    /// What went wrong in its life.
    pub incidents: Vec<projection::Incident<'a>>,
    /// What the log says about it.
    pub facts: &'a MessageFacts,
    /// Its entries (within the basis, and for an event-time as-of, those that
    /// happened by then).
    pub history: Vec<HistoryEntry>,
}

/// The facts of one message's family over the basis `timing` asks for (fast: only
/// its entries are read). `None` if no event of it is within.
pub fn message_facts(
    store: &dyn Store,
    key: &str,
    timing: &Timing,
) -> Result<Option<(Facts, Option<SignedCheckpoint>)>, QuestionError> {
    let (n, cp) = timing.prefix(store)?;
    Ok(projection::family_facts(store, key, n, timing.as_of)?.map(|f| (f, cp)))
}

/// Answers about one message over a basis (from [`message_facts`], or the head).
/// `None` if the basis does not know it.
pub fn message<'a>(
    store: &dyn Store,
    basis: &'a Basis<'_>,
    key: &str,
) -> Result<Option<MessageAnswer<'a>>, QuestionError> {
    let evaluator = basis.evaluator();
    let Some(e) = evaluator.evaluate(key) else {
        return Ok(None);
    };
    let m = basis.facts.message(key).expect("evaluated");
    let covered = basis.facts.covered();
    let id = crate::event::split_message_key(e.message).1;
    Ok(Some(MessageAnswer {
        message: id,
        from: e.from,
        to: e.to,
        organisations: basis.directory.names([e.from, e.to].into_iter().flatten()),
        header: basis.header(store),
        status: m.status().name(),
        incidents: evaluator.incidents(&e),
        evaluation: e,
        facts: m,
        history: history_within(store, key, covered, basis.timing.as_of)?,
    }))
}

/// How readers name a message key: `FROM/TO/ID` (format 2) or its id (format 1).
pub fn message_path(key: &str) -> String {
    match event::split_message_key(key) {
        (Some((f, t)), id) => format!("{f}/{t}/{id}"),
        (None, id) => id.to_string(),
    }
}

/// `s` as one URL path segment or query value (a message path in a link, say):
/// everything but RFC 3986's unreserved characters percent-encoded.
pub fn url_component(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The answer of `ledger reconcile --json` and `POST /v1/reconcile`.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileAnswer {
    /// What it was computed over.
    #[serde(flatten)]
    pub header: Header,
    /// Differences per class.
    pub summary: BTreeMap<&'static str, usize>,
    /// Every difference.
    pub differences: Vec<crate::reconcile::Difference>,
}

/// Reconciles a sender's and a receiver's lists with the ledger, over the messages
/// `reach` lets the asker see (a party sees its own; others are as if unrecorded),
/// and expecting in the lists every message `filter` selects (none when empty).
pub fn reconcile(
    store: &dyn Store,
    basis: &Basis<'_>,
    sent: &crate::reconcile::ParsedList,
    received: &crate::reconcile::ParsedList,
    filter: &Filter,
    reach: &Filter,
) -> ReconcileAnswer {
    use crate::reconcile::{self, DiffClass};
    let view = ReconcileView::new(basis.evaluator(), reach);
    let scope: Vec<String> = if filter.is_empty() {
        Vec::new()
    } else {
        basis
            .evaluator()
            .evaluate_all()
            .filter(|e| e.origin_at.is_some() && filter.matches(e) && reach.matches(e))
            .map(|e| message_path(e.message))
            .collect()
    };
    let differences = reconcile::reconcile(&sent.rows, &received.rows, &view, &scope);
    let summary = reconcile::summary(&differences)
        .iter()
        .map(|(c, n): &(DiffClass, usize)| (c.name(), *n))
        .collect();
    ReconcileAnswer {
        header: basis.header(store),
        summary,
        differences,
    }
}

/// The projection as reconcile sees it, limited to what the asker may see (`reach`;
/// an empty filter sees everything).
pub struct ReconcileView<'a, 'f> {
    eval: Evaluator<'a>,
    reach: &'f Filter,
    by_ref: std::collections::HashMap<&'a str, Vec<&'a str>>,
}

impl<'a, 'f> ReconcileView<'a, 'f> {
    /// Over `eval`, seeing the messages `reach` passes.
    pub fn new(eval: Evaluator<'a>, reach: &'f Filter) -> ReconcileView<'a, 'f> {
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
        ReconcileView {
            eval,
            reach,
            by_ref,
        }
    }

    fn visible(&self, key: &str) -> bool {
        self.reach.is_empty()
            || self
                .eval
                .evaluate(key)
                .is_some_and(|e| self.reach.matches(&e))
    }

    /// The key of a message as reconcile names it ([`message_path`]).
    fn key_of(&self, name: &str) -> Option<&'a str> {
        self.eval
            .facts()
            .find(name)
            .into_iter()
            .find(|k| message_path(k) == name && self.visible(k))
    }
}

/// Reconcile names messages as readers do ([`message_path`]): a format-1 message by
/// its id, a format-2 message as FROM/TO/ID; a list row's bare id names every
/// message of that id.
impl crate::reconcile::LedgerView for ReconcileView<'_, '_> {
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
            .filter(|k| facts.message(k).is_some_and(|m| m.is_known()) && self.visible(k))
            .map(message_path)
            .collect()
    }
    fn messages_with_ref(&self, r: &str) -> Vec<String> {
        self.by_ref
            .get(r)
            .map(|v| {
                v.iter()
                    .filter(|k| self.visible(k))
                    .map(|k| message_path(k))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn describe(&self, name: &str) -> Option<crate::reconcile::LedgerMessage> {
        let message = self.key_of(name)?;
        let m = self.eval.facts().message(message)?;
        let e = self.eval.evaluate(message)?;
        Some(crate::reconcile::LedgerMessage {
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
            origin_at: e.origin_at.map(|t| crate::report_table::short(Some(t))),
            verdict: e.verdict.name().to_string(),
        })
    }
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn a_message_path_is_one_url_component() {
        assert_eq!(
            super::url_component("974760673/964338531/POL 1æ~-_."),
            "974760673%2F964338531%2FPOL%201%C3%A6~-_."
        );
    }
}
