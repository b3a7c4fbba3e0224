//! `[limits]`: request body size and read time, and requests in flight at once.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time allowed to read a request body once its headers arrived.
    pub body_read_timeout_ms: u64,
    /// LLM requests in flight at once; more get 429 with `Retry-After` (0 = no limit).
    pub max_concurrent_requests: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            max_concurrent_requests: 4096,
        }
    }
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_body_bytes >= 1024,
            "limits.max_body_bytes",
            "must be at least 1024",
        )?;
        check(
            self.max_body_bytes <= 1 << 30,
            "limits.max_body_bytes",
            "must be at most 1 GiB",
        )?;
        check(
            self.body_read_timeout_ms >= 1,
            "limits.body_read_timeout_ms",
            "must be >= 1",
        )
    }
}
