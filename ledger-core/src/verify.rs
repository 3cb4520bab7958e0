//! Verification: the whole chain, the Merkle root at every checkpoint, the
//! signatures, and (given a trusted older checkpoint) consistency with it. Works on
//! a store directory or an export bundle, reading only files (never the index), in
//! one streaming pass with memory flat in the log's size.
//!
//! Every fault is reported with its seq and place; verification goes on after a
//! fault so that one run shows all of them (up to [`FAULTS_MAX`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, VerifierKey, split_notes};
use crate::entry::{check_entry, check_key_entry, parse_envelope};
use crate::hash::{Hash, HashAlg, to_hex};
use crate::limits::ENTRY_BYTES_MAX;
use crate::merkle::{self, Frontier, SubtreeSource};
use crate::rotation::KeyHistory;
use crate::segment::{self, FrameError, FrameReader};
use crate::store::{LedgerInfo, read_info};

/// Progress is reported in steps of this many bytes (a call per entry would cost
/// more than checking it).
const PROGRESS_STEP_BYTES: u64 = 1 << 20;

/// Faults kept in a report; further ones are only counted.
pub const FAULTS_MAX: usize = 100;

/// Progress of a long verification, in bytes read.
pub trait Progress {
    /// Total bytes to read.
    fn total(&self, bytes: u64);
    /// Bytes read since the last call.
    fn advance(&self, bytes: u64);
}

impl Progress for () {
    fn total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// What to trust.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The verifier key (or key history, FORMAT.md §17) to check signatures with.
    /// Without it, the keys stored beside the log are used, which proves integrity but
    /// not authorship (a warning says so).
    pub key: Option<KeyHistory>,
    /// An older checkpoint (signed note) the auditor holds: the log must extend it.
    pub trusted: Option<String>,
    /// Also check that no event id is recorded twice (the idempotency promise). This
    /// costs 24 bytes of memory per entry, so it is not on by default: the rest of
    /// verification runs in memory flat in the log's size.
    pub unique_ids: bool,
    /// Also re-validate every event against the format's rules and check it is in
    /// canonical form, as `append` did (about ten times slower). Without it, the
    /// envelope of every entry is checked exactly and the event is covered by the
    /// chain and the signed roots, but not re-validated.
    pub deep: bool,
    /// Also read every event with today's admission rules (FORMAT.md §3.8, the API's,
    /// the strictest): what an older rule let into the log is reported as warnings
    /// naming the entry and the field, never the value. The log cannot be changed;
    /// the operator learns what it holds.
    pub privacy: bool,
}

/// One thing that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The entry's seq, where the fault belongs to one.
    pub seq: Option<u64>,
    /// File and offset or line.
    pub place: String,
    /// What is wrong, with expected and actual values where there are some.
    pub what: String,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Origin of the ledger.
    pub origin: String,
    /// Hash function.
    pub hash: Option<HashAlg>,
    /// Entries read.
    pub entries: u64,
    /// Merkle root of the entries read.
    pub root: Hash,
    /// Signed checkpoints checked against the log.
    pub checkpoints_checked: u64,
    /// Size of the newest valid checkpoint.
    pub latest_checkpoint: Option<u64>,
    /// Size of the trusted checkpoint the log was found consistent with.
    pub consistent_with_trusted: Option<u64>,
    /// Faults found (at most [`FAULTS_MAX`]).
    pub faults: Vec<Fault>,
    /// Faults found beyond those kept.
    pub faults_not_kept: u64,
    /// Things worth knowing that are not faults.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// True when no fault was found.
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }

    /// The first fault, which is where things first went wrong.
    pub fn first_fault(&self) -> Option<&Fault> {
        self.faults.first()
    }
}

/// An error that stops verification before it can say anything about the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The ledger's description or key is missing or unreadable.
    #[error("{0}")]
    Setup(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VerifyError {
    let context = context.into();
    move |source| VerifyError::Io { context, source }
}

/// A perfect subtree source that only records what a proof would ask for.
struct Wanted(std::cell::RefCell<HashSet<(u32, u64)>>);
impl SubtreeSource for Wanted {
    type Error = std::convert::Infallible;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0.borrow_mut().insert((level, index));
        Ok([0; 32])
    }
}
struct Captured(HashMap<(u32, u64), Hash>);
impl SubtreeSource for Captured {
    type Error = (u32, u64);
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0.get(&(level, index)).copied().ok_or((level, index))
    }
}

/// Checks entries one by one as they stream past.
struct Chain {
    alg: HashAlg,
    next_seq: u64,
    prev: Hash,
    last_recorded_at: String,
    frontier: Frontier,
    /// Verified checkpoints by size: root and where the note came from.
    checkpoints: BTreeMap<u64, (Hash, String)>,
    /// Trusted checkpoint, and the subtrees its consistency proof needs.
    trusted: Option<Checkpoint>,
    wanted: HashSet<(u32, u64)>,
    captured: HashMap<(u32, u64), Hash>,
    /// With [`VerifyOptions::unique_ids`]: a 128-bit hash of each event id, with its
    /// seq. Sorted at the end, neighbours with equal hashes are repeats.
    ids: Option<Vec<(u128, u64)>>,
    /// The highest entry format `ledger.json` allows.
    format: u64,
    deep: bool,
    privacy: bool,
    /// Entries the privacy scan reported, and those it only counted.
    privacy_found: u64,
    /// The log's origin: the name every announced key must carry.
    origin: String,
    /// The keys checkpoints are checked with, once [`setup`] has chosen them.
    keys: Option<KeyHistory>,
    /// The key entries read: (seq, announced key).
    announced: Vec<(u64, VerifierKey)>,
    report: VerifyReport,
}

/// Privacy findings listed one by one; the rest are counted.
const PRIVACY_SHOWN: u64 = 100;

/// What the admission rule refusing `field` is about, in words that never repeat the
/// value.
fn privacy_rule(field: &str) -> &'static str {
    match field {
        "note" => "a free-text note",
        "reason" | "error" | "status" | "by_role" | "system" | "from_system" | "to_system"
        | "reporter.system" => "free text where a code belongs",
        "journal_ref" => "free text where an identifier belongs",
        "reporter.seq" => "a sequence number of ten or more digits",
        f if f.starts_with("refs.") => "free text where an identifier belongs",
        _ => "what may be a national identity number",
    }
}

/// The fields `--unique-ids` needs from an event it does not validate: its id and,
/// in format 2, the organisation that scopes it.
#[derive(serde::Deserialize)]
struct EventId<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    reporter: Option<ReporterOrg<'a>>,
}

#[derive(serde::Deserialize)]
struct ReporterOrg<'a> {
    #[serde(borrow)]
    org: std::borrow::Cow<'a, str>,
}

impl Chain {
    fn fault(&mut self, seq: Option<u64>, place: String, what: String) {
        if self.report.faults.len() < FAULTS_MAX {
            self.report.faults.push(Fault { seq, place, what });
        } else {
            self.report.faults_not_kept += 1;
        }
    }

    fn entry(&mut self, place: impl Fn() -> String, bytes: &[u8]) {
        let hash = self.alg.leaf(bytes);
        self.entry_hashed(place, bytes, hash);
    }

    /// As [`Chain::entry`], with the entry hash computed elsewhere.
    fn entry_hashed(&mut self, place: impl Fn() -> String, bytes: &[u8], hash: Hash) {
        let seq = self.next_seq;
        let parsed = if self.deep {
            check_entry(bytes).map(|(p, e)| (p, Some(e)))
        } else {
            parse_envelope(bytes).map(|p| (p, None))
        };
        // A key announcement is checked whole, deep or not: it decides which key signs
        // every checkpoint after it.
        let parsed = match parsed {
            Ok((p, _)) if p.is_key_entry() => match check_key_entry(bytes, &self.origin) {
                Ok((p, a)) => {
                    self.announced.push((seq, a.key));
                    Ok((p, None))
                }
                Err(e) => Err(e),
            },
            Err(e) if bytes.ends_with(b",\"v\":3}") => {
                // The deep check refuses a key entry as an event; say what it is.
                check_key_entry(bytes, &self.origin)
                    .map(|(p, a)| {
                        self.announced.push((seq, a.key));
                        (p, None)
                    })
                    .map_err(|_| e)
            }
            other => other,
        };
        match parsed {
            Err(e) => self.fault(Some(seq), place(), format!("entry {seq}: {e}")),
            Ok((p, event)) => {
                if u64::from(p.v) > self.format {
                    self.fault(
                        Some(seq),
                        place(),
                        format!(
                            "entry {seq} is format {}, but ledger.json says the ledger holds format {}",
                            p.v, self.format
                        ),
                    );
                }
                if let Some(ids) = &mut self.ids
                    && !p.is_key_entry()
                {
                    // Format 1 ids share one namespace; format 2 ids are scoped by
                    // the reporting organisation (FORMAT.md §3.9).
                    let id = match &event {
                        Some(e) => std::borrow::Cow::Borrowed(e.id_key()),
                        None => serde_json::from_str::<EventId<'_>>(p.event)
                            .map(|e| {
                                let org = e.reporter.map(|r| r.org).unwrap_or_default();
                                crate::event::id_key(p.v, &org, &e.id).into_owned().into()
                            })
                            .unwrap_or_default(),
                    };
                    let h = blake3::hash(id.as_bytes());
                    let h = u128::from_le_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"));
                    ids.push((h, seq));
                }
                if self.privacy
                    && !p.is_key_entry()
                    && let Ok(ev) = crate::Event::from_json_as(p.event.as_bytes(), p.v)
                    && let Err(e) = crate::admission::check_api(&ev)
                {
                    self.privacy_found += 1;
                    if self.privacy_found <= PRIVACY_SHOWN {
                        self.report.warnings.push(format!(
                            "entry {seq}: field `{}` holds {} (today's admission rules would refuse it)",
                            e.field,
                            privacy_rule(&e.field)
                        ));
                    }
                }
                if p.seq != seq {
                    self.fault(
                        Some(seq),
                        place(),
                        format!("expected seq {seq}, found seq {}", p.seq),
                    );
                }
                if p.prev != self.prev {
                    let of = if seq == 0 {
                        "the genesis value H(0x02 ‖ origin)".to_string()
                    } else {
                        format!("the hash of entry {}", seq - 1)
                    };
                    let what = format!(
                        "chain broken: prev is {}, but {of} is {}",
                        to_hex(&p.prev),
                        to_hex(&self.prev)
                    );
                    self.fault(Some(seq), place(), what);
                }
                if p.recorded_at < self.last_recorded_at.as_str() {
                    self.fault(
                        Some(seq),
                        place(),
                        format!(
                            "recorded_at {} is earlier than the previous entry's {}",
                            p.recorded_at, self.last_recorded_at
                        ),
                    );
                }
                // Reused, not reallocated: this runs for every entry.
                self.last_recorded_at.clear();
                self.last_recorded_at.push_str(p.recorded_at);
            }
        }
        self.prev = hash;
        self.next_seq += 1;
        let (wanted, captured) = (&self.wanted, &mut self.captured);
        self.frontier.push(hash, |l, i, h| {
            if wanted.contains(&(l, i)) {
                captured.insert((l, i), *h);
            }
        });
        let size = self.frontier.size();
        if let Some((root, from)) = self.checkpoints.get(&size).cloned() {
            self.check_root(size, &root, &from);
        }
        if let Some(t) = self.trusted.clone()
            && t.size == size
        {
            self.check_root(size, &t.root, "the trusted checkpoint");
        }
    }

    fn check_root(&mut self, size: u64, expected: &Hash, from: &str) {
        let actual = self.frontier.root();
        if &actual != expected {
            self.fault(
                Some(size.saturating_sub(1)),
                from.to_string(),
                format!(
                    "Merkle root of the first {size} entries is {}, but {from} signs {}",
                    to_hex(&actual),
                    to_hex(expected)
                ),
            );
        }
    }

    /// Checks a signed note and, if it verifies, remembers its root.
    fn note(&mut self, key: &KeyHistory, note: &str, from: String) {
        match key.verify(note) {
            Ok(cp) => {
                if cp.size == 0 && cp.root != self.alg.empty() {
                    self.fault(
                        None,
                        from.clone(),
                        "checkpoint of size 0 has a root other than the empty tree's".into(),
                    );
                }
                if let Some((root, _)) = self.checkpoints.get(&cp.size)
                    && *root != cp.root
                {
                    self.fault(
                        None,
                        from.clone(),
                        format!("two checkpoints for size {} sign different roots", cp.size),
                    );
                }
                self.checkpoints.insert(cp.size, (cp.root, from));
            }
            Err(e) => self.fault(None, from, format!("checkpoint rejected: {e}")),
        }
    }

    fn start(&mut self, opts_trusted: Option<(Checkpoint, u64)>) {
        if self.checkpoints.contains_key(&0) {
            let root = self.frontier.root();
            let (expected, from) = self.checkpoints[&0].clone();
            if root != expected {
                self.fault(
                    None,
                    from,
                    "size-0 checkpoint does not sign the empty root".into(),
                );
            }
        }
        if let Some((t, latest)) = opts_trusted {
            let w = Wanted(Default::default());
            let _ = merkle::consistency_proof(self.alg, &w, t.size, latest.max(t.size));
            self.wanted = w.0.into_inner();
            self.trusted = Some(t);
        }
    }

    fn finish(mut self, info: &LedgerInfo) -> VerifyReport {
        let size = self.frontier.size();
        if let Some(keys) = self.keys.take()
            && let Err(e) = keys.check_announcements(&self.announced, size)
        {
            self.fault(None, "verifier.key".into(), e.to_string());
        }
        if self.privacy {
            let more = self.privacy_found.saturating_sub(PRIVACY_SHOWN);
            self.report.warnings.push(format!(
                "privacy: {} entries hold what today's admission rules would refuse{}",
                self.privacy_found,
                if more > 0 {
                    format!(" ({more} not listed)")
                } else {
                    String::new()
                }
            ));
        }
        if let Some(mut ids) = self.ids.take() {
            ids.sort_unstable();
            for w in ids.windows(2) {
                if w[0].0 == w[1].0 {
                    self.fault(
                        Some(w[1].1),
                        format!("entry {}", w[1].1),
                        format!(
                            "event id already recorded at seq {}: an event id must be recorded once",
                            w[0].1
                        ),
                    );
                }
            }
        }
        self.report.entries = size;
        self.report.root = self.frontier.root();
        self.report.origin = info.origin.clone();
        self.report.hash = Some(info.hash);
        self.report.checkpoints_checked = self.checkpoints.len() as u64;
        self.report.latest_checkpoint = self.checkpoints.keys().next_back().copied();
        let beyond: Vec<(u64, String)> = self
            .checkpoints
            .range(size + 1..)
            .map(|(s, (_, from))| (*s, from.clone()))
            .collect();
        for (s, from) in beyond {
            self.fault(
                Some(size),
                from,
                format!("a signed checkpoint covers {s} entries but only {size} are present: entries are missing"),
            );
        }
        match self.report.latest_checkpoint {
            None => self.fault(
                None,
                "checkpoints".into(),
                "no signed checkpoint verifies".into(),
            ),
            Some(l) if l < size => self.report.warnings.push(format!(
                "{} entries after seq {} are not yet covered by a signed checkpoint",
                size - l,
                l.saturating_sub(1)
            )),
            _ => {}
        }
        if let Some(t) = self.trusted.take() {
            let latest = self.report.latest_checkpoint.unwrap_or(0).min(size);
            if t.size > size {
                self.fault(
                    None,
                    "the trusted checkpoint".into(),
                    format!(
                        "the trusted checkpoint covers {} entries but the log has only {size}",
                        t.size
                    ),
                );
            } else if let Some((latest_root, _)) = self.checkpoints.get(&latest).cloned() {
                let src = Captured(std::mem::take(&mut self.captured));
                match merkle::consistency_proof(self.alg, &src, t.size, latest) {
                    Ok(proof) => match merkle::verify_consistency(self.alg, t.size, latest, &t.root, &latest_root, &proof) {
                        Ok(()) => self.report.consistent_with_trusted = Some(t.size),
                        Err(e) => self.fault(
                            Some(t.size.saturating_sub(1)),
                            "the trusted checkpoint".into(),
                            format!(
                                "history was rewritten: the consistency proof from the trusted checkpoint (size {}) to the newest (size {latest}) fails: {e}",
                                t.size
                            ),
                        ),
                    },
                    Err(_) => self.fault(None, "the trusted checkpoint".into(), "could not build the consistency proof".into()),
                }
            }
        }
        self.report
    }
}

fn setup(
    info: &LedgerInfo,
    stored_key: &str,
    opts: &VerifyOptions,
    chain: &mut Chain,
) -> Result<(KeyHistory, Option<Checkpoint>), VerifyError> {
    let warnings = &mut chain.report.warnings;
    let key = match &opts.key {
        Some(k) => k.clone(),
        None => {
            warnings.push(
                "no --key given: signatures were checked with the key stored beside the log, which proves \
                 integrity but not who signed; pass the verifier key you hold"
                    .into(),
            );
            stored_key
                .parse::<KeyHistory>()
                .map_err(|e| VerifyError::Setup(format!("verifier.key: {e}")))?
        }
    };
    if key.name() != info.origin {
        return Err(VerifyError::Setup(format!(
            "the verifier key is for {:?} but the ledger's origin is {:?}",
            key.name(),
            info.origin
        )));
    }
    // A trusted checkpoint that the ledger's key does not sign is a finding about the
    // ledger (re-keyed, or another log passed off as this one), not a failure to run.
    let trusted = match &opts.trusted {
        None => None,
        Some(note) => match key.verify(note) {
            Ok(cp) => Some(cp),
            Err(e) => {
                let whose = if opts.key.is_some() {
                    "the --key given"
                } else {
                    "the ledger's own verifier.key"
                };
                chain.fault(
                    None,
                    "trusted checkpoint".into(),
                    format!(
                        "the trusted checkpoint does not verify with {whose} ({e}): the log was \
                         re-signed with another key, or it is not the log the checkpoint came from"
                    ),
                );
                None
            }
        },
    };
    chain.keys = Some(key.clone());
    Ok((key, trusted))
}

fn new_chain(info: &LedgerInfo, opts: &VerifyOptions) -> Chain {
    Chain {
        alg: info.hash,
        next_seq: 0,
        prev: info.hash.genesis(&info.origin),
        last_recorded_at: String::new(),
        frontier: Frontier::new(info.hash),
        checkpoints: BTreeMap::new(),
        trusted: None,
        wanted: HashSet::new(),
        captured: HashMap::new(),
        ids: opts.unique_ids.then(Vec::new),
        format: info.format,
        deep: opts.deep,
        privacy: opts.privacy,
        privacy_found: 0,
        origin: info.origin.clone(),
        keys: None,
        announced: Vec::new(),
        report: VerifyReport::default(),
    }
}

/// Verifies a store directory from its files alone: `ledger.json`, `log/*.seg`,
/// `checkpoints.log`, `verifier.key`.
pub fn verify_store(
    dir: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport, VerifyError> {
    let info = read_info(dir).map_err(|e| VerifyError::Setup(e.to_string()))?;
    let stored_key = std::fs::read_to_string(dir.join("verifier.key")).unwrap_or_default();
    let mut chain = new_chain(&info, opts);
    let (key, trusted) = setup(&info, &stored_key, opts, &mut chain)?;

    // Checkpoints first, so roots are compared as the entries stream past.
    let ck_path = dir.join("checkpoints.log");
    let (mut r, first) = FrameReader::open(&ck_path, segment::CHECKPOINTS_MAGIC)
        .map_err(io_err(format!("read {}", ck_path.display())))?;
    if let Err(e) = first {
        chain.fault(None, ck_path.display().to_string(), e.to_string());
    }
    while let Some(frame) = r
        .next_frame(64 * 1024)
        .map_err(io_err("read checkpoints.log"))?
    {
        match frame {
            Ok(f) => {
                let note = String::from_utf8_lossy(&f.payload).into_owned();
                chain.note(&key, &note, format!("checkpoints.log offset {}", f.offset));
            }
            Err(e) => {
                let at = r.offset();
                match segment::valid_frame_after(
                    &ck_path,
                    at,
                    segment::NOTE_BYTES_MAX,
                    segment::looks_like_note,
                )
                .map_err(io_err("read checkpoints.log"))?
                {
                    None if matches!(e, FrameError::Truncated { .. }) => chain.report.warnings.push(format!(
                        "checkpoints.log ends in a torn record at offset {at} ({e}); the next open \
                         cuts it (a checkpoint that was never fsynced)"
                    )),
                    None => chain.fault(
                        None,
                        format!("checkpoints.log offset {at}"),
                        format!("{e} (the last record is complete but damaged)"),
                    ),
                    Some(next) => chain.fault(
                        None,
                        format!("checkpoints.log offset {at}"),
                        format!(
                            "{e}; a valid checkpoint follows at offset {next}, so this record was \
                             written whole and is damaged (the checkpoints after it are not read)"
                        ),
                    ),
                }
            }
        }
    }
    let latest = chain.checkpoints.keys().next_back().copied().unwrap_or(0);
    chain.start(trusted.map(|t| (t, latest)));

    let segs = segment::list_segments(&dir.join("log")).map_err(io_err("list segments"))?;
    let total: u64 = segs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    progress.total(total);
    if segs.first().map(|s| s.0) != Some(0) {
        chain.fault(
            Some(0),
            "log/".into(),
            "the first segment (starting at seq 0) is missing".into(),
        );
    }
    let n = segs.len();
    for (i, (first, path)) in segs.into_iter().enumerate() {
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if first != chain.next_seq {
            chain.fault(
                Some(chain.next_seq),
                name.clone(),
                format!(
                    "segment starts at seq {first} but the previous one ended before seq {}",
                    chain.next_seq
                ),
            );
        }
        let (r, hdr) = FrameReader::open(&path, segment::SEGMENT_MAGIC)
            .map_err(io_err(format!("read {}", path.display())))?;
        match hdr {
            Ok(h) if h == first => {}
            Ok(h) => chain.fault(
                Some(first),
                name.clone(),
                format!("header says first seq {h}, the name says {first}"),
            ),
            Err(e) => chain.fault(Some(first), name.clone(), e.to_string()),
        }
        let last_segment = i + 1 == n;
        read_hashed(r, info.hash, &path, progress, |item| match item {
            Hashed::Entry(f, hash) => {
                let off = f.offset;
                chain.entry_hashed(|| format!("{name} offset {off}"), &f.payload, hash);
            }
            Hashed::Bad(offset, e) => {
                let seq = chain.next_seq;
                let place = format!("{name} offset {offset}");
                let valid_after = segment::valid_frame_after(
                    &path,
                    offset,
                    ENTRY_BYTES_MAX,
                    segment::looks_like_entry,
                )
                .ok()
                .flatten();
                // Only a frame the file ends inside can be a torn write the verifier
                // may pass over; a complete frame that fails its CRC may be bit rot in
                // an acknowledged entry, which the files alone cannot tell apart.
                if last_segment
                    && valid_after.is_none()
                    && matches!(e, FrameError::Truncated { .. })
                {
                    chain.report.warnings.push(format!(
                        "{place}: the log ends in a torn record ({e}); a write was interrupted and never \
                         acknowledged; the next open cuts it"
                    ));
                } else {
                    let after = valid_after
                        .map(|at| format!("; a valid entry follows at offset {at}, so this one was written whole and is damaged"))
                        .unwrap_or_default();
                    chain.fault(Some(seq), place, format!("entry {seq}: {e}{after}"));
                }
            }
        })?;
    }
    Ok(chain.finish(&info))
}

/// A frame read and hashed, or the fault that ended the file.
enum Hashed {
    Entry(segment::Frame, Hash),
    Bad(u64, FrameError),
}

/// Reads a segment's frames and hashes them on a second thread, handing them to
/// `f` in order: reading, CRCs and entry hashes run beside the chain checks.
fn read_hashed(
    mut r: FrameReader<BufReader<File>>,
    alg: HashAlg,
    path: &Path,
    progress: &dyn Progress,
    mut f: impl FnMut(Hashed),
) -> Result<(), VerifyError> {
    const CHUNK: usize = 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Hashed>>(4);
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<()> {
            let mut chunk = Vec::with_capacity(CHUNK);
            while let Some(frame) = r.next_frame(ENTRY_BYTES_MAX)? {
                let end = match frame {
                    Ok(fr) => {
                        let h = alg.leaf(&fr.payload);
                        chunk.push(Hashed::Entry(fr, h));
                        false
                    }
                    Err(e) => {
                        chunk.push(Hashed::Bad(r.offset(), e));
                        true
                    }
                };
                let full = end || chunk.len() == CHUNK;
                if full
                    && tx
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    return Ok(());
                }
                if end {
                    break;
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        });
        let mut bytes = 0u64;
        for chunk in rx {
            for item in chunk {
                if let Hashed::Entry(fr, _) = &item {
                    bytes += fr.payload.len() as u64 + 8;
                    if bytes >= PROGRESS_STEP_BYTES {
                        progress.advance(std::mem::take(&mut bytes));
                    }
                }
                f(item);
            }
        }
        progress.advance(bytes);
        reader
            .join()
            .expect("the reader thread does not panic")
            .map_err(io_err(format!("read {}", path.display())))
    })
}

/// Verifies an export bundle (a directory, or a `.tar` of one) with nothing else.
pub fn verify_bundle(
    path: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport, VerifyError> {
    let _unpacked;
    let dir: PathBuf = if path.is_file() {
        let tmp = tempfile::tempdir().map_err(io_err("create a temporary directory"))?;
        let f = File::open(path).map_err(io_err(format!("open {}", path.display())))?;
        tar::Archive::new(f)
            .unpack(tmp.path())
            .map_err(io_err(format!("unpack {}", path.display())))?;
        let inner = single_subdir(tmp.path()).unwrap_or_else(|| tmp.path().to_path_buf());
        _unpacked = tmp;
        inner
    } else {
        path.to_path_buf()
    };
    let read = |name: &str| -> Result<String, VerifyError> {
        std::fs::read_to_string(dir.join(name))
            .map_err(io_err(format!("read {name} in {}", path.display())))
    };
    let info: LedgerInfo = serde_json::from_str(&read("ledger.json")?)
        .map_err(|e| VerifyError::Setup(format!("ledger.json: {e}")))?;
    if !(1..=u64::from(crate::rotation::KEY_ENTRY_V)).contains(&info.format) {
        return Err(VerifyError::Setup(format!(
            "ledger.json: format {} is not supported (this build reads formats 1 to {})",
            info.format,
            crate::rotation::KEY_ENTRY_V
        )));
    }
    let stored_key = read("verifier.key").unwrap_or_default();
    let mut chain = new_chain(&info, opts);
    let (key, trusted) = setup(&info, &stored_key, opts, &mut chain)?;
    let latest_note = read("checkpoint")?;
    chain.note(&key, &latest_note, "checkpoint".into());
    let latest = key.verify(&latest_note).map(|c| c.size).unwrap_or(0);
    if let Ok(text) = read("checkpoints.txt") {
        for (i, note) in split_notes(&text).into_iter().enumerate() {
            chain.note(&key, &note, format!("checkpoints.txt note {}", i + 1));
        }
    }
    chain.start(trusted.map(|t| (t, latest)));
    let entries_path = dir.join("entries.jsonl");
    let f =
        File::open(&entries_path).map_err(io_err(format!("open {}", entries_path.display())))?;
    progress.total(f.metadata().map(|m| m.len()).unwrap_or(0));
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::with_capacity(1024);
    let mut lineno = 0u64;
    let mut unreported = 0u64;
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take(ENTRY_BYTES_MAX as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(io_err("read entries.jsonl"))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        unreported += n as u64;
        if unreported >= PROGRESS_STEP_BYTES {
            progress.advance(std::mem::take(&mut unreported));
        }
        if line.last() != Some(&b'\n') {
            let seq = chain.next_seq;
            chain.fault(
                Some(seq),
                format!("entries.jsonl line {lineno}"),
                "line does not end with a newline (truncated or over the size limit)".into(),
            );
            break;
        }
        line.pop();
        let l = lineno;
        chain.entry(|| format!("entries.jsonl line {l}"), &line);
    }
    progress.advance(unreported);
    if chain.frontier.size() > latest {
        chain.report.warnings.push(format!(
            "entries.jsonl holds {} entries, more than the {latest} its checkpoint covers",
            chain.frontier.size()
        ));
    }
    Ok(chain.finish(&info))
}

fn single_subdir(dir: &Path) -> Option<PathBuf> {
    if dir.join("ledger.json").exists() {
        return None;
    }
    let mut it = std::fs::read_dir(dir).ok()?;
    let first = it.next()?.ok()?;
    if it.next().is_none() && first.path().is_dir() {
        Some(first.path())
    } else {
        None
    }
}
