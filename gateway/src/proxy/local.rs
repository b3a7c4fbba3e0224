//! Endpoints the gateway answers itself: `GET /health` and the fleet's model list.

use serde_json::{json, Value};

use crate::state::AppState;

/// `GET /health`: 200 when at least one worker can take requests, else 503.
pub fn health(state: &AppState) -> (u16, Value) {
    let pool = state.pool.load();
    let workers: Vec<Value> = pool
        .workers
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "url": w.spec.url,
                "state": w.health.lifecycle(),
                "models": w.meta().models,
            })
        })
        .collect();
    let ready = pool.routable_count();
    let draining = state.is_draining();
    let status = match (draining, ready > 0) {
        (true, _) => "draining",
        (false, true) => "ok",
        (false, false) => "unavailable",
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "ready_workers": ready,
        "total_workers": pool.workers.len(),
        "workers": workers,
    });
    (if ready > 0 && !draining { 200 } else { 503 }, body)
}

fn created(state: &AppState) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.saturating_sub(state.started.elapsed().as_secs())
}

fn model_entry(id: &str, owner: &str, created: u64) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": owner })
}

/// `GET /v1/models`: every model of the fleet once, in OpenAI's list shape.
pub fn models(state: &AppState) -> Value {
    let created = created(state);
    let data: Vec<Value> = state
        .pool
        .load()
        .models()
        .iter()
        .map(|(id, owner)| model_entry(id, owner, created))
        .collect();
    json!({ "object": "list", "data": data })
}

/// `GET /v1/models/{id}`: one model, or `None` when no worker serves it.
pub fn model(state: &AppState, id: &str) -> Option<Value> {
    let created = created(state);
    state
        .pool
        .load()
        .models()
        .iter()
        .find(|(m, _)| m == id)
        .map(|(m, owner)| model_entry(m, owner, created))
}
