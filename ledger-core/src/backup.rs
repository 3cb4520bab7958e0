//! Backups: an export bundle (`bundle`) kept up to date in place, with the signing
//! key beside it, so that one directory is both what an auditor verifies
//! (`ledger verify --bundle`) and what an operator restores from (`ledger restore`).
//!
//! A backup is taken at the newest signed checkpoint, from any `Store` (the CLI
//! reads a store that `ledger serve` holds through a `Snapshot`, without its lock:
//! segments are append-only). After the first, a backup writes only the entries
//! that are new, after checking that the ones it holds are an earlier state of the
//! same log: the last entry it holds must hash to what the ledger's next entry names
//! as its predecessor, so the hash chain vouches for every line before it.
//!
//! Crash safety: `entries.jsonl` is extended and fsynced first, then the checkpoint
//! files, and `backup.json` (what the backup holds, and the length of
//! `entries.jsonl` that holds it) last, each by rename. A backup interrupted
//! anywhere is the previous one plus bytes that the next backup cuts off.

use std::fs::{self, OpenOptions};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bundle;
use crate::hash::Hash;
use crate::store::{LedgerInfo, Store, StoreError};
use crate::verify::Progress;

/// The file that says what a backup holds.
pub const MANIFEST: &str = "backup.json";

/// What a backup directory holds (its `backup.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 1.
    pub backup_format: u32,
    /// The ledger's identity: a backup is only ever extended from the same ledger.
    pub origin: String,
    /// Entries held, which is the size of the newest checkpoint held.
    pub entries: u64,
    /// Bytes of `entries.jsonl` that hold them (anything after is an interrupted
    /// backup's, and is cut).
    pub entries_bytes: u64,
    /// Lowercase hex hash of the last entry held (empty when none is).
    pub last_leaf: String,
    /// Whether `signing.key` is in the backup.
    pub signing_key: bool,
}

/// What one backup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Entries the backup held before.
    pub from: u64,
    /// Entries it holds now (the newest checkpoint's size).
    pub entries: u64,
    /// Signed checkpoints it holds.
    pub checkpoints: u64,
}

/// The ledger's private files that a backup may carry beside the bundle.
pub struct KeyFiles<'a> {
    /// `signing.key`'s text, or `None` for a backup without it (then a restore
    /// needs the key from elsewhere).
    pub signing_key: Option<&'a str>,
}

/// Brings the backup at `to` up to `store`'s newest signed checkpoint: a directory
/// (absent, empty, or an earlier backup of the same ledger), or a `.tar` file (new,
/// or an earlier backup: unpacked beside it, brought up to date, and written whole
/// in its place). `extra` files (the policy, say) are copied in by name.
pub fn backup(
    store: &dyn Store,
    to: &Path,
    keys: &KeyFiles<'_>,
    names: Option<&Path>,
    extra: &[&Path],
    progress: &dyn Progress,
) -> Result<BackupSummary, StoreError> {
    // One backup into one place at a time: two overlapping runs (cron) would both cut
    // and extend the same files.
    // (A directory is locked itself, so nothing is added to one that may turn out
    // not to be a backup; a .tar by a file beside it.)
    let lock_path = if to.extension().is_some_and(|e| e == "tar") {
        to.with_extension("tar.lock")
    } else {
        fs::create_dir_all(to).map_err(StoreError::io(format!("create {}", to.display())))?;
        to.to_path_buf()
    };
    let lock = if lock_path.is_dir() {
        fs::File::open(&lock_path)
    } else {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
    }
    .map_err(StoreError::io(format!("open {}", lock_path.display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StoreError::io(format!("lock {}", lock_path.display()))(
                std::io::Error::other("another `ledger backup` into the same place is running"),
            ));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(StoreError::io(format!("lock {}", lock_path.display()))(e));
        }
    }
    if to.extension().is_none_or(|e| e != "tar") {
        return backup_dir(store, to, keys, names, extra, progress);
    }
    let stage = bundle::stage_beside(to)?;
    let dir = stage.path().join("bundle");
    if to.exists() {
        let f = fs::File::open(to).map_err(StoreError::io(format!("open {}", to.display())))?;
        tar::Archive::new(f)
            .unpack(stage.path())
            .map_err(StoreError::io(format!("unpack {}", to.display())))?;
        if !dir.join(MANIFEST).is_file() {
            return Err(StoreError::Corrupt(format!(
                "{} is not a backup (no bundle/{MANIFEST} in it); back up to a new file",
                to.display()
            )));
        }
    }
    let summary = backup_dir(store, &dir, keys, names, extra, progress)?;
    bundle::write_tar(&dir, to)?;
    Ok(summary)
}

fn backup_dir(
    store: &dyn Store,
    dir: &Path,
    keys: &KeyFiles<'_>,
    names: Option<&Path>,
    extra: &[&Path],
    progress: &dyn Progress,
) -> Result<BackupSummary, StoreError> {
    let info = store.info().clone();
    let manifest_path = dir.join(MANIFEST);
    let earlier = read_manifest(dir)?;
    let latest = store.latest_checkpoint()?;
    match &earlier {
        Some(m) => check_earlier(store, &info, m, latest.size, dir)?,
        None => {
            // Empty: a new backup. Its manifest comes first, holding
            // nothing, so a first run cut short is taken up again by the next.
            let other = fs::read_dir(dir).map(|mut d| d.next().is_some());
            if matches!(other, Ok(true)) {
                return Err(StoreError::AlreadyExists(dir.to_path_buf()));
            }
            fs::create_dir_all(dir).map_err(StoreError::io(format!("create {}", dir.display())))?;
            let empty = Manifest {
                backup_format: 1,
                origin: info.origin.clone(),
                entries: 0,
                entries_bytes: 0,
                last_leaf: String::new(),
                signing_key: false,
            };
            let mut json = serde_json::to_vec_pretty(&empty).expect("serializable");
            json.push(b'\n');
            crate::store::write_whole(&manifest_path, &json)?;
        }
    }
    let (from, kept_bytes) = earlier
        .as_ref()
        .map_or((0, 0), |m| (m.entries, m.entries_bytes));

    // 1. The new entries, after what the backup holds.
    let path = dir.join("entries.jsonl");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(StoreError::io(format!("open {}", path.display())))?;
    f.set_len(kept_bytes).map_err(StoreError::io(format!(
        "cut {} to what it holds",
        path.display()
    )))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    std::io::Seek::seek(&mut out, std::io::SeekFrom::End(0))
        .map_err(StoreError::io(format!("seek {}", path.display())))?;
    let (written, last_leaf) =
        bundle::write_entries(store, &mut out, from, latest.size, &path, progress)?;
    let f = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(StoreError::io(format!("write {}", path.display())))?;
    f.sync_all()
        .map_err(StoreError::io(format!("fsync {}", path.display())))?;
    let last_leaf = match last_leaf {
        Some(h) => hex::encode(h),
        None => earlier.map(|m| m.last_leaf).unwrap_or_default(),
    };

    // 2. The checkpoints and the identity, as an export bundle holds them.
    let checkpoints = bundle::write_identity(store, dir, &latest, names)?;
    if let Some(key) = keys.signing_key {
        let p = dir.join("signing.key");
        crate::store::write_private(&p, key.as_bytes())?;
    } else {
        let _ = fs::remove_file(dir.join("signing.key"));
    }
    for p in extra {
        let name = p.file_name().ok_or_else(|| {
            StoreError::io(format!("copy {} into the backup", p.display()))(std::io::Error::other(
                "not a file name",
            ))
        })?;
        let bytes = fs::read(p).map_err(StoreError::io(format!("read {}", p.display())))?;
        crate::store::write_whole(&dir.join(name), &bytes)?;
    }

    // 3. What the backup now holds, last.
    let manifest = Manifest {
        backup_format: 1,
        origin: info.origin.clone(),
        entries: latest.size,
        entries_bytes: kept_bytes + written,
        last_leaf,
        signing_key: keys.signing_key.is_some(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("serializable");
    json.push(b'\n');
    crate::store::write_whole(&manifest_path, &json)?;
    Ok(BackupSummary {
        from,
        entries: latest.size,
        checkpoints,
    })
}

/// The manifest of the backup in `dir`, if there is one.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, StoreError> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Corrupt(format!("{}: not a backup manifest: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(format!("read {}", path.display()))(e)),
    }
}

/// Checks that the backup `m` in `dir` is an earlier state of `store`'s log.
fn check_earlier(
    store: &dyn Store,
    info: &LedgerInfo,
    m: &Manifest,
    size: u64,
    dir: &Path,
) -> Result<(), StoreError> {
    let not_ours = |why: String| {
        StoreError::Corrupt(format!(
            "the backup in {} is not an earlier state of this ledger: {why}; \
             back up into a new directory",
            dir.display()
        ))
    };
    if m.backup_format != 1 {
        return Err(not_ours(format!(
            "backup format {} (this version writes 1)",
            m.backup_format
        )));
    }
    if m.origin != info.origin {
        return Err(not_ours(format!("it is of {:?}", m.origin)));
    }
    if m.entries > size {
        return Err(not_ours(format!(
            "it holds {} entries, the ledger's newest checkpoint {size}",
            m.entries
        )));
    }
    let on_disk = fs::metadata(dir.join("entries.jsonl"))
        .map(|md| md.len())
        .unwrap_or(0);
    if on_disk < m.entries_bytes {
        return Err(not_ours(format!(
            "entries.jsonl has {on_disk} bytes, fewer than the {} it held",
            m.entries_bytes
        )));
    }
    if m.entries > 0 {
        let mut leaf: Option<Hash> = None;
        store.scan(m.entries - 1, m.entries, &mut |_, b| {
            leaf = Some(info.hash.leaf(b));
            Ok(())
        })?;
        if leaf.map(hex::encode).as_deref() != Some(m.last_leaf.as_str()) {
            return Err(not_ours(format!(
                "its entry {} differs from the ledger's (history differs)",
                m.entries - 1
            )));
        }
    }
    Ok(())
}
