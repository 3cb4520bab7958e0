//! `ledger append`: check the whole input, then append it in batches.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use ledger_core::{Event, Store, entry};

use crate::{InputError, output};

/// Events per append call: large enough that the writer batches well.
const CHUNK_EVENTS: usize = 4096;
/// Bad lines reported before the rest are only counted.
const BAD_LINES_SHOWN: usize = 20;

/// The input, readable twice: a file is opened again; stdin is first spooled to a
/// temporary file, so memory stays flat in the input's size.
struct Input {
    path: std::path::PathBuf,
    _spool: Option<tempfile::NamedTempFile>,
}

impl Input {
    fn reader(&self) -> Result<Box<dyn BufRead + '_>> {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(&self.path).with_context(|| format!("open {}", self.path.display()))?,
        )))
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Longest line read into memory: whitespace may make an event's line larger than
/// its canonical form, but not by more than `Event::from_json` accepts.
const LINE_BYTES_MAX: usize = 4 * ledger_core::limits::EVENT_BYTES_MAX;

/// One line of the input, or how long it was when it is too long to hold.
enum Line<'a> {
    Text(&'a [u8]),
    TooLong(u64),
}

/// Reads one line into `buf` (cleared first), but never more than `max` bytes of it:
/// the rest of a longer line is skipped. Returns the bytes consumed (0 at the end)
/// and whether the line was too long.
fn read_line_bounded(
    r: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(u64, bool)> {
    buf.clear();
    let (mut raw, mut too_long) = (0u64, false);
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok((raw, too_long));
        }
        let (n, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + n > max + 2 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        r.consume(n);
        raw += n as u64;
        if done {
            return Ok((raw, too_long));
        }
    }
}

/// Calls `f(line number, line, bytes consumed)` for every non-blank line.
fn for_each_line(input: &Input, mut f: impl FnMut(u64, Line<'_>, u64) -> Result<()>) -> Result<()> {
    let mut r = input.reader()?;
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        let (read, too_long) =
            read_line_bounded(&mut *r, &mut buf, LINE_BYTES_MAX).context("read the input")?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if too_long {
            f(n, Line::TooLong(read), read)?;
            continue;
        }
        let line = buf.trim_ascii();
        if !line.is_empty() {
            f(n, Line::Text(line), read)?;
        }
    }
}

pub(crate) fn run(dir: &Path, file: &Path, event_format: Option<u8>, _json: bool) -> Result<u8> {
    let input = if file == Path::new("-") {
        let mut spool =
            tempfile::NamedTempFile::new().context("make a temporary file for stdin")?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool).context("read standard input")?;
        Input {
            path: spool.path().to_path_buf(),
            _spool: Some(spool),
        }
    } else {
        if !file.exists() {
            return Err(InputError(format!("{}: no such file", file.display())).into());
        }
        Input {
            path: file.to_path_buf(),
            _spool: None,
        }
    };
    let store = crate::open(dir)?;
    let ledger_format = u8::try_from(store.info().format).unwrap_or(u8::MAX);
    let format = event_format.unwrap_or(ledger_format);
    if u64::from(format) > store.info().format {
        return Err(InputError(format!(
            "--event-format {format}: this ledger holds format {} entries (`ledger upgrade` moves it \
             to format {})",
            store.info().format,
            ledger_core::event::FORMAT_LATEST
        ))
        .into());
    }
    let name = if file == Path::new("-") {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };

    // Pass 1: check every line, and every id against the store and the rest of the
    // input, so that a bad line stops the whole input before anything is appended.
    let bar = output::progress_bytes("checking");
    bar.0.set_length(input.len());
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    let mut seen: HashMap<String, (u64, [u8; 32])> = HashMap::new();
    let mut events = 0u64;
    for_each_line(&input, |n, line, raw| {
        bar.0.inc(raw);
        let line = match line {
            Line::Text(l) => l,
            Line::TooLong(len) => {
                bad_count += 1;
                if bad.len() < BAD_LINES_SHOWN {
                    bad.push(format!(
                        "{name} line {n}: the line is {len} bytes; an event may be at most {} bytes \
                         (canonical), so it was not read",
                        ledger_core::limits::EVENT_BYTES_MAX
                    ));
                }
                return Ok(());
            }
        };
        let problem = match Event::from_json_as(line, format).and_then(|ev| {
            // A format-2 event passed these rules (and more) to be valid at all.
            if ev.format() < 2 {
                ledger_core::admission::check(&ev)?;
            }
            Ok(ev)
        }) {
            // On an older ledger, say what would make a newer event go in.
            Err(e)
                if format < ledger_core::event::FORMAT_LATEST
                    && Event::from_json_as(line, ledger_core::event::FORMAT_LATEST).is_ok() =>
            {
                Some(format!(
                    "{e} (it is a valid format-{} event, but this ledger holds format {format}: \
                     run `ledger upgrade` first)",
                    ledger_core::event::FORMAT_LATEST
                ))
            }
            Err(e) => Some(e.to_string()),
            Ok(ev) => {
                events += 1;
                let digest = *blake3::hash(ev.canonical_bytes()).as_bytes();
                match seen.get(ev.id_key()) {
                    Some((first, d)) if *d != digest => Some(format!(
                        "event id {:?} appears on line {first} with different content",
                        ev.id()
                    )),
                    Some(_) => None,
                    None => {
                        seen.insert(ev.id_key().to_string(), (n, digest));
                        conflict_with_store(&store, &ev)?
                    }
                }
            }
        };
        if let Some(p) = problem {
            bad_count += 1;
            if bad.len() < BAD_LINES_SHOWN {
                bad.push(format!("{name} line {n}: {p}"));
            }
        }
        Ok(())
    })?;
    bar.0.finish_and_clear();
    drop(seen);
    if bad_count > 0 {
        for b in &bad {
            eprintln!("{b}");
        }
        if bad_count > bad.len() {
            eprintln!("… and {} more bad lines", bad_count - bad.len());
        }
        return Err(InputError(format!(
            "{bad_count} of {} lines in {name} were rejected; nothing was appended",
            events as usize + bad_count
        ))
        .into());
    }

    // Pass 2: append in chunks; print receipts as they come.
    let bar = output::progress_bytes("appending");
    bar.0.set_length(input.len());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut chunk: Vec<(u64, Event)> = Vec::with_capacity(CHUNK_EVENTS);
    let (mut appended, mut duplicates) = (0u64, 0u64);
    let mut flush = |chunk: &mut Vec<(u64, Event)>, out: &mut dyn Write| -> Result<()> {
        let lines: Vec<u64> = chunk.iter().map(|(n, _)| *n).collect();
        let evs: Vec<Event> = chunk.drain(..).map(|(_, e)| e).collect();
        let ids: Vec<String> = evs.iter().map(|e| e.id().to_string()).collect();
        let receipts = store.append(evs)?;
        for ((line, id), r) in lines.iter().zip(&ids).zip(&receipts) {
            if r.duplicate {
                duplicates += 1;
            } else {
                appended += 1;
            }
            let v = serde_json::json!({
                "line": line, "id": id, "seq": r.seq, "hash": hex::encode(r.hash), "duplicate": r.duplicate
            });
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    for_each_line(&input, |n, line, raw| {
        bar.0.inc(raw);
        let Line::Text(line) = line else {
            return Err(InputError(format!(
                "{name} line {n} changed while appending: it is too long"
            ))
            .into());
        };
        let ev = Event::from_json_as(line, format)
            .map_err(|e| InputError(format!("{name} line {n} changed while appending: {e}")))?;
        chunk.push((n, ev));
        if chunk.len() >= CHUNK_EVENTS {
            flush(&mut chunk, &mut out)?;
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        flush(&mut chunk, &mut out)?;
    }
    out.flush()?;
    bar.0.finish_and_clear();
    eprintln!(
        "appended {appended} events ({duplicates} already recorded) from {name}; the log now holds {} entries",
        store.size()
    );
    Ok(0)
}

/// Whether the event's id is recorded with other content.
fn conflict_with_store(store: &dyn ledger_core::Store, ev: &Event) -> Result<Option<String>> {
    let Some(seq) = store.event_seq(ev.id_key())? else {
        return Ok(None);
    };
    let bytes = store.entry(seq)?;
    let p = entry::parse_entry(&bytes).with_context(|| format!("entry {seq} is unreadable"))?;
    if p.event.as_bytes() == ev.canonical_bytes() && p.v == ev.format() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "event id {:?} is already recorded at seq {seq} with different content",
            ev.id()
        )))
    }
}
