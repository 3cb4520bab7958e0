//! `ledger serve`: the HTTP API that sending systems, auditors and regulators use.
//!
//! One process over the embedded store: appends go through the store's group commit
//! (answered only after the durable commit), a projector thread keeps every message's
//! facts current for questions and the stream, and every request but `/healthz` and
//! `/readyz` is authenticated. The tenant boundary is [`tenant`]; the channel mappers
//! are [`mappers`]. The map of the crate is in ARCHITECTURE.md.

mod alerts;
pub mod auth;
pub mod config;
mod conn;
mod console;
mod error;
mod hooks;
pub mod mappers;
mod metrics;
mod openapi;
mod projector;
mod routes;
pub mod tenant;
mod tls;
pub mod tokens;
pub mod witness;
mod witnessing;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use auth::{Principal, Scope};
pub use config::ServerConfig;
pub use error::ApiError;

use ledger_core::projection::Policy;

/// Why the server could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened. Shown with a database password masked, and
    /// not as a `source` (which would show it whole).
    #[error("{}", error::redact(&.0.to_string()))]
    Store(ledger_core::StoreError),
    /// The projection could not be loaded.
    #[error(transparent)]
    Projection(#[from] ledger_core::projection::ProjectionError),
    /// Tokens or JWT keys are unusable.
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    /// A file the server needs.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Listening or serving failed.
    #[error("{0}")]
    Net(String),
}

impl From<ledger_core::StoreError> for ServeError {
    fn from(e: ledger_core::StoreError) -> Self {
        ServeError::Store(e)
    }
}

/// The key of the keyed pseudonyms: read from its file, or made (random, mode 0600)
/// the first time. It never enters the log; destroying it makes the pseudonyms
/// unlinkable.
pub fn pseudonym_key(path: &Path) -> Result<[u8; 32], ServeError> {
    let bad = |reason: String| ServeError::File {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("not hex: {e}")))?;
            bytes
                .try_into()
                .map_err(|_| bad("must hold 32 bytes as 64 hex digits".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| bad(e.to_string()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(|e| bad(e.to_string()))?;
            writeln!(f, "{}", hex::encode(key))
                .and_then(|_| f.sync_all())
                .map_err(|e| bad(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The OpenAPI description of the API, as YAML, generated from the handlers
/// (`ledger openapi` prints it; `schemas/openapi.yaml` must equal it).
pub fn openapi_yaml() -> String {
    routes::openapi_yaml()
}

/// The policy verdicts are judged under: `<dir>/policy.toml`, else the built-in one;
/// and where it came from, as answers name it (the CLI names them alike).
fn policy(dir: &Path) -> Result<(Policy, &'static str), ServeError> {
    let p = dir.join("policy.toml");
    if !p.exists() {
        return Ok((Policy::default_policy(), "built-in default"));
    }
    let text = std::fs::read_to_string(&p).map_err(|e| ServeError::File {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    let policy = Policy::parse(&text).map_err(|e| ServeError::File {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((policy, "policy.toml"))
}

/// Serves the ledger in `dir` until `shutdown` resolves, then drains: requests in
/// flight finish (each append is either acknowledged and durable, or refused), the
/// projection is saved, and the store signs a final checkpoint and closes.
/// `on_listening` is called with the bound address as a URL (`http://…` or, with TLS,
/// `https://…`), for `--listen 127.0.0.1:0`.
pub async fn serve(
    dir: PathBuf,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(String),
) -> Result<(), ServeError> {
    config.check_transport()?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Net(format!("listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Net(e.to_string()))?;
    let key = pseudonym_key(&config.pseudonym_key_file)?;
    let auth = auth::Authenticator::new(&config.tokens_file, config.jwt.as_ref())?;
    let policy = policy(&dir)?;
    let directory =
        ledger_core::directory::Directory::load(&dir).map_err(|e| ServeError::File {
            path: dir
                .join(ledger_core::directory::FILE_NAME)
                .display()
                .to_string(),
            reason: e.to_string(),
        })?;
    let metrics = Arc::new(metrics::Metrics::default());
    let (store, projector, projector_thread, witnessing) = {
        let dir = dir.clone();
        let metrics = metrics.clone();
        let sweep = config.sweep_interval;
        let quorum_within = config.quorum_within;
        tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
            let (store, report) = ledger_pg::engine::open(&dir)?;
            for line in report {
                eprintln!("ledger serve: {}", error::redact(&line));
            }
            let store = Arc::new(store);
            let policy_error = |reason: String| ServeError::File {
                path: dir.join(witnessing::POLICY_FILE).display().to_string(),
                reason,
            };
            let witness_policy = witnessing::Witnessing::policy(&dir).map_err(policy_error)?;
            // Its log line must name the key that signs now (after a key rotation, the
            // new one), or no checkpoint would ever meet it.
            let current = ledger_core::Store::verifier_key(store.as_ref()).current();
            if let Some(p) = &witness_policy
                && !p.logs().any(|k| k == current)
            {
                return Err(policy_error(format!(
                    "no `log` line names this ledger's signing key {current}: after a key rotation, \
                     the log line takes the new key (docs/operations.md, \"A lost signing key\")"
                )));
            }
            let witnessing = witness_policy.map(|p| {
                witnessing::Witnessing::start(
                    store.clone(),
                    dir.clone(),
                    p,
                    metrics.clone(),
                    quorum_within,
                )
            });
            let (p, h) =
                projector::Projector::start(store.clone(), dir.clone(), policy, metrics, sweep)?;
            Ok((store, p, h, witnessing))
        })
        .await
        .map_err(|e| ServeError::Net(e.to_string()))??
    };
    let (max_connections, lowered) = conn::fit_to_fd_limit(config.max_connections);
    if let Some(why) = lowered {
        eprintln!("ledger serve: {why}");
    }
    let limits = conn::Limits {
        header_read: config.header_read_timeout,
        idle: config.idle_timeout,
        max_connections,
        drain: config.request_timeout + std::time::Duration::from_secs(5),
    };
    let hook_limit = config.hook_requests_per_minute;
    // Alerts follow the verdict changes from now on, until the server stops.
    let (stop_alerts, alerts_stopped) = tokio::sync::watch::channel(false);
    let alert_task = config.alerts.clone().map(|a| {
        let console_url = a.console_url.clone();
        let silent_after = a.silent_reporter_after;
        let alerter = alerts::Alerter::start(a, metrics.clone());
        tokio::spawn(alerts::follow(
            alerter,
            projector.clone(),
            store.clone(),
            witnessing.as_ref().map(|w| w.0.clone()),
            console_url,
            silent_after,
            alerts_stopped,
        ))
    });
    let state = routes::AppState(Arc::new(routes::Inner {
        store: store.clone(),
        projector: projector.clone(),
        auth,
        pseudonymizer: mappers::Pseudonymizer::new(key),
        metrics: metrics.clone(),
        streams: routes::StreamLimits::new(&config),
        config,
        shutting_down: AtomicBool::new(false),
        commit_lock: tokio::sync::Mutex::new(()),
        directory,
        witnessing: witnessing.as_ref().map(|w| w.0.clone()),
        dir: dir.clone(),
        sessions: console::Sessions::default(),
        exports: Arc::new(tokio::sync::Semaphore::new(1)),
        hooks: crate::hooks::HookLimiter::new(hook_limit),
    }));
    let app = routes::router(state.clone());
    let draining = state.clone();
    let shutdown = async move {
        shutdown.await;
        draining.shutting_down.store(true, Ordering::SeqCst);
        // Streams end at their next step, so their connections can close.
        draining.projector.nudge();
    };
    on_listening(match tls {
        None => format!("http://{addr}"),
        Some(_) => format!("https://{addr}"),
    });
    conn::serve(listener, tls, app, limits, metrics, shutdown).await;
    let _ = stop_alerts.send(true);
    if let Some(t) = alert_task {
        let _ = t.await;
    }
    projector.stop();
    if let Some((w, _)) = &witnessing {
        w.stop();
    }
    let _ = tokio::task::spawn_blocking(move || {
        let _ = projector_thread.join();
        if let Some((_, thread)) = witnessing {
            let _ = thread.join();
        }
        ledger_core::Store::close(&*store);
    })
    .await;
    Ok(())
}
