//! Choosing the worker for one attempt: eligibility from the pool (routable, breaker admits,
//! serves the model, not tried yet), the choice from the routing policy, then the two checks
//! that consume something — the worker's rate-limit cell and, for a half-open breaker, a trial
//! slot. A worker that fails either is passed over for another pick; a worker at its rate
//! limit is used anyway when no other worker is left (the per-worker limit is soft).
//! Shared by the Pingora path and the gateway's own forwarding path.

use std::sync::Arc;

use super::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::sched::Ask;
use crate::state::AppState;
use crate::worker::load::LoadGuard;
use crate::worker::pool::Pool;
use crate::worker::Worker;

/// [`pick`], after waiting in the gateway's queue when every worker is at its cap.
pub async fn pick_queued(
    state: &AppState,
    ctx: &mut RequestCtx,
) -> Result<Arc<Worker>, GatewayError> {
    let ask = Ask {
        model: ctx.info.model.as_deref(),
        priority: ctx.priority,
        slo_ms: ctx.slo_ms,
        arrived: ctx.start,
    };
    let grant = state.scheduler.admit(state, ask).await?;
    let picked = pick(state, ctx);
    drop(grant); // the worker's in-flight token now holds the slot
    picked
}

/// Pick a worker for the next attempt of `ctx`, take its in-flight token and record it.
pub fn pick(state: &AppState, ctx: &mut RequestCtx) -> Result<Arc<Worker>, GatewayError> {
    let pool = state.pool.load();
    let cfg = state.config.load();
    let breaker = cfg.circuit_breaker.settings();
    let limits = state.limits.load();
    let policy = state.policy.load();
    let model = ctx.info.model.as_deref();
    let mut excluded = ctx.tried.clone();
    let mut over_limit: Option<Arc<Worker>> = None;
    let cap = cfg.scheduler.max_inflight_per_worker;
    loop {
        let mut candidates = pool.eligible(model, &excluded, &breaker);
        // Workers at the concurrency cap are passed over while others have room (the queue in
        // front of this admits only as many requests as there are free slots).
        if cap > 0
            && candidates
                .iter()
                .any(|&i| pool.workers[i].load.inflight() < cap)
        {
            candidates.retain(|&i| pool.workers[i].load.inflight() < cap);
        }
        let worker = if candidates.is_empty() {
            // Everyone left is at its rate limit: the limit is soft, take the last one.
            match over_limit.take() {
                Some(w) => w,
                None => return Err(no_worker(&pool, model, ctx)),
            }
        } else {
            let preferred = ctx.hints.prefer.and_then(|uid| {
                candidates
                    .iter()
                    .copied()
                    .find(|&i| pool.workers[i].uid == uid)
            });
            let index = preferred.unwrap_or_else(|| policy.select(&pool, &candidates, &ctx.hints));
            let chosen = pool.workers[index].clone();
            if !limits.worker_admits(chosen.uid) {
                excluded.push(chosen.uid);
                over_limit = Some(chosen);
                continue;
            }
            chosen
        };
        let Some(admission) = worker.breaker.try_acquire(&breaker) else {
            excluded.push(worker.uid); // lost a half-open trial slot to a concurrent request
            continue;
        };
        worker.count_selection(policy.strategy());
        state.count_selection(policy.strategy());
        if tracing::enabled!(tracing::Level::DEBUG) {
            log_decision(&pool, &candidates, &worker, policy.name(), model, ctx);
        }
        ctx.tried.push(worker.uid);
        ctx.admission = Some(admission);
        ctx.guard = Some(LoadGuard::new(worker.clone()));
        ctx.worker = Some(worker.clone());
        ctx.dispatched_at = Some(std::time::Instant::now());
        return Ok(worker);
    }
}

/// The routing decision at debug level: every candidate with its load, and the choice.
fn log_decision(
    pool: &Pool,
    candidates: &[usize],
    chosen: &Worker,
    policy: &str,
    model: Option<&str>,
    ctx: &RequestCtx,
) {
    let loads: Vec<String> = candidates
        .iter()
        .map(|&i| {
            let w = &pool.workers[i];
            let l = w.load.view();
            format!(
                "{}(inflight={} running={:.1} waiting={:.1} kv={:.2})",
                w.id, l.inflight, l.running, l.waiting, l.kv_cache
            )
        })
        .collect();
    tracing::debug!(
        policy,
        model = model.unwrap_or("-"),
        candidates = %loads.join(" "),
        chosen = %chosen.id,
        attempt = ctx.tried.len() + 1,
        "routed"
    );
}

fn no_worker(pool: &Pool, model: Option<&str>, ctx: &RequestCtx) -> GatewayError {
    match model {
        Some(m) if !pool.serves(m) => GatewayError::ModelNotFound(m.to_string()),
        _ if !ctx.tried.is_empty() => GatewayError::UpstreamFailed(format!(
            "all {} attempted worker(s) failed and no other worker is available",
            ctx.tried.len()
        )),
        Some(m) => {
            GatewayError::NoWorker(format!("no worker serving `{m}` is available right now"))
        }
        None => GatewayError::NoWorker("no worker is available right now".into()),
    }
}
