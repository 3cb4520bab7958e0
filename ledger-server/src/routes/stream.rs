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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use ledger_core::Store;
use ledger_core::projection::{Evaluator, Instant};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Auth};
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::projector::Position;
use crate::tenant::{self, Reach};

/// Receipts read from the log per step.
const STEP: u64 = 256;

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
    p: Principal,
    reach: Reach,
    cursor: Cursor,
    rx: tokio::sync::watch::Receiver<u64>,
    pending: VecDeque<Event>,
}

/// `GET /v1/stream` (`Last-Event-ID` to resume; `?from_seq=` to start from an entry).
#[utoipa::path(get, path = "/stream", tag = "ask",
    params(("from_seq" = Option<u64>, Query, description = "Start with the receipts of entries from this seq"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "Server-Sent Events: `receipt` {seq, hash, recorded_at, id, type, message}, `verdict` {message, from, to, reason, noticed_at}, `gap`", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A Last-Event-ID this stream did not give out", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.require(&[Scope::Read, Scope::Write, Scope::Audit, Scope::Regulator])?;
    let reach = if p.has(Scope::Regulator) || p.has(Scope::Audit) {
        Reach::All
    } else {
        Reach::Party(p.org.clone())
    };
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
    let rx = s.projector.subscribe();
    let session = Session {
        s,
        p,
        reach,
        cursor,
        rx,
        pending,
    };
    let events = futures_util::stream::unfold(session, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
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
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
    if st.cursor.next_seq < covered {
        let from = st.cursor.next_seq;
        let to = covered.min(from + STEP);
        let s = st.s.clone();
        let p = st.p.clone();
        let reach = st.reach.clone();
        let items = tokio::task::spawn_blocking(move || receipts(&s, &p, &reach, from, to)).await;
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
            _ => {
                st.pending.push_back(
                    Event::default().event("error").data(
                        json!({"message": "reading the log failed; reconnect with Last-Event-ID"})
                            .to_string(),
                    ),
                );
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
        let visible = match &st.reach {
            Reach::All => true,
            Reach::Party(org) => {
                c.sender.as_deref() == Some(org.as_str())
                    || c.recipient.as_deref() == Some(org.as_str())
            }
        };
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
fn receipts(
    s: &AppState,
    p: &Principal,
    reach: &Reach,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Value)>, ApiError> {
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
        let reporter = ev["reporter"]["org"].as_str().unwrap_or_default();
        let message_visible = eval
            .evaluate(message)
            .is_some_and(|e| tenant::may_see(reach, &e));
        if !tenant::may_see_entry(p, reporter, message_visible) {
            continue;
        }
        out.push((
            seq,
            json!({
                "seq": seq,
                "hash": ledger_core::hash::to_hex(&alg.leaf(&bytes)),
                "recorded_at": parsed.recorded_at,
                "id": ev["id"],
                "type": ev["type"],
                "message": message,
            }),
        ));
    }
    Ok(out)
}
