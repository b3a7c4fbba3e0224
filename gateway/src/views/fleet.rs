//! Building the views from the live state: one function per view, shared by the management
//! API (`admin`), the dashboard feed and the control plane.

use std::collections::BTreeMap;

use super::types::{
    BreakerStats, ConfigView, RoutingStats, StatusInfo, WorkerBreaker, WorkerInfo, WorkerSelections,
};
use crate::reload::patch;
use crate::routing::{Strategy, STRATEGIES};
use crate::state::AppState;
use crate::worker::breaker::BreakerSettings;
use crate::worker::Worker;

/// One worker at position `index` of the pool.
pub(crate) fn worker(w: &Worker, index: usize, breaker: &BreakerSettings) -> WorkerInfo {
    let meta = w.meta();
    WorkerInfo {
        index,
        id: w.id.clone(),
        url: w.spec.url.clone(),
        source: w.spec.source,
        weight: w.weight(),
        kind: meta.kind,
        version: meta.version.clone(),
        models: meta.models.clone(),
        state: w.health.lifecycle(),
        asleep: w.health.is_asleep(),
        consecutive_failures: w.health.consecutive_failures(),
        last_check_error: w.health.check_error(),
        load: w.load.view(),
        stats: w.stats.view(),
        breaker: w.breaker.view(breaker),
        served: w.served(),
    }
}

/// `GET /api/workers`: every worker of the pool, in pool order.
pub(crate) fn workers(state: &AppState) -> Vec<WorkerInfo> {
    let breaker = state.config.load().circuit_breaker.settings();
    state
        .pool
        .load()
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| worker(w, i, &breaker))
        .collect()
}

/// `GET /api/status`: the gateway at a glance (what `sagellm status` prints).
pub(crate) fn status(state: &AppState) -> StatusInfo {
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
        shared: super::types::SharedStatus {
            backend: state.shared.backend().as_str().to_string(),
            replica_id: state.shared.replica_id.clone(),
            replicas: state.shared.live_replicas(),
        },
        discovery: state
            .discovery
            .status(&state.config.load().discovery, state),
        workers: workers(state),
    }
}

/// `GET /api/routing/stats`: how often each strategy chose each worker.
pub(crate) fn routing(state: &AppState) -> RoutingStats {
    let pool = state.pool.load();
    let current = state.policy.load().strategy();
    let per_worker: Vec<[u64; STRATEGIES]> = pool.workers.iter().map(|w| w.selections()).collect();
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

/// One worker's breaker.
pub(crate) fn breaker(w: &Worker, index: usize, settings: &BreakerSettings) -> WorkerBreaker {
    WorkerBreaker {
        index,
        id: w.id.clone(),
        url: w.spec.url.clone(),
        breaker: w.breaker.view(settings),
    }
}

/// `GET /api/circuit-breaker/stats`: the settings and every worker's breaker.
pub(crate) fn breakers(state: &AppState) -> BreakerStats {
    let cfg = state.config.load();
    let c = &cfg.circuit_breaker;
    let settings = c.settings();
    let workers = state
        .pool
        .load()
        .workers
        .iter()
        .enumerate()
        .map(|(index, w)| breaker(w, index, &settings))
        .collect();
    BreakerStats {
        enabled: c.enabled,
        failure_threshold: c.failure_threshold,
        timeout_seconds: c.timeout_seconds,
        half_open_requests: c.half_open_requests,
        success_threshold: c.success_threshold,
        slow_call_threshold_ms: c.slow_call_threshold_ms,
        health_check_uneject: c.health_check_uneject,
        workers,
    }
}

/// `GET /api/config`: the live config with its secrets masked, and how reloads went.
pub(crate) fn config(state: &AppState) -> ConfigView {
    ConfigView {
        config: patch::redacted(&state.config.load()),
        reload: state.reload.lock().clone(),
    }
}
