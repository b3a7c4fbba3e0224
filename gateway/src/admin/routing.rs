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
    let current = state.policy.load().name();
    let current_index = Strategy::from_name(current).map(Strategy::index);
    let per_worker: Vec<[u64; 7]> = pool.workers.iter().map(|w| w.selections()).collect();
    let current_total: u64 = current_index
        .map(|i| per_worker.iter().map(|s| s[i]).sum())
        .unwrap_or(0);
    let workers = pool
        .workers
        .iter()
        .zip(&per_worker)
        .enumerate()
        .map(|(index, (w, counts))| {
            let selected = current_index.map(|i| counts[i]).unwrap_or(0);
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
        strategy: current.to_string(),
        by_strategy,
        workers,
    }
}

pub async fn get(State(state): State<Arc<AppState>>) -> Json<RoutingStats> {
    Json(stats(&state))
}
