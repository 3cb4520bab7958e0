//! What auditors and mirrors fetch: signed checkpoints, Merkle proofs and raw entries,
//! everything needed to verify the log without trusting this server.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use ledger_core::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Auth};
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::tenant;

/// Raw entries per request, at most.
const ENTRIES_MAX: u64 = 10_000;

/// `GET /v1/ledger`: what identifies the log (origin, hash function, format), its
/// size, the server's verifier key and, with witnesses, its `witness.policy`. All of
/// it is public by nature, so every scope may ask; a reader compares the key with the
/// one it was given out of band: it is shown here, never to be trusted from here.
#[utoipa::path(get, path = "/ledger", tag = "audit",
    responses((status = 200, description = "{origin, hash, format, size, verifier_key (the key signing new checkpoints), key_history (verifier.key: every key with the size it signs from, FORMAT.md §17), witness_policy (the tlog-policy text, or null)}", body = Object), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "No scope at all", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_ledger(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    tenant::require_any(&p)?;
    let size = super::store_size(&s).await?;
    let info = s.store.info();
    let policy = s
        .witnessing
        .is_some()
        .then(|| std::fs::read_to_string(s.dir.join(crate::witnessing::POLICY_FILE)).ok())
        .flatten();
    Ok(Json(json!({
        "origin": info.origin,
        "hash": info.hash.name(),
        "format": info.format,
        "size": size,
        "verifier_key": s.store.verifier_key().current().to_string(),
        "key_history": s.store.verifier_key().to_string(),
        "witness_policy": policy,
    })))
}

/// `GET /v1/checkpoint`: the newest signed checkpoint, a C2SP signed note.
#[utoipa::path(get, path = "/checkpoint", tag = "audit",
    responses((status = 200, description = "The newest signed checkpoint (C2SP signed note); with a witness.policy, the newest one that reached the witness quorum, with the witnesses' cosignature lines", body = String, content_type = "text/plain"), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "No scope at all", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_checkpoint(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, ApiError> {
    tenant::require_any(&p)?;
    let store = s.store.clone();
    let witnessed = s.witnessing.is_some();
    let dir = s.dir.clone();
    let note = tokio::task::spawn_blocking(move || {
        // With witnesses, the newest checkpoint that reached their quorum, with their
        // cosignatures: the one a reader can trust without trusting the operator.
        match witnessed
            .then(|| ledger_core::checkpoint::read_cosigned(&dir, store.verifier_key()))
            .flatten()
        {
            Some((_, note)) => Ok(note),
            None => store.latest_checkpoint().map(|c| c.note),
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointsQuery {
    /// The checkpoint of exactly this size.
    size: Option<u64>,
    /// Checkpoints of this size or larger…
    from: Option<u64>,
    /// …at most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/checkpoints?size=N` (the one of that size) or `?from=N&limit=K` (a list).
#[utoipa::path(get, path = "/checkpoints", tag = "audit",
    params(("size" = Option<u64>, Query, description = "The checkpoint of exactly this size"),
        ("from" = Option<u64>, Query, description = "Checkpoints of this size or larger"), ("limit" = Option<usize>, Query, description = "1–1000 (100)")),
    responses((status = 200, description = "{checkpoints: [{size, note}]}", body = Object), (status = 400, description = "A malformed query parameter, named", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody),
        (status = 404, description = "No checkpoint of that size", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_checkpoints(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<CheckpointsQuery>,
) -> Result<Json<Value>, ApiError> {
    tenant::require_any(&p)?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        if let Some(size) = q.size {
            let note = store.checkpoint_at(size)?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "no checkpoint was signed at size {size} (list them with ?from=0)"
                ))
            })?;
            return Ok(json!({ "checkpoints": [{ "size": size, "note": note }] }));
        }
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let list = store.checkpoints(q.from.unwrap_or(0), limit)?;
        Ok(json!({
            "checkpoints": list.into_iter().map(|c| json!({"size": c.size, "note": c.note})).collect::<Vec<_>>()
        }))
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    seq: u64,
    size: Option<u64>,
}

/// `GET /v1/proofs/inclusion?seq=&size=`: the audit path of one entry (size defaults
/// to the newest checkpoint's).
#[utoipa::path(get, path = "/proofs/inclusion", tag = "audit",
    params(("seq" = u64, Query, description = "The entry"), ("size" = Option<u64>, Query, description = "Tree size (default: the newest checkpoint's)")),
    responses((status = 200, description = "{hash, seq, size, leaf_hash, root, path, checkpoint}", body = Object),
        (status = 400, description = "Out of range", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_inclusion(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    tenant::require_any(&p)?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let size = match q.size {
            Some(n) => n,
            None => store.latest_checkpoint()?.size,
        };
        let proof = store.inclusion_proof(q.seq, size)?;
        Ok(proof.to_json(store.info().hash, store.checkpoint_at(size)?))
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

/// `GET /v1/proofs/consistency?from=&to=`: that the tree of `from` entries is a
/// prefix of the tree of `to` (default: the newest checkpoint's size).
#[utoipa::path(get, path = "/proofs/consistency", tag = "audit",
    params(("from" = u64, Query, description = "Older size"), ("to" = Option<u64>, Query, description = "Newer size (default: the newest checkpoint's)")),
    responses((status = 200, description = "{hash, from, to, from_root, to_root, path, from_checkpoint, to_checkpoint}", body = Object),
        (status = 400, description = "Out of range", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_consistency(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    tenant::require_any(&p)?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let to = match q.to {
            Some(n) => n,
            None => store.latest_checkpoint()?.size,
        };
        let proof = store.consistency_proof(q.from, to)?;
        Ok(proof.to_json(
            store.info().hash,
            store.checkpoint_at(q.from)?,
            store.checkpoint_at(to)?,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    from: Option<u64>,
    limit: Option<u64>,
}

/// `GET /v1/entries?from=&limit=`: the stored entry bytes, one per line (JSON Lines;
/// an entry is canonical JSON, so it holds no newline). The bytes are the hashed bytes.
#[utoipa::path(get, path = "/entries", tag = "audit",
    params(("from" = Option<u64>, Query, description = "First seq (0)"), ("limit" = Option<u64>, Query, description = "1–10000 (1000)")),
    responses((status = 200, description = "The stored entry bytes (the hashed bytes), one per line", body = String, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Missing scope", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_entries(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<Response, ApiError> {
    tenant::require_audit(&p)?;
    let store = s.store.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let from = q.from.unwrap_or(0);
        let size = store.size();
        if from > size {
            return Err(ApiError::bad_request(
                "out_of_range",
                format!("from={from} is past the end of the log ({size} entries)"),
            ));
        }
        let to = size.min(from + q.limit.unwrap_or(1000).clamp(1, ENTRIES_MAX));
        let mut out = Vec::new();
        store.scan(from, to, &mut |_, bytes| {
            out.extend_from_slice(bytes);
            out.push(b'\n');
            Ok(())
        })?;
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReceiptQuery {
    seq: u64,
}

/// `GET /v1/receipts?seq=N`: the entry's receipt, a c2sp.org/tlog-proof@v1 file (the
/// entry, its inclusion path, and the newest checkpoint that covers it: the cosigned
/// one when the ledger has witnesses). Only for an entry within the caller's reach:
/// another organisation's is answered as if it did not exist.
#[utoipa::path(get, path = "/receipts", tag = "audit",
    params(("seq" = u64, Query, description = "The entry (a receipt's seq)")),
    responses((status = 200, description = "The tlog-proof, for `ledger verify-receipt`", body = String, content_type = "text/plain"),
        (status = 400, description = "A malformed query parameter", body = ErrorBody), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "No scope at all", body = ErrorBody),
        (status = 404, description = "No such entry within reach", body = ErrorBody),
        (status = 503, description = "Recorded, but no checkpoint covers it yet (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_receipt(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ReceiptQuery>,
) -> Result<Response, ApiError> {
    let reach = tenant::entry_reach(&p)?;
    let st = s.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let store = st.store.as_ref();
        let none = || ApiError::not_found(format!("no entry {} is within your reach", q.seq));
        if q.seq >= store.size() {
            return Err(none());
        }
        let bytes = store.entry(q.seq)?;
        {
            let live = st.projector.read();
            let eval = ledger_core::projection::Evaluator::new(
                &live.facts,
                st.projector.policy(),
                ledger_core::projection::Instant::now(),
            );
            if !super::stream::entry_within_reach(&eval, &reach, &bytes) {
                return Err(none());
            }
        }
        let note = match ledger_core::checkpoint::read_cosigned(&st.dir, store.verifier_key()) {
            Some((size, note)) if st.witnessing.is_some() && size > q.seq => note,
            _ => store.latest_checkpoint()?.note,
        };
        ledger_core::tlog_proof::TlogProof::build(store, q.seq, &note)
            .map(|p| p.to_text())
            .map_err(|e| match e {
                ledger_core::tlog_proof::ProofFileError::NotYetCheckpointed { .. } => {
                    ApiError::busy("not_yet_checkpointed", e.to_string(), 1)
                }
                other => ApiError::internal(other),
            })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /v1/bundle`: an export bundle, as a `.tar`, of everything up to the newest
/// checkpoint: what `ledger export --out FILE.tar` writes, to be checked offline with
/// `ledger verify --bundle FILE.tar --key KEY` or from FORMAT.md alone. One at a
/// time; it is staged in a temporary directory, then streamed.
#[utoipa::path(get, path = "/bundle", tag = "audit",
    responses((status = 200, description = "The export bundle (ledger.json, entries.jsonl, checkpoint, checkpoints.txt, verifier.key, README, organisations.csv if any) as a tar archive", body = String, content_type = "application/x-tar"),
        (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, description = "Needs ledger:audit or ledger:regulator", body = ErrorBody),
        (status = 503, description = "Another export is running; retry (Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_bundle(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, ApiError> {
    tenant::require_audit(&p)?;
    let permit = s.exports.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable("an export is already running; retry when it is done")
    })?;
    let st = s.clone();
    let (file, size, len) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let tmp = tempfile::tempdir().map_err(ApiError::internal)?;
        let out = tmp.path().join("bundle.tar");
        let names = st.dir.join(ledger_core::directory::FILE_NAME);
        let summary = ledger_core::bundle::export_with_names(
            st.store.as_ref(),
            &out,
            &(),
            names.exists().then_some(names.as_path()),
        )?;
        // Opened, then the directory goes (with `tmp`): the open file lives on
        // until the download ends, and nothing is left behind.
        let f = std::fs::File::open(&out).map_err(ApiError::internal)?;
        let len = f.metadata().map_err(ApiError::internal)?.len();
        Ok((f, summary.entries, len))
    })
    .await
    .map_err(ApiError::internal)??;
    let origin: String = s
        .store
        .info()
        .origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let file = tokio::fs::File::from_std(file);
    let body = futures_util::stream::unfold(Some((file, permit)), |state| async move {
        use tokio::io::AsyncReadExt as _;
        let (mut f, permit) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some((f, permit))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (CONTENT_TYPE, "application/x-tar".to_string()),
            (axum::http::header::CONTENT_LENGTH, len.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{origin}-{size}.tar\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
