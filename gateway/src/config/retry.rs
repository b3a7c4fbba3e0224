//! `[retry]`: retries of a failed attempt on another worker.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// Retries on another worker while nothing reached the client.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included, each on a different worker (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// No retry starts later than this after the request arrived.
    pub total_timeout_ms: u64,
    /// A worker's `429`/`503` with `Retry-After` takes it out of routing for that long, at
    /// most this long (0 = ignore `Retry-After`).
    pub max_retry_after_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 25,
            max_backoff_ms: 1_000,
            total_timeout_ms: 30_000,
            max_retry_after_ms: 60_000,
        }
    }
}

impl RetryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=10).contains(&self.max_attempts),
            "retry.max_attempts",
            "must be 1..=10 (1 disables retries)",
        )?;
        check(
            self.max_backoff_ms >= self.initial_backoff_ms,
            "retry.max_backoff_ms",
            "must be >= retry.initial_backoff_ms",
        )?;
        check(
            self.total_timeout_ms >= 1,
            "retry.total_timeout_ms",
            "must be >= 1",
        )
    }
}
