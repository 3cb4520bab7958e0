//! `ledger serve` and `ledger token`: the HTTP server and its static tokens.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use ledger_server::tokens::TokenStore;
use ledger_server::{Scope, ServerConfig};
use serde_json::json;

use crate::InputError;

/// `ledger token …`.
#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; prints it once (only its SHA-256 is stored).
    Create {
        /// Organisation number the token acts for.
        #[arg(long, value_name = "ORGNR")]
        org: String,
        /// Comma-separated: ledger:write, ledger:read, ledger:audit, ledger:regulator, ledger:admin.
        #[arg(
            long,
            value_name = "SCOPE[,SCOPE]",
            value_delimiter = ',',
            required = true
        )]
        scope: Vec<String>,
        /// A name to know it by (default: <org>-<id>).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by id or name; a running server refuses it from then on.
    Revoke {
        /// The token's id or name.
        token: String,
    },
}

pub(crate) fn config(dir: &Path, file: Option<&Path>) -> Result<ServerConfig> {
    ServerConfig::load(dir, file).map_err(|e| anyhow!(InputError(e.to_string())))
}

pub(crate) fn token(
    dir: &Path,
    config_file: Option<&Path>,
    cmd: TokenCommand,
    as_json: bool,
) -> Result<u8> {
    require_ledger(dir)?;
    let cfg = config(dir, config_file)?;
    let mut store = TokenStore::load(&cfg.tokens_file)?;
    match cmd {
        TokenCommand::Create { org, scope, name } => {
            let scopes = scope
                .iter()
                .map(|s| {
                    Scope::from_name(s.trim()).ok_or_else(|| {
                        anyhow!(InputError(format!(
                            "--scope {s:?} is not one of: {}",
                            Scope::ALL.map(|s| s.name()).join(", ")
                        )))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let (rec, token) = store
                .create(&org, &scopes, name.as_deref())
                .map_err(token_usage)?;
            if as_json {
                crate::output::json(&json!({"token": token, "record": rec}))?;
            } else {
                println!("{token}");
                eprintln!(
                    "created token {} ({}) for {} with {}; it is shown only now, store it safely",
                    rec.id,
                    rec.name,
                    rec.org,
                    rec.scopes
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        TokenCommand::List => {
            if as_json {
                crate::output::json(&json!(store.list()))?;
            } else {
                for t in store.list() {
                    println!(
                        "{}  {:<24} {}  {:<40} created {}{}",
                        t.id,
                        t.name,
                        t.org,
                        t.scopes
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(","),
                        t.created_at,
                        t.revoked_at
                            .as_ref()
                            .map(|r| format!(", revoked {r}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        TokenCommand::Revoke { token } => revoke(&mut store, &token, as_json)?,
    }
    Ok(0)
}

/// Refuses a directory that holds no ledger (either engine), saying how to make one.
pub(crate) fn require_ledger(dir: &Path) -> Result<()> {
    if !dir.join("ledger.json").exists() && !dir.join(ledger_pg::engine::STORE_FILE).exists() {
        return Err(anyhow!(InputError(format!(
            "no ledger at {} (create one with `ledger init --origin NAME`)",
            dir.display()
        ))));
    }
    Ok(())
}

/// A `TokenError` at the binary's edge: bad input is exit 2.
pub(crate) fn token_usage(e: ledger_server::tokens::TokenError) -> anyhow::Error {
    match e {
        ledger_server::tokens::TokenError::Usage(m) => anyhow!(InputError(m)),
        other => anyhow::Error::new(other),
    }
}

/// Revokes a token or hook by id or name, and says so.
pub(crate) fn revoke(store: &mut TokenStore, id_or_name: &str, as_json: bool) -> Result<()> {
    let rec = store.revoke(id_or_name).map_err(token_usage)?;
    if as_json {
        crate::output::json(&json!(rec))?;
    } else {
        println!("revoked {} ({})", rec.id, rec.name);
    }
    Ok(())
}

/// What `ledger witness` does.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum WitnessCommand {
    /// A new witness in --dir: a fresh Ed25519 cosignature/v1 key named NAME (a
    /// schema-less URL such as witness.tilsyn.example), its public key in
    /// witness.vkey, and witness.toml with the logs given by --log. Prints the public
    /// key: give it to everyone who checks the logs you witness (their tlog-policy
    /// names it). Then `ledger witness serve`.
    Init {
        /// The witness's name.
        #[arg(long)]
        name: String,
        /// A log to witness: its verifier key, or @FILE (repeat for more; more later
        /// with add-log).
        #[arg(long = "log", value_name = "KEY")]
        logs: Vec<String>,
        /// The hash of the --log logs' trees, needed with --log: sha256 (RFC 6962
        /// exactly: C2SP logs, ledgers made with --hash sha256) or blake3 (a ledger's
        /// default). A wrong one would refuse the log's second checkpoint as a
        /// rewritten history.
        #[arg(long)]
        hash: Option<String>,
    },
    /// Witness one more log: its verifier key (the log's verifier.key, or @FILE) and
    /// its tree's hash function.
    AddLog {
        /// The log's verifier key, or @FILE: its verifier.key. Given again after the log
        /// rotated its key (its verifier.key then holds the key history), the witness
        /// takes the new key and keeps what it cosigned.
        #[arg(long)]
        key: String,
        /// The log's tree hash: sha256 (RFC 6962 exactly: C2SP logs, ledgers made
        /// with --hash sha256) or blake3 (a ledger's default; its ledger.json says).
        #[arg(long)]
        hash: String,
    },
    /// Serve the tlog-witness protocol (POST /add-checkpoint) until SIGTERM or
    /// Ctrl-C. Prints the address it listens on.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
    },
}

pub(crate) fn witness(dir: &Path, command: WitnessCommand, as_json: bool) -> Result<u8> {
    use ledger_server::witness as w;
    let input = |e: w::WitnessSetupError| anyhow!(InputError(e.to_string()));
    match command {
        WitnessCommand::Init { name, logs, hash } => {
            let hash = match (&hash, logs.is_empty()) {
                (Some(h), _) => parse_hash(h)?,
                (None, true) => ledger_core::HashAlg::Sha256,
                (None, false) => {
                    return Err(anyhow!(InputError(
                        "--log needs --hash: sha256 for C2SP logs and ledgers made with \
                         --hash sha256, blake3 for a ledger's default (its ledger.json says)"
                            .into()
                    )));
                }
            };
            // Every --log is checked before anything is created.
            let keys = logs
                .iter()
                .map(|k| {
                    let text = log_key_text(k)?;
                    text.trim()
                        .parse::<ledger_core::KeyHistory>()
                        .map_err(|e| anyhow!(InputError(format!("--log {k}: {e}"))))?;
                    Ok(text)
                })
                .collect::<Result<Vec<_>>>()?;
            let vkey = w::init(dir, &name).map_err(input)?;
            let origins = keys
                .iter()
                .map(|k| w::add_log(dir, k, hash).map(|a| a.origin).map_err(input))
                .collect::<Result<Vec<_>>>()?;
            if as_json {
                crate::output::json(&json!({
                    "dir": dir, "name": name, "verifier_key": vkey, "logs": origins,
                    "hash": hash.name()
                }))?;
            } else {
                println!("created witness {name:?} in {}", dir.display());
                println!("its public key (for every tlog-policy that counts on it):\n{vkey}");
                for o in &origins {
                    println!("witnessing {o:?} ({})", hash.name());
                }
                if origins.is_empty() {
                    println!(
                        "next: ledger --dir {} witness add-log --key @<the log's verifier.key>",
                        dir.display()
                    );
                } else {
                    println!("next: ledger --dir {} witness serve", dir.display());
                }
            }
        }
        WitnessCommand::AddLog { key, hash } => {
            let key = log_key_text(&key)?;
            let hash = parse_hash(&hash)?;
            let added = w::add_log(dir, &key, hash).map_err(input)?;
            let origin = &added.origin;
            if as_json {
                crate::output::json(&json!({
                    "origin": origin, "hash": hash.name(),
                    "rotated_from": added.rotated_from.as_ref().map(|(k, _)| k),
                    "new_key_from_size": added.rotated_from.as_ref().map(|(_, f)| f),
                }))?;
            } else if let Some((old, from)) = &added.rotated_from {
                println!(
                    "{origin:?} rotated its key: checkpoints from size {from} on are checked with the new \
                     key (the old one was {old}); what this witness cosigned is kept, so the new key's \
                     first checkpoint is cosigned only if it extends it. Restart `ledger witness serve`"
                );
            } else {
                println!(
                    "witnessing {origin:?} ({}); restart `ledger witness serve`",
                    hash.name()
                );
            }
        }
        WitnessCommand::Serve { listen } => {
            let runtime = runtime()?;
            let dir: PathBuf = dir.to_path_buf();
            runtime
                .block_on(w::serve(
                    dir,
                    listen,
                    shutdown_signal("ledger witness"),
                    |url| {
                        println!("ledger witness: listening on {url}");
                        let _ = std::io::stdout().flush();
                    },
                ))
                .map_err(input)?;
            eprintln!("ledger witness: stopped");
        }
    }
    Ok(0)
}

/// A log's verifier key as given: the key string, or @FILE.
fn log_key_text(arg: &str) -> Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("read key file {path}"))
        }
        None => Ok(arg.to_string()),
    }
}

fn parse_hash(text: &str) -> Result<ledger_core::HashAlg> {
    text.parse()
        .map_err(|e| anyhow!(InputError(format!("--hash: {e}"))))
}

/// The servers' async runtime (`ledger serve`, `ledger witness serve`).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Resolves at SIGTERM or Ctrl-C.
async fn shutdown_signal(who: &'static str) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("{who}: shutting down: finishing requests in flight");
}

pub(crate) fn serve(
    dir: &Path,
    listen: Option<SocketAddr>,
    config_file: Option<&Path>,
) -> Result<u8> {
    let mut cfg = config(dir, config_file)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let runtime = runtime()?;
    let dir: PathBuf = dir.to_path_buf();
    runtime
        .block_on(async move {
            ledger_server::serve(dir, cfg, shutdown_signal("ledger serve"), |url| {
                // Scripts and tests read the bound address from this line.
                println!("ledger serve: listening on {url}");
                let _ = std::io::stdout().flush();
            })
            .await
        })
        .map_err(|e| match e {
            // What the operator wrote is wrong: exit 2, as for any bad input.
            e @ (ledger_server::ServeError::Config(_)
            | ledger_server::ServeError::File { .. }
            | ledger_server::ServeError::Auth(_)) => anyhow!(InputError(e.to_string())),
            other => anyhow::Error::new(other),
        })?;
    eprintln!("ledger serve: stopped");
    Ok(0)
}
