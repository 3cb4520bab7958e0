//! The one append path, shared by both stores: taking requests in groups bounded in
//! events and bytes, planning each request against the log and the group (a retry
//! gets its original receipt; the same id with other content refuses the whole
//! request), the `recorded_at` clamp, building entries and their leaves, extending
//! the Merkle frontier, the receipts, and when to sign. A store adds only how it
//! finds recorded ids and how it makes a group durable: a segment write and
//! `fdatasync` (`FileStore`), one transaction (`PgStore`).
//!
//! The order of work for one group, in either store:
//! 1. [`Requests::next_group`] takes requests up to the [`GroupLimits`];
//! 2. the store finds the group's ids ([`ids`]) among recorded entries;
//! 3. [`AppendCore::build`] plans and builds the group (nothing changes yet);
//! 4. the store makes [`Group::entries`] durable;
//! 5. [`AppendCore::advance`] moves the chain's tail past the group, and the store
//!    answers each request with its result.
//!
//! A failure in 4 leaves the core where it was: whether the group is in is unknown
//! until the store recovers, and no receipt is given.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{CommitCallback, LedgerInfo, Receipt, StoreError};
use crate::checkpoint::{Checkpoint, SigningKey};
use crate::entry::{self, format_recorded_at};
use crate::event::Event;
use crate::hash::{Hash, HashAlg};
use crate::limits;
use crate::merkle::Frontier;

/// One caller's events and where its answer goes. All of it is recorded or none.
pub struct AppendRequest {
    /// The events, in order (empty: a store may take it as a request to flush).
    pub events: Vec<Event>,
    /// Called once with the outcome.
    pub reply: CommitCallback,
}

/// Hands `events` to a writer through `send`. `on_commit` is called once: by the
/// writer with the outcome, or here, at once, when there is nothing to append or the
/// writer cannot take the request.
pub fn hand_over(
    events: Vec<Event>,
    on_commit: CommitCallback,
    send: impl FnOnce(AppendRequest) -> Result<(), StoreError>,
) {
    if events.is_empty() {
        return on_commit(Ok(Vec::new()));
    }
    let (reply, refused) = super::commit_callback(on_commit);
    if let Err(e) = send(AppendRequest { events, reply }) {
        refused(e);
    }
}

/// How large a group may grow. A request is never split: one larger than the limits
/// is a group of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// Events in a group.
    pub events: usize,
    /// Canonical event bytes in a group.
    pub bytes: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            events: limits::BATCH_EVENTS_MAX,
            bytes: limits::BATCH_BYTES_MAX,
        }
    }
}

/// What the writer's loop waits on: requests, taken in groups.
pub struct Requests {
    rx: mpsc::Receiver<AppendRequest>,
    /// A request that would have taken the last group over its limits: the next
    /// group's first.
    held: Option<AppendRequest>,
    limits: GroupLimits,
}

/// What waiting for a group gave.
pub enum NextGroup {
    /// One or more requests, within the limits (or one request beyond them).
    Group(Vec<AppendRequest>),
    /// Nothing came within the wait.
    Idle,
    /// Every sender is gone and nothing is held.
    Closed,
}

fn weight(r: &AppendRequest) -> (usize, usize) {
    (
        r.events.len(),
        r.events.iter().map(|e| e.canonical_bytes().len()).sum(),
    )
}

impl Requests {
    /// Groups from `rx` within `limits`.
    pub fn new(rx: mpsc::Receiver<AppendRequest>, limits: GroupLimits) -> Requests {
        Requests {
            rx,
            held: None,
            limits,
        }
    }

    /// Waits up to `wait` (forever if `None`) for a request, then takes those
    /// already queued behind it while the group stays within the limits.
    pub fn next_group(&mut self, wait: Option<Duration>) -> NextGroup {
        let first = match self.held.take() {
            Some(r) => r,
            None => match wait {
                None => match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => return NextGroup::Closed,
                },
                Some(w) => match self.rx.recv_timeout(w) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => return NextGroup::Idle,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return NextGroup::Closed,
                },
            },
        };
        let (mut events, mut bytes) = weight(&first);
        let mut group = vec![first];
        while events < self.limits.events && bytes < self.limits.bytes {
            let Ok(r) = self.rx.try_recv() else { break };
            let (e, b) = weight(&r);
            if events + e > self.limits.events || bytes + b > self.limits.bytes {
                self.held = Some(r);
                break;
            }
            events += e;
            bytes += b;
            group.push(r);
        }
        NextGroup::Group(group)
    }

    /// Requests waiting behind the current group (held, or queued).
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }
}

/// The event ids of a group, each once, for the store to look up.
pub fn ids(group: &[AppendRequest]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::with_capacity_and_hasher(
        group.iter().map(|r| r.events.len()).sum(),
        foldhash::fast::RandomState::default(),
    );
    group
        .iter()
        .flat_map(|r| r.events.iter().map(Event::id_key))
        .filter(|id| seen.insert(*id))
        .collect()
}

/// An entry the log already holds, as the store found it by event id.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Its seq.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf: Hash,
    /// Its stored bytes, to compare the event with.
    pub entry: Vec<u8>,
}

/// The recorded entries of a group's ids, by id.
pub type RecordedIds = HashMap<String, Recorded, foldhash::fast::RandomState>;

/// One entry built for a group.
#[derive(Clone, Debug)]
pub struct BuiltEntry<'g> {
    /// Its seq.
    pub seq: u64,
    /// The event it records.
    pub event: &'g Event,
    /// Where its frame (length, CRC-32C, entry bytes) lies in [`Group::frames`].
    pub frame: Range<usize>,
    /// Its leaf hash (its receipt's hash).
    pub leaf: Hash,
    /// The previous entry's leaf hash, which it names.
    pub prev: Hash,
}

/// The bytes of a frame's header: length and CRC-32C, little-endian (FORMAT.md).
pub const FRAME_HEADER: usize = 8;

/// A group planned and built, not yet durable.
pub struct Group<'g> {
    /// The new entries framed back to back, as a segment holds them.
    pub frames: Vec<u8>,
    /// The new entries, in seq order.
    pub entries: Vec<BuiltEntry<'g>>,
    /// Perfect Merkle subtrees the new entries complete: (level, index, hash).
    pub nodes: Vec<(u32, u64, Hash)>,
    /// Each request's answer, in order: its receipts, or why none of it is recorded.
    pub results: Vec<Result<Vec<Receipt>, StoreError>>,
    first: u64,
    frontier: Frontier,
    prev: Hash,
    recorded_at: String,
}

impl<'g> Group<'g> {
    /// The stored bytes of one of its entries.
    pub fn entry_bytes(&self, e: &BuiltEntry<'_>) -> &[u8] {
        &self.frames[e.frame.start + FRAME_HEADER..e.frame.end]
    }

    /// The log's size before the group.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The log's size with the group.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The Merkle root with the group.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The `recorded_at` of its entries.
    pub fn recorded_at(&self) -> &str {
        &self.recorded_at
    }
}

/// How one event of a request resolves.
enum Plan {
    /// A new entry (or, the same id earlier in this request, that entry's receipt).
    New,
    /// Already recorded, or recorded earlier in this group: the original receipt.
    Duplicate(u64, Hash),
}

/// The chain's tail, and what every store's writer decides the same way.
pub struct AppendCore {
    info: LedgerInfo,
    frontier: Frontier,
    prev: Hash,
    last_recorded_at: String,
    latest_checkpoint: u64,
    last_checkpoint_at: Instant,
    checkpoint_interval: Duration,
    clock: fn() -> OffsetDateTime,
}

impl AppendCore {
    /// The writer's state over a log of `frontier.size()` entries, the last with leaf
    /// `prev` recorded at `last_recorded_at` (empty for an empty log), whose newest
    /// signed checkpoint is of size `latest_checkpoint`.
    pub fn new(
        info: LedgerInfo,
        frontier: Frontier,
        prev: Hash,
        last_recorded_at: String,
        latest_checkpoint: u64,
    ) -> AppendCore {
        AppendCore {
            info,
            frontier,
            prev,
            last_recorded_at,
            latest_checkpoint,
            last_checkpoint_at: Instant::now(),
            checkpoint_interval: Duration::from_millis(limits::CHECKPOINT_INTERVAL_MS),
            clock: OffsetDateTime::now_utc,
        }
    }

    /// The same, reading the time from `clock` (tests: a clock that goes back).
    pub fn with_clock(mut self, clock: fn() -> OffsetDateTime) -> AppendCore {
        self.clock = clock;
        self
    }

    /// The ledger it appends to.
    pub fn info(&self) -> &LedgerInfo {
        &self.info
    }

    /// Entries in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The Merkle frontier of the log.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// The size of the newest signed checkpoint.
    pub fn latest_checkpoint(&self) -> u64 {
        self.latest_checkpoint
    }

    /// Plans and builds `batch` against `recorded` (the recorded entries of its
    /// [`ids`]); changes nothing. A request with an event of a format the ledger
    /// does not take, or an id that is recorded (in the log or earlier in the group,
    /// or earlier in the request) with other content, gets its error and adds
    /// nothing.
    pub fn build<'g>(&self, batch: &'g [AppendRequest], recorded: &RecordedIds) -> Group<'g> {
        let alg = self.info.hash;
        let now = format_recorded_at((self.clock)());
        // The clock may step back; recorded_at never does.
        let recorded_at = if now < self.last_recorded_at {
            self.last_recorded_at.clone()
        } else {
            now
        };
        let events: usize = batch.iter().map(|r| r.events.len()).sum();
        let mut group = Group {
            frames: Vec::with_capacity(
                batch
                    .iter()
                    .flat_map(|r| &r.events)
                    .map(|e| e.canonical_bytes().len() + 200)
                    .sum(),
            ),
            entries: Vec::with_capacity(events),
            nodes: Vec::new(),
            results: Vec::with_capacity(batch.len()),
            first: self.frontier.size(),
            frontier: self.frontier.clone(),
            prev: self.prev,
            recorded_at,
        };
        // This group's new entries, by id: (seq, leaf, event bytes).
        let mut fresh: HashMap<&str, (u64, Hash, &[u8]), foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(events, Default::default());
        for req in batch {
            let plans = match self.plan(req, recorded, &fresh, group.frontier.size()) {
                Ok(p) => p,
                Err(e) => {
                    group.results.push(Err(e));
                    continue;
                }
            };
            let mut receipts = Vec::with_capacity(req.events.len());
            for (ev, plan) in req.events.iter().zip(plans) {
                if let Plan::Duplicate(seq, leaf) = plan {
                    receipts.push(Receipt::duplicate(seq, leaf));
                    continue;
                }
                // The same id earlier in this request: that entry's receipt.
                if let Some(&(seq, leaf, _)) = fresh.get(ev.id_key()) {
                    receipts.push(Receipt::duplicate(seq, leaf));
                    continue;
                }
                let built = append_entry(&mut group, alg, ev);
                fresh.insert(ev.id_key(), (built.seq, built.leaf, ev.canonical_bytes()));
                receipts.push(Receipt::new(built.seq, built.leaf));
                group.entries.push(built);
            }
            group.results.push(Ok(receipts));
        }
        group
    }

    /// Resolves each event of a request against the log and the group, changing
    /// nothing: a conflict anywhere refuses the whole request. `next` is the seq the
    /// request's first new entry would get.
    fn plan(
        &self,
        req: &AppendRequest,
        recorded: &RecordedIds,
        fresh: &HashMap<&str, (u64, Hash, &[u8]), foldhash::fast::RandomState>,
        next: u64,
    ) -> Result<Vec<Plan>, StoreError> {
        let mut plans = Vec::with_capacity(req.events.len());
        // Ids new in this request: their bytes and the seq the first would get.
        let mut mine: HashMap<&str, (&[u8], u64), foldhash::fast::RandomState> = HashMap::default();
        let conflict = |ev: &Event, seq: u64| StoreError::Conflict {
            id: ev.id().to_string(),
            seq,
        };
        for ev in &req.events {
            if u64::from(ev.format()) > self.info.format {
                return Err(StoreError::FormatTooNew {
                    id: ev.id().to_string(),
                    event: ev.format(),
                    ledger: self.info.format,
                });
            }
            let id = ev.id_key();
            if let Some(&(bytes, seq)) = mine.get(id) {
                if bytes != ev.canonical_bytes() {
                    return Err(conflict(ev, seq));
                }
                plans.push(Plan::New);
            } else if let Some(&(seq, leaf, bytes)) = fresh.get(id) {
                if bytes != ev.canonical_bytes() {
                    return Err(conflict(ev, seq));
                }
                plans.push(Plan::Duplicate(seq, leaf));
            } else if let Some(r) = recorded.get(id) {
                let same = entry::parse_envelope(&r.entry)
                    .map(|p| p.event.as_bytes() == ev.canonical_bytes() && p.v == ev.format())
                    .unwrap_or(false);
                if !same {
                    return Err(conflict(ev, r.seq));
                }
                plans.push(Plan::Duplicate(r.seq, r.leaf));
            } else {
                mine.insert(id, (ev.canonical_bytes(), next + mine.len() as u64));
                plans.push(Plan::New);
            }
        }
        Ok(plans)
    }

    /// Moves the tail past `group`, once the store has made it durable.
    ///
    /// # Panics
    /// If the group was built on another tail (a store bug: entries would be lost
    /// or doubled).
    pub fn advance(&mut self, group: Group<'_>) {
        assert_eq!(
            group.first,
            self.frontier.size(),
            "a group built at size {} advanced a log of size {}",
            group.first,
            self.frontier.size()
        );
        if group.entries.is_empty() {
            return;
        }
        self.frontier = group.frontier;
        self.prev = group.prev;
        self.last_recorded_at = group.recorded_at;
    }

    /// Whether to sign a checkpoint now: entries no checkpoint covers, and the
    /// writer about to fall idle, or the interval passed since the last one.
    pub fn checkpoint_due(&self, idle: bool) -> bool {
        self.frontier.size() > self.latest_checkpoint && (idle || self.interval_passed())
    }

    /// Whether the checkpoint interval has passed since the last one was signed.
    pub fn interval_passed(&self) -> bool {
        self.last_checkpoint_at.elapsed() >= self.checkpoint_interval
    }

    /// How long until the entries past the newest checkpoint are due one (so that a
    /// receipt's entry is covered soon even if nothing follows it); `None` if it
    /// covers them all.
    pub fn checkpoint_due_in(&self) -> Option<Duration> {
        (self.latest_checkpoint < self.frontier.size()).then(|| {
            self.checkpoint_interval
                .saturating_sub(self.last_checkpoint_at.elapsed())
        })
    }

    /// The signed note of a checkpoint of the log as it stands (size, note).
    pub fn sign(&self, key: &SigningKey) -> (u64, String) {
        self.sign_at(key, &self.frontier)
    }

    /// The signed note of a checkpoint of the log with `group` (for a store that
    /// commits the checkpoint with the group).
    pub fn sign_with(&self, key: &SigningKey, group: &Group<'_>) -> (u64, String) {
        self.sign_at(key, &group.frontier)
    }

    fn sign_at(&self, key: &SigningKey, frontier: &Frontier) -> (u64, String) {
        let cp = Checkpoint {
            origin: self.info.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
        };
        (cp.size, key.sign(&cp))
    }

    /// A checkpoint of `size` is stored.
    pub fn signed(&mut self, size: u64) {
        self.latest_checkpoint = self.latest_checkpoint.max(size);
        self.last_checkpoint_at = Instant::now();
    }
}

/// Builds the next entry of `group` for `ev`: its frame, leaf and frontier step.
fn append_entry<'g>(group: &mut Group<'g>, alg: HashAlg, ev: &'g Event) -> BuiltEntry<'g> {
    let seq = group.frontier.size();
    let prev = group.prev;
    let start = group.frames.len();
    group.frames.extend_from_slice(&[0; FRAME_HEADER]);
    entry::write_entry(
        &mut group.frames,
        seq,
        &prev,
        &group.recorded_at,
        ev.format(),
        ev.canonical_bytes(),
    );
    let bytes = &group.frames[start + FRAME_HEADER..];
    // What is written is what was meant: the entry parses back to its parts (by the
    // fixed layout a verifier reads), and fits an entry's limit.
    let back = entry::parse_envelope(bytes).expect("a built entry parses back");
    assert!(
        back.seq == seq
            && back.prev == prev
            && back.recorded_at == group.recorded_at
            && back.v == ev.format()
            && back.event.as_bytes() == ev.canonical_bytes(),
        "entry {seq} does not parse back to what was built"
    );
    assert!(
        bytes.len() <= limits::ENTRY_BYTES_MAX,
        "entry {seq} too large"
    );
    let len = (bytes.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(bytes).to_le_bytes();
    let leaf = alg.leaf(bytes);
    group.frames[start..start + 4].copy_from_slice(&len);
    group.frames[start + 4..start + FRAME_HEADER].copy_from_slice(&crc);
    let nodes = &mut group.nodes;
    group.frontier.push(leaf, |l, i, h| nodes.push((l, i, *h)));
    group.prev = leaf;
    BuiltEntry {
        seq,
        event: ev,
        frame: start..group.frames.len(),
        leaf,
        prev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, message: &str) -> Event {
        Event::from_json(
            format!(
                r#"{{"id":"{id}","type":"delivered","message":"{message}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"974760673","system":"websak"}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn request(events: Vec<Event>) -> AppendRequest {
        AppendRequest {
            events,
            reply: Box::new(|_| {}),
        }
    }

    fn core() -> AppendCore {
        let info = LedgerInfo {
            format: 2,
            origin: "ledger.example/append".into(),
            hash: HashAlg::Blake3,
        };
        let prev = info.hash.genesis(&info.origin);
        AppendCore::new(info, Frontier::new(HashAlg::Blake3), prev, String::new(), 0)
    }

    fn groups(rx: mpsc::Receiver<AppendRequest>, limits: GroupLimits) -> Vec<Vec<usize>> {
        let mut requests = Requests::new(rx, limits);
        let mut out = Vec::new();
        while let NextGroup::Group(g) = requests.next_group(Some(Duration::ZERO)) {
            out.push(g.iter().map(|r| r.events.len()).collect());
        }
        out
    }

    #[test]
    fn groups_stay_within_their_limits_in_events_and_bytes() {
        let sizes = [3, 4, 2, 9, 1];
        let queue = || {
            let (tx, rx) = mpsc::channel();
            for (k, n) in sizes.iter().enumerate() {
                let events = (0..*n).map(|i| ev(&format!("e{k}-{i}"), "M")).collect();
                tx.send(request(events)).unwrap();
            }
            rx
        };
        let by_events = GroupLimits {
            events: 8,
            bytes: usize::MAX,
        };
        // 3+4 fit; 2 would make 9; the 9 is a group of its own, over the limit.
        assert_eq!(
            groups(queue(), by_events),
            [vec![3, 4], vec![2], vec![9], vec![1]]
        );
        let one = ev("e0-0", "M").canonical_bytes().len();
        let by_bytes = GroupLimits {
            events: usize::MAX,
            bytes: 6 * one + one / 2,
        };
        assert_eq!(
            groups(queue(), by_bytes),
            [vec![3], vec![4, 2], vec![9], vec![1]]
        );
    }

    #[test]
    fn a_group_is_planned_whole_and_changes_nothing_until_advanced() {
        let mut c = core();
        let batch = vec![
            request(vec![ev("a", "M1"), ev("b", "M1"), ev("a", "M1")]),
            // The same id as the first request's, with other content: refused whole.
            request(vec![ev("c", "M2"), ev("a", "M-OTHER")]),
            // The same id and content: the first request's receipt.
            request(vec![ev("b", "M1")]),
            // Within one request, one id with two contents.
            request(vec![ev("d", "M3"), ev("d", "M4")]),
        ];
        let mut group = c.build(&batch, &RecordedIds::default());
        assert_eq!(c.size(), 0, "nothing moves before the group is durable");
        let seqs = |r: &Result<Vec<Receipt>, StoreError>| {
            r.as_ref()
                .unwrap()
                .iter()
                .map(|r| (r.seq, r.duplicate))
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(&group.results[0]), [(0, false), (1, false), (0, true)]);
        assert!(matches!(
            &group.results[1],
            Err(StoreError::Conflict { id, seq: 0 }) if id == "a"
        ));
        assert_eq!(seqs(&group.results[2]), [(1, true)]);
        assert!(matches!(
            &group.results[3],
            Err(StoreError::Conflict { id, seq: 2 }) if id == "d"
        ));
        assert_eq!(group.entries.len(), 2);
        for e in &group.entries {
            let p = entry::parse_entry(group.entry_bytes(e)).unwrap();
            assert_eq!(p.seq, e.seq);
            assert_eq!(HashAlg::Blake3.leaf(group.entry_bytes(e)), e.leaf);
        }
        let leaves: Vec<Hash> = group.entries.iter().map(|e| e.leaf).collect();
        let root = group.root();
        group.results.clear();
        c.advance(group);
        assert_eq!(c.size(), 2);
        assert_eq!(c.frontier().root(), root);
        assert_eq!(root, crate::merkle::root_of(HashAlg::Blake3, &leaves));

        // A recorded id: its receipt, or a conflict naming its seq.
        let z = [request(vec![ev("z", "M9")])];
        let stored = {
            let g = c.build(&z, &RecordedIds::default());
            g.entry_bytes(&g.entries[0]).to_vec()
        };
        let mut recorded = RecordedIds::default();
        recorded.insert(
            "z".into(),
            Recorded {
                seq: 7,
                leaf: HashAlg::Blake3.leaf(&stored),
                entry: stored,
            },
        );
        let again = [request(vec![ev("z", "M9")]), request(vec![ev("z", "M8")])];
        let g = c.build(&again, &recorded);
        assert_eq!(seqs(&g.results[0]), [(7, true)]);
        assert!(matches!(
            &g.results[1],
            Err(StoreError::Conflict { seq: 7, .. })
        ));
        assert!(g.entries.is_empty());
    }

    #[test]
    fn recorded_at_never_goes_back_with_the_clock() {
        fn past() -> OffsetDateTime {
            OffsetDateTime::UNIX_EPOCH
        }
        let mut c = core();
        let a = [request(vec![ev("a", "M")])];
        let g = c.build(&a, &RecordedIds::default());
        let first = g.recorded_at().to_string();
        c.advance(g);
        let mut c = c.with_clock(past);
        let b = [request(vec![ev("b", "M")])];
        let g = c.build(&b, &RecordedIds::default());
        assert_eq!(g.recorded_at(), first, "clamped to the last entry's time");
        c.advance(g);
        assert_eq!(c.size(), 2);
    }

    #[test]
    #[should_panic(expected = "advanced a log of size")]
    fn a_group_built_on_another_tail_is_refused() {
        let mut c = core();
        let batch = [request(vec![ev("a", "M")])];
        let stale = c.build(&batch, &RecordedIds::default());
        let g = c.build(&batch, &RecordedIds::default());
        c.advance(g);
        c.advance(stale);
    }
}
