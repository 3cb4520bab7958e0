//! The single writer: takes append requests from a channel, group-commits them (one
//! write and one `fdatasync` per batch), indexes them, signs checkpoints, and only
//! then answers each request with its receipts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableDatabase};

use super::file::{Segment, Shared, log_dir, scan_entries, sync_dir};
use super::index::{self, InMemory, Recent, Tables};
use super::{Receipt, StoreError};
use crate::checkpoint::{Checkpoint, SigningKey};
use crate::entry::{self, format_recorded_at};
use crate::event::Event;
use crate::hash::Hash;
use crate::limits;
use crate::merkle::Frontier;
use crate::segment;

/// What the writer calls with a request's outcome, on its own thread.
pub(crate) type Reply = Box<dyn FnOnce(Result<Vec<Receipt>, StoreError>) + Send>;

/// One caller's events and where to send its answer.
pub(crate) struct Request {
    pub events: Vec<Event>,
    pub reply: Reply,
}

/// Everything the writer owns.
pub(crate) struct WriterState {
    pub shared: Arc<Shared>,
    pub key: SigningKey,
    pub frontier: Frontier,
    pub prev: Hash,
    pub last_recorded_at: String,
    pub segment: File,
    pub segment_first: u64,
    pub segment_len: u64,
    pub checkpoints: File,
    pub checkpoints_len: u64,
    pub latest_checkpoint: u64,
    pub last_checkpoint_at: Instant,
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

pub(crate) fn spawn(state: WriterState) -> (mpsc::Sender<Request>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || run(state, rx))
        .expect("spawn the writer thread");
    (tx, handle)
}

fn run(mut st: WriterState, rx: mpsc::Receiver<Request>) {
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(limits::INDEX_FLUSH_INTERVAL_MS)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !st.shared.poisoned.load(Ordering::Acquire) {
                    let _ = st.idle();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        let mut n = batch[0].events.len();
        while n < limits::BATCH_EVENTS_MAX {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.events.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
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

/// How one event of a request resolves.
enum Plan {
    New,
    Duplicate(u64, Hash),
}

/// What the index files one entry under: (seq, event id, message id, the message a
/// `resent` declares, offset, first of its segment).
type StagedEntry<'a> = (u64, &'a str, &'a str, Option<&'a str>, u64, bool);

/// Index entries of one batch, applied to [`Recent`] once the batch is durable.
#[derive(Default)]
struct Staged<'a> {
    entries: Vec<StagedEntry<'a>>,
    nodes: Vec<(u32, u64, Hash)>,
}

impl WriterState {
    /// Appends one batch. The outer error is fatal (poisons the writer); the inner
    /// per-request errors (conflicts) are answers.
    fn commit(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<Vec<Receipt>, StoreError>>, StoreError> {
        let alg = self.shared.info.hash;
        if self.segment_len >= limits::SEGMENT_BYTES_MAX {
            self.roll_segment()?;
        }
        let base = self.frontier.size();
        let mut results = Vec::with_capacity(batch.len());
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.events.len()).sum::<usize>() * 512);
        let mut staged = Staged::default();
        let now = format_recorded_at(time::OffsetDateTime::now_utc());
        let recorded_at = if now < self.last_recorded_at {
            self.last_recorded_at.clone()
        } else {
            now
        };
        // Events appended in this batch, by id: (seq, entry hash, event bytes).
        let mut fresh: HashMap<&str, (u64, Hash, &[u8]), foldhash::fast::RandomState> =
            HashMap::default();
        for req in batch {
            let plans = match self.shared.guard(|| self.plan(req, &fresh, base)) {
                Ok(p) => p,
                Err(e @ (StoreError::Conflict { .. } | StoreError::FormatTooNew { .. })) => {
                    results.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut receipts = Vec::with_capacity(req.events.len());
            for (ev, plan) in req.events.iter().zip(plans) {
                if let Plan::Duplicate(seq, hash) = plan {
                    receipts.push(Receipt::duplicate(seq, hash));
                    continue;
                }
                if let Some(&(seq, hash, _)) = fresh.get(ev.id_key()) {
                    receipts.push(Receipt::duplicate(seq, hash));
                    continue;
                }
                let seq = self.frontier.size();
                let offset = self.segment_len + buf.len() as u64;
                let start = buf.len() + 8;
                buf.extend_from_slice(&[0; 8]);
                entry::write_entry(
                    &mut buf,
                    seq,
                    &self.prev,
                    &recorded_at,
                    ev.format(),
                    ev.canonical_bytes(),
                );
                let bytes = &buf[start..];
                debug_assert!(bytes.len() <= limits::ENTRY_BYTES_MAX);
                let len = (bytes.len() as u32).to_le_bytes();
                let crc = crc32c::crc32c(bytes).to_le_bytes();
                let hash = alg.leaf(bytes);
                buf[start - 8..start - 4].copy_from_slice(&len);
                buf[start - 4..start].copy_from_slice(&crc);
                staged.entries.push((
                    seq,
                    ev.id_key(),
                    ev.key(),
                    ev.linked_key(),
                    offset,
                    seq == self.segment_first,
                ));
                self.frontier
                    .push(hash, |l, i, h| staged.nodes.push((l, i, *h)));
                self.prev = hash;
                fresh.insert(ev.id_key(), (seq, hash, ev.canonical_bytes()));
                receipts.push(Receipt::new(seq, hash));
            }
            results.push(Ok(receipts));
        }
        self.last_recorded_at = recorded_at;
        let size = self.frontier.size();
        if size > base {
            let path = self.segment_path();
            let io = &self.shared.io;
            io.append(&self.segment, &path, &buf)
                .and_then(|_| io.sync(&self.segment, &path))
                .map_err(StoreError::io("append to the log"))?;
            self.segment_len += buf.len() as u64;
            self.shared.log_syncs.fetch_add(1, Ordering::Relaxed);
            // Durable: now readers may see it, through the in-memory index first.
            let mut memory = self.shared.recent.write().expect("lock");
            let recent = &mut memory.active;
            for &(seq, id, message, linked, offset, first) in &staged.entries {
                recent.index_entry(seq, id, message, linked, offset, first);
            }
            for (l, i, h) in &staged.nodes {
                recent.node(*l, *i, h);
            }
            recent.covered = Some(size);
            drop(memory);
            self.shared.size.store(size, Ordering::Release);
        }
        // Sign when the writer is about to fall idle, or at least every interval.
        let idle = self.shared.pending.load(Ordering::Acquire) == 0;
        let due = self.last_checkpoint_at.elapsed()
            >= Duration::from_millis(limits::CHECKPOINT_INTERVAL_MS);
        // The batch is durable and its receipts are true whatever happens next: a
        // failure to sign or to flush the index stops further appends (poison) but
        // does not turn these answers into errors. Reopening recovers both from the
        // log.
        let after = if size > self.latest_checkpoint && (idle || due) {
            self.sign(size)
        } else {
            Ok(())
        }
        .and_then(|_| self.flush_if_due());
        if after.is_err() {
            self.shared.poisoned.store(true, Ordering::Release);
        }
        Ok(results)
    }

    /// Resolves each event of a request against the index and this batch, without
    /// changing anything: a conflict anywhere refuses the whole request.
    fn plan(
        &self,
        req: &Request,
        fresh: &HashMap<&str, (u64, Hash, &[u8]), foldhash::fast::RandomState>,
        base: u64,
    ) -> Result<Vec<Plan>, StoreError> {
        let mut plans = Vec::with_capacity(req.events.len());
        let mut mine: HashMap<&str, &[u8], foldhash::fast::RandomState> = HashMap::default();
        // First the lookups, under the index lock; then, without it, the reads of
        // stored entries that a recorded id needs.
        let mut recorded: Vec<(usize, u64)> = Vec::new();
        {
            let lookup = IdLookup::new(&self.shared)?;
            for (i, ev) in req.events.iter().enumerate() {
                if u64::from(ev.format()) > self.shared.info.format {
                    return Err(StoreError::FormatTooNew {
                        id: ev.id().to_string(),
                        event: ev.format(),
                        ledger: self.shared.info.format,
                    });
                }
                if let Some(&(seq, _, bytes)) = fresh.get(ev.id_key()) {
                    if bytes != ev.canonical_bytes() {
                        return Err(StoreError::Conflict {
                            id: ev.id().to_string(),
                            seq,
                        });
                    }
                    plans.push(Plan::New); // resolved to the fresh receipt when appending
                    continue;
                }
                if let Some(bytes) = mine.get(ev.id_key()) {
                    if *bytes != ev.canonical_bytes() {
                        return Err(StoreError::Conflict {
                            id: ev.id().to_string(),
                            seq: base,
                        });
                    }
                    plans.push(Plan::New);
                    continue;
                }
                match lookup.seq(ev.id_key())? {
                    Some(seq) => {
                        recorded.push((i, seq));
                        plans.push(Plan::New); // replaced below
                    }
                    None => {
                        mine.insert(ev.id_key(), ev.canonical_bytes());
                        plans.push(Plan::New);
                    }
                }
            }
        }
        for (i, seq) in recorded {
            let ev = &req.events[i];
            let mut stored = None;
            scan_entries(&self.shared, seq, seq + 1, &mut |_, _, b| {
                stored = Some(b.to_vec());
                Ok(())
            })?;
            let stored =
                stored.ok_or_else(|| StoreError::Corrupt(format!("entry {seq} is missing")))?;
            let p = entry::parse_entry(&stored)
                .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
            if p.event.as_bytes() != ev.canonical_bytes() || p.v != ev.format() {
                return Err(StoreError::Conflict {
                    id: ev.id().to_string(),
                    seq,
                });
            }
            plans[i] = Plan::Duplicate(seq, self.shared.info.hash.leaf(&stored));
        }
        Ok(plans)
    }

    fn sign(&mut self, size: u64) -> Result<(), StoreError> {
        let cp = Checkpoint {
            origin: self.shared.info.origin.clone(),
            size,
            root: self.frontier.root(),
        };
        let note = self.key.sign(&cp);
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
        self.latest_checkpoint = size;
        self.last_checkpoint_at = Instant::now();
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
        let size = self.frontier.size();
        if size > self.latest_checkpoint {
            self.sign(size)?;
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
        let first = self.frontier.size();
        let dir = log_dir(&self.shared.dir);
        let path = dir.join(segment::segment_name(first));
        if path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists already; refusing to write over a segment",
                path.display()
            )));
        }
        // Made whole under another name and renamed: a crash mid-roll leaves at most a
        // `.seg.new` file (ignored, and reused by the next roll), never a last segment
        // too short to hold its header, which open would have to refuse.
        let fresh = dir.join(format!("{}.new", segment::segment_name(first)));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&fresh)
            .map_err(StoreError::io(format!("create {}", fresh.display())))?;
        f.set_len(0)
            .and_then(|_| f.write_all(&segment::header(segment::SEGMENT_MAGIC, first)))
            .and_then(|_| f.sync_all())
            .map_err(StoreError::io(format!("write {}", fresh.display())))?;
        std::fs::rename(&fresh, &path).map_err(StoreError::io(format!(
            "rename {} into place",
            fresh.display()
        )))?;
        sync_dir(&dir)?;
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
