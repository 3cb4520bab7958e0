//! The log reader: entries found through the index's sparse offsets and read by
//! positional reads (no lock on the writer's file), every frame decoded and checked
//! by `segment::decode_frame`; subtree hashes from the index or the log.

use super::StoreError;
use super::file::Shared;
use super::index::{self, NODE_LEVEL_MIN, OFFSET_STRIDE, Tables};
use super::io::LogIo;
use crate::hash::Hash;
use crate::limits::ENTRY_BYTES_MAX;
use crate::merkle::{self, SubtreeSource};
use crate::segment::{self, FRAME_HEADER_BYTES, FrameError, HEADER_BYTES};
use redb::ReadableTable;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) fn segment_bounds(shared: &Shared) -> Vec<u64> {
    shared
        .segments
        .read()
        .expect("lock")
        .iter()
        .map(|s| s.first_seq)
        .collect()
}

/// What [`scan_entries`] calls with each entry's seq, offset and bytes.
pub(crate) type RawVisitor<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<(), StoreError> + 'a;

/// Reads entries `[from, to)` from the segments, calling `f(seq, offset, bytes)`.
/// Bytes are checked against their CRC; the caller decides what else to check.
pub(crate) fn scan_entries(
    shared: &Shared,
    from: u64,
    to: u64,
    f: &mut RawVisitor<'_>,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let segs: Vec<(u64, PathBuf, Arc<File>)> = {
        let s = shared.segments.read().expect("lock");
        s.iter()
            .map(|x| (x.first_seq, x.path.clone(), x.file.clone()))
            .collect()
    };
    let mut i = segs.partition_point(|s| s.0 <= from) - 1;
    let mut seq = from;
    while seq < to {
        let (first, path, file) = &segs[i];
        let seg_end = segs.get(i + 1).map(|s| s.0).unwrap_or(u64::MAX);
        // Start at the nearest indexed offset at or before `seq`.
        let (mut cur, mut offset) = start_point(shared, *first, seq)?;
        let mut reader = PositionalReader::new(&*shared.io, file, path, offset);
        while seq < to && cur < seg_end {
            let payload = reader.next(path)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{}: ends before entry {cur}", path.display()))
            })?;
            if cur >= seq {
                f(cur, offset, &payload)?;
                seq += 1;
            }
            offset = reader.offset;
            cur += 1;
        }
        i += 1;
    }
    Ok(())
}

/// The nearest (seq, offset) at or before `seq` that the index records, within the
/// segment that starts at `first`.
pub(super) fn start_point(shared: &Shared, first: u64, seq: u64) -> Result<(u64, u64), StoreError> {
    shared.guard(|| {
        let stride = seq - seq % OFFSET_STRIDE;
        if stride <= first {
            return Ok((first, HEADER_BYTES));
        }
        let (recent, txn) = shared.read_view()?;
        if let Some(o) = recent.offset(stride) {
            return Ok((stride, o));
        }
        let offsets = txn.open_table(index::OFFSETS)?;
        match offsets.get(stride)? {
            Some(o) => Ok((stride, o.value())),
            None => Ok((first, HEADER_BYTES)),
        }
    })
}

/// Reads frames from a file at increasing offsets through a buffer.
pub(super) struct PositionalReader<'a> {
    io: &'a dyn LogIo,
    file: &'a File,
    path: &'a Path,
    offset: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> PositionalReader<'a> {
    fn new(io: &'a dyn LogIo, file: &'a File, path: &'a Path, offset: u64) -> Self {
        PositionalReader {
            io,
            file,
            path,
            offset,
            buf: Vec::new(),
            buf_start: offset,
        }
    }

    fn fill(&mut self, need: usize, path: &Path) -> Result<bool, StoreError> {
        let have_from = (self.offset - self.buf_start) as usize;
        if self.buf.len() >= have_from + need {
            return Ok(true);
        }
        let want = need.max(64 * 1024);
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            let n = self
                .io
                .read_at(
                    self.file,
                    self.path,
                    &mut buf[got..],
                    self.offset + got as u64,
                )
                .map_err(StoreError::io(format!("read {}", path.display())))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        self.buf = buf;
        self.buf_start = self.offset;
        Ok(got >= need)
    }

    fn next(&mut self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let corrupt = |offset: u64, e: FrameError| {
            StoreError::Corrupt(format!("{} offset {offset}: {e}", path.display()))
        };
        let mut need = FRAME_HEADER_BYTES as usize;
        loop {
            if !self.fill(need, path)? {
                return Ok(None);
            }
            let at = (self.offset - self.buf_start) as usize;
            match segment::decode_frame(&self.buf[at..], ENTRY_BYTES_MAX) {
                Ok((payload, n)) => {
                    let payload = payload.to_vec();
                    self.offset += n as u64;
                    return Ok(Some(payload));
                }
                // More of the file is needed for this frame; the fill says if there is.
                Err(FrameError::Truncated { needed, .. }) if needed as usize > need => {
                    need = needed as usize;
                }
                Err(e) => return Err(corrupt(self.offset, e)),
            }
        }
    }
}

pub(super) fn read_entry_unchecked(shared: &Shared, seq: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = None;
    scan_entries(shared, seq, seq + 1, &mut |_, _, b| {
        out = Some(b.to_vec());
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Corrupt(format!("entry {seq} is missing")))
}

/// Perfect subtrees from the index (levels ≥ 6) or computed from the log.
pub(crate) struct IndexedSubtrees<'a, 't> {
    pub shared: &'a Shared,
    pub tables: &'a Tables<'t>,
}

impl SubtreeSource for IndexedSubtrees<'_, '_> {
    type Error = StoreError;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if level >= NODE_LEVEL_MIN {
            return self
                .tables
                .nodes
                .get(index::node_key(level, index))?
                .map(|g| g.value())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("index lacks Merkle node {level}/{index}"))
                });
        }
        subtree_from_log(self.shared, level, index)
    }
}

pub(crate) fn subtree_from_log(
    shared: &Shared,
    level: u32,
    index: u64,
) -> Result<Hash, StoreError> {
    let alg = shared.info.hash;
    let start = index << level;
    let mut leaves = Vec::with_capacity(1 << level);
    scan_entries(shared, start, start + (1 << level), &mut |_, _, b| {
        leaves.push(alg.leaf(b));
        Ok(())
    })?;
    Ok(merkle::root_of(alg, &leaves))
}
