//! The embedded store: a directory with segment files (the log of record), the
//! signed checkpoints, the signing key and a redb index derived from them.
//!
//! ```text
//! ledger.json        origin, hash function, format
//! signing.key        Ed25519 key (mode 0600)      verifier.key   its public half
//! log/*.seg          segments, named by first seq
//! checkpoints.log    every signed checkpoint, framed like entries
//! index.redb         derived: ids, messages, offsets, Merkle subtrees, checkpoints
//! index.seal         the index's state at the last clean close (skips the check at open)
//! recovery.log       what each recovery found and did, one line each
//! recovery/          the bytes of every torn record cut, saved before the cut
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::append::{AppendCore, AppendRequest};
use super::index::{self, InMemory, NODE_LEVEL_MIN};
use super::io::{LogIo, OsIo};
use super::log::{read_entry_unchecked, scan_entries, subtree_from_log};
use super::recovery::{
    acknowledged_bounds, append_recovery_line, append_recovery_log, catch_up, cut_torn_tail,
    refuse_unless_torn, scan_tail, signed_in_checkpoints_log,
};
use super::writer::{self, WriterState};
use super::{LedgerInfo, Receipt, SignedCheckpoint, Store, StoreError};
use crate::checkpoint::{Checkpoint, SigningKey, VerifierKey, check_origin};
use crate::entry;
use crate::event::Event;
use crate::event::FORMAT_LATEST;
use crate::hash::{Hash, HashAlg};
use crate::rotation::KeyHistory;
use crate::segment::{self};
use crate::{limits, limits::ENTRY_BYTES_MAX};

/// Options for a new ledger.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The log's name (e.g. `ledger.example/bergen-bv`), also its key's name.
    pub origin: String,
    /// Hash function for the ledger's whole life.
    pub hash: HashAlg,
}

/// What opening a store found and did. Nothing is repaired silently: every cut or
/// catch-up is listed here and appended to `recovery.log`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// A torn last record was cut: (segment file, offset, bytes cut, what was wrong).
    pub torn_tail: Option<(PathBuf, u64, u64, String)>,
    /// A torn record at the end of `checkpoints.log` was cut: bytes cut.
    pub torn_checkpoint_bytes: Option<u64>,
    /// Entries the index had to catch up on from the log.
    pub index_caught_up: u64,
    /// A checkpoint was signed at open because the newest one was older than the log.
    pub signed_checkpoint_at_open: Option<u64>,
}

impl OpenReport {
    /// Whether recovery had anything to say.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none() && self.torn_checkpoint_bytes.is_none()
    }

    /// One line per finding, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((p, off, n, why)) = &self.torn_tail {
            out.push(format!(
                "recovery: cut a torn last record from {} at offset {off} ({n} bytes: {why}); it was never acknowledged",
                p.display()
            ));
        }
        if let Some(n) = self.torn_checkpoint_bytes {
            out.push(format!(
                "recovery: cut a torn last record of {n} bytes from checkpoints.log"
            ));
        }
        if self.index_caught_up > 0 {
            out.push(format!(
                "recovery: the index caught up on {} entries from the log",
                self.index_caught_up
            ));
        }
        if let Some(s) = self.signed_checkpoint_at_open {
            out.push(format!(
                "recovery: signed a checkpoint for size {s}, newer than the last one stored"
            ));
        }
        out
    }
}

/// One segment file, open for positional reads.
pub(crate) struct Segment {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
}

/// State shared by readers and the writer thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    /// Appends, syncs and reads of the log's files (a fault-injecting layer in tests).
    pub io: Arc<dyn LogIo>,
    pub info: LedgerInfo,
    db: Option<Database>,
    /// The store's lock (`lock`, held while open): released only after the index is
    /// closed and sealed, so no other process opens the index in between.
    _lock: File,
    /// Whether the index may be sealed at close (see `seal`): the session saw no
    /// damage and no failed write.
    pub sealable: AtomicBool,
    pub segments: RwLock<Vec<Segment>>,
    /// Entries committed and indexed: what readers may see.
    pub size: AtomicU64,
    pub poisoned: AtomicBool,
    /// Requests sent to the writer and not yet taken.
    pub pending: AtomicUsize,
    /// Durable log writes (one `fdatasync` each) since open.
    pub log_syncs: AtomicU64,
    /// Index entries of the newest appends, not yet flushed to `db`. A reader takes
    /// this lock, then begins its read transaction, then looks here first.
    pub recent: RwLock<InMemory>,
}

impl Shared {
    /// The index database (present until the store is dropped).
    pub(crate) fn db(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the index is open while the store is")
    }

    /// [`index_guard`], remembering damage: a damaged index is never sealed.
    pub(crate) fn guard<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let r = index_guard(f);
        if matches!(r, Err(StoreError::IndexDamaged(_))) {
            self.sealable.store(false, Ordering::Release);
        }
        r
    }

    /// A consistent view of the index: the in-memory part and a redb snapshot. The
    /// lock is taken before the transaction begins, so an entry the writer flushes
    /// meanwhile is in one of the two (see `writer::write_generation`).
    pub(crate) fn read_view(
        &self,
    ) -> Result<
        (
            std::sync::RwLockReadGuard<'_, InMemory>,
            redb::ReadTransaction,
        ),
        StoreError,
    > {
        let recent = self.recent.read().expect("lock");
        let txn = self.db().begin_read().map_err(redb::Error::from)?;
        Ok((recent, txn))
    }
}

/// The embedded store. See the module docs for its files.
pub struct FileStore {
    shared: Arc<Shared>,
    verifier: KeyHistory,
    // A read lock to send (senders do not contend); the write lock only to close.
    tx: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

pub(super) fn write_file_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(StoreError::io(format!("create {}", path.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io(format!("write {}", path.display())))
}

/// Makes `bytes` the whole of `path`: written to `<path>.new` and synced, renamed
/// into place, the directory synced. A crash leaves the old file (or none) or the new
/// one, never part of it; a `.new` left behind is ignored and overwritten next time.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_whole_mode(path, bytes, 0o644)
}

/// [`write_whole`] of a file only its owner may read (a signing key).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_whole_mode(path, bytes, 0o600)
}

fn write_whole_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fresh = path.with_file_name(format!("{name}.new"));
    // A `.new` left by a crash may have another mode: start from none.
    let _ = fs::remove_file(&fresh);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&fresh)
        .map_err(StoreError::io(format!("create {}", fresh.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io(format!("write {}", fresh.display())))?;
    fs::rename(&fresh, path).map_err(StoreError::io(format!(
        "rename {} into place",
        fresh.display()
    )))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(format!("fsync directory {}", dir.display())))
}

pub(crate) fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

/// Reads `verifier.key`: the ledger's key history.
pub fn read_key_history(dir: &Path) -> Result<KeyHistory, StoreError> {
    let path = dir.join("verifier.key");
    fs::read_to_string(&path)
        .map_err(StoreError::io(format!("read {}", path.display())))?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
}

/// Replaces `ledger.json` atomically (the store must be held, or not yet a ledger).
pub(crate) fn replace_info(dir: &Path, info: &LedgerInfo) -> Result<(), StoreError> {
    let mut json = serde_json::to_string_pretty(info).expect("serializable");
    json.push('\n');
    let tmp = dir.join("ledger.json.new");
    let _ = fs::remove_file(&tmp);
    write_file_synced(&tmp, json.as_bytes(), 0o644)?;
    fs::rename(&tmp, dir.join("ledger.json")).map_err(StoreError::io(format!(
        "replace {}",
        dir.join("ledger.json").display()
    )))?;
    sync_dir(dir)
}

/// Reads `ledger.json`.
pub fn read_info(dir: &Path) -> Result<LedgerInfo, StoreError> {
    let p = dir.join("ledger.json");
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotALedger(dir.to_path_buf()));
        }
        Err(e) => return Err(StoreError::io(format!("read {}", p.display()))(e)),
    };
    let info: LedgerInfo = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", p.display())))?;
    // Format 3 is format 2 with key announcements (FORMAT.md §17).
    let latest = crate::rotation::KEY_ENTRY_V;
    if !(1..=u64::from(latest)).contains(&info.format) {
        return Err(StoreError::Corrupt(format!(
            "{}: format {} is not supported (this build reads formats 1 to {latest})",
            p.display(),
            info.format
        )));
    }
    Ok(info)
}

impl FileStore {
    /// Raises the ledger's format to `to` (never lowers it); returns the format it
    /// had. Holds the store (no server may run on it) while `ledger.json` is
    /// replaced atomically. Nothing in the log changes.
    pub fn upgrade(dir: &Path, to: u64) -> Result<u64, StoreError> {
        if !(1..=u64::from(FORMAT_LATEST)).contains(&to) {
            return Err(StoreError::OutOfRange(format!(
                "format {to} does not exist (this build knows formats 1 to {FORMAT_LATEST})"
            )));
        }
        let (store, _report) = FileStore::open(dir)?;
        let old = store.shared.info.format;
        if old < to {
            replace_info(
                dir,
                &LedgerInfo {
                    format: to,
                    ..store.shared.info.clone()
                },
            )?;
        }
        drop(store);
        Ok(old)
    }

    /// Creates a new ledger in `dir` (which must not exist or be empty): its files, a
    /// new signing key, and the signed checkpoint of the empty log.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<VerifierKey, StoreError> {
        check_origin(&opts.origin)?;
        if dir.exists() {
            let mut entries =
                fs::read_dir(dir).map_err(StoreError::io(format!("read {}", dir.display())))?;
            if entries.next().is_some() {
                return Err(StoreError::AlreadyExists(dir.to_path_buf()));
            }
        }
        fs::create_dir_all(log_dir(dir))
            .map_err(StoreError::io(format!("create {}", dir.display())))?;
        let key = SigningKey::generate(&opts.origin)?;
        let verifier = key.verifier();
        let info = LedgerInfo {
            format: u64::from(FORMAT_LATEST),
            origin: opts.origin.clone(),
            hash: opts.hash,
        };
        let mut json = serde_json::to_string_pretty(&info).expect("serializable");
        json.push('\n');
        write_file_synced(
            &dir.join("signing.key"),
            format!("{}\n", key.to_secret_string()).as_bytes(),
            0o600,
        )?;
        write_file_synced(
            &dir.join("verifier.key"),
            format!("{verifier}\n").as_bytes(),
            0o644,
        )?;
        write_file_synced(
            &log_dir(dir).join(segment::segment_name(0)),
            &segment::header(segment::SEGMENT_MAGIC, 0),
            0o644,
        )?;
        let empty = Checkpoint {
            origin: opts.origin.clone(),
            size: 0,
            root: opts.hash.empty(),
        };
        let mut ck = segment::header(segment::CHECKPOINTS_MAGIC, 0).to_vec();
        segment::encode_frame(&mut ck, key.sign(&empty).as_bytes());
        write_file_synced(&dir.join("checkpoints.log"), &ck, 0o644)?;
        sync_dir(&log_dir(dir))?;
        // ledger.json last: a directory without it is not a ledger, so a crash
        // during init leaves nothing that looks like one.
        write_file_synced(&dir.join("ledger.json"), json.as_bytes(), 0o644)?;
        sync_dir(dir)?;
        Ok(verifier)
    }

    /// Opens the ledger in `dir`, recovers it (cutting a torn last record, catching
    /// the index up), and starts the writer.
    pub fn open(dir: &Path) -> Result<(FileStore, OpenReport), StoreError> {
        Self::open_guarded(dir, 0, Arc::new(OsIo))
    }

    /// [`FileStore::open`] with the log's appends, syncs and reads going through `io`
    /// (for tests that inject faults under the store).
    pub fn open_with_io(
        dir: &Path,
        io: Arc<dyn LogIo>,
    ) -> Result<(FileStore, OpenReport), StoreError> {
        Self::open_guarded(dir, 0, io)
    }

    /// [`FileStore::open`], with `acknowledged` entries known to have been acknowledged
    /// by evidence the store's own files may no longer hold (the index `reindex`
    /// replaces): nothing below it is ever cut.
    fn open_guarded(
        dir: &Path,
        acknowledged: u64,
        io: Arc<dyn LogIo>,
    ) -> Result<(FileStore, OpenReport), StoreError> {
        let info = read_info(dir)?;
        let key_path = dir.join("signing.key");
        let key_text = fs::read_to_string(&key_path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (the private signing key: without it the ledger only answers questions; put \
                 back the signing.key a `ledger backup` holds, docs/operations.md)"
            } else {
                ""
            };
            StoreError::io(format!("read {}{hint}", key_path.display()))(e)
        })?;
        let key = SigningKey::from_secret_string(&key_text)?;
        if key.name() != info.origin {
            return Err(StoreError::Corrupt(format!(
                "signing.key is named {:?} but the ledger's origin is {:?}",
                key.name(),
                info.origin
            )));
        }
        let verifier = read_key_history(dir)?;
        // The two halves must agree, or checkpoints signed from now on would be by a
        // key no auditor holds (a damaged signing.key can still be a valid key).
        if verifier.current() != &key.verifier() {
            return Err(StoreError::Corrupt(format!(
                "signing.key and verifier.key in {} are not one key pair: one of them is damaged \
                 or was replaced; restore it from a backup (no checkpoint was signed)",
                dir.display()
            )));
        }
        let mut report = OpenReport::default();

        // The log: every segment but the last is trusted by its name; the last is
        // scanned to find its true end.
        let listed =
            segment::list_segments(&log_dir(dir)).map_err(StoreError::io("list segments"))?;
        if listed.first().map(|s| s.0) != Some(0) {
            return Err(StoreError::Corrupt(
                "the first segment (seq 0) is missing".into(),
            ));
        }
        let (last_first, last_path) = listed.last().cloned().expect("non-empty");
        let tail = scan_tail(&last_path, last_first, info.hash)?;
        let size = last_first + tail.count;
        let mut segments = Vec::with_capacity(listed.len());
        for (first, path) in listed {
            let file =
                File::open(&path).map_err(StoreError::io(format!("open {}", path.display())))?;
            segments.push(Segment {
                first_seq: first,
                path,
                file: Arc::new(file),
            });
        }

        let lock = lock_store(dir)?;
        let db = open_index(dir)?;
        // Only with the lock held, and only when no evidence says it was acknowledged,
        // is a bad last record cut (see `refuse_unless_torn`).
        if let Some((offset, why)) = &tail.torn {
            let place = format!(
                "{} offset {offset} (entry {size}: {why})",
                last_path.display()
            );
            refuse_unless_torn(
                &last_path,
                *offset,
                &place,
                segment::looks_like_entry,
                ENTRY_BYTES_MAX,
            )?;
            let mut evidence = Vec::new();
            let (covered, signed) = index_guard(|| acknowledged_bounds(&db))?;
            evidence.push((covered, "the index covers"));
            evidence.push((signed, "the index holds a signed checkpoint for"));
            evidence.push((
                signed_in_checkpoints_log(dir, &verifier)?,
                "a signed checkpoint in checkpoints.log covers",
            ));
            evidence.push((acknowledged, "the index being rebuilt covered"));
            if let Some((n, what)) = evidence.iter().filter(|(n, _)| size < *n).max() {
                return Err(StoreError::Corrupt(format!(
                    "{place} is damaged, but {what} {n} entries, so they were acknowledged; \
                     refusing to cut anything. Restore the segment from a backup or an exported bundle"
                )));
            }
            let cut = cut_torn_tail(dir, &last_path, *offset, why)?;
            report.torn_tail = Some((last_path.clone(), *offset, cut, why.clone()));
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            io,
            info: info.clone(),
            db: Some(db),
            sealable: AtomicBool::new(false),
            segments: RwLock::new(segments),
            size: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            log_syncs: AtomicU64::new(0),
            recent: RwLock::new(InMemory::default()),
            _lock: lock,
        });

        // Last entry: the chain continues from its hash and its clock.
        let (prev, last_recorded_at) = match tail.last {
            Some((h, t)) => (h, t),
            None if size == 0 => (info.hash.genesis(&info.origin), String::new()),
            None => {
                let bytes = read_entry_unchecked(&shared, size - 1)?;
                let p = entry::parse_entry(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("entry {}: {e}", size - 1)))?;
                (info.hash.leaf(&bytes), p.recorded_at.to_string())
            }
        };

        let (frontier, ck_len, latest_ck) =
            shared.guard(|| catch_up(&shared, size, &verifier, &mut report))?;
        shared.size.store(size, Ordering::Release);

        let ck_path = dir.join("checkpoints.log");
        let ck_file = OpenOptions::new()
            .append(true)
            .open(&ck_path)
            .map_err(StoreError::io(format!("open {}", ck_path.display())))?;
        let ck_file_for_flusher = ck_file
            .try_clone()
            .map_err(StoreError::io(format!("open {}", ck_path.display())))?;
        let seg_path = shared
            .segments
            .read()
            .expect("lock")
            .last()
            .expect("one")
            .path
            .clone();
        let seg_file = OpenOptions::new()
            .append(true)
            .open(&seg_path)
            .map_err(StoreError::io(format!("open {}", seg_path.display())))?;
        // What the last segment holds becomes the base of new entries and of the
        // checkpoints signed over them: make sure it is on disk, not only in the page
        // cache of a process whose fsync failed before it died.
        shared
            .io
            .sync(&seg_file, &seg_path)
            .map_err(StoreError::io(format!("fsync {}", seg_path.display())))?;
        let seg_len = seg_file
            .metadata()
            .map_err(StoreError::io("stat segment"))?
            .len();
        let mut state = WriterState {
            shared: shared.clone(),
            key,
            core: AppendCore::new(info.clone(), frontier, prev, last_recorded_at, latest_ck),
            segment: seg_file,
            segment_first: last_first,
            segment_len: seg_len,
            checkpoints: ck_file,
            checkpoints_len: ck_len,
            last_flush_at: std::time::Instant::now(),
            flusher: writer::Flusher::spawn(shared.clone(), ck_file_for_flusher),
        };
        if state.core.latest_checkpoint() < size {
            state.sign_if_behind()?;
            report.signed_checkpoint_at_open = Some(size);
        }
        if !report.lines().is_empty() {
            append_recovery_log(dir, &report);
        }
        shared.sealable.store(true, Ordering::Release);
        let (tx, handle) = writer::spawn(state);
        Ok((
            FileStore {
                shared,
                verifier,
                tx: RwLock::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
            },
            report,
        ))
    }

    /// Digest of the index's contents (equal digests: equal indexes). Flushes the
    /// newest appends' index entries to disk first.
    pub fn index_digest(&self) -> Result<Hash, StoreError> {
        self.request(Vec::new())?;
        self.shared.guard(|| index::digest(self.shared.db()))
    }

    /// Sends a request to the writer and waits for its answer. An empty request asks
    /// for a flush of the index.
    fn request(&self, events: Vec<Event>) -> Result<Vec<Receipt>, StoreError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(AppendRequest {
            events,
            reply: Box::new(move |r| {
                let _ = reply.send(r);
            }),
        })?;
        rx.recv().map_err(|_| StoreError::Poisoned)?
    }

    fn send(&self, request: AppendRequest) -> Result<(), StoreError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        let tx = self.tx.read().expect("lock");
        let tx = tx.as_ref().ok_or(StoreError::Poisoned)?;
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if tx.send(request).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Durable writes of the log (one `fdatasync` each, one per commit batch) since
    /// the store was opened: appended entries ÷ this is the mean batch size.
    pub fn log_syncs(&self) -> u64 {
        self.shared.log_syncs.load(Ordering::Relaxed)
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes the store's lock: one process at a time (the CLI, a server), for the whole
/// session, the index's close and seal included.
fn lock_store(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(format!("open {}", path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::io(format!("lock {}", path.display()))(e))
        }
    }
}

/// Opens (or creates) the index. Its damage is `IndexDamaged`, never a panic: redb
/// checks its pages and, in debug builds, panics on some corrupt files.
fn open_index(dir: &Path) -> Result<Database, StoreError> {
    let path = dir.join("index.redb");
    // Every page's checksum is checked at open (a plain open trusts a file altered
    // outside redb, and a flipped byte in a key then answers "not recorded" for a
    // recorded event id), unless the file is exactly as this store sealed it when it
    // last closed cleanly: then nothing has written to it since.
    let trusted = unseal(dir);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Database::builder()
            .set_check_integrity_on_open(!trusted)
            .create(&path)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            Err(StoreError::Locked(dir.to_path_buf()))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Err(StoreError::io(format!("open {}", path.display()))(e))
        }
        Ok(Err(e)) => Err(StoreError::IndexDamaged(e.to_string())),
        Err(panic) => Err(StoreError::IndexDamaged(panic_text(panic.as_ref()))),
    }
}

const SEAL: &str = "index.seal";

/// What identifies one state of `index.redb` on disk: its length, modification and
/// change times (the change time cannot be set back by any tool) and inode.
fn index_state(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dir.join("index.redb")).ok()?;
    Some(format!(
        "{} {}.{} {}.{} {}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino()
    ))
}

/// Reads and removes the seal: whether `index.redb` is as the last clean close left
/// it. A session that does not end cleanly leaves no seal, so the next open checks.
fn unseal(dir: &Path) -> bool {
    let sealed = fs::read_to_string(dir.join(SEAL)).ok();
    let _ = fs::remove_file(dir.join(SEAL));
    sealed.is_some_and(|s| index_state(dir).is_some_and(|now| now == s.trim()))
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closed (redb writes its clean-shutdown state as it closes), then sealed, so
        // the next open may skip the page-by-page check.
        drop(self.db.take());
        if self.sealable.load(Ordering::Acquire)
            && !self.poisoned.load(Ordering::Acquire)
            && let Some(state) = index_state(&self.dir)
        {
            let _ = fs::write(self.dir.join(SEAL), format!("{state}\n"));
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "it could not be read".into())
}

/// Runs a step that reads or writes the index: an index failure, or a panic inside
/// redb (its debug builds panic on some damaged pages), is damage to the index, which
/// the log can rebuild, and is reported as such, never a panic of the caller.
pub(crate) fn index_guard<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::Index(e))) => Err(StoreError::IndexDamaged(e.to_string())),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(StoreError::IndexDamaged(panic_text(panic.as_ref()))),
    }
}

impl Store for FileStore {
    fn info(&self) -> &LedgerInfo {
        &self.shared.info
    }

    fn verifier_key(&self) -> &KeyHistory {
        &self.verifier
    }

    fn append(&self, events: Vec<Event>) -> Result<Vec<Receipt>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.request(events)
    }

    fn append_then(&self, events: Vec<Event>, on_commit: super::CommitCallback) {
        super::append::hand_over(events, on_commit, |r| self.send(r));
    }

    /// Also after a failed fsync, checkpoint or index flush.
    fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.tx.write().expect("lock").take();
        if let Some(h) = self.writer.lock().expect("lock").take() {
            let _ = h.join();
        }
    }

    fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Acquire)
    }

    fn scan(&self, from: u64, to: u64, f: &mut super::EntryVisitor<'_>) -> Result<(), StoreError> {
        self.check_size(to)?;
        scan_entries(&self.shared, from, to, &mut |seq, _, b| f(seq, b))
    }

    fn message_seqs(&self, message: &str) -> Result<Vec<u64>, StoreError> {
        self.shared.guard(|| {
            let size = self.size();
            let (recent, txn) = self.shared.read_view()?;
            let t = txn.open_multimap_table(index::MESSAGES)?;
            let mut out = Vec::new();
            for v in t.get(message)? {
                out.push(v?.value());
            }
            // Flushed seqs all precede those still in memory.
            recent.message_seqs(message, &mut out);
            out.retain(|&s| s < size);
            Ok(out)
        })
    }

    fn event_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.shared.guard(|| {
            let size = self.size();
            let (recent, txn) = self.shared.read_view()?;
            if let Some(s) = recent.id(id) {
                return Ok(Some(s).filter(|&s| s < size));
            }
            let t = txn.open_table(index::IDS)?;
            Ok(t.get(id)?.map(|g| g.value()).filter(|&s| s < size))
        })
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.shared.guard(|| {
            self.check_size((index + 1) << level)?;
            if level >= NODE_LEVEL_MIN {
                let (recent, txn) = self.shared.read_view()?;
                if let Some(h) = recent.node(index::node_key(level, index)) {
                    return Ok(h);
                }
                let t = txn.open_table(index::NODES)?;
                return t
                    .get(index::node_key(level, index))?
                    .map(|g| g.value())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("index lacks Merkle node {level}/{index}"))
                    });
            }
            subtree_from_log(&self.shared, level, index)
        })
    }

    fn latest_checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        self.shared.guard(|| {
            let (recent, txn) = self.shared.read_view()?;
            if let Some((size, note)) = recent.checkpoints(0).pop() {
                return Ok(SignedCheckpoint {
                    size,
                    note: note.clone(),
                });
            }
            let t = txn.open_table(index::CHECKPOINTS)?;
            let (k, v) = t
                .last()?
                .ok_or_else(|| StoreError::Corrupt("no checkpoint is stored".into()))?;
            Ok(SignedCheckpoint {
                size: k.value(),
                note: v.value().to_string(),
            })
        })
    }

    fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.shared.guard(|| {
            let (recent, txn) = self.shared.read_view()?;
            let t = txn.open_table(index::CHECKPOINTS)?;
            let mut out = Vec::new();
            for r in t.range(from_size..)?.take(limit) {
                let (k, v) = r?;
                out.push(SignedCheckpoint {
                    size: k.value(),
                    note: v.value().to_string(),
                });
            }
            // Flushed checkpoints all precede those still in memory.
            for (size, note) in recent.checkpoints(from_size) {
                if out.len() >= limit {
                    break;
                }
                out.push(SignedCheckpoint {
                    size,
                    note: note.clone(),
                });
            }
            Ok(out)
        })
    }
}

/// Rebuilds the index of the ledger in `dir` from its log and checkpoints. Returns the
/// digests of the old index (if it could be read) and of the new one.
///
/// The old index is evidence of what was acknowledged, so the store is first opened
/// through it (any torn tail is judged with it) and the rebuild is then forbidden to
/// cut below the size that open found. A damaged old index is moved aside, never
/// deleted. Any other fault of the store is returned and nothing is changed.
pub fn reindex(dir: &Path) -> Result<(Option<Hash>, Hash), StoreError> {
    read_info(dir)?;
    let path = dir.join("index.redb");
    let (old, acknowledged) = if path.exists() {
        // Open through the store so that the old index is caught up to the same log
        // the new one is built from: the digests then compare like with like.
        match FileStore::open(dir) {
            Ok((s, _)) => {
                let d = s.index_digest()?;
                let size = s.size();
                s.close();
                (Some(d), size)
            }
            Err(StoreError::IndexDamaged(why)) => {
                let now = entry::format_recorded_at(time::OffsetDateTime::now_utc());
                let kept = dir.join(format!("index.redb.damaged-{}", now.replace(':', "")));
                fs::rename(&path, &kept).map_err(StoreError::io("move the damaged index aside"))?;
                append_recovery_line(
                    dir,
                    &format!(
                        "recovery: index.redb is damaged ({why}); moved to {} and rebuilt from the log",
                        kept.display()
                    ),
                );
                (None, 0)
            }
            Err(e) => return Err(e),
        }
    } else {
        (None, 0)
    };
    let aside = dir.join("index.redb.old");
    if path.exists() {
        fs::rename(&path, &aside).map_err(StoreError::io("move the old index aside"))?;
    }
    let result = FileStore::open_guarded(dir, acknowledged, Arc::new(OsIo)).and_then(|(s, _)| {
        let d = s.index_digest();
        s.close();
        d
    });
    match result {
        Ok(new) => {
            let _ = fs::remove_file(&aside);
            Ok((old, new))
        }
        Err(e) => {
            // Put the old index back so a failed rebuild loses nothing.
            if aside.exists() {
                let _ = fs::remove_file(&path);
                let _ = fs::rename(&aside, &path);
            }
            Err(e)
        }
    }
}

#[allow(dead_code)]
const _: () = assert!(limits::SEGMENT_BYTES_MAX > limits::ENTRY_BYTES_MAX as u64);
