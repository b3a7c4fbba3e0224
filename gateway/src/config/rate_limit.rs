//! `[rate_limit]`: token buckets, global, per user and per worker.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// Token buckets (0 in a rate turns that bucket off).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Requests per second over all clients.
    pub global_rps: u32,
    /// Requests the global bucket lets through at once.
    pub global_burst: u32,
    /// Requests per minute per user (API key, else `user` field, else client IP).
    pub per_user_rpm: u32,
    /// Requests per second per worker; a worker at its limit is skipped, not failed.
    pub per_worker_qps: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            global_rps: 100,
            global_burst: 200,
            per_user_rpm: 60,
            per_worker_qps: 50,
        }
    }
}

impl RateLimitConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.global_rps == 0 || self.global_burst >= 1,
            "rate_limit.global_burst",
            "must be >= 1 when rate_limit.global_rps is set",
        )
    }
}
