//! `[upstream]`: connections from the gateway to the workers.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// TCP connect timeout to a worker.
    pub connect_timeout_ms: u64,
    /// Longest silence while reading a worker's response (per read: covers queueing + prefill).
    pub read_timeout_ms: u64,
    /// Idle pooled connections are closed after this; keep it below the workers' keep-alive (5 s).
    pub idle_timeout_ms: u64,
    /// PEM bundle that `https://` workers' certificates are checked against, instead of the
    /// system's roots (a private CA). Read at start-up: a change needs a restart.
    pub ca_file: Option<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            read_timeout_ms: 300_000,
            idle_timeout_ms: 4_000,
            ca_file: None,
        }
    }
}

impl UpstreamConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.connect_timeout_ms >= 1,
            "upstream.connect_timeout_ms",
            "must be >= 1",
        )?;
        check(
            self.read_timeout_ms >= 1,
            "upstream.read_timeout_ms",
            "must be >= 1",
        )?;
        check(
            self.idle_timeout_ms >= 1,
            "upstream.idle_timeout_ms",
            "must be >= 1",
        )?;
        check(
            self.ca_file.as_deref().is_none_or(|f| !f.trim().is_empty()),
            "upstream.ca_file",
            "must be a file path (leave it out for the system's roots)",
        )
    }
}
