//! A read-only copy of a log in memory: what questions are answered over when the
//! private signing key is absent (an auditor's export bundle, a copied directory) or
//! another process holds the store (`ledger serve`). It takes no lock, writes
//! nothing, and is checked as it is read: every entry's seq and chain link, and
//! every signed checkpoint's signature and root. A store that is being appended to
//! is read up to its last complete record.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{EntryVisitor, LedgerInfo, Receipt, SignedCheckpoint, Store, StoreError};
use crate::checkpoint::{VerifierKey, split_notes};
use crate::entry;
use crate::event::{Event, bare_alias};
use crate::hash::Hash;
use crate::limits::ENTRY_BYTES_MAX;
use crate::merkle::{self, Frontier};
use crate::rotation::KeyHistory;
use crate::segment::{self, FrameReader};

/// Subtrees at this level and above are kept as the log is read; lower ones are
/// hashed from the leaves on demand (at most 2^7 leaves).
const KEPT_LEVEL: u32 = 7;

/// A log held in memory, read-only. See the module documentation.
pub struct Snapshot {
    info: LedgerInfo,
    key: KeyHistory,
    /// The key entries read: (seq, announced key).
    announced: Vec<(u64, VerifierKey)>,
    /// Every entry's bytes, back to back; `offsets[seq]..offsets[seq + 1]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    leaves: Vec<Hash>,
    nodes: HashMap<(u32, u64), Hash>,
    messages: HashMap<String, Vec<u64>>,
    ids: HashMap<String, u64>,
    checkpoints: Vec<SignedCheckpoint>,
    source: PathBuf,
}

/// Where a snapshot is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotSource {
    /// An export bundle (a directory with `entries.jsonl`, or its `.tar`).
    Bundle,
    /// A store directory (`log/*.seg`, `checkpoints.log`).
    StoreDir,
}

impl SnapshotSource {
    /// What `path` holds, if it is either.
    pub fn of(path: &Path) -> Option<SnapshotSource> {
        if path.is_file() && path.extension().is_some_and(|e| e == "tar") {
            return Some(SnapshotSource::Bundle);
        }
        if path.join("entries.jsonl").is_file() {
            return Some(SnapshotSource::Bundle);
        }
        if path.join("ledger.json").is_file() && path.join("log").is_dir() {
            return Some(SnapshotSource::StoreDir);
        }
        None
    }
}

fn corrupt(source: &Path, what: String) -> StoreError {
    StoreError::Corrupt(format!("{}: {what}", source.display()))
}

impl Snapshot {
    /// Reads the bundle or store directory at `path` (see [`SnapshotSource::of`]).
    pub fn open(path: &Path) -> Result<Snapshot, StoreError> {
        match SnapshotSource::of(path) {
            Some(SnapshotSource::Bundle) => Self::from_bundle(path),
            Some(SnapshotSource::StoreDir) => Self::from_store_dir(path),
            None => Err(StoreError::NotALedger(path.to_path_buf())),
        }
    }

    fn new(dir: &Path, source: &Path) -> Result<Snapshot, StoreError> {
        let info = super::file::read_info(dir)?;
        let key_path = dir.join("verifier.key");
        let key: KeyHistory = std::fs::read_to_string(&key_path)
            .map_err(StoreError::io(format!("read {}", key_path.display())))?
            .parse()
            .map_err(|e| corrupt(&key_path, format!("{e}")))?;
        Ok(Snapshot {
            info,
            key,
            bytes: Vec::new(),
            offsets: vec![0],
            leaves: Vec::new(),
            nodes: HashMap::new(),
            messages: HashMap::new(),
            ids: HashMap::new(),
            announced: Vec::new(),
            checkpoints: Vec::new(),
            source: source.to_path_buf(),
        })
    }

    /// An export bundle: a directory, or a `.tar` of one.
    pub fn from_bundle(path: &Path) -> Result<Snapshot, StoreError> {
        let _unpacked;
        let dir: PathBuf = if path.is_file() {
            let (tmp, inner) = crate::bundle::unpack_tar(path)?;
            _unpacked = tmp;
            inner
        } else {
            path.to_path_buf()
        };
        let mut s = Snapshot::new(&dir, path)?;
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(StoreError::io(format!("read {name} in {}", path.display())))
        };
        let mut notes = vec![read("checkpoint")?];
        if let Ok(text) = read("checkpoints.txt") {
            notes.extend(split_notes(&text));
        }
        let entries = dir.join("entries.jsonl");
        let f =
            File::open(&entries).map_err(StoreError::io(format!("open {}", entries.display())))?;
        // A backup says how much of entries.jsonl it holds; bytes after that are an
        // interrupted backup's, which the next one cuts off.
        let held = crate::backup::read_manifest(&dir)?.map_or(u64::MAX, |m| m.entries_bytes);
        let mut r = BufReader::with_capacity(1 << 20, f.take(held));
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            let n = r
                .by_ref()
                .take(ENTRY_BYTES_MAX as u64 + 2)
                .read_until(b'\n', &mut line)
                .map_err(StoreError::io("read entries.jsonl"))?;
            if n == 0 {
                break;
            }
            if line.pop() != Some(b'\n') {
                return Err(corrupt(
                    path,
                    format!(
                        "entries.jsonl line {} does not end with a newline",
                        s.leaves.len() + 1
                    ),
                ));
            }
            s.push(&line)?;
        }
        s.finish(notes)
    }

    /// A store directory, without its lock: up to the last complete record of the
    /// last segment (a writer may be appending), every other segment whole.
    pub fn from_store_dir(dir: &Path) -> Result<Snapshot, StoreError> {
        let mut s = Snapshot::new(dir, dir)?;
        let log = dir.join("log");
        let segments = segment::list_segments(&log)
            .map_err(StoreError::io(format!("list {}", log.display())))?;
        let last = segments.len().saturating_sub(1);
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first != s.leaves.len() as u64 {
                return Err(corrupt(
                    path,
                    format!(
                        "begins at seq {first}, but {} entries precede it",
                        s.leaves.len()
                    ),
                ));
            }
            let (mut r, header) = FrameReader::open(path, segment::SEGMENT_MAGIC)
                .map_err(StoreError::io(format!("open {}", path.display())))?;
            header.map_err(|e| corrupt(path, e.to_string()))?;
            while let Some(frame) = r
                .next_frame(ENTRY_BYTES_MAX)
                .map_err(StoreError::io(format!("read {}", path.display())))?
            {
                match frame {
                    Ok(f) => s.push(&f.payload)?,
                    // The record being written: the snapshot ends before it.
                    Err(_) if i == last => break,
                    Err(e) => {
                        return Err(corrupt(path, format!("offset {}: {e}", r.offset())));
                    }
                }
            }
        }
        let ck = dir.join("checkpoints.log");
        let mut notes = Vec::new();
        let (mut r, header) = FrameReader::open(&ck, segment::CHECKPOINTS_MAGIC)
            .map_err(StoreError::io(format!("open {}", ck.display())))?;
        header.map_err(|e| corrupt(&ck, e.to_string()))?;
        while let Some(Ok(frame)) = r
            .next_frame(segment::NOTE_BYTES_MAX)
            .map_err(StoreError::io(format!("read {}", ck.display())))?
        {
            notes.push(
                String::from_utf8(frame.payload)
                    .map_err(|_| corrupt(&ck, "a note is not UTF-8".into()))?,
            );
        }
        s.finish(notes)
    }

    /// Adds the next entry, checking its seq and chain link.
    fn push(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let seq = self.leaves.len() as u64;
        let alg = self.info.hash;
        let parsed = entry::parse_envelope(bytes)
            .map_err(|e| corrupt(&self.source, format!("entry {seq}: {e}")))?;
        let prev = match self.leaves.last() {
            Some(_) => {
                let start = self.offsets[self.offsets.len() - 2];
                alg.leaf(&self.bytes[start..])
            }
            None => alg.genesis(&self.info.origin),
        };
        if parsed.seq != seq || parsed.prev != prev {
            return Err(corrupt(
                &self.source,
                format!("entry {seq}: its seq or prev hash does not continue the chain"),
            ));
        }
        if parsed.is_key_entry() {
            let (_, a) = entry::check_key_entry(bytes, &self.info.origin)
                .map_err(|e| corrupt(&self.source, format!("entry {seq}: {e}")))?;
            self.announced.push((seq, a.key));
            self.keep(bytes);
            return Ok(());
        }
        let keys = entry::index_keys(parsed.event, parsed.v)
            .map_err(|e| corrupt(&self.source, format!("entry {seq}: {e}")))?;
        for k in std::iter::once(&keys.message).chain(keys.new_message.as_ref()) {
            let alias = bare_alias(k);
            for name in std::iter::once(k.clone()).chain(alias) {
                let seqs = self.messages.entry(name).or_default();
                if seqs.last() != Some(&seq) {
                    seqs.push(seq);
                }
            }
        }
        self.ids.entry(keys.id).or_insert(seq);
        self.keep(bytes);
        Ok(())
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.leaves.push(self.info.hash.leaf(bytes));
        self.bytes.extend_from_slice(bytes);
        self.offsets.push(self.bytes.len());
    }

    /// Rebuilds the kept subtrees and checks every checkpoint against the entries.
    fn finish(mut self, notes: Vec<String>) -> Result<Snapshot, StoreError> {
        self.key
            .check_announcements(&self.announced, self.leaves.len() as u64)
            .map_err(|e| corrupt(&self.source, e.to_string()))?;
        let mut frontier = Frontier::new(self.info.hash);
        let mut roots = HashMap::new();
        let mut wanted: Vec<u64> = Vec::new();
        let mut checkpoints = Vec::new();
        for note in notes {
            let c = self.key.verify(&note).map_err(|e| {
                corrupt(
                    &self.source,
                    format!("a signed checkpoint does not verify: {e}"),
                )
            })?;
            if c.size > self.leaves.len() as u64 {
                // Signed after the last complete entry was read (a writer at work).
                continue;
            }
            wanted.push(c.size);
            checkpoints.push((c.size, c.root, note));
        }
        wanted.sort_unstable();
        let mut next = wanted.iter().peekable();
        if let Some(&&0) = next.peek() {
            roots.insert(0, frontier.root());
            next.next();
        }
        let nodes = &mut self.nodes;
        for leaf in &self.leaves {
            frontier.push(*leaf, |level, index, hash| {
                if level >= KEPT_LEVEL {
                    nodes.insert((level, index), *hash);
                }
            });
            while next.peek().is_some_and(|&&n| n == frontier.size()) {
                roots.insert(frontier.size(), frontier.root());
                next.next();
            }
        }
        checkpoints.sort_by_key(|c| c.0);
        checkpoints.dedup_by_key(|c| c.0);
        for (size, root, _) in &checkpoints {
            if roots.get(size) != Some(root) {
                return Err(corrupt(
                    &self.source,
                    format!(
                        "the signed checkpoint of size {size} does not match the entries: \
                         they were changed after it was signed"
                    ),
                ));
            }
        }
        if checkpoints.is_empty() {
            return Err(corrupt(
                &self.source,
                "no signed checkpoint covers the entries read".into(),
            ));
        }
        self.checkpoints = checkpoints
            .into_iter()
            .map(|(size, _, note)| SignedCheckpoint { size, note })
            .collect();
        Ok(self)
    }

    fn slice(&self, seq: u64) -> &[u8] {
        let i = seq as usize;
        &self.bytes[self.offsets[i]..self.offsets[i + 1]]
    }
}

impl Store for Snapshot {
    fn info(&self) -> &LedgerInfo {
        &self.info
    }

    fn verifier_key(&self) -> &KeyHistory {
        &self.key
    }

    fn append(&self, _events: Vec<Event>) -> Result<Vec<Receipt>, StoreError> {
        Err(StoreError::ReadOnly(self.source.clone()))
    }

    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn scan(&self, from: u64, to: u64, f: &mut EntryVisitor<'_>) -> Result<(), StoreError> {
        self.check_size(to)?;
        for seq in from..to {
            f(seq, self.slice(seq))?;
        }
        Ok(())
    }

    fn message_seqs(&self, message: &str) -> Result<Vec<u64>, StoreError> {
        Ok(self.messages.get(message).cloned().unwrap_or_default())
    }

    fn event_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.ids.get(id).copied())
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if let Some(h) = self.nodes.get(&(level, index)) {
            return Ok(*h);
        }
        let width = 1u64 << level;
        let start = index * width;
        let end = start + width;
        if level >= KEPT_LEVEL || end > self.size() {
            return Err(StoreError::OutOfRange(format!(
                "no complete subtree {index} at level {level} in {} entries",
                self.size()
            )));
        }
        Ok(merkle::root_of(
            self.info.hash,
            &self.leaves[start as usize..end as usize],
        ))
    }

    fn latest_checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        Ok(self.checkpoints.last().cloned().expect("checked in finish"))
    }

    fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        Ok(self
            .checkpoints
            .iter()
            .filter(|c| c.size >= from_size)
            .take(limit)
            .cloned()
            .collect())
    }
}
