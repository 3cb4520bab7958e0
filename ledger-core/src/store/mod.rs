//! Storage: the [`Store`] trait every engine implements, and the embedded engine
//! ([`FileStore`]): segment files as the log of record, with derived indexes in redb.
//!
//! **Contract.** `append` returns receipts only after the entries are durable; seqs
//! are gapless from 0 and never reused; stored bytes are the hashed bytes; entries
//! are never rewritten. An error after which the on-disk state is unknown (a failed
//! write or fsync) poisons the store until it is reopened and recovered.

pub mod append;
mod file;
mod import;
mod index;
pub mod io;
mod log;
mod recovery;
mod salvage;
mod snapshot;
mod writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use file::{FileStore, InitOptions, OpenReport, read_info, reindex};
pub(crate) use file::{write_private, write_whole};
pub use import::Import;
pub use io::{LogIo, OsIo};
pub use salvage::{Salvaged, Tailed, salvage, with_tail};
pub use snapshot::{Snapshot, SnapshotSource};

use crate::checkpoint::CheckpointError;
use crate::event::Event;
use crate::hash::{Hash, HashAlg};
use crate::merkle::{self, SubtreeSource};
use crate::rotation::KeyHistory;

/// Every signed checkpoint of `store`, (size, note) in ascending size.
pub fn all_checkpoints(store: &dyn Store) -> Result<Vec<(u64, String)>, StoreError> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let page = store.checkpoints(from, 1000)?;
        let Some(last) = page.last() else { break };
        from = last.size + 1;
        let full = page.len() == 1000;
        out.extend(page.into_iter().map(|c| (c.size, c.note)));
        if !full {
            break;
        }
    }
    Ok(out)
}

/// What identifies a ledger: its name, hash function and format (`ledger.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerInfo {
    /// The highest entry format the ledger may hold (1, 2, or 3 once its key was replaced;
    /// FORMAT.md §9, §17).
    pub format: u64,
    /// The log's origin: its name in checkpoints and the name of its key.
    pub origin: String,
    /// The hash function, fixed for the ledger's life.
    #[serde(with = "alg_name")]
    pub hash: HashAlg,
}

impl LedgerInfo {
    /// The format of the events the ledger takes: its format, but 2 for a format-3
    /// ledger (format 3 adds key announcements, not event rules).
    pub fn event_format(&self) -> u8 {
        u8::try_from(self.format)
            .unwrap_or(u8::MAX)
            .min(crate::event::FORMAT_LATEST)
    }
}

mod alg_name {
    use crate::hash::HashAlg;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(a: &HashAlg, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashAlg, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Proof that an event is recorded: its seq and entry hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Position of the entry in the log.
    pub seq: u64,
    /// Entry hash, H(0x00 ‖ entry bytes).
    pub hash: Hash,
    /// True when the event's id was already recorded with the same content, so
    /// this is the original receipt and nothing new was appended.
    pub duplicate: bool,
}

impl Receipt {
    /// The receipt of an entry appended now.
    pub fn new(seq: u64, hash: Hash) -> Receipt {
        Receipt {
            seq,
            hash,
            duplicate: false,
        }
    }

    /// The original receipt of an event recorded before.
    pub fn duplicate(seq: u64, hash: Hash) -> Receipt {
        Receipt {
            seq,
            hash,
            duplicate: true,
        }
    }
}

/// What an asynchronous append calls once with its outcome.
pub type CommitCallback = Box<dyn FnOnce(Result<Vec<Receipt>, StoreError>) + Send>;

/// Splits `on_commit` for handing to a writer: the first half goes with the request;
/// the second is for when the request could not be handed over at all. Whichever is
/// called first calls `on_commit`, and only once.
pub fn commit_callback(
    on_commit: impl FnOnce(Result<Vec<Receipt>, StoreError>) + Send + 'static,
) -> (CommitCallback, impl FnOnce(StoreError)) {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(on_commit)));
    let writer_slot = slot.clone();
    let reply: CommitCallback = Box::new(move |r| {
        if let Some(f) = writer_slot.lock().expect("reply slot").take() {
            f(r);
        }
    });
    let refused = move |e: StoreError| {
        if let Some(f) = slot.lock().expect("reply slot").take() {
            f(Err(e));
        }
    };
    (reply, refused)
}

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
}

/// An audit path for one entry in the tree of a given size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's seq (its leaf index).
    pub seq: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// The entry hash.
    pub leaf_hash: Hash,
    /// Root of the tree of `size` entries.
    pub root: Hash,
    /// Sibling hashes, deepest first.
    pub path: Vec<Hash>,
}

fn hexes(hs: &[Hash]) -> Vec<String> {
    hs.iter().map(crate::hash::to_hex).collect()
}

impl InclusionProof {
    /// The proof as JSON (the shape `ledger prove` prints and the server returns),
    /// with the signed checkpoint of its size if there is one.
    pub fn to_json(&self, alg: HashAlg, checkpoint: Option<String>) -> serde_json::Value {
        serde_json::json!({
            "hash": alg.name(), "seq": self.seq, "size": self.size,
            "leaf_hash": crate::hash::to_hex(&self.leaf_hash), "root": crate::hash::to_hex(&self.root),
            "path": hexes(&self.path), "checkpoint": checkpoint
        })
    }

    /// Checks the path against the proof's own root.
    pub fn verify(&self, alg: HashAlg) -> Result<(), merkle::ProofError> {
        merkle::verify_inclusion(
            alg,
            &self.leaf_hash,
            self.seq,
            self.size,
            &self.path,
            &self.root,
        )
    }
}

/// A proof that the tree of `from` entries is a prefix of the tree of `to` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Older size.
    pub from: u64,
    /// Newer size.
    pub to: u64,
    /// Root at the older size.
    pub from_root: Hash,
    /// Root at the newer size.
    pub to_root: Hash,
    /// Proof hashes, deepest first.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// The proof as JSON, with the signed checkpoints of both sizes where they exist.
    pub fn to_json(
        &self,
        alg: HashAlg,
        from_checkpoint: Option<String>,
        to_checkpoint: Option<String>,
    ) -> serde_json::Value {
        serde_json::json!({
            "hash": alg.name(), "from": self.from, "to": self.to,
            "from_root": crate::hash::to_hex(&self.from_root), "to_root": crate::hash::to_hex(&self.to_root),
            "path": hexes(&self.path),
            "from_checkpoint": from_checkpoint, "to_checkpoint": to_checkpoint
        })
    }

    /// Checks the proof against its own roots.
    pub fn verify(&self, alg: HashAlg) -> Result<(), merkle::ProofError> {
        merkle::verify_consistency(
            alg,
            self.from,
            self.to,
            &self.from_root,
            &self.to_root,
            &self.path,
        )
    }
}

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and to which file.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The derived index failed.
    #[error("index database: {0}")]
    Index(#[from] redb::Error),
    /// `index.redb` cannot be read. It is derived from the log, so nothing recorded is
    /// lost: `ledger reindex` moves it aside (it is kept) and rebuilds it.
    #[error(
        "index.redb is damaged ({0}); it is derived from the log, so nothing recorded is lost: \
         run `ledger reindex` to rebuild it (the damaged file is kept aside)"
    )]
    IndexDamaged(String),
    /// Another process holds the store.
    #[error("the store at {0} is in use by another process (is `ledger serve` running on it?)")]
    Locked(PathBuf),
    /// An append or a signature asked of a read-only copy (a bundle, a directory
    /// without `signing.key`, or a store another process holds).
    #[error(
        "{0} is open read-only (an export bundle, no signing.key, or another process holds it): \
         only the ledger's own writer with its signing key appends and signs"
    )]
    ReadOnly(PathBuf),
    /// The directory holds no ledger.
    #[error("no ledger at {0} (create one with `ledger init --origin NAME`)")]
    NotALedger(PathBuf),
    /// `init` on a directory that already holds something.
    #[error("{0} already exists and is not empty; refusing to create a ledger over it")]
    AlreadyExists(PathBuf),
    /// Stored data contradicts itself; nothing was repaired.
    #[error("corrupt store: {0} (run `ledger verify` for a full report)")]
    Corrupt(String),
    /// The event id is recorded with other content.
    #[error(
        "event {id:?} is format {event}, but this ledger holds format {ledger} entries \
         (run `ledger upgrade` to move it to format {event})"
    )]
    FormatTooNew {
        /// The event's id.
        id: String,
        /// The event's format.
        event: u8,
        /// The ledger's format (`ledger.json`).
        ledger: u64,
    },
    /// An event with this id is already recorded with different content.
    #[error("event id {id:?} is already recorded at seq {seq} with different content")]
    Conflict {
        /// The event id.
        id: String,
        /// Seq of the recorded event.
        seq: u64,
    },
    /// The writer failed a write, an fsync, a checkpoint or an index flush earlier and
    /// refuses further appends.
    #[error(
        "the store stopped accepting appends after a failed write, fsync, checkpoint or index \
         flush; reopen it to recover"
    )]
    Poisoned,
    /// A seq, size or range outside the log.
    #[error("{0}")]
    OutOfRange(String),
    /// A key or checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A database engine (PostgreSQL) failed or refused.
    #[error("database: {0}")]
    Database(String),
    /// Appends cannot be taken here now, but may be soon: another process holds the
    /// writer lease, or the database is unreachable. Nothing was appended; retry.
    #[error("unavailable, retry: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Wraps an OS error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Index(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What [`Store::scan`] calls with each entry's seq and bytes.
pub type EntryVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StoreError> + 'a;

/// A ledger's storage engine. Implementations: [`FileStore`] (embedded).
///
/// Proofs and roots are provided methods built on [`Store::subtree`], so every
/// engine proves the same way.
pub trait Store: Send + Sync {
    /// The ledger's identity.
    fn info(&self) -> &LedgerInfo;

    /// The keys that check this ledger's checkpoints: its `verifier.key`, one key
    /// unless the signing key was replaced (the newest signs new checkpoints).
    fn verifier_key(&self) -> &KeyHistory;

    /// Appends events through the group-committing writer. Returns one receipt per
    /// event, in order, after the entries are durable. A request is all or nothing:
    /// if one event conflicts, none of the request is appended.
    fn append(&self, events: Vec<Event>) -> Result<Vec<Receipt>, StoreError>;

    /// Appends without blocking the calling thread: `on_commit` is called once with
    /// what [`Store::append`] would return, on the writer's thread once the group is
    /// durable (for callers that wait asynchronously, like the server); it must
    /// return quickly. A store without a writer of its own answers at once.
    fn append_then(&self, events: Vec<Event>, on_commit: CommitCallback) {
        on_commit(self.append(events));
    }

    /// Whether a failed write stopped appends until the store is reopened (and
    /// recovered).
    fn is_poisoned(&self) -> bool {
        false
    }

    /// Stops the writer after what it holds, signing a final checkpoint; appends
    /// after it fail. Dropping the store does the same.
    fn close(&self) {}

    /// Number of entries committed.
    fn size(&self) -> u64;

    /// Calls `f(seq, entry bytes)` for every entry in `[from, to)`, in order.
    fn scan(&self, from: u64, to: u64, f: &mut EntryVisitor<'_>) -> Result<(), StoreError>;

    /// Seqs of every entry about `message`, ascending.
    fn message_seqs(&self, message: &str) -> Result<Vec<u64>, StoreError>;

    /// Seq of the entry that recorded event `id`.
    fn event_seq(&self, id: &str) -> Result<Option<u64>, StoreError>;

    /// Hash of the perfect subtree `index` at `level` (level 0: entry hashes).
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError>;

    /// The newest signed checkpoint.
    fn latest_checkpoint(&self) -> Result<SignedCheckpoint, StoreError>;

    /// Signed checkpoints with size ≥ `from_size`, ascending, at most `limit`.
    fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError>;

    /// The signed checkpoint of exactly `size` entries, if one was made.
    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .checkpoints(size, 1)?
            .into_iter()
            .find(|c| c.size == size)
            .map(|c| c.note))
    }

    /// The stored bytes of one entry.
    fn entry(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = None;
        self.check_size(seq + 1)?;
        self.scan(seq, seq + 1, &mut |_, b| {
            out = Some(b.to_vec());
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::OutOfRange(format!("no entry {seq}")))
    }

    /// Errors unless `size` entries are committed.
    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let have = self.size();
        if size > have {
            return Err(StoreError::OutOfRange(format!(
                "the log has {have} entries; {size} were asked for"
            )));
        }
        Ok(())
    }

    /// Merkle root of the first `size` entries.
    fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        merkle::subtree_root(self.info().hash, &Subtrees(self), 0, size)
    }

    /// Inclusion proof of entry `seq` in the tree of `size` entries.
    fn inclusion_proof(&self, seq: u64, size: u64) -> Result<InclusionProof, StoreError> {
        self.check_size(size)?;
        if seq >= size {
            return Err(StoreError::OutOfRange(format!(
                "seq {seq} is not in the tree of size {size}"
            )));
        }
        let alg = self.info().hash;
        let src = Subtrees(self);
        Ok(InclusionProof {
            seq,
            size,
            leaf_hash: self.subtree(0, seq)?,
            root: merkle::subtree_root(alg, &src, 0, size)?,
            path: merkle::inclusion_proof(alg, &src, seq, size)?,
        })
    }

    /// Consistency proof between the trees of `from` and `to` entries.
    fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, StoreError> {
        self.check_size(to)?;
        if from > to {
            return Err(StoreError::OutOfRange(format!(
                "consistency from {from} to smaller size {to}"
            )));
        }
        let alg = self.info().hash;
        let src = Subtrees(self);
        Ok(ConsistencyProof {
            from,
            to,
            from_root: merkle::subtree_root(alg, &src, 0, from)?,
            to_root: merkle::subtree_root(alg, &src, 0, to)?,
            path: merkle::consistency_proof(alg, &src, from, to)?,
        })
    }
}

/// Adapts a store to the Merkle code's subtree source.
struct Subtrees<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> SubtreeSource for Subtrees<'_, S> {
    type Error = StoreError;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.0.subtree(level, index)
    }
}
