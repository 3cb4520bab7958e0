//! For operators: liveness, readiness and metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::{AppState, Auth};
use crate::auth::Scope;
use crate::error::ApiError;

/// `GET /healthz`: the process answers. Unauthenticated; says nothing else.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store accepts appends and the projection is running.
/// Unauthenticated; says nothing else.
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET /metrics`: Prometheus text format; needs `ledger:admin`.
pub(crate) async fn metrics(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, ApiError> {
    p.require(&[Scope::Admin])?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response())
}
