//! `GET /api/routing/stats`: how often each strategy chose each worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::types::{RoutingStats, WorkerSelections};
use crate::routing::Strategy;
use crate::state::AppState;

pub fn stats(state: &AppState) -> RoutingStats {
    let pool = state.pool.load();
    let current = state.policy.load().strategy();
    let per_worker: Vec<[u64; 7]> = pool.workers.iter().map(|w| w.selections()).collect();
    let current_total: u64 = per_worker.iter().map(|s| s[current.index()]).sum();
    let workers = pool
        .workers
        .iter()
        .zip(&per_worker)
        .enumerate()
        .map(|(index, (w, counts))| {
            let selected = counts[current.index()];
            WorkerSelections {
                index,
                id: w.id.clone(),
                url: w.spec.url.clone(),
                selected,
                share: if current_total == 0 {
                    0.0
                } else {
                    selected as f64 / current_total as f64
                },
                by_strategy: Strategy::ALL
                    .iter()
                    .zip(counts)
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, n)| (s.as_str().to_string(), *n))
                    .collect(),
            }
        })
        .collect();
    let by_strategy: BTreeMap<String, u64> = Strategy::ALL
        .iter()
        .zip(state.selections())
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    RoutingStats {
        strategy: current.as_str().to_string(),
        by_strategy,
        workers,
    }
}

pub async fn get(State(state): State<Arc<AppState>>) -> Json<RoutingStats> {
    Json(stats(&state))
}
