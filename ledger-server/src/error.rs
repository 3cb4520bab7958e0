//! The one error shape of the API: a status and a JSON body saying what was wrong.

use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Seconds a client is asked to wait after a store failure before retrying.
const RETRY_STORE_SECONDS: u32 = 5;
/// Seconds a client is asked to wait when another server or the database may answer soon.
const RETRY_SOON_SECONDS: u32 = 1;
/// What a 503 of the store says: the particulars are logged, never returned (they may
/// name files, hosts, users or worse).
pub(crate) const STORE_UNAVAILABLE: &str = "the store is unavailable; retry later (retrying the same events is safe: \
     a recorded one gets its original receipt)";

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
    /// Seconds for the `Retry-After` header (503s).
    pub retry_after: Option<u32>,
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
            retry_after: None,
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

    /// 503, with `Retry-After: 1`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            .retry_after(RETRY_SOON_SECONDS)
    }

    /// 429 with its own code, asking the client to come back in `seconds`.
    pub fn too_many(code: &'static str, message: impl Into<String>, seconds: u32) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(seconds)
    }

    /// 503 with its own code, asking the client to come back in `seconds`.
    pub fn busy(code: &'static str, message: impl Into<String>, seconds: u32) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(seconds)
    }

    /// With a `Retry-After` of `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 500: the message is logged (secrets masked), not returned (it may name files).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        eprintln!(
            "ledger serve: internal error: {}",
            redact(&message.to_string())
        );
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
        // No answer carries a connection string or a password, whatever put it there.
        let mut body = json!({
            "status": self.status.as_u16(),
            "code": self.code,
            "message": redact(&self.message),
        });
        if let Some(mut d) = self.details {
            redact_json(&mut d);
            body["details"] = d;
        }
        let mut r = (self.status, axum::Json(json!({ "error": body }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(RETRY_AFTER, s.into());
        }
        r.extensions_mut().insert(RejectReason(self.code));
        r
    }
}

pub use ledger_pg::redact;

fn redact_json(v: &mut Value) {
    match v {
        Value::String(s) => {
            let r = redact(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        Value::Object(m) => m.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// Logs why the store failed, secrets masked.
pub(crate) fn log_store_failure(e: &ledger_core::StoreError) {
    eprintln!("ledger serve: the store failed: {}", redact(&e.to_string()));
}

impl From<ledger_core::StoreError> for ApiError {
    fn from(e: ledger_core::StoreError) -> Self {
        use ledger_core::StoreError as E;
        match e {
            // The seq is not named: event ids are one namespace across organisations
            // (format 1), so the entry may be another organisation's.
            E::Conflict { id, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "event id {id:?} is already recorded with different content; nothing was recorded \
                     (a retry must send the same event; a new event needs a new id)"
                ),
            ),
            E::OutOfRange(m) => ApiError::bad_request("out_of_range", m),
            // Another server holds the writer lease, or the database is unreachable:
            // soon, here or elsewhere.
            e @ (E::Database(_) | E::Unavailable(_)) => {
                log_store_failure(&e);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    STORE_UNAVAILABLE,
                )
                .retry_after(RETRY_SOON_SECONDS)
            }
            // A failed write or fsync (a full disk), or the index: this request failed
            // and the writer stopped (poisoned), like every append after it.
            e @ (E::Io { .. } | E::Index(_)) => {
                log_store_failure(&e);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    STORE_UNAVAILABLE,
                )
                .retry_after(RETRY_STORE_SECONDS)
            }
            E::Poisoned => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store stopped accepting appends after a failed write; retry later \
                 (the operator must restart the server to recover)",
            )
            .retry_after(RETRY_STORE_SECONDS),
            other => ApiError::internal(redact(&other.to_string())),
        }
    }
}

impl From<ledger_core::projection::ProjectionError> for ApiError {
    fn from(e: ledger_core::projection::ProjectionError) -> Self {
        ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::StoreError;

    async fn body_of(e: ApiError) -> (StatusCode, Option<String>, String) {
        let r = e.into_response();
        let status = r.status();
        let retry = r
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, retry, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn store_failures_are_503_with_retry_after_and_a_generic_body() {
        let secret = "postgres://ledger:s3cr3t-pw@db.internal:5432/ledger";
        for e in [
            StoreError::Io {
                context: "write /var/lib/ledger/log/00000000.seg".into(),
                source: std::io::Error::from_raw_os_error(28),
            },
            StoreError::Poisoned,
            StoreError::Database(format!("connect {secret}: password authentication failed")),
            StoreError::Unavailable(format!("no lease; {secret} password=hunter2")),
        ] {
            let shown = e.to_string();
            let (status, retry, body) = run(body_of(ApiError::from(e)));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{shown}: {body}");
            assert!(retry.is_some(), "{shown}: no Retry-After");
            for leak in [
                "s3cr3t",
                "hunter2",
                "postgres://",
                "db.internal",
                "/var/lib",
                ".seg",
            ] {
                assert!(
                    !body.contains(leak),
                    "{shown}: the body shows {leak}: {body}"
                );
            }
            assert!(body.contains("retry"), "{body}");
        }
    }

    #[test]
    fn a_store_that_cannot_be_opened_is_reported_without_its_password() {
        let e = crate::ServeError::from(StoreError::Database(
            "connect postgres://ledger:s3cr3t@db/x: refused".into(),
        ));
        let shown = e.to_string();
        assert!(
            !shown.contains("s3cr3t") && shown.contains("refused"),
            "{shown}"
        );
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn secrets_are_masked_in_any_message() {
        assert_eq!(
            redact("error connecting to postgres://ledger:s3cr3t@db:5432/x (timeout)"),
            "error connecting to postgres://ledger:***@db:5432/x (timeout)"
        );
        assert_eq!(
            redact("host=db user=ledger password=s3cr3t dbname=x"),
            "host=db user=ledger password=*** dbname=x"
        );
        assert_eq!(redact("PGPASSWORD='a b c' psql"), "PGPASSWORD=*** psql");
        assert_eq!(
            redact("password authentication failed for user \"ledger\""),
            "password authentication failed for user \"ledger\""
        );
        assert_eq!(redact("https://example.org/x"), "https://example.org/x");
        assert_eq!(
            redact("url \"postgres://u:pa/s@s@h/d?x=1\" failed"),
            "url \"postgres://u:***@h/d?x=1\" failed"
        );
        let (_, _, body) = run(body_of(ApiError::bad_request(
            "bad",
            "see postgresql://u:pw@h/d",
        )));
        assert!(!body.contains(":pw@"), "{body}");
    }
}
