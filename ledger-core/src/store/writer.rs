//! The embedded store's writer: takes groups of append requests through the one
//! append path ([`super::append`]) and makes each durable its way (one write and one
//! `fdatasync` of a segment per group), indexes them, signs checkpoints, and only
//! then answers each request with its receipts.

use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableDatabase};

use super::append::{
    self, AppendCore, AppendRequest, GroupLimits, NextGroup, Recorded, RecordedIds, Requests,
};
use super::file::{Segment, Shared, log_dir, write_whole};
use super::index::{self, InMemory, Recent, Tables};
use super::log::scan_entries;
use super::{Receipt, StoreError};
use crate::checkpoint::SigningKey;
use crate::limits;
use crate::segment;

/// Everything the writer owns.
pub(crate) struct WriterState {
    pub shared: Arc<Shared>,
    pub key: SigningKey,
    /// The chain's tail and the decisions every store's writer makes alike.
    pub core: AppendCore,
    pub segment: File,
    pub segment_first: u64,
    pub segment_len: u64,
    pub checkpoints: File,
    pub checkpoints_len: u64,
    pub last_flush_at: Instant,
    /// The flusher thread: takes frozen generations of the in-memory index and
    /// answers when each is in redb.
    pub flusher: Flusher,
}

/// The writer's end of the flusher thread.
pub(crate) struct Flusher {
    tx: Option<mpsc::Sender<Arc<Recent>>>,
    done: mpsc::Receiver<Result<(), StoreError>>,
    in_flight: bool,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flusher. `checkpoints` is a handle to `checkpoints.log`, fsynced
    /// before each generation is committed.
    pub(crate) fn spawn(shared: Arc<Shared>, checkpoints: File) -> Flusher {
        let (tx, rx) = mpsc::channel::<Arc<Recent>>();
        let (done_tx, done) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("ledger-index-flusher".into())
            .spawn(move || {
                for generation in rx {
                    let r = write_generation(&shared, &checkpoints, &generation);
                    if done_tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the index flusher thread");
        Flusher {
            tx: Some(tx),
            done,
            in_flight: false,
            handle: Some(handle),
        }
    }

    /// Waits for the flush in flight, if any, and returns its outcome.
    fn wait(&mut self) -> Result<(), StoreError> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        self.done.recv().unwrap_or_else(|_| {
            Err(StoreError::Io {
                context: "flush the index".into(),
                source: std::io::Error::other("the index flusher thread stopped"),
            })
        })
    }

    /// Whether the flush in flight has finished (collecting its outcome).
    fn poll(&mut self) -> Result<bool, StoreError> {
        if !self.in_flight {
            return Ok(true);
        }
        match self.done.try_recv() {
            Ok(r) => {
                self.in_flight = false;
                r.map(|_| true)
            }
            Err(mpsc::TryRecvError::Empty) => Ok(false),
            Err(mpsc::TryRecvError::Disconnected) => self.wait().map(|_| true),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn checkpoints_path(shared: &Shared) -> std::path::PathBuf {
    shared.dir.join("checkpoints.log")
}

/// Writes one frozen generation of the in-memory index to redb, durably, and drops
/// it from memory. `checkpoints.log` is fsynced first, so the index on disk never
/// refers to a checkpoint that a crash could lose.
fn write_generation(
    shared: &Shared,
    checkpoints: &File,
    generation: &Recent,
) -> Result<(), StoreError> {
    shared
        .io
        .sync(checkpoints, &checkpoints_path(shared))
        .map_err(StoreError::io("fsync checkpoints.log"))?;
    let txn = shared.guard(|| {
        let mut txn = shared.db().begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = Tables::open(&txn)?;
            generation.write_to(&mut t)?;
        }
        Ok(txn)
    })?;
    // Commit and drop under the write lock: a reader sees each entry either in
    // memory or in a read transaction begun after the commit, never in neither. (A
    // panic in redb is caught inside, so it never poisons the lock.)
    let mut memory = shared.recent.write().expect("lock");
    shared.guard(|| txn.commit().map_err(StoreError::from))?;
    memory.flushing = None;
    Ok(())
}

/// Looks event ids up in the in-memory index, then in redb. It holds the in-memory
/// index's read lock, and begins its transaction under it, so that the flusher
/// cannot move an entry from one to the other between the two looks. Drop it before
/// anything else takes that lock.
struct IdLookup<'a> {
    memory: std::sync::RwLockReadGuard<'a, InMemory>,
    txn: redb::ReadTransaction,
}

impl<'a> IdLookup<'a> {
    fn new(shared: &'a Shared) -> Result<Self, StoreError> {
        let memory = shared.recent.read().expect("lock");
        let txn = shared.db().begin_read().map_err(redb::Error::from)?;
        Ok(IdLookup { memory, txn })
    }

    fn seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        if let Some(s) = self.memory.id(id) {
            return Ok(Some(s));
        }
        let t = self.txn.open_table(index::IDS)?;
        Ok(t.get(id)?.map(|g| g.value()))
    }
}

pub(crate) fn spawn(state: WriterState) -> (mpsc::Sender<AppendRequest>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || run(state, Requests::new(rx, GroupLimits::default())))
        .expect("spawn the writer thread");
    (tx, handle)
}

fn run(mut st: WriterState, mut requests: Requests) {
    loop {
        let batch = match requests
            .next_group(Some(Duration::from_millis(limits::INDEX_FLUSH_INTERVAL_MS)))
        {
            NextGroup::Group(b) => b,
            NextGroup::Idle => {
                if !st.shared.poisoned.load(Ordering::Acquire) {
                    let _ = st.idle();
                }
                continue;
            }
            NextGroup::Closed => break,
        };
        st.shared.pending.fetch_sub(batch.len(), Ordering::AcqRel);
        if st.shared.poisoned.load(Ordering::Acquire) {
            for r in batch {
                (r.reply)(Err(StoreError::Poisoned));
            }
            continue;
        }
        let flush_asked = batch.iter().any(|r| r.events.is_empty());
        match st.commit(&batch).and_then(|results| {
            if flush_asked {
                st.flush()?;
            }
            Ok(results)
        }) {
            Ok(results) => {
                for (r, res) in batch.into_iter().zip(results) {
                    (r.reply)(res);
                }
            }
            Err(e) => {
                // The on-disk state after a failed write or fsync is unknown: stop,
                // and let recovery at the next open bring the log to a good state.
                st.shared.poisoned.store(true, Ordering::Release);
                let msg = e.to_string();
                let mut first = Some(e);
                for r in batch {
                    let err = first.take().unwrap_or_else(|| StoreError::Io {
                        context: "commit".into(),
                        source: std::io::Error::other(msg.clone()),
                    });
                    (r.reply)(Err(err));
                }
            }
        }
    }
    if !st.shared.poisoned.load(Ordering::Acquire) {
        let _ = st.sign_if_behind();
    }
}

impl WriterState {
    /// Appends one group. The outer error is fatal (poisons the writer); the inner
    /// per-request errors (conflicts) are answers.
    fn commit(
        &mut self,
        batch: &[AppendRequest],
    ) -> Result<Vec<Result<Vec<Receipt>, StoreError>>, StoreError> {
        if self.segment_len >= limits::SEGMENT_BYTES_MAX {
            self.roll_segment()?;
        }
        let recorded = self.shared.guard(|| self.recorded(&append::ids(batch)))?;
        let mut group = self.core.build(batch, &recorded);
        let results = std::mem::take(&mut group.results);
        if !group.entries.is_empty() {
            let size = group.size();
            let base = self.segment_len;
            let path = self.segment_path();
            let io = &self.shared.io;
            io.append(&self.segment, &path, &group.frames)
                .and_then(|_| io.sync(&self.segment, &path))
                .map_err(StoreError::io("append to the log"))?;
            self.segment_len += group.frames.len() as u64;
            self.shared.log_syncs.fetch_add(1, Ordering::Relaxed);
            // Durable: now readers may see it, through the in-memory index first.
            let mut memory = self.shared.recent.write().expect("lock");
            let recent = &mut memory.active;
            for e in &group.entries {
                recent.index_entry(
                    e.seq,
                    e.event.id_key(),
                    e.event.key(),
                    e.event.linked_key(),
                    base + e.frame.start as u64,
                    e.seq == self.segment_first,
                );
            }
            for (l, i, h) in &group.nodes {
                recent.node(*l, *i, h);
            }
            recent.covered = Some(size);
            drop(memory);
            self.shared.size.store(size, Ordering::Release);
        }
        self.core.advance(group);
        // Sign when the writer is about to fall idle, or at least every interval.
        let idle = self.shared.pending.load(Ordering::Acquire) == 0;
        // The group is durable and its receipts are true whatever happens next: a
        // failure to sign or to flush the index stops further appends (poison) but
        // does not turn these answers into errors. Reopening recovers both from the
        // log.
        let after = if self.core.checkpoint_due(idle) {
            self.sign()
        } else {
            Ok(())
        }
        .and_then(|_| self.flush_if_due());
        if after.is_err() {
            self.shared.poisoned.store(true, Ordering::Release);
        }
        Ok(results)
    }

    /// The recorded entries of `ids`: first the lookups, under the index lock; then,
    /// without it, the reads of the entries found.
    fn recorded(&self, ids: &[&str]) -> Result<RecordedIds, StoreError> {
        let mut found = Vec::new();
        {
            let lookup = IdLookup::new(&self.shared)?;
            for id in ids {
                if let Some(seq) = lookup.seq(id)? {
                    found.push((*id, seq));
                }
            }
        }
        let alg = self.shared.info.hash;
        let mut out = RecordedIds::default();
        for (id, seq) in found {
            let mut stored = None;
            scan_entries(&self.shared, seq, seq + 1, &mut |_, _, b| {
                stored = Some(b.to_vec());
                Ok(())
            })?;
            let entry =
                stored.ok_or_else(|| StoreError::Corrupt(format!("entry {seq} is missing")))?;
            out.insert(
                id.to_string(),
                Recorded {
                    seq,
                    leaf: alg.leaf(&entry),
                    entry,
                },
            );
        }
        Ok(out)
    }

    fn sign(&mut self) -> Result<(), StoreError> {
        let (size, note) = self.core.sign(&self.key);
        let mut frame = Vec::with_capacity(note.len() + 8);
        segment::encode_frame(&mut frame, note.as_bytes());
        // Not fsynced here: a checkpoint lost in a crash is re-signed identically at
        // the next open (Ed25519 signatures are deterministic). It is fsynced before
        // the index on disk refers to it (`flush`).
        self.shared
            .io
            .append(&self.checkpoints, &checkpoints_path(&self.shared), &frame)
            .map_err(StoreError::io("append to checkpoints.log"))?;
        self.checkpoints_len += frame.len() as u64;
        let mut memory = self.shared.recent.write().expect("lock");
        memory.active.checkpoints.insert(size, note);
        memory.active.checkpoints_offset = Some(self.checkpoints_len);
        drop(memory);
        self.core.signed(size);
        Ok(())
    }

    /// Hands the in-memory index to the flusher when it holds enough or is old
    /// enough, and the previous flush has finished. If the flusher falls far behind,
    /// waits for it, so memory stays bounded.
    fn flush_if_due(&mut self) -> Result<(), StoreError> {
        let held = self.shared.recent.read().expect("lock").active.entries;
        let finished = if held >= 4 * limits::INDEX_FLUSH_ENTRIES {
            self.flusher.wait()?;
            true
        } else {
            self.flusher.poll()?
        };
        let due = held >= limits::INDEX_FLUSH_ENTRIES
            || self.last_flush_at.elapsed()
                >= Duration::from_millis(limits::INDEX_FLUSH_INTERVAL_MS);
        if finished
            && due
            && let Some(generation) = self.freeze()
        {
            let tx = self
                .flusher
                .tx
                .as_ref()
                .expect("the flusher runs while the writer does");
            tx.send(generation).map_err(|_| StoreError::Io {
                context: "flush the index".into(),
                source: std::io::Error::other("the index flusher thread stopped"),
            })?;
            self.flusher.in_flight = true;
        }
        Ok(())
    }

    /// Moves the active in-memory index to `flushing`, if it holds anything.
    fn freeze(&mut self) -> Option<Arc<Recent>> {
        self.last_flush_at = Instant::now();
        let mut memory = self.shared.recent.write().expect("lock");
        if memory.active.is_empty() {
            return None;
        }
        debug_assert!(memory.flushing.is_none());
        let generation = Arc::new(std::mem::take(&mut memory.active));
        memory.flushing = Some(generation.clone());
        Some(generation)
    }

    /// Moves everything in memory into redb now, in this thread.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.flusher.wait()?;
        match self.freeze() {
            Some(generation) => write_generation(&self.shared, &self.checkpoints, &generation),
            None => Ok(()),
        }
    }

    /// Signs the current size if the newest checkpoint is older, and flushes the
    /// index: at open (after recovery) and at shutdown.
    pub(crate) fn sign_if_behind(&mut self) -> Result<(), StoreError> {
        if self.core.size() > self.core.latest_checkpoint() {
            self.sign()?;
        }
        self.flush()
    }

    /// No requests for a while: flush the index.
    fn idle(&mut self) -> Result<(), StoreError> {
        self.flush()
    }

    fn segment_path(&self) -> std::path::PathBuf {
        log_dir(&self.shared.dir).join(segment::segment_name(self.segment_first))
    }

    /// Seals the current segment and starts the next, named by the next seq. The new
    /// file and its directory entry are durable before any entry goes into it.
    fn roll_segment(&mut self) -> Result<(), StoreError> {
        self.shared
            .io
            .sync(&self.segment, &self.segment_path())
            .map_err(StoreError::io("seal segment"))?;
        let first = self.core.size();
        let dir = log_dir(&self.shared.dir);
        let path = dir.join(segment::segment_name(first));
        if path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists already; refusing to write over a segment",
                path.display()
            )));
        }
        // Made whole under another name and renamed: a crash mid-roll leaves at most a
        // `.seg.new` file (ignored, and overwritten by the next roll), never a last
        // segment too short to hold its header, which open would have to refuse.
        write_whole(&path, &segment::header(segment::SEGMENT_MAGIC, first))?;
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(StoreError::io(format!("open {}", path.display())))?;
        let reader =
            File::open(&path).map_err(StoreError::io(format!("open {}", path.display())))?;
        self.shared.segments.write().expect("lock").push(Segment {
            first_seq: first,
            path,
            file: Arc::new(reader),
        });
        self.segment = f;
        self.segment_first = first;
        self.segment_len = segment::HEADER_BYTES;
        Ok(())
    }
}
