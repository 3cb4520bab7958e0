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

/// Lines read and parsed together, on every core.
const BATCH_LINES: usize = 8192;

/// One non-blank line of a batch: its number, where its text is in the batch's
/// buffer (`None`: too long to hold), and the bytes it took in the input.
struct Span {
    n: u64,
    text: Option<std::ops::Range<usize>>,
    read: u64,
}

/// Calls `f(line number, line, its parse, bytes consumed)` for every non-blank line,
/// in order; lines are parsed (`parse`) a batch at a time on every core.
fn for_each_parsed<T: Send>(
    input: &Input,
    parse: impl Fn(&[u8]) -> T + Sync,
    mut f: impl FnMut(u64, Line<'_>, Option<T>, u64) -> Result<()>,
) -> Result<()> {
    let mut r = input.reader()?;
    let mut buf = Vec::with_capacity(4096);
    let mut text: Vec<u8> = Vec::new();
    let mut spans: Vec<Span> = Vec::with_capacity(BATCH_LINES);
    let mut n = 0u64;
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    loop {
        let (read, too_long) =
            read_line_bounded(&mut *r, &mut buf, LINE_BYTES_MAX).context("read the input")?;
        if read > 0 {
            n += 1;
            if too_long {
                spans.push(Span {
                    n,
                    text: None,
                    read,
                });
            } else {
                let line = buf.trim_ascii();
                if !line.is_empty() {
                    let start = text.len();
                    text.extend_from_slice(line);
                    spans.push(Span {
                        n,
                        text: Some(start..text.len()),
                        read,
                    });
                }
            }
        }
        if spans.len() >= BATCH_LINES || (read == 0 && !spans.is_empty()) {
            let per_thread = spans.len().div_ceil(threads);
            let parsed: Vec<Option<T>> = std::thread::scope(|scope| {
                let workers: Vec<_> = spans
                    .chunks(per_thread)
                    .map(|chunk| {
                        let (text, parse) = (&text, &parse);
                        scope.spawn(move || {
                            chunk
                                .iter()
                                .map(|s| s.text.clone().map(|t| parse(&text[t])))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().expect("a parsing thread panicked"))
                    .collect()
            });
            for (s, p) in spans.drain(..).zip(parsed) {
                let line = match &s.text {
                    Some(t) => Line::Text(&text[t.clone()]),
                    None => Line::TooLong(s.read),
                };
                f(s.n, line, p, s.read)?;
            }
            text.clear();
        }
        if read == 0 {
            return Ok(());
        }
    }
}

/// A receipt line on standard output (fields in the order JSON objects print in).
#[derive(serde::Serialize)]
struct ReceiptLine<'a> {
    duplicate: bool,
    hash: String,
    id: &'a str,
    line: u64,
    seq: u64,
}

/// What one append call answers, with the input lines it came from.
type Answer = (
    Vec<(u64, String)>,
    Result<Vec<ledger_core::Receipt>, ledger_core::StoreError>,
);

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
    let ledger_format = store.info().event_format();
    let format = event_format.unwrap_or(ledger_format);
    if format > ledger_format {
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
    // Nothing recorded yet: no id can be recorded with other content.
    let store_is_empty = store.size() == 0;
    let parse = |line: &[u8]| {
        Event::from_json_as(line, format).and_then(|ev| {
            // A format-2 event passed these rules (and more) to be valid at all.
            if ev.format() < 2 {
                ledger_core::admission::check(&ev)?;
            }
            Ok(ev)
        })
    };
    for_each_parsed(&input, parse, |n, line, parsed, raw| {
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
        let problem = match parsed.expect("a line that is held is parsed") {
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
                        if store_is_empty {
                            None
                        } else {
                            conflict_with_store(&store, &ev)?
                        }
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
    let (mut appended, mut duplicates) = (0u64, 0u64);
    // Two chunks in flight: the next is parsed while the writer makes the last
    // durable; receipts are printed in order as they come back. After a failed
    // chunk nothing more is sent, but the receipts of chunks already sent and
    // recorded are still printed: every recorded event gets its receipt.
    let (answers, answered) = std::sync::mpsc::channel::<Answer>();
    let mut in_flight = 0usize;
    let mut failed: Option<anyhow::Error> = None;
    let mut print =
        |answer: Answer, out: &mut dyn Write, failed: &mut Option<anyhow::Error>| -> Result<()> {
            let (lines, receipts) = answer;
            let receipts = match receipts {
                Ok(r) => r,
                Err(e) => {
                    failed.get_or_insert(e.into());
                    return Ok(());
                }
            };
            for ((line, id), r) in lines.iter().zip(&receipts) {
                if r.duplicate {
                    duplicates += 1;
                } else {
                    appended += 1;
                }
                let receipt = ReceiptLine {
                    duplicate: r.duplicate,
                    hash: hex::encode(r.hash),
                    id,
                    line: *line,
                    seq: r.seq,
                };
                serde_json::to_writer(&mut *out, &receipt)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        };
    let mut chunk: Vec<(u64, Event)> = Vec::with_capacity(CHUNK_EVENTS);
    let submit = |chunk: &mut Vec<(u64, Event)>| {
        let lines: Vec<(u64, String)> = chunk
            .iter()
            .map(|(n, e)| (*n, e.id().to_string()))
            .collect();
        let evs: Vec<Event> = chunk.drain(..).map(|(_, e)| e).collect();
        let answers = answers.clone();
        store.append_then(
            evs,
            Box::new(move |r| {
                // The receiver waits for every chunk it sent.
                let _ = answers.send((lines, r));
            }),
        );
    };
    let parse = |line: &[u8]| Event::from_json_as(line, format);
    let read = for_each_parsed(&input, parse, |n, line, parsed, raw| {
        bar.0.inc(raw);
        let Line::Text(_) = line else {
            return Err(InputError(format!(
                "{name} line {n} changed while appending: it is too long"
            ))
            .into());
        };
        let ev = parsed
            .expect("a line that is held is parsed")
            .map_err(|e| InputError(format!("{name} line {n} changed while appending: {e}")))?;
        chunk.push((n, ev));
        if chunk.len() >= CHUNK_EVENTS {
            if in_flight == 2 {
                print(
                    answered.recv().expect("the writer answers"),
                    &mut out,
                    &mut failed,
                )?;
                in_flight -= 1;
            }
            if failed.is_some() {
                return Err(anyhow::anyhow!("an append failed"));
            }
            submit(&mut chunk);
            in_flight += 1;
        }
        Ok(())
    });
    if read.is_ok() && failed.is_none() && !chunk.is_empty() {
        submit(&mut chunk);
        in_flight += 1;
    }
    for _ in 0..in_flight {
        print(
            answered.recv().expect("the writer answers"),
            &mut out,
            &mut failed,
        )?;
    }
    out.flush()?;
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
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
