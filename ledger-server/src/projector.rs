//! The server's live projection: one thread follows the log, applies new entries to
//! the facts, keeps the refs index the channel mappers resolve through, and notices
//! verdict changes (from new entries, and from the clock in periodic sweeps) for the
//! stream. Appends never wait for it; its cost is measured in BENCHMARKS.md.

use std::collections::{HashMap, HashSet, VecDeque};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant as Clock};

use ledger_core::Store;
use ledger_core::projection::{self, Evaluator, Facts, Instant, Policy, Verdict};
use ledger_pg::Engine;
use serde::Serialize;

use crate::mappers::RefResolver;
use crate::metrics::Metrics;

/// Entries applied under one hold of the write lock, so readers never wait long.
const CHUNK: u64 = 1024;
/// Verdict changes kept for resuming streams.
const RING: usize = 100_000;
/// How often the facts are saved to `projection.facts` while serving.
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// A position in the stream: the log size covered when it was produced, and its
/// number among the changes produced at that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// Entries covered.
    pub covered: u64,
    /// Ordinal at that size.
    pub k: u32,
}

/// A message whose verdict changed.
#[derive(Clone, Debug, Serialize)]
pub struct VerdictChange {
    /// Where it sits in the stream.
    #[serde(skip)]
    pub pos: Position,
    /// The message's key; shown as its bare id, with `sender` and `recipient`.
    #[serde(serialize_with = "bare_id")]
    pub message: String,
    /// Its verdict before (none: new to the ledger).
    pub from: Option<Verdict>,
    /// Its verdict now.
    pub to: Verdict,
    /// Why, as in reports.
    pub reason: String,
    /// When the change was noticed.
    pub noticed_at: Instant,
    /// Sender (also decides the tenant boundary).
    pub sender: Option<String>,
    /// Recipient (also decides the tenant boundary).
    pub recipient: Option<String>,
}

fn bare_id<S: serde::Serializer>(key: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ledger_core::event::split_message_key(key).1)
}

/// Recent verdict changes, and the newest position no longer kept.
#[derive(Default)]
struct Ring {
    items: VecDeque<VerdictChange>,
    dropped: Option<Position>,
}

/// What the projector holds.
pub struct Live {
    /// The facts of the log prefix `0 .. facts.covered()`.
    pub facts: Facts,
    /// (refs key, value) → the first message that declared it (smallest `sent` seq),
    /// with that seq.
    refs: FastMap<(String, String), (u64, String)>,
    /// (party, refs key, value) → the first message of that party (its sender or
    /// recipient) that declared it, with its `sent` seq.
    party_refs: FastMap<(String, String, String), (u64, String)>,
    verdicts: FastMap<String, Verdict>,
}

impl RefResolver for Live {
    fn message_by_ref(&self, key: &str, value: &str) -> Option<String> {
        self.refs
            .get(&(key.to_string(), value.to_string()))
            .map(|(_, m)| m.clone())
    }

    fn message_for_party(&self, party: &str, key: &str, value: &str) -> Option<String> {
        self.party_refs
            .get(&(party.to_string(), key.to_string(), value.to_string()))
            .map(|(_, m)| m.clone())
    }
}

/// The live projection and its thread.
pub struct Projector {
    store: Arc<Engine>,
    dir: PathBuf,
    policy: Policy,
    policy_source: &'static str,
    live: RwLock<Live>,
    ring: Mutex<Ring>,
    /// Entries covered when this process started: earlier changes were never kept.
    origin: u64,
    /// Names this process's stream positions (they restart with it).
    epoch: u64,
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    version: tokio::sync::watch::Sender<u64>,
    metrics: Arc<Metrics>,
    sweep_interval: Duration,
}

impl Projector {
    /// Loads the persisted facts (caught up from the log) and judges every message
    /// once, so later changes can be told apart from the starting state.
    pub fn start(
        store: Arc<Engine>,
        dir: PathBuf,
        (policy, policy_source): (Policy, &'static str),
        metrics: Arc<Metrics>,
        sweep_interval: Duration,
    ) -> Result<(Arc<Projector>, std::thread::JoinHandle<()>), projection::ProjectionError> {
        let (facts, report) = projection::load_or_rebuild(&dir, store.as_ref(), &mut |_| {})?;
        if let Some(why) = &report.rebuilt_because {
            eprintln!(
                "ledger serve: the persisted projection was not used: {why}; rebuilt it from the log"
            );
        }
        if report.applied > 0 || report.rebuilt_because.is_some() {
            projection::save(&dir, store.as_ref(), &facts)?;
        }
        let mut live = Live {
            facts,
            refs: FastMap::default(),
            party_refs: FastMap::default(),
            verdicts: FastMap::default(),
        };
        let now = Instant::now();
        let ids: Vec<String> = live
            .facts
            .messages()
            .map(|(id, _)| id.to_string())
            .collect();
        index_refs(&mut live, ids.iter().map(String::as_str));
        {
            let eval = Evaluator::new(&live.facts, &policy, now);
            let verdicts = eval
                .evaluate_all()
                .map(|e| (e.message.to_string(), e.verdict))
                .collect();
            live.verdicts = verdicts;
        }
        metrics.set_verdicts(&live.verdicts);
        let covered_at_start = live.facts.covered();
        let (version, _) = tokio::sync::watch::channel(0);
        let p = Arc::new(Projector {
            store,
            dir,
            policy,
            policy_source,
            live: RwLock::new(live),
            ring: Mutex::new(Ring::default()),
            origin: covered_at_start,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            wake: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            version,
            metrics,
            sweep_interval,
        });
        let runner = p.clone();
        let handle = std::thread::Builder::new()
            .name("projector".into())
            .spawn(move || runner.run())
            .expect("spawn the projector thread");
        Ok((p, handle))
    }

    /// The policy verdicts are judged under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the policy came from (`policy.toml` or `built-in default`).
    pub fn policy_source(&self) -> &'static str {
        self.policy_source
    }

    /// Read access to the live state.
    pub fn read(&self) -> RwLockReadGuard<'_, Live> {
        self.live.read().expect("projection lock")
    }

    /// Entries the live state covers.
    pub fn covered(&self) -> u64 {
        self.read().facts.covered()
    }

    /// Says new entries were appended.
    pub fn wake(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().expect("wake lock") = true;
        cv.notify_one();
    }

    /// Wakes every stream (e.g. at shutdown, so it can see the flag and end).
    pub fn nudge(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Waits until the live state covers at least `n` entries (every entry below seq
    /// `n`), at most `wait`; the covered count at the end, reached or not.
    pub async fn wait_covered(&self, n: u64, wait: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.subscribe();
        loop {
            rx.borrow_and_update();
            let covered = self.covered();
            if covered >= n {
                return covered;
            }
            // Appends here wake the projector at once; make sure it is awake for ones
            // that reached the store another way (another server on PostgreSQL).
            self.wake();
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.covered(),
            }
        }
    }

    /// A receiver that changes whenever the covered size or the changes move on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Verdict changes after `pos`, at most `limit`; `true` if some after `pos` are no
    /// longer kept — dropped from the ring, or from before this process started (the
    /// ring lives in memory) — so the reader should re-query reports.
    pub fn changes_after(&self, pos: Position, limit: usize) -> (Vec<VerdictChange>, bool) {
        let ring = self.ring.lock().expect("ring lock");
        let gap = pos.covered < self.origin || ring.dropped.is_some_and(|d| pos < d);
        let start = ring.items.partition_point(|c| c.pos <= pos);
        (
            ring.items.iter().skip(start).take(limit).cloned().collect(),
            gap,
        )
    }

    /// Names the positions of this process: a position from another one (before a
    /// restart) cannot be resumed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The newest stream position.
    pub fn head(&self) -> Position {
        let ring = self.ring.lock().expect("ring lock");
        let covered = self.covered();
        match ring.items.back() {
            Some(c) if c.pos.covered == covered => c.pos,
            _ => Position { covered, k: 0 },
        }
    }

    /// Stops the thread after its current step; it saves the facts on the way out.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn run(self: Arc<Self>) {
        lower_priority();
        let mut last_sweep = Clock::now();
        let mut last_save = Clock::now();
        let mut dirty = false;
        loop {
            {
                let (lock, cv) = &self.wake;
                let mut woken = lock.lock().expect("wake lock");
                if !*woken {
                    woken = cv
                        .wait_timeout(woken, Duration::from_millis(500))
                        .expect("wake lock")
                        .0;
                }
                *woken = false;
            }
            let stopping = self.stop.load(Ordering::SeqCst);
            match self.catch_up() {
                Ok(n) => dirty |= n > 0,
                Err(e) => eprintln!("ledger serve: projector: {e}"),
            }
            if last_sweep.elapsed() >= self.sweep_interval {
                self.sweep();
                last_sweep = Clock::now();
            }
            if dirty && (stopping || last_save.elapsed() >= SAVE_EVERY) {
                let live = self.read();
                if let Err(e) = projection::save(&self.dir, self.store.as_ref(), &live.facts) {
                    eprintln!("ledger serve: projector: saving the projection: {e}");
                }
                dirty = false;
                last_save = Clock::now();
            }
            if stopping {
                return;
            }
        }
    }

    /// Applies every entry appended since the last step; returns how many.
    fn catch_up(&self) -> Result<u64, projection::ProjectionError> {
        let mut applied = 0;
        loop {
            let from = self.covered();
            let size = self.store.size();
            if from >= size {
                return Ok(applied);
            }
            let to = size.min(from + CHUNK);
            let mut entries = Vec::with_capacity((to - from) as usize);
            self.store.scan(from, to, &mut |seq, bytes| {
                entries.push((seq, bytes.to_vec()));
                Ok(())
            })?;
            let now = Instant::now();
            let mut live = self.live.write().expect("projection lock");
            let mut touched: FastSet<String> = FastSet::default();
            for (seq, bytes) in &entries {
                live.facts.apply_entry_noting(*seq, bytes, &mut |m| {
                    touched.insert(m.to_string());
                })?;
            }
            index_refs(&mut live, touched.iter().map(String::as_str));
            // A resend's open changes its ancestors' verdicts too.
            let mut judge: FastSet<String> = FastSet::default();
            for m in &touched {
                let mut cur = Some(m.clone());
                let mut steps = 0;
                while let Some(c) = cur {
                    steps += 1;
                    cur = live
                        .facts
                        .message(&c)
                        .and_then(|f| f.resent_from.as_ref())
                        .map(|l| l.message.clone())
                        .filter(|_| steps < 1000);
                    judge.insert(c);
                }
            }
            let changes = self.judge(&mut live, judge.iter().map(String::as_str), now);
            drop(live);
            applied += to - from;
            self.publish(changes);
        }
    }

    /// Judges every message against the clock.
    fn sweep(&self) {
        let now = Instant::now();
        let mut live = self.live.write().expect("projection lock");
        let ids: Vec<String> = live
            .facts
            .messages()
            .map(|(id, _)| id.to_string())
            .collect();
        let changes = self.judge(&mut live, ids.iter().map(String::as_str), now);
        let verdicts = live.verdicts.clone();
        drop(live);
        self.metrics.set_verdicts(&verdicts);
        self.publish(changes);
    }

    /// Judges `ids` at `now` and records the verdicts that changed; the changes
    /// get their stream positions when published.
    fn judge<'a>(
        &self,
        live: &mut Live,
        ids: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> Vec<VerdictChange> {
        let mut out = Vec::new();
        {
            let eval = Evaluator::new(&live.facts, &self.policy, now);
            for id in ids {
                let Some(e) = eval.evaluate(id) else { continue };
                let before = live.verdicts.get(id).copied();
                // A message arriving in flight is no news; one arriving late, lost or
                // at risk is, and so is every change after.
                if before.is_none() && e.verdict == Verdict::Open {
                    live.verdicts.insert(id.to_string(), e.verdict);
                    continue;
                }
                if before != Some(e.verdict) {
                    out.push(VerdictChange {
                        pos: Position { covered: 0, k: 0 },
                        message: id.to_string(),
                        from: before,
                        to: e.verdict,
                        reason: e.reason.to_string(),
                        noticed_at: now,
                        sender: e.from.map(str::to_string),
                        recipient: e.to.map(str::to_string),
                    });
                }
            }
        }
        for c in &out {
            live.verdicts.insert(c.message.clone(), c.to);
        }
        out
    }

    fn publish(&self, changes: Vec<VerdictChange>) {
        let covered = self.covered();
        {
            let mut ring = self.ring.lock().expect("ring lock");
            let base = match ring.items.back() {
                Some(c) if c.pos.covered == covered => c.pos.k,
                _ => 0,
            };
            for (i, mut c) in changes.into_iter().enumerate() {
                c.pos = Position {
                    covered,
                    k: base + 1 + i as u32,
                };
                self.metrics.verdict_change(c.from, c.to);
                ring.items.push_back(c);
                if ring.items.len() > RING {
                    ring.dropped = ring.items.pop_front().map(|d| d.pos);
                }
            }
        }
        self.version.send_modify(|v| *v += 1);
    }
}

/// Adds the `sent.refs` of these messages to the refs index.
fn index_refs<'a>(live: &mut Live, ids: impl Iterator<Item = &'a str>) {
    for id in ids {
        let Some(sent) = live.facts.message(id).and_then(|m| m.sent.as_ref()) else {
            continue;
        };
        // "First" is the smallest `sent` seq, whatever order messages are indexed
        // in (at start they come in no particular order).
        let first = |slot: &mut (u64, String)| {
            if sent.seq < slot.0 {
                *slot = (sent.seq, id.to_string());
            }
        };
        for (k, v) in sent.refs.iter() {
            first(
                live.refs
                    .entry((k.to_string(), v.to_string()))
                    .or_insert((u64::MAX, String::new())),
            );
            for party in [&sent.from, &sent.to] {
                first(
                    live.party_refs
                        .entry((party.to_string(), k.to_string(), v.to_string()))
                        .or_insert((u64::MAX, String::new())),
                );
            }
        }
    }
}

/// Appends come first: when the machine is saturated the projector (derived state,
/// always rebuildable) yields the CPU to request handling and the writer, and catches
/// up when load drops. On Linux a thread has its own nice value.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority and gettid take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            eprintln!(
                "ledger serve: could not lower the projector thread's priority; it runs at normal priority"
            );
        }
    }
}
