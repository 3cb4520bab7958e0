//! Segment files: the log of record.
//!
//! A segment is a 16-byte header (`LDGRSEG1` then the first seq as u64
//! little-endian) followed by frames. A frame is the entry's length (u32 LE), the
//! CRC-32C of the entry (u32 LE), then the entry's canonical bytes: the same bytes
//! that are hashed. Segments are named by their first seq, zero-padded to 20 digits,
//! with the extension `.seg`. The same framing, with the header `LDGRCKP1`, holds the
//! signed checkpoints in `checkpoints.log`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::limits;

/// Magic bytes that open a segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LDGRSEG1";
/// Magic bytes that open the checkpoints log.
pub const CHECKPOINTS_MAGIC: [u8; 8] = *b"LDGRCKP1";
/// Bytes before the first frame.
pub const HEADER_BYTES: u64 = 16;
/// Bytes of a frame before its payload.
pub const FRAME_HEADER_BYTES: u64 = 8;

/// The file header: magic and the seq of the first entry (0 for the checkpoints log).
pub fn header(magic: [u8; 8], first_seq: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&magic);
    h[8..].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= u32::MAX as usize);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The file name of the segment whose first entry is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The segments in `dir`, ordered by first seq.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".seg")
            && stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            out.push((first, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What is wrong at some offset of a framed file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The file ends inside a frame (a torn write, when it is the end of the log).
    #[error("file ends inside a frame ({available} of {needed} bytes present)")]
    Truncated {
        /// Bytes the frame needs from its start.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// The length field is zero or larger than any entry may be.
    #[error("frame length {0} is out of range")]
    BadLength(u32),
    /// The payload does not match its checksum.
    #[error("CRC-32C mismatch: frame says {expected:08x}, bytes give {actual:08x}")]
    Crc {
        /// CRC stored in the frame.
        expected: u32,
        /// CRC of the payload as read.
        actual: u32,
    },
    /// The file header is missing or wrong.
    #[error("bad file header: {0}")]
    Header(String),
}

/// A frame's header: its payload's length and CRC-32C. The one place a frame is
/// judged: the streaming reader, the positional reader and recovery's search all
/// decode through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload bytes.
    pub len: usize,
    /// CRC-32C the payload must have.
    pub crc: u32,
}

impl FrameHeader {
    /// Reads a header; a length of zero or over `max_payload` is refused.
    pub fn parse(bytes: [u8; 8], max_payload: usize) -> Result<FrameHeader, FrameError> {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
        if len == 0 || len as usize > max_payload {
            return Err(FrameError::BadLength(len));
        }
        Ok(FrameHeader {
            len: len as usize,
            crc,
        })
    }

    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_BYTES + self.len as u64
    }

    /// Whether `payload` is the one this header describes.
    pub fn check(&self, payload: &[u8]) -> Result<(), FrameError> {
        let actual = crc32c::crc32c(payload);
        if actual != self.crc {
            return Err(FrameError::Crc {
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }
}

/// The frame at the start of `bytes`: its payload and its length in all. A frame
/// that goes past the end of `bytes` is `Truncated` (more may be read).
pub fn decode_frame(bytes: &[u8], max_payload: usize) -> Result<(&[u8], usize), FrameError> {
    let hdr = FRAME_HEADER_BYTES as usize;
    let truncated = |needed: usize| FrameError::Truncated {
        needed: needed as u64,
        available: bytes.len() as u64,
    };
    let Some(head) = bytes.get(..hdr) else {
        return Err(truncated(hdr));
    };
    let h = FrameHeader::parse(head.try_into().expect("8 bytes"), max_payload)?;
    let Some(payload) = bytes.get(hdr..hdr + h.len) else {
        return Err(truncated(hdr + h.len));
    };
    h.check(payload)?;
    Ok((payload, hdr + h.len))
}

/// One frame read from a file.
#[derive(Debug)]
pub struct Frame {
    /// Offset of the frame's first byte in the file.
    pub offset: u64,
    /// The payload (an entry, or a signed checkpoint).
    pub payload: Vec<u8>,
}

/// Reads frames one after another; stops at the first bad frame.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    len: u64,
    failed: bool,
}

impl FrameReader<BufReader<File>> {
    /// Opens a framed file, checks its header, and returns the reader and the
    /// first seq the header names.
    pub fn open(path: &Path, magic: [u8; 8]) -> io::Result<(Self, Result<u64, FrameError>)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut h = [0u8; 16];
        if len < HEADER_BYTES {
            let reader = FrameReader {
                inner: r,
                offset: 0,
                len,
                failed: true,
            };
            return Ok((
                reader,
                Err(FrameError::Header(format!(
                    "file is {len} bytes, shorter than the header"
                ))),
            ));
        }
        r.read_exact(&mut h)?;
        let first = if h[..8] != magic {
            Err(FrameError::Header(format!(
                "magic is {:?}, expected {:?}",
                String::from_utf8_lossy(&h[..8]),
                String::from_utf8_lossy(&magic)
            )))
        } else {
            Ok(u64::from_le_bytes(h[8..].try_into().expect("8 bytes")))
        };
        let failed = first.is_err();
        Ok((
            FrameReader {
                inner: r,
                offset: HEADER_BYTES,
                len,
                failed,
            },
            first,
        ))
    }
}

impl<R: Read> FrameReader<R> {
    /// Offset just past the last good frame read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the file.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The next frame, `None` at a clean end of file, or the fault at the current
    /// offset (after which the reader yields nothing).
    pub fn next_frame(
        &mut self,
        max_payload: usize,
    ) -> io::Result<Option<Result<Frame, FrameError>>> {
        if self.failed || self.offset == self.len {
            return Ok(None);
        }
        let remaining = self.len - self.offset;
        if remaining < FRAME_HEADER_BYTES {
            self.failed = true;
            return Ok(Some(Err(FrameError::Truncated {
                needed: FRAME_HEADER_BYTES,
                available: remaining,
            })));
        }
        let mut fh = [0u8; 8];
        self.inner.read_exact(&mut fh)?;
        let h = match FrameHeader::parse(fh, max_payload) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Ok(Some(Err(e)));
            }
        };
        let needed = h.frame_len();
        if remaining < needed {
            self.failed = true;
            return Ok(Some(Err(FrameError::Truncated {
                needed,
                available: remaining,
            })));
        }
        let mut payload = vec![0u8; h.len];
        self.inner.read_exact(&mut payload)?;
        if let Err(e) = h.check(&payload) {
            self.failed = true;
            return Ok(Some(Err(e)));
        }
        let frame = Frame {
            offset: self.offset,
            payload,
        };
        self.offset += needed;
        Ok(Some(Ok(frame)))
    }
}

/// The offset of the first valid frame in `bytes` at or after `from`: a length in
/// range, the payload within `bytes`, its CRC-32C right, and `looks_right(payload)`.
///
/// Recovery asks this after a bad frame: a torn write is only ever the end of a file,
/// so a valid frame after a bad one means the bad one is damage to something that
/// was written whole, never a tear to cut.
pub fn find_valid_frame(
    bytes: &[u8],
    from: usize,
    max_payload: usize,
    looks_right: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    let mut at = from;
    while at < bytes.len().saturating_sub(FRAME_HEADER_BYTES as usize) {
        if let Ok((payload, _)) = decode_frame(&bytes[at..], max_payload)
            && looks_right(payload)
        {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Whether a payload starts as every entry does (`{"event":`, keys in JCS order).
pub fn looks_like_entry(payload: &[u8]) -> bool {
    payload.starts_with(b"{\"event\":")
}

/// [`find_valid_frame`] over the file at `path`, after the bad frame at `offset`:
/// the offset of the next valid frame, if any.
pub fn valid_frame_after(
    path: &Path,
    offset: u64,
    max_payload: usize,
    looks_right: impl Fn(&[u8]) -> bool,
) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut bytes = vec![0u8; len.saturating_sub(offset) as usize];
    f.read_exact_at(&mut bytes, offset)?;
    Ok(find_valid_frame(&bytes, 1, max_payload, looks_right).map(|at| offset + at as u64))
}

/// Whether a payload looks like a signed note: text, a blank line, a signature line.
pub fn looks_like_note(payload: &[u8]) -> bool {
    std::str::from_utf8(payload).is_ok_and(|t| t.contains("\n\n\u{2014} "))
}

/// Largest signed note a `checkpoints.log` frame may hold.
pub const NOTE_BYTES_MAX: usize = 64 * 1024;

/// Largest payload a segment frame may hold.
pub const SEGMENT_PAYLOAD_MAX: usize = limits::ENTRY_BYTES_MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn one_decoder_judges_every_frame() {
        let mut b = Vec::new();
        encode_frame(&mut b, b"{\"event\":1}");
        let whole = b.len();
        encode_frame(&mut b, b"second");
        let (p, n) = decode_frame(&b, 64).unwrap();
        assert_eq!((p, n), (&b"{\"event\":1}"[..], whole));
        assert_eq!(decode_frame(&b[n..], 64).unwrap().0, b"second");
        // Every cut inside a frame is a truncation that says how much it needs.
        for cut in 0..whole {
            let needed = if cut < 8 { 8 } else { whole as u64 };
            assert_eq!(
                decode_frame(&b[..cut], 64),
                Err(FrameError::Truncated {
                    needed,
                    available: cut as u64
                }),
                "{cut}"
            );
        }
        assert_eq!(decode_frame(&b, 4), Err(FrameError::BadLength(11)));
        let mut zero = b.clone();
        zero[..4].copy_from_slice(&[0; 4]);
        assert_eq!(decode_frame(&zero, 64), Err(FrameError::BadLength(0)));
        let mut flipped = b.clone();
        flipped[9] ^= 1;
        assert!(matches!(
            decode_frame(&flipped, 64),
            Err(FrameError::Crc { .. })
        ));
    }

    #[test]
    fn frames_round_trip_and_tears_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(segment_name(0));
        let mut buf = header(SEGMENT_MAGIC, 0).to_vec();
        encode_frame(&mut buf, b"one");
        encode_frame(&mut buf, b"two");
        let good = buf.len();
        encode_frame(&mut buf, b"three");
        buf.truncate(buf.len() - 2);
        std::fs::File::create(&p).unwrap().write_all(&buf).unwrap();
        let (mut r, first) = FrameReader::open(&p, SEGMENT_MAGIC).unwrap();
        assert_eq!(first, Ok(0));
        assert_eq!(r.next_frame(100).unwrap().unwrap().unwrap().payload, b"one");
        assert_eq!(r.next_frame(100).unwrap().unwrap().unwrap().payload, b"two");
        assert!(matches!(
            r.next_frame(100).unwrap(),
            Some(Err(FrameError::Truncated { .. }))
        ));
        assert_eq!(r.offset(), good as u64);
        assert!(r.next_frame(100).unwrap().is_none());
        assert_eq!(list_segments(dir.path()).unwrap(), vec![(0, p)]);
    }
}
