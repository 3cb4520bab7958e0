//! The projections' figures for `BENCHMARKS.md`, side by side in one run, on the demo
//! scenario's events (ledger-demo, seed 2023): appends with and without incremental
//! projection, replay beside a bare scan of the same entries, `report lost` from the
//! persisted projection, `status` latency of single messages, and the digest.
//!
//! `cargo bench -p ledger-core --bench projection` runs it. Settings from the
//! environment: `BENCH_MESSAGES` (original messages of the scenario, 1000000 ≈ 4.2M
//! events), `BENCH_BATCH` (events per append call, 1000), `BENCH_STATUS` (status
//! queries timed, 2000), `BENCH_DIR` (where the stores go).

mod common;
use common::{bench_dir, env};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ledger_core::projection::{
    self, Evaluator, Filter, IncidentKind, Instant as At, Policy, Verdict,
};
use ledger_core::store::{FileStore, InitOptions, Store};
use ledger_core::{Event, HashAlg};

// As the `ledger` binary: the projections allocate per message and per event.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fresh(root: &Path, name: &str) -> FileStore {
    let dir = root.join(name);
    FileStore::init(
        &dir,
        &InitOptions {
            origin: format!("bench/{name}"),
            hash: HashAlg::Blake3,
        },
    )
    .expect("init");
    FileStore::open(&dir).expect("open").0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "projection")
    {
        return;
    }
    let messages = env("BENCH_MESSAGES", 1_000_000) as usize;
    let batch = env("BENCH_BATCH", 1000) as usize;
    let queries = env("BENCH_STATUS", 2000) as usize;
    let tmp = bench_dir();
    let root = tmp.path();

    let t = Instant::now();
    let scenario = ledger_demo::generate(&ledger_demo::Options {
        seed: 2023,
        messages,
    });
    let mut events = Vec::with_capacity(scenario.event_count());
    scenario
        .for_each_event(&mut |line| {
            events.push(Event::from_json_as(line.as_bytes(), 2).expect("demo events are valid"));
            Ok(())
        })
        .expect("generate");
    let n = events.len() as u64;
    println!(
        "ledger projection bench: {messages} messages, {n} events, batches of {batch}, {} cores, generated and parsed in {:.1} s, in {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        t.elapsed().as_secs_f64(),
        root.display()
    );

    // 1. Appends without and with the projection kept current after every batch.
    let plain = fresh(root, "plain");
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        plain.append(chunk.to_vec()).expect("append");
    }
    let plain_secs = t.elapsed().as_secs_f64();
    let projected = fresh(root, "projected");
    let mut facts = projection::Facts::default();
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        projected.append(chunk.to_vec()).expect("append");
        projection::catch_up(&projected, &mut facts, projected.size(), &mut |_| {})
            .expect("project");
    }
    let projected_secs = t.elapsed().as_secs_f64();
    // The server's shape: a projector thread follows the log while appends go on;
    // timed until the projection has caught up with the last append.
    let followed = fresh(root, "followed");
    let done = AtomicBool::new(false);
    let t = Instant::now();
    let followed_facts = std::thread::scope(|s| {
        let projector = s.spawn(|| {
            let mut f = projection::Facts::default();
            loop {
                let finished = done.load(Ordering::Acquire);
                let size = followed.size();
                projection::catch_up(&followed, &mut f, size, &mut |_| {}).expect("project");
                if finished && f.covered() == followed.size() {
                    return f;
                }
                if f.covered() == size {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        for chunk in events.chunks(batch) {
            followed.append(chunk.to_vec()).expect("append");
        }
        done.store(true, Ordering::Release);
        projector.join().expect("projector")
    });
    let followed_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        followed_facts, facts,
        "a following projector equals caught-up facts"
    );
    println!(
        "appends, {batch} per call:      {:>9.0} events/s without projection; {:>9.0} projecting after each call (cost {:.1}%); {:>9.0} with a projector thread following the log (cost {:.1}%)",
        n as f64 / plain_secs,
        n as f64 / projected_secs,
        100.0 * (projected_secs - plain_secs) / plain_secs,
        n as f64 / followed_secs,
        100.0 * (followed_secs - plain_secs) / plain_secs
    );

    // 2. Replay from seq 0, beside a bare scan of the same entries.
    let t = Instant::now();
    let mut bytes = 0u64;
    plain
        .scan(0, n, &mut |_, b| {
            bytes += b.len() as u64;
            Ok(())
        })
        .expect("scan");
    let scan_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let replayed = projection::replay(&plain, n, &mut |_| {}).expect("replay");
    let replay_secs = t.elapsed().as_secs_f64();
    assert_eq!(replayed, facts, "incremental projection equals replay");
    println!(
        "replay of {n} events:        {:>9.0} events/s ({:.2} s, {} messages); bare scan {:>9.0} entries/s",
        n as f64 / replay_secs,
        replay_secs,
        replayed.message_count(),
        n as f64 / scan_secs
    );

    // 3. `report lost` from the persisted projection: load, then judge every message.
    let dir = root.join("plain");
    projection::save(&dir, &plain, &replayed).expect("save");
    let size = std::fs::metadata(dir.join(projection::FILE_NAME)).map_or(0, |m| m.len());
    let policy = Policy::default_policy();
    let now = At::parse(ledger_demo::T_END).expect("time");
    let mut runs = Vec::new();
    let mut lost = 0;
    let mut load_secs = 0.0;
    // Beside it, in the same runs over the same loaded facts: `report incidents`
    // (every message's episodes) and `report lost --ever`.
    let (mut incident_runs, mut ever_runs) = (Vec::new(), Vec::new());
    let (mut incidents, mut ever) = (0, 0);
    for _ in 0..5 {
        let t = Instant::now();
        let (loaded, report) =
            projection::load_or_rebuild(&dir, &plain, &mut |_| {}).expect("load");
        assert_eq!(report.applied, 0);
        load_secs = t.elapsed().as_secs_f64();
        let eval = Evaluator::new(&loaded, &policy, now);
        lost = projection::report(&eval, &[Verdict::Lost], &Filter::default()).len();
        runs.push(t.elapsed());
        let i = Instant::now();
        incidents = projection::incident_rows(&eval, &[], &Filter::default(), false).len();
        incident_runs.push(i.elapsed().as_secs_f64() + load_secs);
        let i = Instant::now();
        let kinds = [IncidentKind::LostUnread, IncidentKind::Failed];
        ever = projection::incident_rows(&eval, &kinds, &Filter::default(), false).len();
        ever_runs.push(i.elapsed().as_secs_f64() + load_secs);
    }
    runs.sort();
    incident_runs.sort_by(f64::total_cmp);
    ever_runs.sort_by(f64::total_cmp);
    println!(
        "report lost over {} messages: median {:.3} s (load {:.3} s of it; {lost} lost; file {:.1} MiB)",
        replayed.message_count(),
        runs[2].as_secs_f64(),
        load_secs,
        size as f64 / 1048576.0
    );
    println!(
        "report incidents (every kind), same load: median {:.3} s ({incidents} incidents); \
         report lost --ever: median {:.3} s ({ever} rows)",
        incident_runs[2], ever_runs[2]
    );

    // 4. `status` of single messages: the family's entries through the index.
    let mut ids: Vec<&str> = replayed.messages().map(|(k, _)| k).collect();
    ids.sort_unstable();
    let step = (ids.len() / queries.max(1)).max(1);
    let mut lat = Vec::with_capacity(queries);
    for id in ids.iter().step_by(step).take(queries) {
        let t = Instant::now();
        let f = projection::family_facts(&plain, id, n, None)
            .expect("family")
            .expect("known");
        let e = Evaluator::new(&f, &policy, now)
            .evaluate(id)
            .expect("judged");
        lat.push(t.elapsed());
        assert_eq!(
            e.verdict,
            Evaluator::new(&replayed, &policy, now)
                .evaluate(id)
                .unwrap()
                .verdict
        );
    }
    lat.sort();
    println!(
        "status of one message ({} queries): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        lat.last().unwrap().as_secs_f64() * 1e6
    );

    // 5. Digests (what `replay` prints).
    let t = Instant::now();
    let d = projection::evaluation_digest(
        &Evaluator::new(&replayed, &policy, now),
        &policy,
        HashAlg::Blake3,
    );
    println!(
        "digests (facts + evaluation):  {:.2} s (facts {})",
        t.elapsed().as_secs_f64(),
        hex_of(&d.facts)
    );
}

fn hex_of(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
