//! `[circuit_breaker]`: the per-worker circuit breaker. Its defaults live here only; the
//! breaker's [`BreakerSettings`] are derived from this section ([`CircuitBreakerConfig::settings`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::worker::breaker::BreakerSettings;

/// The per-worker circuit breaker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Seconds an open breaker waits before admitting trial requests.
    pub timeout_seconds: u64,
    /// Trial requests admitted while half-open.
    pub half_open_requests: u32,
    /// Successful trials that close the breaker.
    pub success_threshold: u32,
    /// A call whose response starts later than this counts as a failure.
    pub slow_call_threshold_ms: u64,
    /// An active health check that passes after a failed one (the worker came back) moves an
    /// open breaker to half-open at once (Envoy's `successful_active_health_check_uneject_host`),
    /// instead of waiting `timeout_seconds`.
    pub health_check_uneject: bool,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            timeout_seconds: 30,
            half_open_requests: 3,
            success_threshold: 3,
            slow_call_threshold_ms: 5_000,
            health_check_uneject: true,
        }
    }
}

impl CircuitBreakerConfig {
    /// The settings the breakers run with.
    pub fn settings(&self) -> BreakerSettings {
        BreakerSettings {
            enabled: self.enabled,
            failure_threshold: self.failure_threshold,
            timeout: Duration::from_secs(self.timeout_seconds),
            half_open_requests: self.half_open_requests,
            success_threshold: self.success_threshold,
            slow_call_threshold: Duration::from_millis(self.slow_call_threshold_ms),
            health_check_uneject: self.health_check_uneject,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.failure_threshold >= 1,
            "circuit_breaker.failure_threshold",
            "must be >= 1",
        )?;
        check(
            self.half_open_requests >= 1,
            "circuit_breaker.half_open_requests",
            "must be >= 1",
        )?;
        check(
            (1..=self.half_open_requests).contains(&self.success_threshold),
            "circuit_breaker.success_threshold",
            "must be between 1 and circuit_breaker.half_open_requests",
        )?;
        check(
            self.slow_call_threshold_ms >= 1,
            "circuit_breaker.slow_call_threshold_ms",
            "must be >= 1",
        )
    }
}
