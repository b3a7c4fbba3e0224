//! When and how a failed attempt is retried: only while nothing reached the client and the
//! whole body can be sent again, on another worker, within `retry.max_attempts` and
//! `retry.total_timeout_ms`, after an exponential backoff with jitter.

use std::time::Duration;

use pingora::proxy::Session;

use super::ctx::{BodyMode, RequestCtx};
use crate::config::RetryConfig;
use crate::error::GatewayError;
use crate::worker::cooldown::parse_retry_after;
use crate::worker::Worker;

/// Worker statuses that are retried on another worker (before any byte reached the client).
pub const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// A worker's overload signal: `429` or `503` with a `Retry-After`. The worker is skipped by
/// routing for that long, at most `max_retry_after_ms` (see `worker::cooldown`). Returns
/// whether it now cools down — then the answer is overload, not a failure that counts against
/// its breaker.
pub fn observe_overload(
    cfg: &RetryConfig,
    worker: &Worker,
    status: u16,
    retry_after: Option<&http::HeaderValue>,
) -> bool {
    if !matches!(status, 429 | 503) || cfg.max_retry_after_ms == 0 {
        return false;
    }
    let Some(v) = retry_after.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(d) = parse_retry_after(v, std::time::SystemTime::now()) else {
        return false;
    };
    let d = d.min(Duration::from_millis(cfg.max_retry_after_ms));
    if d.is_zero() {
        return false;
    }
    worker.cooldown.start(d);
    tracing::info!(worker = %worker.id, status, seconds = d.as_secs_f64(), "worker asked for a pause (Retry-After); skipped until then");
    true
}

/// Whether the budget allows another attempt (attempts and total time).
pub fn budget_left(cfg: &RetryConfig, ctx: &RequestCtx) -> bool {
    ctx.attempts() < cfg.max_attempts
        && ctx.start.elapsed() < Duration::from_millis(cfg.total_timeout_ms)
}

/// Whether a failed attempt on the Pingora path may be retried.
pub fn may_retry(cfg: &RetryConfig, session: &Session, ctx: &RequestCtx) -> bool {
    session.response_written().is_none()
        && matches!(ctx.body, BodyMode::Replayable | BodyMode::Empty)
        && !session.as_downstream().retry_buffer_truncated()
        && budget_left(cfg, ctx)
}

/// The wait before attempt number `attempt` (2 = the first retry): `initial × 2^(attempt-2)`
/// capped at `max`, then "equal jitter" (a uniform draw from half to all of it) so retries of
/// many requests do not arrive in lockstep.
pub fn backoff(cfg: &RetryConfig, attempt: u32, unit_random: f64) -> Duration {
    let exp = attempt.saturating_sub(2).min(20);
    let base = cfg
        .initial_backoff_ms
        .saturating_mul(1 << exp)
        .min(cfg.max_backoff_ms) as f64;
    Duration::from_secs_f64(base * (0.5 + 0.5 * unit_random.clamp(0.0, 1.0)) / 1000.0)
}

/// The error of a request whose retry time budget ran out before its next attempt.
pub fn budget_spent(ctx: &RequestCtx) -> GatewayError {
    GatewayError::UpstreamFailed(format!(
        "{} attempt(s) failed and the retry time budget is spent",
        ctx.attempts()
    ))
}

/// Sleep before the next attempt; `false` when the total-time budget would be exceeded.
pub async fn wait_before(cfg: &RetryConfig, ctx: &RequestCtx) -> bool {
    let attempt = ctx.attempts() + 1;
    if attempt < 2 {
        return true;
    }
    let delay = backoff(cfg, attempt, fastrand::f64());
    if ctx.start.elapsed() + delay > Duration::from_millis(cfg.total_timeout_ms) {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cfg = RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        assert_eq!(backoff(&cfg, 2, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&cfg, 3, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 4, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&cfg, 9, 1.0), Duration::from_millis(1000), "capped");
        assert_eq!(
            backoff(&cfg, 3, 0.0),
            Duration::from_millis(100),
            "jitter keeps at least half"
        );
        assert_eq!(backoff(&cfg, 1, 1.0), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_on_paused_time_and_respects_the_budget() {
        let cfg = RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            total_timeout_ms: 250,
            max_attempts: 5,
            ..RetryConfig::default()
        };
        let mut ctx = RequestCtx::default();
        assert!(
            wait_before(&cfg, &ctx).await,
            "no wait before the first attempt"
        );
        ctx.tried.push(1);
        let t = tokio::time::Instant::now();
        assert!(wait_before(&cfg, &ctx).await);
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited <= Duration::from_millis(100),
            "{waited:?}"
        );
        // Out of time: no wait, no retry.
        ctx.start = std::time::Instant::now() - Duration::from_millis(240);
        assert!(
            !wait_before(&cfg, &ctx).await,
            "a 50-100 ms backoff does not fit the 10 ms left"
        );
        ctx.start = std::time::Instant::now() - Duration::from_millis(300);
        assert!(!budget_left(&cfg, &ctx));
    }
}
