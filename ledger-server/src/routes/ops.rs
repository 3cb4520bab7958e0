//! For operators: liveness, readiness and metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::{AppState, Auth};
use crate::auth::Scope;
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;

/// `GET /healthz`: the process answers. Unauthenticated; says nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operate",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store accepts appends and the projection is running.
/// Unauthenticated; says nothing else.
#[utoipa::path(get, path = "/readyz", tag = "operate",
    responses((status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Shutting down, or the store stopped accepting appends", body = String, content_type = "text/plain")))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready() {
        // Witness alarms do not stop appends, but an operator's probe sees them.
        let alarms = s
            .witnessing
            .as_ref()
            .map(|w| w.status().alarms)
            .unwrap_or_default();
        let mut body = String::from("ready\n");
        for a in alarms {
            body.push_str(&format!("witness alarm: {a}\n"));
        }
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET /metrics`: Prometheus text format; needs `ledger:admin`.
#[utoipa::path(get, path = "/metrics", tag = "operate",
    responses((status = 200, description = "Prometheus/OpenMetrics text (scope ledger:admin)", body = String, content_type = "application/openmetrics-text"), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody)),
    security(("bearer" = [])))]
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
