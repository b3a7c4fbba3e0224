//! `/api/workers`: list, drain, undrain. `{id}` is the list index (`/api/workers/0/drain`) or
//! the worker id (`host:port`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use crate::error::GatewayError;
use crate::state::AppState;
use crate::worker::WorkerInfo;

fn infos(state: &AppState) -> Vec<WorkerInfo> {
    let breaker = state.config.load().circuit_breaker.settings();
    state
        .pool
        .load()
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| w.info(i, &breaker))
        .collect()
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<WorkerInfo>> {
    Json(infos(&state))
}

fn set_draining(
    state: &AppState,
    id: &str,
    draining: bool,
) -> Result<Json<WorkerInfo>, GatewayError> {
    let pool = state.pool.load();
    let (index, worker) = pool
        .find(id)
        .ok_or_else(|| GatewayError::NotFound(format!("worker {id}")))?;
    worker.health.set_draining(draining);
    tracing::info!(worker = %worker.id, draining, "worker drain state changed");
    state.publish_routable();
    Ok(Json(worker.info(
        index,
        &state.config.load().circuit_breaker.settings(),
    )))
}

pub async fn drain(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<WorkerInfo>, GatewayError> {
    set_draining(&state, &id, true)
}

pub async fn undrain(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<WorkerInfo>, GatewayError> {
    set_draining(&state, &id, false)
}
