//! Static API tokens: `ledger token create|list|revoke`. The file holds only each
//! token's SHA-256 (tokens are 256 random bits, so a fast hash is the right one); the
//! token itself is shown once, at creation.
//!
//! A token reads `ldg_<id>_<secret>`: the id finds the record, the hash of the whole
//! token is compared in constant time.
//!
//! A channel's hook (`ledger channel add`) is a token bound to one channel: a channel
//! such as Altinn Events or an eFormidling integrasjonspunkt cannot send a bearer
//! token, so it calls `/v1/hooks/<token>`, the secret in the path. Such a token is
//! accepted only there, for its channel, and never as a bearer token: a URL is more
//! exposed than a header (proxies, the channel's own configuration), so what it can
//! do is the least: report that channel's events for its organisation.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Principal, Scope};

/// The tokens file's default name in the ledger directory.
pub const FILE_NAME: &str = "tokens.json";
const PREFIX: &str = "ldg_";

/// Why the tokens file cannot be used or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a tokens file.
    #[error("{path}: not a tokens file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad input to create or revoke.
    #[error("{0}")]
    Usage(String),
}

/// One token as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public part of the token, for lookup and for `revoke`.
    pub id: String,
    /// Who it is for.
    pub name: String,
    /// Organisation number the token acts for.
    pub org: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// For a channel's hook: the channel (`altinn`, `eformidling`, `fiks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The channels a hook can be made for, and what each posts.
pub const HOOK_CHANNELS: [&str; 3] = ["altinn", "eformidling", "fiks"];

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The tokens of one file.
pub struct TokenStore {
    path: PathBuf,
    file: TokenFile,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("UTC times format")
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

impl TokenStore {
    /// Reads the file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<TokenStore, TokenError> {
        let file = match fs::read(path) {
            Ok(bytes) => {
                let f: TokenFile =
                    serde_json::from_slice(&bytes).map_err(|e| TokenError::Invalid {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if f.version != 1 {
                    return Err(TokenError::Invalid {
                        path: path.display().to_string(),
                        reason: format!("version {} (this ledger reads version 1)", f.version),
                    });
                }
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile {
                version: 1,
                tokens: Vec::new(),
            },
            Err(e) => return Err(io(path)(e)),
        };
        Ok(TokenStore {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Every token ever created, revoked ones included.
    pub fn list(&self) -> &[TokenRecord] {
        &self.file.tokens
    }

    /// Creates a token, saves the file, and returns the record and the token (the
    /// only time it exists outside its holder).
    pub fn create(
        &mut self,
        org: &str,
        scopes: &[Scope],
        name: Option<&str>,
    ) -> Result<(TokenRecord, String), TokenError> {
        self.create_bound(org, scopes, name, None)
    }

    /// Creates a hook for `channel` (one of [`HOOK_CHANNELS`]): a token that reports
    /// that channel's events for `org` through `/v1/hooks/<token>` and nothing else.
    pub fn create_hook(
        &mut self,
        org: &str,
        channel: &str,
        name: Option<&str>,
    ) -> Result<(TokenRecord, String), TokenError> {
        if !HOOK_CHANNELS.contains(&channel) {
            return Err(TokenError::Usage(format!(
                "channel {channel:?} is not one of: {}",
                HOOK_CHANNELS.join(", ")
            )));
        }
        let name = name.map_or_else(
            || format!("{channel}-{org}-{}", self.file.tokens.len() + 1),
            str::to_string,
        );
        self.create_bound(org, &[Scope::Write], Some(&name), Some(channel))
    }

    fn create_bound(
        &mut self,
        org: &str,
        scopes: &[Scope],
        name: Option<&str>,
        channel: Option<&str>,
    ) -> Result<(TokenRecord, String), TokenError> {
        ledger_core::ids::check_orgnr(org)
            .map_err(|e| TokenError::Usage(format!("--org {org:?}: {e}")))?;
        if scopes.is_empty() {
            return Err(TokenError::Usage(
                "--scope: give at least one of ledger:write, ledger:read, ledger:audit, ledger:regulator, ledger:admin"
                    .into(),
            ));
        }
        let mut random = [0u8; 36];
        getrandom::fill(&mut random).map_err(|e| TokenError::Io {
            path: "the OS random source".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let id = hex::encode(&random[..4]);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&random[4..]);
        let token = format!("{PREFIX}{id}_{secret}");
        let name = name.map_or_else(|| format!("{org}-{id}"), str::to_string);
        if self.file.tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Usage(format!(
                "--name {name:?} is taken; names identify tokens for `ledger token revoke`"
            )));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let record = TokenRecord {
            id,
            name,
            org: org.to_string(),
            scopes,
            sha256: sha256_hex(&token),
            created_at: now_rfc3339(),
            revoked_at: None,
            channel: channel.map(str::to_string),
        };
        self.file.tokens.push(record.clone());
        self.save()?;
        Ok((record, token))
    }

    /// Revokes the token with this id or name, and saves the file.
    pub fn revoke(&mut self, id_or_name: &str) -> Result<TokenRecord, TokenError> {
        let t = self
            .file
            .tokens
            .iter_mut()
            .find(|t| t.id == id_or_name || t.name == id_or_name)
            .ok_or_else(|| {
                TokenError::Usage(format!(
                    "no token has the id or name {id_or_name:?} (see `ledger token list`)"
                ))
            })?;
        if t.revoked_at.is_none() {
            t.revoked_at = Some(now_rfc3339());
        }
        let t = t.clone();
        self.save()?;
        Ok(t)
    }

    /// The principal a presented bearer token stands for, if it is one of ours, not
    /// revoked, and not a channel's hook.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let t = self.matching(presented)?;
        if t.channel.is_some() {
            return None;
        }
        Some(Principal {
            org: t.org.clone(),
            scopes: t.scopes.clone(),
            subject: format!("token:{}", t.name),
        })
    }

    /// The principal and channel of a presented hook, if it is one of ours and not
    /// revoked. Its id (never the secret) names it in logs and limits.
    pub fn authenticate_hook(&self, presented: &str) -> Option<(Principal, &TokenRecord)> {
        let t = self.matching(presented)?;
        t.channel.as_ref()?;
        let p = Principal {
            org: t.org.clone(),
            scopes: vec![Scope::Write],
            subject: format!("hook:{}", t.name),
        };
        Some((p, t))
    }

    /// The live record whose hash is the presented token's.
    fn matching(&self, presented: &str) -> Option<&TokenRecord> {
        let id = presented.strip_prefix(PREFIX)?.split('_').next()?;
        let t = self.file.tokens.iter().find(|t| t.id == id)?;
        let given = Sha256::digest(presented.as_bytes());
        let stored = hex::decode(&t.sha256).ok()?;
        if !bool::from(given.as_slice().ct_eq(&stored)) || t.revoked_at.is_some() {
            return None;
        }
        Some(t)
    }

    /// Whether a presented bearer token has the shape of a static token.
    pub fn is_static(presented: &str) -> bool {
        presented.starts_with(PREFIX)
    }

    fn save(&self) -> Result<(), TokenError> {
        let tmp = self.path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(&self.file).expect("tokens serialize");
        text.push(b'\n');
        {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io(&tmp))?;
            f.write_all(&text).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(FILE_NAME);
        let mut s = TokenStore::load(&path).unwrap();
        let (rec, token) = s
            .create("974760673", &[Scope::Write, Scope::Read], Some("police"))
            .unwrap();
        assert!(token.starts_with("ldg_"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself is never stored");
        assert!(text.contains(&rec.sha256));

        let s = TokenStore::load(&path).unwrap();
        let p = s.authenticate(&token).expect("valid");
        assert_eq!(p.org, "974760673");
        assert!(p.has(Scope::Write) && !p.has(Scope::Audit));
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push('x');
        assert!(s.authenticate(&wrong).is_none());
        assert!(s.authenticate("ldg_00000000_nope").is_none());

        let mut s = TokenStore::load(&path).unwrap();
        s.revoke("police").unwrap();
        assert!(
            TokenStore::load(&path)
                .unwrap()
                .authenticate(&token)
                .is_none()
        );
    }

    #[test]
    fn a_hook_is_only_a_hook_and_a_token_never_one() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(FILE_NAME);
        let mut s = TokenStore::load(&path).unwrap();
        let (rec, hook) = s.create_hook("974760673", "altinn", None).unwrap();
        let (_, token) = s.create("974760673", &[Scope::Write], None).unwrap();
        assert_eq!(rec.channel.as_deref(), Some("altinn"));
        assert_eq!(rec.scopes, [Scope::Write]);
        let s = TokenStore::load(&path).unwrap();
        assert!(s.authenticate(&hook).is_none(), "a hook is no bearer token");
        assert!(s.authenticate_hook(&token).is_none(), "a token is no hook");
        let (p, r) = s.authenticate_hook(&hook).unwrap();
        assert_eq!(
            (p.org.as_str(), r.channel.as_deref()),
            ("974760673", Some("altinn"))
        );
        assert!(p.subject.starts_with("hook:"));
        let mut wrong = hook.clone();
        wrong.pop();
        wrong.push(if hook.ends_with('x') { 'y' } else { 'x' });
        assert!(s.authenticate_hook(&wrong).is_none());
        let mut s = TokenStore::load(&path).unwrap();
        assert!(s.create_hook("974760673", "smtp", None).is_err());
        s.revoke(&rec.id).unwrap();
        assert!(
            TokenStore::load(&path)
                .unwrap()
                .authenticate_hook(&hook)
                .is_none()
        );
    }

    #[test]
    fn bad_org_and_no_scope_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut s = TokenStore::load(&d.path().join(FILE_NAME)).unwrap();
        assert!(s.create("123", &[Scope::Read], None).is_err());
        assert!(s.create("974760673", &[], None).is_err());
    }
}
