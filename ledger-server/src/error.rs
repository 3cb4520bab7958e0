//! The one error shape of the API: a status and a JSON body saying what was wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API failure. `code` is a stable, short reason (also the `reason` label of the
/// rejected-requests metric); `message` is for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable reason code.
    pub code: &'static str,
    /// What was wrong, where, and why.
    pub message: String,
    /// Particulars (e.g. one entry per bad event of a batch).
    pub details: Option<Value>,
}

/// Put in a response's extensions so the metrics layer can count rejections by reason.
#[derive(Clone, Copy, Debug)]
pub struct RejectReason(pub &'static str);

impl ApiError {
    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 422.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: the message is logged, not returned (it may name files).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        eprintln!("ledger serve: internal error: {message}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log says more",
        )
    }

    /// With particulars.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
        });
        if let Some(d) = self.details {
            body["details"] = d;
        }
        let mut r = (self.status, axum::Json(json!({ "error": body }))).into_response();
        r.extensions_mut().insert(RejectReason(self.code));
        r
    }
}

impl From<ledger_core::StoreError> for ApiError {
    fn from(e: ledger_core::StoreError) -> Self {
        use ledger_core::StoreError as E;
        match e {
            E::Conflict { id, seq } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("event id {id:?} is already recorded at seq {seq} with different content"),
            ),
            E::OutOfRange(m) => ApiError::bad_request("out_of_range", m),
            E::Database(why) => {
                ApiError::unavailable(format!("the database failed ({why}); retry"))
            }
            E::Unavailable(why) => ApiError::unavailable(format!(
                "{why}; nothing was recorded: retry (here or at another server)"
            )),
            E::Poisoned => ApiError::unavailable(
                "the store stopped accepting appends after a failed write; the operator must restart the server",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<ledger_core::projection::ProjectionError> for ApiError {
    fn from(e: ledger_core::projection::ProjectionError) -> Self {
        ApiError::internal(e)
    }
}
