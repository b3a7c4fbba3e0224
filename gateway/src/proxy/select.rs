//! Choosing the worker for one attempt: eligibility from the pool, the choice from the
//! routing policy, and the in-flight token. Shared by the Pingora path and the gateway's own
//! forwarding path.

use std::sync::Arc;

use super::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::worker::load::LoadGuard;
use crate::worker::Worker;

/// Pick a worker for the next attempt of `ctx`, take its in-flight token and record it.
pub fn pick(state: &AppState, ctx: &mut RequestCtx) -> Result<Arc<Worker>, GatewayError> {
    let pool = state.pool.load();
    let model = ctx.info.model.as_deref();
    let candidates = pool.eligible(model, &ctx.tried);
    if candidates.is_empty() {
        return Err(no_worker(&pool, model, ctx));
    }
    let policy = state.policy.load();
    let chosen = policy.select(&pool, &candidates, &ctx.hints);
    let worker = pool.workers[chosen].clone();
    tracing::debug!(
        policy = policy.name(),
        model = model.unwrap_or("-"),
        candidates = candidates.len(),
        chosen = %worker.id,
        attempt = ctx.tried.len() + 1,
        "routed"
    );
    ctx.tried.push(worker.uid);
    ctx.guard = Some(LoadGuard::new(worker.clone()));
    ctx.worker = Some(worker.clone());
    ctx.dispatched_at = Some(std::time::Instant::now());
    Ok(worker)
}

fn no_worker(
    pool: &crate::worker::pool::Pool,
    model: Option<&str>,
    ctx: &RequestCtx,
) -> GatewayError {
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
