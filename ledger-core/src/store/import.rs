//! A new embedded ledger holding another log's entries and signed checkpoints, as
//! they are: `ledger migrate` into the embedded engine, and restores. Entries are
//! checked as they come (gapless seqs, each naming the previous entry's hash), framed
//! into segments as the writer frames them, and the whole is made durable at
//! [`Import::finish`]; the next open builds the index from the log as any open does.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::file::{log_dir, read_info, replace_info, sync_dir, write_whole};
use super::{FileStore, InitOptions, LedgerInfo, StoreError};
use crate::entry;
use crate::hash::Hash;
use crate::{limits, segment};

/// A ledger being filled; nothing is a ledger until [`Import::finish`].
pub struct Import {
    dir: PathBuf,
    info: LedgerInfo,
    segment: File,
    segment_first: u64,
    segment_len: u64,
    buf: Vec<u8>,
    next: u64,
    prev: Hash,
    checkpoints: Vec<u8>,
}

/// Bytes gathered before a write.
const WRITE_CHUNK: usize = 4 << 20;

impl Import {
    /// Starts a ledger in `dir` (absent or empty) with the identity `info`. Its key
    /// is a new one until the caller puts the source's key files in place.
    pub fn create(dir: &Path, info: &LedgerInfo) -> Result<Import, StoreError> {
        FileStore::init(
            dir,
            &InitOptions {
                origin: info.origin.clone(),
                hash: info.hash,
            },
        )?;
        // The source's format: a format-1 log stays format 1, a rotated one 3.
        if read_info(dir)? != *info {
            replace_info(dir, info)?;
        }
        let path = log_dir(dir).join(segment::segment_name(0));
        let segment =
            File::create(&path).map_err(StoreError::io(format!("create {}", path.display())))?;
        Ok(Import {
            dir: dir.to_path_buf(),
            info: info.clone(),
            segment,
            segment_first: 0,
            segment_len: 0,
            buf: segment::header(segment::SEGMENT_MAGIC, 0).to_vec(),
            next: 0,
            prev: info.hash.genesis(&info.origin),
            checkpoints: segment::header(segment::CHECKPOINTS_MAGIC, 0).to_vec(),
        })
    }

    /// Entries taken so far.
    pub fn size(&self) -> u64 {
        self.next
    }

    /// Takes the entry `seq` (the next one), refusing one out of order, one that is
    /// not a well-formed entry, or one that does not name the previous entry's hash.
    pub fn entry(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let bad = |why: String| StoreError::Corrupt(format!("entry {seq}: {why}"));
        if seq != self.next {
            return Err(bad(format!("expected entry {} next", self.next)));
        }
        if bytes.len() > limits::ENTRY_BYTES_MAX {
            return Err(bad(format!(
                "{} bytes, more than an entry holds",
                bytes.len()
            )));
        }
        let p = entry::parse_envelope(bytes).map_err(|e| bad(e.to_string()))?;
        if p.seq != seq {
            return Err(bad(format!("it says it is entry {}", p.seq)));
        }
        if p.prev != self.prev {
            return Err(bad("it does not name the previous entry's hash".into()));
        }
        let at_limit = self.segment_len + self.buf.len() as u64 >= limits::SEGMENT_BYTES_MAX;
        if at_limit && seq > self.segment_first {
            self.roll(seq)?;
        }
        segment::encode_frame(&mut self.buf, bytes);
        if self.buf.len() >= WRITE_CHUNK {
            self.write_buf()?;
        }
        self.prev = self.info.hash.leaf(bytes);
        self.next += 1;
        Ok(())
    }

    /// Takes a signed checkpoint (in ascending size), kept as it is.
    pub fn checkpoint(&mut self, note: &str) {
        segment::encode_frame(&mut self.checkpoints, note.as_bytes());
    }

    fn segment_path(&self) -> PathBuf {
        log_dir(&self.dir).join(segment::segment_name(self.segment_first))
    }

    fn write_buf(&mut self) -> Result<(), StoreError> {
        let path = self.segment_path();
        self.segment
            .write_all(&self.buf)
            .map_err(StoreError::io(format!("write {}", path.display())))?;
        self.segment_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the current segment and starts the one whose first entry is `first`.
    fn roll(&mut self, first: u64) -> Result<(), StoreError> {
        self.write_buf()?;
        let path = self.segment_path();
        self.segment
            .sync_all()
            .map_err(StoreError::io(format!("sync {}", path.display())))?;
        self.segment_first = first;
        let path = self.segment_path();
        self.segment =
            File::create(&path).map_err(StoreError::io(format!("create {}", path.display())))?;
        self.segment_len = 0;
        self.buf
            .extend_from_slice(&segment::header(segment::SEGMENT_MAGIC, first));
        Ok(())
    }

    /// Makes everything taken durable: the segments, then `checkpoints.log` (the
    /// checkpoints taken, in place of the new key's own).
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.write_buf()?;
        let path = self.segment_path();
        self.segment
            .sync_all()
            .map_err(StoreError::io(format!("sync {}", path.display())))?;
        sync_dir(&log_dir(&self.dir))?;
        write_whole(&self.dir.join("checkpoints.log"), &self.checkpoints)
    }
}
