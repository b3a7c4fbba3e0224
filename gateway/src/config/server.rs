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
    /// HTTPS on the public listener; absent = plain HTTP.
    pub tls: Option<super::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 9000,
            threads: 0,
            grace_period_seconds: 30,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Whether only this machine can reach the listener (`127.0.0.0/8`, `::1`, `localhost`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

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
        )?;
        self.tls.as_ref().map_or(Ok(()), |t| t.validate())
    }
}
