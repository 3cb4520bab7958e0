//! `PgStore`: the ledger's log in PostgreSQL, behind the same `Store` trait as the
//! embedded store, so every command and the server work unchanged.
//!
//! One writer thread commits requests in groups, one transaction per group: the
//! entries, their message index rows, the Merkle nodes they complete and, when due,
//! a signed checkpoint (entries and index rows by binary COPY). Receipts are
//! answered only after COMMIT. The chain is also guarded by the schema (a gap or a
//! fork is refused by a trigger, a second writer's entry by the seq key).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::redact;
use ledger_core::checkpoint::check_origin;
use ledger_core::entry;
use ledger_core::merkle::{self, Frontier, SubtreeSource};
use ledger_core::store::append::{
    self, AppendCore, AppendRequest, GroupLimits, NextGroup, Recorded, RecordedIds, Requests,
};
use ledger_core::store::{EntryVisitor, LedgerInfo, SignedCheckpoint, StoreError};
use ledger_core::{Checkpoint, Event, Hash, HashAlg, KeyHistory, Receipt, SigningKey, Store};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

use crate::migrate;

/// Merkle nodes from this level up are stored; smaller subtrees are hashed from
/// the leaves (the schema's `merkle_nodes` check says the same).
const NODE_LEVEL_MIN: u32 = 8;
/// Entries read per query when scanning.
const SCAN_CHUNK: u64 = 10_000;
/// Readers' connections, at most (the server reads on tokio's blocking pool).
const READERS: usize = 8;

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    })
}

fn migrate_err(e: migrate::MigrateError) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Connects, with the connection driven on the store's runtime.
async fn connect(cfg: &Config) -> Result<Client, StoreError> {
    let (client, conn) = cfg.connect(NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ledger-pg")
        .enable_all()
        .build()
        .map_err(StoreError::io("start the PostgreSQL client runtime"))
}

fn parse_url(url: &str) -> Result<Config, StoreError> {
    url.parse().map_err(|e| {
        StoreError::Database(format!("{:?} is not a postgres:// URL: {e}", redact(url)))
    })
}

struct Shared {
    info: LedgerInfo,
    verifier: KeyHistory,
    rt: tokio::runtime::Runtime,
    /// Readers' connections (deadpool: a broken connection is replaced on checkout).
    readers: deadpool_postgres::Pool,
    size: AtomicU64,
    poisoned: AtomicBool,
    /// This process holds the writer lease (its `size` is then the truth; other
    /// processes ask the database).
    leader: AtomicBool,
}

impl Shared {
    /// A readers' connection from the pool (after a database restart, a new one).
    async fn reader(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.readers
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("the database cannot be reached: {e}")))
    }

    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.rt.block_on(f)
    }
}

/// The `entries.event_id` of a key entry (FORMAT.md §17), which has none: unique,
/// and no event's id key can be it (none starts with U+001F).
pub(crate) fn key_entry_id(seq: u64) -> String {
    format!("\u{1f}key\u{1f}{seq}")
}

/// The ledger's log in PostgreSQL.
pub struct PgStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PgStore {
    /// Creates the ledger's schema in the (empty) database at `url` and records its
    /// identity; the signing key stays with the caller (in the ledger directory).
    /// Raises the ledger's format to `to` (never lowers it); returns the format it
    /// had. Running servers keep the format they read at start: restart them.
    pub fn upgrade(url: &str, to: u64) -> Result<u64, StoreError> {
        let cfg = parse_url(url)?;
        let rt = runtime()?;
        rt.block_on(async {
            let mut c = connect(&cfg).await?;
            let tx = c.transaction().await.map_err(db)?;
            let row = tx
                .query_opt("SELECT format FROM ledger_info FOR UPDATE", &[])
                .await
                .map_err(db)?
                .ok_or_else(|| StoreError::Database("ledger_info is empty".into()))?;
            let old = row.get::<_, i32>(0) as u64;
            if old < to {
                tx.execute("UPDATE ledger_info SET format = $1", &[&(to as i32)])
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(old)
        })
    }

    pub fn init(url: &str, info: &LedgerInfo, key: &SigningKey) -> Result<(), StoreError> {
        check_origin(&info.origin)?;
        let cfg = parse_url(url)?;
        let rt = runtime()?;
        rt.block_on(async {
            let mut c = connect(&cfg).await?;
            migrate::migrate(&mut c).await.map_err(migrate_err)?;
            let tx = c.transaction().await.map_err(db)?;
            let taken: i64 = tx
                .query_one("SELECT count(*) FROM ledger_info", &[])
                .await
                .map_err(db)?
                .get(0);
            if taken > 0 {
                return Err(StoreError::Database(format!(
                    "{} already holds a ledger; refusing to create another over it",
                    redact(url)
                )));
            }
            tx.execute(
                "INSERT INTO ledger_info (origin, hash, format, verifier_key) VALUES ($1, $2, $3, $4)",
                &[
                    &info.origin,
                    &info.hash.name(),
                    &(info.format as i32),
                    &key.verifier().to_string(),
                ],
            )
            .await
            .map_err(db)?;
            let empty = Checkpoint {
                origin: info.origin.clone(),
                size: 0,
                root: info.hash.empty(),
            };
            tx.execute(
                "INSERT INTO checkpoints (size, note) VALUES (0, $1)",
                &[&key.sign(&empty)],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    /// Opens the ledger in the database at `url` with its signing key: checks the
    /// schema (migrating it if this code is newer), rebuilds the chain state from the
    /// committed tail, signs a checkpoint if the newest one is behind, and starts the
    /// writer.
    pub fn open(url: &str, key: SigningKey) -> Result<PgStore, StoreError> {
        let cfg = parse_url(url)?;
        let rt = runtime()?;
        let (_first, info, verifier) = rt.block_on(async {
            let mut c = connect(&cfg).await?;
            if migrate::schema_version(&c).await.map_err(migrate_err)? == 0 {
                return Err(StoreError::Database(format!(
                    "{} holds no ledger (create one with `ledger init --store postgres://…`)",
                    redact(url)
                )));
            }
            migrate::migrate(&mut c).await.map_err(migrate_err)?;
            let row = c
                .query_opt(
                    "SELECT origin, hash, format, verifier_key FROM ledger_info",
                    &[],
                )
                .await
                .map_err(db)?
                .ok_or_else(|| StoreError::Database("ledger_info is empty".into()))?;
            let (origin, hash, format, vk): (String, String, i32, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let hash: HashAlg = hash
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("ledger_info.hash: {e}")))?;
            // Format 3: format 2 with key announcements (FORMAT.md §17).
            let latest = i32::from(ledger_core::rotation::KEY_ENTRY_V);
            if !(1..=latest).contains(&format) {
                return Err(StoreError::Corrupt(format!(
                    "ledger_info.format {format} is not supported (this build reads formats 1 to {latest})"
                )));
            }
            let verifier: KeyHistory = vk
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("ledger_info.verifier_key: {e}")))?;
            Ok((
                c,
                LedgerInfo {
                    format: format as u64,
                    origin,
                    hash,
                },
                verifier,
            ))
        })?;
        let readers = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            cfg.clone(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        ))
        .max_size(READERS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Database(format!("the connection pool: {e}")))?;
        if key.name() != info.origin || &key.verifier() != verifier.current() {
            return Err(StoreError::Corrupt(format!(
                "the signing key is {:?}'s, but the database's ledger is {:?} with another key",
                key.name(),
                info.origin
            )));
        }
        let shared = Arc::new(Shared {
            info,
            verifier,
            rt,
            readers,
            size: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        });
        let mut lease = Lease {
            shared: shared.clone(),
            cfg,
            key,
            writer: None,
        };
        // A process alone on its database is the writer from the start.
        lease.try_acquire();
        let (tx, rx) = mpsc::channel::<AppendRequest>();
        let handle = std::thread::Builder::new()
            .name("ledger-pg-writer".into())
            .spawn(move || lease.run(Requests::new(rx, GroupLimits::default())))
            .map_err(StoreError::io("start the writer thread"))?;
        Ok(PgStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    async fn leaves(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let c = self.shared.reader().await?;
        let rows = c
            .query(
                "SELECT leaf FROM entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                &[&(from as i64), &(to as i64)],
            )
            .await
            .map_err(db)?;
        rows.iter().map(|r| hash32(r.get::<_, &[u8]>(0))).collect()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn hash32(b: &[u8]) -> Result<Hash, StoreError> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("a stored hash of {} bytes", b.len())))
}

impl Store for PgStore {
    fn info(&self) -> &LedgerInfo {
        &self.shared.info
    }

    fn verifier_key(&self) -> &KeyHistory {
        &self.shared.verifier
    }

    fn append(&self, events: Vec<Event>) -> Result<Vec<Receipt>, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.append_then(
            events,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().map_err(|_| StoreError::Poisoned)?
    }

    fn append_then(&self, events: Vec<Event>, on_commit: ledger_core::store::CommitCallback) {
        append::hand_over(events, on_commit, |r| {
            if self.shared.poisoned.load(Ordering::Acquire) {
                return Err(StoreError::Poisoned);
            }
            match self.tx.lock().expect("lock").as_ref() {
                Some(tx) => tx.send(r).map_err(|_| StoreError::Poisoned),
                None => Err(StoreError::Poisoned),
            }
        });
    }

    fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.tx.lock().expect("lock").take();
        if let Some(h) = self.writer.lock().expect("lock").take() {
            let _ = h.join();
        }
    }

    fn size(&self) -> u64 {
        if self.shared.leader.load(Ordering::Acquire) {
            return self.shared.size.load(Ordering::Acquire);
        }
        // Another process writes: the committed tail is in the database.
        let asked = self.shared.block_on(async {
            let c = self.shared.reader().await?;
            let n: i64 = c
                .query_one("SELECT coalesce(max(seq) + 1, 0) FROM entries", &[])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        });
        match asked {
            Ok(n) => {
                self.shared.size.fetch_max(n, Ordering::AcqRel);
                n
            }
            Err(_) => self.shared.size.load(Ordering::Acquire),
        }
    }

    fn scan(&self, from: u64, to: u64, f: &mut EntryVisitor<'_>) -> Result<(), StoreError> {
        let to = to.min(self.size());
        let mut at = from;
        while at < to {
            let end = to.min(at + SCAN_CHUNK);
            let rows = self.shared.block_on(async {
                let c = self.shared.reader().await?;
                c.query(
                    "SELECT seq, bytes FROM entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                    &[&(at as i64), &(end as i64)],
                )
                .await
                .map_err(db)
            })?;
            for r in rows {
                let seq: i64 = r.get(0);
                if seq as u64 != at {
                    return Err(StoreError::Corrupt(format!(
                        "entries: expected seq {at}, found {seq}"
                    )));
                }
                f(at, r.get::<_, &[u8]>(1))?;
                at += 1;
            }
            if at < end {
                return Err(StoreError::Corrupt(format!("entries: seq {at} is missing")));
            }
        }
        Ok(())
    }

    fn message_seqs(&self, message: &str) -> Result<Vec<u64>, StoreError> {
        let size = self.size() as i64;
        self.shared.block_on(async {
            let c = self.shared.reader().await?;
            let rows = c
                .query(
                    "SELECT seq FROM message_index WHERE message = $1 AND seq < $2 ORDER BY seq",
                    &[&message, &size],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }

    fn event_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.shared.block_on(async {
            let c = self.shared.reader().await?;
            let row = c
                .query_opt("SELECT seq FROM entries WHERE event_id = $1", &[&id])
                .await
                .map_err(db)?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.check_size((index + 1) << level)?;
        let alg = self.shared.info.hash;
        self.shared.block_on(async {
            if level >= NODE_LEVEL_MIN {
                let c = self.shared.reader().await?;
                let row = c
                    .query_opt(
                        "SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2",
                        &[&(level as i32), &(index as i64)],
                    )
                    .await
                    .map_err(db)?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("merkle_nodes lacks node {level}/{index}"))
                    })?;
                return hash32(row.get::<_, &[u8]>(0));
            }
            let leaves = self.leaves(index << level, (index + 1) << level).await?;
            if leaves.len() as u64 != 1 << level {
                return Err(StoreError::Corrupt(format!(
                    "entries {}..{} are incomplete",
                    index << level,
                    (index + 1) << level
                )));
            }
            Ok(merkle::root_of(alg, &leaves))
        })
    }

    fn latest_checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        self.shared.block_on(async {
            let c = self.shared.reader().await?;
            let r = c
                .query_one(
                    "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(SignedCheckpoint {
                size: r.get::<_, i64>(0) as u64,
                note: r.get(1),
            })
        })
    }

    fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.shared.block_on(async {
            let c = self.shared.reader().await?;
            let rows = c
                .query(
                    "SELECT size, note FROM checkpoints WHERE size >= $1 ORDER BY size LIMIT $2",
                    &[&(from_size as i64), &(limit as i64)],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| SignedCheckpoint {
                    size: r.get::<_, i64>(0) as u64,
                    note: r.get(1),
                })
                .collect())
        })
    }
}

/// A fixed key for the writer lease (`pg_try_advisory_lock`): one ledger per database,
/// so one key. The lease is held by the writer's session: when its process dies, the
/// database ends the session and frees the lease for another process.
const LEASE_KEY: i64 = 0x6c65_6467_6572_4c45; // "ledgerLE"
/// How often a process without the lease tries to take it.
const LEASE_RETRY: Duration = Duration::from_millis(250);

/// The writer thread: holds the lease (and then a `Writer`), or tries to take it.
struct Lease {
    shared: Arc<Shared>,
    cfg: Config,
    key: SigningKey,
    writer: Option<Writer>,
}

impl Lease {
    /// Takes the lease if it is free: a session of its own, then the chain state as
    /// the last writer committed it.
    fn try_acquire(&mut self) {
        if self.writer.is_some() {
            return;
        }
        let shared = self.shared.clone();
        let got = shared.block_on(async {
            let c = connect(&self.cfg).await?;
            let held: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY])
                .await
                .map_err(db)?
                .get(0);
            Ok(held.then_some(c))
        });
        let client = match got {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                eprintln!("ledger-pg: cannot reach the database to take the writer lease: {e}");
                return;
            }
        };
        let key = SigningKey::from_secret_string(&self.key.to_secret_string())
            .expect("a key round-trips");
        match Writer::recover(&self.shared, client, key).and_then(|mut w| {
            w.sign_if_behind()?;
            Ok(w)
        }) {
            Ok(w) => {
                self.writer = Some(w);
                self.shared.leader.store(true, Ordering::Release);
            }
            Err(e) => {
                eprintln!("ledger-pg: took the writer lease but could not resume the chain: {e}")
            }
        }
    }

    /// Gives the lease up (its session ends with the client).
    fn release(&mut self) {
        self.shared.leader.store(false, Ordering::Release);
        self.writer = None;
    }

    fn run(mut self, mut requests: Requests) {
        loop {
            // With the lease: entries no checkpoint covers yet are signed within the
            // interval even if no append follows them, as the embedded store does (a
            // receipt or a witness needs a checkpoint that covers its entry).
            // Without it: try to take it now and then.
            let wait = match &self.writer {
                Some(w) => w.core.checkpoint_due_in(),
                None => Some(LEASE_RETRY),
            };
            let group = match requests.next_group(wait) {
                NextGroup::Group(g) => {
                    self.try_acquire();
                    g
                }
                NextGroup::Idle => {
                    match self.writer.as_mut().map(Writer::sign_if_behind) {
                        Some(Err(e)) => {
                            eprintln!(
                                "ledger-pg: a checkpoint could not be signed; giving up the writer lease: {e}"
                            );
                            self.release();
                        }
                        Some(Ok(())) => {}
                        None => self.try_acquire(),
                    }
                    continue;
                }
                NextGroup::Closed => break,
            };
            let Some(writer) = self.writer.as_mut() else {
                for r in group {
                    (r.reply)(Err(StoreError::Unavailable(
                        "another process holds the writer lease".into(),
                    )));
                }
                continue;
            };
            match writer.commit(&group) {
                Ok(results) => {
                    for (r, res) in group.into_iter().zip(results) {
                        (r.reply)(res);
                    }
                }
                Err(e) => {
                    // The database refused or was lost mid-commit: whether the group
                    // is in is unknown, so no receipt is given. Let the lease go; the
                    // next writer (this process or another) resumes from what was
                    // committed, and a retry gets the true receipt.
                    eprintln!("ledger-pg: a commit failed; giving up the writer lease: {e}");
                    self.release();
                    let why =
                        format!("the commit failed ({e}); the outcome will be known on retry");
                    for r in group {
                        (r.reply)(Err(StoreError::Unavailable(why.clone())));
                    }
                }
            }
        }
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.sign_if_behind()
        {
            eprintln!("ledger-pg: the final checkpoint could not be signed: {e}");
        }
    }
}

/// The writer's state: its session, the key, and the chain's tail in the one append
/// path's core.
struct Writer {
    shared: Arc<Shared>,
    client: Client,
    key: SigningKey,
    core: AppendCore,
}

/// Perfect subtrees for rebuilding the frontier, read through the writer's client.
struct Nodes<'a> {
    shared: &'a Shared,
    client: &'a Client,
}

impl SubtreeSource for Nodes<'_> {
    type Error = StoreError;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let alg = self.shared.info.hash;
        self.shared.block_on(async {
            if level >= NODE_LEVEL_MIN {
                let r = self
                    .client
                    .query_one(
                        "SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2",
                        &[&(level as i32), &(index as i64)],
                    )
                    .await
                    .map_err(db)?;
                return hash32(r.get::<_, &[u8]>(0));
            }
            let rows = self
                .client
                .query(
                    "SELECT leaf FROM entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                    &[&((index << level) as i64), &(((index + 1) << level) as i64)],
                )
                .await
                .map_err(db)?;
            let leaves = rows
                .iter()
                .map(|r| hash32(r.get::<_, &[u8]>(0)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(merkle::root_of(alg, &leaves))
        })
    }
}

impl Writer {
    fn recover(
        shared: &Arc<Shared>,
        client: Client,
        key: SigningKey,
    ) -> Result<Writer, StoreError> {
        let alg = shared.info.hash;
        let (size, tail, latest) = shared.block_on(async {
            let tail = client
                .query_opt(
                    "SELECT seq, leaf, bytes FROM entries ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(db)?;
            let latest: i64 = client
                .query_one("SELECT coalesce(max(size), 0) FROM checkpoints", &[])
                .await
                .map_err(db)?
                .get(0);
            Ok(match tail {
                None => (0u64, None, latest as u64),
                Some(r) => (
                    r.get::<_, i64>(0) as u64 + 1,
                    Some((hash32(r.get::<_, &[u8]>(1))?, r.get::<_, Vec<u8>>(2))),
                    latest as u64,
                ),
            })
        })?;
        let (prev, last_recorded_at) = match tail {
            None => (alg.genesis(&shared.info.origin), String::new()),
            Some((leaf, bytes)) => {
                let p = entry::parse_entry(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("entry {}: {e}", size - 1)))?;
                (leaf, p.recorded_at.to_string())
            }
        };
        let frontier = Frontier::from_source(
            alg,
            &Nodes {
                shared,
                client: &client,
            },
            size,
        )?;
        shared.size.store(size, Ordering::Release);
        Ok(Writer {
            shared: shared.clone(),
            client,
            key,
            core: AppendCore::new(
                shared.info.clone(),
                frontier,
                prev,
                last_recorded_at,
                latest,
            ),
        })
    }

    /// Signs a checkpoint of the current size if the newest one is behind it.
    fn sign_if_behind(&mut self) -> Result<(), StoreError> {
        if self.core.latest_checkpoint() >= self.core.size() {
            return Ok(());
        }
        let (size, note) = self.core.sign(&self.key);
        self.shared.block_on(async {
            self.client
                .execute(
                    "INSERT INTO checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING",
                    &[&(size as i64), &note],
                )
                .await
                .map_err(db)
        })?;
        self.core.signed(size);
        Ok(())
    }

    /// Plans and builds one group through the one append path, and commits it in
    /// one transaction. Requests that conflict get their error and append nothing;
    /// the others are committed together.
    fn commit(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<Vec<Result<Vec<Receipt>, StoreError>>, StoreError> {
        let ids = append::ids(group);
        let recorded: RecordedIds = self.shared.block_on(async {
            let rows = self
                .client
                .query(
                    // One index lookup per id: `event_id = ANY($1)` with thousands of
                    // ids is planned as a scan of the whole log.
                    "SELECT e.event_id, e.seq, e.leaf, e.bytes FROM unnest($1::text[]) AS i(id),
                     LATERAL (SELECT event_id, seq, leaf, bytes FROM entries WHERE event_id = i.id) e",
                    &[&ids],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.get::<_, String>(0),
                        Recorded {
                            seq: r.get::<_, i64>(1) as u64,
                            leaf: hash32(r.get::<_, &[u8]>(2))?,
                            entry: r.get::<_, Vec<u8>>(3),
                        },
                    ))
                })
                .collect()
        })?;
        let mut built = self.core.build(group, &recorded);
        let results = std::mem::take(&mut built.results);
        if built.entries.is_empty() {
            self.core.advance(built);
            return Ok(results);
        }
        let mut seqs = Vec::with_capacity(built.entries.len());
        let mut event_ids = Vec::with_capacity(built.entries.len());
        let (mut leaves, mut prevs, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut idx_messages, mut idx_seqs) = (Vec::new(), Vec::new());
        for e in &built.entries {
            seqs.push(e.seq as i64);
            event_ids.push(e.event.id_key());
            leaves.push(&e.leaf[..]);
            prevs.push(&e.prev[..]);
            bytes.push(built.entry_bytes(e));
            for m in std::iter::once(e.event.key()).chain(e.event.linked_key()) {
                idx_messages.push(m.to_string());
                idx_seqs.push(e.seq as i64);
                // A resend's two messages differ in id, so their aliases do.
                if let Some(a) = ledger_core::event::bare_alias(m) {
                    idx_messages.push(a);
                    idx_seqs.push(e.seq as i64);
                }
            }
        }
        let (mut node_levels, mut node_idxs, mut node_hashes) =
            (Vec::new(), Vec::new(), Vec::new());
        for (level, index, h) in built.nodes.iter().filter(|n| n.0 >= NODE_LEVEL_MIN) {
            node_levels.push(*level as i32);
            node_idxs.push(*index as i64);
            node_hashes.push(h.to_vec());
        }
        // The checkpoint goes in the same transaction when the interval has passed.
        let note = self
            .core
            .interval_passed()
            .then(|| self.core.sign_with(&self.key, &built));
        let size = built.size();
        self.shared.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            // Binary COPY: the cheapest way into a table per row, and the chain
            // trigger still checks the whole statement.
            {
                let sink = tx
                    .copy_in("COPY entries (seq, event_id, leaf, prev, bytes) FROM STDIN BINARY")
                    .await
                    .map_err(db)?;
                let writer = BinaryCopyInWriter::new(
                    sink,
                    &[
                        Type::INT8,
                        Type::TEXT,
                        Type::BYTEA,
                        Type::BYTEA,
                        Type::BYTEA,
                    ],
                );
                let mut writer = std::pin::pin!(writer);
                for i in 0..seqs.len() {
                    writer
                        .as_mut()
                        .write(&[&seqs[i], &event_ids[i], &leaves[i], &prevs[i], &bytes[i]])
                        .await
                        .map_err(db)?;
                }
                writer.finish().await.map_err(db)?;
            }
            {
                let sink = tx
                    .copy_in("COPY message_index (message, seq) FROM STDIN BINARY")
                    .await
                    .map_err(db)?;
                let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8]);
                let mut writer = std::pin::pin!(writer);
                for i in 0..idx_seqs.len() {
                    writer
                        .as_mut()
                        .write(&[&idx_messages[i], &idx_seqs[i]])
                        .await
                        .map_err(db)?;
                }
                writer.finish().await.map_err(db)?;
            }
            if !node_levels.is_empty() {
                tx.execute(
                    "INSERT INTO merkle_nodes (level, idx, hash)
                     SELECT * FROM UNNEST($1::integer[], $2::bigint[], $3::bytea[])",
                    &[&node_levels, &node_idxs, &node_hashes],
                )
                .await
                .map_err(db)?;
            }
            if let Some((size, note)) = &note {
                tx.execute(
                    "INSERT INTO checkpoints (size, note) VALUES ($1, $2)",
                    &[&(*size as i64), note],
                )
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })?;
        self.core.advance(built);
        if let Some((size, _)) = note {
            self.core.signed(size);
        }
        self.shared.size.store(size, Ordering::Release);
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_password_reaches_a_message() {
        for url in [
            "postgres://ledger:s3cret@db:5432/ledger",
            "postgres://ledger:s3cret@db:99999999/ledger",
            "postgres://ledger:s3cret@[::1/ledger",
            "host=db user=ledger password=s3cret port=nope",
            "postgres://:s3cret@db/ledger",
        ] {
            assert!(!redact(url).contains("s3cret"), "{}", redact(url));
            if let Err(e) = parse_url(url) {
                assert!(!e.to_string().contains("s3cret"), "{e}");
            }
        }
    }
}
