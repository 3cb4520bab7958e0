//! Reports coming in: ledger events (`POST /v1/events`), CloudEvents of the channels
//! (`POST /v1/cloudevents`) and eFormidling status records
//! (`POST /v1/channels/eformidling`). A batch of ledger events is recorded whole or not
//! at all; a channel batch is decided item by item (what maps is recorded, what does
//! not is answered per item, so one unknown type never holds up the rest). Either is
//! answered only after its durable commit.

use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use ledger_core::Event;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Auth};
use crate::auth::Scope;
use crate::error::ApiError;
use crate::mappers::{self, MapContext, MapError};
#[allow(unused_imports)]
use crate::openapi::{ChannelReceipts, ErrorBody, Receipts};
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

/// Every item of a channel body broken: 422, each named.
fn rejected_all(what: &str, bad: Vec<Value>) -> ApiError {
    let first = bad[0]["message"].as_str().unwrap_or_default().to_string();
    let message = match bad.len() {
        1 => format!("the {what} could not be mapped: {first}; nothing was recorded"),
        n => format!(
            "none of the {n} {what}s could be mapped (first: {first}); nothing was recorded"
        ),
    };
    ApiError::unprocessable("invalid_event", message)
        .with_details(json!(bad.into_iter().take(DETAILS_MAX).collect::<Vec<_>>()))
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

/// Appends, and gives the store's receipts (or its refusal) after the durable commit.
async fn append_raw(
    s: &AppState,
    events: Vec<Event>,
) -> Result<Vec<ledger_core::Receipt>, ApiErrorOr> {
    let n = events.len();
    let t = Instant::now();
    // The naive baseline: one request at a time, so each is its own commit.
    let _one_at_a_time = match s.config.commit_per_request {
        true => Some(s.commit_lock.lock().await),
        false => None,
    };
    // No thread waits: the writer calls back when the commit is durable.
    let (tx, rx) = tokio::sync::oneshot::channel();
    ledger_core::Store::append_then(
        &*s.store,
        events,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let receipts = rx
        .await
        .map_err(|_| ApiErrorOr::Api(ApiError::unavailable("the store's writer stopped; retry")))?
        .map_err(ApiErrorOr::Store)?;
    let new = receipts.iter().filter(|r| !r.duplicate).count();
    s.metrics.appended(n, new, t.elapsed().as_secs_f64());
    if new > 0 {
        s.projector.wake();
    }
    Ok(receipts)
}

/// A refusal of the store (which a caller may handle) or an answer ready to give.
enum ApiErrorOr {
    Store(ledger_core::StoreError),
    Api(ApiError),
}

impl From<ApiErrorOr> for ApiError {
    fn from(e: ApiErrorOr) -> ApiError {
        match e {
            ApiErrorOr::Store(e) => e.into(),
            ApiErrorOr::Api(e) => e,
        }
    }
}

fn receipt_json(id: &str, r: &ledger_core::Receipt) -> Value {
    json!({
        "id": id,
        "seq": r.seq,
        "hash": ledger_core::hash::to_hex(&r.hash),
        "duplicate": r.duplicate,
    })
}

/// Appends and answers with one receipt per event, in order.
async fn append(s: &AppState, events: Vec<Event>) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
    let receipts = append_raw(s, events).await?;
    Ok(receipts
        .iter()
        .zip(ids)
        .map(|(r, id)| receipt_json(&id, r))
        .collect())
}

/// `POST /v1/events`: one event, a JSON array, or JSON Lines
/// (`Content-Type: application/x-ndjson`).
#[utoipa::path(post, path = "/events", tag = "report",
    params(("proofs" = Option<bool>, Query, description = "Wait (up to 10 s) for a checkpoint covering the events (with a witness.policy, one the witness quorum cosigned) and add each receipt's c2sp.org/tlog-proof@v1 text as `proof`; `proofs_pending: true` if none came in time (the events are recorded either way)")),
    request_body(content = Object, description = "One event (schemas/event.schema.json), a JSON array of events, or JSON Lines with Content-Type application/x-ndjson. All are recorded or none.", content_type = "application/json"),
    responses((status = 200, description = "One receipt per event, in order, after the durable commit; a retry of a recorded event gets its original receipt", body = Receipts),
        (status = 400, description = "Not JSON", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope, or the tenant rule refuses an event (foreign_reporter, not_a_party, wrong_side; the indexes named; README \"Who can write what\"); nothing recorded", body = ErrorBody),
        (status = 409, description = "An event id already recorded with other content", body = ErrorBody),
        (status = 413, description = "Body or batch over the limit", body = ErrorBody),
        (status = 422, description = "Invalid events, each named by index and field; nothing recorded", body = ErrorBody),
        (status = 503, description = "The store is unavailable (a failed write, a full disk, the database); nothing new acknowledged: retry after Retry-After seconds (a retry gets the original receipts of what was recorded)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<EventsQuery>,
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
    let format = event_format(&s);
    for (i, r) in raw.iter().enumerate() {
        let admitted = Event::from_json_as(r.get().as_bytes(), format).and_then(|e| {
            // A format-2 event passed these rules to be valid at all.
            if e.format() < 2 {
                ledger_core::admission::check_api(&e)?;
            }
            Ok(e)
        });
        match admitted {
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
    authorize(&s, &p, &events).await?;
    let mut receipts = append(&s, events).await?;
    if q.proofs.unwrap_or(false) {
        let pending = attach_proofs(&s, &mut receipts).await;
        return Ok(Json(
            json!({ "receipts": receipts, "proofs_pending": pending }),
        ));
    }
    Ok(Json(json!({ "receipts": receipts })))
}

/// `?proofs=true` of `POST /v1/events`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Wait for a checkpoint covering the events (with a `witness.policy`: one the
    /// witness quorum cosigned) and answer each receipt with its tlog-proof.
    proofs: Option<bool>,
}

/// How long `?proofs=true` waits for the checkpoint (the events are recorded
/// whatever happens: a late checkpoint is answered without proofs, saying so).
const PROOFS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Adds `proof` (a c2sp.org/tlog-proof@v1 text) to every receipt once a checkpoint
/// that covers them exists; whether they are still pending after the wait.
async fn attach_proofs(s: &AppState, receipts: &mut [Value]) -> bool {
    let Some(last) = receipts.iter().filter_map(|r| r["seq"].as_u64()).max() else {
        return false;
    };
    let wait = PROOFS_WAIT.min(s.config.request_timeout / 2);
    let start = Instant::now();
    loop {
        let st = s.clone();
        let note = tokio::task::spawn_blocking(move || {
            use ledger_core::Store as _;
            let store = st.store.as_ref();
            if st.witnessing.is_some() {
                return ledger_core::checkpoint::read_cosigned(&st.dir, store.verifier_key())
                    .filter(|(size, _)| *size > last)
                    .map(|(_, note)| note);
            }
            store
                .latest_checkpoint()
                .ok()
                .filter(|c| c.size > last)
                .map(|c| c.note)
        })
        .await
        .ok()
        .flatten();
        if let Some(note) = note {
            let st = s.clone();
            let seqs: Vec<u64> = receipts.iter().filter_map(|r| r["seq"].as_u64()).collect();
            let proofs = tokio::task::spawn_blocking(move || {
                seqs.iter()
                    .map(|&seq| {
                        ledger_core::tlog_proof::TlogProof::build(st.store.as_ref(), seq, &note)
                            .map(|p| p.to_text())
                            .ok()
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (r, p) in receipts.iter_mut().zip(proofs) {
                r["proof"] = json!(p);
            }
            return false;
        }
        if start.elapsed() >= wait {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The event format the API accepts: the ledger's (`ledger.json`). A format-2 ledger
/// takes format-2 events only, whose scoped identifiers no organisation can squat.
fn event_format(s: &AppState) -> u8 {
    ledger_core::Store::info(s.store.as_ref()).event_format()
}

/// The longest an append waits for the projection to know the messages it is about.
const PARTIES_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// 403 unless the principal may report every event (`tenant::authorize_events`),
/// judged against the parties recorded up to now. A refusal is never made on stale
/// facts: before refusing, the projection is brought up to the log's size at the
/// request's start (a `sent` acknowledged just before counts), or the answer is 503
/// (retry). The common case, events about messages the projection knows, waits for
/// nothing.
async fn authorize(
    s: &AppState,
    p: &crate::auth::Principal,
    events: &[Event],
) -> Result<(), ApiError> {
    p.require(&[Scope::Write])?;
    if events.iter().all(|e| e.format() >= 2) {
        // Format 2 names each message's parties in the event: judged from the
        // request alone, nothing to wait for, nothing to learn.
        return tenant::authorize_events(
            p,
            events,
            &Default::default(),
            &s.config.channel_operators,
            tenant::Via::Events,
        );
    }
    let size = super::store_size(s).await?;
    let judge = || {
        let live = s.projector.read();
        tenant::authorize_events(
            p,
            events,
            &live.facts,
            &s.config.channel_operators,
            tenant::Via::Events,
        )
    };
    if judge().is_ok() {
        return Ok(());
    }
    if s.projector.wait_covered(size, PARTIES_WAIT).await < size {
        return Err(ApiError::busy(
            "not_yet_covered",
            "the ledger is catching up on recent entries; retry (nothing was recorded)",
            1,
        ));
    }
    judge()
}

/// Which mapper a channel endpoint uses.
#[derive(Clone, Copy)]
enum Channel {
    /// Any CloudEvent the mappers know (`/v1/cloudevents`).
    CloudEvents,
    /// eFormidling status records.
    Eformidling,
    /// A hook's CloudEvents: its channel's name, and the type prefixes it takes.
    HookCloudEvents(&'static str, &'static [&'static str]),
}

/// What became of one item of a channel batch.
enum Outcome {
    /// Mapped; its event is `events[k]`.
    Mapped { k: usize, matched: bool },
    /// Recorded: the receipt.
    Recorded(Value),
    /// Nothing to record: a type that carries no message fact, or one this server does
    /// not map (yet). Answered 200 so the channel does not redeliver it for ever.
    Ignored {
        reason: &'static str,
        message: String,
    },
    /// Broken: it can never be recorded as sent.
    Rejected {
        reason: &'static str,
        message: String,
    },
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
        Channel::HookCloudEvents(hook, _) => hook,
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
    // Each item on its own: what maps is recorded, whatever else is in the batch.
    let mut outcomes = Vec::with_capacity(values.len());
    let mut events: Vec<Event> = Vec::new();
    // A `sent` acknowledged just before its channel events must resolve them.
    let size = super::store_size(&s).await?;
    if s.projector.wait_covered(size, PARTIES_WAIT).await < size {
        // Mapped on stale facts, an event of a message just sent would be filed as
        // unmatched for good (its redelivery would then conflict): retry instead.
        return Err(ApiError::busy(
            "not_yet_covered",
            "the ledger is catching up on recent entries; redeliver (nothing was recorded)",
            1,
        ));
    }
    {
        let live = s.projector.read();
        let resolver =
            tenant::PartyResolver::new(&p, &*live, &live.facts, &s.config.channel_operators);
        let format = event_format(&s);
        let cx = MapContext {
            reporter_org: &p.org,
            resolver: &resolver,
            pseudonymizer: &s.pseudonymizer,
            format,
        };
        for v in &values {
            let r: Result<mappers::Mapped, MapError> = match channel {
                Channel::HookCloudEvents(hook, prefixes) => {
                    let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
                    if !prefixes.iter().any(|p| t.starts_with(p)) {
                        // One channel's hook is not a way in for another's events.
                        outcomes.push(Outcome::Rejected {
                            reason: "wrong_channel",
                            message: format!(
                                "this hook is {hook}'s: it takes CloudEvents whose type starts with {}, not {}",
                                prefixes.join(" or "),
                                mappers::shown(t)
                            ),
                        });
                        continue;
                    }
                    mappers::map_cloudevent(v, &cx)
                }
                Channel::CloudEvents => mappers::map_cloudevent(v, &cx),
                Channel::Eformidling => mappers::map_eformidling(v, &cx),
            };
            let outcome = match r {
                Ok(m) => {
                    let matched = m.matched;
                    let admitted = Event::from_value_as(m.event, format).and_then(|e| {
                        if e.format() < 2 {
                            ledger_core::admission::check_api(&e)?;
                        }
                        Ok(e)
                    });
                    match admitted {
                        Ok(e) => {
                            events.push(e);
                            Outcome::Mapped {
                                k: events.len() - 1,
                                matched,
                            }
                        }
                        Err(e) => Outcome::Rejected {
                            reason: "invalid_event",
                            message: e.to_string(),
                        },
                    }
                }
                // The token's organisation, not the item: nothing of the batch can be
                // recorded under it.
                Err(e @ MapError::BadReporter { .. }) => return Err(ApiError::internal(e)),
                Err(e @ (MapError::UnknownType { .. } | MapError::UnsupportedType { .. })) => {
                    Outcome::Ignored {
                        reason: e.reason(),
                        message: e.to_string(),
                    }
                }
                Err(e) => Outcome::Rejected {
                    reason: e.reason(),
                    message: e.to_string(),
                },
            };
            outcomes.push(outcome);
        }
    }
    // Record what mapped. An event whose id is recorded with other content is refused
    // by the store with the whole request: it is taken out and the rest appended.
    let mut conflicts: Vec<(String, u64)> = Vec::new();
    let mut receipts: Vec<Option<Value>> = vec![None; events.len()];
    loop {
        let pending: Vec<usize> = (0..events.len())
            .filter(|&k| {
                receipts[k].is_none() && !conflicts.iter().any(|(id, _)| id == events[k].id())
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        let batch: Vec<Event> = pending.iter().map(|&k| events[k].clone()).collect();
        match append_raw(&s, batch).await {
            Ok(rs) => {
                for (&k, r) in pending.iter().zip(&rs) {
                    receipts[k] = Some(receipt_json(events[k].id(), r));
                }
                break;
            }
            Err(ApiErrorOr::Store(ledger_core::StoreError::Conflict { id, seq }))
                if pending.iter().any(|&k| events[k].id() == id) =>
            {
                conflicts.push((id, seq));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut results = Vec::with_capacity(outcomes.len());
    let (mut recorded, mut ignored, mut rejected) = (Vec::new(), 0usize, 0usize);
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = match o {
            Outcome::Mapped { k, matched } => match receipts[k].take() {
                Some(mut r) => {
                    r["unmatched"] = json!(!matched);
                    Outcome::Recorded(r)
                }
                None => {
                    let (id, _) = conflicts
                        .iter()
                        .find(|(id, _)| id == events[k].id())
                        .expect("an event not recorded was refused as a conflict");
                    Outcome::Rejected {
                        reason: "conflict",
                        message: format!(
                            "maps to event id {id:?}, already recorded with different content"
                        ),
                    }
                }
            },
            other => other,
        };
        let result = match o {
            Outcome::Recorded(r) => {
                let outcome = if r["unmatched"] == true {
                    "recorded_unmatched"
                } else {
                    "recorded"
                };
                s.metrics.channel_event(name, outcome);
                recorded.push(r.clone());
                json!({ "index": i, "outcome": "recorded", "receipt": r })
            }
            Outcome::Ignored { reason, message } => {
                s.metrics.channel_event(name, reason);
                ignored += 1;
                json!({ "index": i, "outcome": "ignored", "reason": reason, "message": message })
            }
            Outcome::Rejected { reason, message } => {
                s.metrics.channel_event(name, reason);
                rejected += 1;
                json!({ "index": i, "outcome": "rejected", "reason": reason, "message": message })
            }
            Outcome::Mapped { .. } => unreachable!("resolved above"),
        };
        results.push(result);
    }
    // Only a body of which nothing could be used is refused as a whole: a sender must
    // fix it, and a redelivery of it loses nothing.
    if rejected == values.len() {
        let bad: Vec<Value> = results
            .iter()
            .map(|r| json!({ "index": r["index"], "reason": r["reason"], "message": r["message"] }))
            .collect();
        return Err(rejected_all("channel event", bad));
    }
    Ok(Json(json!({
        "receipts": recorded,
        "results": results,
        "recorded": recorded.len(),
        "ignored": ignored,
        "rejected": rejected,
        "skipped": ignored,
    })))
}

/// `POST /v1/cloudevents`: CloudEvents 1.0 in structured JSON mode, one or a batch
/// (Altinn 3 Correspondence, KS Fiks), mapped by docs/cloudevents.md.
#[utoipa::path(post, path = "/cloudevents", tag = "report",
    request_body(content = Object, description = "A CloudEvent 1.0 in structured JSON mode, or a JSON array of them (Altinn 3 Correspondence, KS Fiks); mapped as docs/cloudevents.md says, each event on its own", content_type = "application/cloudevents+json"),
    responses((status = 200, description = "Per event, in order: recorded (with its receipt, after the durable commit), ignored (a type that carries no message fact, or one not mapped: unknown_type, unsupported_type; the subscription check) or rejected (malformed, with its reason). What maps is recorded whatever else the batch holds", body = ChannelReceipts),
        (status = 400, description = "The body is not JSON, or not an object or an array of them", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "Every event of the body is malformed (none ignored, none recorded); each named by index", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after Retry-After seconds (a redelivery is idempotent)", body = ErrorBody)),
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
    request_body(content = Object, description = "An eFormidling status record (or integrasjonspunkt webhook body), or a JSON array of them; each mapped on its own", content_type = "application/json"),
    responses((status = 200, description = "Per record, in order: recorded (with its receipt), ignored (an unknown status, the webhook ping) or rejected (malformed, with its reason)", body = ChannelReceipts),
        (status = 400, description = "The body is not JSON, or not an object or an array of them", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "Every record of the body is malformed; each named by index", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after Retry-After seconds", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_eformidling(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    channel_events(s, p, headers, body, Channel::Eformidling).await
}

/// `POST /v1/hooks/{secret}`: a channel's own deliveries, to the address `ledger
/// channel add` made for it (docs/channels.md): Altinn Events' CloudEvents (its
/// subscription check answered 200), an integrasjonspunkt's webhook bodies, or a
/// Fiks IO adapter's CloudEvents. The secret in the path is the credential, bound
/// to one organisation and one channel; each item is then handled as on that
/// channel's endpoint, under the tenant boundary of the hook's organisation.
#[utoipa::path(post, path = "/hooks/{secret}", tag = "report",
    params(("secret" = String, Path, description = "The hook's secret, as `ledger channel add` printed it")),
    request_body(content = Object, description = "What the hook's channel posts: CloudEvents (altinn, fiks) or eFormidling webhook bodies and status records (eformidling), one or a JSON array", content_type = "application/json"),
    responses((status = 200, description = "Per item, in order: recorded, ignored (the subscription check, the webhook ping, a type with no fact) or rejected (malformed, another channel's type, another organisation's message)", body = ChannelReceipts),
        (status = 400, description = "The body is not JSON, or not an object or an array of them", body = ErrorBody),
        (status = 401, description = "No hook has this address (mistyped or revoked)", body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "Every item of the body is malformed; each named by index", body = ErrorBody),
        (status = 429, description = "This hook's requests a minute are spent; redeliver after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after Retry-After seconds", body = ErrorBody)),
    security(()))]
pub(crate) async fn post_hook(
    State(s): State<AppState>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (p, channel, id) = s.auth.authenticate_hook(&secret)?;
    s.hooks.admit(&id)?;
    let how = match crate::hooks::cloudevent_prefixes(&channel) {
        Some(prefixes) => {
            let name = if channel == "altinn" {
                "altinn"
            } else {
                "fiks"
            };
            Channel::HookCloudEvents(name, prefixes)
        }
        None => Channel::Eformidling,
    };
    channel_events(s, p, headers, body, how).await
}
