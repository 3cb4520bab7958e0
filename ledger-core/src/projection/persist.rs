//! The persisted projection: the facts of a log prefix, in `<dir>/projection.facts`,
//! so a question does not replay the whole log. Derived data: it can always be rebuilt
//! (`ledger replay`), and a file that is unreadable or belongs to another history is
//! reported and rebuilt, never trusted.
//!
//! File: `"ledger-facts/1\n"`, postcard of {covered, hash of entry covered−1, facts},
//! CRC-32C of everything before it (4 bytes, little-endian). Written to a temporary
//! file, synced and renamed, so a crash leaves the old file or the new one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::to_hex;
use crate::store::Store;

use super::{Facts, Progress, ProjectionError, catch_up};

const MAGIC: &[u8] = b"ledger-facts/1\n";
/// The file's name in the ledger directory.
pub const FILE_NAME: &str = "projection.facts";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    covered: u64,
    /// Leaf hash (hex) of entry `covered − 1`: ties the file to this log's history.
    tail: Option<String>,
    facts: Facts,
}

/// What opening the persisted projection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Entries the file covered.
    pub loaded: u64,
    /// Entries applied on top.
    pub applied: u64,
    /// Why the file was not used, if it was not (missing is not a reason to warn).
    pub rebuilt_because: Option<String>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn tail_hash(store: &dyn Store, covered: u64) -> Result<Option<String>, ProjectionError> {
    if covered == 0 {
        return Ok(None);
    }
    let bytes = store.entry(covered - 1)?;
    Ok(Some(to_hex(&store.info().hash.leaf(&bytes))))
}

fn read(dir: &Path, store: &dyn Store) -> Result<Option<Facts>, String> {
    let bytes = match fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    if bytes.len() < MAGIC.len() + 4 || !bytes.starts_with(MAGIC) {
        return Err("not a projection file of this version".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("its checksum does not match (torn or damaged)".into());
    }
    let snap: Snapshot =
        postcard::from_bytes(&body[MAGIC.len()..]).map_err(|e| format!("cannot decode it: {e}"))?;
    if snap.covered != snap.facts.covered() {
        return Err("its header and contents disagree".into());
    }
    if snap.covered > store.size() {
        return Err(format!(
            "it covers {} entries but the log holds {}",
            snap.covered,
            store.size()
        ));
    }
    let tail = tail_hash(store, snap.covered).map_err(|e| e.to_string())?;
    if tail != snap.tail {
        return Err(format!(
            "entry {} differs from the one it was built from (another log?)",
            snap.covered.saturating_sub(1)
        ));
    }
    Ok(Some(snap.facts))
}

/// Loads the persisted facts and applies the entries appended since, up to the
/// store's size. A missing file means a full replay; a bad one is named in
/// [`CatchUp::rebuilt_because`] and replaced by a full replay.
pub fn load_or_rebuild(
    dir: &Path,
    store: &dyn Store,
    progress: &mut Progress<'_>,
) -> Result<(Facts, CatchUp), ProjectionError> {
    let mut report = CatchUp::default();
    let mut facts = match read(dir, store) {
        Ok(Some(f)) => f,
        Ok(None) => Facts::default(),
        Err(why) => {
            report.rebuilt_because = Some(why);
            Facts::default()
        }
    };
    report.loaded = facts.covered();
    let size = store.size();
    catch_up(store, &mut facts, size, progress)?;
    report.applied = size - report.loaded;
    Ok((facts, report))
}

/// Writes the facts atomically (temporary file, fsync, rename, fsync of the directory).
pub fn save(dir: &Path, store: &dyn Store, facts: &Facts) -> Result<(), ProjectionError> {
    let target = path(dir);
    let io = |source: std::io::Error| ProjectionError::Io {
        path: target.display().to_string(),
        source,
    };
    let snap = SnapshotRef {
        covered: facts.covered(),
        tail: tail_hash(store, facts.covered())?,
        facts,
    };
    let mut bytes = MAGIC.to_vec();
    bytes = postcard::to_extend(&snap, bytes).map_err(|e| io(std::io::Error::other(e)))?;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend(crc.to_le_bytes());
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    fs::rename(&tmp, &target).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    covered: u64,
    tail: Option<String>,
    facts: &'a Facts,
}
