//! The frame decoders of segment files and `checkpoints.log`: `FrameReader` over
//! arbitrary file contents, `find_valid_frame` and `valid_frame_after`, and
//! `encode_frame` → `FrameReader` round trips.
//!
//! Input: one byte of options, two of a position, then the file (after a valid header unless the options
//! say to use the bytes as they are). Properties, beyond "never panics":
//! - frames come back in order, each at the offset the reader stood at, each wholly
//!   inside the file, with a length in range and its CRC-32C right, the payload being
//!   the file's bytes there; the reader's offset only grows and stays within the file;
//! - a fault is the truth about the bytes at the offset (truncation, bad length, CRC),
//!   and after a fault or a clean end the reader yields nothing more;
//! - re-encoding the frames read gives back the file up to the reader's offset;
//! - `find_valid_frame` returns the first offset at or after `from` where a valid
//!   frame starts (checked by brute force), and finds each frame the reader read;
//!   `valid_frame_after` is `find_valid_frame` over the file's tail;
//! - payloads cut from the input, framed by `encode_frame`, read back identically.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use ledger_core::segment::{
    CHECKPOINTS_MAGIC, FRAME_HEADER_BYTES, FrameError, FrameReader, HEADER_BYTES, NOTE_BYTES_MAX,
    SEGMENT_MAGIC, SEGMENT_PAYLOAD_MAX, encode_frame, find_valid_frame, header, looks_like_entry,
    looks_like_note, valid_frame_after,
};
use libfuzzer_sys::fuzz_target;

/// One scratch file per process (libFuzzer runs inputs one at a time), in
/// `$LEDGER_FUZZ_SCRATCH` (`scripts/fuzz` makes one and removes it), else in memory.
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if let Some(d) = std::env::var_os("LEDGER_FUZZ_SCRATCH") {
            PathBuf::from(d)
        } else if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("ledger-fuzz-frames-{}", std::process::id()))
    })
}

fn write_file(bytes: &[u8]) -> &'static PathBuf {
    let p = scratch();
    let mut f = std::fs::File::create(p).expect("scratch file");
    f.write_all(bytes).expect("write scratch file");
    p
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// What `find_valid_frame` asks of a payload.
type Looks = dyn Fn(&[u8]) -> bool;

/// Whether a valid frame starts at `at` (the definition, written out).
fn valid_at(b: &[u8], at: usize, max: usize, looks: &Looks) -> bool {
    let hdr = FRAME_HEADER_BYTES as usize;
    if at + hdr > b.len() {
        return false;
    }
    let len = le32(b, at) as usize;
    len > 0
        && len <= max
        && at + hdr + len <= b.len()
        && looks(&b[at + hdr..at + hdr + len])
        && crc32c::crc32c(&b[at + hdr..at + hdr + len]) == le32(b, at + 4)
}

fuzz_target!(|data: &[u8]| {
    let [opts, p0, p1, rest @ ..] = data else {
        return;
    };
    let opts = *opts;
    let pos = usize::from(u16::from_le_bytes([*p0, *p1]));
    let magic = if opts & 1 == 0 {
        SEGMENT_MAGIC
    } else {
        CHECKPOINTS_MAGIC
    };
    let max = match (opts >> 2) & 3 {
        0 => SEGMENT_PAYLOAD_MAX,
        1 => NOTE_BYTES_MAX,
        2 => 64,
        _ => 1 + (opts as usize >> 4),
    };
    let file: Vec<u8> = if opts & 2 == 0 {
        let mut f = header(magic, u64::from(opts)).to_vec();
        f.extend_from_slice(rest);
        f
    } else {
        rest.to_vec()
    };

    let frames = read_all(&file, magic, max);

    // find_valid_frame: brute force over the same bytes.
    let looks: [&Looks; 3] = [&|_| true, &looks_like_entry, &looks_like_note];
    let which = (opts as usize >> 6) % 3;
    let from = pos % (file.len() + 2);
    let found = find_valid_frame(&file, from, max, looks[which]);
    let expected = (from..file.len()).find(|&at| valid_at(&file, at, max, looks[which]));
    assert_eq!(found, expected, "find_valid_frame from {from}");
    for (off, _) in &frames {
        let off = *off as usize;
        assert_eq!(find_valid_frame(&file, off, max, |_| true), Some(off));
    }

    // valid_frame_after is find_valid_frame over the tail, from its second byte.
    let after = (pos as u64).wrapping_mul(7) % (file.len() as u64 + 2);
    let p = write_file(&file);
    let tail = file.get(after as usize..).unwrap_or(&[]);
    let want = find_valid_frame(tail, 1, max, looks[which]).map(|at| after + at as u64);
    let got = valid_frame_after(p, after, max, looks[which]).expect("read scratch file");
    assert_eq!(got, want, "valid_frame_after at {after}");

    // encode_frame → FrameReader: payloads cut from the input at its own bytes.
    let mut payloads: Vec<&[u8]> = Vec::new();
    let mut cur = rest;
    while let Some((&n, tail)) = cur.split_first() {
        let n = (n as usize % 97 + 1).min(tail.len());
        if n == 0 {
            break;
        }
        payloads.push(&tail[..n]);
        cur = &tail[n..];
    }
    let mut built = header(magic, 7).to_vec();
    for pl in &payloads {
        encode_frame(&mut built, pl);
    }
    let back = read_all(&built, magic, SEGMENT_PAYLOAD_MAX);
    assert_eq!(
        back.len(),
        payloads.len(),
        "encoded frames did not all read back"
    );
    for ((_, got), want) in back.iter().zip(&payloads) {
        assert_eq!(got.as_slice(), *want);
    }
});

/// Reads every frame of `file` and checks each step; returns (offset, payload).
fn read_all(file: &[u8], magic: [u8; 8], max: usize) -> Vec<(u64, Vec<u8>)> {
    let p = write_file(file);
    let len = file.len() as u64;
    let (mut r, first) = FrameReader::open(p, magic).expect("open scratch file");
    assert_eq!(r.file_len(), len);
    match &first {
        Ok(seq) => {
            assert!(len >= HEADER_BYTES && file[..8] == magic);
            assert_eq!(*seq, u64::from_le_bytes(file[8..16].try_into().unwrap()));
            assert_eq!(r.offset(), HEADER_BYTES);
        }
        Err(FrameError::Header(_)) => {
            assert!(len < HEADER_BYTES || file[..8] != magic);
            assert!(
                r.next_frame(max).expect("read").is_none(),
                "frames after a bad header"
            );
            return Vec::new();
        }
        Err(e) => panic!("open gave {e:?}"),
    }
    let mut out = Vec::new();
    let mut reencoded = file[..HEADER_BYTES as usize].to_vec();
    loop {
        let at = r.offset();
        assert!(at <= len);
        match r.next_frame(max).expect("read") {
            None => {
                assert_eq!(at, len, "clean end before the end of the file");
                break;
            }
            Some(Ok(frame)) => {
                assert_eq!(frame.offset, at);
                let n = frame.payload.len() as u64;
                assert!(n > 0 && n as usize <= max);
                let end = at + FRAME_HEADER_BYTES + n;
                assert!(end <= len);
                assert_eq!(r.offset(), end, "offset after a frame");
                let a = at as usize;
                assert_eq!(u64::from(le32(file, a)), n);
                assert_eq!(le32(file, a + 4), crc32c::crc32c(&frame.payload));
                assert_eq!(&file[a + 8..end as usize], frame.payload.as_slice());
                encode_frame(&mut reencoded, &frame.payload);
                out.push((frame.offset, frame.payload));
            }
            Some(Err(e)) => {
                assert_eq!(r.offset(), at, "a fault moved the offset");
                let a = at as usize;
                let remaining = len - at;
                match e {
                    FrameError::Truncated { needed, available } => {
                        assert_eq!(available, remaining);
                        assert!(needed > available);
                    }
                    FrameError::BadLength(n) => {
                        assert_eq!(n, le32(file, a));
                        assert!(n == 0 || n as usize > max);
                    }
                    FrameError::Crc { expected, actual } => {
                        assert_eq!(expected, le32(file, a + 4));
                        let n = le32(file, a) as usize;
                        assert_eq!(actual, crc32c::crc32c(&file[a + 8..a + 8 + n]));
                        assert_ne!(expected, actual);
                    }
                    other => panic!("unexpected fault {other:?}"),
                }
                assert!(
                    r.next_frame(max).expect("read").is_none(),
                    "frames after a fault"
                );
                break;
            }
        }
    }
    assert_eq!(reencoded.as_slice(), &file[..r.offset() as usize]);
    out
}
