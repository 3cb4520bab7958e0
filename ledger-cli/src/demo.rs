//! `ledger demo`: the 2018–2023 incident, simulated in a fresh store, and what the
//! ledger finds in it, checked against the scenario's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use ledger_core::projection::{self, Evaluator, Filter, Instant, Policy, Verdict};
use ledger_core::reconcile;
use ledger_core::{Event, FileStore, HashAlg, InitOptions, Store};
use serde_json::json;

use crate::{EXIT_FAULTS, InputError, output};

const BATCH: usize = 10_000;

/// Differences between what the ledger found and the scenario's truth.
#[derive(Default)]
struct Mismatch {
    lines: Vec<String>,
}

impl Mismatch {
    fn add(&mut self, s: String) {
        self.lines.push(s);
    }
}

pub(crate) fn run(dir: &Path, seed: u64, messages: usize, as_json: bool) -> Result<u8> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(anyhow!(InputError(format!(
            "{} is not empty; the demo builds a fresh ledger (choose another --dir)",
            dir.display()
        ))));
    }
    let origin = format!("ledger.example/demo-{seed}");
    FileStore::init(
        dir,
        &InitOptions {
            origin: origin.clone(),
            hash: HashAlg::Blake3,
        },
    )
    .with_context(|| format!("cannot create a ledger at {}", dir.display()))?;

    eprintln!("generating the scenario: seed {seed}, {messages} messages …");
    let scenario = ledger_demo::generate(&ledger_demo::Options { seed, messages });
    let truth = scenario.truth();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("write {name}"))
    };
    {
        let path = dir.join("events.jsonl");
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?,
        );
        scenario.write_events(&mut f)?;
        f.flush()?;
    }
    write("truth.json", &serde_json::to_vec_pretty(truth)?)?;
    write("police-export.csv", scenario.police_export_csv().as_bytes())?;
    write("municipality.csv", scenario.municipality_csv().as_bytes())?;
    // Names for the fictitious organisation numbers, read by every question.
    write(
        ledger_core::directory::FILE_NAME,
        scenario.organisations_csv().as_bytes(),
    )?;

    let (store, _) = FileStore::open(dir)?;
    let bar = output::progress_count("appending");
    bar.0.set_length(scenario.event_count() as u64);
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<Event>| -> Result<()> {
        let n = batch.len() as u64;
        store.append(std::mem::take(batch))?;
        bar.0.inc(n);
        Ok(())
    };
    let mut failure = None;
    scenario
        .for_each_event(&mut |line| {
            match Event::from_json_as(line.as_bytes(), ledger_core::event::FORMAT_LATEST) {
                Ok(e) => batch.push(e),
                Err(e) => {
                    failure = Some(anyhow!("the generator made an invalid event: {e}: {line}"));
                    return Err(std::io::Error::other("invalid event"));
                }
            }
            if batch.len() == BATCH
                && let Err(e) = flush(&mut batch)
            {
                failure = Some(e);
                return Err(std::io::Error::other("append failed"));
            }
            Ok(())
        })
        .map_err(|e| failure.take().unwrap_or_else(|| e.into()))?;
    flush(&mut batch)?;
    bar.0.finish_and_clear();

    let facts = projection::replay(&store, store.size(), &mut |_| {})?;
    projection::save(dir, &store, &facts)?;
    let policy = Policy::default_policy();
    let now = Instant::parse(ledger_demo::T_END).expect("T_END is a time");
    let eval = Evaluator::new(&facts, &policy, now);

    let mut miss = Mismatch::default();
    let mut counts: BTreeMap<&str, u64> = Verdict::ALL.iter().map(|v| (v.name(), 0)).collect();
    for e in eval.evaluate_all() {
        *counts.entry(e.verdict.name()).or_default() += 1;
        match truth.verdicts.get(e.id()) {
            None => miss.add(format!("{}: in the ledger but not in the scenario", e.id())),
            Some(t) if t != e.verdict.name() => miss.add(format!(
                "{}: the ledger says {} ({}), the scenario says {t}",
                e.id(),
                e.verdict.name(),
                e.reason
            )),
            Some(_) => {}
        }
    }
    for id in truth.verdicts.keys() {
        if facts.find(id).is_empty() {
            miss.add(format!("{id}: in the scenario but not in the ledger"));
        }
    }
    let rows = projection::anomaly_rows(&eval, &Filter::default(), None);
    let mut found_anomalies = BTreeSet::new();
    let mut found_gaps = BTreeSet::new();
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        *by_kind.entry(r.kind.name()).or_default() += 1;
        match (&r.message, &r.org, &r.system) {
            (Some(m), _, _) => {
                let id = ledger_core::event::split_message_key(m).1;
                found_anomalies.insert((r.kind.name().to_string(), id.to_string()));
            }
            (None, Some(org), Some(system)) if r.kind.name() == "reporter_seq_gap" => {
                found_gaps.insert((org.clone(), system.clone(), r.from, r.to));
            }
            _ => miss.add(format!("unexpected anomaly {:?}", r)),
        }
    }
    let want_anomalies: BTreeSet<(String, String)> = truth
        .anomalies
        .iter()
        .map(|a| (a.kind.clone(), a.message.clone()))
        .collect();
    for a in found_anomalies.difference(&want_anomalies) {
        miss.add(format!("false alarm: {} on {}", a.0, a.1));
    }
    for a in want_anomalies.difference(&found_anomalies) {
        miss.add(format!("missed: {} on {}", a.0, a.1));
    }
    let want_gaps: BTreeSet<_> = truth
        .gaps
        .iter()
        .map(|g| (g.org.clone(), g.system.clone(), Some(g.from), Some(g.to)))
        .collect();
    if found_gaps != want_gaps {
        miss.add(format!(
            "reporter gaps differ: found {}, expected {}",
            found_gaps.len(),
            want_gaps.len()
        ));
    }

    // The 2023 list comparison, in one command.
    let sent = reconcile::parse_list("police-export.csv", scenario.police_export_csv().as_bytes())
        .map_err(|e| anyhow!("{e}"))?;
    let received =
        reconcile::parse_list("municipality.csv", scenario.municipality_csv().as_bytes())
            .map_err(|e| anyhow!("{e}"))?;
    let everything = ledger_core::projection::Filter::default();
    let view = ledger_core::questions::ReconcileView::new(
        Evaluator::new(&facts, &policy, now),
        &everything,
    );
    let diffs = reconcile::reconcile(&sent.rows, &received.rows, &view, &[]);
    let mut got: Vec<(String, String, Option<u64>, String, String)> = diffs
        .iter()
        .map(|d| {
            (
                d.class.name().to_string(),
                d.list.to_string(),
                d.line,
                // The scenario names messages by their bare ids.
                match ledger_core::event::key_from_path(&d.message) {
                    Some(k) => ledger_core::event::split_message_key(&k).1.to_string(),
                    None => d.message.clone(),
                },
                d.r#ref.clone(),
            )
        })
        .collect();
    let mut want: Vec<(String, String, Option<u64>, String, String)> = truth
        .reconcile
        .iter()
        .map(|r| {
            (
                r.class.clone(),
                r.list.clone(),
                r.line,
                r.message.clone(),
                r.r#ref.clone(),
            )
        })
        .collect();
    // Ledger rows are ordered by the name the ledger shows (FROM/TO/ID), the
    // scenario's by bare id: compare as sets of rows.
    got.sort();
    want.sort();
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("; first difference: found {a:?}, expected {b:?}"))
            .unwrap_or_default();
        miss.add(format!(
            "reconcile rows differ: found {}, expected {}{first}",
            got.len(),
            want.len()
        ));
    }
    let summary = reconcile::summary(&diffs);
    let digests = projection::evaluation_digest(&eval, &policy, store.info().hash);

    if as_json {
        output::json(&json!({
            "dir": dir,
            "seed": seed,
            "messages": facts.message_count(),
            "entries": store.size(),
            "now": now,
            "verdicts": counts,
            "anomalies": by_kind,
            "reconcile": summary.iter().map(|(c, n)| (c.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "facts_digest": hex::encode(digests.facts),
            "projection_digest": hex::encode(digests.evaluation),
            "matches_truth": miss.lines.is_empty(),
            "differences": miss.lines,
        }))?;
    } else {
        let d = dir.display();
        println!(
            "The incident, simulated: {} messages in {} entries, {} police districts, 356 municipalities, 2018-07 to 2023-06.",
            facts.message_count(),
            store.size(),
            12
        );
        println!(
            "Judged at {} under the default policy:\n",
            ledger_demo::T_END
        );
        for v in Verdict::ALL {
            println!("  {:<17} {:>7}", v.name(), counts[v.name()]);
        }
        println!("\nAnomalies the ledger raised:");
        for (k, n) in &by_kind {
            println!("  {k:<27} {n:>7}");
        }
        println!(
            "\nReconciling the police export with the municipalities' list: {}",
            summary
                .iter()
                .map(|(c, n)| format!("{n} {}", c.name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("\nprojection digest {}", hex::encode(digests.evaluation));
        if miss.lines.is_empty() {
            println!(
                "\nGround truth ({d}/truth.json): every lost, late, stuck and at-risk message found, no false alarm."
            );
        } else {
            println!(
                "\nGROUND TRUTH MISMATCH ({} differences):",
                miss.lines.len()
            );
            for l in miss.lines.iter().take(20) {
                println!("  {l}");
            }
        }
        println!("\nAsk it yourself:");
        println!(
            "  ledger --dir {d} report lost --now {}",
            ledger_demo::T_END
        );
        println!(
            "  ledger --dir {d} report stuck --now {} --format csv",
            ledger_demo::T_END
        );
        println!(
            "  ledger --dir {d} stats --by month --now {}",
            ledger_demo::T_END
        );
        println!(
            "  ledger --dir {d} reconcile --sent {d}/police-export.csv --received {d}/municipality.csv --now {}",
            ledger_demo::T_END
        );
        println!("  ledger --dir {d} verify");
    }
    Ok(if miss.lines.is_empty() {
        0
    } else {
        EXIT_FAULTS
    })
}
