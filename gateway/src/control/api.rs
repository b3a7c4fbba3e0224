//! The control-plane routes, merged into the admin router (so writes need the admin key):
//!
//! | route | reply |
//! |---|---|
//! | `GET /v1/management/engines` | every launched engine ([`EngineInfo`]) |
//! | `POST /v1/management/engines/start` | `{model, port?, max_seqs?, threads?, served_model_name?}` → 202, STARTING |
//! | `GET /v1/management/engines/{id}` | one engine |
//! | `POST /v1/management/engines/{id}/stop` | 202, DRAINING (then STOPPED) |
//! | `POST /v1/management/engines/{id}/restart` | a STOPPED or ERROR engine → 202, STARTING |
//! | `GET /v1/management/backends` | every worker with its models |
//! | `GET /v1/management/status` | engines by state, workers, models |
//! | `GET /v1/management/gpu` | per-GPU memory and utilisation (`nvidia-smi`) |
//!
//! `{id}` is the engine id (`engine-1`) or its worker id (`127.0.0.1:PORT`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::types::{Backend, ControlStatus, EngineInfo, GpuReport, StartEngine};
use crate::edge::reply::parse_json;
use crate::error::GatewayError;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/management/engines", get(list))
        .route("/v1/management/engines/start", post(start))
        .route("/v1/management/engines/{id}", get(show))
        .route("/v1/management/engines/{id}/stop", post(stop))
        .route("/v1/management/engines/{id}/restart", post(restart))
        .route("/v1/management/backends", get(backends))
        .route("/v1/management/status", get(status))
        .route("/v1/management/gpu", get(gpu))
}

type Accepted = (StatusCode, Json<EngineInfo>);

async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<EngineInfo>> {
    Json(state.engines.list())
}

async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EngineInfo>, GatewayError> {
    Ok(Json(state.engines.find(&id)?.info()))
}

async fn start(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Accepted, GatewayError> {
    let req: StartEngine = parse_json(&body)?;
    let info = state.engines.start(&state, req).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

async fn stop(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Accepted, GatewayError> {
    let info = state.engines.stop(&state, &id)?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

async fn restart(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Accepted, GatewayError> {
    let info = state.engines.restart(&state, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

async fn backends(State(state): State<Arc<AppState>>) -> Json<Vec<Backend>> {
    Json(super::overview::backends(&state))
}

async fn status(State(state): State<Arc<AppState>>) -> Json<ControlStatus> {
    Json(super::overview::status(&state))
}

async fn gpu() -> Json<GpuReport> {
    Json(super::gpu::query(Duration::from_secs(5)).await)
}
