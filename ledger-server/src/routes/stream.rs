//! `GET /v1/stream`: Server-Sent Events of new receipts (`event: receipt`) and of
//! verdict changes (`event: verdict`), inside the tenant boundary.
//!
//! Every event's id is `<next seq>-<covered>-<k>-<epoch>`: the receipts delivered so
//! far (all entries below `next seq`), the last verdict change delivered, and which
//! server process numbered it. A client that reconnects with `Last-Event-ID` resumes
//! exactly there: receipts are re-read from the log (durable), verdict changes from the
//! projector's ring of recent changes. If the ring no longer reaches back that far, or
//! the position is from before a restart (the ring lives in memory), an `event: gap`
//! says so, and the reports are the way to catch up.
//!
//! A stream reads the log a chunk (`STEP` entries) at a time and holds at most one
//! chunk in memory, whatever position it starts from. Streams are bounded: at most
//! `server.max_stream_clients` at once, of which at most
//! `server.max_replaying_streams` replaying (started or resumed more than a chunk
//! behind the newest entry, until caught up); beyond either, 503 with Retry-After. Log
//! reads of all streams together use at most a few blocking threads at a time, so
//! questions are never starved of them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use ledger_core::Store;
use ledger_core::projection::{Evaluator, Instant};
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiQuery, AppState, Auth};
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::projector::Position;
use crate::tenant::{self, EntryReach, Reach, StreamAccess};

/// Receipts read from the log per step: what one stream holds in memory at most.
const STEP: u64 = 64;
/// Seconds a client refused for the stream caps is asked to wait.
const RETRY_SECONDS: u32 = 5;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Start with the receipts of entries from this seq (instead of only new ones).
    from_seq: Option<u64>,
}

struct Cursor {
    next_seq: u64,
    verdicts: Position,
    epoch: u64,
}

impl Cursor {
    fn id(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.next_seq, self.verdicts.covered, self.verdicts.k, self.epoch
        )
    }

    fn parse(s: &str) -> Option<Cursor> {
        let mut it = s.trim().split('-').map(|p| p.parse::<u64>().ok());
        let (Some(Some(n)), Some(Some(c)), Some(Some(k)), Some(Some(e)), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        Some(Cursor {
            next_seq: n,
            verdicts: Position {
                covered: c,
                k: u32::try_from(k).ok()?,
            },
            epoch: e,
        })
    }
}

struct Session {
    s: AppState,
    access: StreamAccess,
    cursor: Cursor,
    rx: tokio::sync::watch::Receiver<u64>,
    pending: VecDeque<Event>,
    /// The stream's place among `server.max_stream_clients`, for its life.
    _client: Slot,
    /// Its place among `server.max_replaying_streams`, until it catches up.
    replay: Option<Slot>,
    /// Ends after the pending events (the log could not be read).
    done: bool,
}

/// A permit, counted in a gauge while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, gauge: &Gauge) -> Slot {
        gauge.inc();
        Slot {
            _permit: permit,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// `GET /v1/stream` (`Last-Event-ID` to resume; `?from_seq=` to start from an entry).
#[utoipa::path(get, path = "/stream", tag = "ask",
    params(("from_seq" = Option<u64>, Query, description = "Start with the receipts of entries from this seq"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "Server-Sent Events: `receipt` {seq, hash, recorded_at, id, type, message}, `verdict` {message, from, to, reason, noticed_at}, `gap`", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A Last-Event-ID this stream did not give out", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody),
        (status = 503, description = "Too many stream clients (server.max_stream_clients), or too many replaying from the log (server.max_replaying_streams); retry after Retry-After seconds", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let access = tenant::stream_access(&p)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            Cursor::parse(v).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_last_event_id",
                    format!("Last-Event-ID {v:?} is not an id this stream gave out (<seq>-<covered>-<k>-<epoch>)"),
                )
            })
        })
        .transpose()?;
    let mut pending = VecDeque::new();
    let cursor = match resume {
        Some(c) if c.epoch == s.projector.epoch() => c,
        Some(c) => {
            // Numbered by an earlier server process: receipts resume from the log;
            // verdict changes from then are gone with that process.
            let c = Cursor {
                next_seq: c.next_seq,
                verdicts: s.projector.head(),
                epoch: s.projector.epoch(),
            };
            pending.push_back(Event::default().event("gap").id(c.id()).data(
                json!({"message": "the server restarted since this position; verdict changes in between are not kept: query /v1/reports to catch up"})
                    .to_string(),
            ));
            c
        }
        None => {
            let head = s.projector.head();
            Cursor {
                next_seq: q.from_seq.unwrap_or(head.covered),
                verdicts: head,
                epoch: s.projector.epoch(),
            }
        }
    };
    let client = s.streams.clients.clone().try_acquire_owned().map_err(|_| {
        ApiError::busy(
            "too_many_streams",
            format!(
                "{} stream clients are connected, the most this server takes (server.max_stream_clients); retry later",
                s.config.max_stream_clients
            ),
            RETRY_SECONDS,
        )
    })?;
    let client = Slot::new(client, s.metrics.stream_clients());
    let replay = if cursor.next_seq.saturating_add(STEP) < s.projector.covered() {
        let permit = s.streams.replays.clone().try_acquire_owned().map_err(|_| {
            ApiError::busy(
                "too_many_replays",
                format!(
                    "{} streams are replaying from the log, the most this server runs at once \
                     (server.max_replaying_streams); retry later, or start from the newest entry \
                     (no from_seq) and catch up with /v1/entries",
                    s.config.max_replaying_streams
                ),
                RETRY_SECONDS,
            )
        })?;
        Some(Slot::new(permit, s.metrics.replaying_streams()))
    } else {
        None
    };
    let rx = s.projector.subscribe();
    let session = Session {
        s,
        access,
        cursor,
        rx,
        pending,
        _client: client,
        replay,
        done: false,
    };
    // A comment line often enough that a quiet stream is never taken for an idle
    // connection (server.idle_timeout_seconds).
    let keep_alive = Duration::from_secs(15)
        .min(session.s.config.idle_timeout / 3)
        .max(Duration::from_millis(100));
    let events = futures_util::stream::unfold(session, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done || st.s.shutting_down.load(Ordering::SeqCst) {
                return None;
            }
            if !fill(&mut st).await {
                // Nothing new: wait for the projector to move on.
                st.rx.borrow_and_update();
                if fill_ready(&st) {
                    continue;
                }
                if st.rx.changed().await.is_err() {
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)))
}

fn fill_ready(st: &Session) -> bool {
    st.cursor.next_seq < st.s.projector.covered()
        || !st
            .s
            .projector
            .changes_after(st.cursor.verdicts, 1)
            .0
            .is_empty()
}

/// Queues the next receipts or verdict changes; false if there were none.
async fn fill(st: &mut Session) -> bool {
    let covered = st.s.projector.covered();
    if st.replay.is_some() && st.cursor.next_seq.saturating_add(STEP) >= covered {
        // Caught up (within a chunk): a live stream from here on.
        st.replay = None;
    }
    if st.cursor.next_seq < covered {
        let from = st.cursor.next_seq;
        let to = covered.min(from + STEP);
        let s = st.s.clone();
        let reach = st.access.receipts.clone();
        let Ok(_reading) = st.s.streams.reads.clone().acquire_owned().await else {
            st.done = true;
            return false;
        };
        let items = tokio::task::spawn_blocking(move || receipts(&s, &reach, from, to)).await;
        match items {
            Ok(Ok(items)) => {
                for (seq, data) in items {
                    st.cursor.next_seq = seq + 1;
                    st.pending.push_back(
                        Event::default()
                            .event("receipt")
                            .id(st.cursor.id())
                            .data(data.to_string()),
                    );
                }
                st.cursor.next_seq = to;
            }
            Ok(Err(e)) => {
                // The detail goes to the log (secrets masked), none to the client.
                crate::error::log_store_failure(&e);
                st.pending.push_back(
                    Event::default().event("error").data(
                        json!({"message": "reading the log failed; reconnect with Last-Event-ID"})
                            .to_string(),
                    ),
                );
                st.done = true;
            }
            Err(e) => {
                eprintln!("ledger serve: stream: reading the log: {e}");
                st.pending.push_back(
                    Event::default().event("error").data(
                        json!({"message": "reading the log failed; reconnect with Last-Event-ID"})
                            .to_string(),
                    ),
                );
                st.done = true;
            }
        }
        return true;
    }
    let (changes, gap) =
        st.s.projector
            .changes_after(st.cursor.verdicts, STEP as usize);
    if gap {
        st.pending.push_back(Event::default().event("gap").id(st.cursor.id()).data(
            json!({"message": "verdict changes since this position are no longer kept; query /v1/reports to catch up"})
                .to_string(),
        ));
    }
    if changes.is_empty() {
        return gap;
    }
    for c in changes {
        st.cursor.verdicts = c.pos;
        let visible = st
            .access
            .verdicts
            .as_ref()
            .is_some_and(|r| tenant::may_see_change(r, &c));
        if visible {
            st.pending.push_back(
                Event::default()
                    .event("verdict")
                    .id(st.cursor.id())
                    .data(json!(c).to_string()),
            );
        }
    }
    true
}

/// Receipts of entries `from .. to` the principal may see, as (seq, data).
/// Whether the stored entry is within the entry reach: its reporter's, or (for a
/// read token) its message's parties' (format 2: named in the entry; format 1: from
/// the projection).
pub(crate) fn entry_within_reach(eval: &Evaluator<'_>, reach: &EntryReach, bytes: &[u8]) -> bool {
    let Ok(parsed) = ledger_core::entry::parse_envelope(bytes) else {
        return false;
    };
    let ev: Value = serde_json::from_str(parsed.event).unwrap_or(Value::Null);
    let reporter = ev["reporter"]["org"].as_str().unwrap_or_default();
    let key = ledger_core::entry::index_keys(parsed.event, parsed.v)
        .map(|k| k.message)
        .unwrap_or_default();
    let message_visible = |r: &Reach| match ledger_core::event::split_message_key(&key) {
        (Some((from, to)), _) => tenant::may_see_parties(r, Some(from), Some(to)),
        (None, _) => eval.evaluate(&key).is_some_and(|e| tenant::may_see(r, &e)),
    };
    tenant::may_see_entry(reach, reporter, message_visible)
}

fn receipts(
    s: &AppState,
    reach: &EntryReach,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Value)>, ledger_core::StoreError> {
    let mut raw = Vec::new();
    s.store.scan(from, to, &mut |seq, bytes| {
        raw.push((seq, bytes.to_vec()));
        Ok(())
    })?;
    let alg = s.store.info().hash;
    let live = s.projector.read();
    let eval = Evaluator::new(&live.facts, s.projector.policy(), Instant::now());
    let mut out = Vec::new();
    for (seq, bytes) in raw {
        let Ok(parsed) = ledger_core::entry::parse_envelope(&bytes) else {
            continue;
        };
        let ev: Value = serde_json::from_str(parsed.event).unwrap_or(Value::Null);
        let message = ev["message"].as_str().unwrap_or_default();
        if !entry_within_reach(&eval, reach, &bytes) {
            continue;
        }
        out.push((
            seq,
            json!({
                "seq": seq,
                "hash": ledger_core::hash::to_hex(&alg.leaf(&bytes)),
                "recorded_at": parsed.recorded_at,
                // A key entry (FORMAT.md §17) has type `key_rotated`, no id, no message.
                "id": ev["id"].as_str().unwrap_or_default(),
                "type": ev["type"].as_str().unwrap_or_default(),
                "message": message,
            }),
        ));
    }
    Ok(out)
}
