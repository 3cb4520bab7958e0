//! `ledger migrate`: copies a ledger between engines byte for byte — the same
//! entries, the same signed checkpoints, the same key — and checks the copy.

use std::path::Path;

use ledger_core::merkle::Frontier;
use ledger_core::projection::{self, facts_digest};
use ledger_core::rotation::{KEY_ENTRY_V, KeyAnnouncement, KeyHistory, RotationReason};
use ledger_core::store::{Import, all_checkpoints};
use ledger_core::store::{LedgerInfo, StoreError};
use ledger_core::{Checkpoint, SigningKey, Store, entry};
use tokio_postgres::Config;

use crate::engine;
use crate::migrate;

/// What a copy moved, and what the check compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Entries copied.
    pub entries: u64,
    /// Signed checkpoints copied.
    pub checkpoints: u64,
    /// Projection facts digest (hex), equal on both sides.
    pub facts_digest: String,
    /// Entries of the source after its newest checkpoint, not restored: no signature
    /// covers them (a restore only; a migration copies them).
    pub beyond_checkpoint: u64,
}

/// Entries per chunk read from the source.
const CHUNK: u64 = 10_000;

fn key_files(from_dir: &Path, to_dir: &Path) -> Result<(), StoreError> {
    for f in ["signing.key", "verifier.key"] {
        let to = to_dir.join(f);
        std::fs::copy(from_dir.join(f), &to)
            .map_err(StoreError::io(format!("copy {f} to {}", to_dir.display())))?;
    }
    private(&to_dir.join("signing.key"))
}

/// Only the owner may read a signing key.
fn private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(StoreError::io(format!("chmod {}", path.display())))
}

/// Copies the ledger in `from_dir` (either engine) into a new PostgreSQL ledger at
/// `url`, whose directory (key and `store.json`) is `into`; then checks the copy.
pub fn to_postgres(
    from_dir: &Path,
    url: &str,
    into: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, StoreError> {
    let (source, _) = engine::open(from_dir)?;
    let info = source.info().clone();
    let size = source.size();
    let checkpoints = all_checkpoints(&source)?;
    let cfg: Config = url
        .parse()
        .map_err(|e| StoreError::Database(format!("not a postgres:// URL: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreError::io("start a runtime"))?;
    let db = |e: tokio_postgres::Error| StoreError::Database(e.to_string());
    rt.block_on(async {
        let (mut c, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(db)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        migrate::migrate(&mut c)
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        // All or nothing: one transaction for the whole copy.
        let tx = c.transaction().await.map_err(db)?;
        let taken: i64 = tx.query_one("SELECT count(*) FROM ledger_info", &[]).await.map_err(db)?.get(0);
        if taken > 0 {
            return Err(StoreError::Database("the target database already holds a ledger".into()));
        }
        tx.execute(
            "INSERT INTO ledger_info (origin, hash, format, verifier_key) VALUES ($1, $2, $3, $4)",
            &[&info.origin, &info.hash.name(), &(info.format as i32), &source.verifier_key().to_string()],
        )
        .await
        .map_err(db)?;
        let alg = info.hash;
        let mut frontier = Frontier::new(alg);
        let mut prev = alg.genesis(&info.origin);
        let mut at = 0u64;
        while at < size {
            let end = size.min(at + CHUNK);
            let (mut seqs, mut ids, mut leaves, mut prevs, mut bytes) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut idx_m, mut idx_s) = (Vec::new(), Vec::new());
            let (mut nl, mut ni, mut nh) = (Vec::new(), Vec::new(), Vec::new());
            let mut bad = None;
            source.scan(at, end, &mut |seq, b| {
                let p = entry::parse_entry(b).map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                if p.prev != prev {
                    bad = Some(seq);
                }
                let keys = if p.is_key_entry() {
                    // A key announcement: no event id (the column wants one that no
                    // event can have) and no message to index.
                    entry::check_key_entry(b, &info.origin)
                        .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                    entry::IndexKeys {
                        id: crate::store::key_entry_id(seq),
                        message: String::new(),
                        new_message: None,
                    }
                } else {
                    entry::index_keys(p.event, p.v)
                        .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?
                };
                let leaf = alg.leaf(b);
                frontier.push(leaf, |level, index, h| {
                    if level >= 8 {
                        nl.push(level as i32);
                        ni.push(index as i64);
                        nh.push(h.to_vec());
                    }
                });
                seqs.push(seq as i64);
                ids.push(keys.id);
                leaves.push(leaf.to_vec());
                prevs.push(prev.to_vec());
                bytes.push(b.to_vec());
                let messages = std::iter::once(keys.message)
                    .chain(keys.new_message)
                    .filter(|m| !m.is_empty());
                for m in messages {
                    // A resend's two messages differ in id, so their aliases do.
                    if let Some(a) = ledger_core::event::bare_alias(&m) {
                        idx_m.push(a);
                        idx_s.push(seq as i64);
                    }
                    idx_m.push(m);
                    idx_s.push(seq as i64);
                }
                prev = leaf;
                Ok(())
            })?;
            if let Some(seq) = bad {
                return Err(StoreError::Corrupt(format!("the source's entry {seq} does not extend the one before it; run `ledger verify`")));
            }
            tx.execute(
                "INSERT INTO entries (seq, event_id, leaf, prev, bytes)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])",
                &[&seqs, &ids, &leaves, &prevs, &bytes],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "INSERT INTO message_index (message, seq) SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                &[&idx_m, &idx_s],
            )
            .await
            .map_err(db)?;
            if !nl.is_empty() {
                tx.execute(
                    "INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM UNNEST($1::integer[], $2::bigint[], $3::bytea[])",
                    &[&nl, &ni, &nh],
                )
                .await
                .map_err(db)?;
            }
            at = end;
            progress(at, size);
        }
        for (s, note) in &checkpoints {
            tx.execute("INSERT INTO checkpoints (size, note) VALUES ($1, $2)", &[&(*s as i64), note])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    })?;
    // The new ledger's directory: the same key, and the database's address.
    std::fs::create_dir_all(into).map_err(StoreError::io(format!("create {}", into.display())))?;
    key_files(from_dir, into)?;
    let mut json =
        serde_json::to_vec_pretty(&serde_json::json!({"engine": "postgres", "url": url}))
            .expect("serializable");
    json.push(b'\n');
    engine::write_new(&into.join(engine::STORE_FILE), &json, 0o600)?;
    check(&source, into, size, &checkpoints, 0)
}

/// Copies the ledger in `from_dir` (either engine) into a new embedded ledger in
/// `into`; then checks the copy.
pub fn to_embedded(
    from_dir: &Path,
    into: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, StoreError> {
    let (source, _) = engine::open(from_dir)?;
    let size = source.size();
    copy_to_embedded(
        &source,
        size,
        into,
        &|to| key_files(from_dir, to),
        None,
        progress,
    )
}

/// `ledger restore`: a new embedded ledger in `into` holding the log `source` (a
/// backup, an export bundle or a mirror, read as a checked `Snapshot`) up to its
/// newest signed checkpoint, which then goes on appending and signing with
/// `signing_key` (the text of `signing.key`). The key must be the one that signed the
/// source's checkpoints. Entries after the newest checkpoint are not restored: no
/// signature covers them, so whoever could write the source could have made them, and
/// the restored ledger would sign them.
pub fn restore(
    source: &dyn Store,
    signing_key: &str,
    into: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, StoreError> {
    let key = ledger_core::SigningKey::from_secret_string(signing_key.trim())?;
    let history = source.verifier_key();
    if &key.verifier() != history.current() {
        return Err(StoreError::Corrupt(format!(
            "the signing key ({}) is not the key that signs this log's newest checkpoints ({}): \
             restore with the ledger's own signing.key, or with --new-key if it is lost",
            key.verifier(),
            history.current()
        )));
    }
    let write_keys = |to: &Path| write_key_files(to, signing_key.trim(), history);
    let signed = source.latest_checkpoint()?.size;
    let mut report = copy_to_embedded(source, signed, into, &write_keys, None, progress)?;
    report.beyond_checkpoint = source.size() - signed;
    Ok(report)
}

/// `ledger restore --new-key`: [`restore`] for a ledger whose signing key is lost or
/// must no longer be used. The copy ends with one more entry, a key announcement
/// (FORMAT.md §17) naming a new key, and one more checkpoint, of the size that
/// includes it, signed by the new key; its `verifier.key` is the source's key history
/// with the new key after it, and its `signing.key` the new key. Returns the report
/// and the new key history.
pub fn restore_with_new_key(
    source: &dyn Store,
    reason: RotationReason,
    into: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(CopyReport, KeyHistory), StoreError> {
    let info = source.info();
    let key = SigningKey::generate(&info.origin)?;
    let signed = source.latest_checkpoint()?.size;
    let history = source
        .verifier_key()
        .then(key.verifier(), signed + 1)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (prev, last_recorded_at) = match signed {
        0 => (info.hash.genesis(&info.origin), String::new()),
        n => {
            let bytes = source.entry(n - 1)?;
            let p = entry::parse_envelope(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("entry {}: {e}", n - 1)))?;
            (info.hash.leaf(&bytes), p.recorded_at.to_string())
        }
    };
    // The ledger's clock never steps back along the log (FORMAT.md §5).
    let recorded_at =
        entry::format_recorded_at(time::OffsetDateTime::now_utc()).max(last_recorded_at);
    let announcement = KeyAnnouncement {
        key: key.verifier(),
        reason,
    };
    let bytes = entry::entry_bytes(
        signed,
        &prev,
        &recorded_at,
        KEY_ENTRY_V,
        &announcement.canonical_bytes(),
    );
    let write_keys = |to: &Path| write_key_files(to, &key.to_secret_string(), &history);
    let rotation = Rotation {
        entry: bytes,
        key: &key,
    };
    let mut report =
        copy_to_embedded(source, signed, into, &write_keys, Some(&rotation), progress)?;
    report.beyond_checkpoint = source.size() - signed;
    Ok((report, history))
}

/// The key entry a copy ends with, and the new key that signs the size including it.
struct Rotation<'a> {
    entry: Vec<u8>,
    key: &'a SigningKey,
}

/// A restored ledger's key files: `signing.key` (the secret string, owner-only) and
/// `verifier.key` (the key history), each synced.
fn write_key_files(to: &Path, secret: &str, history: &KeyHistory) -> Result<(), StoreError> {
    write_synced(&to.join("signing.key"), format!("{secret}\n").as_bytes())?;
    private(&to.join("signing.key"))?;
    write_synced(&to.join("verifier.key"), format!("{history}\n").as_bytes())
}

/// Writes `bytes` over `path` and syncs it: a key file must survive a power loss
/// right after the restore says it is done.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(StoreError::io(format!("write {}", path.display())))
}

/// Copies `source` into a new embedded ledger in `into`, whose key files `keys`
/// writes; then checks the copy.
fn copy_to_embedded(
    source: &dyn Store,
    size: u64,
    into: &Path,
    keys: &dyn Fn(&Path) -> Result<(), StoreError>,
    rotation: Option<&Rotation<'_>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, StoreError> {
    let mut info: LedgerInfo = source.info().clone();
    if rotation.is_some() {
        info.format = info.format.max(u64::from(KEY_ENTRY_V));
    }
    let checkpoints: Vec<(u64, String)> = all_checkpoints(source)?
        .into_iter()
        .filter(|(s, _)| *s <= size)
        .collect();
    let mut import = Import::create(into, &info)?;
    // The same key as the source, and its signed checkpoints instead of the new one.
    keys(into)?;
    for (_, note) in &checkpoints {
        import.checkpoint(note);
    }
    let mut frontier = Frontier::new(info.hash);
    let mut at = 0u64;
    while at < size {
        let end = size.min(at + CHUNK);
        source.scan(at, end, &mut |seq, b| {
            if rotation.is_some() {
                frontier.push(info.hash.leaf(b), |_, _, _| {});
            }
            import.entry(seq, b)
        })?;
        at = end;
        progress(at, size);
    }
    if let Some(r) = rotation {
        import.entry(size, &r.entry)?;
        frontier.push(info.hash.leaf(&r.entry), |_, _, _| {});
        import.checkpoint(&r.key.sign(&Checkpoint {
            origin: info.origin.clone(),
            size: size + 1,
            root: frontier.root(),
        }));
    }
    import.finish()?;
    check(
        source,
        into,
        size,
        &checkpoints,
        u64::from(rotation.is_some()),
    )
}

/// Opens the copy and compares: size, every signed checkpoint, the chain (every
/// entry's bytes), and the projection facts digest.
fn check(
    source: &dyn Store,
    into: &Path,
    size: u64,
    checkpoints: &[(u64, String)],
    rotated: u64,
) -> Result<CopyReport, StoreError> {
    let (copy, _) = engine::open(into)?;
    let differs = |what: String| {
        Err(StoreError::Corrupt(format!(
            "the copy differs from the source: {what}"
        )))
    };
    if copy.size() != size + rotated {
        return differs(format!("{} entries, not {}", copy.size(), size + rotated));
    }
    let theirs = all_checkpoints(&copy)?;
    // A rotated copy has one checkpoint more, by the new key (its open checked it).
    if theirs.len() as u64 != checkpoints.len() as u64 + rotated
        || theirs[..checkpoints.len()] != *checkpoints
    {
        return differs("its signed checkpoints".into());
    }
    let alg = source.info().hash;
    let mut at = 0;
    while at < size {
        let end = size.min(at + CHUNK);
        let mut a = Vec::new();
        source.scan(at, end, &mut |_, b| {
            a.push(alg.leaf(b));
            Ok(())
        })?;
        let mut i = 0;
        let mut mismatch = None;
        copy.scan(at, end, &mut |seq, b| {
            if a.get(i) != Some(&alg.leaf(b)) && mismatch.is_none() {
                mismatch = Some(seq);
            }
            i += 1;
            Ok(())
        })?;
        if let Some(seq) = mismatch {
            return differs(format!("entry {seq}"));
        }
        at = end;
    }
    let facts = |s: &dyn Store| {
        projection::replay(s, size, &mut |_| {})
            .map(|f| facts_digest(&f, alg))
            .map_err(|e| StoreError::Corrupt(format!("projecting for the check: {e}")))
    };
    let (d1, d2) = (facts(source)?, facts(&copy)?);
    if d1 != d2 {
        return differs("its projection facts".into());
    }
    copy.close();
    Ok(CopyReport {
        entries: size,
        checkpoints: checkpoints.len() as u64,
        facts_digest: hex::encode(d1),
        beyond_checkpoint: 0,
    })
}
