//! Durable appends on PostgreSQL for `BENCHMARKS.md`, side by side in one run:
//! `PgStore` (group commit, one transaction per group) against the naive design users
//! build first (a table with a `prev_hash` column, one transaction per event, the
//! previous row locked) and against the embedded store, the same events from the same
//! number of producers.
//!
//! `cargo bench -p ledger-pg --bench append`. Needs PostgreSQL: `LEDGER_TEST_PG`, or
//! the server `scripts/pg-env` finds. Settings: `BENCH_EVENTS` (200000),
//! `BENCH_PRODUCERS` (64), `BENCH_REQUEST` (events per append call, 100),
//! `BENCH_NAIVE` (events for the naive baseline, 20000).

use std::sync::Arc;
use std::time::Instant;

use ledger_core::store::LedgerInfo;
use ledger_core::{Event, FileStore, HashAlg, InitOptions, SigningKey, Store};
use ledger_pg::PgStore;
use tokio_postgres::NoTls;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let m = i / 3;
            let line = match i % 3 {
                0 => format!(
                    r#"{{"id":"ev-{i}","type":"sent","message":"MSG-{m:08}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"974760673","system":"websak"}},"from":"974760673","to":"964338531","channel":"altinn","category":"bekymringsmelding","content_digest":"blake3:{m:064x}","refs":{{"altinn":"a1b2c3d4-{m:012}"}}}}"#
                ),
                1 => format!(
                    r#"{{"id":"ev-{i}","type":"delivered","message":"MSG-{m:08}","at":"2023-05-08T09:31:00Z","reporter":{{"org":"974760673","system":"altinn"}}}}"#
                ),
                _ => format!(
                    r#"{{"id":"ev-{i}","type":"opened","message":"MSG-{m:08}","at":"2023-05-09T10:00:00Z","reporter":{{"org":"964338531","system":"familia"}},"by_role":"saksbehandler"}}"#
                ),
            };
            Event::from_json(line.as_bytes()).unwrap()
        })
        .collect()
}

/// Appends `events` from `producers` threads in calls of `request` events; events/s.
fn drive(store: Arc<dyn Store>, events: &[Event], producers: usize, request: usize) -> f64 {
    let chunks: Vec<Vec<Event>> = events.chunks(request).map(<[Event]>::to_vec).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = chunks.get(i) else { break };
                    store.append(c.clone()).expect("append");
                }
            });
        }
    });
    events.len() as f64 / t.elapsed().as_secs_f64()
}

/// Entries per second read back with the chain checked, and projection replay rate.
fn read_back(store: &dyn Store) -> (f64, f64) {
    let n = store.size();
    let alg = store.info().hash;
    let t = Instant::now();
    let mut prev = alg.genesis(&store.info().origin);
    store
        .scan(0, n, &mut |seq, b| {
            let p = ledger_core::entry::parse_entry(b).expect("an entry");
            assert_eq!(p.prev, prev, "entry {seq}");
            prev = alg.leaf(b);
            Ok(())
        })
        .unwrap();
    let chain = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    ledger_core::projection::replay(store, n, &mut |_| {}).unwrap();
    (chain, n as f64 / t.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "append")
    {
        return;
    }
    let n = env("BENCH_EVENTS", 200_000);
    let producers = env("BENCH_PRODUCERS", 64);
    let request = env("BENCH_REQUEST", 100);
    let naive_n = env("BENCH_NAIVE", 20_000);
    let base = std::env::var("LEDGER_TEST_PG").unwrap_or_else(|_| {
        let out =
            std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-env"))
                .output()
                .expect("run scripts/pg-env");
        assert!(out.status.success(), "no PostgreSQL: set LEDGER_TEST_PG");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&base, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c
    });
    let name = format!("ledger_bench_{}", std::process::id());
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
        .unwrap();
    let authority = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let url = format!("{}/{name}", &base[..end]);
    let evs = events(n);
    println!(
        "ledger-pg append bench: {n} events, {producers} producers, {request} per call, {} cores",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // PgStore.
    let key = SigningKey::generate("bench.example/pg").unwrap();
    let info = LedgerInfo {
        format: 1,
        origin: "bench.example/pg".into(),
        hash: HashAlg::Blake3,
    };
    PgStore::init(&url, &info, &key).unwrap();
    let pg: Arc<dyn Store> = Arc::new(PgStore::open(&url, key).unwrap());
    let pg_rate = drive(pg.clone(), &evs, producers, request);
    println!("PgStore, group commit:                 {pg_rate:>10.0} events/s");
    let (pg_chain, pg_replay) = read_back(pg.as_ref());
    drop(pg);

    // The embedded store, same events.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("file");
    FileStore::init(
        &dir,
        &InitOptions {
            origin: "bench.example/file".into(),
            hash: HashAlg::Blake3,
        },
    )
    .unwrap();
    let file: Arc<dyn Store> = Arc::new(FileStore::open(&dir).unwrap().0);
    let file_rate = drive(file.clone(), &evs, producers, request);
    println!("FileStore (embedded), group commit:    {file_rate:>10.0} events/s");
    let (file_chain, file_replay) = read_back(file.as_ref());
    drop(file);
    println!(
        "reading back {n} entries, chain checked (every entry's prev = the hash before): PgStore {pg_chain:.0}/s, embedded {file_chain:.0}/s"
    );
    println!(
        "replay (projection from seq 0): PgStore {pg_replay:.0} events/s, embedded {file_replay:.0} events/s"
    );

    // The naive design: one transaction per event, the previous row locked.
    let naive_rate = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute(
            "CREATE TABLE naive (seq bigint PRIMARY KEY, prev_hash bytea NOT NULL, hash bytea NOT NULL, event bytea NOT NULL);
             INSERT INTO naive VALUES (-1, '\\x00', '\\x00', '\\x00');",
        )
        .await
        .unwrap();
        let evs: Arc<Vec<Vec<u8>>> = Arc::new(evs[..naive_n.min(n)].iter().map(|e| e.canonical_bytes().to_vec()).collect());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..producers {
            let (url, evs, next) = (url.clone(), evs.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let (mut c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(ev) = evs.get(i) else { break };
                    // Two writers can lock the same tail row one after the other and
                    // both try its successor: the loser retries, as such code must.
                    loop {
                        let tx = c.transaction().await.unwrap();
                        let row = tx
                            .query_one(
                                "SELECT seq, hash FROM naive ORDER BY seq DESC LIMIT 1 FOR UPDATE",
                                &[],
                            )
                            .await
                            .unwrap();
                        let (seq, prev): (i64, Vec<u8>) = (row.get(0), row.get(1));
                        let mut h = prev.clone();
                        h.extend_from_slice(ev);
                        let hash = blake3::hash(&h).as_bytes().to_vec();
                        let ins = tx
                            .execute(
                                "INSERT INTO naive VALUES ($1, $2, $3, $4)",
                                &[&(seq + 1), &prev, &hash, ev],
                            )
                            .await;
                        match ins {
                            Ok(_) => {
                                tx.commit().await.unwrap();
                                break;
                            }
                            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                                drop(tx);
                                continue;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        evs.len() as f64 / t.elapsed().as_secs_f64()
    });
    println!(
        "naive (prev_hash column, one tx/event): {naive_rate:>10.0} events/s ({} events)",
        naive_n.min(n)
    );
    println!(
        "ratios: PgStore / naive = {:.1}x, PgStore / embedded = {:.2}",
        pg_rate / naive_rate,
        pg_rate / file_rate
    );
    rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .unwrap();
}
