//! `[auth]`: API keys of the LLM endpoints and the admin key of management writes.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// API keys. Empty `api_keys` = LLM endpoints open. Without an `admin_key`, management writes
/// are open only on a loopback listener (or with `allow_insecure_admin`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    pub admin_key: Option<String>,
    /// Allow management writes without an admin key on a listener other hosts can reach
    /// (`LLM_ALLOW_INSECURE_ADMIN`); logged as a warning at startup.
    pub allow_insecure_admin: bool,
}

impl AuthConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, k) in self.api_keys.iter().enumerate() {
            check(
                k.trim().len() >= 8,
                &format!("auth.api_keys[{i}]"),
                "API keys must have at least 8 characters",
            )?;
        }
        if let Some(k) = &self.admin_key {
            check(
                k.trim().len() >= 8,
                "auth.admin_key",
                "must have at least 8 characters",
            )?;
        }
        Ok(())
    }
}
