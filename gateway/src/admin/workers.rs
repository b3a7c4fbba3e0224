//! `/api/workers`: list, add, remove, drain, undrain. `{id}` is the list index
//! (`/api/workers/0/drain`) or the worker id (`host:port`).
//!
//! Workers added or removed here change the live pool, not the configured list: an edit of the
//! config file's worker list replaces the pool again.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::edge::reply::parse_json;
use crate::worker::spec::WorkerSpec;
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::state::AppState;
use crate::views::{fleet, WorkerInfo};

/// `POST /api/workers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorker {
    pub url: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Empty = discover from the worker's `GET /v1/models`.
    #[serde(default)]
    pub models: Vec<String>,
}

fn one() -> u32 {
    1
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<WorkerInfo>> {
    Json(fleet::workers(&state))
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
    let breaker = state.config.load().circuit_breaker.settings();
    Ok(Json(fleet::worker(worker, index, &breaker)))
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

pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<WorkerInfo>), GatewayError> {
    let req: NewWorker = parse_json(&body)?;
    if !crate::worker::spec::WEIGHTS.contains(&req.weight) {
        return Err(GatewayError::invalid(
            "weight: must be 1..=1000",
            Some("weight"),
        ));
    }
    // Resolving the host name blocks: off the async workers.
    let spec =
        tokio::task::spawn_blocking(move || WorkerSpec::new(&req.url, req.weight, req.models))
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .map_err(|e| GatewayError::invalid(format!("url: {e}"), Some("url")))?;
    let spec = WorkerSpec {
        source: crate::worker::WorkerSource::Api,
        ..spec
    };
    let worker = state.pool.add(spec).map_err(GatewayError::Conflict)?;
    tracing::info!(worker = %worker.id, "worker added through the API");
    let pool = state.pool.load();
    let index = pool
        .workers
        .iter()
        .position(|w| w.uid == worker.uid)
        .unwrap_or(0);
    let breaker = state.config.load().circuit_breaker.settings();
    Ok((
        StatusCode::CREATED,
        Json(fleet::worker(&worker, index, &breaker)),
    ))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<WorkerInfo>, GatewayError> {
    let (index, uid) = {
        let pool = state.pool.load();
        let (index, w) = pool
            .find(&id)
            .ok_or_else(|| GatewayError::NotFound(format!("worker {id}")))?;
        (index, w.uid)
    };
    let worker = state
        .pool
        .remove(uid)
        .ok_or_else(|| GatewayError::NotFound(format!("worker {id}")))?;
    tracing::info!(worker = %worker.id, "worker removed through the API");
    state.publish_routable();
    let breaker = state.config.load().circuit_breaker.settings();
    Ok(Json(fleet::worker(&worker, index, &breaker)))
}
