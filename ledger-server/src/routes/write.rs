//! Reports coming in: ledger events (`POST /v1/events`), CloudEvents of the channels
//! (`POST /v1/cloudevents`) and eFormidling status records
//! (`POST /v1/channels/eformidling`). A batch is recorded whole or not at all, and
//! only answered after its durable commit.

use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use ledger_core::Event;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{AppState, Auth};
use crate::auth::Scope;
use crate::error::ApiError;
use crate::mappers::{self, MapContext, MapError};
#[allow(unused_imports)]
use crate::openapi::{ErrorBody, Receipts};
use crate::tenant;

/// Bad items reported back, at most.
const DETAILS_MAX: usize = 100;

/// Reads the body up to the configured limit (413 beyond, checked against
/// Content-Length first so a large upload is refused before it is read).
pub(crate) async fn read_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = s.config.max_body_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the limit of {limit} bytes (server.max_body_bytes); split the batch"
        ))
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The items of a body: a JSON object, a JSON array of them, or JSON Lines.
fn items(bytes: &[u8], jsonl: bool) -> Result<Vec<&RawValue>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request("not_utf8", format!("the body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if !jsonl {
        if trimmed.starts_with('[') {
            return serde_json::from_str::<Vec<&RawValue>>(text).map_err(|e| {
                ApiError::bad_request(
                    "malformed_json",
                    format!("the body is not a JSON array: {e}"),
                )
            });
        }
        if let Ok(one) = serde_json::from_str::<&RawValue>(text) {
            return Ok(vec![one]);
        }
    }
    // JSON Lines: one value per non-empty line.
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str::<&RawValue>(line).map_err(|e| {
            ApiError::bad_request(
                "malformed_json",
                format!(
                    "line {} of the body is not JSON ({e}); send one JSON object, a JSON array, or JSON Lines",
                    i + 1
                ),
            )
        })?;
        out.push(v);
    }
    Ok(out)
}

fn check_count(s: &AppState, n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::unprocessable("empty", "the body holds no events"));
    }
    let max = s.config.max_batch_events;
    if n > max {
        return Err(ApiError::too_large(format!(
            "the batch holds {n} events; the limit is {max} (server.max_batch_events)"
        )));
    }
    Ok(())
}

fn rejected(what: &str, bad: Vec<Value>, total: usize) -> ApiError {
    let n = bad.len();
    let first = bad[0]["message"].as_str().unwrap_or_default().to_string();
    let index = bad[0]["index"].as_u64().unwrap_or_default();
    ApiError::unprocessable(
        "invalid_event",
        format!("{n} of {total} {what} rejected (first, at index {index}: {first}); nothing was recorded"),
    )
    .with_details(json!(bad.into_iter().take(DETAILS_MAX).collect::<Vec<_>>()))
}

/// Appends and answers with one receipt per event, in order.
async fn append(s: &AppState, events: Vec<Event>) -> Result<Vec<Value>, ApiError> {
    let n = events.len();
    let ids: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
    let store = s.store.clone();
    let t = Instant::now();
    // The naive baseline: one request at a time, so each is its own commit.
    let _one_at_a_time = match s.config.commit_per_request {
        true => Some(s.commit_lock.lock().await),
        false => None,
    };
    // No thread waits: the writer calls back when the commit is durable.
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.append_then(events, move |r| {
        let _ = tx.send(r);
    });
    let receipts = rx
        .await
        .map_err(|_| ApiError::unavailable("the store's writer stopped"))??;
    let new = receipts.iter().filter(|r| !r.duplicate).count();
    s.metrics.appended(n, new, t.elapsed().as_secs_f64());
    if new > 0 {
        s.projector.wake();
    }
    Ok(receipts
        .iter()
        .zip(ids)
        .map(|(r, id)| {
            json!({
                "id": id,
                "seq": r.seq,
                "hash": ledger_core::hash::to_hex(&r.hash),
                "duplicate": r.duplicate,
            })
        })
        .collect())
}

/// `POST /v1/events`: one event, a JSON array, or JSON Lines
/// (`Content-Type: application/x-ndjson`).
#[utoipa::path(post, path = "/events", tag = "report",
    request_body(content = Object, description = "One event (schemas/event.schema.json), a JSON array of events, or JSON Lines with Content-Type application/x-ndjson. All are recorded or none.", content_type = "application/json"),
    responses((status = 200, description = "One receipt per event, in order, after the durable commit; a retry of a recorded event gets its original receipt", body = Receipts),
        (status = 400, description = "Not JSON", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody),
        (status = 409, description = "An event id already recorded with other content", body = ErrorBody),
        (status = 413, description = "Body or batch over the limit", body = ErrorBody),
        (status = 422, description = "Invalid events, each named by index and field; nothing recorded", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Scope::Write])?;
    let bytes = read_body(&s, &headers, body).await?;
    let ct = content_type(&headers);
    let jsonl = matches!(
        ct.as_str(),
        "application/x-ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
    );
    let raw = items(&bytes, jsonl)?;
    check_count(&s, raw.len())?;
    let mut events = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match Event::from_json(r.get().as_bytes()) {
            Ok(e) => events.push(e),
            Err(e) => bad.push(json!({
                "index": i,
                "field": e.field,
                "message": e.to_string(),
            })),
        }
    }
    if !bad.is_empty() {
        return Err(rejected("events", bad, raw.len()));
    }
    tenant::require_own_reports(&p, events.iter().map(Event::reporter_org))?;
    let receipts = append(&s, events).await?;
    Ok(Json(json!({ "receipts": receipts })))
}

/// Which mapper a channel endpoint uses.
#[derive(Clone, Copy)]
enum Channel {
    CloudEvents,
    Eformidling,
}

async fn channel_events(
    s: AppState,
    p: crate::auth::Principal,
    headers: HeaderMap,
    body: Body,
    channel: Channel,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Scope::Write])?;
    let bytes = read_body(&s, &headers, body).await?;
    let name = match channel {
        Channel::CloudEvents => "cloudevents",
        Channel::Eformidling => "eformidling",
    };
    let values: Vec<Value> = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(a)) => a,
        Ok(v @ Value::Object(_)) => vec![v],
        Ok(_) => {
            return Err(ApiError::bad_request(
                "malformed_json",
                "the body must be one JSON object or a JSON array of them",
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                "malformed_json",
                format!("the body is not JSON: {e}"),
            ));
        }
    };
    check_count(&s, values.len())?;
    let mut mapped = Vec::with_capacity(values.len());
    let mut bad = Vec::new();
    let mut skipped = 0usize;
    {
        let live = s.projector.read();
        let cx = MapContext {
            reporter_org: &p.org,
            resolver: &*live,
            pseudonymizer: &s.pseudonymizer,
        };
        for (i, v) in values.iter().enumerate() {
            if matches!(channel, Channel::CloudEvents) && mappers::is_subscription_validation(v) {
                skipped += 1;
                continue;
            }
            let r: Result<mappers::Mapped, MapError> = match channel {
                Channel::CloudEvents => mappers::map_cloudevent(v, &cx),
                Channel::Eformidling => mappers::map_eformidling(v, &cx),
            };
            match r.map_err(|e| (e.reason(), e.to_string())).and_then(|m| {
                let matched = m.matched;
                Event::from_value(m.event)
                    .map(|e| (e, matched))
                    .map_err(|e| ("invalid_event", e.to_string()))
            }) {
                Ok(x) => mapped.push(x),
                Err((reason, message)) => {
                    s.metrics.channel_event(name, reason);
                    bad.push(json!({ "index": i, "reason": reason, "message": message }));
                }
            }
        }
    }
    if !bad.is_empty() {
        return Err(rejected("channel events", bad, values.len()));
    }
    if mapped.is_empty() {
        return Ok(Json(json!({ "receipts": [], "skipped": skipped })));
    }
    let unmatched: Vec<bool> = mapped.iter().map(|(_, m)| !*m).collect();
    let events: Vec<Event> = mapped.into_iter().map(|(e, _)| e).collect();
    let n = events.len();
    let mut receipts = append(&s, events).await?;
    for (r, u) in receipts.iter_mut().zip(&unmatched) {
        r["unmatched"] = json!(u);
    }
    for u in &unmatched {
        s.metrics
            .channel_event(name, if *u { "recorded_unmatched" } else { "recorded" });
    }
    debug_assert_eq!(receipts.len(), n);
    Ok(Json(json!({ "receipts": receipts, "skipped": skipped })))
}

/// `POST /v1/cloudevents`: CloudEvents 1.0 in structured JSON mode, one or a batch
/// (Altinn 3 Correspondence, KS Fiks), mapped by docs/cloudevents.md.
#[utoipa::path(post, path = "/cloudevents", tag = "report",
    request_body(content = Object, description = "A CloudEvent 1.0 in structured JSON mode, or a JSON array of them (Altinn 3 Correspondence, KS Fiks); mapped as docs/cloudevents.md says", content_type = "application/cloudevents+json"),
    responses((status = 200, description = "Receipts of the mapped events", body = Receipts),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "An unknown type or a malformed event, named by index; nothing recorded", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_cloudevents(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    channel_events(s, p, headers, body, Channel::CloudEvents).await
}

/// `POST /v1/channels/eformidling`: eFormidling status records (the integrasjonspunkt's
/// `/api/statuses` records or its webhook bodies), one or a JSON array.
#[utoipa::path(post, path = "/channels/eformidling", tag = "report",
    request_body(content = Object, description = "An eFormidling status record (or integrasjonspunkt webhook body), or a JSON array of them", content_type = "application/json"),
    responses((status = 200, description = "Receipts of the mapped events", body = Receipts),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_eformidling(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    channel_events(s, p, headers, body, Channel::Eformidling).await
}
