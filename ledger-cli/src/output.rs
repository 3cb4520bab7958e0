//! How results are printed: tables for people, JSON for scripts, progress bars only
//! on a terminal.

use std::io::Write;

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use ledger_core::Store;
use ledger_core::verify::{Progress, VerifyReport};
use serde_json::{Value, json};

pub(crate) fn json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
pub(crate) struct Bar(pub ProgressBar);

impl Bar {
    /// At `at` of `of` (a copy reporting where it is).
    pub(crate) fn advance_to(&self, at: u64, of: u64) {
        self.0.set_length(of);
        self.0.set_position(at);
    }
}

impl Progress for Bar {
    fn total(&self, n: u64) {
        self.0.set_length(n);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub(crate) fn progress_bytes(what: &str) -> Bar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:10} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    b.set_message(what.to_string());
    Bar(b)
}

pub(crate) fn progress_count(what: &str) -> Bar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:10} {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    b.set_message(what.to_string());
    Bar(b)
}

/// One line of detail for an event, by type.
fn detail(ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match ev.get("type").and_then(Value::as_str).unwrap_or("") {
        "sent" => format!(
            "{} → {} via {} ({})",
            s("from"),
            s("to"),
            s("channel"),
            s("category")
        ),
        "handed_off" => format!("{} → {}", s("from_system"), s("to_system")),
        "received" => format!("by {}", s("system")),
        "opened" => format!("by role {}", s("by_role")),
        "deleted" => s("reason"),
        "failed" => s("error"),
        "resent" => format!("as {} via {}", s("new_message"), s("channel")),
        "resolved" => s("outcome"),
        // What a channel says of the message: Altinn's "never read" is the fact.
        "notice" => match ev.get("system").and_then(Value::as_str) {
            Some(system) => format!("{}: {} (from {system})", s("notice"), s("status")),
            None => format!("{}: {}", s("notice"), s("status")),
        },
        _ => String::new(),
    }
}

pub(crate) use ledger_core::questions::HistoryEntry as HistoryRow;

pub(crate) fn history_table(rows: &[HistoryRow]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "seq",
        "recorded at",
        "type",
        "at (reported)",
        "reporter",
        "detail",
    ]);
    for r in rows {
        let ev = &r.event;
        let g = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let rep = &ev["reporter"];
        let reporter = format!(
            "{}/{}",
            rep.get("org").and_then(Value::as_str).unwrap_or(""),
            rep.get("system").and_then(Value::as_str).unwrap_or("")
        );
        t.add_row([
            r.seq.to_string(),
            r.recorded_at.clone(),
            g("type"),
            g("at"),
            reporter,
            detail(ev),
        ]);
    }
    t
}

pub(crate) fn history(
    store: &dyn Store,
    name: &str,
    when: &crate::questions::When,
    as_json: bool,
) -> Result<()> {
    // An id no event names is an error, as in `status` and over `--server`: a
    // script tells "no such message" from "nothing yet by --as-of" by the exit code.
    let key = crate::questions::resolve_message(store, name)?;
    let timing = when.timing()?;
    let message = ledger_core::event::split_message_key(&key).1;
    let rows = ledger_core::questions::history_of(store, &key, &timing)
        .map_err(crate::questions::input_error)?;
    if as_json {
        return json(&json!({
            "message": message,
            "as_of": timing.as_of,
            "known_at": timing.known_at,
            "entries": rows,
        }));
    }
    if rows.is_empty() {
        eprintln!("no event of message {message:?} is within the time asked");
        return Ok(());
    }
    println!("{}", history_table(&rows));
    Ok(())
}

pub(crate) fn verify_report(r: &VerifyReport, as_json: bool) -> Result<()> {
    if as_json {
        let faults: Vec<Value> = r
            .faults
            .iter()
            .map(|f| json!({"seq": f.seq, "place": f.place, "what": f.what}))
            .collect();
        return json(&json!({
            "ok": r.ok(), "origin": r.origin, "hash": r.hash.map(|h| h.name()), "entries": r.entries,
            "root": hex::encode(r.root), "root_line": ledger_core::checkpoint::root_line(&r.root), "checkpoints_checked": r.checkpoints_checked,
            "latest_checkpoint": r.latest_checkpoint, "consistent_with_trusted": r.consistent_with_trusted,
            "faults": faults, "faults_not_shown": r.faults_not_kept, "warnings": r.warnings
        }));
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if r.ok() {
        println!(
            "OK: {} entries, chain intact, {} signed checkpoints verified{}",
            r.entries,
            r.checkpoints_checked,
            r.consistent_with_trusted
                .map(|s| format!(", consistent with the trusted checkpoint at size {s}"))
                .unwrap_or_default()
        );
        // Written as a checkpoint writes it, so the two compare by eye.
        println!(
            "root at size {}: {}  (as the third line of a checkpoint of that size)",
            r.entries,
            ledger_core::checkpoint::root_line(&r.root),
        );
        return Ok(());
    }
    let first = r.first_fault().expect("not ok means a fault");
    match first.seq {
        Some(s) => println!("FAILED at seq {s} ({}): {}", first.place, first.what),
        None => println!("FAILED ({}): {}", first.place, first.what),
    }
    for f in r.faults.iter().skip(1) {
        let seq = f.seq.map(|s| format!("seq {s} ")).unwrap_or_default();
        println!("  also: {seq}({}): {}", f.place, f.what);
    }
    if r.faults_not_kept > 0 {
        println!("  … and {} more faults", r.faults_not_kept);
    }
    println!(
        "{} faults in {} entries",
        r.faults.len() as u64 + r.faults_not_kept,
        r.entries
    );
    Ok(())
}
