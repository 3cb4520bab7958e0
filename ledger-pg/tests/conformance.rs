//! One conformance suite, run against both stores: the embedded `FileStore` and
//! `PgStore` on a real PostgreSQL. Whatever one promises, the other keeps.

mod common;

use ledger_core::projection::{self, facts_digest};
use ledger_core::store::{LedgerInfo, StoreError};
use ledger_core::{
    Event, FileStore, HashAlg, InitOptions, SigningKey, Store, VerifierKey, entry, hash,
};
use ledger_pg::PgStore;

/// How to (re)open one store under test.
trait Harness {
    fn open(&self) -> Box<dyn Store>;
    fn name(&self) -> &'static str;
}

struct FileHarness {
    dir: tempfile::TempDir,
}

impl FileHarness {
    fn new() -> FileHarness {
        let dir = tempfile::tempdir().unwrap();
        FileStore::init(
            &dir.path().join("l"),
            &InitOptions {
                origin: "ledger.example/conformance".into(),
                hash: HashAlg::Blake3,
            },
        )
        .unwrap();
        FileHarness { dir }
    }
}

impl Harness for FileHarness {
    fn open(&self) -> Box<dyn Store> {
        Box::new(FileStore::open(&self.dir.path().join("l")).unwrap().0)
    }
    fn name(&self) -> &'static str {
        "file"
    }
}

struct PgHarness {
    url: String,
    key: String,
}

impl PgHarness {
    fn new(url: String) -> PgHarness {
        let key = SigningKey::generate("ledger.example/conformance").unwrap();
        let info = LedgerInfo {
            format: u64::from(ledger_core::event::FORMAT_LATEST),
            origin: "ledger.example/conformance".into(),
            hash: HashAlg::Blake3,
        };
        PgStore::init(&url, &info, &key).unwrap();
        let again = PgStore::init(&url, &info, &key).unwrap_err();
        assert!(
            again.to_string().contains("already holds a ledger"),
            "{again}"
        );
        PgHarness {
            url,
            key: key.to_secret_string(),
        }
    }
}

impl Harness for PgHarness {
    fn open(&self) -> Box<dyn Store> {
        let key = SigningKey::from_secret_string(&self.key).unwrap();
        Box::new(PgStore::open(&self.url, key).unwrap())
    }
    fn name(&self) -> &'static str {
        "postgres"
    }
}

fn ev(id: &str, message: &str, kind: &str) -> Event {
    let extra = match kind {
        "sent" => format!(
            r#","from":"974760673","to":"964338531","channel":"altinn","category":"bekymringsmelding","content_digest":"sha256:{}""#,
            "ab".repeat(32)
        ),
        "resent" => r#","new_message":"M-NEW","channel":"letter""#.to_string(),
        _ => String::new(),
    };
    Event::from_json(
        format!(
            r#"{{"id":"{id}","type":"{kind}","message":"{message}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"974760673","system":"websak"}}{extra}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// A format-2 `sent` of `org` (to `to`), as the API takes it.
fn ev2(id: &str, message: &str, org: &str, to: &str, category: &str) -> Event {
    Event::from_json_as(
        format!(
            r#"{{"id":"{id}","type":"sent","message":"{message}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"{org}","system":"websak"}},"from":"{org}","to":"{to}","channel":"altinn","category":"{category}","content_digest":"sha256:{}"}}"#,
            "ab".repeat(32)
        )
        .as_bytes(),
        2,
    )
    .unwrap()
}

/// Reads every entry, checks the chain link by link, and returns the leaves.
fn chain(store: &dyn Store) -> Vec<hash::Hash> {
    let alg = store.info().hash;
    let mut prev = alg.genesis(&store.info().origin);
    let mut leaves = Vec::new();
    store
        .scan(0, store.size(), &mut |seq, bytes| {
            let p = entry::parse_entry(bytes).unwrap();
            assert_eq!(p.seq, seq);
            assert_eq!(p.prev, prev, "entry {seq} extends the one before");
            prev = alg.leaf(bytes);
            leaves.push(prev);
            Ok(())
        })
        .unwrap();
    leaves
}

fn suite(h: &dyn Harness) -> String {
    let who = h.name();
    let store = h.open();
    let key: VerifierKey = store.verifier_key().current().clone();
    assert_eq!(store.size(), 0, "{who}");

    // Appends: receipts in order, the hash is the entry's leaf.
    let r = store
        .append(vec![
            ev("e0", "M1", "sent"),
            ev("e1", "M2", "sent"),
            ev("e2", "M1", "delivered"),
        ])
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [0, 1, 2],
        "{who}"
    );
    assert!(r.iter().all(|r| !r.duplicate));
    assert_eq!(store.size(), 3);
    let bytes = store.entry(1).unwrap();
    assert_eq!(r[1].hash, store.info().hash.leaf(&bytes), "{who}");

    // Idempotent: a retry gets the original receipts and appends nothing.
    let again = store
        .append(vec![ev("e0", "M1", "sent"), ev("e2", "M1", "delivered")])
        .unwrap();
    assert_eq!(
        (again[0].seq, again[0].hash, again[0].duplicate),
        (0, r[0].hash, true),
        "{who}"
    );
    assert_eq!(again[1].seq, 2);
    assert_eq!(store.size(), 3);
    // The same id twice in one request: one entry.
    let twice = store
        .append(vec![ev("e3", "M3", "sent"), ev("e3", "M3", "sent")])
        .unwrap();
    assert_eq!(
        (twice[0].seq, twice[1].seq, twice[1].duplicate),
        (3, 3, true),
        "{who}"
    );

    // The same id twice in one request with other content (`sent` for M-ONE, then
    // for M-TWO): a conflict, and nothing of the request is recorded. A receipt for
    // the second would be a receipt for an event that is not in the log.
    let e = store
        .append(vec![ev("e9", "M-ONE", "sent"), ev("e9", "M-TWO", "sent")])
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict { ref id, .. } if id == "e9"),
        "{who}: {e}"
    );
    assert_eq!(
        store.size(),
        4,
        "{who}: nothing of the request was appended"
    );
    assert_eq!(store.event_seq("e9").unwrap(), None, "{who}");

    // A conflict (same id, other content) refuses the whole request.
    let e = store
        .append(vec![ev("e4", "M4", "sent"), ev("e0", "M9", "sent")])
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict { ref id, seq: 0 } if id == "e0"),
        "{who}: {e}"
    );
    assert_eq!(
        store.size(),
        4,
        "{who}: nothing of the request was appended"
    );

    // Indexes: by message (a resend under its new message too) and by event id.
    store.append(vec![ev("e5", "M1", "resent")]).unwrap();
    assert_eq!(store.message_seqs("M1").unwrap(), [0, 2, 4], "{who}");
    assert_eq!(store.message_seqs("M-NEW").unwrap(), [4], "{who}");
    assert_eq!(store.message_seqs("nobody").unwrap(), Vec::<u64>::new());
    assert_eq!(store.event_seq("e2").unwrap(), Some(2));
    assert_eq!(
        store.event_seq("e4").unwrap(),
        None,
        "{who}: the refused event is not recorded"
    );

    // Enough entries for stored Merkle nodes (2^8 and 2^9 leaves), in groups.
    for b in 0..6 {
        let batch: Vec<Event> = (0..100)
            .map(|i| ev(&format!("b{b}-{i}"), &format!("B{b}-{i}"), "sent"))
            .collect();
        store.append(batch).unwrap();
    }
    let size = store.size();
    assert_eq!(size, 605);
    drop(store);

    // Reopened: the same log, a checkpoint of its size, and the chain continues.
    let store = h.open();
    assert_eq!(store.size(), size, "{who}");
    let cp = store.latest_checkpoint().unwrap();
    assert_eq!(
        cp.size, size,
        "{who}: a checkpoint of the whole log at close or open"
    );
    let signed = key.verify(&cp.note).unwrap();
    let leaves = chain(store.as_ref());
    assert_eq!(
        signed.root,
        ledger_core::merkle::root_of(HashAlg::Blake3, &leaves),
        "{who}"
    );
    assert_eq!(store.root(size).unwrap(), signed.root);
    for seq in [0, 1, 255, 256, 300, 511, 512, 604] {
        let p = store.inclusion_proof(seq, size).unwrap();
        p.verify(HashAlg::Blake3).unwrap();
        assert_eq!(
            (p.leaf_hash, p.root),
            (leaves[seq as usize], signed.root),
            "{who} {seq}"
        );
    }
    for from in [1, 100, 256, 300, 512] {
        let p = store.consistency_proof(from, size).unwrap();
        p.verify(HashAlg::Blake3).unwrap();
    }
    let r = store.append(vec![ev("after", "M5", "sent")]).unwrap();
    assert_eq!(r[0].seq, size);
    chain(store.as_ref());
    let older = store.checkpoints(0, 1000).unwrap();
    assert!(older.windows(2).all(|w| w[0].size < w[1].size), "{who}");
    for c in &older {
        key.verify(&c.note).unwrap();
    }

    // As-of: the prefix recorded by a time is found by the entries' own clock.
    for k in [0u64, 3, 300, size] {
        let recorded = |seq: u64| {
            let bytes = store.entry(seq).unwrap();
            projection::Instant::parse(entry::parse_entry(&bytes).unwrap().recorded_at).unwrap()
        };
        let t = recorded(k);
        let n = projection::prefix_at(store.as_ref(), t).unwrap();
        assert!(n > k, "{who}: entry {k} was recorded by its own time");
        if n < store.size() {
            assert!(recorded(n) > t, "{who}: {n} is later");
        }
    }

    // Format 2: event ids are their reporter's own, messages their parties'.
    let (a, b, d) = ("974760673", "964338531", "889640782");
    let r = store
        .append(vec![
            ev2("v2-1", "M-V2", a, b, "document"),
            ev2("v2-1", "M-V2", b, d, "document"),
        ])
        .unwrap();
    assert!(
        !r[0].duplicate && !r[1].duplicate,
        "{who}: two organisations, one id"
    );
    let again = store
        .append(vec![ev2("v2-1", "M-V2", b, d, "document")])
        .unwrap();
    assert_eq!(
        (again[0].seq, again[0].duplicate),
        (r[1].seq, true),
        "{who}"
    );
    // The same id, other content: a conflict with the reporter's own entry only.
    let e = store
        .append(vec![ev2("v2-1", "M-V2", a, b, "underretning")])
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{who}: {e}");
    // A format-1 event with a v2 event's bytes is another namespace's event.
    assert!(store.event_seq("v2-1").unwrap().is_none(), "{who}");
    let key = ledger_core::event::id_key(2, b, "v2-1");
    assert_eq!(store.event_seq(&key).unwrap(), Some(r[1].seq), "{who}");
    // Each message is found under its own key, and both under the bare id's alias.
    let k_ab = ledger_core::event::message_key(2, a, b, "M-V2");
    assert_eq!(store.message_seqs(&k_ab).unwrap(), vec![r[0].seq], "{who}");
    let keys = projection::find_messages(store.as_ref(), "M-V2").unwrap();
    assert_eq!(keys.len(), 2, "{who}: {keys:?}");
    let path = format!("{a}/{b}/M-V2");
    assert_eq!(
        projection::find_messages(store.as_ref(), &path).unwrap(),
        vec![k_ab.to_string()],
        "{who}"
    );

    // Across requests sent together (one group, as the server's are): the first is
    // recorded; another with the same id and other content is refused; another with
    // the same content gets the first's receipt.
    let before = store.size();
    let (tx, rx) = std::sync::mpsc::channel();
    for (k, message) in ["M-X", "M-Y", "M-X"].into_iter().enumerate() {
        let tx = tx.clone();
        store.append_then(
            vec![ev("x1", message, "sent")],
            Box::new(move |r| tx.send((k, r)).unwrap()),
        );
    }
    drop(tx);
    let mut answers: Vec<_> = rx.iter().collect();
    answers.sort_by_key(|a| a.0);
    let first = answers[0].1.as_ref().unwrap()[0];
    assert_eq!((first.seq, first.duplicate), (before, false), "{who}");
    assert!(
        matches!(&answers[1].1, Err(StoreError::Conflict { id, seq }) if id == "x1" && *seq == before),
        "{who}: {:?}",
        answers[1].1
    );
    let again = answers[2].1.as_ref().unwrap()[0];
    assert_eq!(
        (again.seq, again.hash, again.duplicate),
        (first.seq, first.hash, true),
        "{who}"
    );
    assert_eq!(store.size(), before + 1, "{who}");

    // A request of more events than a group holds is recorded whole, in order, as
    // one request (the limit in bytes is held by the same rule, tested in
    // ledger-core's append module).
    let n = ledger_core::limits::BATCH_EVENTS_MAX + 3;
    let big: Vec<Event> = (0..n)
        .map(|i| ev(&format!("big-{i}"), &format!("BIG-{i}"), "sent"))
        .collect();
    let start = store.size();
    let r = store.append(big).unwrap();
    assert_eq!(r.len(), n, "{who}");
    assert!(
        r.iter()
            .enumerate()
            .all(|(i, r)| r.seq == start + i as u64 && !r.duplicate),
        "{who}"
    );
    assert_eq!(store.size(), start + n as u64, "{who}");
    chain(store.as_ref());

    // Projections read the store through the trait: the same facts from both.
    let facts = projection::replay(store.as_ref(), store.size(), &mut |_| {}).unwrap();
    hex::encode(facts_digest(&facts, HashAlg::Blake3))
}

/// What a log's witnessing needs from its store, kept by both: each new checkpoint
/// with its consistency proof from the size the witness holds (learned from a 409)
/// is cosigned by a witness, and a request from the wrong size is refused with the
/// witness's size (ledger-server's witnessing thread sends exactly these requests).
fn witnessed(h: &dyn Harness) {
    use ledger_core::cosignature::CosignerKey;
    use ledger_core::witness::{AddError, AddRequest, Witness, WitnessedLog};
    let who = h.name();
    let store = h.open();
    let state = tempfile::tempdir().unwrap();
    let witness = Witness::open(
        CosignerKey::from_seed("witness.example", [7; 32]),
        vec![WitnessedLog {
            key: store.verifier_key().current().clone(),
            key_from: 0,
            hash: store.info().hash,
        }],
        state.path(),
    )
    .unwrap();
    let policy = ledger_core::tlog_policy::Policy::parse(&format!(
        "log {}\nwitness w {}\nquorum w\n",
        store.verifier_key(),
        CosignerKey::from_seed("witness.example", [7; 32]).verifier()
    ))
    .unwrap();
    let mut held = 0;
    for round in 0..3 {
        let events = (0..=round * 3)
            .map(|i| ev(&format!("w{round}-{i}"), &format!("MW{round}"), "sent"))
            .collect();
        store.append(events).unwrap();
        // Each store signs on its own cadence (PostgreSQL: within a second).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let cp = loop {
            let cp = store.latest_checkpoint().unwrap();
            if cp.size == store.size() {
                break cp;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{who}: no checkpoint of size {} within 10 s",
                store.size()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // A log that starts from 0 each time: the first round is cosigned, later
        // ones get a 409 with the witness's size and are cosigned when resent.
        let first = AddRequest::from_store(store.as_ref(), 0, cp.size, &cp.note).unwrap();
        let line = match witness.add_checkpoint(first.to_body().as_bytes(), 1_700_000_000) {
            Ok(line) => {
                assert_eq!(held, 0, "{who}");
                line
            }
            Err(AddError::Conflict(size)) => {
                assert_eq!(size, held, "{who}: the 409 says what the witness holds");
                let again =
                    AddRequest::from_store(store.as_ref(), size, cp.size, &cp.note).unwrap();
                witness
                    .add_checkpoint(again.to_body().as_bytes(), 1_700_000_000)
                    .unwrap_or_else(|e| panic!("{who}: round {round}: {e}"))
            }
            Err(e) => panic!("{who}: round {round}: {e}"),
        };
        let cosigned = format!("{}{line}", cp.note);
        let v = policy
            .verify(&cosigned)
            .unwrap_or_else(|e| panic!("{who}: the cosigned checkpoint meets the policy: {e}"));
        assert_eq!(v.checkpoint.size, cp.size, "{who}");
        held = cp.size;
    }
}

#[test]
fn both_stores_behave_alike() {
    let fh = FileHarness::new();
    let file = suite(&fh);
    witnessed(&fh);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(common::test_db()) else {
        return;
    };
    let pgh = PgHarness::new(db.url());
    let pg = suite(&pgh);
    witnessed(&pgh);
    assert_eq!(
        pg, file,
        "the same events give the same facts on both stores"
    );
    rt.block_on(db.drop_db());
}
