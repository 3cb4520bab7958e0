//! The file operations the embedded store makes on its log of record (segments and
//! `checkpoints.log`) once it is open: appends, syncs and positional reads. They go
//! through [`LogIo`] so that a test can put a fault-injecting layer under the store
//! (failed and short writes, failed fsyncs, ENOSPC, EIO on read, a crash image after
//! any write) and check that nothing acknowledged is ever lost. Production uses
//! [`OsIo`], which is the plain system calls.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The store's file operations on the log of record. `path` names the file, for
/// layers that track files (the store never reopens a file by it).
pub trait LogIo: Send + Sync + 'static {
    /// Writes all of `bytes` at the end of `file` (opened for append).
    fn append(&self, file: &File, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended to `file` durable (`fdatasync`).
    fn sync(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Reads at `offset`, as `pread`: the bytes read (0 at the end of the file).
    fn read_at(&self, file: &File, path: &Path, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// The operating system's file operations.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsIo;

impl LogIo for OsIo {
    fn append(&self, mut file: &File, _: &Path, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync(&self, file: &File, _: &Path) -> io::Result<()> {
        file.sync_data()
    }

    fn read_at(&self, file: &File, _: &Path, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }
}
