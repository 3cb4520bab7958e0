//! The derived index, in redb. Everything here can be rebuilt from the segment files
//! and `checkpoints.log` (`ledger reindex`).
//!
//! To keep the index small and the append path short, two tables are sparse: entry
//! offsets are kept for every [`OFFSET_STRIDE`]th seq, and Merkle subtrees from level
//! [`NODE_LEVEL_MIN`] up; anything finer is read from the log (at most 64 entries).

use std::collections::{BTreeMap, HashMap};

use redb::{MultimapTableDefinition, ReadableTable, TableDefinition, WriteTransaction};

use crate::hash::Hash;

use super::StoreError;

/// `covered`: entries indexed; `checkpoints_offset`: bytes of `checkpoints.log` indexed.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Event id → seq.
pub(crate) const IDS: TableDefinition<&str, u64> = TableDefinition::new("event_ids");
/// Message id → seqs.
pub(crate) const MESSAGES: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("message_seqs");
/// Seq (a multiple of [`OFFSET_STRIDE`], or a segment's first) → byte offset in its segment.
pub(crate) const OFFSETS: TableDefinition<u64, u64> = TableDefinition::new("entry_offsets");
/// [`node_key`] → perfect subtree hash, for levels ≥ [`NODE_LEVEL_MIN`].
pub(crate) const NODES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("merkle_nodes");
/// Tree size → signed checkpoint note.
pub(crate) const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");

pub(crate) const COVERED: &str = "covered";
pub(crate) const CHECKPOINTS_OFFSET: &str = "checkpoints_offset";

/// Offsets are indexed for seqs that are multiples of this.
pub(crate) const OFFSET_STRIDE: u64 = 64;
/// Lowest Merkle level whose subtrees are indexed (2^6 = 64 entries).
pub(crate) const NODE_LEVEL_MIN: u32 = 6;

/// Key of subtree `index` at `level`: the level in the top 6 bits.
pub(crate) fn node_key(level: u32, index: u64) -> u64 {
    debug_assert!(level < 64 && index < (1 << 58));
    (u64::from(level) << 58) | index
}

/// Creates every table, so that read transactions find them.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(IDS)?;
    txn.open_multimap_table(MESSAGES)?;
    txn.open_table(OFFSETS)?;
    txn.open_table(NODES)?;
    txn.open_table(CHECKPOINTS)?;
    Ok(())
}

/// What indexing one entry writes.
pub(crate) struct Tables<'t> {
    pub ids: redb::Table<'t, &'static str, u64>,
    pub messages: redb::MultimapTable<'t, &'static str, u64>,
    pub offsets: redb::Table<'t, u64, u64>,
    pub nodes: redb::Table<'t, u64, [u8; 32]>,
    pub checkpoints: redb::Table<'t, u64, &'static str>,
    pub meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            ids: txn.open_table(IDS)?,
            messages: txn.open_multimap_table(MESSAGES)?,
            offsets: txn.open_table(OFFSETS)?,
            nodes: txn.open_table(NODES)?,
            checkpoints: txn.open_table(CHECKPOINTS)?,
            meta: txn.open_table(META)?,
        })
    }

    pub(crate) fn meta(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.meta.get(key)?.map(|g| g.value()).unwrap_or(0))
    }
}

/// Index entries of the newest appends, held in memory until the writer flushes them
/// to redb in one sorted transaction. Random-key inserts one commit batch at a time
/// would copy and checksum a B-tree page per key per batch; batched and sorted, they
/// share pages. Readers look here as well as in redb (see `FileStore`). Nothing here
/// needs saving: after a crash, the index catches up from the log at open.
#[derive(Default)]
pub(crate) struct Recent {
    pub ids: HashMap<String, u64, foldhash::fast::RandomState>,
    pub messages: HashMap<String, Vec<u64>, foldhash::fast::RandomState>,
    pub offsets: BTreeMap<u64, u64>,
    pub nodes: HashMap<u64, Hash, foldhash::fast::RandomState>,
    pub checkpoints: BTreeMap<u64, String>,
    /// Entries covered once flushed, and bytes of `checkpoints.log` indexed.
    pub covered: Option<u64>,
    pub checkpoints_offset: Option<u64>,
    /// Entries held.
    pub entries: usize,
}

impl Recent {
    /// Indexes one entry's event id, its message (and the message a `resent`
    /// declares) and, at stride points, its offset.
    pub(crate) fn index_entry(
        &mut self,
        seq: u64,
        id: &str,
        message: &str,
        linked: Option<&str>,
        offset: u64,
        segment_first: bool,
    ) {
        self.ids.insert(id.to_string(), seq);
        let aliases = [message]
            .into_iter()
            .chain(linked)
            .filter_map(crate::event::bare_alias);
        for m in [message]
            .into_iter()
            .chain(linked)
            .map(std::borrow::Cow::Borrowed)
            .chain(aliases.map(std::borrow::Cow::Owned))
        {
            match self.messages.get_mut(&*m) {
                Some(v) => v.push(seq),
                None => {
                    self.messages.insert(m.into_owned(), vec![seq]);
                }
            }
        }
        self.index_position(seq, offset, segment_first);
    }

    /// Counts one entry and, at stride points, keeps its offset: all that is filed
    /// for an entry without an event (a key announcement).
    pub(crate) fn index_position(&mut self, seq: u64, offset: u64, segment_first: bool) {
        if segment_first || seq.is_multiple_of(OFFSET_STRIDE) {
            self.offsets.insert(seq, offset);
        }
        self.entries += 1;
    }

    /// Holds a completed subtree if its level is indexed.
    pub(crate) fn node(&mut self, level: u32, index: u64, hash: &Hash) {
        if level >= NODE_LEVEL_MIN {
            self.nodes.insert(node_key(level, index), *hash);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0 && self.checkpoints.is_empty() && self.covered.is_none()
    }

    /// Writes everything held into `t`, keys in order.
    pub(crate) fn write_to(&self, t: &mut Tables<'_>) -> Result<(), StoreError> {
        let mut ids: Vec<(&String, &u64)> = self.ids.iter().collect();
        ids.sort_unstable();
        for (k, v) in ids {
            t.ids.insert(k.as_str(), v)?;
        }
        let mut messages: Vec<(&String, &Vec<u64>)> = self.messages.iter().collect();
        messages.sort_unstable();
        for (k, vs) in messages {
            for v in vs {
                t.messages.insert(k.as_str(), v)?;
            }
        }
        for (k, v) in &self.offsets {
            t.offsets.insert(k, v)?;
        }
        let mut nodes: Vec<(&u64, &Hash)> = self.nodes.iter().collect();
        nodes.sort_unstable();
        for (k, v) in nodes {
            t.nodes.insert(k, v)?;
        }
        for (k, v) in &self.checkpoints {
            t.checkpoints.insert(k, v.as_str())?;
        }
        if let Some(c) = self.covered {
            t.meta.insert(COVERED, c)?;
        }
        if let Some(o) = self.checkpoints_offset {
            t.meta.insert(CHECKPOINTS_OFFSET, o)?;
        }
        Ok(())
    }
}

/// The in-memory part of the index: what the writer adds to now, and what the
/// flusher is writing to redb (older). Readers ask here before redb, under the lock
/// that the flusher takes to commit and drop `flushing`, so an entry is always in
/// one of the two places they look.
#[derive(Default)]
pub(crate) struct InMemory {
    pub active: Recent,
    pub flushing: Option<std::sync::Arc<Recent>>,
}

impl InMemory {
    fn gens(&self) -> impl Iterator<Item = &Recent> {
        std::iter::once(&self.active).chain(self.flushing.as_deref())
    }

    pub(crate) fn id(&self, id: &str) -> Option<u64> {
        self.gens().find_map(|r| r.ids.get(id).copied())
    }

    /// Seqs of a message held in memory, in order (all after those in redb).
    pub(crate) fn message_seqs(&self, message: &str, out: &mut Vec<u64>) {
        for r in self.flushing.as_deref().into_iter().chain([&self.active]) {
            if let Some(v) = r.messages.get(message) {
                out.extend_from_slice(v);
            }
        }
    }

    pub(crate) fn offset(&self, seq: u64) -> Option<u64> {
        self.gens().find_map(|r| r.offsets.get(&seq).copied())
    }

    pub(crate) fn node(&self, key: u64) -> Option<Hash> {
        self.gens().find_map(|r| r.nodes.get(&key).copied())
    }

    /// Checkpoints held in memory from `from_size` on, in order (all after redb's).
    pub(crate) fn checkpoints(&self, from_size: u64) -> Vec<(u64, &String)> {
        let mut out: Vec<(u64, &String)> = Vec::new();
        for r in self.flushing.as_deref().into_iter().chain([&self.active]) {
            out.extend(r.checkpoints.range(from_size..).map(|(k, v)| (*k, v)));
        }
        out
    }
}

/// A digest over every table's contents, in a fixed order: equal digests mean equal
/// indexes, whatever the files' bytes (`ledger reindex` compares them).
pub(crate) fn digest(db: &redb::Database) -> Result<Hash, StoreError> {
    use redb::{ReadableDatabase, ReadableMultimapTable};
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let mut h = blake3::Hasher::new();
    let mut feed = |name: &str, k: &[u8], v: &[u8]| {
        h.update(name.as_bytes());
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    };
    for r in txn.open_table(META)?.iter()? {
        let (k, v) = r?;
        feed("meta", k.value().as_bytes(), &v.value().to_le_bytes());
    }
    for r in txn.open_table(IDS)?.iter()? {
        let (k, v) = r?;
        feed("ids", k.value().as_bytes(), &v.value().to_le_bytes());
    }
    for r in txn.open_multimap_table(MESSAGES)?.iter()? {
        let (k, vs) = r?;
        for v in vs {
            feed("messages", k.value().as_bytes(), &v?.value().to_le_bytes());
        }
    }
    for r in txn.open_table(OFFSETS)?.iter()? {
        let (k, v) = r?;
        feed(
            "offsets",
            &k.value().to_le_bytes(),
            &v.value().to_le_bytes(),
        );
    }
    for r in txn.open_table(NODES)?.iter()? {
        let (k, v) = r?;
        feed("nodes", &k.value().to_le_bytes(), &v.value());
    }
    for r in txn.open_table(CHECKPOINTS)?.iter()? {
        let (k, v) = r?;
        feed(
            "checkpoints",
            &k.value().to_le_bytes(),
            v.value().as_bytes(),
        );
    }
    Ok(*h.finalize().as_bytes())
}
