//! A child appending with acknowledgements is killed with SIGKILL at random
//! moments; after each restart every acknowledged event is present at its seq, the
//! chain verifies, and appends continue. Prints its seed; set CRASH_SEED to replay.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ledger_core::{FileStore, InitOptions, Store};

const ROUNDS: u64 = 12;

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_event() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (CRASH_SEED={seed} to replay)");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    FileStore::init(
        &dir,
        &InitOptions {
            origin: "crash.example/log".into(),
            hash: ledger_core::HashAlg::Blake3,
        },
    )
    .unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .arg(&dir)
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut got = Vec::new();
            let mut line = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 || line.last() != Some(&b'\n') {
                    return got;
                }
                let s = String::from_utf8_lossy(&line);
                let mut parts = s.trim_end().splitn(3, ' ');
                let (_, seq, id) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
                got.push((seq.parse::<u64>().unwrap(), id.to_string()));
            }
        });
        std::thread::sleep(Duration::from_millis(40 + next() % 260));
        child.kill().unwrap();
        child.wait().unwrap();
        let got = reader.join().unwrap();
        acked.extend(got);

        let (store, _report) =
            FileStore::open(&dir).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        for (seq, id) in &acked {
            assert_eq!(
                store.event_seq(id).unwrap(),
                Some(*seq),
                "seed {seed} round {round}: acked {id} lost"
            );
        }
        assert!(store.size() >= acked.len() as u64);
        drop(store);
        let report = ledger_core::verify::verify_store(&dir, &Default::default(), &()).unwrap();
        assert!(
            report.ok(),
            "seed {seed} round {round}: {:?}",
            report.faults
        );
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} events",
        acked.len()
    );
}
