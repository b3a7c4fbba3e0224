//! Choosing the worker for one attempt: eligibility from the pool (routable, breaker admits,
//! serves the model, not tried yet), the choice from the routing policy, then the two checks
//! that consume something — the worker's rate-limit cell and, for a half-open breaker, a trial
//! slot. A worker that fails either is passed over for another pick; a worker at its rate
//! limit is used anyway when no other worker is left (the per-worker limit is soft).
//!
//! [`pick`] reads only the snapshots it is handed ([`Choice`]), so it is tested on its own;
//! [`dispatch`] is the glue for a request: the gateway's queue first, then `pick`, then the
//! attempt recorded in the request's context. Shared by the Pingora path and the gateway's own
//! forwarding path.

use std::sync::Arc;

use super::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::limits::RateLimits;
use crate::routing::{Policy, RouteHints};
use crate::sched::Ask;
use crate::state::AppState;
use crate::worker::breaker::{Admission, BreakerSettings};
use crate::worker::load::LoadGuard;
use crate::worker::pool::Pool;
use crate::worker::Worker;

/// The snapshots one pick reads.
pub(crate) struct Choice<'a> {
    pub pool: &'a Pool,
    pub policy: &'a dyn Policy,
    pub limits: &'a RateLimits,
    pub breaker: &'a BreakerSettings,
    /// `scheduler.max_inflight_per_worker` (0 = no cap).
    pub cap: u32,
}

/// What one attempt of a request asks for.
pub(crate) struct Want<'a> {
    pub model: Option<&'a str>,
    /// Workers (uids) earlier attempts of this request went to: never picked again.
    pub tried: &'a [u64],
    pub hints: &'a RouteHints,
}

/// The worker of an attempt and how its breaker admitted it.
#[derive(Debug)]
pub(crate) struct Picked {
    pub worker: Arc<Worker>,
    pub admission: Admission,
    /// Eligible workers the choice was made among.
    pub candidates: usize,
    /// Why this one (see `trace::Decision::reason`).
    pub reason: &'static str,
}

/// Wait in the gateway's queue when every worker is at its cap, then [`pick`] a worker for
/// the next attempt of `ctx`, take its in-flight token and record the attempt in `ctx`.
pub(crate) async fn dispatch(
    state: &AppState,
    ctx: &mut RequestCtx,
) -> Result<Arc<Worker>, GatewayError> {
    let ask = Ask {
        model: ctx.info.model.as_deref(),
        priority: ctx.priority,
        slo_ms: ctx.slo_ms,
        arrived: tokio::time::Instant::from_std(ctx.start),
    };
    let admitted = state.scheduler.admit(state.fleet(), ask).await?;
    if let Some(waited) = admitted.waited {
        state.metrics.queue.waited(waited);
    }
    let pool = state.pool.load();
    let policy = state.policy.load();
    let limits = state.limits.load();
    let breaker = ctx.config.circuit_breaker.settings();
    let choice = Choice {
        pool: &pool,
        policy: policy.as_ref().as_ref(),
        limits: &limits,
        breaker: &breaker,
        cap: ctx.config.scheduler.max_inflight_per_worker,
    };
    let excluded: Vec<u64>;
    let tried: &[u64] = if ctx.avoid.is_empty() {
        &ctx.tried
    } else {
        excluded = ctx.tried.iter().chain(&ctx.avoid).copied().collect();
        &excluded
    };
    let want = Want {
        model: ctx.info.model.as_deref(),
        tried,
        hints: &ctx.hints,
    };
    let picked = pick(&choice, &want);
    drop(admitted); // the worker's in-flight token (taken below) now holds the slot
    let Picked {
        worker,
        admission,
        candidates,
        reason,
    } = picked?;
    state.count_selection(policy.strategy());
    ctx.tried.push(worker.uid);
    let decision = super::trace::Decision {
        worker: &worker,
        strategy: policy.name(),
        candidates,
        reason,
    };
    super::trace::on_dispatch(ctx, &decision);
    ctx.admission = Some(admission);
    ctx.overloaded = false;
    let work = ctx
        .hints
        .prompt
        .as_ref()
        .map_or(0, |p| u64::from(p.tokens) + u64::from(p.decode_tokens));
    ctx.guard = Some(LoadGuard::with_work(worker.clone(), work));
    ctx.worker = Some(worker.clone());
    ctx.dispatched_at = Some(std::time::Instant::now());
    ctx.prefill_tokens = ctx.hints.uncached.take();
    Ok(worker)
}

/// Pick a worker for one attempt from the snapshots in `c`.
pub(crate) fn pick(c: &Choice<'_>, want: &Want<'_>) -> Result<Picked, GatewayError> {
    let pool = c.pool;
    let mut excluded = want.tried.to_vec();
    let mut over_limit: Option<Arc<Worker>> = None;
    let cap = c.cap;
    loop {
        let mut candidates = pool.eligible(want.model, &excluded, c.breaker);
        // Workers at the concurrency cap are passed over while others have room (the queue in
        // front of this admits only as many requests as there are free slots).
        if cap > 0
            && candidates
                .iter()
                .any(|&i| pool.workers[i].load.inflight() < cap)
        {
            candidates.retain(|&i| pool.workers[i].load.inflight() < cap);
        }
        let mut reason = "policy";
        let worker = if candidates.is_empty() {
            // Everyone left is at its rate limit: the limit is soft, take the last one.
            reason = "soft_limit";
            match over_limit.take() {
                Some(w) => w,
                None => return Err(no_worker(pool, want)),
            }
        } else {
            let preferred = want.hints.prefer.and_then(|uid| {
                candidates
                    .iter()
                    .copied()
                    .find(|&i| pool.workers[i].uid == uid)
            });
            want.hints.uncached.take(); // only this decision's note counts
            if preferred.is_some() {
                reason = "pinned";
            }
            let index = preferred.unwrap_or_else(|| c.policy.select(pool, &candidates, want.hints));
            let chosen = pool.workers[index].clone();
            if !c.limits.worker_admits(chosen.uid) {
                excluded.push(chosen.uid);
                over_limit = Some(chosen);
                continue;
            }
            chosen
        };
        let Some(admission) = worker.breaker.try_acquire(c.breaker) else {
            excluded.push(worker.uid); // lost a half-open trial slot to a concurrent request
            continue;
        };
        worker.count_selection(c.policy.strategy());
        if tracing::enabled!(tracing::Level::DEBUG) {
            log_decision(pool, &candidates, &worker, c.policy.name(), want);
        }
        return Ok(Picked {
            worker,
            admission,
            candidates: candidates.len().max(1),
            reason,
        });
    }
}

/// The routing decision at debug level: every candidate with its load, and the choice.
fn log_decision(pool: &Pool, candidates: &[usize], chosen: &Worker, policy: &str, want: &Want) {
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
        model = want.model.unwrap_or("-"),
        candidates = %loads.join(" "),
        chosen = %chosen.id,
        attempt = want.tried.len() + 1,
        "routed"
    );
}

fn no_worker(pool: &Pool, want: &Want) -> GatewayError {
    match want.model {
        Some(m) if !pool.serves(m) => GatewayError::ModelNotFound(m.to_string()),
        _ if !want.tried.is_empty() => GatewayError::UpstreamFailed(format!(
            "all {} attempted worker(s) failed and no other worker is available",
            want.tried.len()
        )),
        Some(m) => {
            GatewayError::NoWorker(format!("no worker serving `{m}` is available right now"))
        }
        None => GatewayError::NoWorker("no worker is available right now".into()),
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
