//! Recovery at open: the log's tail read and a torn last record cut (never damage
//! elsewhere), the checkpoints log read, the index caught up with the log, and what
//! was done written to `recovery.log` (ARCHITECTURE.md, "Recovery at open").

use super::StoreError;
use super::file::{OpenReport, Shared, sync_dir, write_file_synced};
use super::index::{self, Recent, Tables};
use super::log::{IndexedSubtrees, scan_entries, segment_bounds};
use crate::entry;
use crate::hash::{Hash, HashAlg};
use crate::merkle::Frontier;
use crate::rotation::KeyHistory;
use crate::segment::{self, FrameReader, HEADER_BYTES};
use crate::{limits, limits::ENTRY_BYTES_MAX};
use redb::{Database, ReadableTable};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) fn append_recovery_log(dir: &Path, report: &OpenReport) {
    // The report is also returned to the caller; failing to log it is not fatal.
    for l in report.lines() {
        append_recovery_line(dir, &l);
    }
}

/// Entries the index covers and the size of the newest indexed checkpoint.
pub(super) fn acknowledged_bounds(db: &Database) -> Result<(u64, u64), StoreError> {
    let txn = db.begin_write()?;
    index::create_tables(&txn)?;
    let bounds = {
        let t = Tables::open(&txn)?;
        let signed = t.checkpoints.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        (t.meta(index::COVERED)?, signed)
    };
    txn.commit()?;
    Ok(bounds)
}

/// What the last segment holds.
pub(super) struct Tail {
    pub(super) count: u64,
    /// Hash and `recorded_at` of its last entry.
    pub(super) last: Option<(Hash, String)>,
    /// Offset of the first bad frame and what is wrong with it.
    pub(super) torn: Option<(u64, String)>,
}

pub(super) fn scan_tail(path: &Path, first_seq: u64, alg: HashAlg) -> Result<Tail, StoreError> {
    let (mut r, first) = FrameReader::open(path, segment::SEGMENT_MAGIC)
        .map_err(StoreError::io(format!("read {}", path.display())))?;
    match first {
        Ok(f) if f == first_seq => {}
        Ok(f) => {
            return Err(StoreError::Corrupt(format!(
                "{} says it starts at seq {f}",
                path.display()
            )));
        }
        Err(e) => return Err(StoreError::Corrupt(format!("{}: {e}", path.display()))),
    }
    let mut tail = Tail {
        count: 0,
        last: None,
        torn: None,
    };
    let mut last = None;
    loop {
        match r
            .next_frame(ENTRY_BYTES_MAX)
            .map_err(StoreError::io(format!("read {}", path.display())))?
        {
            None => break,
            Some(Ok(frame)) => {
                // Frames are checksummed; only the last one's contents matter here
                // (the chain continues from it), so only it is parsed and hashed.
                last = Some((frame.offset, frame.payload));
                tail.count += 1;
            }
            Some(Err(e)) => {
                // Anything from the first bad frame to the end of the last segment is
                // a write that never completed, so it was never acknowledged.
                tail.torn = Some((r.offset(), e.to_string()));
                break;
            }
        }
    }
    if let Some((offset, payload)) = last {
        let seq = first_seq + tail.count - 1;
        let p = entry::parse_entry(&payload).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} offset {offset}: entry {seq}: {e}",
                path.display()
            ))
        })?;
        if p.seq != seq {
            return Err(StoreError::Corrupt(format!(
                "{} offset {offset}: expected seq {seq}, found {} (the segment's entries are out of order)",
                path.display(),
                p.seq
            )));
        }
        tail.last = Some((alg.leaf(&payload), p.recorded_at.to_string()));
    }
    Ok(tail)
}

/// Brings the index up to the log: indexes entries `[covered, size)` and checkpoints
/// past the indexed offset. Returns the Merkle frontier at `size`, the length of
/// `checkpoints.log`, and the newest checkpoint's size.
pub(super) fn catch_up(
    shared: &Arc<Shared>,
    size: u64,
    keys: &KeyHistory,
    report: &mut OpenReport,
) -> Result<(Frontier, u64, u64), StoreError> {
    let alg = shared.info.hash;
    let txn = shared.db().begin_write()?;
    index::create_tables(&txn)?;
    let (frontier, ck_len, latest) = {
        let mut t = Tables::open(&txn)?;
        let covered = t.meta(index::COVERED)?;
        if covered > size {
            return Err(StoreError::Corrupt(format!(
                "the index covers {covered} entries but the log holds only {size}: entries that were \
                 acknowledged are missing from the log"
            )));
        }
        // Readers of the index see `covered` entries while we catch up.
        shared.size.store(covered, Ordering::Release);
        let mut frontier =
            Frontier::from_source(alg, &IndexedSubtrees { shared, tables: &t }, covered)?;
        if covered < size {
            let segs = segment_bounds(shared);
            // Gathered in memory and written in key order, a generation at a time, as
            // the writer's flusher does.
            let mut generation = Recent::default();
            scan_entries(shared, covered, size, &mut |seq, offset, bytes| {
                let ev = entry::parse_entry(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                let first = segs.contains(&seq);
                if ev.is_key_entry() {
                    // Announces a key, which verifier.key must hold from the next size.
                    let (_, a) = entry::check_key_entry(bytes, &shared.info.origin)
                        .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                    if keys.announced_at(seq) != Some(&a.key) {
                        return Err(StoreError::Corrupt(format!(
                            "entry {seq} announces the signing key {}, which verifier.key does not \
                             name from size {}: restore verifier.key from a backup",
                            a.key,
                            seq + 1
                        )));
                    }
                    // No event id or message to file it under.
                    generation.index_position(seq, offset, first);
                } else {
                    let keys = entry::index_keys(ev.event, ev.v)
                        .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                    generation.index_entry(
                        seq,
                        &keys.id,
                        &keys.message,
                        keys.new_message.as_deref(),
                        offset,
                        first,
                    );
                }
                frontier.push(alg.leaf(bytes), |l, i, h| generation.node(l, i, h));
                if generation.entries >= limits::INDEX_FLUSH_ENTRIES {
                    std::mem::take(&mut generation).write_to(&mut t)?;
                }
                Ok(())
            })?;
            generation.write_to(&mut t)?;
            report.index_caught_up = size - covered;
            t.meta.insert(index::COVERED, size)?;
        }
        // Checkpoints past the indexed offset.
        let ck_path = shared.dir.join("checkpoints.log");
        let ck_from = t.meta(index::CHECKPOINTS_OFFSET)?.max(HEADER_BYTES);
        let (ck_len, torn) = read_checkpoints(&ck_path, ck_from, &mut |note| {
            let cp = keys
                .verify(note)
                .map_err(|e| StoreError::Corrupt(format!("checkpoints.log: {e}")))?;
            if cp.size > size {
                return Err(StoreError::Corrupt(format!(
                    "checkpoints.log holds a checkpoint for size {} but the log has {size} entries",
                    cp.size
                )));
            }
            t.checkpoints.insert(cp.size, note)?;
            Ok(())
        })?;
        if let Some(cut) = torn {
            report.torn_checkpoint_bytes = Some(cut);
        }
        t.meta.insert(index::CHECKPOINTS_OFFSET, ck_len)?;
        let latest = t.checkpoints.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        (frontier, ck_len, latest)
    };
    txn.commit()?;
    Ok((frontier, ck_len, latest))
}

/// Reads `checkpoints.log` from `from`, calling `f` with each note; cuts a torn last
/// record. Returns the file's (new) length and the bytes cut, if any.
pub(super) fn read_checkpoints(
    path: &Path,
    from: u64,
    f: &mut dyn FnMut(&str) -> Result<(), StoreError>,
) -> Result<(u64, Option<u64>), StoreError> {
    let io = |what: &str| StoreError::io(format!("{what} {}", path.display()));
    let file = File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    if from > len {
        return Err(StoreError::Corrupt(format!(
            "the index has read {} up to offset {from}, but it is {len} bytes: it was cut or \
             replaced; refusing to go on (run `ledger reindex` if the index is the stale part)",
            path.display()
        )));
    }
    let mut buf = vec![0u8; (len.saturating_sub(from)) as usize];
    file.read_exact_at(&mut buf, from).map_err(io("read"))?;
    let mut pos = 0usize;
    let mut torn = None;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let bad = if rest.len() < 8 {
            true
        } else {
            let n = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
            if n == 0 || rest.len() < 8 + n || crc32c::crc32c(&rest[8..8 + n]) != crc {
                true
            } else {
                let note = std::str::from_utf8(&rest[8..8 + n]).map_err(|_| {
                    StoreError::Corrupt("checkpoints.log: a note is not UTF-8".into())
                })?;
                f(note)?;
                pos += 8 + n;
                false
            }
        };
        if bad {
            let at = from + pos as u64;
            let place = format!("{} offset {at}", path.display());
            refuse_unless_torn(
                path,
                at,
                &place,
                segment::looks_like_note,
                segment::NOTE_BYTES_MAX,
            )?;
            let dir = path.parent().unwrap_or(Path::new("."));
            torn = Some(cut_torn_tail(
                dir,
                path,
                at,
                "a checkpoint record that is cut short or fails its CRC",
            )?);
            return Ok((at, torn));
        }
    }
    Ok((len, torn))
}

/// Refuses (`Corrupt`) unless the bad frame at `offset` of `path` can be a torn write:
/// a torn write is only ever the end of the file, so a valid frame anywhere after it
/// means the bad one is damage to something written whole (and fsynced, and
/// acknowledged), never a tear.
pub(super) fn refuse_unless_torn(
    path: &Path,
    offset: u64,
    place: &str,
    looks_right: fn(&[u8]) -> bool,
    max_payload: usize,
) -> Result<(), StoreError> {
    let after = segment::valid_frame_after(path, offset, max_payload, looks_right)
        .map_err(StoreError::io(format!("read {}", path.display())))?;
    if let Some(at) = after {
        return Err(StoreError::Corrupt(format!(
            "{place} is damaged, but a valid record follows at offset {at}, so this is damage to \
             records written whole (and acknowledged), not a torn write; refusing to cut anything. \
             Restore the file from a backup or an exported bundle"
        )));
    }
    Ok(())
}

pub(super) fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, StoreError> {
    let io = |what: &str| StoreError::io(format!("{what} {}", path.display()));
    let f = File::open(path).map_err(io("open"))?;
    let len = f.metadata().map_err(io("stat"))?.len();
    let mut bytes = vec![0u8; len.saturating_sub(offset) as usize];
    f.read_exact_at(&mut bytes, offset).map_err(io("read"))?;
    Ok(bytes)
}

/// The largest size a validly signed checkpoint in `checkpoints.log` names: evidence,
/// independent of the index, of how many entries were acknowledged. Sizes only grow
/// along the file, so the last valid note is enough; damaged stretches are skipped.
pub(super) fn signed_in_checkpoints_log(dir: &Path, key: &KeyHistory) -> Result<u64, StoreError> {
    let bytes = read_from(&dir.join("checkpoints.log"), HEADER_BYTES)?;
    let mut at = 0;
    let mut best = 0;
    while let Some(found) = segment::find_valid_frame(
        &bytes,
        at,
        segment::NOTE_BYTES_MAX,
        segment::looks_like_note,
    ) {
        let len = u32::from_le_bytes(bytes[found..found + 4].try_into().expect("4")) as usize;
        let note = std::str::from_utf8(&bytes[found + 8..found + 8 + len]).unwrap_or("");
        if let Ok(cp) = key.verify(note) {
            best = best.max(cp.size);
        }
        at = found + 8 + len;
    }
    Ok(best)
}

/// Cuts a torn last record from `path` at `offset`: first saves the bytes to
/// `recovery/` and writes the cut to `recovery.log` (both fsynced), then cuts. If the
/// record cannot be written, nothing is cut.
pub(super) fn cut_torn_tail(
    dir: &Path,
    path: &Path,
    offset: u64,
    why: &str,
) -> Result<u64, StoreError> {
    let bytes = read_from(path, offset)?;
    let saved_dir = dir.join("recovery");
    fs::create_dir_all(&saved_dir)
        .map_err(StoreError::io(format!("create {}", saved_dir.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut saved = saved_dir.join(format!("{name}.{offset}.torn"));
    let mut k = 1;
    while saved.exists() {
        saved = saved_dir.join(format!("{name}.{offset}.torn.{k}"));
        k += 1;
    }
    write_file_synced(&saved, &bytes, 0o600)?;
    sync_dir(&saved_dir)?;
    sync_dir(dir)?;
    let now = entry::format_recorded_at(time::OffsetDateTime::now_utc());
    let line = format!(
        "{now} recovery: cutting a torn last record from {} at offset {offset} ({} bytes: {why}); \
         no later record, signed checkpoint or index entry shows it acknowledged; the bytes are saved in {}\n",
        path.display(),
        bytes.len(),
        saved.display()
    );
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("recovery.log"))
        .map_err(StoreError::io("open recovery.log"))?;
    log.write_all(line.as_bytes())
        .and_then(|_| log.sync_all())
        .map_err(StoreError::io("write recovery.log"))?;
    sync_dir(dir)?;
    let w = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StoreError::io(format!("open {}", path.display())))?;
    w.set_len(offset)
        .and_then(|_| w.sync_all())
        .map_err(StoreError::io(format!(
            "cut the torn tail of {}",
            path.display()
        )))?;
    Ok(bytes.len() as u64)
}

pub(super) fn append_recovery_line(dir: &Path, line: &str) {
    let now = entry::format_recorded_at(time::OffsetDateTime::now_utc());
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("recovery.log"))
    {
        let _ = f
            .write_all(format!("{now} {line}\n").as_bytes())
            .and_then(|_| f.sync_all());
    }
}
