//! `GET /api/config` (the live config, keys masked, and the reload status) and
//! `PUT /api/config` (a partial update through the same validation as the file).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

use crate::edge::reply::parse_json;
use crate::error::GatewayError;
use crate::reload::{self, patch};
use crate::state::AppState;
use crate::views::{fleet, ConfigView};

pub async fn get(State(state): State<Arc<AppState>>) -> Json<ConfigView> {
    Json(fleet::config(&state))
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<ConfigView>, GatewayError> {
    let patch_value: serde_json::Value = parse_json(&body)?;
    let current = state.config.load_full();
    let new = match patch::patched(&current, &patch_value) {
        Ok(c) => c,
        Err(e) => {
            reload::record_error(&state, "api", &e);
            return Err(e.into());
        }
    };
    // Host names of new workers are resolved while applying: keep that off the async workers.
    let s = state.clone();
    tokio::task::spawn_blocking(move || reload::apply(&s, new, "api"))
        .await
        .map_err(|e| GatewayError::Internal(format!("applying the configuration: {e}")))??;
    Ok(Json(fleet::config(&state)))
}
