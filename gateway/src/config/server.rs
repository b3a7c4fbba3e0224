//! `[server]`: the public listener and the shutdown grace period.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the public listener.
    pub host: String,
    /// Port of the public listener.
    pub port: u16,
    /// Worker threads for the proxy runtime; 0 = one per CPU.
    pub threads: usize,
    /// Seconds the gateway keeps serving in-flight requests after SIGTERM.
    pub grace_period_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 9000,
            threads: 0,
            grace_period_seconds: 30,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.host.trim().is_empty(),
            "server.host",
            "must not be empty",
        )?;
        check(
            self.threads <= 1024,
            "server.threads",
            "must be between 0 (auto) and 1024",
        )
    }
}
