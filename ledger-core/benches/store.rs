//! The store's figures for `BENCHMARKS.md`, side by side in one run, each with its
//! baseline: durable appends (64 producers) against one fsync per event and against a
//! plain write + fdatasync of the same bytes in the same batches; `verify` speed and
//! peak memory at two sizes; inclusion and consistency proof latency; stored bytes
//! per canonical entry byte.
//!
//! `cargo bench -p ledger-core --bench store` runs it with 1,000,000 events. Settings
//! come from the environment: `BENCH_EVENTS` (1000000), `BENCH_PRODUCERS` (64),
//! `BENCH_REQUEST` (events per append call, 1), `BENCH_SINGLE` (events for the
//! one-fsync-per-event baselines, 20000), `BENCH_PROOFS` (proofs timed, 20000),
//! `BENCH_DIR` (where the stores go; the system temp dir by default, which must be
//! a real disk for the fsync figures to mean anything).
//!
//! Not a criterion bench: one 1M-event append takes seconds, and what matters is
//! each figure beside its baseline, measured in the same run on the same disk.

mod common;
use common::{bench_dir, env};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::entry::{entry_bytes, format_recorded_at};
use ledger_core::segment::encode_frame;
use ledger_core::store::{FileStore, InitOptions, Store};
use ledger_core::verify::{VerifyOptions, verify_store};
use ledger_core::{Event, HashAlg};

fn events(n: u64) -> Vec<Event> {
    common::event_lines(n)
        .iter()
        .map(|l| Event::from_json(l.as_bytes()).expect("bench events are valid"))
        .collect()
}

fn fresh_store(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    FileStore::init(
        &d,
        &InitOptions {
            origin: format!("bench.example/{name}"),
            hash: HashAlg::Blake3,
        },
    )
    .expect("init");
    d
}

/// Appends `events` with `producers` threads, each calling `append` with `request`
/// events at a time and waiting for the receipts. Returns (seconds, log syncs).
fn append(dir: &Path, events: Vec<Event>, producers: usize, request: usize) -> (f64, u64) {
    let (store, _) = FileStore::open(dir).expect("open");
    let store = Arc::new(store);
    let per = events.len().div_ceil(producers);
    let mut shares: Vec<Vec<Event>> = Vec::new();
    let mut it = events.into_iter();
    for _ in 0..producers {
        shares.push(it.by_ref().take(per).collect());
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for share in shares {
            let store = store.clone();
            // Named, so that a profile tells the producers' share from the rest.
            std::thread::Builder::new()
                .name("bench-producer".into())
                .spawn_scoped(s, move || {
                    let mut share = share.into_iter().peekable();
                    while share.peek().is_some() {
                        let req: Vec<Event> = share.by_ref().take(request).collect();
                        store.append(req).expect("append");
                    }
                })
                .expect("spawn a producer");
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let syncs = store.log_syncs();
    store.close();
    (secs, syncs)
}

/// The framed entry bytes an append of `events` writes, without any of the store.
fn framed(events: &[Event]) -> Vec<Vec<u8>> {
    let alg = HashAlg::Blake3;
    let mut prev = alg.genesis("bench.example/raw");
    let at = format_recorded_at(time::OffsetDateTime::now_utc());
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let bytes = entry_bytes(i as u64, &prev, &at, 1, e.canonical_bytes());
            prev = alg.leaf(&bytes);
            let mut f = Vec::with_capacity(bytes.len() + 8);
            encode_frame(&mut f, &bytes);
            f
        })
        .collect()
}

/// Writes `frames` to a plain file in batches of `batch`, with one fdatasync per
/// batch: what the disk allows, with nothing of the ledger in the way.
fn raw_write(path: &Path, frames: &[Vec<u8>], batch: usize) -> f64 {
    let mut f: File = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .expect("create");
    let start = Instant::now();
    let mut buf = Vec::new();
    for chunk in frames.chunks(batch.max(1)) {
        buf.clear();
        for fr in chunk {
            buf.extend_from_slice(fr);
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    start.elapsed().as_secs_f64()
}

/// Peak resident memory of this process, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `verify` of `dir` in a child process so its peak memory is its own.
/// Returns (seconds, entries, peak RSS KiB).
fn verify_in_child(dir: &Path) -> (f64, u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env("BENCH_VERIFY_CHILD", dir)
        .output()
        .expect("run the verify child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

fn verify_child(dir: &str) {
    let start = Instant::now();
    let report = verify_store(Path::new(dir), &VerifyOptions::default(), &()).expect("verify");
    let secs = start.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.faults);
    println!("{secs} {} {}", report.entries, peak_rss_kib());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// A cheap deterministic generator (the figures must not depend on a seed crate).
struct SplitMix(u64);
impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.0}", n as f64 / secs)
}

fn main() {
    if let Ok(dir) = std::env::var("BENCH_VERIFY_CHILD") {
        verify_child(&dir);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument other than ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "store")
    {
        return;
    }
    let n = env("BENCH_EVENTS", 1_000_000);
    let producers = env("BENCH_PRODUCERS", 64) as usize;
    let request = env("BENCH_REQUEST", 1) as usize;
    let single = env("BENCH_SINGLE", 20_000).min(n);
    let proofs = env("BENCH_PROOFS", 20_000) as usize;
    let tmp = bench_dir();
    let root = tmp.path();
    println!(
        "ledger store bench: {n} events, {producers} producers, {request} event(s) per append call, {} cores, in {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        root.display()
    );

    let t = Instant::now();
    let evs = events(n);
    let parse_secs = t.elapsed().as_secs_f64();
    let canonical: u64 = framed(&evs).iter().map(|f| f.len() as u64 - 8).sum();

    // 1. Durable appends, group-committed.
    let big = fresh_store(root, "big");
    let (secs, syncs) = append(&big, evs.clone(), producers, request);
    let batch = (n as f64 / syncs.max(1) as f64).round() as usize;

    // 2. Baselines: one fsync per event, through the store and raw.
    let one = fresh_store(root, "one");
    let (one_secs, _) = append(&one, evs[..single as usize].to_vec(), 1, 1);
    let frames = framed(&evs);
    let raw_one_secs = raw_write(&root.join("raw-one.seg"), &frames[..single as usize], 1);
    // 3. The ceiling: the same bytes in the same batch size, plain write + fdatasync.
    let raw_secs = raw_write(&root.join("raw.seg"), &frames, batch);
    drop(frames);

    println!("\n## Durable appends ({n} events; mean batch {batch} events, {syncs} fdatasyncs)\n");
    println!("| what | events | seconds | events/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    let ours = n as f64 / secs;
    println!(
        "| **ledger: FileStore::append, {producers} producers, group commit** | {n} | {secs:.2} | **{}** | 1.00 |",
        rate(n, secs)
    );
    println!(
        "| baseline: FileStore::append, 1 producer (one fsync per event) | {single} | {one_secs:.2} | {} | {:.1}× slower |",
        rate(single, one_secs),
        ours / (single as f64 / one_secs)
    );
    println!(
        "| baseline: raw write + fdatasync per event | {single} | {raw_one_secs:.2} | {} | {:.1}× slower |",
        rate(single, raw_one_secs),
        ours / (single as f64 / raw_one_secs)
    );
    println!(
        "| ceiling: raw write + fdatasync, same bytes, batches of {batch} | {n} | {raw_secs:.2} | {} | ledger reaches {:.0}% |",
        rate(n, raw_secs),
        100.0 * ours / (n as f64 / raw_secs)
    );
    println!(
        "\n(event parsing and validation, not part of the append figure: {} events/s on one core)",
        rate(n, parse_secs)
    );

    // 4. Verify, at a tenth of the size and at full size: speed and peak memory.
    let tenth = fresh_store(root, "tenth");
    append(&tenth, evs[..(n / 10) as usize].to_vec(), producers, 64);
    drop(evs);
    let (vs_small, e_small, rss_small) = verify_in_child(&tenth);
    let (vs_big, e_big, rss_big) = verify_in_child(&big);
    println!(
        "\n## verify (whole store: CRCs, envelopes, chain, Merkle roots, signatures; not --deep)\n"
    );
    println!("| entries | seconds | entries/s | peak RSS |");
    println!("|---:|---:|---:|---:|");
    for (e, s, r) in [(e_small, vs_small, rss_small), (e_big, vs_big, rss_big)] {
        println!(
            "| {e} | {s:.2} | {} | {:.1} MiB |",
            rate(e, s),
            r as f64 / 1024.0
        );
    }

    // 5. Proofs against the full store, through the index.
    let (store, _) = FileStore::open(&big).expect("open");
    let size = store.size();
    let alg = store.info().hash;
    let mut rng = SplitMix(0x1ed9e5);
    let mut inc = Vec::with_capacity(proofs);
    let mut con = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let seq = rng.below(size);
        let t = Instant::now();
        let p = store.inclusion_proof(seq, size).expect("inclusion proof");
        inc.push(t.elapsed());
        p.verify(alg).expect("inclusion proof verifies");
        let from = 1 + rng.below(size - 1);
        let t = Instant::now();
        let c = store
            .consistency_proof(from, size)
            .expect("consistency proof");
        con.push(t.elapsed());
        c.verify(alg).expect("consistency proof verifies");
    }
    drop(store);
    inc.sort();
    con.sort();
    println!("\n## Proofs at {size} entries ({proofs} random each, built from the index)\n");
    println!("| proof | p50 | p99 | max | target p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [("inclusion", &inc), ("consistency", &con)] {
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs | 1000 µs |",
            percentile(v, 0.5).as_secs_f64() * 1e6,
            percentile(v, 0.99).as_secs_f64() * 1e6,
            v.last().unwrap().as_secs_f64() * 1e6
        );
    }

    // 6. Space.
    let log = dir_bytes(&big.join("log"));
    let all = dir_bytes(&big);
    println!("\n## Space ({n} entries, {canonical} canonical entry bytes)\n");
    println!("| what | bytes | ÷ canonical entry bytes |");
    println!("|---|---:|---:|");
    println!(
        "| segments (log of record) | {log} | {:.3} |",
        log as f64 / canonical as f64
    );
    println!(
        "| whole store (segments, index, checkpoints, keys) | {all} | {:.3} |",
        all as f64 / canonical as f64
    );
}
