//! Token-bucket rate limits (governor): a global bucket, one per user, one per worker.
//!
//! - global: `global_rps` per second with bursts of `global_burst`;
//! - per user: `per_user_rpm` per minute (burst = the whole minute's allowance); the user is the
//!   API key, else the body's `user` field, else the client IP — hashed, so keys and names
//!   are never stored;
//! - per worker: `per_worker_qps`; checked only for the worker routing picked, and a worker
//!   at its limit is skipped for another one, never failed.
//!
//! A rejected check consumes nothing, so the per-user bucket is checked before the global
//! one: a user over its own limit does not eat into everybody's budget. Idle keys are pruned
//! by [`RateLimits::prune`] (the housekeeping task), keeping memory bounded under many users.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Which bucket rejected a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    User,
    Global,
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<C> =
    RateLimiter<u64, DefaultKeyedStateStore<u64>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The buckets; generic over the clock so tests can drive time by hand.
pub struct RateLimits<C: Clock = DefaultClock> {
    enabled: bool,
    global: Option<Direct<C>>,
    per_user: Option<Keyed<C>>,
    per_worker: Option<Keyed<C>>,
    clock: C,
    /// Requests checked / rejected (the rate-limiter metrics).
    pub checked: AtomicU64,
    pub rejected: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

impl RateLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(cfg: &RateLimitConfig, clock: C) -> Self {
        let on = cfg.enabled;
        Self {
            enabled: on,
            global: nz(cfg.global_rps).filter(|_| on).map(|rps| {
                let quota = Quota::per_second(rps).allow_burst(nz(cfg.global_burst).unwrap_or(rps));
                RateLimiter::direct_with_clock(quota, clock.clone())
            }),
            per_user: nz(cfg.per_user_rpm)
                .filter(|_| on)
                .map(|rpm| RateLimiter::dashmap_with_clock(Quota::per_minute(rpm), clock.clone())),
            per_worker: nz(cfg.per_worker_qps)
                .filter(|_| on)
                .map(|qps| RateLimiter::dashmap_with_clock(Quota::per_second(qps), clock.clone())),
            clock,
            checked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Admit one request of `user` (a hash), or say which bucket refused and for how long.
    pub fn check(&self, user: u64) -> Result<(), (Scope, Duration)> {
        if !self.enabled {
            return Ok(());
        }
        self.checked.fetch_add(1, Relaxed);
        let result = (|| {
            if let Some(l) = &self.per_user {
                l.check_key(&user)
                    .map_err(|nu| (Scope::User, nu.wait_time_from(self.clock.now())))?;
            }
            if let Some(l) = &self.global {
                l.check()
                    .map_err(|nu| (Scope::Global, nu.wait_time_from(self.clock.now())))?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.rejected.fetch_add(1, Relaxed);
        }
        result
    }

    /// Whether the worker with this uid may take one more request now (consumes a cell).
    pub fn worker_admits(&self, uid: u64) -> bool {
        self.per_worker
            .as_ref()
            .is_none_or(|l| l.check_key(&uid).is_ok())
    }

    /// Drop the state of keys that are back to a full bucket.
    pub fn prune(&self) {
        if let Some(l) = &self.per_user {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_worker {
            l.retain_recent();
        }
    }

    /// Users with live bucket state.
    pub fn tracked_users(&self) -> usize {
        self.per_user.as_ref().map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn cfg(rps: u32, burst: u32, rpm: u32, qps: u32) -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            global_rps: rps,
            global_burst: burst,
            per_user_rpm: rpm,
            per_worker_qps: qps,
        }
    }

    #[test]
    fn per_user_minute_budget_and_retry_after() {
        let l = RateLimits::new(&cfg(0, 0, 60, 0));
        for i in 0..60 {
            assert!(l.check(1).is_ok(), "request {i}");
        }
        let (scope, wait) = l.check(1).unwrap_err();
        assert_eq!(scope, Scope::User);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check(2).is_ok(), "other users are unaffected");
        assert_eq!(l.rejected.load(Relaxed), 1);
    }

    #[test]
    fn global_burst_then_throttle() {
        let clock = FakeRelativeClock::default();
        let l = RateLimits::with_clock(&cfg(100, 200, 0, 0), clock.clone());
        let admitted = (0..300).filter(|i| l.check(*i).is_ok()).count();
        assert_eq!(admitted, 200, "the burst passes");
        let (scope, wait) = l.check(7).unwrap_err();
        assert_eq!((scope, wait), (Scope::Global, Duration::from_millis(10)));
        clock.advance(Duration::from_secs(1));
        let admitted = (0..300).filter(|i| l.check(*i).is_ok()).count();
        assert_eq!(admitted, 100, "then 100 per second");
    }

    #[test]
    fn user_rejections_do_not_consume_the_global_budget() {
        let l = RateLimits::new(&cfg(100, 3, 1, 0));
        assert!(l.check(1).is_ok());
        for _ in 0..10 {
            assert_eq!(l.check(1).unwrap_err().0, Scope::User);
        }
        assert!(
            l.check(2).is_ok() && l.check(3).is_ok(),
            "global cells left for others"
        );
    }

    #[test]
    fn worker_limit_and_disabled() {
        let l = RateLimits::new(&cfg(0, 0, 0, 2));
        assert!(l.worker_admits(9) && l.worker_admits(9));
        assert!(!l.worker_admits(9));
        assert!(l.worker_admits(10));
        let off = RateLimits::new(&RateLimitConfig {
            enabled: false,
            ..cfg(1, 1, 1, 1)
        });
        assert!((0..100).all(|i| off.check(i % 2).is_ok() && off.worker_admits(1)));
    }

    #[test]
    fn prune_forgets_idle_users() {
        let clock = FakeRelativeClock::default();
        let l = RateLimits::with_clock(&cfg(0, 0, 60, 0), clock.clone());
        for u in 0..1000 {
            l.check(u).unwrap();
        }
        l.prune();
        assert_eq!(l.tracked_users(), 1000, "users with spent cells are kept");
        clock.advance(Duration::from_secs(61));
        l.prune();
        assert_eq!(l.tracked_users(), 0, "a full bucket again is forgotten");
    }
}
