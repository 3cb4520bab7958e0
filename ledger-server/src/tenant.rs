//! The tenant boundary, in one place: which messages, entries and stream items a
//! principal may see. Every read handler asks here; nothing else decides.
//!
//! - `ledger:regulator` sees everything; `ledger:audit` sees every entry (checkpoints,
//!   proofs and raw entries are about the whole log, not about messages).
//! - `ledger:read` sees a message when the principal's organisation is its sender or
//!   its recipient (inherited through resends), and the entries it reported itself.
//! - A message the principal may not see is answered as if it did not exist (404), so
//!   the boundary does not leak which message ids exist.

use ledger_core::projection::{Evaluation, Filter};

use crate::auth::{Principal, Scope};
use crate::error::ApiError;

/// How much of the ledger's messages a principal reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every message.
    All,
    /// Messages this organisation sent or received.
    Party(String),
}

/// The principal's reach over messages; 403 without a reading scope.
pub fn message_reach(p: &Principal) -> Result<Reach, ApiError> {
    if p.has(Scope::Regulator) {
        return Ok(Reach::All);
    }
    p.require(&[Scope::Read, Scope::Regulator])?;
    Ok(Reach::Party(p.org.clone()))
}

/// Narrows a question's filter to the principal's reach.
pub fn scoped(reach: &Reach, mut filter: Filter) -> Filter {
    if let Reach::Party(org) = reach {
        filter.party = Some(org.clone());
    }
    filter
}

/// Whether an evaluated message is within reach.
pub fn may_see(reach: &Reach, e: &Evaluation<'_>) -> bool {
    match reach {
        Reach::All => true,
        Reach::Party(org) => e.from == Some(org.as_str()) || e.to == Some(org.as_str()),
    }
}

/// Whether a stream item about an entry is within reach: the entry's message is, or the
/// principal reported the entry itself.
pub fn may_see_entry(p: &Principal, reporter_org: &str, message_visible: bool) -> bool {
    p.has(Scope::Regulator) || p.has(Scope::Audit) || message_visible || reporter_org == p.org
}

/// 403 unless the principal may fetch checkpoints, proofs and raw entries.
pub fn require_audit(p: &Principal) -> Result<(), ApiError> {
    p.require(&[Scope::Audit, Scope::Regulator])
}

/// 403 unless every event is reported by the principal's own organisation.
pub fn require_own_reports<'a>(
    p: &Principal,
    reporters: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    p.require(&[Scope::Write])?;
    let foreign: Vec<usize> = reporters
        .enumerate()
        .filter(|(_, org)| *org != p.org)
        .map(|(i, _)| i)
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "foreign_reporter",
        format!(
            "reporter.org must be the token's organisation {}; {} event(s) report for another (first at index {}); nothing was recorded",
            p.org,
            foreign.len(),
            foreign[0]
        ),
    )
    .with_details(serde_json::json!({ "indexes": foreign })))
}
