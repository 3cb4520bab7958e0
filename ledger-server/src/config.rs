//! `ledger.toml`: where `ledger serve` listens, whom it trusts and what it accepts.
//! Every key has a default, so a fresh ledger serves on loopback with no file at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How long a checkpoint may wait for its witness quorum before that is an alarm.
pub const DEFAULT_QUORUM_WITHIN_SECONDS: u64 = 60;

/// The config file's name in the ledger directory, read when `--config` is not given.
pub const FILE_NAME: &str = "ledger.toml";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file says something unusable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the line where the parser knows it.
        reason: String,
    },
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Certificate and key (PEM) for TLS; plain HTTP without them.
    pub tls: Option<TlsConfig>,
    /// Allow plain HTTP on an address other than loopback (a TLS-terminating proxy in
    /// front). Off by default: tokens would cross the network in clear.
    pub allow_plain_http_off_loopback: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one batch (413 beyond).
    pub max_batch_events: usize,
    /// A request that takes longer is answered 503 (appends still either commit or not).
    pub request_timeout: Duration,
    /// Organisations that run a channel (e.g. Digdir for Altinn): they may report the
    /// facts of any message their channel carries (`[tenant] channel_operators`).
    pub channel_operators: Vec<String>,
    /// Static API tokens (hashes only): written by `ledger token create`.
    pub tokens_file: PathBuf,
    /// Maskinporten-shaped JWT access tokens, if configured.
    pub jwt: Option<JwtConfig>,
    /// Key of the keyed pseudonyms of personal data in channel events. Kept outside
    /// the log: destroying it makes the pseudonyms unlinkable.
    pub pseudonym_key_file: PathBuf,
    /// How often every message is judged again against the clock, so a deadline that
    /// passes with no event still reaches the stream.
    pub sweep_interval: Duration,
    /// `server.commit = "per_request"`: each request's append is committed (and
    /// fsynced) on its own, as a naive server would; the default `"group"` lets
    /// concurrent requests share a commit. For benchmarks of what group commit buys.
    pub commit_per_request: bool,
    /// A connection must finish its TLS handshake, and then each request's head
    /// (request line and headers), within this time of starting it; else it is closed.
    /// Slow-header clients cannot hold connections open.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no bytes moving for this long is
    /// closed (a response the client stops reading counts as idle too; it is cut after
    /// twice this). Streams send a comment at least every third of it, so a quiet
    /// stream is never idle.
    pub idle_timeout: Duration,
    /// Connections served at once. At the cap the server stops accepting until one
    /// closes (new clients wait in the listen queue; nobody gets an error). Lowered at
    /// start to fit the process's file-descriptor limit.
    pub max_connections: usize,
    /// `GET /v1/stream` clients at once; 503 with Retry-After beyond.
    pub max_stream_clients: usize,
    /// Requests a minute through one channel hook (`/v1/hooks/…`); 429 with
    /// Retry-After beyond (channels redeliver).
    pub hook_requests_per_minute: usize,
    /// Streams replaying from the log at once (started, or resumed, more than a chunk
    /// behind the newest entry), until they catch up; 503 with Retry-After beyond.
    pub max_replaying_streams: usize,
    /// `privacy.public_entry_bundles`: tlog-tiles entry bundles without a token.
    /// Off by default: hash tiles reveal nothing, entries say who wrote to whom.
    pub public_entry_bundles: bool,
    /// `witnessing.quorum_within_seconds`: a checkpoint not cosigned by the witness
    /// quorum of `witness.policy` within this long is an alarm.
    pub quorum_within: Duration,
    /// `[alerts]`: where alerts go, if anywhere.
    pub alerts: Option<AlertsConfig>,
}

/// `[alerts]`: an operator's alerts (a verdict turning at_risk, lost or
/// stuck_in_handoff; a witness alarm; the store stopping after a failed write or
/// fsync), posted as JSON to a webhook and/or sent by e-mail, retried until
/// delivered or given up.
#[derive(Clone, Debug)]
pub struct AlertsConfig {
    /// `alerts.webhook_url`: where each alert is POSTed.
    pub webhook_url: Option<String>,
    /// `alerts.smtp_url`, `alerts.email_from`, `alerts.email_to`: each alert as an
    /// e-mail.
    pub email: Option<EmailConfig>,
    /// `alerts.console_url`: this server's public address, for each alert's link to
    /// the message's page in the console.
    pub console_url: Option<String>,
    /// `alerts.max_attempts`: deliveries tried before an alert is given up (logged).
    pub max_attempts: u32,
    /// `alerts.retry_initial_ms`: the first wait between attempts, doubled each time
    /// up to five minutes.
    pub retry_initial: Duration,
    /// `alerts.silent_reporter_after_seconds`: a reporting system (organisation and
    /// system) that has reported before but not for this long is an alert.
    pub silent_reporter_after: Option<Duration>,
}

/// Alerts by e-mail.
#[derive(Clone)]
pub struct EmailConfig {
    /// `smtps://user:password@host:465` (TLS), `smtp://host:587?tls=required`
    /// (STARTTLS), or `smtp://host:25` (a relay on this machine or network, in clear).
    /// Holds the password: never printed.
    pub smtp_url: String,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// Every recipient.
    pub to: Vec<String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &"(not shown: it may hold a password)")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// TLS material.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// JWT access tokens in the shape Maskinporten issues, validated offline.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// JSON Web Key Set file (the issuer's public keys), read at start.
    pub jwks_file: PathBuf,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of them, if a list).
    pub audience: String,
    /// Clock leeway for `exp`/`nbf`, seconds.
    pub leeway_seconds: u64,
    /// The names in a token's `scope` claim that grant each scope (`[auth.jwt.scopes]`;
    /// real Maskinporten scopes carry their owner's prefix, e.g. `nav:ledger/write`).
    pub scopes: Vec<(String, crate::auth::Scope)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    privacy: RawPrivacy,
    #[serde(default)]
    tenant: RawTenant,
    #[serde(default)]
    witnessing: RawWitnessing,
    alerts: Option<RawAlerts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook_url: Option<String>,
    smtp_url: Option<String>,
    email_from: Option<String>,
    email_to: Option<Vec<String>>,
    console_url: Option<String>,
    max_attempts: Option<usize>,
    retry_initial_ms: Option<u64>,
    silent_reporter_after_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWitnessing {
    quorum_within_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    channel_operators: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_plain_http_off_loopback: Option<bool>,
    max_body_bytes: Option<usize>,
    max_batch_events: Option<usize>,
    request_timeout_seconds: Option<u64>,
    sweep_interval_seconds: Option<u64>,
    commit: Option<String>,
    header_read_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_connections: Option<usize>,
    max_stream_clients: Option<usize>,
    max_replaying_streams: Option<usize>,
    hook_requests_per_minute: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    tokens_file: Option<PathBuf>,
    jwt: Option<RawJwt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    jwks_file: PathBuf,
    issuer: String,
    audience: String,
    leeway_seconds: Option<u64>,
    scopes: Option<RawScopes>,
}

/// `[auth.jwt.scopes]`: for each scope, the claim names that grant it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    write: Option<OneOrMany>,
    read: Option<OneOrMany>,
    audit: Option<OneOrMany>,
    regulator: Option<OneOrMany>,
    admin: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    pseudonym_key_file: Option<PathBuf>,
    public_entry_bundles: Option<bool>,
}

/// The claim names of each scope: as configured, else the scope's own name.
fn jwt_scopes(raw: RawScopes) -> Result<Vec<(String, crate::auth::Scope)>, String> {
    use crate::auth::Scope;
    let mut out = Vec::new();
    for (scope, names) in [
        (Scope::Write, raw.write),
        (Scope::Read, raw.read),
        (Scope::Audit, raw.audit),
        (Scope::Regulator, raw.regulator),
        (Scope::Admin, raw.admin),
    ] {
        let names = match names {
            None => vec![scope.name().to_string()],
            Some(OneOrMany::One(n)) => vec![n],
            Some(OneOrMany::Many(v)) => v,
        };
        if names.is_empty() {
            return Err(format!(
                "auth.jwt.scopes.{}: give at least one name",
                &scope.name()["ledger:".len()..]
            ));
        }
        for n in names {
            if n.is_empty() || n.len() > 255 || n.chars().any(char::is_whitespace) {
                return Err(format!(
                    "auth.jwt.scopes: {n:?} is not a scope name (1 to 255 characters, no spaces)"
                ));
            }
            out.push((n, scope));
        }
    }
    Ok(out)
}

/// Defaults.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// 8 MiB: a batch of 10,000 typical events fits.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Events per batch.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Seconds to finish a TLS handshake, and a request's head.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
/// Seconds a connection may sit idle.
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 60;
/// Connections at once (lowered at start to fit the file-descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Stream clients at once.
pub const DEFAULT_MAX_STREAM_CLIENTS: usize = 1024;
/// A channel delivers one event (or a small batch) a request: ten a second each.
const DEFAULT_HOOK_REQUESTS_PER_MINUTE: usize = 600;
/// Streams replaying from the log at once.
pub const DEFAULT_MAX_REPLAYING_STREAMS: usize = 16;

impl ServerConfig {
    /// The configuration of the ledger in `dir`: `file` if given (it must exist),
    /// else `<dir>/ledger.toml` if present, else the defaults. Relative paths in the
    /// file are relative to the file's directory.
    pub fn load(dir: &Path, file: Option<&Path>) -> Result<ServerConfig, ConfigError> {
        let default_file = dir.join(FILE_NAME);
        let (raw, base, shown) = match file {
            Some(f) => (Some(read(f)?), parent(f), f.display().to_string()),
            None if default_file.exists() => (
                Some(read(&default_file)?),
                dir.to_path_buf(),
                default_file.display().to_string(),
            ),
            None => (None, dir.to_path_buf(), "(defaults)".to_string()),
        };
        let raw: RawConfig = match raw {
            None => RawConfig::default(),
            // The message and the line only: toml's own text quotes the line, which may
            // hold a secret (an SMTP password, a webhook's token).
            Some(text) => toml::from_str(&text).map_err(|e: toml::de::Error| {
                let line = e
                    .span()
                    .map(|sp| format!("line {}: ", text[..sp.start].matches('\n').count() + 1))
                    .unwrap_or_default();
                ConfigError::Invalid {
                    path: shown.clone(),
                    reason: format!("{line}{}", e.message().trim().replace('\n', " ")),
                }
            })?,
        };
        let invalid = |reason: String| ConfigError::Invalid {
            path: shown.clone(),
            reason,
        };
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(format!(
                "server.listen {listen_text:?} is not an address like 127.0.0.1:7070"
            ))
        })?;
        let tls = match (raw.server.tls_cert, raw.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: at(cert),
                key: at(key),
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "server.tls_cert and server.tls_key go together: give both or neither".into(),
                ));
            }
        };
        let positive = |name: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(invalid(format!("{name} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let commit_per_request = match raw.server.commit.as_deref() {
            None | Some("group") => false,
            Some("per_request") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "server.commit {other:?} is not \"group\" or \"per_request\""
                )));
            }
        };
        let seconds = |name: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(invalid(format!("{name} must be at least 1"))),
            Some(n) if n > 86_400 => Err(invalid(format!(
                "{name} = {n} is more than a day; give at most 86400"
            ))),
            Some(n) => Ok(Duration::from_secs(n)),
            None => Ok(Duration::from_secs(default)),
        };
        Ok(ServerConfig {
            header_read_timeout: seconds(
                "server.header_read_timeout_seconds",
                raw.server.header_read_timeout_seconds,
                DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
            )?,
            idle_timeout: seconds(
                "server.idle_timeout_seconds",
                raw.server.idle_timeout_seconds,
                DEFAULT_IDLE_TIMEOUT_SECONDS,
            )?,
            max_connections: positive(
                "server.max_connections",
                raw.server.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_stream_clients: positive(
                "server.max_stream_clients",
                raw.server.max_stream_clients,
                DEFAULT_MAX_STREAM_CLIENTS,
            )?,
            hook_requests_per_minute: positive(
                "server.hook_requests_per_minute",
                raw.server.hook_requests_per_minute,
                DEFAULT_HOOK_REQUESTS_PER_MINUTE,
            )?,
            max_replaying_streams: positive(
                "server.max_replaying_streams",
                raw.server.max_replaying_streams,
                DEFAULT_MAX_REPLAYING_STREAMS,
            )?,
            commit_per_request,
            public_entry_bundles: raw.privacy.public_entry_bundles.unwrap_or(false),
            quorum_within: seconds(
                "witnessing.quorum_within_seconds",
                raw.witnessing.quorum_within_seconds,
                DEFAULT_QUORUM_WITHIN_SECONDS,
            )?,
            alerts: match raw.alerts {
                None => None,
                Some(a) => {
                    for (key, url) in [
                        ("alerts.webhook_url", a.webhook_url.as_ref()),
                        ("alerts.console_url", a.console_url.as_ref()),
                    ] {
                        if let Some(u) = url
                            && !(u.starts_with("https://") || u.starts_with("http://"))
                        {
                            return Err(invalid(format!("{key} {u:?}: an http(s):// address")));
                        }
                    }
                    let email = match (a.smtp_url, a.email_from, a.email_to) {
                        (None, None, None) => None,
                        (Some(smtp_url), Some(from), Some(to)) => {
                            let email = EmailConfig { smtp_url, from, to };
                            crate::alerts::check_email(&email).map_err(invalid)?;
                            Some(email)
                        }
                        _ => {
                            return Err(invalid(
                                "alerts: e-mail needs all three of smtp_url, email_from and email_to"
                                    .into(),
                            ));
                        }
                    };
                    if a.webhook_url.is_none() && email.is_none() {
                        return Err(invalid(
                            "[alerts] needs webhook_url, or smtp_url with email_from and email_to, or both"
                                .into(),
                        ));
                    }
                    Some(AlertsConfig {
                        webhook_url: a.webhook_url,
                        email,
                        console_url: a.console_url.map(|u| u.trim_end_matches('/').to_string()),
                        max_attempts: positive("alerts.max_attempts", a.max_attempts, 10)? as u32,
                        retry_initial: Duration::from_millis(a.retry_initial_ms.unwrap_or(1000)),
                        silent_reporter_after: a
                            .silent_reporter_after_seconds
                            .map(|s| {
                                positive(
                                    "alerts.silent_reporter_after_seconds",
                                    Some(s as usize),
                                    1,
                                )
                                .map(|s| Duration::from_secs(s as u64))
                            })
                            .transpose()?,
                    })
                }
            },
            listen,
            tls,
            allow_plain_http_off_loopback: raw
                .server
                .allow_plain_http_off_loopback
                .unwrap_or(false),
            max_body_bytes: positive(
                "server.max_body_bytes",
                raw.server.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
            )?,
            max_batch_events: positive(
                "server.max_batch_events",
                raw.server.max_batch_events,
                DEFAULT_MAX_BATCH_EVENTS,
            )?,
            request_timeout: Duration::from_secs(positive(
                "server.request_timeout_seconds",
                raw.server.request_timeout_seconds.map(|s| s as usize),
                30,
            )? as u64),
            sweep_interval: Duration::from_secs(positive(
                "server.sweep_interval_seconds",
                raw.server.sweep_interval_seconds.map(|s| s as usize),
                60,
            )? as u64),
            tokens_file: at(raw
                .auth
                .tokens_file
                .unwrap_or_else(|| crate::tokens::FILE_NAME.into())),
            jwt: match raw.auth.jwt {
                None => None,
                Some(j) => Some(JwtConfig {
                    scopes: jwt_scopes(j.scopes.unwrap_or_default()).map_err(invalid)?,
                    jwks_file: at(j.jwks_file),
                    issuer: j.issuer,
                    audience: j.audience,
                    leeway_seconds: j.leeway_seconds.unwrap_or(30),
                }),
            },
            channel_operators: {
                for org in &raw.tenant.channel_operators {
                    ledger_core::ids::check_orgnr(org)
                        .map_err(|e| invalid(format!("tenant.channel_operators: {org:?}: {e}")))?;
                }
                raw.tenant.channel_operators
            },
            pseudonym_key_file: at(raw
                .privacy
                .pseudonym_key_file
                .unwrap_or_else(|| "pseudonym.key".into())),
        })
    }

    /// Refuses plain HTTP off loopback unless allowed, so tokens never cross a network
    /// in clear by accident.
    pub fn check_transport(&self) -> Result<(), ConfigError> {
        if self.tls.is_none()
            && !self.listen.ip().is_loopback()
            && !self.allow_plain_http_off_loopback
        {
            return Err(ConfigError::Invalid {
                path: "server.listen".into(),
                reason: format!(
                    "{} is not a loopback address and no TLS certificate is configured; \
                     set server.tls_cert and server.tls_key, or server.allow_plain_http_off_loopback = true \
                     behind a TLS-terminating proxy",
                    self.listen
                ),
            });
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn parent(f: &Path) -> PathBuf {
    f.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let d = tempfile::tempdir().unwrap();
        let c = ServerConfig::load(d.path(), None).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.tokens_file, d.path().join("tokens.json"));
        assert!(c.check_transport().is_ok());
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn connection_limits_are_read_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(FILE_NAME);
        std::fs::write(
            &f,
            "[server]\nheader_read_timeout_seconds = 3\nidle_timeout_seconds = 20\n\
             max_connections = 500\nmax_stream_clients = 50\nmax_replaying_streams = 2\n",
        )
        .unwrap();
        let c = ServerConfig::load(d.path(), None).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.idle_timeout, Duration::from_secs(20));
        assert_eq!(
            (
                c.max_connections,
                c.max_stream_clients,
                c.max_replaying_streams
            ),
            (500, 50, 2)
        );
        std::fs::write(&f, "[server]\nheader_read_timeout_seconds = 0\n").unwrap();
        let e = ServerConfig::load(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("server.header_read_timeout_seconds"), "{e}");
        std::fs::write(&f, "[server]\nmax_connections = 0\n").unwrap();
        let e = ServerConfig::load(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("server.max_connections"), "{e}");
    }

    #[test]
    fn plain_http_off_loopback_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(FILE_NAME),
            "[server]\nlisten = \"0.0.0.0:7070\"\n",
        )
        .unwrap();
        let c = ServerConfig::load(d.path(), None).unwrap();
        let e = c.check_transport().unwrap_err().to_string();
        assert!(e.contains("not a loopback address"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.toml");
        std::fs::write(&f, "[server]\nlisen = \"x\"\n").unwrap();
        let e = ServerConfig::load(d.path(), Some(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        std::fs::write(&f, "[server]\nlisten = \"nowhere\"\n").unwrap();
        let e = ServerConfig::load(d.path(), Some(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
    }
}
