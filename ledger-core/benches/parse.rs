//! `Event::from_json`: strict validation and canonical bytes, on one core.
//!
//! `cargo bench -p ledger-core --bench parse` parses two sets of JSON lines, each
//! several times on one thread, and prints the best and the median round:
//! - the store bench's format-1 mix (`BENCH_PARSE`, 200000 lines);
//! - the demo's format-2 events (`BENCH_PARSE_MESSAGES`, 50000 messages), which pass
//!   admission's rules as part of their validity.
//!
//! Beside each, the general path the one-pass reader falls back on (a strict
//! `serde_json::Value`, then the same rules), through `Event::from_value_as` of a
//! parsed value: the baseline the reader is measured against.

mod common;
use common::{env, event_lines};
use std::time::Instant;

use ledger_core::Event;

// As the `ledger` binary, whose server and `append` parse events.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 9;

/// Best and median events/s over the rounds.
fn rate(lines: &[String], parse: &dyn Fn(&[u8]) -> Event) -> (f64, f64) {
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let mut bytes = 0usize;
            for l in lines {
                bytes += parse(l.as_bytes()).canonical_bytes().len();
            }
            std::hint::black_box(bytes);
            lines.len() as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[ROUNDS - 1], rates[ROUNDS / 2])
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "parse")
    {
        return;
    }
    let format1 = event_lines(env("BENCH_PARSE", 200_000));
    let scenario = ledger_demo::generate(&ledger_demo::Options {
        seed: 2023,
        messages: env("BENCH_PARSE_MESSAGES", 50_000) as usize,
    });
    let mut format2 = Vec::with_capacity(scenario.event_count());
    scenario
        .for_each_event(&mut |line| {
            format2.push(line.to_string());
            Ok(())
        })
        .expect("generate");
    let mean = |lines: &[String]| lines.iter().map(String::len).sum::<usize>() / lines.len();
    println!(
        "ledger parse bench: one thread, {ROUNDS} rounds each (best, median)\n\n\
         | events | lines | mean bytes | from_json_as (events/s) | general path (events/s) | ratio |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for (name, lines, format) in [
        ("format 1, store mix", &format1, 1u8),
        ("format 2, demo", &format2, 2u8),
    ] {
        let (fast, fast_med) = rate(lines, &|b| {
            Event::from_json_as(b, format).expect("bench events are valid")
        });
        let (general, general_med) = rate(lines, &|b| {
            let value: serde_json::Value = serde_json::from_slice(b).expect("JSON");
            Event::from_value_as(value, format).expect("bench events are valid")
        });
        println!(
            "| {name} | {} | {} | {:.0}k, {:.0}k | {:.0}k, {:.0}k | {:.1}× |",
            lines.len(),
            mean(lines),
            fast / 1e3,
            fast_med / 1e3,
            general / 1e3,
            general_med / 1e3,
            fast_med / general_med
        );
    }
}
