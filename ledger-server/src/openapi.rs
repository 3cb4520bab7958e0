//! The OpenAPI description, generated from the handlers' annotations (utoipa): the
//! router registers each handler together with its description, so the two cannot
//! drift. `schemas/openapi.yaml` is this output, checked by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed parts; paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledger",
        description = "The message-accountability ledger's HTTP API: report events, ask about messages, fetch checkpoints and proofs to verify the log without trusting the server. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>` (a static token from `ledger token create`, or a Maskinporten-shaped JWT). Errors are `ErrorBody`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail, Receipt, Receipts, ChannelReceipts, ItemResult)),
    modifiers(&Bearer),
    tags(
        (name = "report", description = "Reporting events (scope ledger:write)"),
        (name = "ask", description = "Questions about messages (ledger:read, or ledger:regulator for all)"),
        (name = "audit", description = "Checkpoints, proofs and raw entries (ledger:audit)"),
        (name = "operate", description = "Health, readiness, metrics")
    )
)]
pub(crate) struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A static token (ldg_…) or a JWT access token (ES256/RS256; iss, aud, exp, scope, consumer.ID = 0192:<orgnr>)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every error answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// The HTTP status.
    status: u16,
    /// A stable reason code (e.g. invalid_event, conflict, missing_scope, foreign_reporter, too_large).
    code: String,
    /// What was wrong, where and why.
    message: String,
    /// Particulars: for a rejected batch, an array of one `{index, field, message}` per
    /// bad event; for a refused write, `{indexes}`. Any JSON value.
    #[schema(value_type = Option<serde_json::Value>)]
    details: Option<serde_json::Value>,
}

/// The proof that an event is recorded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Receipt {
    /// The event's id.
    id: String,
    /// Its entry's position in the log.
    seq: u64,
    /// The entry hash (hex): the Merkle leaf.
    hash: String,
    /// True when the id was already recorded with the same content: the original receipt.
    duplicate: bool,
    /// Channel events only: true when no `sent` event's refs matched (recorded under a synthetic message id).
    unmatched: Option<bool>,
}

/// Receipts of a request, in the order of its events, given after the durable commit.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Receipts {
    receipts: Vec<Receipt>,
}

/// What became of each item of a channel body (CloudEvents, eFormidling records):
/// what maps is recorded whatever else the body holds.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ChannelReceipts {
    /// Receipts of the recorded items, in order (after the durable commit).
    receipts: Vec<Receipt>,
    /// One per item of the body, in order.
    results: Vec<ItemResult>,
    /// Items recorded.
    recorded: u64,
    /// Items that carry nothing to record (see `results`).
    ignored: u64,
    /// Malformed items (see `results`).
    rejected: u64,
    /// The same as `ignored` (kept for earlier clients).
    skipped: u64,
}

/// One item of a channel body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ItemResult {
    /// Its position in the body (0 for a single object).
    index: u64,
    /// `recorded`; `ignored`: a type that carries no message fact (Altinn attachment
    /// events, the subscription check, the eFormidling ping: `unsupported_type`) or one
    /// this server does not map (`unknown_type`), counted in
    /// `ledger_channel_events_total`; `rejected`: malformed, never recordable
    /// (`missing_field`, `bad_field`, `not_cloudevent`, `not_status_record`,
    /// `invalid_event`, `conflict`).
    outcome: String,
    /// `recorded`: the receipt.
    receipt: Option<Receipt>,
    /// `ignored` and `rejected`: the reason code.
    reason: Option<String>,
    /// `ignored` and `rejected`: what and why, for people.
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn schemas_openapi_yaml_is_the_generated_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/openapi.yaml");
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == crate::openapi_yaml(),
            "schemas/openapi.yaml differs from what the code generates; \
             run `cargo run -q -p ledger-cli -- openapi > schemas/openapi.yaml` and commit it"
        );
    }

    #[test]
    fn every_endpoint_is_described() {
        let yaml = crate::openapi_yaml();
        for path in [
            "/v1/events:",
            "/v1/cloudevents:",
            "/v1/channels/eformidling:",
            "/v1/messages:",
            "/v1/messages/{id}:",
            "/v1/reports/{kind}:",
            "/v1/stats:",
            "/v1/checkpoint:",
            "/v1/checkpoints:",
            "/v1/ledger:",
            "/v1/proofs/inclusion:",
            "/v1/proofs/consistency:",
            "/v1/entries:",
            "/v1/stream:",
            "/healthz:",
            "/readyz:",
            "/metrics:",
        ] {
            assert!(yaml.contains(&format!("  {path}\n")), "{path} is missing");
        }
    }
}
