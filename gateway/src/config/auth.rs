//! `[auth]`: API keys of the LLM endpoints and the admin key of management writes.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// API keys. Empty `api_keys` = LLM endpoints open; no `admin_key` = management open.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    pub admin_key: Option<String>,
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
