//! The embedded store through its public API: appends, idempotency, conflicts,
//! proofs with both hash functions, reindex, and recovery of a torn tail.

use ledger_core::{Event, FileStore, HashAlg, InitOptions, Store, StoreError};

fn event(id: &str, msg: &str, kind: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"id":"{id}","type":"{kind}","message":"{msg}","at":"2023-05-08T00:00:00Z",
               "reporter":{{"org":"974760673","system":"altinn"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn new_store(alg: HashAlg) -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    FileStore::init(
        &path,
        &InitOptions {
            origin: "test.example/log".into(),
            hash: alg,
        },
    )
    .unwrap();
    let (s, report) = FileStore::open(&path).unwrap();
    assert!(report.is_clean());
    (dir, s)
}

fn assert_latest_checkpoint_signs_the_root(s: &FileStore) {
    let cp = s.latest_checkpoint().unwrap();
    let parsed = s.verifier_key().verify(&cp.note).unwrap();
    assert_eq!(parsed.root, s.root(parsed.size).unwrap());
}

#[test]
fn appends_are_gapless_idempotent_and_conflicts_refuse_the_whole_request() {
    let (_d, s) = new_store(HashAlg::Blake3);
    let r = s
        .append(
            (0..10)
                .map(|i| event(&format!("e{i}"), "M1", "expired"))
                .collect(),
        )
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    // A retry returns the original receipts.
    let again = s.append(vec![event("e3", "M1", "expired")]).unwrap();
    assert_eq!(
        (again[0].seq, again[0].hash, again[0].duplicate),
        (3, r[3].hash, true)
    );
    // Same id, other content: the whole request is refused, nothing appended.
    let err = s
        .append(vec![
            event("new", "M2", "expired"),
            event("e3", "M1", "delivered"),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { seq: 3, .. }), "{err}");
    assert_eq!(s.size(), 10);
    assert_eq!(s.event_seq("new").unwrap(), None);
    // Duplicates inside one request resolve to one entry.
    let r = s
        .append(vec![
            event("d", "M3", "expired"),
            event("d", "M3", "expired"),
        ])
        .unwrap();
    assert_eq!((r[0].seq, r[1].seq, r[1].duplicate), (10, 10, true));
    assert_eq!(s.message_seqs("M1").unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn proofs_round_trip_with_both_hashes_across_sizes() {
    for alg in [HashAlg::Blake3, HashAlg::Sha256] {
        let (_d, s) = new_store(alg);
        for chunk in 0..5 {
            s.append(
                (0..61)
                    .map(|i| event(&format!("e{chunk}-{i}"), "M", "expired"))
                    .collect(),
            )
            .unwrap();
        }
        let n = s.size();
        assert_eq!(n, 305);
        for size in [1, 2, 63, 64, 65, 128, 129, 200, 305] {
            for seq in [0, size / 2, size - 1] {
                s.inclusion_proof(seq, size).unwrap().verify(alg).unwrap();
            }
            for from in [0, 1, size / 3, size] {
                s.consistency_proof(from, size)
                    .unwrap()
                    .verify(alg)
                    .unwrap();
            }
        }
        // The signed checkpoint commits to the same root the proofs use.
        assert_latest_checkpoint_signs_the_root(&s);
    }
}

#[test]
fn reopen_continues_the_chain_and_reindex_is_identical() {
    let (d, s) = new_store(HashAlg::Blake3);
    s.append(
        (0..100)
            .map(|i| event(&format!("e{i}"), "M", "expired"))
            .collect(),
    )
    .unwrap();
    let before = s.index_digest().unwrap();
    drop(s);
    let path = d.path().join("l");
    let (s, _) = FileStore::open(&path).unwrap();
    assert_eq!(s.index_digest().unwrap(), before);
    s.append(vec![event("x", "M", "expired")]).unwrap();
    drop(s);
    let (old, new) = ledger_core::store::reindex(&path).unwrap();
    assert_eq!(old, Some(new));
    let report = ledger_core::verify::verify_store(&path, &Default::default(), &()).unwrap();
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!(report.entries, 101);
}

/// A closed store holding `n` events: its temp dir, its path, and its only segment.
fn closed_store(
    alg: HashAlg,
    n: usize,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (d, s) = new_store(alg);
    s.append(
        (0..n)
            .map(|i| event(&format!("e{i}"), "M", "expired"))
            .collect(),
    )
    .unwrap();
    drop(s);
    let path = d.path().join("l");
    let seg = path.join("log").join("00000000000000000000.seg");
    (d, path, seg)
}

#[test]
fn a_torn_last_record_is_cut_and_reported() {
    let (_d, path, seg) = closed_store(HashAlg::Sha256, 5);
    let len = std::fs::metadata(&seg).unwrap().len();
    // A write that got halfway: a frame header that promises more than is there.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
    drop(f);
    let (s, report) = FileStore::open(&path).unwrap();
    let (_, offset, cut, _) = report.torn_tail.clone().expect("reported");
    assert_eq!((offset, cut), (len, 9));
    assert_eq!(s.size(), 5);
    s.append(vec![event("e5", "M", "expired")]).unwrap();
    drop(s);
    assert!(
        std::fs::read_to_string(path.join("recovery.log"))
            .unwrap()
            .contains("torn")
    );
    assert!(
        ledger_core::verify::verify_store(&path, &Default::default(), &())
            .unwrap()
            .ok()
    );
}

#[test]
fn a_damaged_acknowledged_entry_is_reported_and_nothing_is_cut() {
    let (_d, path, seg) = closed_store(HashAlg::Blake3, 20);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = FileStore::open(&path).err().expect("must refuse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("refusing to cut"), "{err}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was changed");
}

#[test]
fn readers_see_every_acknowledged_entry_across_index_flushes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_d, s) = new_store(HashAlg::Sha256);
    let alg = s.info().hash;
    let done = AtomicBool::new(false);
    let rounds: u64 = std::thread::scope(|scope| {
        // A reader that keeps proving the newest entry against the newest checkpoint
        // while the index moves from memory to disk underneath it.
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let size = s.size();
                if size > 0 {
                    s.inclusion_proof(size - 1, size)
                        .unwrap()
                        .verify(alg)
                        .unwrap();
                    assert_latest_checkpoint_signs_the_root(&s);
                }
            }
        });
        // Long enough for the background flusher to run (every second) as well.
        let start = std::time::Instant::now();
        let mut round: u64 = 0;
        while round < 40 || start.elapsed() < std::time::Duration::from_millis(2500) {
            let batch: Vec<Event> = (0..50)
                .map(|i| {
                    event(
                        &format!("r{round}-{i}"),
                        &format!("M{}", i % 7),
                        "delivered",
                    )
                })
                .collect();
            let receipts = s.append(batch).unwrap();
            for (i, r) in receipts.iter().enumerate() {
                assert_eq!(s.event_seq(&format!("r{round}-{i}")).unwrap(), Some(r.seq));
                assert!(
                    s.message_seqs(&format!("M{}", i % 7))
                        .unwrap()
                        .contains(&r.seq)
                );
            }
            if round % 5 == 4 && round < 40 {
                // Forces a flush of the in-memory index.
                s.index_digest().unwrap();
            }
            round += 1;
        }
        done.store(true, Ordering::Release);
        round
    });
    assert_eq!(s.size(), 50 * rounds);
    assert_eq!(s.message_seqs("M3").unwrap().len() as u64, 7 * rounds);
    assert_eq!(
        s.checkpoints(0, usize::MAX).unwrap().last().unwrap().size,
        50 * rounds
    );
}

/// One process at a time: a second open is refused while the first holds the store,
/// through its close (index sealed), and succeeds after.
#[test]
fn a_store_is_opened_by_one_holder_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    FileStore::init(
        &path,
        &InitOptions {
            origin: "test.example/lock".into(),
            hash: HashAlg::Blake3,
        },
    )
    .unwrap();
    let (s, _) = FileStore::open(&path).unwrap();
    s.append(vec![event("e1", "M1", "expired")]).unwrap();
    match FileStore::open(&path) {
        Err(StoreError::Locked(p)) => assert_eq!(p, path),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second holder opened the store"),
    }
    drop(s);
    let (s, report) = FileStore::open(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s.size(), 1);
}
