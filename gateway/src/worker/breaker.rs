//! The circuit breaker of one worker (Hystrix style).
//!
//! ```text
//! CLOSED ──failure_threshold consecutive failures──► OPEN
//! OPEN ──timeout elapsed, or an active health check passed──► HALF_OPEN
//!                          (admits half_open_requests trial requests)
//! HALF_OPEN ──success_threshold successes──► CLOSED
//! HALF_OPEN ──any failure──► OPEN
//! ```
//!
//! Failures are connect errors, resets, timeouts, 5xx answers and slow calls (time to the
//! response's first byte above `slow_call_threshold`; the length of a generation does not
//! count). Time is tokio's, so the tests run on paused time.
//!
//! Routing asks [`CircuitBreaker::allows`] (no side effects) to filter candidates, then
//! [`CircuitBreaker::try_acquire`] for the one it picked; only the latter consumes a half-open
//! trial slot. A disabled breaker admits everything and never opens.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Breaker settings (from `[circuit_breaker]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub timeout: Duration,
    pub half_open_requests: u32,
    pub success_threshold: u32,
    pub slow_call_threshold: Duration,
    /// A passing active health check half-opens an open breaker at once.
    pub health_check_uneject: bool,
}

impl Default for BreakerSettings {
    /// The settings of the default `[circuit_breaker]` section (its defaults are written there).
    fn default() -> Self {
        crate::config::CircuitBreakerConfig::default().settings()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// Numeric value for the `llm_circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }
}

/// What routing got from the breaker for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A normal request (breaker closed or disabled).
    Normal,
    /// One of the half-open trial requests.
    Trial,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trials_in_flight: u32,
    trial_successes: u32,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
    /// Lock-free copy of the state for readers (metrics, API).
    state: AtomicU8,
    failures_total: AtomicU64,
    opened_total: AtomicU64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                trials_in_flight: 0,
                trial_successes: 0,
            }),
            state: AtomicU8::new(0),
            failures_total: AtomicU64::new(0),
            opened_total: AtomicU64::new(0),
        }
    }
}

/// A serialisable view for the API and dashboard.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct BreakerView {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub failures_total: u64,
    pub opened_total: u64,
    /// Seconds until an open breaker admits trial requests.
    pub retry_in_seconds: Option<f64>,
}

impl CircuitBreaker {
    fn publish(&self, inner: &Inner) {
        self.state.store(inner.state.as_gauge() as u8, Relaxed);
    }

    /// Operator reset: CLOSED with a clean slate (the lifetime totals are kept). Returns the
    /// state it left.
    pub fn reset(&self) -> BreakerState {
        let mut inner = self.inner.lock();
        let from = inner.state;
        inner.state = BreakerState::Closed;
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.trials_in_flight = 0;
        inner.trial_successes = 0;
        self.publish(&inner);
        from
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Relaxed) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Relaxed)
    }

    /// Whether a request could be admitted now (no side effects).
    pub fn allows(&self, s: &BreakerSettings) -> bool {
        if !s.enabled {
            return true;
        }
        match self.state() {
            BreakerState::Closed => true,
            _ => {
                let inner = self.inner.lock();
                match inner.state {
                    BreakerState::Closed => true,
                    BreakerState::Open => inner.opened_at.is_none_or(|t| t.elapsed() >= s.timeout),
                    BreakerState::HalfOpen => inner.trials_in_flight < s.half_open_requests,
                }
            }
        }
    }

    /// Admit one request, moving OPEN → HALF_OPEN when the timeout has passed.
    pub fn try_acquire(&self, s: &BreakerSettings) -> Option<Admission> {
        if !s.enabled || self.state() == BreakerState::Closed {
            return Some(Admission::Normal);
        }
        let mut inner = self.inner.lock();
        if inner.state == BreakerState::Open
            && inner.opened_at.is_none_or(|t| t.elapsed() >= s.timeout)
        {
            inner.state = BreakerState::HalfOpen;
            inner.trials_in_flight = 0;
            inner.trial_successes = 0;
            tracing::info!("circuit breaker half-open: admitting trial requests");
            self.publish(&inner);
        }
        match inner.state {
            BreakerState::Closed => Some(Admission::Normal),
            BreakerState::Open => None,
            BreakerState::HalfOpen if inner.trials_in_flight < s.half_open_requests => {
                inner.trials_in_flight += 1;
                Some(Admission::Trial)
            }
            BreakerState::HalfOpen => None,
        }
    }

    /// An active health check passed after one had failed (the prober calls this when a
    /// worker comes back): with `health_check_uneject`, an open breaker goes half-open now
    /// instead of after its timeout, so a restarted worker gets its trial requests as soon as
    /// the health checks see it back (Envoy un-ejects a host the same way). Returns the new
    /// state if it changed.
    pub fn health_check_passed(&self, s: &BreakerSettings) -> Option<BreakerState> {
        if !(s.enabled && s.health_check_uneject) || self.state() != BreakerState::Open {
            return None;
        }
        let mut inner = self.inner.lock();
        if inner.state != BreakerState::Open {
            return None;
        }
        inner.state = BreakerState::HalfOpen;
        inner.trials_in_flight = 0;
        inner.trial_successes = 0;
        self.publish(&inner);
        Some(BreakerState::HalfOpen)
    }

    /// Record the outcome of an admitted request. Returns the new state if it changed.
    pub fn record(
        &self,
        s: &BreakerSettings,
        admission: Admission,
        success: bool,
    ) -> Option<BreakerState> {
        if !success {
            self.failures_total.fetch_add(1, Relaxed);
        }
        if !s.enabled {
            return None;
        }
        let mut inner = self.inner.lock();
        let before = inner.state;
        if admission == Admission::Trial {
            inner.trials_in_flight = inner.trials_in_flight.saturating_sub(1);
        }
        match (inner.state, success) {
            (BreakerState::Closed, true) => inner.consecutive_failures = 0,
            (BreakerState::Closed, false) => {
                inner.consecutive_failures += 1;
                if inner.consecutive_failures >= s.failure_threshold {
                    self.open(&mut inner);
                }
            }
            (BreakerState::HalfOpen, true) if admission == Admission::Trial => {
                inner.trial_successes += 1;
                if inner.trial_successes >= s.success_threshold {
                    inner.state = BreakerState::Closed;
                    inner.consecutive_failures = 0;
                    inner.opened_at = None;
                }
            }
            (BreakerState::HalfOpen, false) => self.open(&mut inner),
            // Late results of requests admitted before the breaker opened change nothing.
            _ => {}
        }
        self.publish(&inner);
        (inner.state != before).then_some(inner.state)
    }

    fn open(&self, inner: &mut Inner) {
        inner.state = BreakerState::Open;
        inner.opened_at = Some(Instant::now());
        inner.trials_in_flight = 0;
        inner.trial_successes = 0;
        self.opened_total.fetch_add(1, Relaxed);
    }

    pub fn view(&self, s: &BreakerSettings) -> BreakerView {
        let inner = self.inner.lock();
        let retry_in_seconds = match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(t)) => {
                Some(s.timeout.saturating_sub(t.elapsed()).as_secs_f64())
            }
            _ => None,
        };
        BreakerView {
            state: inner.state,
            consecutive_failures: inner.consecutive_failures,
            failures_total: self.failures_total.load(Relaxed),
            opened_total: self.opened_total.load(Relaxed),
            retry_in_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings::default()
    }

    fn fail_n(b: &CircuitBreaker, s: &BreakerSettings, n: u32) {
        for _ in 0..n {
            let a = b.try_acquire(s).expect("admitted");
            b.record(s, a, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let s = settings();
        let b = CircuitBreaker::default();
        fail_n(&b, &s, 4);
        let a = b.try_acquire(&s).unwrap();
        assert_eq!(b.record(&s, a, true), None, "a success resets the count");
        fail_n(&b, &s, 4);
        assert_eq!(b.state(), BreakerState::Closed);
        let a = b.try_acquire(&s).unwrap();
        assert_eq!(b.record(&s, a, false), Some(BreakerState::Open));
        assert!(!b.allows(&s));
        assert_eq!(b.try_acquire(&s), None);
        assert_eq!(b.failures_total(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_timeout_admits_limited_trials() {
        let s = settings();
        let b = CircuitBreaker::default();
        fail_n(&b, &s, 5);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.allows(&s), "still open before the timeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allows(&s));
        let trials: Vec<_> = (0..3).map(|_| b.try_acquire(&s)).collect();
        assert!(trials.iter().all(|t| *t == Some(Admission::Trial)));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(&s), None, "only half_open_requests trials");
        assert!(!b.allows(&s));
        b.record(&s, Admission::Trial, true);
        b.record(&s, Admission::Trial, true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.record(&s, Admission::Trial, true),
            Some(BreakerState::Closed)
        );
        assert!(b.allows(&s));
        assert_eq!(b.try_acquire(&s), Some(Admission::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn any_failure_in_half_open_reopens() {
        let s = settings();
        let b = CircuitBreaker::default();
        fail_n(&b, &s, 5);
        tokio::time::advance(s.timeout).await;
        let a = b.try_acquire(&s).unwrap();
        assert_eq!(a, Admission::Trial);
        assert_eq!(b.record(&s, a, false), Some(BreakerState::Open));
        assert_eq!(
            b.view(&s).retry_in_seconds,
            Some(30.0),
            "the timeout restarts"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.try_acquire(&s), Some(Admission::Trial));
        assert_eq!(b.view(&s).opened_total, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_health_check_half_opens_an_open_breaker_at_once() {
        let s = settings();
        let b = CircuitBreaker::default();
        assert_eq!(
            b.health_check_passed(&s),
            None,
            "a closed breaker stays closed"
        );
        fail_n(&b, &s, 5);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!b.allows(&s), "29 s of its timeout left");
        assert_eq!(b.health_check_passed(&s), Some(BreakerState::HalfOpen));
        assert_eq!(b.health_check_passed(&s), None, "already half-open");
        let trials: Vec<_> = (0..4).map(|_| b.try_acquire(&s)).collect();
        assert_eq!(
            trials
                .iter()
                .filter(|t| **t == Some(Admission::Trial))
                .count(),
            3
        );
        // A failed trial re-opens it; the next passing check half-opens it again.
        assert_eq!(
            b.record(&s, Admission::Trial, false),
            Some(BreakerState::Open)
        );
        assert_eq!(b.health_check_passed(&s), Some(BreakerState::HalfOpen));
        for _ in 0..3 {
            let a = b.try_acquire(&s).unwrap();
            b.record(&s, a, true);
        }
        assert_eq!(b.state(), BreakerState::Closed);

        let off = BreakerSettings {
            health_check_uneject: false,
            ..settings()
        };
        fail_n(&b, &off, 5);
        assert_eq!(
            b.health_check_passed(&off),
            None,
            "uneject off: waits for the timeout"
        );
        assert_eq!(b.state(), BreakerState::Open);
        let disabled = BreakerSettings {
            enabled: false,
            ..settings()
        };
        assert_eq!(b.health_check_passed(&disabled), None);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_and_reset() {
        let off = BreakerSettings {
            enabled: false,
            ..settings()
        };
        let b = CircuitBreaker::default();
        fail_n(&b, &off, 50);
        assert!(b.allows(&off));
        assert_eq!(b.state(), BreakerState::Closed);
        let s = settings();
        fail_n(&b, &s, 5);
        assert_eq!(b.state(), BreakerState::Open);
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allows(&s));
    }
}
