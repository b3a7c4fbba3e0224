//! `[health]`: active health checks and load scrapes of the workers.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Interval of the active `GET /health` + `GET /v1/models` probe per worker.
    pub check_interval_ms: u64,
    /// Timeout of one probe request.
    pub check_timeout_ms: u64,
    /// Interval of the `GET /metrics` load scrape per worker.
    pub scrape_interval_ms: u64,
    /// Consecutive failed checks before a worker is marked ERROR.
    pub failure_threshold: u32,
    /// Consecutive passed checks before an ERROR worker is READY again.
    pub recovery_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 5_000,
            check_timeout_ms: 2_000,
            scrape_interval_ms: 1_000,
            failure_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

impl HealthConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.check_interval_ms >= 10,
            "health.check_interval_ms",
            "must be >= 10",
        )?;
        check(
            self.check_timeout_ms >= 1,
            "health.check_timeout_ms",
            "must be >= 1",
        )?;
        check(
            self.scrape_interval_ms >= 10,
            "health.scrape_interval_ms",
            "must be >= 10",
        )?;
        check(
            self.failure_threshold >= 1,
            "health.failure_threshold",
            "must be >= 1",
        )?;
        check(
            self.recovery_threshold >= 1,
            "health.recovery_threshold",
            "must be >= 1",
        )
    }
}
