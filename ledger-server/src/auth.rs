//! Who is asking: bearer tokens, static (see [`crate::tokens`]) or JWT access tokens
//! in the shape Maskinporten issues, validated offline against a JWKS file.

use std::path::Path;
use std::sync::RwLock;
use std::time::SystemTime;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::error::ApiError;
use crate::tokens::TokenStore;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Report events for the token's own organisation.
    #[serde(rename = "ledger:write")]
    Write,
    /// Read messages the token's organisation sent or received.
    #[serde(rename = "ledger:read")]
    Read,
    /// Checkpoints, proofs and raw entries.
    #[serde(rename = "ledger:audit")]
    Audit,
    /// Read everything.
    #[serde(rename = "ledger:regulator")]
    Regulator,
    /// Operate the server (metrics).
    #[serde(rename = "ledger:admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 5] = [
        Scope::Write,
        Scope::Read,
        Scope::Audit,
        Scope::Regulator,
        Scope::Admin,
    ];

    /// The scope's name, as in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Write => "ledger:write",
            Scope::Read => "ledger:read",
            Scope::Audit => "ledger:audit",
            Scope::Regulator => "ledger:regulator",
            Scope::Admin => "ledger:admin",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The organisation the caller acts for (9-digit organisation number).
    pub org: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Which token (never the token itself): `token:<name>` or `jwt:<client>`.
    pub subject: String,
}

impl Principal {
    /// Whether it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// 403 unless it holds one of `scopes`.
    pub fn require(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.has(*s)) {
            return Ok(());
        }
        let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
        Err(ApiError::forbidden(
            "missing_scope",
            format!("this needs the scope {}", names.join(" or ")),
        ))
    }
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The JWKS file is unreadable or not a key set.
    #[error("JWKS file {path}: {reason}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The tokens file is unusable.
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokenError),
}

struct StaticTokens {
    store: TokenStore,
    modified: Option<(SystemTime, u64)>,
}

/// Checks bearer tokens. The tokens file is re-read when it changes, so `ledger token
/// create|revoke` takes effect at once, without a restart.
pub struct Authenticator {
    tokens_path: std::path::PathBuf,
    tokens: RwLock<StaticTokens>,
    jwt: Option<JwtVerifier>,
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .and_then(|m| Ok((m.modified()?, m.len())))
        .ok()
}

impl Authenticator {
    /// From the tokens file and, if configured, the JWT settings.
    pub fn new(tokens_path: &Path, jwt: Option<&JwtConfig>) -> Result<Self, AuthSetupError> {
        let store = TokenStore::load(tokens_path)?;
        Ok(Authenticator {
            tokens_path: tokens_path.to_path_buf(),
            tokens: RwLock::new(StaticTokens {
                store,
                modified: modified(tokens_path),
            }),
            jwt: jwt.map(JwtVerifier::new).transpose()?,
        })
    }

    fn reload_if_changed(&self, t: &mut StaticTokens) {
        let m = modified(&self.tokens_path);
        if m != t.modified {
            // A file being rewritten is skipped until it reads whole; the old tokens
            // stay in force meanwhile.
            if let Ok(store) = TokenStore::load(&self.tokens_path) {
                t.store = store;
                t.modified = m;
            }
        }
    }

    /// The principal of an `Authorization` header value; 401 with the reason if none.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let header = header.ok_or_else(|| {
            ApiError::unauthorized("no_token", "send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "bad_authorization",
                    "the Authorization header must read `Bearer <token>`",
                )
            })?;
        if TokenStore::is_static(token) {
            return self.current().store.authenticate(token).ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "the token is unknown or revoked")
            });
        }
        match &self.jwt {
            Some(v) => v.verify(token),
            None => Err(ApiError::unauthorized(
                "invalid_token",
                "the token is not a static token of this server, and no JWT issuer is configured",
            )),
        }
    }
}

impl Authenticator {
    /// The tokens as the file holds them now. The file is checked (one stat, outside
    /// any lock) on every request, so a created or revoked token takes effect at once.
    fn current(&self) -> std::sync::RwLockReadGuard<'_, StaticTokens> {
        let now = modified(&self.tokens_path);
        let stale = self.tokens.read().expect("tokens lock").modified != now;
        if stale {
            let mut t = self.tokens.write().expect("tokens lock");
            self.reload_if_changed(&mut t);
        }
        self.tokens.read().expect("tokens lock")
    }

    /// The principal, channel and id of a channel's hook secret (`/v1/hooks/<secret>`);
    /// 401 if it is unknown, revoked, or a bearer token.
    pub fn authenticate_hook(&self, secret: &str) -> Result<(Principal, String, String), ApiError> {
        let t = self.current();
        let (p, rec) = t.store.authenticate_hook(secret).ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_hook",
                "no hook has this address (it was mistyped or revoked: see `ledger channel list`)",
            )
        })?;
        let channel = rec.channel.clone().expect("a hook has a channel");
        Ok((p, channel, rec.id.clone()))
    }
}

/// Maskinporten-shaped access tokens: RS256 or ES256, `iss`, `aud`, `exp`, a `scope`
/// string, and the consumer organisation as `consumer.ID` = `0192:<orgnr>`.
struct JwtVerifier {
    keys: JwkSet,
    issuer: String,
    audience: String,
    leeway: u64,
    /// Claim name → the scope it grants (a name may grant several).
    scopes: Vec<(String, Scope)>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scope: String,
    consumer: Option<Consumer>,
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct Consumer {
    #[serde(rename = "ID")]
    id: String,
}

impl JwtVerifier {
    fn new(c: &JwtConfig) -> Result<JwtVerifier, AuthSetupError> {
        let bad = |reason: String| AuthSetupError::Jwks {
            path: c.jwks_file.display().to_string(),
            reason,
        };
        let text = std::fs::read(&c.jwks_file).map_err(|e| bad(e.to_string()))?;
        let keys: JwkSet = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if keys.keys.is_empty() {
            return Err(bad("it holds no keys".into()));
        }
        Ok(JwtVerifier {
            keys,
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            leeway: c.leeway_seconds,
            scopes: c.scopes.clone(),
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let invalid = |why: String| ApiError::unauthorized("invalid_token", why);
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted (RS256 or ES256)",
                header.alg
            )));
        }
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid),
            None if self.keys.keys.len() == 1 => self.keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| invalid("no key of the configured JWKS matches the token's kid".into()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| invalid(format!("the JWKS key cannot be used: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "the token has expired".to_string(),
                K::InvalidAudience => format!("the token's audience is not {}", self.audience),
                K::InvalidIssuer => format!("the token's issuer is not {}", self.issuer),
                K::InvalidSignature => "the token's signature does not verify".to_string(),
                K::ImmatureSignature => "the token is not valid yet".to_string(),
                K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                other => format!("the token is invalid: {other:?}"),
            };
            invalid(why)
        })?;
        let c = data.claims;
        let org = c
            .consumer
            .as_ref()
            .and_then(|k| k.id.strip_prefix("0192:"))
            .filter(|o| ledger_core::ids::check_orgnr(o).is_ok())
            .ok_or_else(|| {
                invalid(
                    "the token names no consumer organisation (consumer.ID = 0192:<orgnr>)".into(),
                )
            })?
            .to_string();
        let mut scopes: Vec<Scope> = Vec::new();
        for name in c.scope.split_whitespace() {
            for (n, scope) in &self.scopes {
                if n == name && !scopes.contains(scope) {
                    scopes.push(*scope);
                }
            }
        }
        Ok(Principal {
            org,
            scopes,
            subject: format!("jwt:{}", c.client_id.unwrap_or_default()),
        })
    }
}
