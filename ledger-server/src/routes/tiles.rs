//! The public read API for monitors and mirrors (c2sp.org/tlog-tiles), under
//! `/tlog`: the checkpoint and the hash tiles need no token (they are hashes and
//! sizes, and cacheable); entry bundles say who wrote to whom, so they need the
//! `ledger:audit` or `ledger:regulator` scope unless the operator sets
//! `privacy.public_entry_bundles` (README "Mirror and monitor a log").

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::Store as _;
use ledger_core::tiles::{TileError, TilePath};

use super::AppState;
use crate::error::ApiError;
use crate::tenant;

/// `GET /tlog/checkpoint`: the newest checkpoint (the cosigned one with witnesses).
pub(crate) async fn checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    let st = s.clone();
    let note = tokio::task::spawn_blocking(move || {
        let store = st.store.as_ref();
        match st
            .witnessing
            .is_some()
            .then(|| ledger_core::checkpoint::read_cosigned(&st.dir, store.verifier_key()))
            .flatten()
        {
            Some((_, note)) => Ok(note),
            None => store.latest_checkpoint().map(|c| c.note),
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8"),
            (CACHE_CONTROL, "max-age=2"),
        ],
        note,
    )
        .into_response())
}

/// `GET /tlog/tile/<L>/<N>[.p/<W>]` and `/tlog/tile/entries/<N>[.p/<W>]`.
pub(crate) async fn tile(
    State(s): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tile = TilePath::parse(&path).map_err(|e| ApiError::not_found(e.to_string()))?;
    // What a shared cache may keep: hash tiles and public entry bundles, for anyone;
    // entry bundles behind a token, only for the one who asked.
    let mut cache = "public, max-age=31536000, immutable";
    if tile.level.is_none() && !s.config.public_entry_bundles {
        cache = "private, max-age=31536000, immutable";
        let p = super::authenticate(&s, &axum::http::Method::GET, &headers)?;
        tenant::require_audit(&p)?;
    }
    let st = s.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let store = st.store.as_ref();
        let size = store.latest_checkpoint()?.size;
        tile.read(store, size).map_err(|e| match e {
            TileError::Store(e) => e.into(),
            TileError::EntryTooLong { .. } => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "entry_too_long", e.to_string())
            }
            other => ApiError::not_found(other.to_string()),
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream"),
            (CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}
