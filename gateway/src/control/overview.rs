//! `GET /v1/management/backends` and `GET /v1/management/status`: the fleet as the control
//! plane sees it.

use super::process;
use super::types::{Backend, ControlStatus, EngineCounts};
use crate::state::AppState;

/// Every worker in the routing pool with its models; `routable` says whether it takes new
/// requests now, `engine_id` whether this gateway launched it.
pub fn backends(state: &AppState) -> Vec<Backend> {
    state
        .pool
        .load()
        .workers
        .iter()
        .map(|w| {
            let meta = w.meta();
            Backend {
                id: w.id.clone(),
                url: w.spec.url.clone(),
                kind: meta.kind,
                state: w.health.lifecycle(),
                routable: w.health.is_routable(),
                models: meta.models.clone(),
                engine_id: state.engines.engine_of(w.uid),
                inflight: w.load.inflight(),
            }
        })
        .collect()
}

pub fn status(state: &AppState) -> ControlStatus {
    let mut engines = EngineCounts::default();
    for e in state.engines.list() {
        engines.count(e.state);
    }
    let pool = state.pool.load();
    ControlStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        engines,
        workers_total: pool.workers.len(),
        workers_healthy: pool.routable_count(),
        models: pool.models().into_iter().map(|(m, _)| m).collect(),
        engine_binary: process::find_engine_binary(&state.config.load().control.engine_binary).ok(),
    }
}
