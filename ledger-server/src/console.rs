//! The regulator's console: pages built into the binary, served by `ledger serve`
//! under `/console`, and a log-in that turns a bearer token into a session cookie.
//!
//! The pages ask the same `/v1` API as any client. A session is only another way to
//! carry the caller's token: `routes::authenticate` (the one place that decides who
//! is asking) takes the token from the session and authenticates it exactly as a
//! bearer header, so a revoked token or an expired JWT ends the session too, and the
//! tenant rule applies unchanged. The session cookie is `HttpOnly`,
//! `SameSite=Strict`, and `Secure` off loopback; a request that changes anything
//! must also carry the session's CSRF token in `X-CSRF-Token` (double submit: the
//! pages read it from the `ledger_csrf` cookie). The map holds a hash of each
//! session id, never the cookie itself; tokens never appear in a URL or a log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN,
    SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::Digest as _;

use crate::error::ApiError;
use crate::routes::AppState;

/// The session cookie (HttpOnly).
pub(crate) const SESSION_COOKIE: &str = "ledger_session";
/// The CSRF cookie the pages read and send back as [`CSRF_HEADER`].
pub(crate) const CSRF_COOKIE: &str = "ledger_csrf";
/// The header a cookie-authenticated request that changes state must carry.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// A session ends after this long without a request…
const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and after this long in any case.
const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; the least recently used goes first.
const SESSIONS_MAX: usize = 10_000;

/// The pages' rules for the browser: nothing but this server's own files, no inline
/// script or style, no framing, no form posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Session {
    credential: String,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// The console's sessions, in memory: a restart logs everyone out.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source");
    B64URL.encode(b)
}

fn key(id: &str) -> [u8; 32] {
    sha2::Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session for an authenticated credential: (session id, CSRF token).
    fn create(&self, credential: String) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| live(s, now));
        if map.len() >= SESSIONS_MAX
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&id),
            Session {
                credential,
                csrf: csrf.clone(),
                created: now,
                seen: now,
            },
        );
        (id, csrf)
    }

    /// The credential and CSRF token of a live session.
    pub(crate) fn get(&self, id: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let k = key(id);
        match map.get_mut(&k) {
            Some(s) if live(s, now) => {
                s.seen = now;
                Some((s.credential.clone(), s.csrf.clone()))
            }
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(&key(id));
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Whether the CSRF header matches the session's token (in constant time).
pub(crate) fn csrf_ok(headers: &HeaderMap, want: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(want.as_bytes())))
}

/// A cookie as the console sets it: SameSite=Strict, Path=/, Secure off loopback.
fn set_cookie(
    s: &AppState,
    name: &str,
    value: &str,
    http_only: bool,
    max_age: Duration,
) -> HeaderValue {
    let c = cookie::Cookie::build((name, value))
        .path("/")
        .same_site(cookie::SameSite::Strict)
        .http_only(http_only)
        .secure(secure(s))
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("a cookie is a header value")
}

/// Whether the browser reaches the server over TLS: with TLS, or off loopback (where
/// plain HTTP is refused unless a TLS proxy stands in front).
fn secure(s: &AppState) -> bool {
    s.config.tls.is_some() || !s.config.listen.ip().is_loopback()
}

/// The files of the console, built into the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/dom.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/i18n.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/chart.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/overview.js"),
    ),
    (
        "reports.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/reports.js"),
    ),
    (
        "message.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/message.js"),
    ),
    (
        "audit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/audit.js"),
    ),
    (
        "reconcile.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/reconcile.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/verify.js"),
    ),
    (
        "vendor/noble-hashes/blake3.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/blake3.js"),
    ),
    (
        "vendor/noble-hashes/blake2.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/blake2.js"),
    ),
    (
        "vendor/noble-hashes/_blake.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/_blake.js"),
    ),
    (
        "vendor/noble-hashes/_md.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/_md.js"),
    ),
    (
        "vendor/noble-hashes/_u64.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/_u64.js"),
    ),
    (
        "vendor/noble-hashes/utils.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/utils.js"),
    ),
    (
        "vendor/noble-hashes/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../console/vendor/noble-hashes/LICENSE"),
    ),
];

/// Headers every console answer carries.
fn page_headers(content_type: &'static str) -> [(axum::http::HeaderName, HeaderValue); 6] {
    [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            axum::http::header::REFERRER_POLICY,
            // Not no-referrer: with it, a browser's form post says `Origin: null`.
            HeaderValue::from_static("same-origin"),
        ),
        (
            axum::http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ),
        // Not content-addressed: the browser asks again (and gets a 200) after an
        // upgrade of the binary.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// `GET /`: to the console.
pub(crate) async fn root() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/console/")]).into_response()
}

/// `GET /console/`: the page (it asks `/v1/whoami` and offers the log-in when that
/// is a 401).
pub(crate) async fn index() -> Response {
    asset_response("index.html")
}

/// `GET /console/<file>`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(file: &str) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, bytes)) => (page_headers(ct), *bytes).into_response(),
        None => ApiError::not_found(format!("the console has no file {file:?}")).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// Whether a form post comes from this server's own page: the browser says so in
/// `Sec-Fetch-Site`, or else its `Origin` names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match (headers.get(ORIGIN).and_then(|v| v.to_str().ok()), host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        // No Origin: not a browser's cross-site post (they always send one).
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// `POST /console/login` (a form: `token`): the token is authenticated as a bearer
/// header would be; on success a session, and back to the console.
pub(crate) async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return ApiError::forbidden(
            "cross_origin",
            "a log-in must come from the console's own page",
        )
        .into_response();
    }
    let token = form.token.trim().to_string();
    match s.auth.authenticate(Some(&format!("Bearer {token}"))) {
        Ok(_) => {
            let (id, csrf) = s.sessions.create(token);
            let mut r = (StatusCode::SEE_OTHER, [(LOCATION, "/console/")]).into_response();
            let h = r.headers_mut();
            h.append(
                SET_COOKIE,
                set_cookie(&s, SESSION_COOKIE, &id, true, LIFETIME),
            );
            h.append(
                SET_COOKIE,
                set_cookie(&s, CSRF_COOKIE, &csrf, false, LIFETIME),
            );
            r
        }
        Err(_) => (
            StatusCode::SEE_OTHER,
            [(LOCATION, "/console/?login=failed")],
        )
            .into_response(),
    }
}

/// `POST /console/logout` (with the CSRF header): the session ends here and now.
pub(crate) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        match s.sessions.get(&id) {
            Some((_, csrf)) if csrf_ok(&headers, &csrf) => s.sessions.remove(&id),
            Some(_) => {
                return ApiError::forbidden(
                    "csrf",
                    "a request that changes state needs the X-CSRF-Token header",
                )
                .into_response();
            }
            None => {}
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.append(
        SET_COOKIE,
        set_cookie(&s, SESSION_COOKIE, "", true, Duration::ZERO),
    );
    h.append(
        SET_COOKIE,
        set_cookie(&s, CSRF_COOKIE, "", false, Duration::ZERO),
    );
    r
}
