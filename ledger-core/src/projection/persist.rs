//! The persisted projection: the facts of a log prefix, in `<dir>/projection.facts`,
//! so a question does not replay the whole log. Derived data: it can always be rebuilt
//! (`ledger replay`), and a file that is unreadable or belongs to another history is
//! reported and rebuilt, never trusted.
//!
//! File (version 4): `"ledger-facts/4\n"`; a header (u64 little-endian length, then
//! postcard of {covered, hash of entry covered−1, reporter streams}); then each of the
//! message shards (u64 little-endian length, then postcard of its (id, facts) pairs);
//! then CRC-32C of everything before it (4 bytes, little-endian). The shards are
//! encoded and decoded on every core. Written to a temporary file, synced and
//! renamed, so a crash leaves the old file or the new one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::de::DeserializeSeed;
use serde::{Deserialize, Serialize};

use crate::hash::to_hex;
use crate::store::Store;

use super::messages::{MessageMap, SHARDS, Shard, ShardSeed, per_shard};
use super::{Facts, Progress, ProjectionError, Stream, catch_up};

const MAGIC: &[u8] = b"ledger-facts/4\n";
/// The file's name in the ledger directory.
pub const FILE_NAME: &str = "projection.facts";

#[derive(Serialize, Deserialize)]
struct Header {
    covered: u64,
    /// Leaf hash (hex) of entry `covered − 1`: ties the file to this log's history.
    tail: Option<String>,
    streams: BTreeMap<String, BTreeMap<String, Stream>>,
}

#[derive(Serialize)]
struct HeaderRef<'a> {
    covered: u64,
    tail: Option<String>,
    streams: &'a BTreeMap<String, BTreeMap<String, Stream>>,
}

/// A shard as a sequence of (id, facts) pairs.
struct ShardRef<'a>(&'a Shard);

impl Serialize for ShardRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// Splits `bytes` into length-prefixed sections: the header, then the shards.
fn sections(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::with_capacity(SHARDS + 1);
    for i in 0..=SHARDS {
        let what = if i == 0 {
            "header".to_string()
        } else {
            format!("shard {}", i - 1)
        };
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("it ends before the {what}"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| format!("its {what} runs past the end"))?;
        let (section, rest) = rest.split_at(len);
        out.push(section);
        bytes = rest;
    }
    if !bytes.is_empty() {
        return Err(format!("{} bytes follow the last shard", bytes.len()));
    }
    Ok(out)
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
    let (facts, file_tail) = decode(&bytes)?;
    if facts.covered() > store.size() {
        return Err(format!(
            "it covers {} entries but the log holds {}",
            facts.covered(),
            store.size()
        ));
    }
    let tail = tail_hash(store, facts.covered()).map_err(|e| e.to_string())?;
    if tail != file_tail {
        return Err(format!(
            "entry {} differs from the one it was built from (another log?)",
            facts.covered().saturating_sub(1)
        ));
    }
    Ok(Some(facts))
}

/// The file's bytes: the facts, and the leaf hash of the last entry they cover.
pub(crate) fn encode(facts: &Facts, tail: Option<String>) -> Result<Vec<u8>, postcard::Error> {
    let header = HeaderRef {
        covered: facts.covered(),
        tail,
        streams: facts.stream_map(),
    };
    let mut parts = vec![postcard::to_allocvec(&header)];
    parts.extend(per_shard(|i| {
        postcard::to_allocvec(&ShardRef(&facts.shards()[i]))
    }));
    let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let len = MAGIC.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>() + 4;
    let mut bytes = Vec::with_capacity(len);
    bytes.extend(MAGIC);
    for p in &parts {
        bytes.extend((p.len() as u64).to_le_bytes());
        bytes.extend(p);
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend(crc.to_le_bytes());
    Ok(bytes)
}

/// The facts and tail hash in a file's bytes, or why they cannot be trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Facts, Option<String>), String> {
    if bytes.len() < MAGIC.len() + 4 || !bytes.starts_with(MAGIC) {
        return Err("not a projection file of this version".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("its checksum does not match (torn or damaged)".into());
    }
    let parts = sections(&body[MAGIC.len()..])?;
    let header: Header =
        postcard::from_bytes(parts[0]).map_err(|e| format!("cannot decode its header: {e}"))?;
    let shards = per_shard(|i| {
        let bytes = parts[i + 1];
        // Every pair takes at least a few bytes, which bounds the count a length may claim.
        let seed = ShardSeed {
            max_len: bytes.len() / 4,
        };
        let mut de = postcard::Deserializer::from_bytes(bytes);
        seed.deserialize(&mut de)
            .map_err(|e| format!("cannot decode shard {i}: {e}"))
    });
    let (shards, names): (Vec<_>, Vec<_>) = shards
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let messages = MessageMap::from_shards(shards)
        .ok_or_else(|| "its messages are not sharded as this version shards them".to_string())?;
    Ok((
        Facts::from_parts(header.covered, messages, header.streams, names),
        header.tail,
    ))
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
    let bytes = encode(facts, tail_hash(store, facts.covered())?)
        .map_err(|e| io(std::io::Error::other(e)))?;
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
