//! The questions a regulator asks of an evaluation (docs/projections.md §2.4):
//! messages by verdict, anomalies, counts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Instant;
use super::facts::AnomalyKind;
use super::incident::{Incident, IncidentKind};
use super::messages::per_shard;
use super::verdict::{Evaluation, Evaluator, Verdict};

/// Which messages a question is about: effective fields (inherited by resends) and
/// the send time. An orphan (never sent) matches no filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Sender organisation.
    pub from: Option<String>,
    /// Recipient organisation.
    pub to: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Sent at or after.
    pub since: Option<Instant>,
    /// Sent before.
    pub until: Option<Instant>,
    /// Sender or recipient (the server's tenant boundary).
    pub party: Option<String>,
}

impl Filter {
    /// Whether any condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether the evaluated message passes.
    pub fn matches(&self, e: &Evaluation) -> bool {
        let eq = |want: &Option<String>, have: &Option<&str>| {
            want.as_ref().is_none_or(|w| *have == Some(w.as_str()))
        };
        eq(&self.from, &e.from)
            && eq(&self.to, &e.to)
            && eq(&self.category, &e.category)
            && eq(&self.channel, &e.channel)
            && self
                .since
                .is_none_or(|s| e.origin_at.is_some_and(|o| o >= s))
            && self
                .until
                .is_none_or(|u| e.origin_at.is_some_and(|o| o < u))
            && self
                .party
                .as_deref()
                .is_none_or(|p| e.from == Some(p) || e.to == Some(p))
    }
}

/// Messages with one of `verdicts` passing the filter, by send time then id. Judged
/// shard by shard on every core.
pub fn report<'a>(
    eval: &Evaluator<'a>,
    verdicts: &[Verdict],
    filter: &Filter,
) -> Vec<Evaluation<'a>> {
    let shards = eval.facts().shards();
    let parts = per_shard(|i| {
        shards[i]
            .iter()
            .map(|(id, m)| eval.evaluate_known(id, m))
            .filter(|e| verdicts.contains(&e.verdict) && filter.matches(e))
            .collect::<Vec<_>>()
    });
    let mut rows: Vec<Evaluation<'a>> = parts.into_iter().flatten().collect();
    rows.sort_unstable_by(|a, b| (a.origin_at, &a.message).cmp(&(b.origin_at, &b.message)));
    rows
}

/// One incident of a message, with the message's effective fields and current
/// verdict: a row of `report incidents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncidentRow<'a> {
    /// The message's key (answers show its bare id).
    #[serde(serialize_with = "bare_key")]
    pub message: &'a str,
    /// Effective sender.
    pub from: Option<&'a str>,
    /// Effective recipient.
    pub to: Option<&'a str>,
    /// Effective category.
    pub category: Option<&'a str>,
    /// Effective channel.
    pub channel: Option<&'a str>,
    /// When it was sent.
    pub sent_at: Option<Instant>,
    /// Where the message stands now.
    pub verdict: Verdict,
    /// The episode.
    #[serde(flatten)]
    pub incident: Incident<'a>,
}

fn bare_key<S: serde::Serializer>(key: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(crate::event::split_message_key(key).1)
}

/// The incidents of one of `kinds` (every kind if empty) of messages passing the
/// filter, by `began_at`, then message, then kind; `open_only` keeps those not ended.
/// Judged shard by shard on every core.
pub fn incident_rows<'a>(
    eval: &Evaluator<'a>,
    kinds: &[IncidentKind],
    filter: &Filter,
    open_only: bool,
) -> Vec<IncidentRow<'a>> {
    let shards = eval.facts().shards();
    let parts = per_shard(|i| {
        let mut rows = Vec::new();
        for (id, m) in &shards[i] {
            let e = eval.evaluate_known(id, m);
            if !filter.matches(&e) {
                continue;
            }
            for incident in eval.incidents_known(id, m, &e) {
                if (kinds.is_empty() || kinds.contains(&incident.kind))
                    && (!open_only || incident.is_open())
                {
                    rows.push(IncidentRow {
                        message: e.message,
                        from: e.from,
                        to: e.to,
                        category: e.category,
                        channel: e.channel,
                        sent_at: e.origin_at,
                        verdict: e.verdict,
                        incident,
                    });
                }
            }
        }
        rows
    });
    let mut rows: Vec<IncidentRow<'a>> = parts.into_iter().flatten().collect();
    rows.sort_unstable_by(|a, b| {
        (a.incident.began_at, a.message, a.incident.kind).cmp(&(
            b.incident.began_at,
            b.message,
            b.incident.kind,
        ))
    });
    rows
}

/// One anomaly, of a message or of a reporter's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnomalyRow {
    /// Which kind.
    pub kind: AnomalyKind,
    /// The message's key, for message anomalies (answers show its bare id).
    #[serde(serialize_with = "bare_id")]
    pub message: Option<String>,
    /// The reporter organisation, for stream anomalies.
    pub org: Option<String>,
    /// The reporter system, for stream anomalies.
    pub system: Option<String>,
    /// The entry that raised it (for a gap: the entry that revealed it; for an
    /// evaluated hand-off anomaly: the hand-off).
    pub seq: u64,
    /// The counterpart entry.
    pub other_seq: Option<u64>,
    /// Particulars.
    pub detail: Option<String>,
    /// First missing reporter seq, for gaps; the repeated one, for duplicates.
    pub from: Option<u64>,
    /// Last missing reporter seq, for gaps.
    pub to: Option<u64>,
}

fn bare_id<S: serde::Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_some(crate::event::split_message_key(k).1),
        None => s.serialize_none(),
    }
}

/// Every anomaly: recorded ones of messages passing the filter, evaluated ones, and
/// those of reporter streams (shown unless the filter selects on category or channel,
/// and then only for a stream of the `--from`/`--to` organisation if one is given).
/// Sorted by kind, then message or stream, then seq.
pub fn anomaly_rows(
    eval: &Evaluator<'_>,
    filter: &Filter,
    kind: Option<AnomalyKind>,
) -> Vec<AnomalyRow> {
    let want = |k: AnomalyKind| kind.is_none_or(|w| w == k);
    let mut rows = Vec::new();
    for (id, m) in eval.facts().messages() {
        let e = eval.evaluate_known(id, m);
        if !filter.is_empty() && !filter.matches(&e) {
            continue;
        }
        for a in &m.anomalies {
            if want(a.kind) {
                rows.push(AnomalyRow {
                    kind: a.kind,
                    message: Some(id.to_string()),
                    org: None,
                    system: None,
                    seq: a.seq,
                    other_seq: a.other_seq,
                    detail: a.detail.clone(),
                    from: None,
                    to: None,
                });
            }
        }
        for (k, seq) in &e.evaluated_anomalies {
            if want(*k) {
                rows.push(AnomalyRow {
                    kind: *k,
                    message: Some(id.to_string()),
                    org: None,
                    system: None,
                    seq: *seq,
                    other_seq: None,
                    detail: None,
                    from: None,
                    to: None,
                });
            }
        }
    }
    let streams_shown = filter.category.is_none()
        && filter.channel.is_none()
        && filter.since.is_none()
        && filter.until.is_none();
    if streams_shown {
        for (org, system, s) in eval.facts().streams() {
            let org_ok = match (&filter.from, &filter.to) {
                (None, None) => true,
                (f, t) => f.as_deref() == Some(org) || t.as_deref() == Some(org),
            } && filter.party.as_deref().is_none_or(|p| p == org);
            if !org_ok {
                continue;
            }
            let stream_row = |kind, seq, from, to| AnomalyRow {
                kind,
                message: None,
                org: Some(org.to_string()),
                system: Some(system.to_string()),
                seq,
                other_seq: None,
                detail: None,
                from: Some(from),
                to,
            };
            if want(AnomalyKind::ReporterSeqGap) {
                for g in &s.gaps {
                    rows.push(stream_row(
                        AnomalyKind::ReporterSeqGap,
                        g.detected_seq,
                        g.from,
                        Some(g.to),
                    ));
                }
            }
            if want(AnomalyKind::ReporterSeqDuplicate) {
                for d in &s.duplicates {
                    rows.push(stream_row(
                        AnomalyKind::ReporterSeqDuplicate,
                        d.seq,
                        d.reporter_seq,
                        None,
                    ));
                }
            }
        }
    }
    rows.sort_unstable_by(|a, b| {
        (a.kind, &a.message, &a.org, &a.system, a.seq)
            .cmp(&(b.kind, &b.message, &b.org, &b.system, b.seq))
    });
    rows
}

/// A key `stats` groups by; several combine (`from` and `month`: one group per
/// sender and month).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// Sender organisation.
    From,
    /// Recipient organisation.
    To,
    /// Channel.
    Channel,
    /// Category.
    Category,
    /// UTC month of the send, `YYYY-MM`.
    Month,
}

impl GroupBy {
    /// Every key, in the order names list them.
    pub const ALL: [GroupBy; 5] = [
        GroupBy::From,
        GroupBy::To,
        GroupBy::Channel,
        GroupBy::Category,
        GroupBy::Month,
    ];

    /// The key's name.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::From => "from",
            GroupBy::To => "to",
            GroupBy::Channel => "channel",
            GroupBy::Category => "category",
            GroupBy::Month => "month",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<GroupBy> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The key's value for a message, borrowed: nothing is allocated per message.
    fn value<'a>(self, e: &Evaluation<'a>) -> KeyValue<'a> {
        // A recorded value spelled `unknown` shares the group of a missing one, as
        // the spelled-out groups always have.
        let s = |v: Option<&'a str>| {
            v.filter(|v| *v != "unknown")
                .map_or(KeyValue::Unknown, KeyValue::Text)
        };
        match self {
            GroupBy::From => s(e.from),
            GroupBy::To => s(e.to),
            GroupBy::Channel => s(e.channel),
            GroupBy::Category => s(e.category),
            GroupBy::Month => e
                .origin_at
                .and_then(|t| t.year_month())
                .map_or(KeyValue::Unknown, |(y, m)| KeyValue::Month(y, m)),
        }
    }
}

/// A group key's value while counting; spelled out only once per group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum KeyValue<'a> {
    /// A value an orphan lacks.
    #[default]
    Unknown,
    Text(&'a str),
    Month(i32, u8),
}

impl KeyValue<'_> {
    fn spelled(self) -> String {
        match self {
            KeyValue::Unknown => "unknown".into(),
            KeyValue::Text(s) => s.to_string(),
            KeyValue::Month(y, m) => format!("{y:04}-{m:02}"),
        }
    }
}

/// Counts per verdict in one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    /// The group: its key values joined by `/` (`all` without keys; `unknown` for
    /// a value an orphan lacks).
    pub group: String,
    /// The group's value of each key, by key name.
    pub keys: BTreeMap<&'static str, String>,
    /// Messages in the group.
    pub total: u64,
    /// Per verdict name, every verdict present (zero included).
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Messages with at least one anomaly.
    pub with_anomalies: u64,
    /// Per incident kind, every kind present (zero included): how many incidents
    /// of that kind the group's messages had, ended or not.
    pub incidents: BTreeMap<&'static str, u64>,
    /// Messages with at least one incident.
    pub with_incidents: u64,
}

/// Counts per verdict and incident kind, grouped by the keys `by` (one group when
/// empty), for messages passing the filter; groups sorted. Counted shard by shard
/// on every core.
pub fn stats(eval: &Evaluator<'_>, by: &[GroupBy], filter: &Filter) -> Vec<StatsRow> {
    stats_many(eval, &[by.to_vec()], filter)
        .pop()
        .unwrap_or_default()
}

/// [`stats`] for several groupings at once: each message is judged once and counted
/// in every grouping (what a dashboard asks together costs one pass).
pub fn stats_many(
    eval: &Evaluator<'_>,
    groupings: &[Vec<GroupBy>],
    filter: &Filter,
) -> Vec<Vec<StatsRow>> {
    /// A group's counts while counting: arrays indexed as `Verdict::ALL` and
    /// `IncidentKind::ALL` (no map lookup per message).
    #[derive(Default)]
    struct Acc {
        total: u64,
        with_anomalies: u64,
        with_incidents: u64,
        verdicts: [u64; Verdict::ALL.len()],
        incidents: [u64; IncidentKind::ALL.len()],
    }
    /// A group's key values in the grouping's order (unused places stay `Unknown`,
    /// alike for every group of one grouping).
    type Key<'a> = [KeyValue<'a>; GroupBy::ALL.len()];
    type Groups<'a> = foldhash::HashMap<Key<'a>, Acc>;
    let shards = eval.facts().shards();
    let parts = per_shard(|i| {
        let mut all: Vec<Groups> = groupings.iter().map(|_| Groups::default()).collect();
        for (id, m) in &shards[i] {
            let e = eval.evaluate_known(id, m);
            if !filter.matches(&e) {
                continue;
            }
            let incidents = eval.incidents_known(id, m, &e);
            let anomalous = e.recorded_anomalies + e.evaluated_anomalies.len() > 0;
            let verdict = Verdict::ALL
                .iter()
                .position(|v| *v == e.verdict)
                .expect("every verdict is in ALL");
            let values = GroupBy::ALL.map(|k| k.value(&e));
            for (by, groups) in groupings.iter().zip(all.iter_mut()) {
                let mut key = Key::default();
                for (place, k) in key.iter_mut().zip(by) {
                    *place = values[*k as usize];
                }
                let acc = groups.entry(key).or_default();
                acc.total += 1;
                acc.verdicts[verdict] += 1;
                acc.with_anomalies += u64::from(anomalous);
                acc.with_incidents += u64::from(!incidents.is_empty());
                for inc in &incidents {
                    if let Some(k) = IncidentKind::ALL.iter().position(|k| *k == inc.kind) {
                        acc.incidents[k] += 1;
                    }
                }
            }
        }
        all
    });
    let mut merged: Vec<Groups> = groupings.iter().map(|_| Groups::default()).collect();
    for part in parts {
        for (groups, part) in merged.iter_mut().zip(part) {
            for (key, a) in part {
                match groups.get_mut(&key) {
                    None => {
                        groups.insert(key, a);
                    }
                    Some(t) => {
                        t.total += a.total;
                        t.with_anomalies += a.with_anomalies;
                        t.with_incidents += a.with_incidents;
                        for (x, y) in t.verdicts.iter_mut().zip(a.verdicts) {
                            *x += y;
                        }
                        for (x, y) in t.incidents.iter_mut().zip(a.incidents) {
                            *x += y;
                        }
                    }
                }
            }
        }
    }
    merged
        .into_iter()
        .zip(groupings)
        .map(|(groups, by)| {
            let mut rows: Vec<(Vec<String>, String, Acc)> = groups
                .into_iter()
                .map(|(key, a)| {
                    let values: Vec<String> =
                        key.iter().take(by.len()).map(|v| v.spelled()).collect();
                    let group = if values.is_empty() {
                        "all".to_string()
                    } else {
                        values.join("/")
                    };
                    (values, group, a)
                })
                .collect();
            rows.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            rows.into_iter()
                .map(|(values, group, a)| StatsRow {
                    group,
                    keys: by.iter().map(|k| k.name()).zip(values).collect(),
                    total: a.total,
                    verdicts: Verdict::ALL
                        .iter()
                        .map(|v| v.name())
                        .zip(a.verdicts)
                        .collect(),
                    with_anomalies: a.with_anomalies,
                    incidents: IncidentKind::ALL
                        .iter()
                        .map(|k| k.name())
                        .zip(a.incidents)
                        .collect(),
                    with_incidents: a.with_incidents,
                })
                .collect()
        })
        .collect()
}
