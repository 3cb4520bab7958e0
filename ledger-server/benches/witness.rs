//! Witness round trips for BENCHMARKS.md: `POST /add-checkpoint` on loopback, each a
//! real check (the log's signature, the consistency proof) and a durable state
//! update (write, fsync, rename, fsync the directory) before the 200.
//!
//! `cargo bench -p ledger-server --bench witness`. Settings from the environment:
//! `BENCH_LOGS` (logs witnessed, 64), `BENCH_STEPS` (checkpoints per log, 300),
//! `BENCH_CLIENTS` (client threads, 32), `BENCH_DIR` (where the state goes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ledger_core::checkpoint::{Checkpoint, SigningKey};
use ledger_core::cosignature::CosignerKey;
use ledger_core::witness::{Witness, WitnessedLog};
use ledger_core::{HashAlg, merkle};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let logs = env("BENCH_LOGS", 64);
    let steps = env("BENCH_STEPS", 300);
    let clients = env("BENCH_CLIENTS", 32).min(logs);
    let base_dir =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let tmp = tempfile::tempdir_in(base_dir).unwrap();
    let alg = HashAlg::Sha256;

    // Every request body, made before the clock starts: log i, step k submits the
    // checkpoint of size k with the proof from k − 1.
    let t = Instant::now();
    let keys: Vec<SigningKey> = (0..logs)
        .map(|i| SigningKey::generate(&format!("bench.example/log{i}")).unwrap())
        .collect();
    let bodies: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            let leaves: Vec<_> = (0..steps).map(|k| alg.leaf(&k.to_be_bytes())).collect();
            let src = (alg, &leaves[..]);
            (1..=steps as u64)
                .map(|k| {
                    let note = key.sign(&Checkpoint {
                        origin: key.name().to_string(),
                        size: k,
                        root: merkle::root_of(alg, &leaves[..k as usize]),
                    });
                    let proof: String = merkle::consistency_proof(alg, &src, k - 1, k)
                        .unwrap()
                        .iter()
                        .map(|h| {
                            format!("{}\n", base64::engine::general_purpose::STANDARD.encode(h))
                        })
                        .collect();
                    format!("old {}\n{proof}\n{note}", k - 1)
                })
                .collect()
        })
        .collect();
    let prepared = t.elapsed();

    let witness = Witness::open(
        CosignerKey::generate("witness.bench.example").unwrap(),
        keys.iter()
            .map(|k| WitnessedLog {
                key: k.verifier(),
                key_from: 0,
                hash: alg,
            })
            .collect(),
        &tmp.path().join("state"),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/add-checkpoint", listener.local_addr().unwrap());
    let app = ledger_server::witness::router(Arc::new(witness));
    runtime.spawn(async move { axum::serve(listener, app).await });

    let bodies = Arc::new(bodies);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (bodies, url) = (bodies.clone(), url.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut lat = Vec::new();
                // Each client owns every `clients`-th log and walks them in step.
                let mine: Vec<usize> = (c..bodies.len()).step_by(clients).collect();
                for k in 0..bodies[0].len() {
                    for &l in &mine {
                        let t = Instant::now();
                        let r = agent.post(&url).send(&bodies[l][k]).unwrap();
                        assert_eq!(r.status().as_u16(), 200, "log {l} step {k}");
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "witness add-checkpoint on loopback: {} requests ({logs} logs x {steps} checkpoints, {clients} clients) \
         in {:.2} s: {:.0} requests/s; latency p50 {:?}, p99 {:?}, max {:?} (bodies prepared in {:.1} s)",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        lat[lat.len() - 1],
        prepared.as_secs_f64()
    );
}
