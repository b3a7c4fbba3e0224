//! `GET /api/circuit-breaker/stats` and `POST /api/circuit-breaker/{id}/reset`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::types::{BreakerStats, WorkerBreaker};
use crate::error::GatewayError;
use crate::state::AppState;

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<BreakerStats> {
    let cfg = state.config.load();
    let c = &cfg.circuit_breaker;
    let settings = c.settings();
    let workers = state
        .pool
        .load()
        .workers
        .iter()
        .enumerate()
        .map(|(index, w)| WorkerBreaker {
            index,
            id: w.id.clone(),
            url: w.spec.url.clone(),
            breaker: w.breaker.view(&settings),
        })
        .collect();
    Json(BreakerStats {
        enabled: c.enabled,
        failure_threshold: c.failure_threshold,
        timeout_seconds: c.timeout_seconds,
        half_open_requests: c.half_open_requests,
        success_threshold: c.success_threshold,
        slow_call_threshold_ms: c.slow_call_threshold_ms,
        workers,
    })
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
    Ok(Json(WorkerBreaker {
        index,
        id: w.id.clone(),
        url: w.spec.url.clone(),
        breaker: w
            .breaker
            .view(&state.config.load().circuit_breaker.settings()),
    }))
}
