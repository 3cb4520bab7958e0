//! Which engine a ledger directory uses, and opening it. A directory made by
//! `ledger init` holds the embedded store; one made by `ledger init --store
//! postgres://…` holds the signing key and `store.json`, which names the database. The
//! commands and the server open either through [`open`] and see one [`Engine`].

use std::io::Write;
use std::path::Path;

use ledger_core::store::{EntryVisitor, LedgerInfo, SignedCheckpoint, StoreError};
use ledger_core::{Event, FileStore, Hash, InitOptions, Receipt, SigningKey, Store, VerifierKey};
use serde::{Deserialize, Serialize};

use crate::PgStore;

/// The file in a ledger directory that names its database.
pub const STORE_FILE: &str = "store.json";
/// Overrides the URL in `store.json` (a password need not sit in a file).
pub const URL_ENV: &str = "LEDGER_PG_URL";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    engine: String,
    url: String,
}

/// An open ledger, on either engine.
pub enum Engine {
    /// The embedded store (segment files and redb, in the directory).
    File(Box<FileStore>),
    /// PostgreSQL.
    Postgres(PgStore),
}

/// Creates `path` (it must not exist) with `bytes`, synced, with `mode`.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let mut f = opts
        .open(path)
        .map_err(StoreError::io(format!("create {}", path.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io(format!("write {}", path.display())))
}

/// Creates a ledger whose log lives in the database at `url`: the schema and the
/// ledger's identity there; the signing key, the verifier key and `store.json` in
/// `dir` (which must not exist or be empty).
pub fn init_postgres(dir: &Path, url: &str, opts: &InitOptions) -> Result<VerifierKey, StoreError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(StoreError::io(format!("read {}", dir.display())))?
            .next()
            .is_some()
    {
        return Err(StoreError::AlreadyExists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(StoreError::io(format!("create {}", dir.display())))?;
    let key = SigningKey::generate(&opts.origin)?;
    let info = LedgerInfo {
        format: u64::from(ledger_core::event::FORMAT_LATEST),
        origin: opts.origin.clone(),
        hash: opts.hash,
    };
    PgStore::init(url, &info, &key)?;
    let verifier = key.verifier();
    write_new(
        &dir.join("signing.key"),
        format!("{}\n", key.to_secret_string()).as_bytes(),
        0o600,
    )?;
    write_new(
        &dir.join("verifier.key"),
        format!("{verifier}\n").as_bytes(),
        0o644,
    )?;
    let file = StoreFile {
        engine: "postgres".into(),
        url: url.to_string(),
    };
    let mut json = serde_json::to_vec_pretty(&file).expect("serializable");
    json.push(b'\n');
    // Last: a directory without it is not a ledger. It may hold a password: 0600.
    write_new(&dir.join(STORE_FILE), &json, 0o600)?;
    Ok(verifier)
}

/// Raises the format of the ledger in `dir` to `to` (schemas/FORMAT.md §1), on
/// whichever engine it uses; returns the format it had. Nothing in the log changes:
/// the format says which entries the ledger may take from now on.
pub fn upgrade(dir: &Path, to: u64) -> Result<u64, StoreError> {
    let path = dir.join(STORE_FILE);
    if !path.exists() {
        return FileStore::upgrade(dir, to);
    }
    let text = std::fs::read(&path).map_err(StoreError::io(format!("read {}", path.display())))?;
    let file: StoreFile = serde_json::from_slice(&text)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    let url = std::env::var(URL_ENV).unwrap_or(file.url);
    PgStore::upgrade(&url, to)
}

/// Opens the ledger in `dir` on whichever engine it uses; the second value lists
/// what opening repaired (the embedded store's recovery report).
pub fn open(dir: &Path) -> Result<(Engine, Vec<String>), StoreError> {
    let path = dir.join(STORE_FILE);
    if !path.exists() {
        let (store, report) = FileStore::open(dir)?;
        return Ok((Engine::File(Box::new(store)), report.lines()));
    }
    let text = std::fs::read(&path).map_err(StoreError::io(format!("read {}", path.display())))?;
    let file: StoreFile = serde_json::from_slice(&text)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    if file.engine != "postgres" {
        return Err(StoreError::Corrupt(format!(
            "{}: unknown engine {:?}",
            path.display(),
            file.engine
        )));
    }
    let url = std::env::var(URL_ENV).unwrap_or(file.url);
    let key_path = dir.join("signing.key");
    let key_text = std::fs::read_to_string(&key_path)
        .map_err(StoreError::io(format!("read {}", key_path.display())))?;
    let key = SigningKey::from_secret_string(&key_text)?;
    Ok((Engine::Postgres(PgStore::open(&url, key)?), Vec::new()))
}

impl Engine {
    fn store(&self) -> &dyn Store {
        match self {
            Engine::File(s) => s.as_ref(),
            Engine::Postgres(s) => s,
        }
    }

    /// The embedded store, if that is the engine.
    pub fn as_file(&self) -> Option<&FileStore> {
        match self {
            Engine::File(s) => Some(s.as_ref()),
            Engine::Postgres(_) => None,
        }
    }

    /// The engine's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::File(_) => "embedded",
            Engine::Postgres(_) => "postgres",
        }
    }
}

impl Store for Engine {
    fn info(&self) -> &LedgerInfo {
        self.store().info()
    }
    fn verifier_key(&self) -> &ledger_core::KeyHistory {
        self.store().verifier_key()
    }
    fn append(&self, events: Vec<Event>) -> Result<Vec<Receipt>, StoreError> {
        self.store().append(events)
    }
    fn append_then(&self, events: Vec<Event>, on_commit: ledger_core::store::CommitCallback) {
        self.store().append_then(events, on_commit)
    }
    fn is_poisoned(&self) -> bool {
        self.store().is_poisoned()
    }
    fn close(&self) {
        self.store().close()
    }
    fn size(&self) -> u64 {
        self.store().size()
    }
    fn scan(&self, from: u64, to: u64, f: &mut EntryVisitor<'_>) -> Result<(), StoreError> {
        self.store().scan(from, to, f)
    }
    fn message_seqs(&self, message: &str) -> Result<Vec<u64>, StoreError> {
        self.store().message_seqs(message)
    }
    fn event_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.store().event_seq(id)
    }
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.store().subtree(level, index)
    }
    fn latest_checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        self.store().latest_checkpoint()
    }
    fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.store().checkpoints(from_size, limit)
    }
}
