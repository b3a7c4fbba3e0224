//! `GET /api/circuit-breaker/stats` and `POST /api/circuit-breaker/{id}/reset`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use crate::error::GatewayError;
use crate::state::AppState;
use crate::views::{fleet, BreakerStats, WorkerBreaker};

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<BreakerStats> {
    Json(fleet::breakers(&state))
}

pub async fn reset(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<WorkerBreaker>, GatewayError> {
    let pool = state.pool.load();
    let (index, w) = pool
        .find(&id)
        .ok_or_else(|| GatewayError::NotFound(format!("worker {id}")))?;
    let from = w.breaker.reset();
    tracing::info!(worker = %w.id, from = from.as_str(), "circuit breaker reset by an operator");
    let settings = state.config.load().circuit_breaker.settings();
    Ok(Json(fleet::breaker(w, index, &settings)))
}
