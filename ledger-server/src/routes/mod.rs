//! The HTTP surface: the router, its shared state, authentication as an extractor,
//! and the layers every request passes (body limit, timeout, rejection counting).

mod audit;
mod ops;
mod read;
mod stream;
mod tiles;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use ledger_pg::Engine;

use crate::auth::{Authenticator, Principal};
use crate::config::ServerConfig;
use crate::error::{ApiError, RejectReason};
use crate::mappers::Pseudonymizer;
use crate::metrics::Metrics;
use crate::projector::Projector;

/// What every handler shares.
pub(crate) struct Inner {
    pub store: Arc<Engine>,
    pub projector: Arc<Projector>,
    pub auth: Authenticator,
    pub pseudonymizer: Pseudonymizer,
    pub metrics: Arc<Metrics>,
    pub streams: StreamLimits,
    pub config: ServerConfig,
    pub shutting_down: AtomicBool,
    /// Held around each append when `server.commit = "per_request"`.
    pub commit_lock: tokio::sync::Mutex<()>,
    /// Names for organisation numbers (`organisations.csv`; empty without one).
    pub directory: ledger_core::directory::Directory,
    /// The witnessing thread, when the ledger has a `witness.policy`.
    pub witnessing: Option<Arc<crate::witnessing::Witnessing>>,
    /// The ledger's directory.
    pub dir: std::path::PathBuf,
    /// The console's log-in sessions.
    pub sessions: crate::console::Sessions,
    /// One export bundle at a time (`GET /v1/bundle`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Requests a minute per channel hook.
    pub hooks: crate::hooks::HookLimiter,
}

/// What bounds the streams: clients at once, replays at once, and log reads at once
/// (so streams never take over tokio's blocking pool, which questions need too).
pub(crate) struct StreamLimits {
    pub clients: Arc<tokio::sync::Semaphore>,
    pub replays: Arc<tokio::sync::Semaphore>,
    pub reads: Arc<tokio::sync::Semaphore>,
}

impl StreamLimits {
    pub fn new(c: &ServerConfig) -> StreamLimits {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        StreamLimits {
            clients: Arc::new(tokio::sync::Semaphore::new(c.max_stream_clients)),
            replays: Arc::new(tokio::sync::Semaphore::new(c.max_replaying_streams)),
            reads: Arc::new(tokio::sync::Semaphore::new(cores.max(2))),
        }
    }
}

/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Ready to take appends and questions.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && !ledger_core::Store::is_poisoned(&*self.store)
    }
}

/// The authenticated caller of a request; 401 if there is none.
pub(crate) struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        authenticate(s, &parts.method, &parts.headers).map(Auth)
    }
}

/// Who is asking: the one place that decides, for the API, the tiles and the
/// console alike. A bearer header first; else the console's session cookie, whose
/// token is authenticated exactly as that header would be (so revocation and expiry
/// end the session), and which must carry the session's CSRF token on anything but
/// GET and HEAD.
pub(crate) fn authenticate(
    s: &AppState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(h) = headers.get(AUTHORIZATION) {
        return s.auth.authenticate(Some(h.to_str().unwrap_or("\u{0}")));
    }
    let Some(id) = crate::console::cookie(headers, crate::console::SESSION_COOKIE) else {
        return s.auth.authenticate(None);
    };
    let (credential, csrf) = s.sessions.get(&id).ok_or_else(|| {
        ApiError::unauthorized(
            "session_expired",
            "the console session has ended (logged out, idle for 30 minutes, or 8 hours old); log in again",
        )
    })?;
    let safe = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    if !safe && !crate::console::csrf_ok(headers, &csrf) {
        return Err(ApiError::forbidden(
            "csrf",
            "a request that changes state needs the X-CSRF-Token header of its session",
        ));
    }
    s.auth.authenticate(Some(&format!("Bearer {credential}")))
}

/// The log's size, asked off the async workers: on PostgreSQL a server without the
/// writer lease asks the database, which blocks.
pub(crate) async fn store_size(s: &AppState) -> Result<u64, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || ledger_core::Store::size(&*store))
        .await
        .map_err(|_| ApiError::unavailable("the store could not be asked its size; retry"))
}

/// A query string, parsed; a malformed one is a 400 with the JSON error body every
/// answer uses (axum's own `Query` answers such requests in plain text).
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, s).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::bad_request(
                "bad_query",
                format!("the query string is not understood: {}", e.body_text()),
            )),
        }
    }
}

/// Counts refused requests by reason for `/metrics` (the reason travels in the
/// response's extensions; bodies are never inspected).
async fn count_rejections(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        let reason = r
            .extensions()
            .get::<RejectReason>()
            .map_or_else(|| status_reason(r.status()), |x| x.0);
        s.metrics.rejected(reason);
    }
    r
}

fn status_reason(s: StatusCode) -> &'static str {
    match s {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "other",
    }
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; the API is under /v1 (see schemas/openapi.yaml)")
}

/// The routes and their OpenAPI description, from the same registrations; requests
/// but the stream are answered 503 after `timeout`.
pub(crate) fn api(timeout: std::time::Duration) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let timed: OpenApiRouter<AppState> = OpenApiRouter::new()
        .routes(routes!(write::post_events))
        .routes(routes!(write::post_cloudevents))
        .routes(routes!(write::post_eformidling))
        .routes(routes!(write::post_hook))
        .routes(routes!(read::list_messages))
        .routes(routes!(read::get_message))
        .routes(routes!(read::get_scoped_message))
        .routes(routes!(read::get_report))
        .routes(routes!(read::get_stats))
        .routes(routes!(read::whoami))
        .routes(routes!(read::post_reconcile))
        .routes(routes!(audit::get_ledger))
        .routes(routes!(audit::get_checkpoint))
        .routes(routes!(audit::get_checkpoints))
        .routes(routes!(audit::get_inclusion))
        .routes(routes!(audit::get_consistency))
        .routes(routes!(audit::get_entries))
        .routes(routes!(audit::get_receipt))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    // The stream and a bundle's download outlive any request timeout: they are
    // routed outside that layer.
    let v1 = timed
        .routes(routes!(stream::stream))
        .routes(routes!(audit::get_bundle));
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .nest("/v1", v1)
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .split_for_parts()
}

/// The OpenAPI document as YAML (what `schemas/openapi.yaml` holds).
pub(crate) fn openapi_yaml() -> String {
    api(std::time::Duration::from_secs(30))
        .1
        .to_yaml()
        .expect("the OpenAPI document serializes")
}

/// The whole API.
pub(crate) fn router(state: AppState) -> Router {
    let (routes, _) = api(state.config.request_timeout);
    routes
        .route("/tlog/checkpoint", axum::routing::get(tiles::checkpoint))
        .route("/tlog/tile/{*path}", axum::routing::get(tiles::tile))
        .route("/", axum::routing::get(crate::console::root))
        .route("/console", axum::routing::get(crate::console::root))
        .route("/console/", axum::routing::get(crate::console::index))
        .route("/console/login", axum::routing::post(crate::console::login))
        .route(
            "/console/logout",
            axum::routing::post(crate::console::logout),
        )
        .route(
            "/console/{*file}",
            axum::routing::get(crate::console::asset),
        )
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .with_state(state)
}
