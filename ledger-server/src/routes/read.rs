//! Questions: one message (`GET /v1/messages/{id}`), messages by filter with a stable
//! cursor (`GET /v1/messages`), reports (`GET /v1/reports/{kind}`) and counts
//! (`GET /v1/stats`). The same engine as `ledger status|report|stats`, inside the
//! tenant boundary.
//!
//! The projection follows the log a moment behind the appends, so every answer says
//! what it reflects: the header `Ledger-Covered: N` (and the body's `covered`) — the
//! entries below seq N. A client that must see its own receipt (seq S) asks with
//! `?min_seq=S`: the answer waits until the projection covers S (at most
//! `MIN_SEQ_WAIT_MAX`), else 503 with Retry-After.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use base64::Engine;
use std::borrow::Cow;

use ledger_core::projection::{self, Evaluation, Filter, Instant, Verdict};
use ledger_core::questions::{self, QuestionError, ReportKind, Rows, Timing};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Auth};
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::tenant::{self, Reach};

/// Query parameters shared by the listing questions.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    from: Option<String>,
    to: Option<String>,
    party: Option<String>,
    category: Option<String>,
    channel: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Judge at this time instead of the server's clock.
    now: Option<String>,
    /// Event time: how things stood then.
    as_of: Option<String>,
    /// Record time: what the ledger knew then.
    known_at: Option<String>,
    /// Over exactly the checkpoint of this size.
    at_checkpoint: Option<u64>,
    /// Reports: everyone ever in that state (incidents).
    ever: Option<bool>,
    /// Incidents: only those not ended.
    open: Option<bool>,
    /// Reported-late: the delay that counts as late.
    over: Option<String>,
    /// Comma-separated verdicts (`GET /v1/messages` only).
    verdict: Option<String>,
    /// `GET /v1/stats` grouping.
    by: Option<String>,
    /// Anomaly kind (`GET /v1/reports/anomalies` only).
    kind: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// Reports: rows skipped before the page (with `limit`).
    offset: Option<usize>,
    /// Reports: the row field to order by (`-field` for descending).
    sort: Option<String>,
    /// Reports: `json` (the default) or `csv` (the CLI's `--format csv`).
    format: Option<String>,
    /// Answer only once the projection covers this seq.
    min_seq: Option<u64>,
}

/// The header of every answer to a question: the entries it reflects (those below this seq).
pub(crate) const COVERED_HEADER: HeaderName = HeaderName::from_static("ledger-covered");
/// The longest a question waits for `?min_seq=`.
pub(crate) const MIN_SEQ_WAIT_MAX: Duration = Duration::from_secs(5);

/// An answer to a question, with the header saying what it reflects.
pub(crate) type Answer = ([(HeaderName, HeaderValue); 1], Json<Value>);

fn answer(body: Value) -> Answer {
    let covered = body["covered"].as_u64().unwrap_or(0);
    ([(COVERED_HEADER, HeaderValue::from(covered))], Json(body))
}

/// Waits until the projection reflects the entry at `min_seq`, at most
/// `MIN_SEQ_WAIT_MAX` (less if the request timeout is shorter); 503 if it does not.
async fn await_min_seq(s: &AppState, min_seq: Option<u64>) -> Result<(), ApiError> {
    let Some(seq) = min_seq else {
        return Ok(());
    };
    // No entry has that seq: nothing to wait for (and no request is held for it).
    let size = super::store_size(s).await?;
    if seq >= size {
        return Err(ApiError::bad_request(
            "out_of_range",
            format!("min_seq={seq}: the log holds {size} entries, so no entry has that seq"),
        ));
    }
    let wait = MIN_SEQ_WAIT_MAX.min(s.config.request_timeout / 2);
    let covered = s.projector.wait_covered(seq.saturating_add(1), wait).await;
    if covered > seq {
        return Ok(());
    }
    let why = format!("the projection covers the entries below seq {covered}");
    Err(ApiError::busy(
        "not_yet_covered",
        format!(
            "min_seq={seq}: not reflected after waiting {} ms ({why}); retry",
            wait.as_millis()
        ),
        1,
    ))
}

/// A question's error as the API names it: `since=…: …`.
fn question_error(e: QuestionError) -> ApiError {
    match e {
        QuestionError::BadParameter { name, reason } => {
            ApiError::bad_request("bad_parameter", format!("{name}={reason}"))
        }
        QuestionError::NoCheckpoint(n) => ApiError::not_found(format!(
            "at_checkpoint={n}: no checkpoint was signed at size {n}"
        )),
        QuestionError::Projection(e) => e.into(),
        QuestionError::Store(e) => e.into(),
    }
}

impl Params {
    fn which(&self) -> questions::Which {
        questions::Which {
            from: self.from.clone(),
            to: self.to.clone(),
            party: self.party.clone(),
            category: self.category.clone(),
            channel: self.channel.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }

    fn filter(&self, names: &ledger_core::directory::Directory) -> Result<Filter, ApiError> {
        self.which().filter_in(names).map_err(question_error)
    }

    fn timing(&self) -> Result<Timing, ApiError> {
        questions::When {
            as_of: self.as_of.clone(),
            known_at: self.known_at.clone(),
            now: self.now.clone(),
            at_checkpoint: self.at_checkpoint,
        }
        .timing()
        .map_err(question_error)
    }
}

/// The basis of a question inside the server: the live projection, or a replay in
/// memory for as_of, known_at and at_checkpoint (the live one is never touched).
fn with_basis<T>(
    st: &AppState,
    timing: Timing,
    f: impl FnOnce(&questions::Basis<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let store = st.store.as_ref();
    let policy = st.projector.policy();
    let source = st.projector.policy_source();
    if timing.needs_replay() {
        let b = questions::Basis::new(
            store,
            timing,
            policy,
            source,
            || unreachable!("a replay needs no head"),
            &mut |_| {},
        )
        .map_err(question_error)?
        .named(&st.directory);
        return f(&b);
    }
    let live = st.projector.read();
    let b = questions::Basis::new(
        store,
        timing,
        policy,
        source,
        || Ok(Cow::Borrowed(&live.facts)),
        &mut |_| {},
    )
    .map_err(question_error)?
    .named(&st.directory);
    f(&b)
}

fn verdicts_of(list: &str) -> Result<Vec<Verdict>, ApiError> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Verdict::from_name(s).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_parameter",
                    format!(
                        "verdict {s:?} is not one of {}",
                        Verdict::ALL.map(|v| v.name()).join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// `?as_of=`, `?known_at=`, `?now=` and `?at_checkpoint=` of `GET /v1/messages/{id}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct When {
    as_of: Option<String>,
    known_at: Option<String>,
    now: Option<String>,
    at_checkpoint: Option<u64>,
    /// Answer only once the projection covers this seq.
    min_seq: Option<u64>,
}

#[utoipa::path(get, path = "/messages/{id}", tag = "ask",
    params(("id" = String, Path, description = "Message id (a bare id, or FROM/TO/ID)"),
        ("as_of" = Option<String>, Query, description = "Event time: how it stood then (only events that happened by T, judged at T); a date (YYYY-MM-DD, 00:00 UTC) or RFC 3339"),
        ("known_at" = Option<String>, Query, description = "Record time: what the ledger knew then (only entries recorded by T); a date or RFC 3339. Combines with as_of"),
        ("now" = Option<String>, Query, description = "Judge deadlines at this time (a date or RFC 3339; not with as_of)"),
        ("at_checkpoint" = Option<u64>, Query, description = "Answer over exactly the entries of the signed checkpoint of this size (404 if none was signed at it; not with known_at)"),
        ("min_seq" = Option<u64>, Query, description = "Answer only once the projection reflects the entry at this seq (a receipt's seq): waits up to 5 s, else 503 with Retry-After; 400 if the log has no such entry")),
    responses((status = 200, description = "The same document as `ledger status --json`: {message, from, to, organisations, covered, checkpoint {origin, size, root, note, entries_after} (the newest signed checkpoint within the entries the answer covers, or the one asked for), now, as_of, known_at, policy, policy_digest, status, evaluation, incidents, facts, history}", body = Object, headers(("Ledger-Covered" = u64, description = "The answer reflects the entries below this seq (the body's covered)"))),
        (status = 400, description = "A malformed query parameter, named", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 404, description = "Unknown, not the caller's organisation's message, or no checkpoint at at_checkpoint", body = ErrorBody), (status = 409, description = "ambiguous_message: several messages of this id are within reach (organisations may use the same id); details.candidates names each as /v1/messages/FROM/TO/ID", body = ErrorBody),
        (status = 503, description = "min_seq not reflected within 5 s (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
/// `GET /v1/messages/{id}`: state, verdict, incidents and history, as it stood at
/// `as_of` (event time) and as the ledger knew it at `known_at` (record time).
pub(crate) async fn get_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(w): ApiQuery<When>,
) -> Result<Answer, ApiError> {
    let reach = tenant::message_reach(&p)?;
    let timing = questions::When {
        as_of: w.as_of.clone(),
        known_at: w.known_at.clone(),
        now: w.now.clone(),
        at_checkpoint: w.at_checkpoint,
    }
    .timing()
    .map_err(question_error)?;
    await_min_seq(&s, w.min_seq).await?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let store = st.store.as_ref();
        let not_found = || ApiError::not_found(format!("no message {id:?} is recorded"));
        // Which message: the id as a reader knows it, among those within reach (two
        // organisations may each have a message of that id; another's is never
        // named, so the answer is the same whether it exists or not).
        let key = {
            let live = st.projector.read();
            let keys = tenant::find_messages(&reach, &live.facts, &id);
            match keys.len() {
                0 => return Err(not_found()),
                1 => keys[0].clone(),
                _ => {
                    let candidates: Vec<Value> = keys
                        .iter()
                        .map(|k| {
                            let (parties, bare) = ledger_core::event::split_message_key(k);
                            json!({
                                "message": bare,
                                "from": parties.map(|p| p.0),
                                "to": parties.map(|p| p.1),
                                "path": parties.map(|(f, t)| format!("/v1/messages/{f}/{t}/{bare}")),
                            })
                        })
                        .collect();
                    // 409, not 300: HTTP clients follow a 3xx, and this one has
                    // no single place to go.
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "ambiguous_message",
                        format!(
                            "{} messages of id {id:?} are within your reach; ask for one as \
                             /v1/messages/FROM/TO/ID",
                            keys.len()
                        ),
                    )
                    .with_details(json!({ "candidates": candidates })));
                }
            }
        };
        let answer = |b: &questions::Basis<'_>| -> Result<Value, ApiError> {
            let a = questions::message(store, b, &key)
                .map_err(question_error)?
                .ok_or_else(not_found)?;
            if !tenant::may_see(&reach, &a.evaluation) {
                return Err(not_found());
            }
            serde_json::to_value(&a).map_err(ApiError::internal)
        };
        if timing.needs_replay() {
            // One message's family only: fast, and the live projection untouched.
            let (facts, cp) = questions::message_facts(store, &key, &timing)
                .map_err(question_error)?
                .ok_or_else(not_found)?;
            let checkpoint = match cp {
                Some(c) => Some(c),
                None => questions::checkpoint_within(store, facts.covered())?,
            };
            let b = questions::Basis {
                facts: Cow::Owned(facts),
                now: timing.judged_at(Instant::now()),
                timing,
                policy: st.projector.policy(),
                policy_source: st.projector.policy_source(),
                checkpoint,
                directory: &st.directory,
            };
            return answer(&b);
        }
        with_basis(&st, timing, |b| answer(b))
    })
    .await
    .map_err(ApiError::internal)?
    .map(answer)
}

/// `GET /v1/messages/{from}/{to}/{id}`: one message by its full name (format 2: the
/// id is the sender's and recipient's own), as `GET /v1/messages/{id}` answers.
#[utoipa::path(get, path = "/messages/{from}/{to}/{id}", tag = "ask",
    params(("from" = String, Path, description = "The sending organisation"), ("to" = String, Path, description = "The receiving organisation"), ("id" = String, Path, description = "The message id"),
        ("as_of" = Option<String>, Query, description = "Event time: how it stood then (only events that happened by T, judged at T); a date (YYYY-MM-DD, 00:00 UTC) or RFC 3339"),
        ("known_at" = Option<String>, Query, description = "Record time: what the ledger knew then (only entries recorded by T); a date or RFC 3339. Combines with as_of"),
        ("now" = Option<String>, Query, description = "Judge deadlines at this time (a date or RFC 3339; not with as_of)"),
        ("at_checkpoint" = Option<u64>, Query, description = "Answer over exactly the entries of the signed checkpoint of this size (404 if none was signed at it; not with known_at)"),
        ("min_seq" = Option<u64>, Query, description = "Answer only once the projection reflects the entry at this seq")),
    responses((status = 200, description = "As GET /messages/{id}", body = Object),
        (status = 400, description = "A malformed query parameter, named", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 404, description = "Unknown, or not the caller's organisation's message", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_scoped_message(
    state: State<AppState>,
    auth: Auth,
    Path((from, to, id)): Path<(String, String, String)>,
    when: ApiQuery<When>,
) -> Result<Answer, ApiError> {
    get_message(state, auth, Path(format!("{from}/{to}/{id}")), when).await
}

/// Row order and cursor key: send time, then id.
fn key(e: &Evaluation<'_>) -> (i128, String) {
    (
        e.origin_at.map_or(i128::MIN, |t| t.nanos()),
        e.message.to_string(),
    )
}

fn encode_cursor(k: &(i128, String)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{}", k.0, k.1))
}

fn decode_cursor(c: &str) -> Result<(i128, String), ApiError> {
    let bad = || ApiError::bad_request("bad_cursor", "the cursor is not one this server gave out");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (t, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_string()))
}

/// `GET /v1/messages?verdict=&from=&to=&…&limit=&cursor=`: evaluated messages by send
/// time then id, a page at a time. The cursor is the last row's (send time, id), so a
/// page never repeats or skips a message that was there before.
#[utoipa::path(get, path = "/messages", tag = "ask",
    params(("verdict" = Option<String>, Query, description = "Comma-separated: open, at-risk, late, completed, lost, stuck, resolved"),
        ("from" = Option<String>, Query, description = "Sender: an org number, or a name from organisations.csv (an ambiguous name is a 400 naming the candidates)"), ("to" = Option<String>, Query, description = "Recipient: an org number or a name"),
        ("party" = Option<String>, Query, description = "Sender or recipient: an org number or a name"),
        ("category" = Option<String>, Query), ("channel" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "Sent at or after (a date, YYYY-MM-DD meaning 00:00 UTC, or RFC 3339)"), ("until" = Option<String>, Query, description = "Sent before (a date or RFC 3339)"),
        ("as_of" = Option<String>, Query, description = "Event time: how it stood then (only events that happened by T, judged at T); a date (YYYY-MM-DD, 00:00 UTC) or RFC 3339"),
        ("known_at" = Option<String>, Query, description = "Record time: what the ledger knew then (only entries recorded by T); a date or RFC 3339. Combines with as_of"),
        ("now" = Option<String>, Query, description = "Judge deadlines at this time (a date or RFC 3339; not with as_of)"),
        ("at_checkpoint" = Option<u64>, Query, description = "Answer over exactly the entries of the signed checkpoint of this size (404 if none was signed at it; not with known_at)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–1000 (100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("min_seq" = Option<u64>, Query, description = "Answer only once the projection reflects the entry at this seq (a receipt's seq): waits up to 5 s, else 503 with Retry-After; 400 if the log has no such entry")),
    responses((status = 200, description = "{covered, checkpoint {origin, size, root, note, entries_after} (the newest signed checkpoint within the entries the answer covers, or the one asked for), now, as_of, known_at, policy, policy_digest, total, organisations, rows: [evaluation], next_cursor}", body = Object, headers(("Ledger-Covered" = u64, description = "The answer reflects the entries below this seq (the body's covered)"))),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 404, description = "No checkpoint was signed at at_checkpoint", body = ErrorBody),
        (status = 503, description = "min_seq not reflected within 5 s (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_messages(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<Params>,
) -> Result<Answer, ApiError> {
    let reach = tenant::message_reach(&p)?;
    let filter = tenant::scoped(&reach, q.filter(&s.directory)?);
    let verdicts = match &q.verdict {
        Some(v) => verdicts_of(v)?,
        None => Verdict::ALL.to_vec(),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let timing = q.timing()?;
    await_min_seq(&s, q.min_seq).await?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        with_basis(&st, timing, |b| {
            let eval = b.evaluator();
            let rows = projection::report(&eval, &verdicts, &filter);
            let start = match &after {
                Some(a) => rows.partition_point(|e| key(e) <= *a),
                None => 0,
            };
            let page: Vec<&Evaluation<'_>> = rows[start..].iter().take(limit).collect();
            let next = (start + page.len() < rows.len())
                .then(|| page.last().map(|e| encode_cursor(&key(e))))
                .flatten();
            let names = st
                .directory
                .names(page.iter().flat_map(|e| [e.from, e.to]).flatten());
            let mut body =
                serde_json::to_value(b.header(st.store.as_ref())).map_err(ApiError::internal)?;
            body["total"] = json!(rows.len());
            body["organisations"] = json!(names);
            body["rows"] = json!(page);
            body["next_cursor"] = json!(next);
            Ok(body)
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map(answer)
}

/// The two lists of `POST /v1/reconcile`: each the text of a CSV file (the formats
/// `ledger reconcile` reads) and, optionally, its column map.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ReconcileBody {
    /// The sender's list (CSV text).
    sent: String,
    /// The receiver's list (CSV text).
    received: String,
    /// The sender's column map, as `ledger reconcile --sent-map` takes it
    /// (`message=Dokumentnr,ref=Saksnr,at=Dato`).
    #[serde(default)]
    sent_map: Option<String>,
    /// The receiver's column map.
    #[serde(default)]
    received_map: Option<String>,
}

/// `POST /v1/reconcile`: a sender's and a receiver's lists against the ledger, as
/// `ledger reconcile` does; nothing is stored. A party's token sees its own
/// messages only: rows about others' messages read as not recorded.
#[utoipa::path(post, path = "/reconcile", tag = "ask", request_body = ReconcileBody,
    params(("from" = Option<String>, Query, description = "Expect in the lists every message of this sender (an org number or a name)"), ("to" = Option<String>, Query, description = "… of this recipient"),
        ("party" = Option<String>, Query, description = "… sent or received by this organisation"), ("category" = Option<String>, Query), ("channel" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "… sent at or after"), ("until" = Option<String>, Query, description = "… sent before"),
        ("as_of" = Option<String>, Query, description = "Event time (a date or RFC 3339)"), ("known_at" = Option<String>, Query, description = "Record time"),
        ("now" = Option<String>, Query, description = "Judge verdicts at this time")),
    responses((status = 200, description = "The same document as `ledger reconcile --json`: the basis (checkpoint, policy, now), summary {class: count}, differences [{class, list, line, message, ref, at, ledger_message, ledger_verdict}]", body = Object),
        (status = 400, description = "A list that cannot be read (with the line), or a bad column map", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn post_reconcile(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<Params>,
    body: axum::body::Bytes,
) -> Result<Answer, ApiError> {
    let reach = tenant::message_reach(&p)?;
    let filter = tenant::scoped(&reach, q.filter(&s.directory)?);
    let visible = tenant::scoped(&reach, Filter::default());
    let timing = q.timing()?;
    let b: ReconcileBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad_body",
            format!("expected {{sent, received[, sent_map, received_map]}}: {e}"),
        )
    })?;
    let list = |name: &str, text: &str, map: Option<&str>| {
        let opts = match map {
            Some(m) => ledger_core::reconcile::ListOptions::parse_map(m)
                .map_err(|e| ApiError::bad_request("bad_map", format!("{name}_map: {e}")))?,
            None => ledger_core::reconcile::ListOptions::default(),
        };
        ledger_core::reconcile::parse_list_with(name, text.as_bytes(), &opts)
            .map_err(|e| ApiError::bad_request("bad_list", e.to_string()))
    };
    let sent = list("sent", &b.sent, b.sent_map.as_deref())?;
    let received = list("received", &b.received, b.received_map.as_deref())?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        with_basis(&st, timing, |basis| {
            let a = questions::reconcile(
                st.store.as_ref(),
                basis,
                &sent,
                &received,
                &filter,
                &visible,
            );
            serde_json::to_value(&a).map_err(ApiError::internal)
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map(answer)
}

/// `GET /v1/whoami`: who the credential is (its organisation, by number and name,
/// its scopes, and which token), so a client (the console) can say so.
#[utoipa::path(get, path = "/whoami", tag = "ask",
    responses((status = 200, description = "{org, name (from organisations.csv, or null), scopes, subject (token:<name> or jwt:<client>; never the token)}", body = Object),
        (status = 401, description = "No or bad token", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn whoami(State(s): State<AppState>, Auth(p): Auth) -> Json<Value> {
    Json(json!({
        "org": p.org,
        "name": s.directory.name(&p.org),
        "scopes": p.scopes.iter().map(|x| x.name()).collect::<Vec<_>>(),
        "subject": p.subject,
    }))
}

/// `GET /v1/reports/{kind}`: a verdict now, incidents (ever), anomalies, or reported-late;
/// every row passing the filters.
#[utoipa::path(get, path = "/reports/{kind}", tag = "ask",
    params(("kind" = String, Path, description = "A verdict now (lost, at-risk, late, stuck, open, completed, resolved), incidents (what ever went wrong), anomalies, or reported-late"),
        ("from" = Option<String>, Query, description = "Sender: an org number, or a name from organisations.csv (an ambiguous name is a 400 naming the candidates)"), ("to" = Option<String>, Query, description = "Recipient: an org number or a name"),
        ("party" = Option<String>, Query, description = "Sender or recipient: an org number or a name"),
        ("category" = Option<String>, Query), ("channel" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "Sent at or after (a date, YYYY-MM-DD meaning 00:00 UTC, or RFC 3339)"), ("until" = Option<String>, Query, description = "Sent before (a date or RFC 3339)"),
        ("as_of" = Option<String>, Query, description = "Event time: how it stood then (only events that happened by T, judged at T); a date (YYYY-MM-DD, 00:00 UTC) or RFC 3339"),
        ("known_at" = Option<String>, Query, description = "Record time: what the ledger knew then (only entries recorded by T); a date or RFC 3339. Combines with as_of"),
        ("now" = Option<String>, Query, description = "Judge deadlines at this time (a date or RFC 3339; not with as_of)"),
        ("at_checkpoint" = Option<u64>, Query, description = "Answer over exactly the entries of the signed checkpoint of this size (404 if none was signed at it; not with known_at)"),
        ("kind" = Option<String>, Query, description = "anomalies: one anomaly kind; incidents: comma-separated incident kinds (lost_unread, failed, handoff_never_received, never_delivered, opened_late, ack_late)"),
        ("ever" = Option<bool>, Query, description = "lost, stuck, late or at-risk: every message ever in that state, as incident rows, whatever its verdict now"),
        ("open" = Option<bool>, Query, description = "incidents or ever: only incidents not yet ended"),
        ("over" = Option<String>, Query, description = "reported-late: the delay after which an event recorded late is a finding (a duration such as 1h or 7d; 24h)"),
        ("min_seq" = Option<u64>, Query, description = "Answer only once the projection reflects the entry at this seq (a receipt's seq): waits up to 5 s, else 503 with Retry-After; 400 if the log has no such entry"),
        ("sort" = Option<String>, Query, description = "Order the rows by this field of a row (`-field`: descending); ties keep the report's order. count and digest stay those of every row"),
        ("offset" = Option<usize>, Query, description = "Skip this many rows (after sort), for paging"),
        ("limit" = Option<usize>, Query, description = "At most this many rows (after offset); the document then says offset and limit"),
        ("format" = Option<String>, Query, description = "json (default) or csv: the same file as `ledger report KIND --format csv` (every row, in sort order), its basis in Ledger-Checkpoint, Ledger-Policy-Digest, Ledger-Judged-At and Ledger-Rows-Digest headers")),
    responses((status = 200, description = "The same document as `ledger report KIND --json`: {report, covered, checkpoint {origin, size, root, note, entries_after} (the newest signed checkpoint within the entries the answer covers, or the one asked for), now, as_of, known_at, policy, policy_digest, kinds (incidents), count, organisations, digest (H(JCS(rows)), hex), rows}; with format=csv, CSV", content((Object = "application/json"), (String = "text/csv")), headers(("Ledger-Covered" = u64, description = "The answer reflects the entries below this seq (the body's covered)"))),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 404, description = "No such report, or no checkpoint at at_checkpoint", body = ErrorBody),
        (status = 503, description = "min_seq not reflected within 5 s (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(kind): Path<String>,
    ApiQuery(q): ApiQuery<Params>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("format={other:?}: give json or csv"),
            ));
        }
    };
    let (sort, offset, limit) = (q.sort.clone(), q.offset, q.limit);
    let reach = tenant::message_reach(&p)?;
    let filter = tenant::scoped(&reach, q.filter(&s.directory)?);
    let timing = q.timing()?;
    let report = ReportKind::parse(
        &kind,
        &questions::ReportOptions {
            kind: q.kind.as_deref(),
            ever: q.ever.unwrap_or(false),
            open: q.open.unwrap_or(false),
            over: q.over.as_deref(),
        },
    )
    .map_err(|e| match e {
        QuestionError::BadParameter {
            name: "report",
            reason,
        } => ApiError::not_found(reason),
        other => question_error(other),
    })?;
    await_min_seq(&s, q.min_seq).await?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        with_basis(&st, timing, |b| {
            let mut a = questions::report(st.store.as_ref(), b, &report, &filter)
                .map_err(question_error)?;
            // Stream anomalies name no message: a reader sees its own streams only.
            if let (Rows::Anomalies(rows), Reach::Party(org)) = (&mut a.rows, &reach) {
                rows.retain(|r| r.org.as_ref().is_none_or(|o| o == org));
                a.count = rows.len();
                a.digest = questions::rows_digest(st.store.as_ref(), rows);
            }
            let mut doc = serde_json::to_value(&a).map_err(ApiError::internal)?;
            let order = sort_order(
                doc["rows"].as_array().map_or(&[][..], |r| r),
                sort.as_deref(),
            )?;
            if csv {
                let mut table = ledger_core::report_table::Table::of(&a.rows);
                let mut rows: Vec<Option<Vec<String>>> = table.rows.drain(..).map(Some).collect();
                table.rows = order.iter().filter_map(|&i| rows[i].take()).collect();
                let text = table.to_csv(|n| st.directory.name(n).map(str::to_string));
                return Ok(ReportOut::Csv(doc, text));
            }
            if let Some(rows) = doc["rows"].as_array_mut() {
                let mut taken: Vec<Option<Value>> = rows.drain(..).map(Some).collect();
                let from = offset.unwrap_or(0);
                *rows = order
                    .iter()
                    .skip(from)
                    .take(limit.unwrap_or(usize::MAX))
                    .filter_map(|&i| taken[i].take())
                    .collect();
            }
            if offset.is_some() || limit.is_some() {
                doc["offset"] = json!(offset.unwrap_or(0));
                doc["limit"] = json!(limit);
            }
            Ok(ReportOut::Json(doc))
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map(|out| match out {
        ReportOut::Json(doc) => answer(doc).into_response(),
        ReportOut::Csv(doc, text) => {
            let h = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("?"));
            let cp = &doc["checkpoint"];
            (
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/csv; charset=utf-8"),
                    ),
                    (COVERED_HEADER, h(doc["covered"].to_string())),
                    (
                        HeaderName::from_static("ledger-checkpoint"),
                        h(format!(
                            "{} {} {}",
                            cp["origin"].as_str().unwrap_or(""),
                            cp["size"],
                            cp["root"].as_str().unwrap_or("")
                        )),
                    ),
                    (
                        HeaderName::from_static("ledger-policy-digest"),
                        h(doc["policy_digest"].as_str().unwrap_or("").to_string()),
                    ),
                    (
                        HeaderName::from_static("ledger-judged-at"),
                        h(doc["now"].as_str().unwrap_or("").to_string()),
                    ),
                    (
                        HeaderName::from_static("ledger-rows-digest"),
                        h(doc["digest"].as_str().unwrap_or("").to_string()),
                    ),
                ],
                text,
            )
                .into_response()
        }
    })
}

/// A report's answer: its JSON document, or the CSV of its rows (with the document
/// for the headers that carry its basis).
enum ReportOut {
    Json(Value),
    Csv(Value, String),
}

/// The order of `rows` by `sort` (a row field, `-field` descending; a stable sort, so
/// ties keep the report's order); 400 for a field no row has.
fn sort_order(rows: &[Value], sort: Option<&str>) -> Result<Vec<usize>, ApiError> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return Ok(order);
    };
    let (field, descending) = match sort.strip_prefix('-') {
        Some(f) => (f, true),
        None => (sort, false),
    };
    if rows.first().is_some_and(|r| r.get(field).is_none()) {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("sort={sort:?}: the rows have no field {field:?}"),
        ));
    }
    let key = |v: &Value| -> (u8, String, f64) {
        match v {
            Value::Null => (0, String::new(), 0.0),
            Value::Number(n) => (1, String::new(), n.as_f64().unwrap_or(0.0)),
            Value::String(s) => (2, s.clone(), 0.0),
            other => (3, other.to_string(), 0.0),
        }
    };
    order.sort_by(|&a, &b| {
        let (ka, kb) = (key(&rows[a][field]), key(&rows[b][field]));
        let o =
            ka.0.cmp(&kb.0)
                .then(ka.2.total_cmp(&kb.2))
                .then(ka.1.cmp(&kb.1));
        if descending { o.reverse() } else { o }
    });
    Ok(order)
}

/// `GET /v1/stats?by=from,month`: counts per verdict and per incident kind.
#[utoipa::path(get, path = "/stats", tag = "ask",
    params(("by" = Option<String>, Query, description = "all, or keys from: from, to, channel, category, month (comma-separated: from,month counts per sender and month sent); after a grouping's keys, `:` and a count lists only its groups where that count is above zero (from,month:lost_unread; a verdict, an incident kind, with_incidents or with_anomalies; the grouping's having names it); several groupings at once separated by `;` (all;month;from,month:lost_unread, at most 4): the first is by and groups, the others also[], all from one pass"),
        ("from" = Option<String>, Query, description = "Sender: an org number, or a name from organisations.csv (an ambiguous name is a 400 naming the candidates)"), ("to" = Option<String>, Query, description = "Recipient: an org number or a name"),
        ("party" = Option<String>, Query, description = "Sender or recipient: an org number or a name"),
        ("category" = Option<String>, Query), ("channel" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "Sent at or after (a date, YYYY-MM-DD meaning 00:00 UTC, or RFC 3339)"), ("until" = Option<String>, Query, description = "Sent before (a date or RFC 3339)"),
        ("as_of" = Option<String>, Query, description = "Event time: how it stood then (only events that happened by T, judged at T); a date (YYYY-MM-DD, 00:00 UTC) or RFC 3339"),
        ("known_at" = Option<String>, Query, description = "Record time: what the ledger knew then (only entries recorded by T); a date or RFC 3339. Combines with as_of"),
        ("now" = Option<String>, Query, description = "Judge deadlines at this time (a date or RFC 3339; not with as_of)"),
        ("at_checkpoint" = Option<u64>, Query, description = "Answer over exactly the entries of the signed checkpoint of this size (404 if none was signed at it; not with known_at)"),
        ("min_seq" = Option<u64>, Query, description = "Answer only once the projection reflects the entry at this seq (a receipt's seq): waits up to 5 s, else 503 with Retry-After; 400 if the log has no such entry")),
    responses((status = 200, description = "The same document as `ledger stats --json`: {by, covered, checkpoint {origin, size, root, note, entries_after} (the newest signed checkpoint within the entries the answer covers, or the one asked for), now, as_of, known_at, policy, policy_digest, having (when asked), groups: [{group, keys, total, verdicts, with_anomalies, incidents, with_incidents}], organisations, also: [{by, having, groups}] (with several groupings)}", body = Object, headers(("Ledger-Covered" = u64, description = "The answer reflects the entries below this seq (the body's covered)"))),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody), (status = 404, description = "No checkpoint at at_checkpoint", body = ErrorBody),
        (status = 503, description = "min_seq not reflected within 5 s (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_stats(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<Params>,
) -> Result<axum::response::Response, ApiError> {
    let reach = tenant::message_reach(&p)?;
    let filter = tenant::scoped(&reach, q.filter(&s.directory)?);
    let timing = q.timing()?;
    let by = questions::groupings(q.by.as_deref()).map_err(question_error)?;
    await_min_seq(&s, q.min_seq).await?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        with_basis(&st, timing, |b| {
            // Straight to bytes: a grouping by sender and month is tens of thousands
            // of groups, and a JSON value tree of them would cost as much again.
            let a = questions::stats_many(st.store.as_ref(), b, &by, &filter);
            let bytes = serde_json::to_vec(&a).map_err(ApiError::internal)?;
            Ok((a.header.covered, bytes))
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map(|(covered, bytes)| {
        use axum::response::IntoResponse as _;
        (
            [
                (COVERED_HEADER, HeaderValue::from(covered)),
                (
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            bytes,
        )
            .into_response()
    })
}
