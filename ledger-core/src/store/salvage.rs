//! What can still be read from a damaged store directory, read-only: the entries
//! after a point that continue a chain, and every signed note whose frame is whole.
//!
//! A restore from an older backup takes the rest of the log from here (`ledger
//! restore --tail-from`), so that only the entries no copy holds are lost. Nothing
//! here is trusted: the caller checks the entries' chain and the notes' signatures
//! and roots, as for any source.

use std::path::Path;

use super::StoreError;
use crate::entry;
use crate::hash::{Hash, HashAlg};
use crate::segment::{self, HEADER_BYTES};

/// What [`salvage`] read.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// The entries from the seq asked for on, in order, each naming the one before.
    pub entries: Vec<Vec<u8>>,
    /// Why the entries stop where they do (`None`: at the end of the log).
    pub stopped: Option<String>,
    /// The text of every whole frame of `checkpoints.log`, not yet checked.
    pub notes: Vec<String>,
    /// Damaged stretches skipped (in segments and `checkpoints.log`), as places.
    pub skipped: Vec<String>,
}

/// Reads the entries of the store in `dir` from `from` on, the first naming `prev`
/// (the hash of entry `from − 1`, or the genesis value), over damaged frames: a
/// frame that fails its CRC or its length is skipped to the next valid one, and the
/// entries stop at the first seq that cannot be read (a gap) or does not continue
/// the chain.
pub fn salvage(dir: &Path, from: u64, prev: Hash, alg: HashAlg) -> Result<Salvaged, StoreError> {
    let mut out = Salvaged::default();
    let log = super::file::log_dir(dir);
    let segments =
        segment::list_segments(&log).map_err(StoreError::io(format!("list {}", log.display())))?;
    let (mut next, mut prev) = (from, prev);
    // Only segments that may hold `from` or later: every one whose successor starts
    // after `from`.
    let firsts: Vec<u64> = segments.iter().map(|(f, _)| *f).collect();
    'segments: for (i, (_, path)) in segments.iter().enumerate() {
        if firsts.get(i + 1).is_some_and(|n| *n <= from) {
            continue;
        }
        let bytes =
            std::fs::read(path).map_err(StoreError::io(format!("read {}", path.display())))?;
        let place = |at: usize| format!("{} offset {at}", path.display());
        for payload in frames(
            &bytes,
            segment::SEGMENT_PAYLOAD_MAX,
            segment::looks_like_entry,
            &mut |at| out.skipped.push(place(at)),
        ) {
            let Ok(p) = entry::parse_envelope(payload) else {
                continue;
            };
            if p.seq < next {
                continue;
            }
            if p.seq > next {
                out.stopped = Some(format!(
                    "entry {next} cannot be read from {}: it is damaged there and in no copy",
                    dir.display()
                ));
                break 'segments;
            }
            if p.prev != prev {
                out.stopped = Some(format!(
                    "entry {next} in {} does not continue the chain of the entries before it",
                    dir.display()
                ));
                break 'segments;
            }
            prev = alg.leaf(payload);
            next += 1;
            out.entries.push(payload.to_vec());
        }
    }
    let ck = dir.join("checkpoints.log");
    if let Ok(bytes) = std::fs::read(&ck) {
        for payload in frames(
            &bytes,
            segment::NOTE_BYTES_MAX,
            segment::looks_like_note,
            &mut |at| out.skipped.push(format!("{} offset {at}", ck.display())),
        ) {
            if let Ok(t) = std::str::from_utf8(payload) {
                out.notes.push(t.to_string());
            }
        }
    }
    Ok(out)
}

/// The payloads of the whole frames of a framed file's `bytes`, in order; at a bad
/// frame, `skipped(offset)` is told and reading goes on at the next valid frame.
fn frames<'a>(
    bytes: &'a [u8],
    max_payload: usize,
    looks_right: fn(&[u8]) -> bool,
    skipped: &'a mut dyn FnMut(usize),
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = HEADER_BYTES as usize;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            match segment::decode_frame(&bytes[at..], max_payload) {
                Ok((payload, len)) if looks_right(payload) => {
                    at += len;
                    return Some(payload);
                }
                _ => {
                    skipped(at);
                    at = segment::find_valid_frame(bytes, at + 1, max_payload, looks_right)
                        .unwrap_or(bytes.len());
                }
            }
        }
        None
    })
}

/// A source extended with what a damaged directory still holds after it.
pub struct Tailed {
    /// The bundle holding both (staged beside the restore's target; removed on drop).
    pub dir: tempfile::TempDir,
    /// That bundle, read and checked as any source is: the chain, every signature,
    /// every root.
    pub snapshot: super::Snapshot,
    /// Entries taken from the damaged directory.
    pub taken: u64,
    /// Why no more were taken, if the log went on.
    pub stopped: Option<String>,
    /// Notes of its `checkpoints.log` that do not verify with the source's keys, or
    /// sign a size beyond the entries taken, and were left out.
    pub notes_left_out: u64,
    /// Damaged stretches skipped.
    pub skipped: Vec<String>,
}

/// `source` (a checked backup, bundle or mirror) up to its newest signed checkpoint,
/// then the entries of the damaged store in `damaged` that continue its chain, with
/// the checkpoints of `damaged` that its keys sign over them: written as a bundle in a
/// directory staged beside `near`, and read back as a checked [`super::Snapshot`].
pub fn with_tail(
    source: &dyn super::Store,
    damaged: &Path,
    near: &Path,
) -> Result<Tailed, StoreError> {
    use std::io::Write as _;
    let info = source.info().clone();
    let alg = info.hash;
    let keys = source.verifier_key();
    let base = source.latest_checkpoint()?.size;
    let prev = match base {
        0 => alg.genesis(&info.origin),
        n => alg.leaf(&source.entry(n - 1)?),
    };
    let got = salvage(damaged, base, prev, alg)?;
    let taken = got.entries.len() as u64;
    let mut notes: std::collections::BTreeMap<u64, String> = super::all_checkpoints(source)?
        .into_iter()
        .filter(|(size, _)| *size <= base)
        .collect();
    let mut left_out = 0;
    for note in got.notes {
        match keys.verify(&note) {
            Ok(cp) if cp.size > base && cp.size <= base + taken => {
                notes.entry(cp.size).or_insert(note);
            }
            Ok(cp) if cp.size <= base => {}
            _ => left_out += 1,
        }
    }
    let dir = crate::bundle::stage_beside(near)?;
    let d = dir.path();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).map_err(StoreError::io(format!("write {name}")))
    };
    write(
        "ledger.json",
        (serde_json::to_string_pretty(&info).expect("serializable") + "\n").as_bytes(),
    )?;
    write("verifier.key", format!("{keys}\n").as_bytes())?;
    let (_, newest) = notes
        .pop_last()
        .ok_or_else(|| StoreError::Corrupt("the source has no signed checkpoint".into()))?;
    write("checkpoint", newest.as_bytes())?;
    write(
        "checkpoints.txt",
        notes
            .into_values()
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    )?;
    let path = d.join("entries.jsonl");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&path)
            .map_err(StoreError::io(format!("create {}", path.display())))?,
    );
    let io = StoreError::io(format!("write {}", path.display()));
    let mut failed = None;
    source.scan(0, base, &mut |_, b| {
        if let Err(e) = f.write_all(b).and_then(|()| f.write_all(b"\n")) {
            failed = Some(e);
        }
        Ok(())
    })?;
    for e in &got.entries {
        if failed.is_none()
            && let Err(err) = f.write_all(e).and_then(|()| f.write_all(b"\n"))
        {
            failed = Some(err);
        }
    }
    match failed {
        Some(e) => return Err(io(e)),
        None => f.flush().map_err(io)?,
    }
    drop(f);
    let snapshot = super::Snapshot::open(d)?;
    Ok(Tailed {
        dir,
        snapshot,
        taken,
        stopped: got.stopped,
        notes_left_out: left_out,
        skipped: got.skipped,
    })
}
