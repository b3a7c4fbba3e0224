//! `GET /api/status`: the gateway at a glance (what `sagellm status` prints).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::types::StatusInfo;
use super::workers::infos;
use crate::state::AppState;

pub fn status(state: &AppState) -> StatusInfo {
    let pool = state.pool.load();
    let (requests_total, errors_total) = state.metrics.requests.llm_totals();
    StatusInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        routing_strategy: state.policy.load().name().to_string(),
        workers_total: pool.workers.len(),
        workers_healthy: pool.routable_count(),
        active_requests: state.active_requests(),
        requests_total,
        errors_total,
        shutting_down: state.is_draining(),
        config_error: state
            .reload
            .lock()
            .last_error
            .as_ref()
            .map(|e| format!("{}: {}", e.field, e.message)),
        queue: state.scheduler.status(&state.config.load().scheduler),
        workers: infos(state),
    }
}

pub async fn get(State(state): State<Arc<AppState>>) -> Json<StatusInfo> {
    Json(status(&state))
}
