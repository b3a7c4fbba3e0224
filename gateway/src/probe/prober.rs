//! The prober: one task per worker that runs the health check (with model and kind
//! discovery) every `health.check_interval_ms` and the `/metrics` scrape every
//! `health.scrape_interval_ms`. Tasks follow pool membership changes and stop with the
//! gateway. Intervals are re-read from the live config on every round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{discovery, prom};
use crate::http_client;
use crate::state::AppState;
use crate::worker::state::HealthThresholds;
use crate::worker::{Worker, WorkerKind};

pub struct Prober {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.state.pool.subscribe();
        let mut tasks: HashMap<u64, JoinHandle<()>> = HashMap::new();
        loop {
            let pool = self.state.pool.load_full();
            tasks.retain(|uid, task| {
                let keep = pool.workers.iter().any(|w| w.uid == *uid);
                if !keep {
                    task.abort();
                }
                keep
            });
            for w in &pool.workers {
                tasks
                    .entry(w.uid)
                    .or_insert_with(|| tokio::spawn(worker_loop(self.state.clone(), w.clone())));
            }
            self.state.publish_routable();
            tokio::select! {
                _ = shutdown.changed() => break,
                r = changes.changed() => if r.is_err() { break },
            }
        }
        tasks.values().for_each(JoinHandle::abort);
    }
}

async fn worker_loop(state: Arc<AppState>, worker: Arc<Worker>) {
    let mut next_check = Instant::now();
    let mut next_scrape = Instant::now();
    loop {
        let now = Instant::now();
        let h = state.config.load().health.clone();
        if now >= next_check {
            check(&state, &worker).await;
            next_check = Instant::now() + Duration::from_millis(h.check_interval_ms);
        }
        if now >= next_scrape {
            if worker.health.lifecycle() != crate::worker::state::Lifecycle::Starting {
                scrape(&state, &worker).await;
            }
            next_scrape = Instant::now() + Duration::from_millis(h.scrape_interval_ms);
        }
        tokio::time::sleep_until(next_check.min(next_scrape)).await;
    }
}

/// One health check: `GET /health` (falling back to `/v1/models` for servers without it),
/// then model discovery. Passing means: alive and serving at least one model.
async fn check(state: &AppState, worker: &Worker) {
    let cfg = state.config.load();
    let timeout = Duration::from_millis(cfg.health.check_timeout_ms);
    let alive = match http_client::get(&state.client, &worker.spec, "/health", timeout).await {
        Ok((s, _)) if (200..300).contains(&s) => Ok(()),
        Ok((404, _)) => Ok(()), // no /health: discovery below decides
        Ok((s, _)) => Err(format!("/health answered {s}")),
        Err(e) => Err(e),
    };
    let result = match alive {
        Ok(()) => discover(state, worker, timeout).await,
        Err(e) => Err(e),
    };
    let thresholds = HealthThresholds {
        failures: cfg.health.failure_threshold,
        recoveries: cfg.health.recovery_threshold,
    };
    if let Err(e) = &result {
        tracing::debug!(worker = %worker.id, error = %e, "health check failed");
    }
    // Seen down by the previous check: a pass now means the worker came back.
    let was_down = worker.health.check_error().is_some();
    worker
        .health
        .set_check_error(result.as_ref().err().map(String::as_str));
    if let Some((from, to)) = worker.health.record(result.is_ok(), thresholds) {
        match &result {
            Ok(()) => {
                tracing::info!(worker = %worker.id, from = from.as_str(), to = to.as_str(), "worker state changed")
            }
            Err(e) => {
                tracing::warn!(worker = %worker.id, from = from.as_str(), to = to.as_str(), error = %e, "worker state changed")
            }
        }
    }
    // Only a worker the checks saw down and now see back is let in early: a slow or failing
    // worker whose checks pass all along keeps its breaker's timeout.
    if result.is_ok() && was_down {
        let breaker = cfg.circuit_breaker.settings();
        if let Some(to) = worker.breaker.health_check_passed(&breaker) {
            tracing::info!(worker = %worker.id, state = to.as_str(), "circuit breaker changed: health check passed");
        }
    }
    state.publish_routable();
}

async fn discover(state: &AppState, worker: &Worker, timeout: Duration) -> Result<(), String> {
    let (status, body) =
        http_client::get(&state.client, &worker.spec, "/v1/models", timeout).await?;
    if status != 200 {
        return Err(format!("/v1/models answered {status}"));
    }
    let mut meta = discovery::parse_models(&body)?;
    let old = worker.meta();
    meta.version = old.version.clone();
    if meta.kind == WorkerKind::Vllm && meta.version.is_none() {
        if let Ok((200, body)) =
            http_client::get(&state.client, &worker.spec, "/version", timeout).await
        {
            meta.version = discovery::parse_version(&body);
        }
    }
    if **old != meta {
        worker.set_meta(meta);
    }
    if worker.meta().models.is_empty() {
        return Err("the worker serves no model".into());
    }
    Ok(())
}

async fn scrape(state: &AppState, worker: &Worker) {
    let timeout = Duration::from_millis(state.config.load().health.check_timeout_ms);
    let mark = worker.load.mark();
    match http_client::get(&state.client, &worker.spec, "/metrics", timeout).await {
        Ok((200, body)) => {
            let g = prom::parse(&String::from_utf8_lossy(&body));
            if g.has_load() {
                worker.load.record_scrape(
                    mark,
                    g.running.unwrap_or(0.0),
                    g.waiting.unwrap_or(0.0),
                    g.kv_cache.unwrap_or(0.0),
                );
            } else {
                worker.load.clear_scrape();
            }
            worker
                .load
                .record_prefix_cache(g.prefix_hits, g.prefix_queries);
            let asleep = g.asleep.unwrap_or(false);
            if asleep != worker.health.is_asleep() {
                tracing::info!(worker = %worker.id, asleep, "worker sleep state changed");
                worker.health.set_asleep(asleep);
                state.publish_routable();
            }
        }
        Ok(_) => worker.load.clear_scrape(),
        Err(e) => tracing::debug!(worker = %worker.id, error = %e, "metrics scrape failed"),
    }
}
