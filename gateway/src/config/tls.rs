//! `[server.tls]`: HTTPS on the public listener (PEM files; rustls, TLS 1.2 and 1.3).

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM, leaf first (`LLM_TLS_CERT_FILE`).
    pub cert_file: String,
    /// Private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`LLM_TLS_KEY_FILE`).
    pub key_file: String,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`); false = HTTP/1.1 only.
    pub http2: bool,
    /// How often the two files are checked for a change; a changed pair that loads replaces
    /// the served certificate for new connections, one that does not is logged and ignored.
    pub reload_interval_seconds: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            http2: true,
            reload_interval_seconds: 10,
        }
    }
}

impl TlsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.cert_file.trim().is_empty(),
            "server.tls.cert_file",
            "must name a PEM certificate file (LLM_TLS_CERT_FILE)",
        )?;
        check(
            !self.key_file.trim().is_empty(),
            "server.tls.key_file",
            "must name a PEM private key file (LLM_TLS_KEY_FILE)",
        )?;
        check(
            (1..=3600).contains(&self.reload_interval_seconds),
            "server.tls.reload_interval_seconds",
            "must be 1..=3600",
        )
    }
}
