//! Export bundles: everything an auditor needs to verify the log with nothing of
//! ours: `entries.jsonl` (the exact stored entry bytes, one per line, in seq order),
//! `ledger.json`, `checkpoint` (the newest signed note), `checkpoints.txt` (every
//! earlier note, separated by one empty line), `verifier.key`, and a `README`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::store::{SignedCheckpoint, Store, StoreError, write_whole};
use crate::verify::Progress;

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Entries written (the newest checkpoint's size).
    pub entries: u64,
    /// Checkpoints written, the newest included.
    pub checkpoints: u64,
}

const README: &str = "\
This is an export bundle of a message-accountability ledger.

Files
  ledger.json      origin, hash function (blake3 or sha256), format version
  entries.jsonl    every entry, exactly as stored and hashed, one per line, seq 0 first
  checkpoint       the newest signed checkpoint (C2SP signed note, Ed25519)
  checkpoints.txt  earlier signed checkpoints, separated by one empty line
  verifier.key     the public key (compare it with the one you were given!)
  organisations.csv  (if present) names for organisation numbers, a reader's aid:
                   no signature covers it

Verify by hand (H is the hash function named in ledger.json)
  1. For each line i (from 0) of entries.jsonl, without its newline: check it is
     RFC 8785 canonical JSON with \"seq\": i and \"v\": 1, and that its \"prev\" is
     the lowercase hex of H(0x00 || previous line), or of H(0x02 || origin) for i = 0.
  2. The entry hashes H(0x00 || line) are the leaves of an RFC 6962 Merkle tree
     (node = H(0x01 || left || right)). Compute the root over the first N lines.
  3. checkpoint reads: origin, N, base64(root), an empty line, then
     \"— <origin> <base64(4-byte key id || 64-byte Ed25519 signature)>\". Check the
     signature over the first three lines (with their newlines) with the key in
     verifier.key (origin+hexid+base64(0x01 || 32-byte public key)) and that the
     root matches step 2. Do the same for each note in checkpoints.txt.
  4. If you kept a checkpoint from an earlier export, its root must equal the root
     of the first N' lines here: otherwise history was rewritten.

The full specification is schemas/FORMAT.md in the ledger's source.
Or run: ledger verify --bundle <this directory> --key <the key you hold>
";

/// Writes a bundle of everything up to the newest checkpoint to `out`: a new
/// directory, or a `.tar` file when `out` ends in `.tar`.
pub fn export(
    store: &dyn Store,
    out: &Path,
    progress: &dyn Progress,
) -> Result<ExportSummary, StoreError> {
    export_with_names(store, out, progress, None)
}

/// As [`export`], with the ledger's organisation directory (`organisations.csv`)
/// beside the log, so the bundle's answers show names too. It is a reader's aid,
/// not evidence: no signature covers it.
pub fn export_with_names(
    store: &dyn Store,
    out: &Path,
    progress: &dyn Progress,
    names: Option<&Path>,
) -> Result<ExportSummary, StoreError> {
    if out.exists() {
        return Err(StoreError::AlreadyExists(out.to_path_buf()));
    }
    let as_tar = out.extension().is_some_and(|e| e == "tar");
    let stage_parent;
    let dir = if as_tar {
        stage_parent = stage_beside(out)?;
        stage_parent.path().join("bundle")
    } else {
        out.to_path_buf()
    };
    fs::create_dir_all(&dir).map_err(StoreError::io(format!("create {}", dir.display())))?;
    let latest = store.latest_checkpoint()?;
    let count = write_identity(store, &dir, &latest, names)?;
    let path = dir.join("entries.jsonl");
    let mut entries = BufWriter::with_capacity(
        1 << 20,
        File::create(&path).map_err(StoreError::io(format!("create {}", path.display())))?,
    );
    write_entries(store, &mut entries, 0, latest.size, &path, progress)?;
    entries
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(format!("write {}", path.display())))?;

    if as_tar {
        write_tar(&dir, out)?;
    }
    Ok(ExportSummary {
        entries: latest.size,
        checkpoints: count,
    })
}

/// Writes what identifies the log and signs it, as a bundle holds them:
/// `ledger.json`, `verifier.key`, `checkpoint` (the newest note, `latest`),
/// `checkpoints.txt` (every earlier one), `README`, and `organisations.csv` when
/// `names` is given. Each file is replaced whole, so a bundle kept up to date in
/// place (a backup) never holds half of one. Returns the checkpoints written.
pub(crate) fn write_identity(
    store: &dyn Store,
    dir: &Path,
    latest: &SignedCheckpoint,
    names: Option<&Path>,
) -> Result<u64, StoreError> {
    let latest_size = latest.size;
    let mut json = serde_json::to_string_pretty(store.info()).expect("serializable");
    json.push('\n');
    write_whole(&dir.join("ledger.json"), json.as_bytes())?;
    write_whole(
        &dir.join("verifier.key"),
        format!("{}\n", store.verifier_key()).as_bytes(),
    )?;
    write_whole(&dir.join("README"), README.as_bytes())?;
    if let Some(p) = names {
        let bytes = fs::read(p).map_err(StoreError::io(format!("read {}", p.display())))?;
        write_whole(&dir.join(crate::directory::FILE_NAME), &bytes)?;
    }
    let mut cks = Vec::new();
    let mut count = 1u64;
    let mut from = 0u64;
    loop {
        let page = store.checkpoints(from, 1000)?;
        let Some(last) = page.last() else { break };
        from = last.size + 1;
        for cp in page.iter().filter(|c| c.size < latest_size) {
            if !cks.is_empty() {
                cks.push(b'\n');
            }
            cks.extend_from_slice(cp.note.as_bytes());
            count += 1;
        }
        if from > latest_size {
            break;
        }
    }
    write_whole(&dir.join("checkpoints.txt"), &cks)?;
    // Last: a reader that finds the newest checkpoint finds everything it covers.
    write_whole(&dir.join("checkpoint"), latest.note.as_bytes())?;
    Ok(count)
}

/// Writes entries `from..to` of `store`, one per line, to `out`. Returns the bytes
/// written and the hash of the last entry written.
pub(crate) fn write_entries(
    store: &dyn Store,
    out: &mut impl Write,
    from: u64,
    to: u64,
    path: &Path,
    progress: &dyn Progress,
) -> Result<(u64, Option<crate::hash::Hash>), StoreError> {
    let alg = store.info().hash;
    progress.total(to - from);
    let mut done = 0u64;
    let mut bytes_out = 0u64;
    let mut last = None;
    store.scan(from, to, &mut |seq, bytes| {
        out.write_all(bytes)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(StoreError::io(format!("write {}", path.display())))?;
        bytes_out += bytes.len() as u64 + 1;
        if seq + 1 == to {
            last = Some(alg.leaf(bytes));
        }
        done += 1;
        if done.is_multiple_of(4096) {
            progress.advance(4096);
        }
        Ok(())
    })?;
    progress.advance(done % 4096);
    Ok((bytes_out, last))
}

/// A staging directory beside `out` (same file system, so the rename is atomic).
pub(crate) fn stage_beside(out: &Path) -> Result<tempfile::TempDir, StoreError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::tempdir_in(parent).map_err(StoreError::io("create a staging directory"))
}

/// Writes `dir` as `out`, a tar holding it as `bundle/`: to `<out>.partial`, synced,
/// then renamed, so `out` is the old file or the new one, never part of one. Only its
/// owner may read it when it holds a signing key.
pub(crate) fn write_tar(dir: &Path, out: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = out.with_extension("tar.partial");
    let _ = fs::remove_file(&tmp);
    let mode = if dir.join("signing.key").exists() {
        0o600
    } else {
        0o644
    };
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(StoreError::io(format!("create {}", tmp.display())))?;
    let mut b = tar::Builder::new(f);
    b.append_dir_all("bundle", dir)
        .and_then(|_| b.into_inner())
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, out).map_err(StoreError::io(format!("rename to {}", out.display())))
}

/// A bundle (or backup) `.tar` unpacked into a temporary directory: the directory
/// (kept while the first element lives) and the bundle's own directory in it.
pub fn unpack_tar(path: &Path) -> Result<(tempfile::TempDir, std::path::PathBuf), StoreError> {
    let tmp = tempfile::tempdir().map_err(StoreError::io("create a temporary directory"))?;
    let f = File::open(path).map_err(StoreError::io(format!("open {}", path.display())))?;
    tar::Archive::new(f)
        .unpack(tmp.path())
        .map_err(StoreError::io(format!("unpack {}", path.display())))?;
    let inner = fs::read_dir(tmp.path())
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("ledger.json").exists())
        .unwrap_or_else(|| tmp.path().to_path_buf());
    Ok((tmp, inner))
}
