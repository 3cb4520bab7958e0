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
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::collections::BTreeMap;

use serde::de::DeserializeSeed;
use serde::{Deserialize, Serialize};

use crate::hash::to_hex;
use crate::store::Store;

use super::messages::{MessageMap, SHARDS, Shard, ShardSeed, per_shard};
use super::names::Names;
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

/// Reads the length-prefixed sections after the magic: `left` is what remains of
/// the body (the file less its magic and CRC).
struct Sections<R> {
    reader: R,
    left: u64,
}

impl<R: Read> Sections<R> {
    fn next(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let io = |e: std::io::Error| format!("cannot read its {what}: {e}");
        if self.left < 8 {
            return Err(format!("it ends before the {what}"));
        }
        let mut len = [0; 8];
        self.reader.read_exact(&mut len).map_err(io)?;
        self.left -= 8;
        let len = u64::from_le_bytes(len);
        if len > self.left {
            return Err(format!("its {what} runs past the end"));
        }
        let mut section = vec![0; len as usize];
        self.reader.read_exact(&mut section).map_err(io)?;
        self.left -= len;
        Ok(section)
    }
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
    let open = || match fs::File::open(path(dir)) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    };
    let Some(file) = open()? else {
        return Ok(None);
    };
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    // Two passes, so that memory holds the facts and not the file too: the checksum
    // over the whole file first, then the sections one by one.
    check_crc(BufReader::with_capacity(1 << 20, file), len)?;
    let file = open()?.ok_or("it vanished while being read")?;
    let (facts, file_tail) = decode_from(BufReader::with_capacity(1 << 20, file), len)?;
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

/// Checks the magic and the CRC-32C that ends a file of `len` bytes.
fn check_crc(mut r: impl Read, len: u64) -> Result<(), String> {
    let not_ours = || "not a projection file of this version".to_string();
    if len < (MAGIC.len() + 4) as u64 {
        return Err(not_ours());
    }
    let io = |e: std::io::Error| format!("cannot read it: {e}");
    let mut magic = vec![0; MAGIC.len()];
    r.read_exact(&mut magic).map_err(io)?;
    if magic != MAGIC {
        return Err(not_ours());
    }
    let mut crc = crc32c::crc32c(&magic);
    let mut left = len - MAGIC.len() as u64 - 4;
    let mut buf = vec![0; 1 << 20];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        r.read_exact(&mut buf[..n]).map_err(io)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0; 4];
    r.read_exact(&mut stored).map_err(io)?;
    if crc.to_le_bytes() != stored {
        return Err("its checksum does not match (torn or damaged)".into());
    }
    Ok(())
}

/// The facts and tail hash in a file's bytes, or why they cannot be trusted.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> Result<(Facts, Option<String>), String> {
    check_crc(bytes, bytes.len() as u64)?;
    decode_from(bytes, bytes.len() as u64)
}

/// Decodes a file of `len` bytes whose checksum has been checked: the header, then
/// each shard as it is read, on every core, so at most a few shards' bytes are held
/// at once.
fn decode_from(mut r: impl Read, len: u64) -> Result<(Facts, Option<String>), String> {
    r.read_exact(&mut [0; MAGIC.len()])
        .map_err(|e| format!("cannot read it: {e}"))?;
    let mut sections = Sections {
        reader: r,
        left: len - MAGIC.len() as u64 - 4,
    };
    let header: Header = postcard::from_bytes(&sections.next("header")?)
        .map_err(|e| format!("cannot decode its header: {e}"))?;
    let decode_shard = |i: usize, bytes: Vec<u8>| {
        // Every pair takes at least a few bytes, which bounds the count a length may claim.
        let seed = ShardSeed {
            max_len: bytes.len() / 4,
        };
        let mut de = postcard::Deserializer::from_bytes(&bytes);
        seed.deserialize(&mut de)
            .map_err(|e| format!("cannot decode shard {i}: {e}"))
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(SHARDS);
    type Decoded = Result<(Shard, Names), String>;
    let decoded: Mutex<Vec<Option<Decoded>>> = Mutex::new((0..SHARDS).map(|_| None).collect());
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(1);
    let rx = Mutex::new(rx);
    let read = std::thread::scope(|scope| {
        // Owned here, so that it closes (and the workers stop) when reading ends.
        let tx = tx;
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = rx.lock().expect("shard queue").recv();
                    let Ok((i, bytes)) = job else { break };
                    let shard = decode_shard(i, bytes);
                    decoded.lock().expect("decoded shards")[i] = Some(shard);
                }
            });
        }
        for i in 0..SHARDS {
            let bytes = sections.next(&format!("shard {i}"))?;
            tx.send((i, bytes)).expect("a shard worker is listening");
        }
        Ok::<_, String>(())
    });
    read?;
    if sections.left != 0 {
        return Err(format!("{} bytes follow the last shard", sections.left));
    }
    let (shards, names): (Vec<_>, Vec<_>) = decoded
        .into_inner()
        .expect("decoded shards")
        .into_iter()
        .map(|s| s.expect("every shard is decoded"))
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
