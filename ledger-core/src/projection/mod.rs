//! Projections: each message's state, deadlines, verdict and anomalies, computed from
//! the log (normative spec: `docs/projections.md`).
//!
//! Two layers, kept apart: [`Facts`] are what the log says, applied entry by entry
//! in seq order, free of policy and clock, persisted and caught up incrementally;
//! an [`Evaluator`] judges facts under a [`Policy`] at a time and is never stored.
//! So a policy change needs no rebuild, and the facts digest of a replay does not
//! depend on the policy.
//!
//! ```no_run
//! # use ledger_core::{FileStore, projection::{self, Instant, Policy, Evaluator, Verdict}};
//! # let (store, _) = FileStore::open("ledger-data".as_ref())?;
//! let facts = projection::replay(&store, store_size(&store), &mut |_| {})?;
//! # fn store_size(s: &FileStore) -> u64 { use ledger_core::Store; s.size() }
//! let policy = Policy::default_policy();
//! let eval = Evaluator::new(&facts, &policy, Instant::now());
//! let lost = eval.evaluate_all().filter(|e| e.verdict == Verdict::Lost).count();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod digest;
mod facts;
mod fields;
mod incident;
mod instant;
mod messages;
mod names;
mod persist;
mod policy;
mod report;
mod verdict;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use digest::{Digests, evaluation_digest, facts_digest};
pub use facts::{
    Anomaly, AnomalyKind, ContentDigest, Duplicate, Facts, Gap, Hop, Link, Mark, MessageFacts,
    Receipt, Refs, Resolution, Sent, Status, Stream,
};
pub use incident::{Incident, IncidentKind};
pub use instant::Instant;
pub use names::Name;
pub use persist::{CatchUp, FILE_NAME, load_or_rebuild, save};
pub use policy::{DEFAULT_POLICY, Policy, PolicyError, Rule, parse_duration};
pub use report::{
    AnomalyRow, Filter, GroupBy, IncidentRow, StatsRow, anomaly_rows, incident_rows, report, stats,
    stats_many,
};
pub use verdict::{
    Deadline, DeadlineKind, DeadlineState, Evaluation, Evaluator, ExpirySource, Verdict,
};

use crate::entry;
use crate::event::EventType;
use crate::store::{Store, StoreError};

/// Clock-skew tolerance between reporters, in seconds (projection version 2).
pub const SKEW_SECONDS: i64 = 120;

/// Why a projection could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// An entry's event cannot be read (the log is corrupt: appends validate events).
    #[error("entry {seq}: {reason}")]
    BadEntry {
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Entries applied out of seq order (a bug in the caller).
    #[error("entry {got} applied where {expected} was next")]
    OutOfOrder {
        /// The next seq expected.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The persisted projection could not be written.
    #[error("write the projection to {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Progress of a long replay: entries applied so far.
pub type Progress<'a> = dyn FnMut(u64) + 'a;

/// Applies entries `facts.covered() .. to` from the store.
pub fn catch_up(
    store: &dyn Store,
    facts: &mut Facts,
    to: u64,
    progress: &mut Progress<'_>,
) -> Result<(), ProjectionError> {
    catch_up_happened_by(store, facts, to, None, progress)
}

/// Builds the facts of entries `0 .. to` from scratch, leaving out every event that
/// happened (its `at`) after `happened_by`: how things stood at that time, as far as
/// the ledger learned it by entry `to` (§5).
pub fn replay_happened_by(
    store: &dyn Store,
    to: u64,
    happened_by: Instant,
    progress: &mut Progress<'_>,
) -> Result<Facts, ProjectionError> {
    let mut facts = Facts::default();
    catch_up_happened_by(store, &mut facts, to, Some(happened_by), progress)?;
    Ok(facts)
}

fn catch_up_happened_by(
    store: &dyn Store,
    facts: &mut Facts,
    to: u64,
    happened_by: Option<Instant>,
    progress: &mut Progress<'_>,
) -> Result<(), ProjectionError> {
    let from = facts.covered();
    if from >= to {
        return Ok(());
    }
    let mut failure = None;
    let result = store.scan(from, to, &mut |seq, bytes| {
        let applied = match happened_by {
            Some(t) => facts.apply_entry_happened_by(seq, bytes, t),
            None => facts.apply_entry(seq, bytes),
        };
        if let Err(e) = applied {
            failure = Some(e);
            return Err(StoreError::Corrupt(format!(
                "entry {seq} cannot be projected"
            )));
        }
        if seq % 65_536 == 0 {
            progress(seq - from);
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result?;
    progress(to - from);
    Ok(())
}

/// Builds the facts of entries `0 .. to` from scratch.
pub fn replay(
    store: &dyn Store,
    to: u64,
    progress: &mut Progress<'_>,
) -> Result<Facts, ProjectionError> {
    let mut facts = Facts::default();
    catch_up(store, &mut facts, to, progress)?;
    Ok(facts)
}

/// When an entry's event happened and when the ledger recorded it, with whose
/// report it was: what the reported-late finding reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryTimes {
    /// The message's key.
    pub key: String,
    /// The event's type.
    pub kind: EventType,
    /// When it happened, as reported.
    pub at: Instant,
    /// When the ledger recorded it.
    pub recorded_at: Instant,
    /// The reporting organisation.
    pub org: String,
    /// The reporting system.
    pub system: String,
}

/// Reads [`EntryTimes`] from stored entry bytes; `None` for a key announcement,
/// which records no message's event.
pub fn entry_times(seq: u64, bytes: &[u8]) -> Result<Option<EntryTimes>, ProjectionError> {
    let bad = |reason: String| ProjectionError::BadEntry { seq, reason };
    let parsed = entry::parse_envelope(bytes).map_err(|e| bad(e.to_string()))?;
    if parsed.is_key_entry() {
        return Ok(None);
    }
    let recorded_at = Instant::parse(parsed.recorded_at)
        .ok_or_else(|| bad(format!("bad recorded_at {:?}", parsed.recorded_at)))?;
    let view = fields::EventView::parse(parsed.event, parsed.v).map_err(bad)?;
    Ok(Some(EntryTimes {
        key: view.key.to_string(),
        kind: view.kind,
        at: view.at,
        recorded_at,
        org: view.f.reporter.org.to_string(),
        system: view.f.reporter.system.to_string(),
    }))
}

/// The number of entries recorded at or before `t`: the prefix the ledger knew at
/// `t`. `recorded_at` never decreases along the log, so this is a binary search.
pub fn prefix_at(store: &dyn Store, t: Instant) -> Result<u64, ProjectionError> {
    let (mut lo, mut hi) = (0u64, store.size());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let bytes = store.entry(mid)?;
        let parsed = entry::parse_envelope(&bytes).map_err(|e| ProjectionError::BadEntry {
            seq: mid,
            reason: e.to_string(),
        })?;
        let at = Instant::parse(parsed.recorded_at).ok_or_else(|| ProjectionError::BadEntry {
            seq: mid,
            reason: format!("bad recorded_at {:?}", parsed.recorded_at),
        })?;
        if at <= t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The `recorded_at` of the entry before `size` (the evaluation time `replay`
/// reports, reproducible anywhere), or the epoch for an empty log.
pub fn recorded_at_before(store: &dyn Store, size: u64) -> Result<Instant, ProjectionError> {
    if size == 0 {
        return Ok(Instant::EPOCH);
    }
    let bytes = store.entry(size - 1)?;
    let parsed = entry::parse_envelope(&bytes).map_err(|e| ProjectionError::BadEntry {
        seq: size - 1,
        reason: e.to_string(),
    })?;
    Instant::parse(parsed.recorded_at).ok_or_else(|| ProjectionError::BadEntry {
        seq: size - 1,
        reason: "bad recorded_at".into(),
    })
}

/// The keys of the messages a reader may mean by `id`, from the store's message
/// index alone (no projection): the format-1 message `id`; the format-2 message
/// `FROM/TO/ID` when `id` has that form; every format-2 message whose bare id is
/// `id`. In key order, without repeats; the caller keeps those it may show.
pub fn find_messages(store: &dyn Store, id: &str) -> Result<Vec<String>, ProjectionError> {
    let mut out: Vec<String> = Vec::new();
    if !store.message_seqs(id)?.is_empty() {
        out.push(id.to_string());
    }
    if let Some(key) = crate::event::key_from_path(id)
        && !store.message_seqs(&key)?.is_empty()
    {
        out.push(key);
    }
    let alias = format!("{}{id}", crate::event::KEY_SEPARATOR);
    for seq in store.message_seqs(&alias)? {
        let bytes = store.entry(seq)?;
        let bad = |reason: String| ProjectionError::BadEntry { seq, reason };
        let parsed = entry::parse_envelope(&bytes).map_err(|e| bad(e.to_string()))?;
        let keys = entry::index_keys(parsed.event, parsed.v).map_err(bad)?;
        for k in std::iter::once(keys.message).chain(keys.new_message) {
            if crate::event::split_message_key(&k).1 == id && !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The facts of one message's resend family only, from entries `0 .. to`: exact for
/// every message of the family (their facts depend on nothing else), and fast, since
/// it reads only their entries through the message index. Reporter streams are
/// not computed. `None` if no entry names the message.
///
/// With `happened_by`, events that happened after it are left out (§5); a message
/// none of whose events happened by then is `None` too.
pub fn family_facts(
    store: &dyn Store,
    message: &str,
    to: u64,
    happened_by: Option<Instant>,
) -> Result<Option<Facts>, ProjectionError> {
    let mut seen = BTreeSet::new();
    let mut seqs = BTreeSet::new();
    let mut pending = vec![message.to_string()];
    let mut entries = std::collections::BTreeMap::new();
    while let Some(m) = pending.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        for seq in store.message_seqs(&m)? {
            if seq >= to || !seqs.insert(seq) {
                continue;
            }
            let bytes = store.entry(seq)?;
            {
                let parsed =
                    entry::parse_envelope(&bytes).map_err(|e| ProjectionError::BadEntry {
                        seq,
                        reason: e.to_string(),
                    })?;
                let view = fields::EventView::parse(parsed.event, parsed.v)
                    .map_err(|reason| ProjectionError::BadEntry { seq, reason })?;
                if view.kind == EventType::Resent {
                    pending.push(view.key.to_string());
                    pending.extend(view.linked.as_deref().map(str::to_string));
                }
            }
            entries.insert(seq, bytes);
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let mut facts = Facts::default();
    for (seq, bytes) in entries {
        facts.apply_sparse(seq, &bytes, happened_by)?;
    }
    if facts.message(message).is_none() {
        return Ok(None);
    }
    Ok(Some(facts))
}
