//! Recovery never destroys what was acknowledged: a damaged frame with valid frames
//! after it, or one that a signed checkpoint or the index covers, is reported and
//! left alone, whatever else is missing (the index deleted, `reindex` running). A
//! true torn tail is saved aside and logged before it is cut.

use std::path::{Path, PathBuf};

use ledger_core::{Event, FileStore, HashAlg, InitOptions, Store, StoreError};

fn event(id: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"id":"{id}","type":"expired","message":"M-{id}","at":"2023-05-08T00:00:00Z",
               "reporter":{{"org":"974760673","system":"altinn"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// A closed store with `batches` appends of `per` events each (one signed checkpoint
/// per append): its temp dir and path.
fn closed_store(batches: usize, per: usize) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("l");
    FileStore::init(
        &path,
        &InitOptions {
            origin: "test.example/log".into(),
            hash: HashAlg::Blake3,
        },
    )
    .unwrap();
    let (s, _) = FileStore::open(&path).unwrap();
    for b in 0..batches {
        s.append((0..per).map(|i| event(&format!("b{b}-{i}"))).collect())
            .unwrap();
    }
    drop(s);
    (d, path)
}

fn segment(path: &Path) -> PathBuf {
    path.join("log").join("00000000000000000000.seg")
}

fn flip(file: &Path, at: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(file, &bytes).unwrap();
    bytes
}

fn verifies(path: &Path) -> bool {
    ledger_core::verify::verify_store(path, &Default::default(), &())
        .unwrap()
        .ok()
}

#[test]
fn a_damaged_frame_with_valid_frames_after_it_is_never_cut_without_the_index() {
    let (_d, path) = closed_store(1, 200);
    let seg = segment(&path);
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    let damaged = flip(&seg, len / 2);
    std::fs::remove_file(path.join("index.redb")).unwrap();
    let err = FileStore::open(&path).err().expect("must refuse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("refusing to cut"), "{text}");
    assert!(text.contains("valid record follows"), "{text}");
    assert!(
        std::fs::read(&seg).unwrap() == damaged,
        "nothing was changed"
    );
}

#[test]
fn reindex_never_cuts_what_the_index_it_replaces_knew() {
    let (_d, path) = closed_store(1, 200);
    let seg = segment(&path);
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    let damaged = flip(&seg, len / 2);
    let err = ledger_core::store::reindex(&path).expect_err("must refuse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(
        std::fs::read(&seg).unwrap() == damaged,
        "nothing was changed"
    );
    assert!(path.join("index.redb").exists(), "the old index is kept");
}

#[test]
fn a_damaged_last_entry_covered_by_a_signed_checkpoint_is_not_cut() {
    // The damage is in the very last frame, so no valid frame follows it; only the
    // signed checkpoints (the index is gone) say that it was acknowledged.
    let (_d, path) = closed_store(1, 20);
    let seg = segment(&path);
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    let damaged = flip(&seg, len - 3);
    std::fs::remove_file(path.join("index.redb")).unwrap();
    let err = FileStore::open(&path).err().expect("must refuse");
    let text = err.to_string();
    assert!(text.contains("refusing to cut"), "{text}");
    assert!(text.contains("signed checkpoint"), "{text}");
    assert!(std::fs::read(&seg).unwrap() == damaged);
    assert!(
        !verifies(&path),
        "verify must call it a fault, not a torn write"
    );
}

#[test]
fn a_torn_tail_is_saved_aside_and_logged_before_it_is_cut() {
    let (_d, path) = closed_store(1, 5);
    let seg = segment(&path);
    let len = std::fs::metadata(&seg).unwrap().len();
    let torn = [200u8, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'];
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);
    std::fs::remove_file(path.join("index.redb")).unwrap();
    let (s, report) = FileStore::open(&path).unwrap();
    let (_, offset, cut, _) = report.torn_tail.clone().expect("reported");
    assert_eq!((offset, cut), (len, torn.len() as u64));
    assert_eq!(s.size(), 5);
    drop(s);
    let log = std::fs::read_to_string(path.join("recovery.log")).unwrap();
    assert!(log.contains("cutting a torn last record"), "{log}");
    let saved: Vec<_> = std::fs::read_dir(path.join("recovery"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(std::fs::read(&saved[0]).unwrap(), torn);
    assert!(verifies(&path));
}

#[test]
fn a_damaged_checkpoint_in_the_middle_is_reported_never_cut() {
    let (_d, path) = closed_store(10, 3);
    let ck = path.join("checkpoints.log");
    let len = std::fs::metadata(&ck).unwrap().len() as usize;
    let damaged = flip(&ck, len / 2);
    let err = ledger_core::store::reindex(&path).expect_err("must refuse");
    let text = err.to_string();
    assert!(text.contains("checkpoints.log"), "{text}");
    assert!(text.contains("refusing to cut"), "{text}");
    assert!(
        std::fs::read(&ck).unwrap() == damaged,
        "nothing was changed"
    );
    let report = ledger_core::verify::verify_store(&path, &Default::default(), &()).unwrap();
    assert!(!report.ok(), "verify must find the damage");
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.place.contains("checkpoints.log")),
        "{:?}",
        report.faults
    );
}

#[test]
fn a_damaged_index_is_an_error_not_a_panic_and_reindex_rebuilds_it() {
    let (_d, path) = closed_store(3, 50);
    let idx = path.join("index.redb");
    let len = std::fs::metadata(&idx).unwrap().len() as usize;
    // Overwrite the whole header region and some pages: redb cannot make sense of it.
    let mut bytes = std::fs::read(&idx).unwrap();
    for b in bytes.iter_mut().take(len.min(4096)) {
        *b = 0xA5;
    }
    std::fs::write(&idx, &bytes).unwrap();
    let opened = std::panic::catch_unwind(|| FileStore::open(&path).map(|_| ()));
    let err = opened.expect("no panic").expect_err("must refuse");
    assert!(err.to_string().contains("index.redb"), "{err}");
    assert!(err.to_string().contains("reindex"), "{err}");
    let (old, _new) = ledger_core::store::reindex(&path).unwrap();
    assert_eq!(old, None);
    let (s, _) = FileStore::open(&path).unwrap();
    assert_eq!(s.size(), 150);
    assert_eq!(s.event_seq("b2-49").unwrap(), Some(149));
    drop(s);
    assert!(verifies(&path));
    // The damaged index is kept for whoever investigates, never deleted.
    assert!(
        std::fs::read_dir(&path).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("damaged"))
    );
}

#[test]
fn a_segment_cut_short_while_it_was_being_created_is_ignored() {
    // A crash in the middle of a roll leaves only the new segment's temporary file.
    let (_d, path) = closed_store(1, 5);
    std::fs::write(
        path.join("log").join("00000000000000000005.seg.new"),
        b"LDGR",
    )
    .unwrap();
    let (s, report) = FileStore::open(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s.size(), 5);
    s.append(vec![event("after")]).unwrap();
    drop(s);
    assert!(verifies(&path));
}
