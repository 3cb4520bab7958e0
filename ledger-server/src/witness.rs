//! `ledger witness serve`: the tlog-witness protocol over HTTP
//! (c2sp.org/tlog-witness), on [`ledger_core::witness::Witness`].
//!
//! ```text
//! POST /add-checkpoint     200 cosignature line(s) | 400 | 403 | 404
//!                          | 409 `text/x.tlog.size` "<size>\n" | 409 split view | 422
//! GET  /<hex sha256(origin)>/checkpoint   the last checkpoint it cosigned for that
//!                          log, with its cosignature (monitoring; 404 if none)
//! GET  /healthz
//! ```
//!
//! A witness directory holds `witness.key` (its secret key, mode 0600),
//! `witness.vkey` (the public key to give to the logs' readers), `witness.toml` (the
//! logs it witnesses) and `state/` (see the core module).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ledger_core::HashAlg;
use ledger_core::KeyHistory;
use ledger_core::checkpoint::VerifierKey;
use ledger_core::cosignature::CosignerKey;
use ledger_core::witness::{AddError, REQUEST_BYTES_MAX, Witness, WitnessedLog};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The witness's configuration file in its directory.
pub const CONFIG_FILE: &str = "witness.toml";
/// Its secret key.
pub const KEY_FILE: &str = "witness.key";
/// Its public key.
pub const VKEY_FILE: &str = "witness.vkey";

/// Why a witness could not start or be set up.
#[derive(Debug, thiserror::Error)]
pub enum WitnessSetupError {
    /// A file of the witness's directory.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The network.
    #[error("{0}")]
    Net(String),
}

fn file_err(path: &Path, reason: impl ToString) -> WitnessSetupError {
    WitnessSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// One log in `witness.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The log's verifier key (`origin+keyid+base64`), as `verifier.key` holds it.
    pub key: String,
    /// Its tree's hash: `sha256` (RFC 6962 exactly) or `blake3`.
    pub hash: String,
    /// After the log replaced its key: the first size the key signs (its key
    /// history's); earlier sizes were the old key's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key_from: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `witness.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The logs it witnesses.
    #[serde(default, rename = "log")]
    pub logs: Vec<LogEntry>,
}

impl WitnessConfig {
    /// Reads `<dir>/witness.toml`.
    pub fn load(dir: &Path) -> Result<WitnessConfig, WitnessSetupError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        toml::from_str(&text).map_err(|e| file_err(&path, e))
    }

    /// Writes it.
    pub fn save(&self, dir: &Path) -> Result<(), WitnessSetupError> {
        let path = dir.join(CONFIG_FILE);
        let text = format!(
            "# The logs this witness cosigns: each log's verifier key (its verifier.key) and\n\
             # its tree's hash (sha256 or blake3). `ledger witness add-log` appends here.\n{}",
            toml::to_string(self).expect("serializable")
        );
        // Whole or not at all: an empty witness.toml would witness nothing, and let the
        // next add-log take any key for a log it witnessed.
        let tmp = dir.join(format!("{CONFIG_FILE}.new"));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| file_err(&path, e))
    }

    fn logs(&self, path: &Path) -> Result<Vec<WitnessedLog>, WitnessSetupError> {
        self.logs
            .iter()
            .map(|l| {
                let key: VerifierKey = l
                    .key
                    .parse()
                    .map_err(|e| file_err(path, format!("log key {:?}: {e}", l.key)))?;
                let hash: HashAlg = l
                    .hash
                    .parse()
                    .map_err(|e| file_err(path, format!("log {}: {e}", key.name())))?;
                Ok(WitnessedLog {
                    key,
                    key_from: l.key_from,
                    hash,
                })
            })
            .collect()
    }
}

/// `ledger witness init`: a new witness directory with a fresh key named `name`.
/// Returns the public key to publish.
pub fn init(dir: &Path, name: &str) -> Result<String, WitnessSetupError> {
    if dir.join(KEY_FILE).exists() {
        return Err(file_err(
            &dir.join(KEY_FILE),
            "exists: a witness's key is never replaced (a witness that loses its state must \
             be retired under a new name and key)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let key = CosignerKey::generate(name).map_err(|e| file_err(dir, e))?;
    let path = dir.join(KEY_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).map_err(|e| file_err(&path, e))?;
    std::io::Write::write_all(&mut f, format!("{}\n", key.to_secret_string()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| file_err(&path, e))?;
    let vkey = key.verifier().to_string();
    std::fs::write(dir.join(VKEY_FILE), format!("{vkey}\n"))
        .map_err(|e| file_err(&dir.join(VKEY_FILE), e))?;
    WitnessConfig::default().save(dir)?;
    Ok(vkey)
}

/// `ledger witness add-log`: witness one more log, whose key is `key` (a verifier key,
/// or the log's key history: then its newest key). A log already witnessed takes a
/// new key only from a key history that names the key the witness holds before it
/// (the log's key rotation, FORMAT.md §17); its cosigned state is kept, so the new
/// key's checkpoints are cosigned only if they extend what was cosigned under the old.
pub fn add_log(dir: &Path, key: &str, hash: HashAlg) -> Result<AddedLog, WitnessSetupError> {
    let path = dir.join(CONFIG_FILE);
    let history: KeyHistory = key
        .trim()
        .parse()
        .map_err(|e| file_err(&path, format!("log key {key:?}: {e}")))?;
    let current = history.current();
    let mut config = WitnessConfig::load(dir)?;
    let known = config
        .logs
        .iter_mut()
        .find(|l| l.key.split('+').next() == Some(current.name()));
    let added = match known {
        None => {
            config.logs.push(LogEntry {
                key: current.to_string(),
                hash: hash.name().to_string(),
                key_from: history.keys().last().map(|(from, _)| from).unwrap_or(0),
            });
            AddedLog {
                origin: current.name().to_string(),
                rotated_from: None,
            }
        }
        Some(l) if l.key == current.to_string() => {
            return Err(file_err(
                &path,
                format!("already witnesses {:?} with this key", current.name()),
            ));
        }
        Some(l) => {
            let mut keys = history.keys();
            let rotation = keys
                .by_ref()
                .find(|(_, k)| k.to_string() == l.key)
                .and_then(|_| keys.last())
                .map(|(from, _)| from);
            let Some(from) = rotation else {
                return Err(file_err(
                    &path,
                    format!(
                        "already witnesses a log of origin {:?} with another key; a log's key \
                         changes only by a rotation its key history records (give its verifier.key, \
                         which names the key this witness holds before the new one)",
                        current.name()
                    ),
                ));
            };
            if l.hash != hash.name() {
                return Err(file_err(
                    &path,
                    format!(
                        "{:?} is witnessed as a {} log: a rotation keeps the hash",
                        current.name(),
                        l.hash
                    ),
                ));
            }
            let old = std::mem::replace(&mut l.key, current.to_string());
            l.key_from = from;
            AddedLog {
                origin: current.name().to_string(),
                rotated_from: Some((old, from)),
            }
        }
    };
    config.save(dir)?;
    Ok(added)
}

/// What `add_log` did.
#[derive(Debug)]
pub struct AddedLog {
    /// The log's origin.
    pub origin: String,
    /// For a rotation: the key replaced, and the size the new key signs from.
    pub rotated_from: Option<(String, u64)>,
}

/// Opens the witness of a directory.
pub fn open(dir: &Path) -> Result<Witness, WitnessSetupError> {
    let key_path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?;
    let key = CosignerKey::from_secret_string(&text).map_err(|e| file_err(&key_path, e))?;
    let logs = WitnessConfig::load(dir)?.logs(&dir.join(CONFIG_FILE))?;
    Witness::open(key, logs, &dir.join("state")).map_err(|e| file_err(dir, e))
}

/// The witness's routes (tests call them in process).
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(witness)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let result = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now())).await;
    match result {
        Ok(Ok(lines)) => text(StatusCode::OK, "text/plain; charset=utf-8", lines),
        // The protocol's own body: the size, a newline, and exactly this type.
        Ok(Err(AddError::Conflict(size))) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{size}\n"),
        ),
        Ok(Err(e)) => {
            if matches!(e, AddError::SplitView { .. } | AddError::BadProof { .. }) {
                // Proof of misbehaviour (or a broken client): kept in the log.
                eprintln!("ledger witness: refused a checkpoint: {e}");
            }
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, "text/plain; charset=utf-8", format!("{e}\n"))
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        ),
    }
}

async fn latest(State(w): State<Arc<Witness>>, UrlPath(origin_hash): UrlPath<String>) -> Response {
    let found = w
        .origins()
        .into_iter()
        .find(|o| hex::encode(sha2::Sha256::digest(o)) == origin_hash)
        .and_then(|o| w.latest(&o));
    match found {
        Some(l) => text(StatusCode::OK, "text/plain; charset=utf-8", l.note),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "this witness has cosigned no checkpoint of that log\n".into(),
        ),
    }
}

/// Serves the witness of `dir` on `listen` until `shutdown`; `on_listening` gets the
/// base URL.
pub async fn serve(
    dir: PathBuf,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(String),
) -> Result<(), WitnessSetupError> {
    let witness = Arc::new(open(&dir)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| WitnessSetupError::Net(format!("listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| WitnessSetupError::Net(e.to_string()))?;
    let (max_connections, lowered) = crate::conn::fit_to_fd_limit(1024);
    if let Some(why) = lowered {
        eprintln!("ledger witness: {why}");
    }
    let limits = crate::conn::Limits {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        max_connections,
        drain: Duration::from_secs(10),
    };
    on_listening(format!("http://{addr}"));
    crate::conn::serve(
        listener,
        None,
        router(witness),
        limits,
        Arc::new(crate::metrics::Metrics::default()),
        shutdown,
    )
    .await;
    Ok(())
}
